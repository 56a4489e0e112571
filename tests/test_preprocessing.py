"""Tests for rela_hf.preprocessing: the official data config and the one deterministic pipeline."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as v1

from rela_hf.preprocessing import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ConvertImageMode,
    eval_transform,
    official_data_config,
)


def only(pipeline, kind: type):
    found = [t for t in pipeline.transforms if isinstance(t, kind)]
    assert len(found) == 1, f"expected one {kind.__name__}, found {len(found)}"
    return found[0]


def test_official_data_config_is_timm_shaped():
    config = official_data_config(32)
    assert config == {
        "input_size": (3, 32, 32),
        "interpolation": "bilinear",
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "crop_pct": 1.0,
        "crop_mode": "center",
    }
    assert official_data_config(64, in_chans=1, mean=(0.5,), std=(0.5,))["input_size"] == (1, 64, 64)


def test_eval_transform_parameters():
    pipeline = eval_transform(224, crop_pct=0.875)
    assert only(pipeline, v1.Resize).size == 256 and only(pipeline, v1.CenterCrop).size == (224, 224)
    assert only(eval_transform(32), v1.Resize).size == 32
    for random_kind in (v1.RandomResizedCrop, v1.RandomHorizontalFlip, v1.ColorJitter):
        assert not any(isinstance(t, random_kind) for t in pipeline.transforms)
    normalize = only(eval_transform(32, mean=(0.5,) * 3, std=(0.25,) * 3), v1.Normalize)
    assert list(normalize.mean) == pytest.approx([0.5] * 3) and list(normalize.std) == pytest.approx([0.25] * 3)


@pytest.mark.parametrize("image_size", [32, 48])
def test_outputs_on_cifar10(cifar10_images, image_size):
    for image in cifar10_images["image"][:5]:
        out = eval_transform(image_size)(image)
        assert out.shape == (3, image_size, image_size) and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_grey_and_rgba_inputs_become_rgb(fashion_mnist_slice, cifar10_images):
    grey = fashion_mnist_slice["image"][0]
    rgba = cifar10_images["image"][0].convert("RGBA")
    for image in (grey, rgba):
        assert eval_transform(28)(image).shape == (3, 28, 28)
    # a grey image stays grey: the three channels carry the same intensities
    out = eval_transform(28, mean=(0.0,) * 3, std=(1.0,) * 3)(grey)
    torch.testing.assert_close(out[0], out[1])
    torch.testing.assert_close(out[1], out[2])
    # a one-channel config gives one channel
    config = official_data_config(28, in_chans=1, mean=(0.5,), std=(0.5,))
    assert eval_transform(config)(rgba).shape == (1, 28, 28)


def test_eval_transform_matches_manual_preprocessing(cifar10_images):
    """Bitwise the official ReLA code's prior input: Resize(shorter side), CenterCrop, ToTensor, Normalize."""
    image = cifar10_images["image"][3].resize((40, 50))  # non-square: shorter side is 40
    reference = v1.Compose([v1.Resize(32), v1.CenterCrop(32), v1.ToTensor(), v1.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    assert torch.equal(eval_transform(32)(image), reference(image))


def test_normalisation_values_on_a_flat_image():
    image = Image.fromarray(np.full((8, 8, 3), (255, 128, 0), dtype=np.uint8))
    out = eval_transform(8)(image)
    expected = (torch.tensor([255, 128, 0]) / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[:, 4, 4], expected.float())


def test_deterministic_and_picklable(cifar10_images):
    image = cifar10_images["image"][1]
    pipeline = pickle.loads(pickle.dumps(eval_transform(32)))
    assert torch.equal(pipeline(image), eval_transform(32)(image))


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="crop_pct"):
        eval_transform(32, crop_pct=1.5)
    with pytest.raises(ValueError, match="image_size"):
        official_data_config(0)
    with pytest.raises(TypeError, match="keyword overrides"):
        eval_transform(official_data_config(32), crop_pct=0.5)
    with pytest.raises(TypeError, match="PIL images"):
        ConvertImageMode("RGB")(torch.zeros(3, 32, 32))


def test_sixteen_bit_grey_is_scaled_not_clipped():
    """PIL's own convert clips I;16 values 0..65535 to 0..255: a 16-bit photo would turn white."""
    values = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(values)
    assert image.mode == "I;16"
    rgb = ConvertImageMode("RGB")(image)
    assert rgb.mode == "RGB" and np.asarray(rgb)[0, :, 0].tolist() == [0, 64, 128, 255]
    out = eval_transform(4, mean=(0.0,) * 3, std=(1.0,) * 3)(Image.fromarray(np.full((4, 4), 32768, dtype=np.uint16)))
    assert torch.allclose(out, torch.full_like(out, 128 / 255))
