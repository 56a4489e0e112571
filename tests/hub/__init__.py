"""Tests of rela_hf.hub; shared helpers."""

from __future__ import annotations

import timm
import torch


def timm_pixels(images, data_config) -> torch.Tensor:
    """The images as timm's eval transform of ``data_config`` gives them."""
    transform = timm.data.create_transform(**data_config, is_training=False)
    return torch.stack([transform(image.convert("RGB")) for image in images])
