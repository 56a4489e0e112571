"""ReLA-D on a map-style dataset: two cached ``Dataset.map`` passes.

1. the prior runs once over the images and writes the raw embeddings (only that column: images
   are never copied); the whitening is fitted on them in one streaming float64 pass and cached
   next to them, so every rank loads the same one;
2. the embeddings are whitened into the target column (Arrow buffers in, Arrow buffers out).

Each pass has an explicit fingerprint, so results are cached, reused after an interruption and
identical on every rank. The batch functions are picklable classes, so ``num_proc`` workers
(spawned, one per GPU) can run them.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import datasets
import multiprocess
import pyarrow as pa
import torch
from datasets.utils.tqdm import tqdm

from rela_hf.targets.embedding import (
    TargetsPlan,
    check_columns,
    decode_image,
    embed_images,
    fingerprint,
    fixed_size_column,
    full_decoder_feature,
    matrix_from_column,
    target_feature,
)
from rela_hf.targets.record import load_whitening, save_whitening
from rela_hf.whitening import PCAWhitening

__all__ = ["add_targets_map_style"]


@dataclasses.dataclass
class _EmbedBatch:
    """Pass 1: decoded images -> ``[B, D]`` prior embeddings, written as an Arrow table."""

    prior: Any
    feature: Any
    embedding_column: str
    gpu_per_rank: bool = False
    cpu_threads: int | None = None  # CPU workers share the cores instead of each taking all
    token_per_repo_id: Any = None

    def __call__(self, images: list, indices: list[int], rank: int | None = None) -> pa.Table:
        if self.gpu_per_rank:  # one process per GPU (hf-conventions §6): cuda:{rank % count}
            device = torch.device(f"cuda:{(rank or 0) % torch.cuda.device_count()}")
            if self.prior.device != device:
                self.prior = self.prior.to(device)
        if self.cpu_threads and rank is not None and torch.get_num_threads() != self.cpu_threads:
            torch.set_num_threads(self.cpu_threads)
        decoded = [
            decode_image(v, self.feature, i, self.token_per_repo_id)
            for v, i in zip(images, indices, strict=True)
        ]
        embeddings = embed_images(self.prior, decoded, indices)
        return pa.table({self.embedding_column: fixed_size_column(embeddings.numpy())})


@dataclasses.dataclass
class _WhitenBatch:
    """Pass 2: ``[B, D]`` embeddings -> ``[B, k]`` targets (the embeddings optionally kept)."""

    whitening: PCAWhitening
    embedding_column: str
    target_column: str
    keep_embeddings: bool

    def __call__(self, table: pa.Table) -> pa.Table:
        column = table[self.embedding_column]
        targets = self.whitening.transform(matrix_from_column(column)).numpy()
        columns = {self.target_column: fixed_size_column(targets)}
        if self.keep_embeddings:
            columns[self.embedding_column] = column
        return pa.table(columns)


def add_targets_map_style(
    dataset: datasets.Dataset,
    plan: TargetsPlan,
    *,
    num_proc: int | None,
    load_from_cache_file: bool | None,
) -> tuple[Any, PCAWhitening]:
    """Both map passes over a map-style dataset; returns (dataset with targets, whitening)."""
    whitening = plan.whitening
    check_columns(dataset.features, dataset.column_names, plan.image_column, plan.new_columns)
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: there are no images to compute ReLA targets for.")
    if whitening is None and plan.n_components > len(dataset) - 1:
        raise ValueError(
            f"k={plan.n_components} components need at least {plan.n_components + 1} images "
            f"(N - 1 >= k), the dataset has {len(dataset)}. Pass a smaller k."
        )
    source_format = dataset.format
    unformatted = dataset.with_format(None)

    # Pass 1: the prior, once. Only the image column goes in and only the embeddings come out.
    embed_fingerprint = fingerprint(
        "rela_hf.embeddings/v1", dataset._fingerprint, plan.image_column,
        dataclasses.asdict(plan.identity),
    )
    embeddings = _embed_dataset(
        unformatted,
        plan.prior,
        image_column=plan.image_column,
        batch_size=plan.batch_size,
        num_proc=num_proc,
        new_fingerprint=embed_fingerprint,
        load_from_cache_file=load_from_cache_file,
        desc=f"{plan.desc}: embedding",
        embedding_column=plan.embedding_column,
    )
    if whitening is None:
        whitening = _fit_or_load_whitening(
            embeddings,
            plan.embedding_column,
            plan.n_components,
            embed_fingerprint,
            load_from_cache_file,
            plan.desc,
        )

    # Pass 2: whitening is cheap; work on Arrow buffers directly (no Python lists of floats).
    target_features = datasets.Features({plan.target_column: target_feature(whitening.n_components)})
    if plan.keep_embeddings:
        target_features[plan.embedding_column] = target_feature(plan.identity.embed_dim)
    targets = (
        embeddings.with_format("arrow")
        .map(
            _WhitenBatch(whitening, plan.embedding_column, plan.target_column, plan.keep_embeddings),
            batched=True,
            batch_size=4096,
            features=target_features,
            remove_columns=[plan.embedding_column],
            new_fingerprint=fingerprint(
                "rela_hf.targets/v1",
                embed_fingerprint,
                whitening.sha256(),
                plan.target_column,
                plan.keep_embeddings,
            ),
            load_from_cache_file=load_from_cache_file,
            desc=f"{plan.desc}: whitening",
        )
        .with_format(None)
    )
    result = datasets.concatenate_datasets([unformatted, targets], axis=1)
    if source_format.get("type") is not None or source_format.get("columns") is not None:
        columns = source_format.get("columns")
        result = result.with_format(
            source_format["type"],
            columns=None if columns is None else [*columns, *plan.new_columns],
            output_all_columns=source_format.get("output_all_columns", False),
            **source_format.get("format_kwargs", {}),
        )
    return result, whitening


def _embed_dataset(
    dataset,
    prior,
    *,
    image_column,
    batch_size,
    num_proc,
    new_fingerprint,
    load_from_cache_file,
    desc,
    embedding_column,
):
    feature = dataset.features[image_column]
    images = dataset.select_columns([image_column]).cast_column(
        image_column, datasets.Image(decode=False)
    )
    gpus = torch.cuda.device_count() if prior.device.type == "cuda" else 0
    if num_proc is None and gpus > 1:
        num_proc = gpus
    num_proc = min(num_proc, len(dataset)) if num_proc and num_proc > 1 else None
    gpu_per_rank = bool(num_proc and gpus > 0)
    cpu_threads = max(1, (os.cpu_count() or 1) // num_proc) if num_proc and not gpus else None
    original_device = prior.device
    if num_proc:
        _require_spawn_start_method(num_proc)
    if gpu_per_rank:
        prior = prior.to("cpu")  # each worker moves its own copy to cuda:{rank % gpus}
    try:
        return images.map(
            _EmbedBatch(
                prior, full_decoder_feature(feature), embedding_column, gpu_per_rank, cpu_threads
            ),
            input_columns=[image_column],
            with_indices=True,
            with_rank=True,
            batched=True,
            batch_size=batch_size,
            remove_columns=[image_column],
            features=datasets.Features({embedding_column: target_feature(prior.embed_dim)}),
            num_proc=num_proc,
            new_fingerprint=new_fingerprint,
            load_from_cache_file=load_from_cache_file,
            desc=desc,
        )
    finally:
        if gpu_per_rank:
            prior.to(original_device)


def _require_spawn_start_method(num_proc: int) -> None:
    """Worker processes must be spawned: the prior already ran here (load_prior probes it), and a
    forked child can neither re-initialise CUDA nor reuse torch's CPU thread pool (it hangs)."""
    if multiprocess.get_start_method(allow_none=True) != "spawn":
        raise RuntimeError(
            f"Embedding with num_proc={num_proc} processes needs the 'spawn' start method (a "
            "forked process cannot re-initialise CUDA, and torch's CPU threads hang after a "
            "fork). In your "
            "script, under if __name__ == '__main__':, call multiprocess.set_start_method('spawn') "
            "first, or leave num_proc=None (one process)."
        )


def _fit_or_load_whitening(
    embeddings, embedding_column, n_components, embed_fingerprint, load_from_cache_file, desc
):
    """Fit on the cached embeddings; the result is cached next to them so every rank shares it."""
    cache_path = None
    if embeddings.cache_files:
        key = fingerprint("rela_hf.whitening/v1", embed_fingerprint, n_components)
        cache_path = (
            Path(embeddings.cache_files[0]["filename"]).parent / f"rela_whitening-{key}.safetensors"
        )
        use_cache = (
            datasets.is_caching_enabled() if load_from_cache_file is None else load_from_cache_file
        )
        if use_cache and cache_path.exists():
            return load_whitening(cache_path)
    whitening = PCAWhitening(n_components)
    arrow = embeddings.with_format("arrow")
    chunk = 8192
    with tqdm(total=len(arrow), desc=f"{desc}: fitting whitening", unit=" examples") as bar:
        for start in range(0, len(arrow), chunk):
            table = arrow[start : start + chunk]
            whitening.update(matrix_from_column(table[embedding_column]))
            bar.update(table.num_rows)
    whitening.finalize()
    if cache_path is not None:
        save_whitening(whitening, cache_path)
    return whitening
