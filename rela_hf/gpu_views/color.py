"""Colour augmentations of a batch of float images with one parameter per image.

Images are ``(B, 3, H, W)`` floats in [0, 1]; every factor is a ``(B,)`` tensor. The adjustments
are those of torchvision's ``ColorJitter`` and of PIL's ``ImageEnhance`` behind it (the PIL views
run them on 8-bit images, these on floats, so they differ only by 8-bit rounding):

- brightness: ``x * f``; contrast: blend with the image's mean grey level; saturation: blend with
  the image's grey version; each clamped to [0, 1];
- hue: a shift of the HSV hue by ``f`` turns (``f`` in [-0.5, 0.5]); value and saturation stay;
- grey: ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B`` (PIL's ``convert("L")``);
- solarisation: ``1 - x`` where ``x >= threshold``.

:func:`color_jitter` applies the four in a per-image random order, as ``ColorJitter`` draws a
fresh ``randperm(4)`` for every image.

Examples:
    >>> import torch
    >>> images = torch.rand(2, 3, 4, 4)
    >>> brighter = adjust_brightness(images, torch.tensor([1.0, 0.5]))
    >>> torch.equal(brighter[0], images[0]), torch.allclose(brighter[1], images[1] * 0.5)
    (True, True)
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "GRAY_WEIGHTS",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "color_jitter",
    "grayscale",
    "random_grayscale",
    "solarize",
]

GRAY_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights of R, G, B, as PIL's ``convert("L")``."""


def _per_image(values: Tensor) -> Tensor:
    return values.reshape(-1, 1, 1, 1)


def grayscale(images: Tensor) -> Tensor:
    """``(B, 1, H, W)`` luma of ``(B, 3, H, W)`` images."""
    weights = images.new_tensor(GRAY_WEIGHTS).view(1, 3, 1, 1)
    return (images * weights).sum(dim=1, keepdim=True)


def _blend(images: Tensor, other: Tensor, factor: Tensor) -> Tensor:
    """``factor * images + (1 - factor) * other`` clamped to [0, 1] (PIL's ImageEnhance)."""
    factor = _per_image(factor).to(images.dtype)
    return (factor * images + (1 - factor) * other).clamp_(0.0, 1.0)


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """Scale every pixel by the image's factor (0 gives black, 1 the image)."""
    return (images * _per_image(factor).to(images.dtype)).clamp_(0.0, 1.0)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's mean grey level (0 gives a flat grey image, 1 the image)."""
    mean = grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    return _blend(images, mean, factor)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """Blend with the image's grey version (0 gives grey, 1 the image, 2 twice as saturated)."""
    return _blend(images, grayscale(images), factor)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """Rotate the HSV hue of each image by ``shift`` turns, keeping value and saturation.

    With ``v = max``, ``c = max - min`` and the hue ``h`` in sextants, a channel ``n`` of the
    shifted colour is ``v - c * clamp(min(k, 4 - k), 0, 1)`` with ``k = (n + 6 h') mod 6`` and
    ``n`` = 5, 3, 1 for R, G, B (the closed form of the HSV -> RGB conversion).
    """
    red, green, blue = images.unbind(dim=1)
    value, _ = images.max(dim=1)
    chroma = value - images.min(dim=1).values
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    sextant = torch.where(
        value == red,
        torch.remainder((green - blue) / safe_chroma, 6.0),
        torch.where(value == green, (blue - red) / safe_chroma + 2.0, (red - green) / safe_chroma + 4.0),
    )
    shifted = torch.remainder(sextant + 6.0 * _per_image(shift).to(images.dtype)[:, 0], 6.0)
    offsets = images.new_tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)
    k = torch.remainder(offsets + shifted.unsqueeze(1), 6.0)
    weight = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return value.unsqueeze(1) - chroma.unsqueeze(1) * weight


#: Indices of the adjustments in a ColorJitter order / factor row.
BRIGHTNESS, CONTRAST, SATURATION, HUE = range(4)


def _blend_adjustment(images: Tensor, adjustment: Tensor, factor: Tensor) -> Tensor:
    """Brightness, contrast or saturation, chosen per image: each blends the image with a
    reference (black, the mean grey level, the grey image), so one blend does any of them."""
    grey = grayscale(images)
    mean = grey.mean(dim=(1, 2, 3), keepdim=True)
    adjustment = _per_image(adjustment)
    reference = torch.where(adjustment == SATURATION, grey, torch.where(adjustment == CONTRAST, mean, 0.0))
    return _blend(images, reference, factor)


def color_jitter(images: Tensor, order: Tensor, factors: Tensor, hue: bool = True) -> Tensor:
    """``ColorJitter`` with per-image factors and a per-image order of the adjustments.

    Args:
        images: ``(B, 3, H, W)`` in [0, 1].
        order: ``(B, 4)`` a permutation of 0..3 (brightness, contrast, saturation, hue) per image.
        factors: ``(B, 4)`` the factors in (b, c, s, h) order; identity factors (1, 1, 1, 0)
            leave an image unchanged.
        hue: whether any hue factor can be non-zero (``False`` skips the hue pass).

    The hue rotation is the costly step, so it runs once: each image's brightness, contrast and
    saturation (in its order) are split into those before its hue step and those after, three
    blend passes each side, with the identity factor where an image has nothing to do. No
    data-dependent indexing, so no host synchronisation on a GPU.
    """
    # the three blend adjustments in each image's order, and how many come before its hue
    is_hue = (order == HUE).to(torch.int32)
    blend_order = order.gather(1, torch.argsort(is_hue, dim=1, stable=True))[:, :3]
    blend_factors = factors.gather(1, blend_order)
    before_hue = is_hue.argmax(dim=1)
    identity = torch.ones_like(blend_factors[:, 0])
    for slot in range(3):
        factor = torch.where(slot < before_hue, blend_factors[:, slot], identity)
        images = _blend_adjustment(images, blend_order[:, slot], factor)
    if hue:
        images = adjust_hue(images, factors[:, HUE])
    for slot in range(3):
        factor = torch.where(slot >= before_hue, blend_factors[:, slot], identity)
        images = _blend_adjustment(images, blend_order[:, slot], factor)
    return images


def random_grayscale(images: Tensor, apply: Tensor) -> Tensor:
    """Grey (three equal channels) where ``apply`` is true."""
    grey = grayscale(images).expand_as(images)
    return torch.where(_per_image(apply), grey, images)


def solarize(images: Tensor, apply: Tensor, threshold: float) -> Tensor:
    """Invert the pixels ``>= threshold`` of the images where ``apply`` is true."""
    invert = _per_image(apply) & (images >= threshold)
    return torch.where(invert, 1.0 - images, images)
