"""The device part: a batch of 8-bit images -> the normalised views of every recipe.

:func:`make_views` is the whole on-device pipeline; :func:`views_for_batch` is the few lines a
training loop calls on each batch after it reaches the device. The images arrive as one padded
``uint8`` canvas with each image's true size (:mod:`rela_hf.gpu_views.batching`), the per-row
seeds with them; the views are the twins of the PIL views (same steps, same order, same
parameter distributions), computed for the whole batch at once:

crop + resize -> flip -> colour jitter (p, random order) -> grayscale -> blur -> solarise ->
normalise.

Examples:
    >>> import torch
    >>> from rela_hf.gpu_views.recipe import method_view_recipes
    >>> images = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)   # grey, like F-MNIST
    >>> sizes = torch.tensor([[28, 28]] * 4)
    >>> views = make_views(images, sizes, torch.arange(4), method_view_recipes("byol", 32))
    >>> len(views), views[0].shape, views[0].dtype
    (2, torch.Size([4, 3, 32, 32]), torch.float32)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from rela_hf.gpu_views.color import color_jitter, random_grayscale, solarize
from rela_hf.gpu_views.recipe import ViewRecipe
from rela_hf.gpu_views.sampling import row_uniforms, sample_view_params
from rela_hf.gpu_views.spatial import gaussian_blur, horizontal_flip, resized_crop

__all__ = ["BATCH_KEYS", "apply_recipe", "make_views", "views_for_batch"]

#: What :func:`views_for_batch` takes out of a batch (and replaces by ``"views"``).
BATCH_KEYS = ("images", "image_sizes", "row_seeds")


def apply_recipe(images: Tensor, image_sizes: Tensor, uniforms: Tensor, recipe: ViewRecipe) -> Tensor:
    """One view of every image.

    Args:
        images: ``(B, C, H, W)`` floats in [0, 1], ``C`` 1 (grey) or 3 (RGB), padded canvas.
        image_sizes: ``(B, 2)`` each image's ``(height, width)`` inside the canvas.
        uniforms: ``(B, UNIFORMS_PER_VIEW)`` this view's uniforms.
        recipe: the view's recipe.

    Returns:
        ``(B, 3, *recipe.size)`` normalised float views.
    """
    params = sample_view_params(uniforms, image_sizes, recipe)
    views = resized_crop(images, params.boxes, recipe.size)
    views = views.expand(-1, 3, -1, -1) if views.shape[1] == 1 else views  # grey -> RGB, as PIL
    views = horizontal_flip(views, params.flip)
    if recipe.jitters:
        views = color_jitter(views, params.jitter_order, params.jitter_factors, hue=recipe.hue is not None)
    if recipe.grayscale_p > 0:
        views = random_grayscale(views, params.grayscale)
    if recipe.blur_p > 0:
        views = gaussian_blur(views, params.blur_sigma.to(views.dtype), recipe.blur_sigma[1])
    if recipe.solarize_p > 0:
        views = solarize(views, params.solarize, recipe.solarize_threshold)
    mean = views.new_tensor(recipe.mean).view(1, -1, 1, 1)
    std = views.new_tensor(recipe.std).view(1, -1, 1, 1)
    return (views - mean) / std


def make_views(
    images: Tensor,
    image_sizes: Tensor,
    row_seeds: Tensor | Sequence[int],
    recipes: Sequence[ViewRecipe],
    *,
    channels_last: bool = False,
) -> list[Tensor]:
    """The views of a batch, one ``(B, 3, h, w)`` float tensor per recipe, on the images' device.

    Args:
        images: ``(B, C, H, W)`` ``uint8`` canvas (``C`` 1 or 3), on the device to work on.
        image_sizes: ``(B, 2)`` true ``(height, width)`` of each image in the canvas.
        row_seeds: ``(B,)`` per-row seeds (``sample_seed(seed, epoch, row)``): a row's views
            depend on its seed only.
        recipes: one per view (:func:`~rela_hf.gpu_views.recipe.method_view_recipes`,
            :func:`~rela_hf.gpu_views.recipe.rela_view_recipes`).
        channels_last: return channels-last tensors (for channels-last convolutions).
    """
    if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(
            f"make_views: expected a (B, 1 or 3, H, W) uint8 batch, got {images.dtype} "
            f"{tuple(images.shape)}; collate the images with rela_hf.gpu_views.ImageCollator."
        )
    if image_sizes.shape != (images.shape[0], 2):
        raise ValueError(
            f"make_views: image_sizes must be ({images.shape[0]}, 2), got "
            f"{tuple(image_sizes.shape)}: one (height, width) per image."
        )
    if not recipes:
        raise ValueError("make_views: need at least one view recipe.")
    uniforms = row_uniforms(row_seeds, len(recipes)).to(images.device, non_blocking=True)
    pixels = images.float().div_(255.0)
    views = [apply_recipe(pixels, image_sizes, uniforms[:, i], r) for i, r in enumerate(recipes)]
    if channels_last:
        views = [view.contiguous(memory_format=torch.channels_last) for view in views]
    return views


def views_for_batch(
    batch: Mapping[str, Any],
    recipes: Sequence[ViewRecipe],
    device: torch.device | str | None = None,
    *,
    channels_last: bool = False,
) -> dict[str, Any]:
    """A collated image batch as the trainer's view batch: ``images`` etc. -> ``views``.

    Args:
        batch: ``{"images", "image_sizes", "row_seeds"[, "targets"][, "labels"]}`` from
            :class:`~rela_hf.gpu_views.batching.ImageCollator`.
        recipes: the phase's view recipes.
        device: where to make the views (default: where ``images`` already is).
        channels_last: channels-last views.

    Returns:
        The batch without ``BATCH_KEYS``, with ``"views"`` (a list of tensors) on ``device``;
        the other entries are moved there too.
    """
    missing = [key for key in BATCH_KEYS if key not in batch]
    if missing:
        raise KeyError(f"views_for_batch: the batch has no {missing}; it has {sorted(batch)}.")
    device = torch.device(device) if device is not None else batch["images"].device
    images = batch["images"].to(device, non_blocking=True)
    views = make_views(images, batch["image_sizes"], batch["row_seeds"], recipes, channels_last=channels_last)
    rest = {
        k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v)
        for k, v in batch.items()
        if k not in BATCH_KEYS
    }
    return {"views": views, **rest}
