"""What a training run was made from, as a model card may name it, and its licence.

A run's summary (else its config) records the training data, the prior that made the ReLA targets
and the backbone the student started from. :class:`RunInputs` gathers them; the card names each
by :func:`rela_hf.public_names.public_name` (a local folder never by its path), and
:func:`derive_model_license` reads their licences and derives the weights' licence
(:mod:`rela_hf.licenses`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from rela_hf.license_lookup import dataset_license, model_license
from rela_hf.licenses import DerivedLicense, LicenseInput, derive_license
from rela_hf.methods import Method, method_class
from rela_hf.public_names import public_name
from rela_hf.run_layout import TrainingSummary

__all__ = [
    "RunInputs",
    "as_summary",
    "derive_model_license",
    "hub_id",
    "neutral_name",
    "source_line",
]


def as_summary(summary: TrainingSummary | Mapping[str, Any] | None) -> TrainingSummary:
    """A :class:`TrainingSummary` from itself, its dict (``training_summary.json``) or nothing."""
    if isinstance(summary, TrainingSummary):
        return summary
    return TrainingSummary.from_dict(summary or {})


@dataclasses.dataclass(frozen=True)
class RunInputs:
    """What a run was made from, as its summary (else its config) records it."""

    recorded: bool
    use_rela: bool
    method: type[Method]
    dataset: str | None
    dataset_revision: str | None
    dataset_config: str | None
    train_split: str | None
    prior: str | None
    prior_revision: str | None
    prior_random: bool
    backbone: str | None

    @classmethod
    def of(cls, summary: TrainingSummary, config: Mapping[str, Any]) -> RunInputs:
        """rela-hf 0.2 configs said ``method: rela | baseline`` and named it in ``ssl_method``."""
        if summary.method is not None:
            use_rela, name = summary.use_rela is not False, summary.method
        elif "ssl_method" in config or config.get("method") in ("rela", "baseline"):
            use_rela, name = config.get("method") != "baseline", config.get("ssl_method") or "byol"
        else:
            use_rela, name = bool(config.get("use_rela", True)), config.get("method") or "byol"
        return cls(
            recorded=summary != TrainingSummary(),
            use_rela=use_rela,
            method=method_class(name),
            dataset=summary.dataset or config.get("dataset_name"),
            dataset_revision=summary.dataset_revision or config.get("dataset_revision"),
            dataset_config=summary.dataset_config or config.get("dataset_config_name"),
            train_split=summary.train_split or config.get("train_split"),
            prior=summary.prior or config.get("prior"),
            prior_revision=summary.prior_revision or config.get("prior_revision"),
            prior_random=summary.prior_pretrained is False,
            backbone=summary.backbone or config.get("backbone"),
        )

    @property
    def initial_weights(self) -> str | None:
        """The checkpoint the student started from (a Hub repo or a folder), if any.

        A timm architecture name starts from random weights (the trainer never asks timm for
        pretrained ones); ``hf-hub:``, ``org/name`` and folders are checkpoints.
        """
        if not self.backbone:
            return None
        public = public_name(self.backbone)
        return self.backbone if public.local or public.hub_id else None


def derive_model_license(
    training_summary: TrainingSummary | Mapping[str, Any] | None,
    training_config: Mapping[str, Any] | None = None,
    *,
    license: str | None = None,
) -> DerivedLicense:
    """The licence of a run's weights, from its training data, prior and initial weights.

    Reads each input's licence (:mod:`rela_hf.license_lookup`) and applies
    :func:`rela_hf.licenses.derive_license`: the prior counts when ReLA ran with a pretrained
    prior (its embeddings were distilled); an unrecorded prior of a ReLA run is an unknown input.

    Args:
        license: set by the uploader: used as given.
    """
    run = RunInputs.of(as_summary(training_summary), dict(training_config or {}))
    inputs = []
    if run.recorded or run.dataset:
        inputs.append(
            LicenseInput(
                "training data", neutral_name(run.dataset), dataset_license(run.dataset, revision=run.dataset_revision)
            )
        )
    if run.use_rela and (run.recorded or run.prior) and not run.prior_random:
        inputs.append(
            LicenseInput("prior", neutral_name(run.prior), model_license(run.prior, revision=run.prior_revision))
        )
    if run.initial_weights:
        inputs.append(
            LicenseInput("initial weights", neutral_name(run.initial_weights), model_license(run.initial_weights))
        )
    return derive_license(inputs, explicit=license)


def neutral_name(name: str | None) -> str:
    """How the card names a dataset or model (:func:`~rela_hf.public_names.public_name`)."""
    return public_name(str(name)).name if name else "not recorded"


def source_line(name: Any, revision: Any, extra: str = "") -> str:
    """``name`` with its revision, or why there is none; a local folder by its name only."""
    if not name:
        return "not recorded"
    public = public_name(str(name))
    if public.local and public.hub_id:
        return (
            f"`{public.hub_id}`{extra}, a local copy from the Hugging Face cache, revision "
            f"`{revision or public.revision}`"
        )
    if public.local:
        return f"`{public.name}`{extra}, a local folder (no Hub revision)"
    where = f"revision `{revision}`" if revision else "revision not pinned (latest at training time)"
    return f"`{public.name}`{extra}, {where}"


def hub_id(name: Any) -> str | None:
    """The Hub repo ``name`` is (or, a Hugging Face cache copy, came from); None for a folder."""
    if not name:
        return None
    public = public_name(str(name))
    return public.hub_id
