"""The targets' record inside the dataset's own metadata, so it survives what users do with it.

The :class:`~rela_hf.targets.record.RelaTargetsInfo` of ReLA-D targets (arXiv:2405.14669: prior,
source images, whitening) is kept as JSON in the ``id`` of the target column's element feature,
``List(Value("float32", id=<record>), length=k)``. Why there (datasets 5.x):

- a column's feature is copied by every transform that keeps the column and its type (``select``,
  ``shuffle``, ``filter``, ``sort``, ``map``, ``train_test_split``, ``flatten_indices``,
  ``rename_column``, ``concatenate_datasets``, ``with_format``, ``DatasetDict`` methods...) and
  is written to ``dataset_info.json``, to the Arrow/Parquet schema metadata and, by
  ``push_to_hub``, to the README's ``dataset_info`` YAML, which ``load_dataset`` reads back.
  Custom Arrow schema metadata keys are replaced by every transform, ``DatasetInfo.description``
  is not pushed, and a ``List``'s own ``id`` is dropped by ``cast`` (its element's is kept);
- the record belongs to the column: removing the column removes it, and giving the column a new
  type (``cast_column``, a ``map`` returning other values or given ``features=`` without it)
  drops it, since datasets then builds a new feature.

Not detectable: a ``map`` that writes new values of the same type into the target column keeps
the record (datasets keeps the feature of a column whose type is unchanged); such a map should
pass ``features=`` with a plain feature. ``IterableDataset.map`` without ``features=`` forgets all
features, and the record with them. Concatenating datasets whose records differ fails in
datasets ("features can't be aligned"), as targets of different whitenings should not be mixed.

The whitening tensors (``k x d`` float64, megabytes) stay out of the metadata: the record names
their SHA-256, and :func:`rela_targets_info` finds them, checked against it, among the whitenings
fitted or loaded in this process, in ``rela_whitening.safetensors`` next to the dataset's Arrow
files (a folder written by ``save_rela_dataset``), or in the Hub repo that ``push_rela_dataset``
wrote to (named in the record).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeAlias

import datasets
import pyarrow as pa
from huggingface_hub import hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HFValidationError
from safetensors import SafetensorError

from rela_hf.targets.record import (
    INFO_FILENAME,
    WHITENING_FILENAME,
    RelaTargetsInfo,
    is_record,
    load_whitening,
)
from rela_hf.whitening import PCAWhitening

__all__ = ["rela_targets_info", "remember_whitening", "with_rela_targets_info"]

# digest -> whitening fitted or loaded in this process: the tensors callers already hold, kept so
# that every dataset derived from theirs finds them again without a file
_KNOWN_WHITENINGS: dict[str, PCAWhitening] = {}

_DatasetLike: TypeAlias = datasets.Dataset | datasets.IterableDataset


def remember_whitening(whitening: PCAWhitening) -> None:
    """Make ``whitening`` findable by its digest for the rest of the process."""
    _KNOWN_WHITENINGS.setdefault(whitening.sha256(), whitening)


def with_rela_targets_info(
    dataset: _DatasetLike,
    info: RelaTargetsInfo,
    *,
    hub_location: Mapping[str, str | None] | None = None,
) -> _DatasetLike:
    """``dataset`` with ``info`` recorded in the feature of ``info.target_column``.

    No data is rewritten. Use it to give a dataset its record back, e.g. after a ``map`` that
    rewrote the target column or a plain ``load_dataset`` of targets pushed without one.

    Args:
        dataset: a ``Dataset`` or ``IterableDataset`` holding ``info.target_column`` (a list of
            floats of length ``k``). A stream whose features are unknown has them resolved
            from its first rows (as ``concatenate_datasets`` does).
        info: the record; its optional columns absent from ``dataset`` are recorded as ``None``.
        hub_location: ``repo_id``, ``revision`` and ``path`` of the whitening file on the Hub,
            recorded so that :func:`rela_targets_info` finds it after ``load_dataset``.
    """
    _require_one_split(dataset, "with_rela_targets_info")
    if isinstance(dataset, datasets.IterableDataset) and dataset.features is None:
        dataset = datasets.concatenate_datasets([dataset])
    features = dataset.features
    tagged = _tagged_feature(features, info, hub_location)
    remember_whitening(info.whitening)
    if features[info.target_column] == tagged:
        return dataset
    if isinstance(dataset, datasets.IterableDataset):
        return dataset.cast_column(info.target_column, tagged)  # metadata only, for a stream
    new_features = features.copy()
    new_features[info.target_column] = tagged
    if len(dataset) == 0:  # nothing to rewrite; concatenate_datasets returns it unchanged
        return dataset.cast(new_features)
    new_info = dataset.info.copy()
    new_info.features = new_features
    # one dataset "concatenated" under a new DatasetInfo: same Arrow data, indices and format
    # (cast_column rewrites every column for a feature that is not decodable, as a list is)
    return datasets.concatenate_datasets([dataset], info=new_info, split=dataset.split)


def rela_targets_info(dataset: Any, *, target_column: str | None = None) -> RelaTargetsInfo:
    """The :class:`RelaTargetsInfo` recorded in a dataset's features.

    :func:`rela_hf.targets.add_rela_targets` records it, and it stays through transforms that
    keep the target column and its type (``select``, ``shuffle``, ``filter``, ``map``, ``sort``,
    ``train_test_split``, ``rename_column``...), ``save_to_disk`` / ``load_from_disk`` and
    ``push_rela_dataset`` / ``load_dataset``. Its column fields follow the dataset: a renamed
    target column is reported under its new name, a removed embedding or index column as
    ``None``. The whitening is found as the module docstring says.

    Args:
        dataset: one split (``Dataset`` or ``IterableDataset``).
        target_column: which target column, where the dataset holds targets of several priors.

    Raises:
        LookupError: no record (or several, without ``target_column``), or its whitening is not
            found: :func:`rela_hf.targets.load_rela_targets_info` loads it.
    """
    _require_one_split(dataset, "rela_targets_info")
    features = getattr(dataset, "features", None)
    records = _records(features)
    if target_column is not None:
        records = {name: r for name, r in records.items() if name == target_column}
    if not records:
        raise LookupError(_no_record_message(dataset, features, target_column))
    if len(records) > 1:
        raise LookupError(
            f"The columns {sorted(records)} all hold ReLA targets; pass target_column= to say "
            "which one's record you want."
        )
    ((column, record),) = records.items()
    assert features is not None  # the record was found in them
    info = RelaTargetsInfo.from_dict(record, _find_whitening(record, dataset))
    return _fit_to_columns(dataclasses.replace(info, target_column=column), features)


def _require_one_split(dataset: Any, caller: str) -> None:
    if isinstance(dataset, datasets.DatasetDict | datasets.IterableDatasetDict):
        raise TypeError(
            f"{caller} takes one split, e.g. {caller}(dataset_dict['train']); got a "
            f"{type(dataset).__name__} with splits {list(dataset)}."
        )
    if not isinstance(dataset, datasets.Dataset | datasets.IterableDataset):
        raise TypeError(f"{caller} takes a datasets.Dataset or IterableDataset, got {type(dataset).__name__}.")


def _tagged_feature(
    features: datasets.Features, info: RelaTargetsInfo, hub_location: Mapping | None
) -> datasets.List | datasets.LargeList:
    """The target column's feature with the record (JSON) as its element's ``id``."""
    column = info.target_column
    if column not in features:
        raise ValueError(
            f"The dataset has no column {column!r}, which the ReLA record names as its target "
            f"column (columns: {list(features)}); wrong info=?"
        )
    feature = features[column]
    element = getattr(feature, "feature", None)
    if not (
        isinstance(feature, datasets.List | datasets.LargeList)
        and isinstance(element, datasets.Value)
        and pa.types.is_floating(element.pa_type)
    ):
        raise ValueError(
            f"Column {column!r} is {feature}, not a list of floats: ReLA targets are List(Value('float32'), length=k)."
        )
    length = getattr(feature, "length", -1)
    if length not in (-1, info.n_components):
        raise ValueError(
            f"Column {column!r} holds {length}-d vectors, but the record's whitening has "
            f"k={info.n_components} components; wrong info=?"
        )
    record = _fit_to_columns(info, features).to_dict()
    if hub_location:
        record["hub"] = dict(hub_location)
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return dataclasses.replace(feature, feature=dataclasses.replace(element, id=text))


def _fit_to_columns(info: RelaTargetsInfo, columns: Mapping[str, Any]) -> RelaTargetsInfo:
    """``info`` without the optional columns the dataset no longer has."""
    return dataclasses.replace(
        info,
        embedding_column=info.embedding_column if info.embedding_column in columns else None,
        index_column=info.index_column if info.index_column in columns else None,
    )


def _records(features: datasets.Features | None) -> dict[str, dict[str, Any]]:
    """Column name -> the record its feature carries, for every column that carries one."""
    records = {}
    for name, feature in (features or {}).items():
        text = getattr(getattr(feature, "feature", None), "id", None)
        if not isinstance(text, str) or not text.startswith("{"):
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError:
            continue  # some other use of the feature id
        if is_record(record):
            records[name] = record
    return records


def _no_record_message(dataset: Any, features: Any, target_column: str | None) -> str:
    if features is None:
        why = "its features are unknown (IterableDataset.map without features= forgets them, and the record with them)"
    elif target_column is not None:
        why = f"its column {target_column!r} carries none"
    else:
        why = (
            "none of its columns carries one (the target column was removed or given another "
            "type, e.g. by cast_column or a map, or it was made without rela_hf)"
        )
    return (
        f"No ReLA targets are recorded for this {type(dataset).__name__}: {why}. Pass info= "
        "explicitly to save_rela_dataset / push_rela_dataset, load the record with "
        f"load_rela_targets_info(<saved folder or Hub repo>) ({INFO_FILENAME}), or put it back "
        "with with_rela_targets_info(dataset, info)."
    )


def _find_whitening(record: dict[str, Any], dataset: Any) -> PCAWhitening:
    """The whitening the record names by digest: in this process, beside the data, on the Hub."""
    digest = record["whitening"]["sha256"]
    if digest in _KNOWN_WHITENINGS:
        return _KNOWN_WHITENINGS[digest]
    tried = []
    folders = {Path(f["filename"]).parent for f in getattr(dataset, "cache_files", None) or []}
    for path in sorted(folder / WHITENING_FILENAME for folder in folders):
        tried.append(str(path))
        if path.is_file() and (whitening := _load_matching(path, digest)) is not None:
            return whitening
    hub = record.get("hub")
    if hub:
        where = f"{hub['repo_id']}/{hub['path']} on the Hub"
        try:
            downloaded = hf_hub_download(hub["repo_id"], hub["path"], repo_type="dataset", revision=hub.get("revision"))
        except (EntryNotFoundError, HFValidationError, OSError) as error:
            tried.append(f"{where} ({type(error).__name__})")
        else:
            tried.append(where)
            if (whitening := _load_matching(Path(downloaded), digest)) is not None:
                return whitening
    raise LookupError(
        f"The dataset records ReLA targets of prior {record['prior']['name']!r} whitened with "
        f"{digest[:12]}..., but those whitening parameters were not found (not fitted or loaded "
        f"in this process; looked at: {tried or 'no files beside the data'}). Load them with "
        "load_rela_targets_info(<saved folder or Hub repo>): that makes them known here."
    )


def _load_matching(path: Path, digest: str) -> PCAWhitening | None:
    """The whitening in ``path`` if it is the one with ``digest`` (else ``None``)."""
    try:
        whitening = load_whitening(path)
    except (OSError, ValueError, SafetensorError):  # unreadable: look elsewhere
        return None
    if whitening.sha256() != digest:
        return None
    remember_whitening(whitening)
    return whitening
