"""Fixtures of the prior tests: real images and a timm model folder."""

from __future__ import annotations

from pathlib import Path

import PIL.Image
import pytest
import timm
import torch

from tests.priors import save_timm_folder


@pytest.fixture(scope="module")
def images(cifar10_images) -> list[PIL.Image.Image]:
    return list(cifar10_images["image"])


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(1)
    model = timm.create_model("test_resnet").eval()
    return save_timm_folder(model, tmp_path_factory.mktemp("timm") / "test_resnet"), model
