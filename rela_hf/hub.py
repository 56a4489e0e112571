"""Publishing trained encoders: timm Hub format export, model cards, pushing.

A ReLA/BYOL run (ReLA: arXiv:2405.14669, BYOL: arXiv:2006.07733) produces a backbone that is
only useful once others can load it. This module writes it in timm's Hub format, which both
``timm.create_model("hf-hub:org/name", pretrained=True)`` and
``transformers.AutoModel.from_pretrained("org/name")`` (through ``TimmWrapperModel``) read:

- ``config.json``: ``architecture``, ``num_classes`` (0), ``num_features``, ``model_args`` and
  a ``pretrained_cfg`` carrying *our* provenance and the preprocessing used in training.
- ``model.safetensors``: the weights (never pickles).

Two traps of the pinned stack are handled here (see the team's hf-conventions notes, §1-§2):
timm records ``num_classes`` in ``model_args`` while transformers' ``TimmWrapperModel`` passes
``num_classes`` itself (``TypeError: got multiple values``), so the key is stripped from
``model_args``; and timm copies the provenance (tag, licence, paper ids, origin url) of the
architecture's *default* ImageNet weights into every export, so those keys are replaced.

Then the repo around it:

- :func:`render_model_card`: the card from the project's template ``model_cards/encoder.md``
  (``ModelCard.from_template``): metadata (``library_name: timm``, ``pipeline_tag:
  image-feature-extraction``, tags, licence, dataset, ``model-index`` from
  ``eval_results.json``), training data and prior with revisions, switch step, compute, the
  training config, the training-curve plot (:func:`plot_training_history`), loading snippets.
- :func:`push_encoder`: one ``create_commit`` for the whole folder (timm export at the root,
  one ``config.json``), retried with backoff on network/5xx errors, never writing locally.
- :func:`build_hub_folder` / :func:`push_training_output`: a training run's ``output_dir``
  (``backbone/``, ``training_summary.json``, ``config.yaml``, ``history.jsonl``,
  ``eval_results.json``, ``checkpoint-*/``) -> repo contents -> Hub.

Examples:
    >>> export_backbone(backbone, "out/backbone", data_config=training_data_config(32))  # doctest: +SKIP
    >>> push_training_output("out", "me/rela-byol-resnet18-cifar10")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rela_hf.constants import IMAGENET_MEAN, IMAGENET_STD

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_PRETRAINED_CFG",
    "ExportError",
    "PushError",
    "build_hub_folder",
    "check_hub_folder",
    "compute_summary",
    "eval_results_to_model_index",
    "export_backbone",
    "plot_training_history",
    "push_encoder",
    "push_training_output",
    "read_export_config",
    "read_training_history",
    "render_model_card",
    "training_data_config",
]

RELA_PAPER_ID = "arXiv:2405.14669"
BYOL_PAPER_ID = "arXiv:2006.07733"

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Files that make up an export; a folder holding only these may be replaced by a new export.
EXPORT_FILES = frozenset({CONFIG_NAME, WEIGHTS_NAME})
#: Provenance keys timm inherits from the architecture's default (ImageNet) pretrained cfg.
#: They describe weights we did not train, so an export never keeps them.
INHERITED_PROVENANCE_KEYS = (
    "tag", "license", "origin_url", "paper_ids", "paper_name", "description", "notes",
    "label_names", "label_descriptions", "hf_hub_id", "url", "file", "source",
)
#: Preprocessing keys of a timm data config that an export records.
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")

DEFAULT_PRETRAINED_CFG: dict[str, Any] = {
    "tag": "rela_byol",
    "license": "apache-2.0",
    "paper_ids": RELA_PAPER_ID,
    "paper_name": "Efficiency for Free: Ideal Data Are Transportable Representations",
    "description": "Backbone pretrained with ReLA-accelerated BYOL (rela-hf).",
}


class ExportError(RuntimeError):
    """An export could not be written or would not load back."""


def training_data_config(
    image_size: int,
    *,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    interpolation: str = "bilinear",
    crop_pct: float = 1.0,
    in_chans: int = 3,
) -> dict[str, Any]:
    """The timm data config of the spec's evaluation preprocessing at ``image_size``.

    Deterministic resize (shorter side) + centre crop to ``image_size`` and ImageNet
    normalisation, as in the official ReLA evaluation code. Pass the result as
    ``data_config=`` to :func:`export_backbone` so the export says how it was trained.

    Examples:
        >>> training_data_config(32)["input_size"], training_data_config(32)["crop_pct"]
        ((3, 32, 32), 1.0)
    """
    return {
        "input_size": (in_chans, int(image_size), int(image_size)),
        "interpolation": interpolation,
        "mean": tuple(float(m) for m in mean),
        "std": tuple(float(s) for s in std),
        "crop_pct": float(crop_pct),
        "crop_mode": "center",
    }


def _validate_data_config(data_config: Mapping[str, Any], in_chans: int) -> dict[str, Any]:
    unknown = set(data_config) - set(DATA_CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"data_config has unknown keys {sorted(unknown)}; expected a timm data config "
            f"with keys among {DATA_CONFIG_KEYS} (see rela_hf.hub.training_data_config)."
        )
    config = dict(data_config)
    if "input_size" in config:
        size = tuple(int(v) for v in config["input_size"])
        if len(size) != 3 or size[0] != in_chans:
            raise ValueError(
                f"data_config['input_size'] must be (channels, height, width) with "
                f"channels={in_chans} (the model's in_chans), got {config['input_size']!r}."
            )
        config["input_size"] = size
    for key in ("mean", "std"):
        if key in config:
            values = tuple(float(v) for v in config[key])
            if len(values) != in_chans:
                raise ValueError(
                    f"data_config[{key!r}] has {len(values)} values but the model takes "
                    f"{in_chans} input channels."
                )
            config[key] = values
    return config


def _pretrained_cfg_of(model: nn.Module) -> dict[str, Any]:
    """A timm model's ``pretrained_cfg`` (``{}`` for other modules)."""
    cfg = getattr(model, "pretrained_cfg", None)
    return dict(cfg) if isinstance(cfg, Mapping) else {}


def _check_backbone(model: nn.Module) -> None:
    if "architecture" not in _pretrained_cfg_of(model):
        raise TypeError(
            f"export_backbone expects a timm model (created with timm.create_model), got "
            f"{type(model).__name__} without a timm pretrained_cfg. Export the backbone "
            "itself, not the BYOL/ReLA wrapper around it."
        )
    if getattr(model, "num_classes", None) != 0:
        raise ValueError(
            f"export_backbone expects a backbone without classifier (num_classes=0), got "
            f"num_classes={getattr(model, 'num_classes', None)}. Call "
            "model.reset_classifier(0) on a copy, or create it with num_classes=0."
        )


def _model_in_chans(model: nn.Module) -> int:
    """Input channels as timm records them for the rebuild (``model_args['in_chans']``)."""
    from timm.models._hub import get_model_args

    in_chans = get_model_args(model).get("in_chans")
    return int(in_chans if in_chans is not None else _pretrained_cfg_of(model)["input_size"][0])


def _finalize_config(config_path: Path, ours: Mapping[str, Any]) -> None:
    """Fix what ``save_for_hf`` writes: the TimmWrapper incompatibility and the provenance.

    - timm 1.0.31 records ``num_classes`` in ``model_args`` while transformers 5.24's
      ``TimmWrapperModel`` passes ``num_classes`` itself (``TypeError: multiple values``):
      drop it from ``model_args`` (the root ``num_classes`` stays).
    - timm merges our ``pretrained_cfg`` over the architecture's *default* one, whose
      provenance (tag, licence, paper, origin url...) describes weights we did not train:
      drop every provenance key, then set ours (a ``None`` value leaves the key out).
    """
    config = json.loads(config_path.read_text())
    config.get("model_args", {}).pop("num_classes", None)
    cfg = config["pretrained_cfg"]
    for key in INHERITED_PROVENANCE_KEYS:
        cfg.pop(key, None)
    cfg.update({key: value for key, value in ours.items() if value is not None})
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def _verify_reload(model: nn.Module, folder: Path, input_size: tuple[int, int, int]) -> None:
    """Rebuild the model from the export and check it computes the same features.

    A backbone modified after ``timm.create_model`` (a stem swapped by hand, a stride or a
    pooling changed) cannot be rebuilt from ``architecture`` + ``model_args``; a change of
    stride keeps every parameter shape, so names and shapes are compared *and* one forward
    pass on a fixed input. Catching it here beats publishing a checkpoint nobody can load.
    """
    import timm

    try:
        reloaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    except Exception as error:
        raise ExportError(
            f"The export of {type(model).__name__} does not load back with timm "
            f"(create_model('local-dir:...', pretrained=True)): {error}. Is the backbone "
            "expressible as timm architecture + model_args (no modules replaced by hand)?"
        ) from error
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in reloaded.state_dict().items()}
    hint = (
        "The backbone was modified after timm.create_model, so config.json cannot describe "
        "it; build it from timm model_args or a registered timm architecture instead."
    )
    if expected != got:
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        changed = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])[:5]
        raise ExportError(
            f"timm rebuilds {type(reloaded).__name__} from the export, but its parameters "
            f"differ from the model's (missing {missing}, unexpected {extra}, shape changed "
            f"{changed}). {hint}"
        )
    parameter = next(model.parameters())
    probe = torch.randn((2, *input_size), generator=torch.Generator().manual_seed(0))
    probe = probe.to(device=parameter.device, dtype=parameter.dtype)
    reloaded.to(device=parameter.device, dtype=parameter.dtype).eval()
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            ours, theirs = model(probe), reloaded(probe)
    finally:
        model.train(was_training)
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5):
        raise ExportError(
            f"timm rebuilds {type(reloaded).__name__} from the export with the same parameters, "
            f"but it computes different features (shapes {tuple(ours.shape)} vs "
            f"{tuple(theirs.shape)}). {hint}"
        )


def _replace_dir_atomically(tmp_dir: Path, out_dir: Path) -> None:
    """Move a finished export into place; a previous export there is replaced, nothing else."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a directory.")
        leftovers = {p.name for p in out_dir.iterdir()} - EXPORT_FILES
        if leftovers:
            raise FileExistsError(
                f"{out_dir} already holds files that are not part of an export "
                f"({sorted(leftovers)[:5]}); choose an empty or new directory."
            )
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
        tmp_dir.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp_dir.rename(out_dir)


def export_backbone(
    model: nn.Module,
    out_dir: str | Path,
    *,
    pretrained_cfg: dict[str, Any] | None = None,
    data_config: dict[str, Any] | None = None,
    verify: bool = True,
) -> Path:
    """Write a timm backbone (``num_classes=0``) in timm's Hub format, atomically.

    The folder holds ``config.json`` and ``model.safetensors`` only and loads with
    ``timm.create_model("local-dir:<out_dir>", pretrained=True)`` (``hf-hub:`` once pushed),
    ``transformers.AutoModel.from_pretrained(out_dir)`` and ``AutoImageProcessor`` with
    identical features.

    The export's ``pretrained_cfg`` never keeps the provenance timm inherits from the
    architecture's default ImageNet weights; it records ours (``DEFAULT_PRETRAINED_CFG``:
    tag ``rela_byol``, licence, paper id arXiv:2405.14669) updated with ``pretrained_cfg``,
    and the preprocessing given as ``data_config`` (input size, mean/std, interpolation,
    crop). The files are written to a temporary sibling folder, checked to load back, then
    renamed into place, so ``out_dir`` is never half written.

    Args:
        model: a timm model created with ``num_classes=0`` (the student backbone, unwrapped
            from Accelerate/DDP, in any train/eval mode; its weights are copied to CPU).
        out_dir: the export folder. If it exists it must be empty or a previous export.
        pretrained_cfg: provenance overrides, e.g. ``{"tag": "rela_byol_cifar10"}``.
        data_config: the training preprocessing, e.g. ``training_data_config(32)``; without
            it the model's current data config is recorded.
        verify: rebuild the model from the export and check that it has the same parameters
            and computes the same features on a fixed input (catches hand-modified models).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Examples:
        >>> import tempfile, timm
        >>> backbone = timm.create_model("test_resnet", num_classes=0)
        >>> folder = export_backbone(backbone, tempfile.mkdtemp() + "/backbone",
        ...                          data_config=training_data_config(32),
        ...                          pretrained_cfg={"tag": "rela_byol_cifar10"})
        >>> sorted(path.name for path in folder.iterdir())
        ['config.json', 'model.safetensors']
        >>> read_export_config(folder)["pretrained_cfg"]["input_size"]
        [3, 32, 32]
    """
    from timm.models import save_for_hf

    _check_backbone(model)
    out_dir = Path(out_dir)
    in_chans = _model_in_chans(model)
    data_config = _validate_data_config(data_config or {}, in_chans)

    ours = {**DEFAULT_PRETRAINED_CFG, **(pretrained_cfg or {})}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        with torch.no_grad():
            # safetensors refuses non-contiguous tensors: a channels_last model (the trainer's
            # --channels_last) is saved through a standard-layout copy, the model is untouched
            channels_last = any(not p.is_contiguous() for p in model.state_dict().values())
            save_for_hf(
                copy.deepcopy(model).to(memory_format=torch.contiguous_format) if channels_last else model,
                str(tmp_dir),
                model_config={"pretrained_cfg": {k: v for k, v in ours.items() if v is not None}},
                safe_serialization=True,
                data_config=data_config or None,
            )
        _finalize_config(tmp_dir / CONFIG_NAME, ours)
        if verify:
            input_size = read_export_config(tmp_dir)["pretrained_cfg"]["input_size"]
            _verify_reload(model, tmp_dir, tuple(input_size))
        _replace_dir_atomically(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    logger.info("Exported %s backbone to %s", _pretrained_cfg_of(model)["architecture"], out_dir)
    return out_dir


def read_export_config(folder: str | Path) -> dict[str, Any]:
    """Read and sanity-check the ``config.json`` of a timm-format export."""
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a timm-format export: {CONFIG_NAME} is missing "
            "(write one with rela_hf.hub.export_backbone)."
        )
    config = json.loads(config_path.read_text())
    for key in ("architecture", "pretrained_cfg"):
        if key not in config:
            raise ValueError(
                f"{config_path} has no {key!r}: it is not a timm-format config, so neither timm "
                "nor transformers' TimmWrapper would recognise it."
            )
    if "num_classes" in config.get("model_args", {}):
        raise ValueError(
            f"{config_path} lists num_classes in model_args, which makes "
            "transformers.AutoModel fail (TypeError: multiple values for 'num_classes'). "
            "Re-export with rela_hf.hub.export_backbone."
        )
    return config


# =============================================================================================
# Training history and its plot
# =============================================================================================
HISTORY_NAME = "history.jsonl"
SUMMARY_NAME = "training_summary.json"
TRAINING_CONFIG_NAME = "config.yaml"
PLOT_NAME = "training_curves.png"
README_NAME = "README.md"
TRAINING_STATE_DIR = "training_state"
#: Accelerate's RNG states are arbitrary pickles: never published (an exact resume does not
#: need them, see rela_hf.checkpoint).
UNSAFE_STATE_PATTERNS = ("*.pkl", "*.pickle")
_METRIC_PREFIX = "train/"


def _strip_prefix(record: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).removeprefix(_METRIC_PREFIX): v for k, v in record.items()}


def _history_from_tensorboard(log_dir: Path) -> list[dict[str, Any]]:
    """Scalars of every TensorBoard event file under ``log_dir``, merged by step."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return []
    by_step: dict[int, dict[str, Any]] = {}
    for events in sorted(log_dir.rglob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            for event in accumulator.Scalars(tag):
                row = by_step.setdefault(int(event.step), {"step": int(event.step)})
                row[tag.removeprefix(_METRIC_PREFIX)] = float(event.value)
    return [by_step[step] for step in sorted(by_step)]


def read_training_history(output_dir: str | Path) -> list[dict[str, Any]]:
    """The logged training metrics of a run, one dict per logged optimizer step.

    Read from ``<output_dir>/history.jsonl`` (one JSON object per line with a ``step`` key and
    the logged metrics; a ``train/`` prefix on keys is dropped; for a step logged twice, as a
    resumed run does, the last record wins), else from the TensorBoard
    event files under ``<output_dir>/runs`` that ``accelerator.log`` wrote. Empty when neither
    exists. Lines that are not valid JSON (a run killed mid-write) are skipped with a warning.
    """
    output_dir = Path(output_dir)
    path = output_dir / HISTORY_NAME
    if path.is_file():
        history = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                logger.warning("Skipping line %d of %s: not valid JSON.", number, path)
                continue
            if isinstance(record, dict) and "step" in record:
                history.append(_strip_prefix(record))
        # a resumed run re-logs the steps after its checkpoint: the last record of a step wins
        by_step = {record["step"]: record for record in history}
        return [by_step[step] for step in sorted(by_step)]
    if (output_dir / "runs").is_dir():
        return _history_from_tensorboard(output_dir / "runs")
    return []


def _numeric_series(history: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    steps, values = [], []
    for record in history:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            steps.append(record["step"])
            values.append(float(value))
    return steps, values


def _plottable(history: list[dict[str, Any]], key: str) -> bool:
    _, values = _numeric_series(history, key)
    return bool(values) and (key != "lr" or min(values) != max(values))


def plot_training_history(
    history: list[dict[str, Any]],
    path: str | Path,
    *,
    switch_step: int | None = None,
    title: str | None = None,
) -> Path | None:
    """Plot losses, ReLA's rho, accuracies and the learning rate against the optimizer step.

    One panel per group that the history has: every ``*loss*`` key, ``rho``, every
    ``*accuracy*`` key, ``lr``. A dashed vertical line marks the ReLA -> BYOL switch.

    Returns:
        The PNG path, or ``None`` when the history has nothing to plot.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    keys = sorted({k for record in history for k in record if k != "step"})
    groups = [
        ("loss", [k for k in keys if "loss" in k]),
        ("rho (ReLA switch statistic)", [k for k in keys if k == "rho"]),
        ("accuracy", [k for k in keys if "acc" in k]),
        ("learning rate", [k for k in keys if k == "lr"]),
    ]
    # a key is plotted if it has numbers; the learning rate only if it changes (a schedule)
    groups = [(label, [k for k in members if _plottable(history, k)]) for label, members in groups]
    groups = [(label, members) for label, members in groups if members]
    if not groups:
        return None
    figure, axes = plt.subplots(len(groups), 1, figsize=(7, 2.4 * len(groups)), sharex=True,
                                squeeze=False)
    for axis, (label, members) in zip(axes[:, 0], groups):
        for key in members:
            axis.plot(*_numeric_series(history, key), label=key, linewidth=1.2)
        if switch_step is not None:
            axis.axvline(switch_step, color="grey", linestyle="--", linewidth=1)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
        if len(members) > 1:
            axis.legend(fontsize=8)
    axes[-1, 0].set_xlabel("optimizer step")
    if title:
        axes[0, 0].set_title(title)
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


# =============================================================================================
# Model card
# =============================================================================================
CARD_TAGS = ("self-supervised", "byol", "rela", "image-feature-extraction", "timm", "rela-hf")
BYOL_CITATION = """@inproceedings{grill2020bootstrap,
  title     = {Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning},
  author    = {Grill, Jean-Bastien and Strub, Florian and Altch{\\'e}, Florent and Tallec, Corentin and Richemond, Pierre H. and Buchatskaya, Elena and Doersch, Carl and Pires, Bernardo Avila and Guo, Zhaohan Daniel and Azar, Mohammad Gheshlaghi and Piot, Bilal and Kavukcuoglu, Koray and Munos, R{\\'e}mi and Valko, Michal},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020},
  eprint    = {2006.07733},
  archivePrefix = {arXiv}
}"""
PROTOCOL_TITLES = {"knn": "kNN", "linear_probe": "linear probe"}
_ACCELERATOR_DEVICE_TYPES = ("cuda", "xpu", "npu", "mlu", "musa", "hpu", "mps", "xla")


def _model_card_template() -> Path:
    from rela_hf.cards import TEMPLATE_DIR

    return TEMPLATE_DIR / "encoder.md"


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
    from huggingface_hub import EvalResult

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
                dataset_type=dataset.get("id") or name,
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


def _eval_rows(eval_results: Any) -> list[dict[str, Any]]:
    rows = []
    for report in _as_list(eval_results):
        dataset = report["dataset"]
        name = dataset.get("name") or dataset.get("id") or "unnamed dataset"
        if dataset.get("id") and dataset.get("id") != name:
            name = f"{name} (`{dataset['id']}`)"
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
        where = "a local folder (no Hub revision)"
    else:
        where = "revision not pinned (latest at training time)"
    return f"`{name}`{extra}, {where}"


def _format_duration(seconds: float) -> str:
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def compute_summary(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Wall-clock and device-hours of a run from its training summary.

    ``wall_clock_seconds`` (or ``wall_clock_s``) x ``num_processes``: GPU-hours when the
    device is an accelerator (``cuda:0``...), CPU process-hours otherwise.
    """
    wall = summary.get("wall_clock_seconds", summary.get("wall_clock_s"))
    processes = int(summary.get("num_processes") or 1)
    device = str(summary.get("device") or "unknown")
    device_name = summary.get("device_name")
    is_accelerator = device.split(":")[0] in _ACCELERATOR_DEVICE_TYPES
    unit = "GPU-hours" if is_accelerator else "CPU process-hours"
    hours = None if wall is None else float(wall) * processes / 3600
    return {"wall_clock_seconds": wall, "num_processes": processes, "device": device,
            "device_name": device_name, "hours": hours, "unit": unit}


def _compute_line(summary: Mapping[str, Any]) -> str:
    compute = compute_summary(summary)
    device = compute["device_name"] or compute["device"]
    if compute["device_name"] and compute["device"] not in ("unknown", compute["device_name"]):
        device = f"{compute['device_name']} (`{compute['device']}`)"
    parts = [f"{compute['num_processes']} x {device}"]
    if summary.get("mixed_precision") not in (None, "no"):
        parts.append(f"{summary['mixed_precision']} mixed precision")
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
    import timm
    from timm.models import model_entrypoint

    if not timm.is_model(architecture):
        return True
    return not model_entrypoint(architecture).__module__.startswith("timm.")


def _count_parameters(folder: Path) -> int:
    from safetensors import safe_open

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


def render_model_card(
    export_dir: str | Path,
    *,
    repo_id: str,
    training_summary: Mapping[str, Any] | None = None,
    training_config: Mapping[str, Any] | None = None,
    eval_results: Mapping[str, Any] | list[Mapping[str, Any]] | None = None,
    plot_file: str | None = None,
    license: str | None = None,
    has_training_state: bool = False,
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
        training_summary: ``training_summary.json`` of the run (see :func:`push_training_output`).
        training_config: the run's resolved config (``config.yaml``).
        eval_results: one or a list of ``eval_results.json`` dicts.
        plot_file: repo-relative path of the training-curve PNG, if any.
        license: default: the export's ``pretrained_cfg['license']``.
        has_training_state: the repo also holds ``training_state/``.
        template_path: another Jinja template.
    """
    import yaml
    from huggingface_hub import ModelCard, ModelCardData

    from rela_hf.targets import RELA_CITATION

    export_dir = Path(export_dir)
    config = read_export_config(export_dir)
    pretrained_cfg = config["pretrained_cfg"]
    summary = dict(training_summary or {})
    train_config = dict(training_config or {})
    method = summary.get("method") or train_config.get("method") or "rela"
    method_title = "ReLA-accelerated BYOL" if method == "rela" else "BYOL"
    model_name = repo_id.split("/")[-1]

    dataset_id = summary.get("dataset") or train_config.get("dataset_name")
    dataset_revision = summary.get("dataset_revision") or train_config.get("dataset_revision")
    dataset_config = summary.get("dataset_config") or train_config.get("dataset_config_name")
    prior_id = summary.get("prior") or train_config.get("prior")
    prior_revision = summary.get("prior_revision") or train_config.get("prior_revision")
    prior_random = summary.get("prior_pretrained") is False  # a random prior must not read as a pretrained one
    switch_step = summary.get("switch_step")
    if summary.get("switch_rule") == "static" or train_config.get("switch_rule") == "static":
        switch_rule = "static"
    else:
        switch_rule = summary.get("switch_rule") or train_config.get("switch_rule") or "adaptive"
    if switch_step is None:
        switch_line = ("never: the whole run was the ReLA phase (distillation of the prior's targets)"
                       if summary else "not recorded")
    else:
        switch_line = f"after optimizer step {switch_step} ({switch_rule} rule); BYOL from step {switch_step + 1}"
    dataset_extra = f" (config `{dataset_config}`)" if dataset_config else ""
    if summary.get("train_split") or train_config.get("train_split"):
        dataset_extra += f", split `{summary.get('train_split') or train_config.get('train_split')}`"

    final_metrics = summary.get("final_metrics") or {}
    final_text = ", ".join(
        f"{k} {v:.4g}" for k, v in final_metrics.items() if isinstance(v, (int, float))
    )
    license = license or pretrained_cfg.get("license") or "apache-2.0"
    datasets = [dataset_id] if dataset_id and not _is_local_path(str(dataset_id)) else None

    card_data = ModelCardData(
        model_name=model_name,
        library_name="timm",
        pipeline_tag="image-feature-extraction",
        tags=list(CARD_TAGS),
        license=license,
        datasets=datasets,
        eval_results=eval_results_to_model_index(eval_results) or None,
        # ReLA provenance, machine-readable (the prior made the targets; it is not a base model)
        rela_hf={k: v for k, v in {
            "method": method, "architecture": config["architecture"],
            "dataset": dataset_id, "dataset_revision": dataset_revision,
            "prior": prior_id if method == "rela" else None,
            "prior_revision": prior_revision if method == "rela" else None,
            "prior_pretrained": False if method == "rela" and prior_random else None,
            "switch_step": switch_step, "steps": summary.get("steps"),
            "images_seen": summary.get("images_seen"),
        }.items() if v is not None},
    )
    template = Path(template_path) if template_path is not None else _model_card_template()
    if not template.is_file():
        raise FileNotFoundError(
            f"Model card template {template} not found (it ships in the repository's "
            "model_cards/ folder); pass template_path=."
        )
    epochs = summary.get("epochs")
    return ModelCard.from_template(
        card_data,
        template_path=str(template),
        repo_id=repo_id,
        model_name=model_name,
        method=method,
        method_title=method_title,
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
        steps=summary.get("steps", "not recorded"),
        total_steps=summary.get("total_steps"),
        epochs=None if epochs is None else f"{epochs:.3g}",
        data_ratio=summary.get("data_ratio"),
        images_seen=summary.get("images_seen", "not recorded"),
        global_batch_size=summary.get("global_batch_size"),
        compute_line=_compute_line(summary) if summary else "not recorded",
        input_line=_input_line(pretrained_cfg),
        final_metrics=final_text,
        plot_file=plot_file,
        config_yaml=(yaml.safe_dump(train_config, sort_keys=True).strip()
                     if train_config else "# not recorded"),
        needs_rela_hf=_needs_rela_hf(config["architecture"]),
        has_training_state=has_training_state,
        citation=f"{RELA_CITATION}\n\n{BYOL_CITATION}",
    )


# =============================================================================================
# Pushing
# =============================================================================================
DEFAULT_COMMIT_MESSAGE = "Upload encoder (rela-hf)"
#: HTTP statuses worth retrying: the server or a proxy was briefly unavailable or rate-limited.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class PushError(RuntimeError):
    """A push to the Hub failed (after retries where retrying could help)."""


def _is_retryable(error: BaseException) -> bool:
    """Network trouble and 5xx/429 answers are retried; a 4xx (bad token, bad name) is not."""
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        return status is None or status in RETRYABLE_STATUS
    # httpx2 / requests transport errors (refused, reset, timed out) and plain OS errors
    return isinstance(error, (ConnectionError, TimeoutError, OSError)) or any(
        cls.__name__ in ("TransportError", "ConnectionError", "Timeout", "RequestError")
        for cls in type(error).__mro__
    )


def _with_retries(
    action: str, repo_id: str, call: Callable[[], Any], *, max_retries: int, backoff: float
) -> Any:
    """Run ``call()``; on a retryable error wait ``backoff * 2**attempt`` s and try again."""
    for attempt in range(max_retries + 1):
        try:
            return call()
        except Exception as error:
            retryable = _is_retryable(error)
            if not retryable or attempt == max_retries:
                tries = f"after {attempt + 1} attempts" if retryable else "(not retryable)"
                raise PushError(
                    f"Could not {action} for Hub repo {repo_id!r} {tries}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            delay = backoff * 2**attempt
            logger.warning("Hub request to %s failed to %s (%s); retry %d/%d in %.1f s.", repo_id,
                           action, type(error).__name__, attempt + 1, max_retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _folder_files(folder: Path) -> list[Path]:
    """Files to upload: everything but hidden files/folders (e.g. .cache) and unsafe pickles."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if any(relative.match(pattern) for pattern in UNSAFE_STATE_PATTERNS):
            continue
        files.append(path)
    return files


def check_hub_folder(folder: str | Path) -> dict[str, Any]:
    """Check that a folder is a publishable encoder repo; return its ``config.json``.

    The root must be a timm-format export (``config.json`` with ``architecture`` and
    ``pretrained_cfg``, no ``num_classes`` in ``model_args``, ``model.safetensors``); other
    files (card, plot, ``training_state/``) may be anywhere but never a second ``config.json``
    at the root, which the Hub and TimmWrapper read as the model's.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder {folder} to push.")
    config = read_export_config(folder)
    if not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME}; export the backbone first.")
    if not (folder / README_NAME).is_file():
        logger.warning("%s has no README.md: the repo will have no model card.", folder)
    return config


def push_encoder(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    commit_description: str | None = None,
    create_pr: bool = False,
    max_retries: int = 3,
    retry_backoff: float = 2.0,
    endpoint: str | None = None,
) -> Any:
    """Push an encoder folder (timm export at the root + card + plot + state) as ONE commit.

    The repo is created if needed (``exist_ok``), a missing ``revision`` branch is created
    from ``main``, then every file goes up in a single ``HfApi.create_commit``: the Hub shows
    either the whole new version or the previous one, never half a push. Network errors and
    5xx/429 answers are retried ``max_retries`` times with exponential backoff
    (``retry_backoff``, 2x, 4x... seconds); then, or on any other error, :class:`PushError`
    names the repo. The local folder is only read. The token is handed to ``HfApi`` and never
    logged.

    Args:
        folder: e.g. the output of :func:`build_hub_folder` or :func:`export_backbone`.
        repo_id: ``"org/name"``.
        revision: branch to commit to (created if missing); default ``main``.
        private: visibility of a newly created repo (``None``: the Hub's default).
        token: Hub token (default: the logged-in one / ``HF_TOKEN``).
        create_pr: open a pull request instead of committing to the branch.
        endpoint: another Hub endpoint (default ``HF_ENDPOINT``).

    Returns:
        The ``CommitInfo`` of the commit (``.oid``, ``.commit_url``, ``.pr_url``).
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = Path(folder)
    check_hub_folder(folder)
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}.")
    api = HfApi(endpoint=endpoint, token=token)

    def retry(action: str, call: Callable[[], Any]) -> Any:
        return _with_retries(action, repo_id, call, max_retries=max_retries, backoff=retry_backoff)

    url = retry("create the repo", lambda: api.create_repo(repo_id, private=private, exist_ok=True))
    if revision is not None and not revision.startswith("refs/"):
        retry(f"create branch {revision!r}",
              lambda: api.create_branch(repo_id, branch=revision, exist_ok=True))
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
        for path in _folder_files(folder)
    ]
    commit = retry("commit the files", lambda: api.create_commit(
        repo_id, operations, commit_message=commit_message,
        commit_description=commit_description, revision=revision, create_pr=create_pr,
    ))
    logger.info("Pushed %d files of %s to %s (commit %s).", len(operations), folder,
                getattr(url, "repo_id", repo_id), commit.oid)
    return commit


def build_hub_folder(
    output_dir: str | Path,
    out_dir: str | Path,
    *,
    repo_id: str,
    backbone_dir: str | Path | None = None,
    eval_results: Mapping[str, Any] | list[Mapping[str, Any]] | str | Path | None = None,
    include_training_state: bool = False,
    checkpoint: str | Path | None = None,
    license: str | None = None,
    template_path: str | Path | None = None,
) -> Path:
    """Assemble what a training run publishes, without touching the run's files.

    ``out_dir`` (new or empty) receives: the backbone export at the root (``config.json``,
    ``model.safetensors``, copied), ``README.md`` (:func:`render_model_card`),
    ``training_curves.png`` (from :func:`read_training_history`), ``training_summary.json``,
    ``eval_results.json`` and, with ``include_training_state``, ``training_state/``: the final
    checkpoint (full online + EMA target networks with heads, optimizer, ``run_state.json``;
    Accelerate's RNG pickles left out), the run's ``config.yaml`` and ``history.jsonl``.

    Reads from ``output_dir``: ``backbone/`` (or ``backbone_dir``), ``training_summary.json``,
    ``config.yaml``, ``history.jsonl`` (else TensorBoard events under ``runs/``),
    ``eval_results.json`` (unless ``eval_results`` is given: a dict, list of dicts or path),
    and ``checkpoint-<step>/`` (``checkpoint`` or the summary's ``checkpoint`` or the latest).
    """
    import yaml

    from rela_hf.evaluation import EVAL_RESULTS_NAME, read_eval_results

    output_dir, out_dir = Path(output_dir), Path(out_dir)
    backbone = Path(backbone_dir) if backbone_dir is not None else output_dir / "backbone"
    read_export_config(backbone)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; build_hub_folder needs a new or empty folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        shutil.copy2(backbone / name, out_dir / name)

    summary_path = output_dir / SUMMARY_NAME
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if summary:
        shutil.copy2(summary_path, out_dir / SUMMARY_NAME)
    config_path = output_dir / TRAINING_CONFIG_NAME
    train_config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}

    if eval_results is None and (output_dir / EVAL_RESULTS_NAME).is_file():
        eval_results = output_dir / EVAL_RESULTS_NAME
    if isinstance(eval_results, (str, Path)):
        eval_results = read_eval_results(eval_results)
    if eval_results:
        (out_dir / EVAL_RESULTS_NAME).write_text(json.dumps(eval_results, indent=2) + "\n")

    plot = plot_training_history(
        read_training_history(output_dir), out_dir / PLOT_NAME,
        switch_step=summary.get("switch_step"), title=repo_id.split("/")[-1],
    )
    if include_training_state:
        _copy_training_state(output_dir, out_dir / TRAINING_STATE_DIR, summary, checkpoint)
    card = render_model_card(
        out_dir, repo_id=repo_id, training_summary=summary, training_config=train_config,
        eval_results=eval_results, plot_file=PLOT_NAME if plot else None, license=license,
        has_training_state=include_training_state, template_path=template_path,
    )
    card.save(str(out_dir / README_NAME))
    return out_dir


def _copy_training_state(output_dir: Path, state_dir: Path, summary: Mapping[str, Any],
                         checkpoint: str | Path | None) -> None:
    from rela_hf.checkpoint import find_latest_checkpoint

    if checkpoint is None and summary.get("checkpoint"):
        checkpoint = output_dir / summary["checkpoint"]
    source = Path(checkpoint) if checkpoint is not None else find_latest_checkpoint(output_dir)
    if source is None or not source.is_dir():
        raise FileNotFoundError(
            f"include_training_state=True but no checkpoint folder was found in {output_dir} "
            f"({source}); pass checkpoint= or include_training_state=False."
        )
    state_dir.mkdir(parents=True)
    for path in _folder_files(source):
        target = state_dir / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    for name in (TRAINING_CONFIG_NAME, HISTORY_NAME):
        if (output_dir / name).is_file():
            shutil.copy2(output_dir / name, state_dir / name)
    if (state_dir / CONFIG_NAME).exists():  # never let a checkpoint look like a model config
        (state_dir / CONFIG_NAME).rename(state_dir / "checkpoint_config.json")


def push_training_output(
    output_dir: str | Path,
    repo_id: str,
    *,
    include_training_state: bool = False,
    eval_results: Mapping[str, Any] | list[Mapping[str, Any]] | str | Path | None = None,
    backbone_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    license: str | None = None,
    commit_message: str | None = None,
    **push_kwargs: Any,
) -> Any:
    """Publish a finished (or checkpointed) training run: card, plot, backbone, optional state.

    What the trainer calls at the end of a run (main process only), or every N checkpoints
    after exporting the backbone: it builds the repo contents in a temporary folder with
    :func:`build_hub_folder` (so the run's own files are never modified), pushes them as one
    commit with :func:`push_encoder` (``revision``, ``private``, ``token``, ``create_pr``,
    ``max_retries``... pass through), and removes the temporary folder.

    Returns:
        The ``CommitInfo`` of the push.
    """
    output_dir = Path(output_dir)
    summary_path = output_dir / SUMMARY_NAME
    if commit_message is None:
        steps = json.loads(summary_path.read_text()).get("steps") if summary_path.is_file() else None
        commit_message = f"Upload encoder at step {steps} (rela-hf)" if steps else DEFAULT_COMMIT_MESSAGE
    with tempfile.TemporaryDirectory(prefix="rela_hf_push_") as staging:
        folder = build_hub_folder(
            output_dir, Path(staging) / "repo", repo_id=repo_id, backbone_dir=backbone_dir,
            eval_results=eval_results, include_training_state=include_training_state,
            checkpoint=checkpoint, license=license,
        )
        return push_encoder(folder, repo_id, commit_message=commit_message, **push_kwargs)
