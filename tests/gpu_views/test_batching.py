"""rela_hf.gpu_views.batching: rows -> 8-bit canvases with per-row seeds, through a DataLoader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rela_hf.gpu_views.batching import (
    ImageCollator,
    ImageRowsDataset,
    encoded_bytes,
    image_to_uint8,
    lossless_short_side,
    stack_images,
)
from rela_hf.gpu_views.recipe import method_view_recipes, rela_view_recipes
from rela_hf.training import sample_seed


def test_image_modes(fashion_mnist_slice, cifar10_images):
    grey = fashion_mnist_slice["image"][0]
    as_tensor = image_to_uint8(grey)
    assert as_tensor.shape == (1, 28, 28) and as_tensor.dtype == torch.uint8
    assert torch.equal(as_tensor[0], torch.from_numpy(np.array(grey)))
    rgb = cifar10_images["image"][0]
    assert torch.equal(image_to_uint8(rgb), torch.from_numpy(np.array(rgb)).permute(2, 0, 1))
    assert torch.equal(image_to_uint8(rgb.convert("RGBA")), image_to_uint8(rgb))
    assert image_to_uint8(rgb.convert("P")).shape == (3, 32, 32)
    deep = Image.fromarray(np.asarray(grey).astype(np.uint16) << 8)
    assert deep.mode == "I;16"
    assert torch.equal(image_to_uint8(deep), as_tensor)  # 16-bit grey keeps its high byte


def test_large_images_shrink_to_the_bound(imagenet_photo):
    shrunk = image_to_uint8(imagenet_photo.crop((0, 0, 512, 300)), max_short_side=150)
    assert shrunk.shape == (3, 150, 256)
    assert image_to_uint8(imagenet_photo, max_short_side=1000).shape == (3, 512, 512)


def test_stack_pads_by_repeating_the_edge():
    small = torch.arange(6, dtype=torch.uint8).view(1, 2, 3)
    colour = torch.full((3, 4, 2), 9, dtype=torch.uint8)
    canvas, sizes = stack_images([small, colour])
    assert canvas.shape == (2, 3, 4, 3) and sizes.tolist() == [[2, 3], [4, 2]]
    assert torch.equal(canvas[0, 1, :2], small[0]) and torch.equal(canvas[0, 2, 3], small[0, 1])
    assert torch.equal(canvas[1, :, :, 2], colour[:, :, 1])
    with pytest.raises(ValueError, match="no images"):
        stack_images([])


def test_lossless_bound():
    assert lossless_short_side(method_view_recipes("byol", 224)) == 792
    assert lossless_short_side(rela_view_recipes(224)) == 317


def test_rows_through_a_dataloader(fashion_mnist_slice):
    data = ImageRowsDataset(fashion_mnist_slice, label_column="label", seed=3)
    data.set_epoch(2)
    loader = DataLoader(data, batch_size=16, collate_fn=ImageCollator())
    batch = next(iter(loader))
    assert sorted(batch) == ["image_sizes", "images", "labels", "row_seeds"]
    assert batch["images"].shape == (16, 1, 28, 28) and batch["images"].dtype == torch.uint8
    assert batch["row_seeds"].tolist() == [sample_seed(3, 2, i) for i in range(16)]
    assert batch["labels"].tolist() == list(fashion_mnist_slice["label"][:16])
    data.set_epoch(3)
    assert next(iter(loader))["row_seeds"][0] == sample_seed(3, 3, 0)


def test_targets_and_undecoded_rows(cifar10_images):
    with_targets = cifar10_images.add_column("rela_target", [[float(i)] * 4 for i in range(len(cifar10_images))])
    data = ImageRowsDataset(with_targets, target_column="rela_target", label_column="label", decode=False)
    batch = ImageCollator()(data.__getitems__([0, 5]))
    assert sorted(batch) == ["encoded", "labels", "row_seeds", "targets"]
    assert batch["targets"].shape == (2, 4) and batch["targets"][1, 0] == 5.0
    assert all(isinstance(e, bytes) and e[:4] == b"\x89PNG" for e in batch["encoded"])


def test_missing_columns_and_bad_values_are_named(cifar10_images):
    with pytest.raises(ValueError, match=r"\['rela_target'\]"):
        ImageRowsDataset(cifar10_images, target_column="rela_target")
    with pytest.raises(TypeError, match="decode=False"):
        encoded_bytes(42)
