"""ReLA-D on a map-style dataset: two cached ``Dataset.map`` passes.

1. the prior runs once over the images and writes the raw embeddings (only that column: images
   are never copied); the whitening is fitted on them in one streaming float64 pass and cached
   next to them, so every rank loads the same one;
2. the embeddings are whitened into the target column (Arrow buffers in, Arrow buffers out).

Each pass has an explicit fingerprint, so results are cached, reused after an interruption and
identical on every rank. ``num_proc`` spreads pass 1 over worker threads on CPU or one spawned
process per GPU (:mod:`~rela_hf.targets.workers`); the batch functions are picklable classes, so
the GPU processes can run them.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
import torch
from datasets.utils.tqdm import tqdm

from rela_hf.targets.embedding import (
    TargetsPlan,
    check_columns,
    embed_encoded,
    fingerprint,
    fixed_size_column,
    full_decoder_feature,
    matrix_from_column,
    target_feature,
)
from rela_hf.targets.record import load_whitening, save_whitening
from rela_hf.targets.workers import (
    WorkerPlan,
    plan_workers,
    require_spawn_start_method,
    worker_threads,
)
from rela_hf.whitening import PCAWhitening

__all__ = ["add_targets_map_style"]


@dataclasses.dataclass
class _EmbedBatch:
    """Pass 1: encoded images -> ``[B, D]`` prior embeddings, written as an Arrow table.

    A map batch holds ``workers * batch_size`` images; it is embedded ``batch_size`` at a time
    (on the worker threads, when there are several), so every forward pass sees the images it
    would see with one worker.
    """

    prior: Any
    feature: Any
    embedding_column: str
    batch_size: int
    gpu_per_rank: bool = False
    token_per_repo_id: Any = None
    threads: ThreadPoolExecutor | None = None  # CPU worker threads (never pickled: no GPU use)

    def __call__(self, images: list, indices: list[int], rank: int | None = None) -> pa.Table:
        if self.gpu_per_rank:  # one process per GPU (hf-conventions §6): cuda:{rank % count}
            device = torch.device(f"cuda:{(rank or 0) % torch.cuda.device_count()}")
            if self.prior.device != device:
                self.prior = self.prior.to(device)
        starts = range(0, len(images), self.batch_size)
        chunks = [(images[s : s + self.batch_size], indices[s : s + self.batch_size]) for s in starts]
        if self.threads is not None:
            parts = list(self.threads.map(self._embed, chunks))
        else:
            parts = [self._embed(chunk) for chunk in chunks]
        embeddings = parts[0] if len(parts) == 1 else torch.cat(parts)
        return pa.table({self.embedding_column: fixed_size_column(embeddings.numpy())})

    def _embed(self, chunk: tuple[list, list[int]]) -> torch.Tensor:
        values, indices = chunk
        return embed_encoded(self.prior, values, indices, self.feature, self.token_per_repo_id)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "threads": None}


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
        "rela_hf.embeddings/v1",
        dataset._fingerprint,
        plan.image_column,
        dataclasses.asdict(plan.identity),
    )
    embeddings = _embed_dataset(
        unformatted,
        plan,
        num_proc=num_proc,
        new_fingerprint=embed_fingerprint,
        load_from_cache_file=load_from_cache_file,
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
    assert whitening.n_components is not None  # fitted: given fitted, or fitted just above
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
    dataset: datasets.Dataset,
    plan: TargetsPlan,
    *,
    num_proc: int | None,
    new_fingerprint: str,
    load_from_cache_file: bool | None,
) -> datasets.Dataset:
    """Pass 1: only the image column goes in (undecoded), only the embeddings come out."""
    prior, column = plan.prior, plan.image_column
    images = dataset.select_columns([column]).cast_column(column, datasets.Image(decode=False))
    workers = plan_workers(num_proc, device=prior.device, num_examples=len(dataset), batch_size=plan.batch_size)
    map_kwargs: dict[str, Any] = {
        "input_columns": [column],
        "with_indices": True,
        "with_rank": True,
        "batched": True,
        "remove_columns": [column],
        "features": datasets.Features({plan.embedding_column: target_feature(prior.embed_dim)}),
        "new_fingerprint": new_fingerprint,
        "load_from_cache_file": load_from_cache_file,
        "desc": f"{plan.desc}: embedding",
    }
    decoder = full_decoder_feature(dataset.features[column])
    if workers.gpu_processes:
        return _embed_on_gpu_processes(images, plan, workers, decoder, map_kwargs)
    with worker_threads(workers) as threads:
        embed = _EmbedBatch(prior, decoder, plan.embedding_column, plan.batch_size, threads=threads)
        return images.map(embed, batch_size=plan.batch_size * workers.workers, **map_kwargs)


def _embed_on_gpu_processes(
    images: datasets.Dataset,
    plan: TargetsPlan,
    workers: WorkerPlan,
    decoder: Any,
    map_kwargs: dict[str, Any],
) -> datasets.Dataset:
    """One spawned ``Dataset.map`` process per GPU; each moves its own copy of the prior."""
    require_spawn_start_method(workers.workers)
    prior, original_device = plan.prior, plan.prior.device
    prior.to("cpu")  # pickled to the workers from the CPU; each moves it to cuda:{rank % gpus}
    try:
        embed = _EmbedBatch(prior, decoder, plan.embedding_column, plan.batch_size, gpu_per_rank=True)
        return images.map(embed, batch_size=plan.batch_size, num_proc=workers.workers, **map_kwargs)
    finally:
        prior.to(original_device)


def _fit_or_load_whitening(embeddings, embedding_column, n_components, embed_fingerprint, load_from_cache_file, desc):
    """Fit on the cached embeddings; the result is cached next to them so every rank shares it."""
    cache_path = None
    if embeddings.cache_files:
        key = fingerprint("rela_hf.whitening/v1", embed_fingerprint, n_components)
        cache_path = Path(embeddings.cache_files[0]["filename"]).parent / f"rela_whitening-{key}.safetensors"
        use_cache = datasets.is_caching_enabled() if load_from_cache_file is None else load_from_cache_file
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
