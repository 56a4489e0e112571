"""Per-sample random parameters of a batch of views, drawn from per-row seeds.

The PIL views (:class:`rela_hf.training.ViewDataset`) seed each row's augmentations with
``sample_seed(seed, epoch, row)``, so the views of a row do not depend on workers, batch
composition, process count or the resume point. The batched views keep that contract: each row's
seed drives its own small generator, which draws a fixed block of :data:`UNIFORMS_PER_VIEW`
uniforms per view (:func:`row_uniforms`, the only per-row Python loop: a few microseconds a row).
Everything else is vectorised over the batch and runs on any device: :func:`sample_view_params`
turns the uniforms into crop boxes, flips, jitter orders and factors, grayscale, blur sigmas and
solarisation flags, with the distributions of torchvision's transforms:

- ``RandomResizedCrop.make_params``: 10 tries of an area fraction ``~ U(scale)`` and an aspect
  ratio ``~ exp(U(log ratio))``, sides rounded to whole pixels, the first try that fits wins, a
  uniformly placed box (integer offsets); if none fits, the central crop clamped to ``ratio``;
- ``ColorJitter``: a uniformly random order of the four adjustments per image, each factor
  uniform in its range, the whole jitter applied with ``color_jitter_p`` (``RandomApply``);
- flips, grayscale, blur and solarisation with their probabilities; blur sigma ``~ U(sigma)``.

Examples:
    >>> import torch
    >>> from rela_hf.gpu_views.recipe import ViewRecipe
    >>> uniforms = row_uniforms(torch.tensor([1, 2, 3]), num_views=2)
    >>> uniforms.shape
    torch.Size([3, 2, 36])
    >>> sizes, recipe = torch.tensor([[28, 28]] * 3), ViewRecipe((32, 32), (0.5, 1.0))
    >>> params = sample_view_params(uniforms[:, 0], sizes, recipe)
    >>> params.boxes.shape, params.jitter_order.shape
    (torch.Size([3, 4]), torch.Size([3, 4]))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from rela_hf.gpu_views.recipe import ViewRecipe

__all__ = ["CROP_TRIES", "UNIFORMS_PER_VIEW", "ViewParams", "row_uniforms", "sample_view_params"]

CROP_TRIES = 10
"""torchvision's RandomResizedCrop tries this many boxes before the central fallback."""

# Where each step's uniforms sit in a view's block (fixed, so that changing one recipe's
# probabilities never shifts another step's random numbers).
_SLICES: dict[str, int | slice] = {
    "crop_scale": slice(0, CROP_TRIES),
    "crop_log_ratio": slice(CROP_TRIES, 2 * CROP_TRIES),
    "crop_top": 2 * CROP_TRIES,
    "crop_left": 2 * CROP_TRIES + 1,
    "flip": 22,
    "jitter_apply": 23,
    "jitter_order": slice(24, 28),
    "jitter_factors": slice(28, 32),
    "grayscale": 32,
    "blur_apply": 33,
    "blur_sigma": 34,
    "solarize": 35,
}
UNIFORMS_PER_VIEW = 36

#: Adjustment index -> the factor that leaves an image unchanged (brightness, contrast,
#: saturation multiply; hue shifts).
JITTER_IDENTITY = (1.0, 1.0, 1.0, 0.0)


@dataclass(frozen=True)
class ViewParams:
    """One view's random parameters for a batch of ``B`` images (tensors on one device).

    Attributes:
        boxes: ``(B, 4)`` float crop boxes ``(left, top, right, bottom)`` in pixels of each
            image (whole-pixel corners, as torchvision's ``RandomResizedCrop``).
        flip: ``(B,)`` bool, flip horizontally.
        jitter_order: ``(B, 4)`` long, a permutation of (brightness, contrast, saturation, hue).
        jitter_factors: ``(B, 4)`` float, the factors in that fixed (b, c, s, h) order; identity
            (1, 1, 1, 0) where the jitter or an adjustment is off.
        grayscale: ``(B,)`` bool.
        blur_sigma: ``(B,)`` float, 0 where the image is not blurred.
        solarize: ``(B,)`` bool.
    """

    boxes: Tensor
    flip: Tensor
    jitter_order: Tensor
    jitter_factors: Tensor
    grayscale: Tensor
    blur_sigma: Tensor
    solarize: Tensor


def row_uniforms(row_seeds: Tensor | Sequence[int], num_views: int) -> Tensor:
    """``(B, num_views, UNIFORMS_PER_VIEW)`` float64 uniforms in [0, 1), one generator per row.

    Args:
        row_seeds: one integer seed per row (e.g. ``rela_hf.training.sample_seed(seed, epoch,
            row)``); the same seed always gives the same uniforms, whatever the batch.
        num_views: views per row (the phase's view count).

    Returns:
        A CPU tensor; move it to the device with the images.
    """
    if num_views < 1:
        raise ValueError(f"row_uniforms: num_views must be >= 1, got {num_views}.")
    seeds = row_seeds.tolist() if isinstance(row_seeds, Tensor) else list(row_seeds)
    uniforms = torch.empty(len(seeds), num_views * UNIFORMS_PER_VIEW, dtype=torch.float64)
    generator = torch.Generator()
    for row, seed in enumerate(seeds):
        generator.manual_seed(int(seed))
        torch.rand(
            num_views * UNIFORMS_PER_VIEW,
            generator=generator,
            dtype=torch.float64,
            out=uniforms[row],
        )
    return uniforms.view(len(seeds), num_views, UNIFORMS_PER_VIEW)


def _uniform(u: Tensor, bounds: tuple[float, float]) -> Tensor:
    return bounds[0] + (bounds[1] - bounds[0]) * u


def _fallback_crop(heights: Tensor, widths: Tensor, ratio: tuple[float, float]) -> tuple[Tensor, Tensor]:
    """torchvision's central fallback: the whole image, clamped to the ratio range."""
    in_ratio = widths / heights
    too_tall, too_wide = in_ratio < min(ratio), in_ratio > max(ratio)
    h = torch.where(too_tall, torch.round(widths / min(ratio)), heights)
    w = torch.where(too_wide, torch.round(heights * max(ratio)), widths)
    return h, w


def crop_boxes(uniforms: Tensor, image_sizes: Tensor, recipe: ViewRecipe) -> Tensor:
    """``(B, 4)`` boxes ``(left, top, right, bottom)`` with RandomResizedCrop's distribution."""
    heights = image_sizes[:, 0:1].to(uniforms.dtype)
    widths = image_sizes[:, 1:2].to(uniforms.dtype)
    area = heights * widths
    target_area = area * _uniform(uniforms[:, _SLICES["crop_scale"]], recipe.crop_scale)
    log_ratio = (math.log(recipe.crop_ratio[0]), math.log(recipe.crop_ratio[1]))
    aspect = torch.exp(_uniform(uniforms[:, _SLICES["crop_log_ratio"]], log_ratio))
    w = torch.round(torch.sqrt(target_area * aspect))  # round half to even, as Python's round
    h = torch.round(torch.sqrt(target_area / aspect))
    fits = (w > 0) & (w <= widths) & (h > 0) & (h <= heights)
    first = fits.to(torch.int8).argmax(dim=1, keepdim=True)  # the first try that fits
    found = fits.any(dim=1)
    fallback_h, fallback_w = _fallback_crop(heights[:, 0], widths[:, 0], recipe.crop_ratio)
    h = torch.where(found, h.gather(1, first)[:, 0], fallback_h)
    w = torch.where(found, w.gather(1, first)[:, 0], fallback_w)
    free_h, free_w = heights[:, 0] - h, widths[:, 0] - w
    # randint(0, free + 1) for a found box, the centre (free // 2) for the fallback
    top = torch.where(found, torch.floor(uniforms[:, _SLICES["crop_top"]] * (free_h + 1)), free_h // 2)
    left = torch.where(found, torch.floor(uniforms[:, _SLICES["crop_left"]] * (free_w + 1)), free_w // 2)
    top, left = torch.minimum(top, free_h), torch.minimum(left, free_w)  # u < 1, but be safe
    return torch.stack([left, top, left + w, top + h], dim=1)


def _jitter_factors(uniforms: Tensor, recipe: ViewRecipe) -> Tensor:
    """``(B, 4)`` factors (b, c, s, h); identity where the jitter is not applied or off."""
    applied = uniforms[:, _SLICES["jitter_apply"]] < recipe.color_jitter_p
    raw = uniforms[:, _SLICES["jitter_factors"]]
    ranges = (recipe.brightness, recipe.contrast, recipe.saturation, recipe.hue)
    columns = []
    for index, bounds in enumerate(ranges):
        identity = torch.full_like(raw[:, index], JITTER_IDENTITY[index])
        factor = identity if bounds is None else _uniform(raw[:, index], bounds)
        columns.append(torch.where(applied, factor, identity))
    return torch.stack(columns, dim=1)


def sample_view_params(uniforms: Tensor, image_sizes: Tensor, recipe: ViewRecipe) -> ViewParams:
    """The random parameters of one view for a batch.

    Args:
        uniforms: ``(B, UNIFORMS_PER_VIEW)`` uniforms in [0, 1) (one view's block of
            :func:`row_uniforms`), on the device where the view is made.
        image_sizes: ``(B, 2)`` true ``(height, width)`` of each image (before padding).
        recipe: the view's recipe.
    """
    if uniforms.ndim != 2 or uniforms.shape[1] != UNIFORMS_PER_VIEW:
        raise ValueError(
            f"sample_view_params: expected uniforms of shape (B, {UNIFORMS_PER_VIEW}), got "
            f"{tuple(uniforms.shape)}; take one view's block of row_uniforms(...)[:, view]."
        )
    image_sizes = image_sizes.to(uniforms.device)
    blur = uniforms[:, _SLICES["blur_apply"]] < recipe.blur_p
    sigma = _uniform(uniforms[:, _SLICES["blur_sigma"]], recipe.blur_sigma)
    return ViewParams(
        boxes=crop_boxes(uniforms, image_sizes, recipe),
        flip=uniforms[:, _SLICES["flip"]] < recipe.flip_p,
        jitter_order=uniforms[:, _SLICES["jitter_order"]].argsort(dim=1),
        jitter_factors=_jitter_factors(uniforms, recipe),
        grayscale=uniforms[:, _SLICES["grayscale"]] < recipe.grayscale_p,
        blur_sigma=torch.where(blur, sigma, torch.zeros_like(sigma)),
        solarize=uniforms[:, _SLICES["solarize"]] < recipe.solarize_p,
    )
