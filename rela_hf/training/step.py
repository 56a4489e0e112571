"""One micro-batch of training under Accelerate, and the means of what it logs.

- :func:`training_step`: forward, backward, the optimizer step once accumulation is complete, the
  method's hooks around it, and the EMA update of the method's teacher on that same step. The
  trainer-overhead benchmark times exactly this function.
- :class:`MetricMeans`: per-step and per-logging-window means of the model's detached outputs,
  averaged over accumulation micro-batches and over processes with one collective.

ReLA: arXiv:2405.14669; the methods: rela_hf.methods.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

import torch
from torch import Tensor

from rela_hf.training.fsdp import average_buffers_, is_sharded

if TYPE_CHECKING:
    from accelerate import Accelerator

    from rela_hf.model import ReLAStudent

__all__ = ["MetricMeans", "training_step"]


def training_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    *,
    phase: str,
    momentum: float,
    step: int = 0,
    max_grad_norm: float | None = None,
    unwrapped: ReLAStudent | None = None,
    rela_weight: float = 0.0,
) -> dict[str, Tensor]:
    """One micro-batch of ReLA/SSL training under Accelerate.

    Forward and backward run on every micro-batch; inside ``accelerator.accumulate`` the DDP
    gradient all-reduce, ``optimizer.step()`` and ``zero_grad()`` only happen on the micro-batch
    that completes an accumulation cycle (``accelerator.sync_gradients``; the Accelerate optimizer
    wrapper turns them into no-ops otherwise); the method's hooks run around that optimizer step
    (:meth:`~rela_hf.methods.Method.before_optimizer_step`, ``after_optimizer_step``). The EMA update of the method's teacher happens on
    that same micro-batch, *once per optimizer step* (updating it per micro-batch is a recurring
    bug: lightly-ai/lightly-train#968), and on the unwrapped model, whose ``update_teacher`` DDP
    does not expose. A student sharded with FSDP2 has its BatchNorm statistics averaged over
    the processes on that step too (:func:`~rela_hf.training.fsdp.average_buffers_`: FSDP never
    synchronises buffers; DDP broadcasts rank 0's at every forward).

    Args:
        accelerator: The run's accelerator.
        model: The prepared :class:`~rela_hf.model.ReLAStudent` (possibly DDP-wrapped/compiled).
        optimizer: The prepared optimizer.
        batch: ``{"views"[, "targets"][, "labels"]}`` on the device.
        phase: ``"rela"`` or ``"ssl"``.
        momentum: EMA momentum for this optimizer step.
        step: The optimizer step this micro-batch belongs to (the method's schedules).
        max_grad_norm: Clip the gradient norm on optimizer steps (``None``: no clipping).
        unwrapped: ``accelerator.unwrap_model(model)``, computed once by the caller to save
            unwrapping it on every step (done here when ``None``).
        rela_weight: after the switch, the ReLA loss's weight (:mod:`rela_hf.handover`).

    Returns:
        The model's outputs (``loss`` and detached parts), see :meth:`ReLAStudent.forward`.
    """
    if unwrapped is None:
        unwrapped = cast("ReLAStudent", accelerator.unwrap_model(model))
    with accelerator.accumulate(model):
        out = model(
            batch["views"],
            phase=phase,
            targets=batch.get("targets"),
            labels=batch.get("labels"),
            step=step,
            rela_weight=rela_weight,
        )
        accelerator.backward(out["loss"])
        if accelerator.sync_gradients:
            if max_grad_norm is not None:
                accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
            unwrapped.before_optimizer_step(step)  # the method's gradient edits (DINO's frozen layer)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if accelerator.sync_gradients:
        unwrapped.after_optimizer_step(step)
        if is_sharded(unwrapped):
            average_buffers_(unwrapped)  # before the teacher copies the online statistics
        unwrapped.update_teacher(momentum)
    return out


class MetricMeans:
    """Means of detached scalar outputs over micro-batches, then over processes.

    :meth:`add` keeps running sums on the device (no host sync); :meth:`compute` stacks them,
    averages over processes with one ``accelerator.reduce`` and resets. Every process must add
    the same keys (they run the same phase with the same columns), or the collective would
    mismatch.

    Examples:
        >>> means = MetricMeans()
        >>> means.add({"loss": torch.tensor(1.0), "rela_loss": torch.tensor(0.5)})
        >>> means.add({"loss": torch.tensor(1.0), "rela_loss": torch.tensor(0.7)})
        >>> round(means.compute()["rela_loss"], 6)
        0.6
    """

    def __init__(self, exclude: Sequence[str] = ("loss",)) -> None:
        self.exclude = frozenset(exclude)
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, outputs: dict[str, Tensor]) -> None:
        """Accumulate one micro-batch's scalar outputs (keys in ``exclude`` are skipped)."""
        for key, value in outputs.items():
            if key in self.exclude:
                continue
            value = value.detach().float()
            self._sums[key] = self._sums[key] + value if key in self._sums else value
            self._counts[key] = self._counts.get(key, 0) + 1

    def __bool__(self) -> bool:
        return bool(self._counts)

    def reset(self) -> None:
        """Drop the sums without computing them (no device-to-host sync)."""
        self._sums.clear()
        self._counts.clear()

    def compute(self, accelerator: Accelerator | None = None) -> dict[str, float]:
        """Means since the last call, averaged over processes; resets the sums."""
        if not self._counts:
            return {}
        keys = sorted(self._sums)
        means = torch.stack([self._sums[key] / self._counts[key] for key in keys])
        if accelerator is not None and accelerator.num_processes > 1:
            # all-reduce: every process receives the same values, so any decision taken on
            # them (the ReLA switch) is identical everywhere.
            means = accelerator.reduce(means, reduction="mean")
        self.reset()
        return dict(zip(keys, means.tolist(), strict=True))
