"""Decoding encoded images where the views are made (nvJPEG on a CUDA device).

When the dataset's image column is read undecoded (``datasets.Image(decode=False)``: the file's
bytes), the workers only read bytes and the device decodes them: JPEGs in one batched
``torchvision.io.decode_jpeg(..., device="cuda")`` call, other formats (PNG, WebP, ...) on the
CPU, then copied over. Every image becomes RGB ``uint8`` with its EXIF orientation applied, as
``datasets`` decodes it. Images whose shorter side exceeds ``max_short_side`` are shrunk on the
device (bilinear, antialiased), then :func:`~rela_hf.gpu_views.batching.stack_images` makes the
canvas.

torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec (0.16+), which is
not a dependency of rela-hf; they work and warn with a ``DeprecationWarning``.

Examples:
    >>> import io, torch
    >>> from PIL import Image
    >>> buffer = io.BytesIO(); Image.new("RGB", (6, 4), (255, 0, 0)).save(buffer, "PNG")
    >>> batch = decode_batch({"encoded": [buffer.getvalue()]}, "cpu")
    >>> batch["images"].shape, batch["image_sizes"].tolist()
    (torch.Size([1, 3, 4, 6]), [[4, 6]])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from rela_hf.gpu_views.batching import stack_images

__all__ = ["decode_batch", "decode_images"]

_JPEG_MAGIC = b"\xff\xd8\xff"


def _shrink(image: Tensor, max_short_side: int | None) -> Tensor:
    """Shrink a ``(C, h, w)`` uint8 image so that its shorter side is at most ``max_short_side``."""
    height, width = image.shape[1:]
    if max_short_side is None or min(height, width) <= max_short_side:
        return image
    scale = max_short_side / min(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    resized = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized[0].round_().clamp_(0, 255).to(torch.uint8)


def decode_images(
    encoded: Sequence[bytes | Tensor], device: torch.device | str, max_short_side: int | None = None
) -> list[Tensor]:
    """Decode files to ``(3, h, w)`` uint8 tensors on ``device`` (JPEGs on the GPU when CUDA)."""
    device = torch.device(device)
    data = [torch.frombuffer(bytearray(e), dtype=torch.uint8) if not isinstance(e, Tensor) else e for e in encoded]
    images: list[Tensor | None] = [None] * len(data)
    on_gpu = [i for i, d in enumerate(data) if device.type == "cuda" and bytes(d[:3].tolist()) == _JPEG_MAGIC]
    if on_gpu:
        decoded = decode_jpeg(
            [data[i] for i in on_gpu],
            mode=ImageReadMode.RGB,
            device=device,
            apply_exif_orientation=True,
        )
        for i, image in zip(on_gpu, decoded, strict=True):
            images[i] = image
    for i, d in enumerate(data):
        if images[i] is None:
            try:
                images[i] = decode_image(d, mode=ImageReadMode.RGB, apply_exif_orientation=True).to(device)
            except RuntimeError as error:
                raise ValueError(f"Image {i} of the batch cannot be decoded ({error}).") from error
    return [_shrink(image, max_short_side) for image in images if image is not None]


def decode_batch(
    batch: Mapping[str, Any], device: torch.device | str, max_short_side: int | None = None
) -> dict[str, Any]:
    """``{"encoded": [bytes, ...], ...}`` -> ``{"images", "image_sizes", ...}`` on ``device``."""
    if "encoded" not in batch:
        raise KeyError(f"decode_batch: the batch has no 'encoded' entry; it has {sorted(batch)}.")
    images, sizes = stack_images(decode_images(batch["encoded"], device, max_short_side))
    rest = {k: v for k, v in batch.items() if k != "encoded"}
    return {**rest, "images": images, "image_sizes": sizes}
