"""Provenance of ReLA targets: what made them, kept next to the data.

A dataset's ReLA targets (arXiv:2405.14669) are only reusable with their record: the prior (id,
revision, preprocessing, weights digest), the source images (dataset, split, revision) and the
fitted whitening. :class:`RelaTargetsInfo` is that record; on disk and on the Hub it is
``rela_targets.json`` + ``rela_whitening.safetensors`` next to the data. Inside the dataset itself
(its features, so it follows ``select``, ``map``, ``save_to_disk``, ``push_to_hub``...) it is
carried by :mod:`rela_hf.targets.provenance`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

import rela_hf
from rela_hf.model_names import safe_model_name
from rela_hf.priors.prior import Prior
from rela_hf.whitening import PCAWhitening

__all__ = [  # the package re-exports these, with the rest of its public names
    "DEFAULT_EMBEDDING_COLUMN",
    "DEFAULT_TARGET_COLUMN",
    "INFO_FILENAME",
    "WHITENING_FILENAME",
    "DatasetSource",
    "PriorIdentity",
    "RelaTargetsInfo",
    "load_whitening",
    "save_whitening",
]

WHITENING_FILENAME = "rela_whitening.safetensors"
INFO_FILENAME = "rela_targets.json"
DEFAULT_TARGET_COLUMN = "rela_target"
DEFAULT_EMBEDDING_COLUMN = "rela_embedding"
_INFO_FORMAT = "rela_hf.targets"
_WHITENING_FORMAT = "rela_hf.PCAWhitening"
_FORMAT_VERSION = 1


def save_whitening(whitening: PCAWhitening, path: str | os.PathLike) -> Path:
    """Write a fitted whitening as ``safetensors`` (float64 tensors + string metadata, no pickle).

    Atomic: written to a temporary file in the same folder, then renamed.
    """
    tensors = whitening.state_dict()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": _WHITENING_FORMAT,
        "format_version": str(_FORMAT_VERSION),
        "n_samples": str(whitening.n_samples),
        "n_components": str(whitening.n_components),
        "n_features": str(whitening.n_features),
        "paper": "arXiv:2405.14669",
    }
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        save_file(tensors, str(tmp_path), metadata=metadata)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return path


def load_whitening(path: str | os.PathLike) -> PCAWhitening:
    """Read a file written by :func:`save_whitening`."""
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
        if metadata.get("format") != _WHITENING_FORMAT:
            raise ValueError(f"{path} is not a rela_hf PCA whitening file (metadata {metadata}).")
        tensors = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 - safe_open, not a dict
    return PCAWhitening.from_state_dict(tensors, n_samples=int(metadata["n_samples"]))


@dataclasses.dataclass(frozen=True)
class PriorIdentity:
    """Everything that determines a prior's embeddings (and so the targets' cache key)."""

    name: str
    revision: str | None
    library: str
    embed_dim: int
    preprocessing: dict[str, Any]
    fingerprint: str  # Prior.fingerprint: also hashes the weights when no Hub revision pins them
    pretrained: bool = True  # False: randomly initialised weights of the named architecture

    @classmethod
    def of(cls, prior: Prior) -> PriorIdentity:
        return cls(
            name=str(prior.name),
            revision=prior.revision,
            library=str(prior.library),
            embed_dim=int(prior.embed_dim),
            preprocessing=json.loads(json.dumps(prior.preprocessing, sort_keys=True, default=str)),
            fingerprint=prior.fingerprint,
            pretrained=bool(prior.pretrained),
        )

    @property
    def short_name(self) -> str:
        """A config-name-safe slug: ``timm/resnet18.a1_in1k`` -> ``resnet18_a1_in1k``."""
        return safe_model_name(self.name, default="prior")


@dataclasses.dataclass(frozen=True)
class DatasetSource:
    """Where the images came from: pin ``revision`` (a commit sha) so targets can be rejoined."""

    id: str | None = None  # Hub repo id or local path
    config: str | None = None
    split: str | None = None
    revision: str | None = None
    fingerprint: str | None = None
    num_rows: int | None = None

    @classmethod
    def of(cls, dataset: Any, **overrides: Any) -> DatasetSource:
        """Defaults from ``dataset.info`` / ``split`` / fingerprint, then explicit ``overrides``."""
        info = getattr(dataset, "info", None)
        split = getattr(dataset, "split", None)
        num_rows = len(dataset) if hasattr(dataset, "__len__") else None
        defaults: dict[str, Any] = {
            "id": getattr(info, "dataset_name", None),
            "config": getattr(info, "config_name", None),
            "split": str(split) if split is not None else None,
            "fingerprint": getattr(dataset, "_fingerprint", None),
            "num_rows": num_rows,
        }
        unknown = set(overrides) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"Unknown source fields {sorted(unknown)}; expected id/config/split/revision.")
        defaults.update({key: value for key, value in overrides.items() if value is not None})
        return cls(**defaults)


@dataclasses.dataclass
class RelaTargetsInfo:
    """What produced a dataset's ReLA targets: enough to recompute them for new images.

    Saved as ``rela_targets.json`` (this record) + ``rela_whitening.safetensors`` (the whitening)
    next to the data, locally and on the Hub; the dataset's own features carry :meth:`to_dict`
    (:func:`rela_hf.targets.rela_targets_info` reads it back).
    """

    prior: PriorIdentity
    source: DatasetSource
    whitening: PCAWhitening
    target_column: str = DEFAULT_TARGET_COLUMN
    embedding_column: str | None = None
    whitening_source: DatasetSource | None = None  # the split the whitening was fit on
    index_column: str | None = None  # set for a targets-only layout: rows joined to images by this column

    @property
    def n_components(self) -> int:
        assert self.whitening.n_components is not None  # the record holds a fitted whitening
        return self.whitening.n_components

    @property
    def config_name(self) -> str:
        """Hub config name for a targets-only push, e.g. ``efficientnet_lite0_pca512``."""
        return f"{self.prior.short_name}_pca{self.n_components}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": _INFO_FORMAT,
            "format_version": _FORMAT_VERSION,
            "created_with": f"rela_hf {rela_hf.__version__}",
            "paper": "arXiv:2405.14669",
            "target_column": self.target_column,
            "embedding_column": self.embedding_column,
            "index_column": self.index_column,
            "n_components": self.n_components,
            "prior": dataclasses.asdict(self.prior),
            "source": dataclasses.asdict(self.source),
            "whitening": {
                "file": WHITENING_FILENAME,
                "sha256": self.whitening.sha256(),
                "n_samples": self.whitening.n_samples,
                "n_features": self.whitening.n_features,
                "explained_variance_ratio": self.whitening.total_explained_variance_ratio,
                "fit_source": dataclasses.asdict(self.whitening_source or self.source),
            },
        }

    def save(self, directory: str | os.PathLike) -> list[Path]:
        """Write ``rela_targets.json`` and ``rela_whitening.safetensors`` into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        whitening_path = save_whitening(self.whitening, directory / WHITENING_FILENAME)
        info_path = directory / INFO_FILENAME
        info_path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return [info_path, whitening_path]

    @classmethod
    def from_files(cls, info_path: str | os.PathLike, whitening_path: str | os.PathLike) -> RelaTargetsInfo:
        record = json.loads(Path(info_path).read_text(encoding="utf-8"))
        if not is_record(record):
            raise ValueError(f"{info_path} is not a rela_hf targets record (format={record.get('format')!r}).")
        whitening = load_whitening(whitening_path)
        if whitening.sha256() != record["whitening"]["sha256"]:
            raise ValueError(f"{whitening_path} does not match the whitening recorded in {info_path}.")
        return cls.from_dict(record, whitening)

    @classmethod
    def from_dict(cls, record: dict[str, Any], whitening: PCAWhitening) -> RelaTargetsInfo:
        """The inverse of :meth:`to_dict`, given the whitening whose digest the record names."""
        fit_source = DatasetSource(**record["whitening"]["fit_source"])
        source = DatasetSource(**record["source"])
        return cls(
            prior=PriorIdentity(**record["prior"]),
            source=source,
            whitening=whitening,
            target_column=record["target_column"],
            embedding_column=record.get("embedding_column"),
            whitening_source=None if fit_source == source else fit_source,
            index_column=record.get("index_column"),
        )

    @classmethod
    def load(cls, directory: str | os.PathLike) -> RelaTargetsInfo:
        directory = Path(directory)
        return cls.from_files(directory / INFO_FILENAME, directory / WHITENING_FILENAME)


def is_record(value: Any) -> bool:
    """Whether ``value`` (parsed JSON) is a :meth:`RelaTargetsInfo.to_dict` record."""
    return isinstance(value, dict) and value.get("format") == _INFO_FORMAT
