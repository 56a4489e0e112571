"""The model card of a trained encoder, rendered from ``model_cards/encoder.md``.

:func:`render_model_card` fills the project's template with ``ModelCard.from_template``: metadata
(``library_name: timm``, ``pipeline_tag: image-feature-extraction``, tags, licence, dataset,
``model-index`` from ``eval_results.json``), training data and prior with their revisions, the ReLA
switch step, the compute, the training config, the training-curve plot and loading snippets. What
the run did comes from its :class:`~rela_hf.run_layout.TrainingSummary`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from safetensors import safe_open
from timm.models import model_entrypoint

from rela_hf.card_templates import RELA_CITATION
from rela_hf.card_templates import template_path as template_path_of
from rela_hf.hub.export import WEIGHTS_NAME, read_export_config
from rela_hf.methods import method_class
from rela_hf.model_names import ModelNameError, parse_model_name, safe_model_name
from rela_hf.run_layout import TrainingSummary

__all__ = [
    "CARD_TAGS",
    "as_summary",
    "compute_summary",
    "eval_results_to_model_index",
    "render_model_card",
]

CARD_TAGS = ("self-supervised", "rela", "image-feature-extraction", "timm", "rela-hf")
#: One sentence of measured results per method, from rela-hf's benchmark (benchmarks/results).
METHOD_RESULTS = {
    "byol": (
        "On rela-hf's own benchmark (Fashion-MNIST, a small ResNet-18 on CPU, two seeds), ReLA at "
        "half of BYOL's optimizer-step budget scored about 7 points above BYOL at the full budget "
        "on kNN and linear probe (80.8 vs 73.4 % kNN); see `benchmarks/results/README.md` in rela-hf."
    ),
}


def as_summary(summary: TrainingSummary | Mapping[str, Any] | None) -> TrainingSummary:
    """A :class:`TrainingSummary` from itself, its dict (``training_summary.json``) or nothing."""
    if isinstance(summary, TrainingSummary):
        return summary
    return TrainingSummary.from_dict(summary or {})


PROTOCOL_TITLES = {"knn": "kNN", "linear_probe": "linear probe"}
_ACCELERATOR_DEVICE_TYPES = ("cuda", "xpu", "npu", "mlu", "musa", "hpu", "mps", "xla")


def _protocol_title(entry: Mapping[str, Any]) -> str:
    args = entry.get("args") or {}
    if entry["protocol"] == "knn":
        return f"kNN (k={args.get('k', '?')}, T={args.get('temperature', '?')})"
    if entry["protocol"] == "linear_probe":
        return f"linear probe ({args.get('epochs', '?')} epochs, Adam lr {args.get('lr', '?')})"
    return str(entry["protocol"])


def _as_list(eval_results: Any) -> list[Mapping[str, Any]]:
    if eval_results is None:
        return []
    if isinstance(eval_results, Mapping):
        return [eval_results]
    return list(eval_results)


def eval_results_to_model_index(
    eval_results: Mapping[str, Any] | list[Mapping[str, Any]] | None,
) -> list[Any]:
    """``EvalResult`` entries (the card's ``model-index``) of one or more eval_results.json dicts."""
    entries = []
    for report in _as_list(eval_results):
        dataset = report["dataset"]
        name = dataset.get("name") or dataset.get("id") or "unnamed dataset"
        for result in report["results"]:
            args = {k: v for k, v in (result.get("args") or {}).items() if v is not None}
            entries.append(EvalResult(
                task_type="image-classification",
                # huggingface_hub merges results sharing task type + dataset into one entry and
                # keeps the first task name, so the protocol goes into the metric name.
                task_name="Image classification on frozen features",
                dataset_type=_dataset_type(dataset.get("id"), name),
                dataset_name=name,
                dataset_config=dataset.get("config"),
                dataset_split=dataset.get("split"),
                dataset_revision=dataset.get("revision"),
                metric_type=result["metric"],
                metric_name=f"{_protocol_title(result)} top-1 accuracy",
                metric_value=float(result["value"]),
                metric_args=args or None,
            ))
    return entries


def _dataset_type(dataset_id: str | None, name: str) -> str:
    """The model-index ``dataset.type``: a Hub dataset id, never a local path (its name then)."""
    if dataset_id and not _is_local_path(dataset_id):
        try:
            if parse_model_name(dataset_id).kind == "hub":
                return dataset_id
        except ModelNameError:
            pass
    return safe_model_name(name if name != dataset_id else str(dataset_id), default="dataset")


def _eval_rows(eval_results: Any) -> list[dict[str, Any]]:
    rows = []
    for report in _as_list(eval_results):
        dataset = report["dataset"]
        name = dataset.get("name") or dataset.get("id") or "unnamed dataset"
        if dataset.get("id") and dataset.get("id") != name and _dataset_type(dataset["id"], name) == dataset["id"]:
            name = f"{name} (`{dataset['id']}`)"  # a Hub id, never a local path
        for result in report["results"]:
            value = f"{100 * result['value']:.2f}"
            if result.get("std") is not None:
                value += f" ± {100 * result['std']:.2f}"
            rows.append({
                "dataset": name,
                "train_split": dataset.get("train_split", "train"),
                "split": dataset.get("split", "test"),
                "protocol": _protocol_title(result),
                "value": value,
                "num_train": dataset.get("num_train_samples", "?"),
                "num_eval": dataset.get("num_samples", "?"),
            })
    return rows


def _is_local_path(name: str) -> bool:
    return name.startswith(("/", ".", "~", "local-dir:", "offline:")) or Path(name).exists()


def _source_line(name: Any, revision: Any, extra: str = "") -> str:
    """``name`` with its revision, or why there is none (a local folder has no Hub revision)."""
    if not name:
        return "not recorded"
    if revision:
        where = f"revision `{revision}`"
    elif _is_local_path(str(name)):
        name = Path(str(name).split(":", 1)[-1]).name or name  # its name, not the machine's path
        where = "a local folder (no Hub revision)"
    else:
        where = "revision not pinned (latest at training time)"
    return f"`{name}`{extra}, {where}"


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
    device_name = summary.device_name
    is_accelerator = device.split(":")[0] in _ACCELERATOR_DEVICE_TYPES
    unit = "GPU-hours" if is_accelerator else "CPU process-hours"
    hours = None if wall is None else float(wall) * processes / 3600
    return {"wall_clock_seconds": wall, "num_processes": processes, "device": device,
            "device_name": device_name, "hours": hours, "unit": unit}


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
    return (f"{size[1]}x{size[2]} px ({size[0]} channels), {pretrained_cfg.get('interpolation')} "
            f"resize, crop_pct {pretrained_cfg.get('crop_pct')}, mean ({mean}), std ({std})")


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
            shape = weights.get_slice(key).get_shape()
            total += math.prod(shape)
    return total


def _human_count(n: int) -> str:
    for unit, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f}{unit}"
    return str(n)


def _method_of(summary: TrainingSummary, train_config: dict[str, Any]) -> tuple[bool, str]:
    """(whether ReLA ran, the method's name) from the summary, else the run's config.

    rela-hf 0.2 configs said ``method: rela | baseline`` (``byol``: baseline) and named the method
    in ``ssl_method``.
    """
    if summary.method is not None:
        return summary.use_rela is not False, summary.method
    name = train_config.get("method") or "byol"
    if "ssl_method" in train_config or name in ("rela", "baseline"):
        return name == "rela", train_config.get("ssl_method") or "byol"
    return bool(train_config.get("use_rela", True)), name


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
) -> Any:
    """The model card of an exported encoder (``huggingface_hub.ModelCard``).

    Rendered from the project's template ``model_cards/encoder.md`` with
    ``ModelCard.from_template``. The metadata says ``library_name: timm``,
    ``pipeline_tag: image-feature-extraction``, the tags, the licence, the training dataset,
    and the evaluation results as ``model-index`` entries (one ``EvalResult`` per dataset and
    protocol; ``model_name`` is set, which ``model-index`` requires). The body states the
    method, training data and prior with their revisions, the ReLA switch step, the compute
    (steps, images seen, wall-clock, GPU- or CPU-hours and device), the full training config as
    YAML, the training-curve plot, timm and transformers loading snippets and the citations.

    Args:
        export_dir: the timm-format export (``config.json`` + ``model.safetensors``).
        repo_id: the Hub repo the card is for (used in the snippets and as model name).
        training_summary: the run's :class:`~rela_hf.run_layout.TrainingSummary` (or its dict).
        training_config: the run's resolved config (``config.yaml``).
        eval_results: one or a list of ``eval_results.json`` dicts.
        plot_file: repo-relative path of the training-curve PNG, if any.
        license: default: the export's ``pretrained_cfg['license']``.
        has_training_state: the repo also holds ``last-checkpoint/``.
        knn_monitor: the curves include the online kNN accuracy (``--eval_steps``).
        template_path: another Jinja template.
    """
    export_dir = Path(export_dir)
    config = read_export_config(export_dir)
    pretrained_cfg = config["pretrained_cfg"]
    summary = as_summary(training_summary)
    recorded = summary != TrainingSummary()
    train_config = dict(training_config or {})
    use_rela, method_name = _method_of(summary, train_config)
    method = "rela" if use_rela else "baseline"  # the template's two cases
    ssl = method_class(method_name)
    method_title = f"ReLA-accelerated {ssl.title}" if method == "rela" else ssl.title
    model_name = repo_id.split("/")[-1]

    dataset_id = summary.dataset or train_config.get("dataset_name")
    dataset_revision = summary.dataset_revision or train_config.get("dataset_revision")
    dataset_config = summary.dataset_config or train_config.get("dataset_config_name")
    prior_id = summary.prior or train_config.get("prior")
    prior_revision = summary.prior_revision or train_config.get("prior_revision")
    prior_random = summary.prior_pretrained is False  # a random prior must not read as a pretrained one
    switch_step = summary.switch_step
    if summary.switch_rule == "static" or train_config.get("switch_rule") == "static":
        switch_rule = "static"
    else:
        switch_rule = summary.switch_rule or train_config.get("switch_rule") or "adaptive"
    if switch_step is None:
        switch_line = ("never: the whole run was the ReLA phase (distillation of the prior's targets)"
                       if recorded else "not recorded")
    else:
        switch_line = f"after optimizer step {switch_step} ({switch_rule} rule); {ssl.title} from step {switch_step + 1}"
    dataset_extra = f" (config `{dataset_config}`)" if dataset_config else ""
    if summary.train_split or train_config.get("train_split"):
        dataset_extra += f", split `{summary.train_split or train_config.get('train_split')}`"

    final_metrics = summary.final_metrics or {}
    final_text = ", ".join(
        f"{k} {v:.4g}" for k, v in final_metrics.items() if isinstance(v, (int, float))
    )
    license = license or pretrained_cfg.get("license") or "apache-2.0"
    datasets = [dataset_id] if dataset_id and not _is_local_path(str(dataset_id)) else None

    card_data = ModelCardData(
        model_name=model_name,
        library_name="timm",
        pipeline_tag="image-feature-extraction",
        tags=[CARD_TAGS[0], ssl.name, *CARD_TAGS[1:]],
        license=license,
        datasets=datasets,
        eval_results=eval_results_to_model_index(eval_results) or None,
        # ReLA provenance, machine-readable (the prior made the targets; it is not a base model)
        rela_hf={k: v for k, v in {
            "method": method, "ssl_method": ssl.name, "architecture": config["architecture"],
            "dataset": dataset_id, "dataset_revision": dataset_revision,
            "prior": prior_id if method == "rela" else None,
            "prior_revision": prior_revision if method == "rela" else None,
            "prior_pretrained": False if method == "rela" and prior_random else None,
            "switch_step": switch_step, "steps": summary.steps,
            "images_seen": summary.images_seen,
        }.items() if v is not None},
    )
    template = Path(template_path) if template_path is not None else template_path_of("encoder.md")
    if not template.is_file():
        raise FileNotFoundError(
            f"Model card template {template} not found (it ships in the repository's "
            "model_cards/ folder); pass template_path=."
        )
    epochs = summary.epochs
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        repo_id=repo_id,
        model_name=model_name,
        method=method,
        method_title=method_title,
        ssl_title=ssl.title,
        ssl_arxiv=ssl.paper.removeprefix("arXiv:"),
        ssl_has_teacher=ssl.has_teacher,
        ssl_result=METHOD_RESULTS.get(ssl.name),
        architecture=config["architecture"],
        num_features=config.get("num_features", "?"),
        num_params=_human_count(_count_parameters(export_dir)),
        eval_rows=_eval_rows(eval_results),
        switch_rule=switch_rule,
        switch_step=switch_step,
        switch_line=switch_line,
        dataset_line=_source_line(dataset_id, dataset_revision, dataset_extra),
        prior_line=_source_line(prior_id, prior_revision,
                                " with **randomly initialised** weights" if prior_random else ""),
        steps=summary.steps if recorded else "not recorded",
        total_steps=summary.total_steps,
        epochs=None if epochs is None else f"{epochs:.3g}",
        data_ratio=summary.data_ratio,
        images_seen=summary.images_seen if recorded else "not recorded",
        global_batch_size=summary.global_batch_size,
        compute_line=_compute_line(summary) if recorded else "not recorded",
        input_line=_input_line(pretrained_cfg),
        final_metrics=final_text,
        plot_file=plot_file,
        config_yaml=(yaml.safe_dump(train_config, sort_keys=True).strip()
                     if train_config else "# not recorded"),
        needs_rela_hf=_needs_rela_hf(config["architecture"]),
        has_training_state=has_training_state,
        knn_monitor=knn_monitor,
        citation=f"{RELA_CITATION}\n\n{ssl.citation}",
    )
