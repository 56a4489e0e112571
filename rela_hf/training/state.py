"""``RunState``: where a training run is, saved with every checkpoint as ``run_state.json``.

The loop's position (optimizer step, epoch, batch inside the epoch, phase), its progress (training
seconds, images seen, last logged metrics), the tracker run it logs to, and, at save time, the
states of the switch, the data sampler and the learning-rate scheduler plus the run's config and
fingerprint. A resumed run restores it and continues exactly where the checkpoint was written.
One dataclass, written by :meth:`RunState.to_dict` and read by :meth:`RunState.from_dict`: the
trainer, the checkpoint code and the tests share it.

Examples:
    >>> state = RunState(step=500, epoch=3, batch_in_epoch=20)
    >>> RunState.from_dict(state.to_dict()).step
    500
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from rela_hf.switch import PHASE_RELA

__all__ = ["RunState"]


@dataclasses.dataclass
class RunState:
    """The state of a training run (see the module docstring).

    Attributes:
        step: optimizer steps done.
        epoch: the epoch the next batch belongs to.
        batch_in_epoch: per-process batches of that epoch already trained on.
        phase: the phase of the next batch (``"rela"`` or ``"ssl"``).
        train_seconds: seconds spent training (evaluations excluded).
        images_seen: training images seen, all processes together.
        last_metrics: the last logged value of every metric.
        tracker: ``{"run_name", "run_id"}``: the tracker run a resumed run continues.
        num_processes: processes of the run that wrote the state.
        switch, sampler, scheduler: the components' ``state_dict`` (filled at save time).
        best: the best checkpoint so far (``{"step", "metric", "value"}``), when tracked.
        config_fingerprint, run_config, config: the run's identity and its resolved options.
        rela_hf_version: the version that wrote it.
    """

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    phase: str = PHASE_RELA
    train_seconds: float = 0.0
    images_seen: int = 0
    last_metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    tracker: dict[str, str] = dataclasses.field(default_factory=dict)
    num_processes: int = 1
    switch: dict[str, Any] | None = None
    sampler: dict[str, Any] | None = None
    scheduler: dict[str, Any] | None = None
    best: dict[str, Any] | None = None
    config_fingerprint: str | None = None
    run_config: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    rela_hf_version: str | None = None

    @classmethod
    def fresh(cls, run_name: str, num_processes: int, phase: str) -> RunState:
        """The state of a run that starts now (a new tracker run id)."""
        return cls(
            phase=phase, num_processes=num_processes, tracker={"run_name": run_name, "run_id": uuid.uuid4().hex[:8]}
        )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunState:
        """From a checkpoint's ``run_state.json`` (its ``format`` key is the file's, not ours)."""
        names = {field.name for field in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in names}
        if "phase" not in values:  # rela-hf 0.2 did not record it: the switch state tells
            values["phase"] = "ssl" if (values.get("switch") or {}).get("switched") else PHASE_RELA
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def at_epoch_end(self, batches_per_epoch: int) -> None:
        """Move to the next epoch once every batch of this one has been seen."""
        if self.batch_in_epoch >= batches_per_epoch:
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0

    def rescale_position(self, num_processes: int) -> bool:
        """Convert the position inside an epoch to another number of processes (not exact).

        Returns whether the position had to be converted (the data order is then not exact).
        """
        converted = self.num_processes != num_processes and self.batch_in_epoch > 0
        if converted:
            self.batch_in_epoch = self.batch_in_epoch * self.num_processes // num_processes
        self.num_processes = num_processes
        return converted
