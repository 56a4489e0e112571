"""Deterministic preprocessing, described once as a timm data config.

Every deterministic image pipeline of rela-hf (the prior's input when it makes targets, the
evaluation of an encoder, the preprocessing an export records) is a timm *data config*, the dict
that ``timm.data.resolve_data_config`` returns and ``timm.data.create_transform`` consumes::

    {"input_size": (3, H, W), "interpolation": "bilinear", "mean": (...), "std": (...),
     "crop_pct": 1.0, "crop_mode": "center"}

The official ReLA code (arXiv:2405.14669) resizes the shorter side to the input size, centre-crops
it and normalises with the ImageNet statistics, for every prior and for evaluation:
:func:`official_data_config` is that pipeline in this shape, and :func:`eval_transform` turns any
data config into the transform (timm's own ``create_transform``, after a picklable mode
conversion, so grey and RGBA images work and DataLoader workers can pickle it).

Examples:
    >>> from PIL import Image
    >>> config = official_data_config(32)
    >>> config["input_size"], config["crop_pct"]
    ((3, 32, 32), 1.0)
    >>> eval_transform(config)(Image.new("L", (28, 28))).shape
    torch.Size([3, 32, 32])
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import PIL.Image
import torch
from timm.data import create_transform
from torchvision import transforms as T

__all__ = [
    "DATA_CONFIG_KEYS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ConvertImageMode",
    "eval_transform",
    "official_data_config",
]

# ImageNet channel statistics (RGB, inputs in [0, 1]): the official ReLA code normalises every
# prior's input and every student view with these; also timm's IMAGENET_DEFAULT_MEAN/STD.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: The keys of a timm data config that describe a deterministic pipeline.
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")


class ConvertImageMode:
    """Convert a PIL image to ``mode`` (``"RGB"`` or ``"L"``); images already in it pass as is.

    Grey, palette, CMYK and RGBA inputs become RGB (alpha is dropped, as in transformers'
    ``convert_rgb`` and torchvision's datasets); 16-bit grey (``I;16``) is scaled to 8 bits first. A class rather than a lambda, so that the
    transforms built on it pickle into DataLoader and ``Dataset.map`` workers.
    """

    def __init__(self, mode: str = "RGB") -> None:
        self.mode = mode

    def __call__(self, image: PIL.Image.Image) -> PIL.Image.Image:
        if not isinstance(image, PIL.Image.Image):
            raise TypeError(
                f"rela_hf transforms take PIL images, got {type(image).__name__}; decode the "
                "dataset's image column to PIL first (datasets' Image feature does this)."
            )
        if image.mode.startswith("I;16"):
            # 16-bit grey: PIL's convert clips 0..65535 to 0..255 (a white image); keep the high byte
            image = PIL.Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8), mode="L")
        return image if image.mode == self.mode else image.convert(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.mode!r})"


def official_data_config(
    image_size: int,
    *,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    interpolation: str = "bilinear",
    crop_pct: float = 1.0,
    in_chans: int = 3,
) -> dict[str, Any]:
    """The official ReLA preprocessing at ``image_size``, as a timm data config.

    Shorter side resized to ``floor(image_size / crop_pct)`` (``crop_pct=1``: to the input size),
    centre crop, ImageNet mean/std. Rela-hf's exports record it as their training preprocessing;
    the prior's ``preprocessing="official"`` and the evaluation's ``"official"`` mode use it.

    Examples:
        >>> official_data_config(224, crop_pct=0.875)["input_size"]
        (3, 224, 224)
    """
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size!r}.")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}.")
    return {
        "input_size": (int(in_chans), image_size, image_size),
        "interpolation": interpolation,
        "mean": tuple(float(m) for m in mean),
        "std": tuple(float(s) for s in std),
        "crop_pct": float(crop_pct),
        "crop_mode": "center",
    }


def eval_transform(data_config: Mapping[str, Any] | int, **overrides: Any) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """PIL image (any mode) -> normalised ``(C, H, W)`` float tensor, following a data config.

    Args:
        data_config: A timm data config (see the module docstring), or an image size for
            :func:`official_data_config` (``overrides`` are then its keyword arguments:
            ``mean``, ``std``, ``crop_pct``...).

    Returns:
        ``Compose([ConvertImageMode, *timm.data.create_transform(**config, is_training=False)])``.

    Examples:
        >>> eval_transform(224, crop_pct=0.875).transforms[1].size
        256
    """
    if isinstance(data_config, int):
        data_config = official_data_config(data_config, **overrides)
    elif overrides:
        raise TypeError("eval_transform: keyword overrides apply to an image size, not a data config.")
    config = {key: data_config[key] for key in DATA_CONFIG_KEYS if key in data_config}
    mode = "RGB" if int(config["input_size"][0]) == 3 else "L"
    timm_transform = create_transform(**config, is_training=False)
    return T.Compose([ConvertImageMode(mode), *timm_transform.transforms])
