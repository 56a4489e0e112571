"""The dataset card of efficient data (ReLA-D targets), rendered from ``model_cards/``.

A dataset that carries ReLA targets (arXiv:2405.14669) is only reusable if its card says which
prior (id and commit) made them, from which images (source dataset and commit), how they were
whitened and how to load them. :func:`render_dataset_card` fills the project's template
``model_cards/efficient_dataset.md`` with :class:`huggingface_hub.DatasetCard.from_template`,
keeping metadata already in the repo's README (``configs``/``dataset_info`` written by
``Dataset.push_to_hub``). Model cards of encoders live in :mod:`rela_hf.hub.model_card`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from rela_hf.card_templates import RELA_CITATION, template_path
from rela_hf.targets.record import RelaTargetsInfo

__all__ = ["DATASET_CARD_TEMPLATE", "DATASET_TAGS", "render_dataset_card", "size_category"]

DATASET_CARD_TEMPLATE = template_path("efficient_dataset.md")
DATASET_TAGS = ["rela", "efficient-data", "self-supervised-learning", "byol", "image"]

_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]


def size_category(num_rows: int) -> str:
    """The Hub's ``size_categories`` bucket of a row count."""
    return next((label for bound, label in _SIZE_CATEGORIES if num_rows < bound), "n>1B")


def _config_view(config_name: str, info: RelaTargetsInfo) -> dict[str, Any]:
    """What the template needs to know about one config, as plain values."""
    whitening = info.whitening
    fit_source = info.whitening_source or info.source
    return {
        "name": config_name,
        "targets_only": info.index_column is not None,
        "index_column": info.index_column,
        "target_column": info.target_column,
        "embedding_column": info.embedding_column,
        "k": whitening.n_components,
        "prior": dataclasses.asdict(info.prior),
        "source": dataclasses.asdict(info.source),
        "fit_source": dataclasses.asdict(fit_source),
        "whitening_fit_elsewhere": info.whitening_source is not None,
        "n_samples": whitening.n_samples,
        "n_features": whitening.n_features,
        "explained_variance_pct": f"{100 * whitening.total_explained_variance_ratio:.1f}",
        "first_components_pct": ", ".join(
            f"{100 * r:.1f}" for r in whitening.explained_variance_ratio[:5].tolist()
        ),
    }


def _metadata_entry(config_name: str, info: RelaTargetsInfo) -> dict[str, Any]:
    """A machine-readable summary of one config for the card's YAML header."""
    return {
        "config_name": config_name,
        "prior": info.prior.name,
        "prior_revision": info.prior.revision,
        "prior_library": info.prior.library,
        "source_dataset": info.source.id,
        "source_revision": info.source.revision,
        "source_split": info.source.split,
        "n_components": info.n_components,
        "target_column": info.target_column,
        "index_column": info.index_column,
        "explained_variance_ratio": round(info.whitening.total_explained_variance_ratio, 6),
    }


def render_dataset_card(
    configs: Mapping[str, RelaTargetsInfo],
    *,
    repo_id: str | None,
    existing_metadata: Mapping[str, Any] | None = None,
    num_rows: int | None = None,
    template_path: str | os.PathLike | None = None,
    pretty_name: str | None = None,
) -> DatasetCard:
    """The dataset card of a dataset with ReLA targets.

    Args:
        configs: config name -> its :class:`~rela_hf.targets.RelaTargetsInfo` (one entry for a
            plain push or a local save, several when a repo holds targets of several priors).
        repo_id: the Hub dataset repo (``None`` for a folder written by ``save_to_disk``).
        existing_metadata: YAML metadata of the repo's README to keep (``configs``,
            ``dataset_info``, licence...); ReLA's own keys are set on top.
        num_rows: rows of the pushed split, for ``size_categories``.
        template_path: a Jinja template; default ``model_cards/efficient_dataset.md``.
    """
    if not configs:
        raise ValueError("render_dataset_card needs at least one config with ReLA targets.")
    template = Path(template_path) if template_path is not None else DATASET_CARD_TEMPLATE
    if not template.is_file():
        raise FileNotFoundError(
            f"Dataset card template {template} not found (it ships in the repository's "
            "model_cards/ "
            "folder); pass template_path= or card=False."
        )
    first = next(iter(configs.values()))
    metadata = dict(existing_metadata or {})
    tags = list(dict.fromkeys([*(metadata.get("tags") or []), *DATASET_TAGS]))
    task_categories = list(
        dict.fromkeys([*(metadata.get("task_categories") or []), "image-feature-extraction"])
    )
    source_name = first.source.id or "an image dataset"
    metadata.update(
        pretty_name=pretty_name or metadata.get("pretty_name") or f"ReLA targets for {source_name}",
        tags=tags,
        task_categories=task_categories,
        rela_targets=[_metadata_entry(name, info) for name, info in configs.items()],
    )
    if num_rows is not None and "size_categories" not in metadata:
        metadata["size_categories"] = [size_category(num_rows)]
    card_data = DatasetCardData(**metadata)
    return DatasetCard.from_template(
        card_data,
        template_path=str(template),
        repo_id=repo_id,
        configs=[_config_view(name, info) for name, info in configs.items()],
        citation=RELA_CITATION,
    )
