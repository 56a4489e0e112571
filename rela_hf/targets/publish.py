"""Publishing efficient data: save to disk, push to the Hub, read the record back, rejoin.

Nothing is written before everything needed is in hand: :func:`save_rela_dataset` stages into a
temporary sibling folder and renames it, :func:`push_rela_dataset` renders the card before the
first upload. Targets can travel without the images (``targets_only``: ``idx`` + the targets as a
separate config, one per prior and ``k``) and are joined back with :func:`attach_rela_targets`.
The saved or pushed data also carries the record in its target column's feature
(:mod:`~rela_hf.targets.provenance`), so ``load_from_disk`` / ``load_dataset`` give it back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import datasets
import numpy as np
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    HFValidationError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from rela_hf.targets.card import render_dataset_card
from rela_hf.targets.provenance import (
    rela_targets_info,
    remember_whitening,
    with_rela_targets_info,
)
from rela_hf.targets.record import INFO_FILENAME, WHITENING_FILENAME, RelaTargetsInfo

__all__ = [
    "attach_rela_targets",
    "find_rela_targets_info",
    "hub_data_dir",
    "load_rela_targets_info",
    "push_rela_dataset",
    "save_rela_dataset",
    "targets_only_dataset",
]


def attach_rela_targets(images: datasets.Dataset, targets: datasets.Dataset, *, index_column: str = "idx"):
    """Join a targets-only config (``idx`` + target columns) to its image dataset by row index.

    The result keeps the record the targets' feature carries (:func:`rela_targets_info` reads it,
    with no index column any more).
    """
    if index_column not in targets.column_names:
        raise ValueError(f"The targets have no {index_column!r} column (columns: {targets.column_names}).")
    if len(targets) != len(images):
        raise ValueError(f"{len(targets)} target rows for {len(images)} images: wrong split or source revision?")
    index = np.asarray(targets.with_format("numpy")[index_column])
    if not np.array_equal(index, np.arange(len(images))):
        targets = targets.sort(index_column)
        if not np.array_equal(np.asarray(targets.with_format("numpy")[index_column]), np.arange(len(images))):
            raise ValueError(f"The {index_column!r} column is not a permutation of 0..{len(images) - 1}.")
    return datasets.concatenate_datasets([images, targets.remove_columns(index_column)], axis=1)


def hub_data_dir(config_name: str) -> str:
    """Where ``Dataset.push_to_hub`` puts a config's files (``data`` for the default config)."""
    return config_name if config_name != "default" else "data"


def targets_only_dataset(
    dataset: datasets.Dataset, info: RelaTargetsInfo, *, index_column: str = "idx"
) -> tuple[datasets.Dataset, RelaTargetsInfo]:
    """Only ``idx`` (the row in ``dataset``) + the target column(s), and the matching record.

    The hf-conventions layout for sharing targets without re-uploading images: one config per
    prior and post-processing, joined to the images by index (:func:`attach_rela_targets`).
    """
    columns = [info.target_column] + ([info.embedding_column] if info.embedding_column else [])
    missing = [name for name in columns if name not in dataset.column_names]
    if missing:
        raise ValueError(f"The dataset lacks the target column(s) {missing} its record names; wrong info=?")
    slim = dataset.select_columns(columns)
    slim = slim.add_column(index_column, np.arange(len(slim), dtype=np.int64)).select_columns([index_column, *columns])
    return slim, dataclasses.replace(info, index_column=index_column)


def _with_record(dataset, info: RelaTargetsInfo, hub_location=None):
    """``dataset`` carrying ``info`` in its features, and ``info`` as read back from them."""
    dataset = with_rela_targets_info(dataset, info, hub_location=hub_location)
    return dataset, rela_targets_info(dataset, target_column=info.target_column)


def save_rela_dataset(
    dataset: datasets.Dataset,
    output_dir: str | os.PathLike,
    *,
    info: RelaTargetsInfo | None = None,
    targets_only: bool = False,
    card: bool = True,
    overwrite: bool = False,
    num_proc: int | None = None,
) -> Path:
    """``save_to_disk`` + ``rela_targets.json`` + ``rela_whitening.safetensors`` (+ README card).

    ``targets_only=True`` saves only ``idx`` + the targets (see :func:`targets_only_dataset`).
    The saved data carries the record in its target column's feature (``info=`` when given), so
    ``load_from_disk`` gives it back to :func:`rela_targets_info`. Written into a staging sibling
    folder and renamed at the end, so an interrupted save leaves no half-written dataset at
    ``output_dir`` (the next save clears the staging folder, or puts the previous dataset back if
    the interruption fell between the two renames).
    """
    info = info or rela_targets_info(dataset)
    if targets_only:
        dataset, info = targets_only_dataset(dataset, info)
    dataset, info = _with_record(dataset, info)
    output_dir = Path(output_dir)
    if output_dir.exists() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{output_dir} exists and is not empty; pass overwrite=True to replace it.")
    readme = None
    if card:
        readme = str(render_dataset_card({"default": info}, repo_id=None, num_rows=len(dataset)))
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    # fixed names beside output_dir: a save killed midway leaves at most these, which the next
    # save clears (staging) or puts back (the previous dataset, if the kill fell between renames)
    staging = output_dir.with_name(f".{output_dir.name}.staging")
    previous = output_dir.with_name(f".{output_dir.name}.previous")
    if previous.exists() and not output_dir.exists():
        os.replace(previous, output_dir)
    for leftover in (staging, previous):
        if leftover.exists():
            shutil.rmtree(leftover)
    try:
        dataset.save_to_disk(str(staging), num_proc=num_proc)
        info.save(staging)
        if readme is not None:
            (staging / "README.md").write_text(readme, encoding="utf-8")
        if output_dir.exists():
            os.replace(output_dir, previous)
        os.replace(staging, output_dir)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def push_rela_dataset(
    dataset: datasets.Dataset,
    repo_id: str,
    *,
    info: RelaTargetsInfo | None = None,
    targets_only: bool = False,
    config_name: str | None = None,
    split: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    card: bool = True,
    commit_message: str | None = None,
    max_shard_size: str | int | None = None,
) -> str:
    """Push a dataset with ReLA targets, its whitening files and a dataset card to the Hub.

    ``targets_only=True`` pushes only ``idx`` + the targets as a separate config (default
    name ``<prior>_pca<k>``, see :attr:`RelaTargetsInfo.config_name`), to be joined to the images
    by index (:func:`attach_rela_targets`); the images are not uploaded again. The whitening
    files go next to the config's data (``<data_dir>/rela_targets.json`` and
    ``<data_dir>/rela_whitening.safetensors``), the card lists every ReLA config of the repo.

    The pushed data carries the record in its target column's feature (``info=`` when given)
    and where the whitening file is, so :func:`rela_targets_info` works after ``load_dataset``.
    Two commits: ``Dataset.push_to_hub`` (data + README ``configs``), then the whitening files and
    the card together. The card is rendered before anything is uploaded, so a bad template or
    record fails early. Returns the URL of the last commit.
    """
    info = info or rela_targets_info(dataset)
    if targets_only:
        config_name = config_name or info.config_name
        dataset, info = targets_only_dataset(dataset, info)
    config_name = config_name or "default"
    data_dir = hub_data_dir(config_name)
    whitening_path = f"{data_dir}/{WHITENING_FILENAME}"
    dataset, info = _with_record(dataset, info, {"repo_id": repo_id, "revision": revision, "path": whitening_path})
    api = HfApi(token=token)
    _check_no_conflicting_whitening(api, repo_id, data_dir, info, revision)
    if card:  # fail early on a template error, before uploading anything
        render_dataset_card({config_name: info}, repo_id=repo_id, num_rows=len(dataset))

    dataset.push_to_hub(
        repo_id,
        config_name=config_name,
        split=split,
        private=private,
        token=token,
        revision=revision,
        commit_message=commit_message or f"Add ReLA targets ({info.config_name})",
        max_shard_size=max_shard_size,
    )
    try:
        return _commit_whitening_and_card(api, repo_id, revision, config_name, info, card, len(dataset))
    except Exception as error:
        raise RuntimeError(
            f"The data of config {config_name!r} is on {repo_id}, but its whitening files and "
            f"card could not be committed ({error}). Run push_rela_dataset again: re-uploading "
            "identical data shards is skipped."
        ) from error


def _commit_whitening_and_card(api, repo_id, revision, config_name, info, card, num_rows) -> str:
    """Second commit of a push: ``<data_dir>/rela_targets.json``, the whitening, the card."""
    data_dir = hub_data_dir(config_name)
    with tempfile.TemporaryDirectory() as tmp:
        written = info.save(tmp)
        operations = [
            CommitOperationAdd(path_in_repo=f"{data_dir}/{path.name}", path_or_fileobj=str(path)) for path in written
        ]
        if card:
            readme = _card_for_repo(api, repo_id, revision, {config_name: info}, api.token, num_rows)
            operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=readme.encode("utf-8")))
        commit = api.create_commit(
            repo_id,
            operations,
            repo_type="dataset",
            revision=revision,
            commit_message=f"Add ReLA whitening ({info.config_name}) and dataset card",
        )
    return commit.commit_url


def _check_no_conflicting_whitening(api, repo_id, data_dir, info, revision) -> None:
    """One config = one whitening: a second split must reuse the first split's whitening."""
    try:
        path = hf_hub_download(
            repo_id,
            f"{data_dir}/{INFO_FILENAME}",
            repo_type="dataset",
            revision=revision,
            token=api.token,
        )
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError):
        return
    existing = json.loads(Path(path).read_text(encoding="utf-8"))["whitening"]["sha256"]
    if existing != info.whitening.sha256():
        raise ValueError(
            f"{repo_id}/{data_dir} already holds targets made with another whitening. All "
            "splits of one config must share one whitening: pass whitening=<the first split's "
            "RelaTargetsInfo> to add_rela_targets, or push to another config_name."
        )


def _card_for_repo(api, repo_id, revision, new_configs: dict[str, RelaTargetsInfo], token, num_rows) -> str:
    """The card of the whole repo: its README metadata (configs from push_to_hub) + every
    ReLA config in it."""
    readme = hf_hub_download(repo_id, "README.md", repo_type="dataset", revision=revision, token=token)
    existing = DatasetCard.load(readme, repo_type="dataset")
    configs: dict[str, RelaTargetsInfo] = {}
    for entry in existing.data.to_dict().get("configs", []) or []:
        name = entry.get("config_name", "default")
        if name in new_configs:
            configs[name] = new_configs[name]
            continue
        try:
            configs[name] = load_rela_targets_info(repo_id, config_name=name, revision=revision, token=token)
        except EntryNotFoundError:  # a config without ReLA targets, e.g. the images
            continue
    configs.update(new_configs)
    card = render_dataset_card(configs, repo_id=repo_id, existing_metadata=existing.data.to_dict(), num_rows=num_rows)
    return str(card)


def load_rela_targets_info(
    path_or_repo_id: str | os.PathLike,
    *,
    config_name: str = "default",
    revision: str | None = None,
    token: str | bool | None = None,
) -> RelaTargetsInfo:
    """The :class:`RelaTargetsInfo` of a saved folder or a Hub dataset repo (one config of it).

    Its whitening is then known to :func:`rela_targets_info` for the rest of the process, for
    datasets whose features name it but whose files are not beside the data.
    """
    path = Path(path_or_repo_id)
    if path.is_dir():
        info = RelaTargetsInfo.load(path)
        remember_whitening(info.whitening)
        return info
    data_dir = hub_data_dir(config_name)
    files = [
        hf_hub_download(
            str(path_or_repo_id),
            f"{data_dir}/{name}",
            repo_type="dataset",
            revision=revision,
            token=token,
        )
        for name in (INFO_FILENAME, WHITENING_FILENAME)
    ]
    info = RelaTargetsInfo.from_files(*files)
    remember_whitening(info.whitening)
    return info


def find_rela_targets_info(
    path_or_repo_id: str | os.PathLike,
    *,
    config_name: str | None = None,
    revision: str | None = None,
) -> RelaTargetsInfo | None:
    """Like :func:`load_rela_targets_info`, but ``None`` where no record was published.

    For consumers that only *describe* targets (the trainer's summary, model cards): a dataset
    whose target column was made elsewhere is still usable, its provenance is just unknown.
    """
    try:
        return load_rela_targets_info(path_or_repo_id, config_name=config_name or "default", revision=revision)
    except (OSError, EntryNotFoundError, HfHubHTTPError, HFValidationError):
        return None  # a missing local folder is not a valid repo id either
