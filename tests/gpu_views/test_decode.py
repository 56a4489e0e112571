"""rela_hf.gpu_views.decode: encoded files decoded where the views are made (CPU here)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from rela_hf.assets import foolbox_image_files
from rela_hf.gpu_views.decode import decode_batch, decode_images
from rela_hf.gpu_views.pipeline import views_for_batch
from rela_hf.gpu_views.recipe import rela_view_recipes

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")


def test_jpeg_and_png_decode_like_pil(cifar10_images):
    jpeg_path, _ = foolbox_image_files("imagenet")[0]
    jpeg = jpeg_path.read_bytes()
    png = io.BytesIO()
    cifar10_images["image"][0].save(png, "PNG")
    grey_png = io.BytesIO()
    cifar10_images["image"][0].convert("L").save(grey_png, "PNG")
    decoded = decode_images([jpeg, png.getvalue(), grey_png.getvalue()], "cpu")
    for image, data in zip(decoded, (jpeg, png.getvalue(), grey_png.getvalue()), strict=True):
        pil = np.array(Image.open(io.BytesIO(data)).convert("RGB"))
        assert image.dtype == torch.uint8 and image.shape == (3, *pil.shape[:2])
        assert (image.permute(1, 2, 0).int() - torch.from_numpy(pil).int()).abs().float().mean() < 0.5


def test_decode_batch_shrinks_and_stacks():
    files = [path.read_bytes() for path, _ in foolbox_image_files("imagenet")[:3]]
    batch = decode_batch({"encoded": files, "row_seeds": torch.arange(3)}, "cpu", max_short_side=64)
    assert batch["images"].shape == (3, 3, 64, 64) and batch["image_sizes"].tolist() == [[64, 64]] * 3
    views = views_for_batch(batch, rela_view_recipes(32))["views"]
    assert views[0].shape == (3, 3, 32, 32)


def test_undecodable_bytes_name_the_image():
    with pytest.raises(ValueError, match="Image 1 of the batch"):
        decode_images([foolbox_image_files("imagenet")[0][0].read_bytes(), b"not an image"], "cpu")
