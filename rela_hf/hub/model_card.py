"""The model card of a trained encoder, rendered from ``model_cards/encoder.md``.

:func:`render_model_card` fills the project's template with ``ModelCard.from_template``: metadata
(``library_name: timm``, ``pipeline_tag: image-feature-extraction``, the method's tags, the
licence derived from the data and the prior, the training datasets, ``model-index`` from
``eval_results.json``), training data and prior with their revisions, the ReLA switch step, the
compute, uses and limitations, the training config, the training-curve plot and loading
snippets. What the run did comes from its :class:`~rela_hf.run_layout.TrainingSummary`. Local
folders appear by a neutral name only (:mod:`rela_hf.public_names`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import yaml
from huggingface_hub import ModelCard, ModelCardData
from safetensors import safe_open
from timm.models import model_entrypoint

from rela_hf.card_templates import RELA_CITATION, benchmark_reference
from rela_hf.card_templates import template_path as template_path_of
from rela_hf.hub.card_inputs import (
    RunInputs,
    as_summary,
    derive_model_license,
    hub_id,
    neutral_name,
    source_line,
)
from rela_hf.hub.card_results import eval_results_to_model_index, eval_rows, evaluation_scope
from rela_hf.hub.export import DEFAULT_PRETRAINED_CFG, WEIGHTS_NAME, read_export_config
from rela_hf.licenses import DerivedLicense
from rela_hf.methods import Method
from rela_hf.public_names import public_config, public_name
from rela_hf.run_layout import TrainingSummary

__all__ = [
    "CARD_TAGS",
    "as_summary",
    "card_tags",
    "compute_summary",
    "derive_model_license",
    "eval_results_to_model_index",
    "render_model_card",
]

#: tags of every encoder card; :func:`card_tags` adds the method's
CARD_TAGS = ("image-feature-extraction", "timm", "rela-hf")
_ACCELERATOR_DEVICE_TYPES = ("cuda", "xpu", "npu", "mlu", "musa", "hpu", "mps", "xla")


def card_tags(method: type[Method], use_rela: bool) -> list[str]:
    """The method's name, ``self-supervised`` for a self-supervised one, ``rela`` if it ran."""
    tags = [method.name]
    if method.self_supervised:
        tags.append("self-supervised")
    if use_rela:
        tags.append("rela")
    return [*tags, *CARD_TAGS]


def _format_duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def compute_summary(summary: TrainingSummary | Mapping[str, Any]) -> dict[str, Any]:
    """Wall-clock and device-hours of a run from its training summary.

    ``wall_clock_seconds`` x ``num_processes``: GPU-hours when the device is an accelerator
    (``cuda:0``...), CPU process-hours otherwise.
    """
    summary = as_summary(summary)
    wall = summary.wall_clock_seconds
    processes = int(summary.num_processes or 1)
    device = str(summary.device or "unknown")
    is_accelerator = device.split(":")[0] in _ACCELERATOR_DEVICE_TYPES
    unit = "GPU-hours" if is_accelerator else "CPU process-hours"
    hours = None if wall is None else float(wall) * processes / 3600
    return {
        "wall_clock_seconds": wall,
        "num_processes": processes,
        "device": device,
        "device_name": summary.device_name,
        "hours": hours,
        "unit": unit,
    }


def _compute_line(summary: TrainingSummary) -> str:
    compute = compute_summary(summary)
    device = compute["device_name"] or compute["device"]
    if compute["device_name"] and compute["device"] not in ("unknown", compute["device_name"]):
        device = f"{compute['device_name']} (`{compute['device']}`)"
    parts = [f"{compute['num_processes']} x {device}"]
    if summary.mixed_precision not in (None, "no"):
        parts.append(f"{summary.mixed_precision} mixed precision")
    if compute["hours"] is not None:
        parts.append(f"wall-clock {_format_duration(compute['wall_clock_seconds'])}")
        parts.append(f"{compute['hours']:.3g} {compute['unit']}")
    return ", ".join(parts)


def _input_line(pretrained_cfg: Mapping[str, Any]) -> str:
    size = pretrained_cfg.get("input_size", [3, "?", "?"])
    mean = ", ".join(f"{m:.4g}" for m in pretrained_cfg.get("mean", []))
    std = ", ".join(f"{s:.4g}" for s in pretrained_cfg.get("std", []))
    return (
        f"{size[1]}x{size[2]} px ({size[0]} channels), {pretrained_cfg.get('interpolation')} "
        f"resize, crop_pct {pretrained_cfg.get('crop_pct')}, mean ({mean}), std ({std})"
    )


def _needs_rela_hf(architecture: str) -> bool:
    """Whether plain timm lacks the architecture (e.g. rela_hf.backbones' ``*_cifar`` ResNets)."""
    if not timm.is_model(architecture):
        return True
    return not model_entrypoint(architecture).__module__.startswith("timm.")


def _count_parameters(folder: Path) -> int:
    total = 0
    with safe_open(str(folder / WEIGHTS_NAME), framework="pt") as weights:
        for key in weights.keys():  # noqa: SIM118 - safe_open is not a dict
            if key.endswith(("running_mean", "running_var", "num_batches_tracked")):
                continue
            total += math.prod(weights.get_slice(key).get_shape())
    return total


def _human_count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _method_short(method: type[Method]) -> str:
    """``BYOL``, ``DINO``, ``SimCLR``; ``supervised training`` for a method that uses labels."""
    return method.title if method.self_supervised else f"{method.title.lower()} training"


def _switch_line(summary: TrainingSummary, run: RunInputs, switch_rule: str) -> str:
    if summary.switch_step is None:
        return (
            "never: the whole run was the ReLA phase (distillation of the prior's targets)"
            if run.recorded
            else "not recorded"
        )
    return (
        f"after optimizer step {summary.switch_step} ({switch_rule} rule); "
        f"{_method_short(run.method)} from step {summary.switch_step + 1}"
    )


def _handover_line(summary: TrainingSummary) -> str | None:
    """How ReLA handed over at the switch (``None``: the official hard switch, or not recorded)."""
    handover = summary.handover or {}
    if handover.get("kind") == "fade":
        return f"fade: the ReLA loss's weight fell from 1 to 0 over {handover['steps']} steps after the switch"
    if handover.get("kind") == "regularize":
        return f"regularize: the ReLA loss stayed after the switch with weight {handover['weight']}"
    return None


def _exported_line(summary: TrainingSummary) -> str | None:
    """Which step's weights the repo holds, and why (``load_best_model_at_end``)."""
    if summary.metric_for_best_model is None or summary.best_step is None:
        return None
    value = summary.best_metric_value
    why = (
        f"the best checkpoint by validation `{summary.metric_for_best_model}` "
        f"({value:.4f} on a split held out from the training data, never trained on)"
    )
    if summary.exported_step is not None and summary.exported_step != summary.steps:
        return f"step {summary.exported_step}: {why}; the last step ({summary.steps}) scored lower"
    return f"step {summary.exported_step}, the last step, which was also {why}"


def _license_values(derived: DerivedLicense) -> dict[str, Any]:
    inputs = [
        {"role": item.role, "name": item.name, "license": item.license.label, "source": item.license.source or "given"}
        for item in derived.inputs
    ]
    return {
        "license_label": derived.license.label,
        "license_known": derived.known,
        "license_reason": derived.reason,
        "license_inputs": inputs,
    }


def _metadata(
    config: Mapping[str, Any],
    summary: TrainingSummary,
    run: RunInputs,
    train_config: Mapping[str, Any],
    derived: DerivedLicense,
) -> dict[str, Any]:
    """The card's ReLA provenance (``rela_hf``): public names only.

    The prior made the targets; it is not a base model of the encoder, so it is recorded here,
    not in ``base_model``.
    """
    dataset = public_name(str(run.dataset)) if run.dataset else None
    prior = public_name(str(run.prior)) if run.use_rela and run.prior else None
    values = {
        "method": run.method.name,
        "use_rela": run.use_rela,
        "architecture": config["architecture"],
        "dataset": dataset.name if dataset else None,
        "dataset_local": True if dataset and dataset.local else None,
        "dataset_revision": run.dataset_revision or (dataset.revision if dataset else None),
        "targets_dataset": hub_id(train_config.get("targets_dataset_name")),
        "prior": prior.name if prior else None,
        "prior_local": True if prior and prior.local else None,
        "prior_revision": (run.prior_revision or prior.revision) if prior else None,
        "prior_pretrained": False if prior and run.prior_random else None,
        "switch_step": summary.switch_step,
        "steps": summary.steps,
        "images_seen": summary.images_seen,
        "license_rule": derived.reason,
        "license_inputs": [
            {"role": item.role, "name": item.name, "license": item.license.label} for item in derived.inputs
        ]
        or None,
    }
    return {key: value for key, value in values.items() if value is not None}


def _card_data(
    model_name: str,
    config: Mapping[str, Any],
    summary: TrainingSummary,
    run: RunInputs,
    train_config: Mapping[str, Any],
    derived: DerivedLicense,
    eval_results: Any,
) -> ModelCardData:
    datasets = [d for d in (hub_id(run.dataset), hub_id(train_config.get("targets_dataset_name"))) if d]
    base_model = hub_id(run.initial_weights)
    return ModelCardData(
        model_name=model_name,
        library_name="timm",
        pipeline_tag="image-feature-extraction",
        tags=card_tags(run.method, run.use_rela),
        **derived.license.metadata(),
        datasets=datasets or None,
        base_model=base_model,  # the checkpoint the student started from; never the prior
        eval_results=eval_results_to_model_index(eval_results) or None,
        rela_hf=_metadata(config, summary, run, train_config, derived),
    )


def _export_license(pretrained_cfg: Mapping[str, Any]) -> str | None:
    """An export's own licence, unless it is the placeholder :func:`export_backbone` writes."""
    license = pretrained_cfg.get("license")
    return None if license in (None, DEFAULT_PRETRAINED_CFG["license"]) else license


def _method_values(run: RunInputs) -> dict[str, Any]:
    method = run.method
    short = _method_short(method)
    link = f"[{short}](https://arxiv.org/abs/{method.paper.removeprefix('arXiv:')})"
    if not method.self_supervised:
        link += " (cross-entropy on the labels)"
    return {
        "method_title": f"ReLA-accelerated {short}" if run.use_rela else short,
        "method_short": short,
        "method_link": link,
        "self_supervised": method.self_supervised,
        "has_teacher": method.has_teacher,
        "use_rela": run.use_rela,
        "citation": f"{RELA_CITATION}\n\n{method.citation}",
    }


def _training_values(summary: TrainingSummary, run: RunInputs, train_config: Mapping[str, Any]) -> dict[str, Any]:
    if summary.switch_rule == "static" or train_config.get("switch_rule") == "static":
        switch_rule = "static"
    else:
        switch_rule = summary.switch_rule or train_config.get("switch_rule") or "adaptive"
    dataset_extra = f" (config `{run.dataset_config}`)" if run.dataset_config else ""
    if run.train_split:
        dataset_extra += f", split `{run.train_split}`"
    final = ", ".join(f"{k} {v:.4g}" for k, v in (summary.final_metrics or {}).items() if isinstance(v, (int, float)))
    recorded = run.recorded
    return {
        "switch_rule": switch_rule,
        "switch_step": summary.switch_step,
        "switch_line": _switch_line(summary, run, switch_rule),
        "handover_line": _handover_line(summary),
        "exported_line": _exported_line(summary),
        "dataset_line": source_line(run.dataset, run.dataset_revision, dataset_extra),
        "dataset_name": f"`{neutral_name(run.dataset)}`" if run.dataset else "its training data",
        "prior_line": source_line(
            run.prior, run.prior_revision, " with **randomly initialised** weights" if run.prior_random else ""
        ),
        "prior_name": f"`{neutral_name(run.prior)}`" if run.prior else "(not recorded)",
        "prior_random": run.prior_random,
        "initial_weights_line": (source_line(run.initial_weights, None) if run.initial_weights else None),
        "steps": summary.steps if recorded else "not recorded",
        "total_steps": summary.total_steps,
        "epochs": None if summary.epochs is None else f"{summary.epochs:.3g}",
        "data_ratio": summary.data_ratio,
        "images_seen": summary.images_seen if recorded else "not recorded",
        "global_batch_size": summary.global_batch_size,
        "compute_line": _compute_line(summary) if recorded else "not recorded",
        "final_metrics": final,
        "config_yaml": (
            yaml.safe_dump(public_config(train_config), sort_keys=True).strip() if train_config else "# not recorded"
        ),
    }


def render_model_card(
    export_dir: str | Path,
    *,
    repo_id: str,
    training_summary: TrainingSummary | Mapping[str, Any] | None = None,
    training_config: Mapping[str, Any] | None = None,
    eval_results: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
    plot_file: str | None = None,
    license: str | None = None,
    has_training_state: bool = False,
    knn_monitor: bool = False,
    template_path: str | Path | None = None,
) -> ModelCard:
    """The model card of an exported encoder (``huggingface_hub.ModelCard``).

    Rendered from the project's template ``model_cards/encoder.md`` with
    ``ModelCard.from_template``. The metadata says ``library_name: timm``,
    ``pipeline_tag: image-feature-extraction``, the method's tags (:func:`card_tags`), the
    licence (:func:`derive_model_license`), the training datasets (Hub ids), the checkpoint the
    student started from as ``base_model`` (never the prior, which only made the targets), the
    evaluation results as ``model-index`` entries (accuracy fractions, as in the text) and the
    ReLA provenance under ``rela_hf``. The body states the method, training data and prior with
    their revisions, the ReLA switch step, the compute, uses, limitations (biases of the data and
    the prior, the evaluation's scope), the licence and its inputs, the training config as YAML,
    the training-curve plot, loading snippets, a link to rela-hf's benchmark and the citations.
    No local path appears: folders are named by :func:`rela_hf.public_names.public_name`.

    Args:
        export_dir: the timm-format export (``config.json`` + ``model.safetensors``).
        repo_id: the Hub repo the card is for (used in the snippets and as model name).
        training_summary: the run's :class:`~rela_hf.run_layout.TrainingSummary` (or its dict).
        training_config: the run's resolved config (``config.yaml``).
        eval_results: one or a list of ``eval_results.json`` dicts.
        plot_file: repo-relative path of the training-curve PNG, if any.
        license: the weights' licence, set by the uploader; default: derived from the training
            data, the prior and the initial weights (``unknown`` when one of them is), or the
            export's own ``pretrained_cfg['license']`` when it is not rela-hf's placeholder.
        has_training_state: the repo also holds ``last-checkpoint/``.
        knn_monitor: the curves include the online kNN accuracy (``--eval_steps``).
        template_path: another Jinja template.
    """
    export_dir = Path(export_dir)
    config = read_export_config(export_dir)
    pretrained_cfg = config["pretrained_cfg"]
    summary = as_summary(training_summary)
    train_config = dict(training_config or {})
    run = RunInputs.of(summary, train_config)
    model_name = repo_id.split("/")[-1]
    derived = derive_model_license(summary, train_config, license=license or _export_license(pretrained_cfg))
    template = Path(template_path) if template_path is not None else template_path_of("encoder.md")
    if not template.is_file():
        raise FileNotFoundError(
            f"Model card template {template} not found (it ships in the repository's "
            "model_cards/ folder); pass template_path=."
        )
    return ModelCard.from_template(
        _card_data(model_name, config, summary, run, train_config, derived, eval_results),
        template_path=str(template),
        repo_id=repo_id,
        model_name=model_name,
        architecture=config["architecture"],
        num_features=config.get("num_features", "?"),
        num_params=_human_count(_count_parameters(export_dir)),
        eval_rows=eval_rows(eval_results),
        evaluation_scope=evaluation_scope(eval_results),
        input_line=_input_line(pretrained_cfg),
        plot_file=plot_file,
        needs_rela_hf=_needs_rela_hf(config["architecture"]),
        has_training_state=has_training_state,
        knn_monitor=knn_monitor,
        benchmark=benchmark_reference(),
        **_method_values(run),
        **_training_values(summary, run, train_config),
        **_license_values(derived),
    )
