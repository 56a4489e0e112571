"""What a training run logs: the Accelerate trackers and ``history.jsonl``.

Every logged record goes to the trackers (TensorBoard, wandb, trackio: ``report_to``) and, on the
main process, as one JSON line to ``history.jsonl`` (the model card draws its training curves
from it). A resumed run continues the same tracker run (wandb id, TensorBoard folder;
``purge_step`` drops what a crashed run logged after its last checkpoint) and appends to the
history, whose reader keeps the last record of each step.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from accelerate import Accelerator

    from rela_hf.run_layout import RunLayout
    from rela_hf.training.state import RunState

__all__ = ["RunLog", "tracker_config"]

TRACKER_PROJECT = "rela_byol"


def tracker_config(config: dict[str, Any]) -> dict[str, Any]:
    """TensorBoard's hparams take scalars and strings only."""
    return {k: v if isinstance(v, int | float | str | bool) else json.dumps(v) for k, v in config.items()}


class RunLog:
    """The trackers and ``history.jsonl`` of one run.

    Args:
        accelerator: the run's accelerator (its ``log_with`` trackers).
        layout: the run folder.
        state: the run state (its tracker run and step).
        config: the resolved options (the trackers' hyperparameters).
        resuming: whether the run continues from a checkpoint.
    """

    def __init__(
        self, accelerator: Accelerator, layout: RunLayout, state: RunState, config: dict[str, Any], *, resuming: bool
    ) -> None:
        self.accelerator = accelerator
        self._history: TextIO | None = None
        if accelerator.is_main_process:
            self._history = layout.history_file.open("a" if resuming else "w")
        run_name, run_id = state.tracker["run_name"], state.tracker["run_id"]
        accelerator.init_trackers(
            TRACKER_PROJECT,
            config=tracker_config(config),
            init_kwargs={
                "tensorboard": {"purge_step": state.step} if resuming else {},
                "wandb": {"name": run_name, "id": run_id, "resume": "allow"},
                "trackio": {"name": run_name, "resume": "allow"},
            },
        )

    def log(self, metrics: dict[str, float], step: int) -> None:
        """One record: to the trackers and (main process) one line of the history."""
        self.accelerator.log(metrics, step=step)
        if self._history is not None:
            self._history.write(json.dumps({"step": step, **metrics}) + "\n")
            self._history.flush()

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None
