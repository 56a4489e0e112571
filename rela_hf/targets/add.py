"""``add_rela_targets``: ReLA's efficient targets as a new dataset column (ReLA-D).

ReLA (Sun, Jiang & Lin, "Efficiency for Free: Ideal Data Are Transportable Representations",
NeurIPS 2024, arXiv:2405.14669) pairs every training image with one fixed target: the pooled
embedding of a *prior* model, PCA-whitened to ``k = min(student width, prior width)`` components
(:class:`rela_hf.whitening.PCAWhitening`). This module checks the arguments, runs the passes
(:mod:`~rela_hf.targets.map_passes` or :mod:`~rela_hf.targets.streaming`) and attaches the
provenance record (:mod:`~rela_hf.targets.record`) to the result's target column
(:mod:`~rela_hf.targets.provenance`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import PIL.Image
import pyarrow as pa
import torch

from rela_hf.priors.prior import Prior
from rela_hf.targets.embedding import TargetsPlan, check_prior, embed_images, resolve_n_components
from rela_hf.targets.map_passes import add_targets_map_style
from rela_hf.targets.provenance import with_rela_targets_info
from rela_hf.targets.record import (
    DEFAULT_EMBEDDING_COLUMN,
    DEFAULT_TARGET_COLUMN,
    DatasetSource,
    PriorIdentity,
    RelaTargetsInfo,
)
from rela_hf.targets.streaming import add_targets_streaming
from rela_hf.whitening import PCAWhitening

__all__ = ["add_rela_targets", "whiten_new_images"]


def add_rela_targets(
    dataset: datasets.Dataset | datasets.IterableDataset,
    prior: Prior,
    *,
    k: int | None = None,
    student_width: int | None = None,
    whitening: PCAWhitening | RelaTargetsInfo | None = None,
    image_column: str = "image",
    target_column: str = DEFAULT_TARGET_COLUMN,
    keep_embeddings: bool = False,
    embedding_column: str = DEFAULT_EMBEDDING_COLUMN,
    batch_size: int = 64,
    num_proc: int | None = None,
    source: Mapping[str, Any] | None = None,
    load_from_cache_file: bool | None = None,
    desc: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """Add ReLA's efficient targets (arXiv:2405.14669, ReLA-D) to an image dataset.

    Map-style datasets take two ``Dataset.map`` passes, each with an explicit fingerprint (so
    results are cached, reused after an interruption and identical on every rank):

    1. the prior runs once over the images (eval mode, no gradients) and writes the raw embeddings
       (only that column is written: images are never copied); the whitening is fitted on them in
       one streaming float64 pass and cached next to them, so every rank loads the same one (or
       ``whitening=`` is reused, e.g. the train split's for a test split);
    2. the embeddings are whitened into ``target_column``, ``List(Value("float32"), length=k)``,
       and dropped unless ``keep_embeddings``.

    The result is the input with the new column(s); its :class:`RelaTargetsInfo` (prior id,
    revision, preprocessing, source, whitening) is recorded in the target column's feature, so
    it follows the data through ``select``, ``shuffle``, ``map``, ``save_to_disk``,
    ``push_to_hub``... and :func:`rela_targets_info` reads it back. Nothing is returned (or
    saved, or pushed) unless every image was embedded successfully.

    A streaming ``IterableDataset`` is read once to fit the whitening; the returned
    ``IterableDataset`` computes the column lazily (so the prior runs a second time, as it is
    iterated; a stream without known features has them inferred from its first batch, so that
    the record can be kept in them). On CPU, ``num_proc=N`` embeds ``N`` batches at once on worker
    threads of this process, with ``cores // N`` torch threads each
    (:mod:`rela_hf.targets.workers`). On several GPUs (prior on CUDA), one process per GPU is
    used; these need spawned workers: call it under ``if __name__ == "__main__":`` after
    ``multiprocess.set_start_method("spawn")``. Under ``accelerate launch``, compute on the main
    process first (``with accelerator.main_process_first():``): the other ranks then load the
    cached result (datasets loaded from the Hub or disk are cached; in-memory ones are not),
    since the fingerprints do not depend on the process.

    Args:
        dataset: images in ``image_column`` (any PIL mode: the prior's transform converts).
        prior: from :func:`rela_hf.load_prior`.
        k: number of target dimensions; default ``min(student_width, prior.embed_dim)``, or
            ``prior.embed_dim`` without ``student_width``. Needs at least ``k + 1`` images.
        student_width: the student backbone's feature width (512 for ResNet-18).
        whitening: reuse a fitted whitening (or a :class:`RelaTargetsInfo`, whose prior must match)
            instead of fitting one on this dataset.
        keep_embeddings: also keep the raw prior embeddings in ``embedding_column``.
        batch_size: images per prior forward pass.
        num_proc: workers for the embedding pass: threads on CPU (at most one per core),
            processes on CUDA (default: one per GPU when several are visible, else one).
        source: provenance of the images to record, keys ``id``, ``config``, ``split``,
            ``revision`` (pin the commit sha); defaults from ``dataset.info``.
        load_from_cache_file: as in ``Dataset.map`` (default: datasets' caching setting).
        desc: prefix of the progress-bar descriptions.
    """
    check_prior(prior)
    if isinstance(dataset, datasets.DatasetDict | datasets.IterableDatasetDict):
        raise TypeError(
            "add_rela_targets takes one split. Fit on the training split, then reuse its "
            "whitening: test = add_rela_targets(ds['test'], prior, "
            "whitening=rela_targets_info(train))."
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    identity = PriorIdentity.of(prior)
    fitted, whitening_source = _reusable_whitening(whitening, identity)
    if fitted:
        assert fitted.n_components is not None  # _reusable_whitening checked it is fitted
        n_components = fitted.n_components
    else:
        n_components = resolve_n_components(k, student_width, prior.embed_dim)
    if fitted and k is not None and k != fitted.n_components:
        raise ValueError(f"k={k} disagrees with the given whitening's {fitted.n_components} components.")
    new_columns = [target_column] + ([embedding_column] if keep_embeddings else [])
    if target_column == embedding_column:
        raise ValueError(f"target_column and embedding_column must differ, both are {target_column!r}.")
    desc = desc or f"ReLA targets from {identity.short_name}"
    source_info = DatasetSource.of(dataset, **dict(source or {}))
    plan = TargetsPlan(
        prior=prior,
        identity=identity,
        whitening=fitted,
        n_components=n_components,
        image_column=image_column,
        target_column=target_column,
        embedding_column=embedding_column,
        keep_embeddings=keep_embeddings,
        batch_size=batch_size,
        desc=desc,
        new_columns=new_columns,
    )
    if isinstance(dataset, datasets.IterableDataset):
        _require_typeable_stream(dataset)
        result, fitted = add_targets_streaming(dataset, plan)
    elif isinstance(dataset, datasets.Dataset):
        result, fitted = add_targets_map_style(
            dataset, plan, num_proc=num_proc, load_from_cache_file=load_from_cache_file
        )
    else:
        raise TypeError(f"dataset must be a datasets.Dataset or IterableDataset, got {type(dataset).__name__}.")
    if source_info.num_rows is None and whitening is None:  # a stream, counted by the fit
        source_info = dataclasses.replace(source_info, num_rows=fitted.n_samples)
    info = RelaTargetsInfo(
        prior=identity,
        source=source_info,
        whitening=fitted,
        target_column=target_column,
        embedding_column=embedding_column if keep_embeddings else None,
        whitening_source=whitening_source,
    )
    return with_rela_targets_info(result, info)


def _require_typeable_stream(dataset: datasets.IterableDataset) -> None:
    """The record is kept in the features: a stream must declare them or let them be inferred.

    Checked on the first rows before the stream is read to fit the whitening, so a stream of
    untyped objects (PIL images without a ``datasets.Image`` feature) fails before any work.
    """
    if dataset.features is not None:
        return
    try:
        datasets.concatenate_datasets([dataset.take(5)])  # infers features from those rows
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as error:
        raise ValueError(
            "The stream's features are unknown and cannot be inferred from its first rows "
            f"({error}); the targets' record is kept in the features. Declare them, e.g. "
            "IterableDataset.from_generator(..., features=datasets.Features({'image': "
            "datasets.Image(), ...})) or stream.cast(features)."
        ) from error


def _reusable_whitening(
    whitening: PCAWhitening | RelaTargetsInfo | None, identity: PriorIdentity
) -> tuple[PCAWhitening | None, DatasetSource | None]:
    if whitening is None:
        return None, None
    if isinstance(whitening, RelaTargetsInfo):
        recorded = whitening.prior
        if recorded.fingerprint != identity.fingerprint:
            raise ValueError(
                f"The given targets info was made with prior {recorded.name!r} (revision "
                f"{recorded.revision}, fingerprint {recorded.fingerprint}), not with this prior "
                f"{identity.name!r} (revision {identity.revision}, "
                f"fingerprint {identity.fingerprint}): "
                "other weights or preprocessing would give targets that are not comparable."
            )
        return whitening.whitening, whitening.whitening_source or whitening.source
    if not isinstance(whitening, PCAWhitening):
        raise TypeError(f"whitening must be a PCAWhitening or RelaTargetsInfo, got {type(whitening).__name__}.")
    whitening._require_fitted()
    if whitening.n_features != identity.embed_dim:
        raise ValueError(
            f"The whitening was fit on {whitening.n_features}-d embeddings; this prior gives {identity.embed_dim}-d."
        )
    return whitening, None


def whiten_new_images(
    images: Sequence[PIL.Image.Image] | torch.Tensor,
    prior: Prior,
    whitening: PCAWhitening | RelaTargetsInfo,
) -> torch.Tensor:
    """ReLA targets ``float32 [B, k]`` for new images, computed exactly like the dataset's.

    Pass the dataset's :class:`RelaTargetsInfo` to also check that ``prior`` is the same prior
    (name, revision, preprocessing, weights) the targets were made with.
    """
    check_prior(prior)
    fitted, _ = _reusable_whitening(whitening, PriorIdentity.of(prior))
    if isinstance(images, torch.Tensor):
        embeddings = prior.embed(images)
    else:
        embeddings = embed_images(prior, list(images), range(len(images)))
    assert fitted is not None  # whitening is not None, so _reusable_whitening returned one
    return fitted.transform(embeddings)
