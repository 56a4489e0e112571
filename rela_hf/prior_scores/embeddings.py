"""What the scores are computed from: a fixed sample of the user's images, ReLA's augmented views
of them, and a prior's embeddings of both (timed, for the targets cost).

ReLA-D embeds every training image once, clean, with the prior's own deterministic preprocessing;
ReLA-F then regresses two *augmented* views of the image onto that fixed target. So a prior is
scored on the clean images (its targets) and on one ReLA view of each (what the student sees):
the view is drawn on the PIL image with ReLA's augmentation (random resized crop of scale 0.5-1,
flip, colour jitter, grayscale; :mod:`rela_hf.views`) and then goes through the prior's own
preprocessing, like the clean image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import datasets
import numpy as np
import PIL.Image
import torch
from torchvision.transforms import v2

from rela_hf.preprocessing import ConvertImageMode
from rela_hf.priors import Prior
from rela_hf.views import (
    HORIZONTAL_FLIP_P,
    RELA_COLOR_JITTER,
    RELA_COLOR_JITTER_P,
    RELA_CROP_SCALE,
    RELA_GRAYSCALE_P,
)
from rela_hf.whitening import first_non_finite_row

__all__ = [
    "ImageSample",
    "PriorEmbeddings",
    "embed_prior",
    "pixel_features",
    "rela_view",
    "sample_images",
]

#: Side of the raw-pixel reference representation (the images resized to it, flattened).
PIXEL_REFERENCE_SIZE = 32


@dataclass
class ImageSample:
    """A fixed random sample of the dataset's images (decoded, RGB) and their labels, if any."""

    images: list[PIL.Image.Image]
    labels: torch.Tensor | None
    indices: list[int]
    decode_seconds_per_image: float
    decode_cpu_seconds_per_image: float
    dataset_size: int


@dataclass
class PriorEmbeddings:
    """One prior's embeddings of the sample: clean (its targets) and one ReLA view per image."""

    clean: torch.Tensor
    views: torch.Tensor
    embed_seconds_per_image: float  # clean images, preprocessing + forward pass, wall-clock
    embed_cpu_seconds_per_image: float  # the same in CPU seconds of this process


def sample_images(
    dataset: datasets.Dataset,
    *,
    image_column: str = "image",
    label_column: str | None = None,
    max_samples: int | None = 512,
    seed: int = 0,
) -> ImageSample:
    """Decode ``max_samples`` images of ``dataset`` drawn at random with ``seed`` (all if fewer).

    Raises:
        ValueError: a column is missing, or the dataset has fewer than 3 images.
    """
    for role, column in (("image", image_column), ("label", label_column)):
        if column is not None and column not in dataset.column_names:
            raise ValueError(
                f"The dataset has no {role} column {column!r}; its columns are {dataset.column_names}. "
                f"Pass --{role}_column <column>" + (" (or 'none')." if role == "label" else ".")
            )
    size = len(dataset)
    count = size if max_samples is None else min(max_samples, size)
    if count < 3:
        raise ValueError(f"Scoring priors needs at least 3 images; the dataset has {size} (max_samples={max_samples}).")
    indices = sorted(torch.randperm(size, generator=torch.Generator().manual_seed(seed))[:count].tolist())
    subset = dataset.select(indices)
    start, cpu_start = time.perf_counter(), time.process_time()
    images = [ConvertImageMode("RGB")(image) for image in subset[image_column]]
    decode_seconds, decode_cpu_seconds = (
        time.perf_counter() - start,
        time.process_time() - cpu_start,
    )
    labels = torch.as_tensor(subset[label_column]).long() if label_column is not None else None
    return ImageSample(images, labels, indices, decode_seconds / count, decode_cpu_seconds / count, size)


def rela_view(image_size: int) -> v2.Compose:
    """ReLA's view augmentation on a PIL image, returning a PIL image (``image_size`` square) for
    the prior's own preprocessing."""
    return v2.Compose(
        [
            ConvertImageMode("RGB"),
            v2.RandomResizedCrop(image_size, scale=RELA_CROP_SCALE),
            v2.RandomHorizontalFlip(p=HORIZONTAL_FLIP_P),
            v2.RandomApply([v2.ColorJitter(*RELA_COLOR_JITTER)], p=RELA_COLOR_JITTER_P),
            v2.RandomGrayscale(p=RELA_GRAYSCALE_P),
        ]
    )


def _embed(prior: Prior, images: Sequence[PIL.Image.Image], batch_size: int) -> torch.Tensor:
    rows = torch.cat([prior.embed(images[start : start + batch_size]) for start in range(0, len(images), batch_size)])
    if (row := first_non_finite_row(rows)) is not None:
        raise ValueError(
            f"The prior {prior.name!r} gave a non-finite embedding (NaN/inf) for image {row} of the sample."
        )
    return rows


def embed_prior(
    prior: Prior, images: Sequence[PIL.Image.Image], *, batch_size: int = 64, seed: int = 0
) -> PriorEmbeddings:
    """The prior's embeddings of the clean images (timed) and of one ReLA view of each.

    The views are drawn with ``seed``, so every prior sees the same crops, flips and jitter.
    """
    start, cpu_start = time.perf_counter(), time.process_time()
    clean = _embed(prior, images, batch_size)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    input_size = int(prior.preprocessing.get("input_size", [3, 224, 224])[-1])
    augment = rela_view(input_size)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        views = [augment(image) for image in images]
    finally:
        torch.random.set_rng_state(state)
    return PriorEmbeddings(clean, _embed(prior, views, batch_size), seconds / len(images), cpu_seconds / len(images))


def pixel_features(images: Sequence[PIL.Image.Image], size: int = PIXEL_REFERENCE_SIZE) -> torch.Tensor:
    """The cheapest reference representation: each image resized to ``size`` px, RGB in [0, 1],
    flattened."""
    rows = [
        np.asarray(image.convert("RGB").resize((size, size), PIL.Image.Resampling.BILINEAR), dtype=np.float32).ravel()
        / 255.0
        for image in images
    ]
    return torch.from_numpy(np.stack(rows))
