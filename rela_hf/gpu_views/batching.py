"""The host part: dataset rows -> one padded ``uint8`` canvas per batch, plus per-row seeds.

With the batched views the DataLoader workers do no augmentation at all. Each row becomes an
8-bit ``(C, h, w)`` tensor (:func:`image_to_uint8`: grey images stay one channel, everything else
becomes RGB, as ``ConvertImageMode`` does for the PIL views); a batch is stacked into one canvas
the size of its largest image (:func:`stack_images`), each image in the top-left corner with its
last row and column repeated into the padding, so bilinear reads at a crop's edge see the image's
own edge, never a border. The true sizes travel with the canvas: crop boxes are drawn inside
them, so a padded image gets the same crops as the image alone.

:class:`ImageRowsDataset` is the batched views' counterpart of ``rela_hf.training.ViewDataset``:
same columns, same per-row seeds (``sample_seed(seed, epoch, row)``), but rows stay images;
:class:`ImageCollator` stacks them. No phase here: the views are made on the device with the
phase's recipes (:func:`rela_hf.gpu_views.pipeline.views_for_batch`).

Examples:
    >>> import torch
    >>> grey = torch.zeros(1, 4, 6, dtype=torch.uint8)
    >>> colour = torch.ones(3, 5, 2, dtype=torch.uint8)
    >>> canvas, sizes = stack_images([grey, colour])
    >>> canvas.shape, sizes.tolist()
    (torch.Size([2, 3, 5, 6]), [[4, 6], [5, 2]])
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from rela_hf.gpu_views.recipe import ViewRecipe
from rela_hf.preprocessing import ConvertImageMode
from rela_hf.seeds import sample_seed

__all__ = [
    "ImageCollator",
    "ImageRowsDataset",
    "encoded_bytes",
    "image_to_uint8",
    "lossless_short_side",
    "stack_images",
]

_GREY_MODES = ("1", "L", "LA")


def lossless_short_side(recipes: Sequence[ViewRecipe]) -> int:
    """The shortest side an image can be shrunk to without its smallest crop falling below the
    output resolution: ``max(output side / sqrt(min crop scale))`` over the recipes (792 px for
    BYOL's 224 px views with scale 0.08, 317 px for ReLA's with 0.5)."""
    return max(math.ceil(max(r.size) / math.sqrt(r.crop_scale[0])) for r in recipes)


def encoded_bytes(value: Any) -> bytes:
    """The file bytes of an undecoded ``datasets.Image`` value (``{"bytes", "path"}``) or bytes."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Mapping):
        if value.get("bytes"):
            return bytes(value["bytes"])
        if value.get("path"):
            with open(value["path"], "rb") as file:
                return file.read()
    raise TypeError(
        f"Expected encoded image bytes or a datasets.Image(decode=False) value, got "
        f"{type(value).__name__}; cast the column with datasets.Image(decode=False)."
    )


def image_to_uint8(image: PIL.Image.Image, max_short_side: int | None = None) -> Tensor:
    """An image as a ``(C, h, w)`` ``uint8`` tensor: ``C`` = 1 for grey, 3 otherwise.

    Args:
        image: a PIL image of any mode (grey, 16-bit grey, palette, RGBA, CMYK, ...).
        max_short_side: shrink (PIL bilinear, antialiased) images whose shorter side is longer,
            to bound the batch canvas; ``None`` keeps every image as it is.
    """
    grey = image.mode in _GREY_MODES or image.mode.startswith("I;16")
    image = ConvertImageMode("L" if grey else "RGB")(image)
    if max_short_side is not None and min(image.size) > max_short_side:
        scale = max_short_side / min(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, PIL.Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.uint8)
    tensor = torch.from_numpy(array.copy())
    return tensor.unsqueeze(0) if grey else tensor.permute(2, 0, 1).contiguous()


def stack_images(images: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """One ``(B, C, H, W)`` canvas of ``(C, h, w)`` images and their ``(B, 2)`` sizes.

    ``H, W`` are the largest height and width; grey images are repeated to three channels when
    the batch mixes grey and colour. Pure torch, so it runs wherever the images are.
    """
    if not images:
        raise ValueError("stack_images: got no images.")
    channels = max(image.shape[0] for image in images)
    height = max(image.shape[1] for image in images)
    width = max(image.shape[2] for image in images)
    padded = []
    for image in images:
        image = image.expand(channels, -1, -1) if image.shape[0] != channels else image
        pad = (0, width - image.shape[2], 0, height - image.shape[1])
        padded.append(F.pad(image, pad, mode="replicate") if any(pad) else image)
    sizes = torch.tensor([list(image.shape[1:]) for image in images], dtype=torch.int64)
    return torch.stack(padded), sizes


class ImageRowsDataset(Dataset):
    """Rows as 8-bit images with their per-row seed (+ ReLA target, + label).

    Items are ``{"image": (C, h, w) uint8, "row_seed": int[, "targets"][, "labels"]}``; the seed
    is ``sample_seed(seed, epoch, row)``, as the PIL views' ``ViewDataset`` uses. Call
    :meth:`set_epoch` before each epoch's iterator.

    Args:
        dataset: a map-style ``datasets.Dataset`` with a PIL image column.
        image_column, target_column, label_column: as ``ViewDataset``'s.
        seed: base seed of the augmentations.
        max_short_side: see :func:`image_to_uint8` (:func:`lossless_short_side` is a safe bound).
        decode: ``False`` reads the image files undecoded: items carry ``"encoded"`` bytes
            instead of ``"image"``, for :func:`rela_hf.gpu_views.decode.decode_batch` to decode
            on the device.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        image_column: str = "image",
        target_column: str | None = None,
        label_column: str | None = None,
        seed: int = 0,
        max_short_side: int | None = None,
        decode: bool = True,
    ) -> None:
        columns = [image_column] + [c for c in (target_column, label_column) if c is not None]
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"ImageRowsDataset: columns {missing} are not in the dataset (it has {dataset.column_names})."
            )
        arrays = [c for c in (target_column, label_column) if c is not None]
        if not decode:
            dataset = dataset.cast_column(image_column, datasets.Image(decode=False))
        self.data = dataset.select_columns(columns).with_format("numpy", columns=arrays, output_all_columns=True)
        self.image_column, self.target_column, self.label_column = (
            image_column,
            target_column,
            label_column,
        )
        self.seed, self.epoch, self.max_short_side = int(seed), 0, max_short_side
        self.decode = decode

    def set_epoch(self, epoch: int) -> None:
        """Epoch that seeds the augmentations."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        indices = [int(i) for i in indices]
        try:
            rows = self.data[indices]
        except (OSError, SyntaxError, ValueError) as error:  # what PIL raises for a bad file
            raise ValueError(
                f"Rows {indices[0]}..{indices[-1]} of the training data: an {self.image_column!r} "
                f"image cannot be decoded ({type(error).__name__}: {error}). Find it with the "
                "trainer's --verify_images true, remove it (dataset.filter) and resume."
            ) from error
        items = []
        for position, index in enumerate(indices):
            value = rows[self.image_column][position]
            item: dict[str, Any] = {"row_seed": sample_seed(self.seed, self.epoch, index)}
            if self.decode:
                item["image"] = image_to_uint8(value, self.max_short_side)
            else:
                item["encoded"] = encoded_bytes(value)
            if self.target_column is not None:
                item["targets"] = torch.from_numpy(np.asarray(rows[self.target_column][position]))
            if self.label_column is not None:
                item["labels"] = int(rows[self.label_column][position])
            items.append(item)
        return items

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]


class ImageCollator:
    """Items of :class:`ImageRowsDataset` -> ``{"images", "image_sizes", "row_seeds"[, ...]}``.

    ``images`` is the padded ``uint8`` canvas (pin it and copy it to the device: a quarter of
    the bytes of float views), ``row_seeds`` an int64 tensor; targets and labels are collated
    as ``default_collate`` does. Undecoded items (``decode=False``) give ``"encoded"``, the
    list of their bytes, instead of ``images`` and ``image_sizes``.
    """

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        seeds = torch.tensor([item["row_seed"] for item in items], dtype=torch.int64)
        batch: dict[str, Any] = {"row_seeds": seeds}
        if "encoded" in items[0]:
            batch["encoded"] = [item["encoded"] for item in items]
        else:
            batch["images"], batch["image_sizes"] = stack_images([item["image"] for item in items])
        pixels = ("image", "encoded", "row_seed")
        rest = [{k: v for k, v in item.items() if k not in pixels} for item in items]
        if rest[0]:
            batch.update(default_collate(rest))
        return batch
