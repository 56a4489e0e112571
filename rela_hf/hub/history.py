"""A run's logged training metrics, and the plot of them that the model card shows.

The trainer writes one JSON line per logged optimizer step to ``history.jsonl`` (and the same
numbers to the Accelerate trackers); :func:`read_training_history` reads it back (or the
TensorBoard events), :func:`plot_training_history` draws the losses, ReLA's switch statistic, the
accuracies and the learning rate against the step, with the ReLA -> SSL switch marked.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg", force=False)  # no display: files only
import matplotlib.pyplot as plt

from rela_hf.run_layout import RunLayout

logger = logging.getLogger(__name__)

__all__ = ["plot_training_history", "read_training_history"]

_METRIC_PREFIX = "train/"


def _strip_prefix(record: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).removeprefix(_METRIC_PREFIX): v for k, v in record.items()}


def _history_from_tensorboard(log_dir: Path) -> list[dict[str, Any]]:
    """Scalars of every TensorBoard event file under ``log_dir``, merged by step."""
    try:  # tensorboard is a dependency, but a broken install must not stop a card
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
    layout = RunLayout(output_dir)
    path = layout.history_file
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
    if layout.logging_dir.is_dir():
        return _history_from_tensorboard(layout.logging_dir)
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
    ``*accuracy*`` key, ``lr``. A dashed vertical line marks the ReLA -> SSL switch.

    Returns:
        The PNG path, or ``None`` when the history has nothing to plot.
    """
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
    figure, axes = plt.subplots(len(groups), 1, figsize=(7, 2.4 * len(groups)), sharex=True, squeeze=False)
    for axis, (label, members) in zip(axes[:, 0], groups, strict=True):
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
    # the plotted series, readable without looking at the picture (PNG text chunk)
    plotted = ", ".join(key for _, members in groups for key in members)
    figure.savefig(path, dpi=100, metadata={"Title": title or "training curves", "Description": f"plotted: {plotted}"})
    plt.close(figure)
    return path
