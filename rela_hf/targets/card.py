"""The dataset card of efficient data (ReLA-D targets), rendered from ``model_cards/``.

A dataset that carries ReLA targets (arXiv:2405.14669) is only reusable if its card says which
prior (id and commit) made them, from which images (source dataset and commit), how they were
whitened, how to load them, what they are for and under which licence. :func:`render_dataset_card`
fills the project's template ``model_cards/efficient_dataset.md`` with
:class:`huggingface_hub.DatasetCard.from_template`, keeping metadata already in the repo's README
(``configs``/``dataset_info`` written by ``Dataset.push_to_hub``). The licence is derived from the
source images' and the prior's (:mod:`rela_hf.licenses`), ``source_datasets`` names the source;
local folders appear by a neutral name only (:mod:`rela_hf.public_names`). Model cards of
encoders live in :mod:`rela_hf.hub.model_card`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, DatasetCardData

from rela_hf.card_templates import RELA_CITATION, benchmark_reference, template_path
from rela_hf.license_lookup import dataset_license, model_license
from rela_hf.licenses import DerivedLicense, License, LicenseInput, derive_license, parse_license
from rela_hf.public_names import PublicName, public_name
from rela_hf.targets.record import RelaTargetsInfo

__all__ = [
    "DATASET_CARD_TEMPLATE",
    "DATASET_TAGS",
    "derive_dataset_license",
    "render_dataset_card",
    "size_category",
]

logger = logging.getLogger(__name__)

DATASET_CARD_TEMPLATE = template_path("efficient_dataset.md")
#: ReLA targets feed any training method (self-supervised or supervised): no method's tag
DATASET_TAGS = ["rela", "efficient-data", "representation-learning", "image"]
#: decimals of the variance fractions, in the metadata and the text alike
FRACTION_DECIMALS = 4

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


def _fraction(value: float) -> float:
    return round(float(value), FRACTION_DECIMALS)


def _public(name: str | None) -> PublicName | None:
    return public_name(str(name)) if name else None


def _source_view(source: Any) -> dict[str, Any]:
    """A :class:`~rela_hf.targets.record.DatasetSource` as the card may show it."""
    public = _public(source.id)
    return {
        "name": public.name if public else None,
        "local": bool(public and public.local),
        "hub_id": public.hub_id if public else None,  # for load_dataset snippets only
        "config": source.config,
        "split": source.split,
        "revision": source.revision or (public.revision if public else None),
        "num_rows": source.num_rows,
    }


def _prior_view(info: RelaTargetsInfo) -> dict[str, Any]:
    public = public_name(info.prior.name)
    return {
        **dataclasses.asdict(info.prior),
        "name": public.name,
        "local": public.local,
        "revision": info.prior.revision or public.revision,
        "load_name": (public.name if not public.local or public.hub_id else f"<path to {public.name}>"),
    }


def _config_licenses(info: RelaTargetsInfo, stored: Mapping[str, str], *, repo_id: str | None) -> list[LicenseInput]:
    """The licences of one config's source images and prior (a random prior has none).

    ``stored``: licences this repo's card already records (``rela_targets`` entries), by source
    or prior name. They stand in for licences that cannot be read now (a source folder that is
    not on this machine), and win for a source that is this repo itself, whose README licence
    is the derived one, not the images'.
    """
    source = _public(info.source.id)
    source_name = source.name if source else "not recorded"
    recorded = stored.get(source_name)
    if recorded and source and source.hub_id == repo_id:
        found = parse_license(recorded, source="this repo's card (rela_targets)")
    else:
        found = dataset_license(info.source.id, revision=info.source.revision)
        if not found.known and recorded:
            found = parse_license(recorded, source="this repo's card (rela_targets)")
    inputs = [LicenseInput("source images", source_name, found)]
    if info.prior.pretrained:
        prior_name = public_name(info.prior.name).name
        prior = model_license(info.prior.name, revision=info.prior.revision)
        if not prior.known and stored.get(prior_name):
            prior = parse_license(stored[prior_name], source="this repo's card (rela_targets)")
        inputs.append(LicenseInput("prior", prior_name, prior))
    return inputs


def _stored_licenses(existing_metadata: Mapping[str, Any] | None) -> dict[str, str]:
    """Known licences recorded by an earlier card of the repo, by source / prior name."""
    stored: dict[str, str] = {}
    for entry in (existing_metadata or {}).get("rela_targets") or []:
        for name_key, license_key in (("source_dataset", "source_license"), ("prior", "prior_license")):
            if entry.get(name_key) and entry.get(license_key) not in (None, "unknown"):
                stored[entry[name_key]] = entry[license_key]
    return stored


def _config_view(name: str, info: RelaTargetsInfo, licenses: list[LicenseInput]) -> dict[str, Any]:
    """What the template needs to know about one config, as plain values."""
    whitening = info.whitening
    assert whitening.explained_variance_ratio is not None  # a RelaTargetsInfo holds a fitted whitening
    return {
        "name": name,
        "targets_only": info.index_column is not None,
        "index_column": info.index_column,
        "target_column": info.target_column,
        "embedding_column": info.embedding_column,
        "k": whitening.n_components,
        "prior": _prior_view(info),
        "source": _source_view(info.source),
        "fit_source": _source_view(info.whitening_source or info.source),
        "whitening_fit_elsewhere": info.whitening_source is not None,
        "n_samples": whitening.n_samples,
        "n_features": whitening.n_features,
        "explained_variance": f"{_fraction(whitening.total_explained_variance_ratio):.4f}",
        "first_components": ", ".join(f"{_fraction(r):.4f}" for r in whitening.explained_variance_ratio[:5].tolist()),
        "licenses": [
            {
                "role": item.role,
                "name": item.name,
                "license": item.license.label,
                "source": item.license.source or "given",
            }
            for item in licenses
        ],
    }


def _metadata_entry(name: str, info: RelaTargetsInfo, licenses: list[LicenseInput]) -> dict[str, Any]:
    """A machine-readable summary of one config for the card's YAML header (public names)."""
    source, prior = _source_view(info.source), _prior_view(info)
    by_role = {item.role: item.license.label for item in licenses}
    entry = {
        "config_name": name,
        "prior": prior["name"],
        "prior_local": True if prior["local"] else None,
        "prior_revision": prior["revision"],
        "prior_library": info.prior.library,
        "prior_pretrained": False if not info.prior.pretrained else None,
        "prior_license": by_role.get("prior"),
        "source_dataset": source["name"],
        "source_local": True if source["local"] else None,
        "source_revision": source["revision"],
        "source_split": info.source.split,
        "source_license": by_role.get("source images"),
        "n_components": info.n_components,
        "target_column": info.target_column,
        "index_column": info.index_column,
        "explained_variance_ratio": _fraction(info.whitening.total_explained_variance_ratio),
    }
    return {key: value for key, value in entry.items() if value is not None or key == "index_column"}


def derive_dataset_license(
    configs: Mapping[str, RelaTargetsInfo],
    *,
    license: str | License | None = None,
    existing_metadata: Mapping[str, Any] | None = None,
    repo_id: str | None = None,
) -> tuple[DerivedLicense, dict[str, list[LicenseInput]]]:
    """The licence of a dataset with ReLA targets, and each config's inputs.

    Derived (:func:`rela_hf.licenses.derive_license`) from every config's source images and
    pretrained prior; ``license`` (set by the uploader) wins.

    Args:
        existing_metadata: the repo's README metadata (its ``rela_targets`` licences).
        repo_id: the repo the card is for (a source that is this repo keeps its recorded licence).
    """
    stored = _stored_licenses(existing_metadata)
    per_config = {name: _config_licenses(info, stored, repo_id=repo_id) for name, info in configs.items()}
    inputs = [item for items in per_config.values() for item in items]
    unique = list({(item.role, item.name, item.license.label): item for item in inputs}.values())
    return derive_license(unique, explicit=license), per_config


def _source_datasets(configs: Mapping[str, RelaTargetsInfo], existing: list[str]) -> list[str]:
    """``extended|<hub id>`` per Hub source (the Hub's convention); local folders have none."""
    hub_sources = [
        f"extended|{public.hub_id}"
        for info in configs.values()
        if (public := _public(info.source.id)) and public.hub_id
    ]
    return list(dict.fromkeys([*existing, *hub_sources]))


def render_dataset_card(
    configs: Mapping[str, RelaTargetsInfo],
    *,
    repo_id: str | None,
    existing_metadata: Mapping[str, Any] | None = None,
    num_rows: int | None = None,
    template_path: str | os.PathLike | None = None,
    pretty_name: str | None = None,
    license: str | None = None,
) -> DatasetCard:
    """The dataset card of a dataset with ReLA targets.

    Args:
        configs: config name -> its :class:`~rela_hf.targets.RelaTargetsInfo` (one entry for a
            plain push or a local save, several when a repo holds targets of several priors).
        repo_id: the Hub dataset repo (``None`` for a folder written by ``save_to_disk``).
        existing_metadata: YAML metadata of the repo's README to keep (``configs``,
            ``dataset_info``...); ReLA's own keys and the derived licence are set on top.
        num_rows: rows of the pushed split, for ``size_categories``.
        template_path: a Jinja template; default ``model_cards/efficient_dataset.md``.
        pretty_name: the card's title (default: the README's, else "ReLA targets for <source>").
        license: the dataset's licence, set by the uploader; default: derived from the source
            images and the prior (``unknown``, said explicitly, when one of them is unknown).
    """
    if not configs:
        raise ValueError("render_dataset_card needs at least one config with ReLA targets.")
    template = Path(template_path) if template_path is not None else DATASET_CARD_TEMPLATE
    if not template.is_file():
        raise FileNotFoundError(
            f"Dataset card template {template} not found (it ships in the repository's "
            "model_cards/ folder); pass template_path= or card=False."
        )
    metadata = dict(existing_metadata or {})
    derived, per_config = derive_dataset_license(configs, license=license, existing_metadata=metadata, repo_id=repo_id)
    _warn_if_licence_changes(metadata, derived)
    for key in ("license", "license_name", "license_link"):
        metadata.pop(key, None)
    first_source = _public(next(iter(configs.values())).source.id)
    metadata.update(
        pretty_name=pretty_name
        or metadata.get("pretty_name")
        or f"ReLA targets for {first_source.name if first_source else 'an image dataset'}",
        tags=list(dict.fromkeys([*(metadata.get("tags") or []), *DATASET_TAGS])),
        task_categories=list(dict.fromkeys([*(metadata.get("task_categories") or []), "image-feature-extraction"])),
        rela_targets=[_metadata_entry(name, info, per_config[name]) for name, info in configs.items()],
        **derived.license.metadata(),
    )
    source_datasets = _source_datasets(configs, list(metadata.pop("source_datasets", None) or []))
    if num_rows is not None and "size_categories" not in metadata:
        metadata["size_categories"] = [size_category(num_rows)]
    return DatasetCard.from_template(
        DatasetCardData(source_datasets=source_datasets or None, **metadata),
        template_path=str(template),
        repo_id=repo_id,
        configs=[_config_view(name, info, per_config[name]) for name, info in configs.items()],
        license_label=derived.license.label,
        license_known=derived.known,
        license_reason=derived.reason,
        any_pretrained_prior=any(info.prior.pretrained for info in configs.values()),
        benchmark=benchmark_reference(),
        citation=RELA_CITATION,
    )


def _warn_if_licence_changes(metadata: Mapping[str, Any], derived: DerivedLicense) -> None:
    """A README licence that the derived one replaces is logged, never dropped silently."""
    before = metadata.get("license")
    if before and before != derived.license.id and not derived.explicit:
        logger.warning(
            "The repo's card declared license %r; rela-hf derives %r (%s). Pass license= to keep another licence.",
            before,
            derived.license.label,
            derived.reason,
        )
