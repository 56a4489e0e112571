"""Fixtures of the batched-view tests."""

from __future__ import annotations

import pytest
from PIL import Image

from rela_hf.assets import foolbox_image_files


@pytest.fixture(scope="session")
def imagenet_photo() -> Image.Image:
    """A real 512x512 ImageNet-val photo (foolbox's offline samples), RGB."""
    path, _ = foolbox_image_files("imagenet")[0]
    return Image.open(path).convert("RGB")


@pytest.fixture(autouse=True)
def _one_torch_thread(single_torch_thread):
    """Small batched ops: one thread is as fast, and immune to OpenMP spinning on busy cores."""
    yield
