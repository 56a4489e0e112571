"""Shared steps of every targets pass: input checks, image decoding, the prior over a batch.

Both the map-style passes (:mod:`rela_hf.targets.map_passes`) and the streaming path
(:mod:`rela_hf.targets.streaming`) decode images the same way, run the prior through
:func:`embed_images` (which checks shapes and finiteness, naming the offending row) and write
targets as fixed-length float32 Arrow columns.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import PIL.Image
import pyarrow as pa
import torch
from datasets.fingerprint import Hasher

from rela_hf.priors.prior import Prior
from rela_hf.targets.record import PriorIdentity
from rela_hf.whitening import PCAWhitening, first_non_finite_row

__all__ = [
    "TargetsPlan",
    "check_columns",
    "check_prior",
    "decode_image",
    "embed_encoded",
    "embed_images",
    "fingerprint",
    "fixed_size_column",
    "full_decoder_feature",
    "matrix_from_column",
    "resolve_n_components",
    "target_feature",
]


@dataclasses.dataclass(frozen=True)
class TargetsPlan:
    """What :func:`~rela_hf.targets.add_rela_targets` asks of a pass (map-style or streaming)."""

    prior: Prior
    identity: PriorIdentity
    whitening: PCAWhitening | None  # a fitted one to reuse, or None: fit on this dataset
    n_components: int
    image_column: str
    target_column: str
    embedding_column: str
    keep_embeddings: bool
    batch_size: int
    desc: str  # prefix of the progress-bar descriptions
    new_columns: list[str]


def check_prior(prior: Any) -> None:
    """A :class:`~rela_hf.priors.Prior`, or a TypeError that says how to make one."""
    if not isinstance(prior, Prior):
        raise TypeError(
            "prior must be a rela_hf.priors.Prior (from rela_hf.load_prior(...)), got "
            f"{type(prior).__name__}. Wrap timm/transformers models with load_prior so their "
            "preprocessing travels with them."
        )


def check_columns(features: Any, column_names: Sequence[str], image_column: str, new_columns: Sequence[str]) -> None:
    if image_column not in column_names:
        raise ValueError(
            f"Image column {image_column!r} not found; "
            f"the dataset has columns {list(column_names)}. "
            "Pass image_column=<the column holding the images>."
        )
    feature = features.get(image_column) if features is not None else None
    if feature is not None and not isinstance(feature, datasets.Image):
        raise ValueError(
            f"Column {image_column!r} is {feature!r}, not an image column. Cast it first, e.g. "
            f"dataset.cast_column({image_column!r}, datasets.Image()) for file paths or "
            "encoded bytes."
        )
    for column in new_columns:
        if column in column_names:
            raise ValueError(
                f"The dataset already has a column {column!r} (from an earlier run?). Remove it "
                "(dataset.remove_columns) or pick another target_column / embedding_column."
            )


def decode_image(value: Any, feature: Any, index: int, token_per_repo_id: Any = None) -> PIL.Image.Image:
    """A PIL image from whatever an image column holds; names the row when it cannot be read."""
    if isinstance(value, PIL.Image.Image):
        return value
    try:
        if isinstance(value, np.ndarray):
            return PIL.Image.fromarray(value)
        if isinstance(value, (str, os.PathLike)):
            value = {"path": str(value), "bytes": None}
        if isinstance(value, Mapping):
            image = feature.decode_example(dict(value), token_per_repo_id=token_per_repo_id)
            image.load()
            return image
        raise TypeError(f"unsupported image value of type {type(value).__name__}")
    except Exception as error:
        raise ValueError(f"Could not decode the image of row {index}: {error}") from error


def full_decoder_feature(feature: Any) -> Any:
    """A decoding ``datasets.Image`` feature with the mode of ``feature``."""
    mode = getattr(feature, "mode", None)
    return datasets.Image(mode=mode, decode=True)


def target_feature(length: int) -> datasets.List:
    """The schema of a target column: ``List(Value("float32"), length=k)``."""
    return datasets.List(datasets.Value("float32"), length=length)


def fixed_size_column(matrix: np.ndarray) -> pa.FixedSizeListArray:
    """An ``[N, D]`` matrix as a float32 fixed-size-list Arrow column."""
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def matrix_from_column(column: Any) -> np.ndarray:
    """``[N, D]`` float32 view of a fixed-size-list Arrow column (zero copy when possible)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    values = column.flatten().to_numpy(zero_copy_only=False)
    return values.reshape(len(column), column.type.list_size)


def embed_images(prior: Prior, images: list, indices: Sequence[int]) -> torch.Tensor:
    """Run the prior on decoded images and check what comes back."""
    embeddings = prior.embed(images)
    if embeddings.shape != (len(images), prior.embed_dim):
        raise ValueError(
            f"prior.embed returned shape {tuple(embeddings.shape)} for {len(images)} images; "
            f"expected ({len(images)}, {prior.embed_dim}) (prior.embed_dim)."
        )
    if (row := first_non_finite_row(embeddings)) is not None:
        raise ValueError(
            f"The prior {prior.name!r} produced a non-finite embedding (NaN/inf) "
            f"for row {indices[row]}. "
            "Check that image and its preprocessing, or run the prior in float32."
        )
    return embeddings.to(torch.float32)


def embed_encoded(
    prior: Prior,
    values: Sequence[Any],
    indices: Sequence[int],
    feature: Any,
    token_per_repo_id: Any = None,
) -> torch.Tensor:
    """Decode one batch of an image column (:func:`decode_image`) and embed it
    (:func:`embed_images`): the step every pass, map-style or streaming, repeats."""
    decoded = [
        decode_image(value, feature, index, token_per_repo_id) for value, index in zip(values, indices, strict=True)
    ]
    return embed_images(prior, decoded, indices)


def resolve_n_components(k: int | None, student_width: int | None, embed_dim: int) -> int:
    """ReLA's k: ``min(student width, prior width)`` (512 for a ResNet-18 student), else the
    prior width; checked against the prior width."""
    if k is None:
        k = embed_dim if student_width is None else min(int(student_width), embed_dim)
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}.")
    if k > embed_dim:
        raise ValueError(f"k={k} exceeds the prior's embedding width {embed_dim}; use k <= {embed_dim}.")
    return k


def fingerprint(*parts: Any) -> str:
    """A ``datasets`` fingerprint of JSON-able parts (the cache keys of the map passes)."""
    return Hasher.hash(json.dumps(parts, sort_keys=True, default=str))
