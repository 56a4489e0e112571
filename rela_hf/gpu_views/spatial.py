"""Geometric augmentations of a batch of float images with per-image parameters.

- :func:`resized_crop`: each image's crop box resampled to the output size by PIL's bilinear
  filter, which torchvision's ``resize(antialias=True)`` reproduces: a triangle filter on
  half-pixel centres, widened to the shrink factor when shrinking (antialiasing), its weights
  renormalised over the pixels inside the box (only the crop is ever read, as PIL crops before
  it resizes). The filter is separable, so each image's resize is two small matrix products
  ``rows @ image @ columns^T`` with per-image matrices: one batched ``matmul`` per axis.
- :func:`horizontal_flip`: flip the images where a mask says so.
- :func:`gaussian_blur`: a separable Gaussian with one sigma per image (a grouped convolution,
  one group per image channel), edges replicated like PIL's blur.

Examples:
    >>> import torch
    >>> images = torch.rand(2, 3, 28, 28)
    >>> boxes = torch.tensor([[0.0, 0.0, 28.0, 28.0], [4.0, 2.0, 20.0, 26.0]])
    >>> resized_crop(images, boxes, (32, 32)).shape
    torch.Size([2, 3, 32, 32])
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "blur_kernel_radius",
    "gaussian_blur",
    "horizontal_flip",
    "resampling_matrices",
    "resized_crop",
]

BLUR_TRUNCATE = 4.0
"""The Gaussian kernel reaches this many of the largest sigma (PIL's blur has no cut-off;
beyond 4 sigma lies 0.006 % of the weight)."""


def resampling_matrices(start: Tensor, length: Tensor, output: int, canvas: int, dtype: torch.dtype) -> Tensor:
    """``(B, output, canvas)`` weights resampling ``[start, start + length)`` to ``output`` pixels.

    PIL's bilinear ``resize`` of a crop: output pixel ``i`` is centred at
    ``start + (i + 0.5) * scale`` with ``scale = length / output``; input pixel ``j`` (centre
    ``j + 0.5``) weighs ``max(0, 1 - |j + 0.5 - centre| / max(scale, 1))`` if it lies in the
    box, and the weights of each output pixel sum to one.
    """
    # float32 at least: pixel positions up to a few thousand keep ~1e-4 px precision
    dtype = torch.promote_types(dtype, torch.float32)
    start = start.to(dtype).view(-1, 1, 1)
    length = length.to(dtype).view(-1, 1, 1)
    scale = length / output
    output_index = torch.arange(output, device=start.device, dtype=dtype).view(1, -1, 1)
    centres = start + (output_index + 0.5) * scale
    pixels = torch.arange(canvas, device=start.device, dtype=dtype).view(1, 1, -1) + 0.5
    weights = (1.0 - (pixels - centres).abs() / scale.clamp(min=1.0)).clamp_(min=0.0)
    weights = weights * ((pixels > start) & (pixels < start + length))
    return weights / weights.sum(dim=2, keepdim=True)


def resized_crop(images: Tensor, boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """Crop each image to its box and resize the crop to ``size`` (PIL's antialiased bilinear).

    Args:
        images: ``(B, C, H, W)`` floats.
        boxes: ``(B, 4)`` ``(left, top, right, bottom)`` in pixels, one per image.
        size: ``(height, width)`` of the output.

    Returns:
        ``(B, C, height, width)``.
    """
    if boxes.shape != (images.shape[0], 4):
        raise ValueError(
            f"resized_crop: expected boxes of shape ({images.shape[0]}, 4), got "
            f"{tuple(boxes.shape)}: one (left, top, right, bottom) per image."
        )
    boxes = boxes.to(images.device)
    height, width = images.shape[-2:]
    columns = resampling_matrices(boxes[:, 0], boxes[:, 2] - boxes[:, 0], size[1], width, images.dtype)
    rows = resampling_matrices(boxes[:, 1], boxes[:, 3] - boxes[:, 1], size[0], height, images.dtype)
    columns, rows = columns.to(images.dtype), rows.to(images.dtype)
    resized_width = images @ columns.transpose(1, 2).unsqueeze(1)  # (B, C, H, size[1])
    return rows.unsqueeze(1) @ resized_width  # (B, C, size[0], size[1])


def horizontal_flip(images: Tensor, flip: Tensor) -> Tensor:
    """Mirror left-right the images where ``flip`` (``(B,)`` bool) is true."""
    return torch.where(flip.view(-1, 1, 1, 1), images.flip(-1), images)


def blur_kernel_radius(max_sigma: float) -> int:
    """Half-width in pixels of the blur kernel for sigmas up to ``max_sigma``."""
    return max(1, math.ceil(BLUR_TRUNCATE * max_sigma))


def _gaussian_kernels(sigma: Tensor, radius: int, dtype: torch.dtype) -> Tensor:
    """``(B, 2 radius + 1)`` normalised 1-D Gaussians; a unit impulse where sigma is 0."""
    offsets = torch.arange(-radius, radius + 1, device=sigma.device, dtype=torch.float64)
    sigma = sigma.to(torch.float64).unsqueeze(1)
    safe_sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))
    gaussian = torch.exp(-0.5 * (offsets / safe_sigma) ** 2)
    impulse = (offsets == 0).to(torch.float64).expand_as(gaussian)
    kernels = torch.where(sigma > 0, gaussian, impulse)
    return (kernels / kernels.sum(dim=1, keepdim=True)).to(dtype)


def gaussian_blur(images: Tensor, sigma: Tensor, max_sigma: float) -> Tensor:
    """Blur each image with a Gaussian of its own standard deviation (0: unchanged).

    Args:
        images: ``(B, C, H, W)`` floats.
        sigma: ``(B,)`` standard deviations in pixels, each in [0, ``max_sigma``].
        max_sigma: sets the kernel size (:func:`blur_kernel_radius`).
    """
    batch, channels, height, width = images.shape
    radius = blur_kernel_radius(max_sigma)
    kernels = _gaussian_kernels(sigma, radius, images.dtype).repeat_interleave(channels, dim=0)
    planes = images.reshape(1, batch * channels, height, width)
    groups = batch * channels
    planes = F.pad(planes, (radius, radius, 0, 0), mode="replicate")
    planes = F.conv2d(planes, kernels.view(groups, 1, 1, -1), groups=groups)
    planes = F.pad(planes, (0, 0, radius, radius), mode="replicate")
    planes = F.conv2d(planes, kernels.view(groups, 1, -1, 1), groups=groups)
    return planes.view(batch, channels, height, width)
