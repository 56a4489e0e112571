"""The training run's folder: its file names and the training summary, defined once.

A run of ``recipes/byol_rela.py`` leaves one folder that the trainer writes and the checkpoint,
evaluation and Hub code read back::

    <output_dir>/
        config.yaml              the resolved config (usable as --config again)
        history.jsonl            one JSON line of logged metrics per logged optimizer step
        training_summary.json    TrainingSummary: what the run did (method, switch, compute, data)
        backbone/                the student backbone in timm Hub format
        eval_results.json        written by recipes/evaluate_encoder.py
        runs/                    the trackers' logs (TensorBoard events)
        rela_targets/<key>/      targets the trainer computed itself (a cache)
        checkpoint-<step>/       atomic checkpoints (run_state.json is their last file)

:class:`RunLayout` names these paths and :class:`TrainingSummary` is the summary's schema; nothing
else in rela-hf spells a run-folder file name.

Examples:
    >>> layout = RunLayout("outputs/run")
    >>> layout.summary_file.as_posix(), layout.checkpoint_dir(500).name
    ('outputs/run/training_summary.json', 'checkpoint-500')
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINT_PREFIX", "RUN_STATE_NAME", "RunLayout", "TrainingSummary"]

CHECKPOINT_PREFIX = "checkpoint-"
RUN_STATE_NAME = "run_state.json"


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """The paths of one training run's output folder (see the module docstring)."""

    root: Path

    CONFIG = "config.yaml"
    HISTORY = "history.jsonl"
    SUMMARY = "training_summary.json"
    BACKBONE = "backbone"
    EVAL_RESULTS = "eval_results.json"
    LOGGING = "runs"
    TARGETS_CACHE = "rela_targets"

    def __init__(self, root: str | os.PathLike) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config_file(self) -> Path:
        return self.root / self.CONFIG

    @property
    def history_file(self) -> Path:
        return self.root / self.HISTORY

    @property
    def summary_file(self) -> Path:
        return self.root / self.SUMMARY

    @property
    def backbone_dir(self) -> Path:
        return self.root / self.BACKBONE

    @property
    def eval_results_file(self) -> Path:
        return self.root / self.EVAL_RESULTS

    @property
    def logging_dir(self) -> Path:
        return self.root / self.LOGGING

    def targets_cache_dir(self, key: str) -> Path:
        """Where the trainer caches targets it computed with ``--prior`` (``key``: their identity)."""
        return self.root / self.TARGETS_CACHE / key

    def checkpoint_dir(self, step: int) -> Path:
        return self.root / f"{CHECKPOINT_PREFIX}{step}"


@dataclasses.dataclass
class TrainingSummary:
    """What a training run did, as ``training_summary.json`` records it.

    Written by the trainer at the end of a run; read by the model card (method, switch, compute,
    data and prior provenance) and by the benchmarks. Every field may be ``None`` (not recorded),
    so summaries of older or partial runs still load.
    """

    method: str | None = None  # the method ReLA accelerates: "byol", "dino", "simclr", "supervised"
    use_rela: bool | None = None  # True: ReLA, then the method; False: the method alone
    switch_rule: str | None = None  # "adaptive" | "static"; None without a ReLA phase
    switch_fraction: float | None = None  # the static rule's share of the budget
    switch_step: int | None = None  # the last ReLA optimizer step; None: never switched
    switch_state: dict[str, Any] | None = None  # the switch's state_dict (rho, loss averages)
    phase: str | None = None  # the phase the run ended in
    steps: int | None = None  # optimizer steps done
    total_steps: int | None = None  # the budget
    epochs: float | None = None
    images_seen: int | None = None
    global_batch_size: int | None = None
    num_processes: int | None = None
    device: str | None = None  # e.g. "cuda:0", "cpu"
    device_name: str | None = None  # e.g. "NVIDIA H100 80GB HBM3"
    mixed_precision: str | None = None
    wall_clock_seconds: float | None = None  # the training loop, checkpoints included
    final_metrics: dict[str, float] | None = None  # last logged value of every metric
    backbone: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    dataset_revision: str | None = None
    train_split: str | None = None
    prior: str | None = None  # the prior that made the targets, when known
    prior_revision: str | None = None
    prior_pretrained: bool | None = None  # False: a randomly initialised prior
    prior_preprocessing: dict[str, Any] | None = None
    target_dim: int | None = None
    data_ratio: float | None = None
    image_size: int | None = None
    checkpoint: str | None = None  # the final checkpoint's folder name
    handover: dict[str, Any] | None = None  # how ReLA handed over at the switch (rela_hf.handover)
    metric_for_best_model: str | None = None  # load_best_model_at_end: the validation metric
    best_step: int | None = None  # the best checkpoint's step by that metric
    best_metric_value: float | None = None  # its value (a fraction for accuracies)
    exported_step: int | None = None  # the step whose weights backbone/ holds (the best, or the last)
    rela_hf_version: str | None = None

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainingSummary:
        """From a parsed ``training_summary.json``; unknown keys (a newer writer) are an error."""
        names = {field.name for field in dataclasses.fields(cls)}
        values = dict(values)
        if "wall_clock_s" in values and "wall_clock_seconds" not in values:  # early rela-hf
            values["wall_clock_seconds"] = values.pop("wall_clock_s")
        if "ssl_method" in values or values.get("method") in ("rela", "baseline"):
            # rela-hf 0.2: method said whether ReLA ran ("rela" | "baseline"), ssl_method named it
            former = values.get("method")
            values["use_rela"] = None if former is None else former == "rela"
            values["method"] = values.pop("ssl_method", None) or "byol"
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(
                f"Unknown training summary fields {unknown}: written by a newer rela-hf? Known fields: {sorted(names)}."
            )
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainingSummary:
        return cls.from_dict(json.loads(Path(path).read_text()))
