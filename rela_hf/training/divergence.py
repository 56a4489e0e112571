"""Divergence checks: a run stops, clearly, before it saves, exports or pushes non-finite weights."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

__all__ = ["TrainingDiverged", "check_finite_loss", "check_finite_weights"]


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite: the run stops before anything is saved."""


def check_finite_loss(metrics: Mapping[str, float], step: int) -> None:
    """Raise :class:`TrainingDiverged` if a logged loss of optimizer step ``step`` is NaN or inf."""
    bad = {key: value for key, value in metrics.items() if "loss" in key and not math.isfinite(value)}
    if bad:
        raise TrainingDiverged(
            f"Training diverged at optimizer step {step}: {bad}. Nothing was saved after the last "
            "good checkpoint. Lower --learning_rate, clip with --max_grad_norm, or check the mixed "
            "precision settings, then resume that checkpoint (--resume_from_checkpoint latest) or "
            "start over."
        )


@torch.no_grad()
def check_finite_weights(model: torch.nn.Module, step: int) -> None:
    """Raise :class:`TrainingDiverged` if a parameter or buffer of ``model`` is NaN or inf.

    Called before every checkpoint, export and push, so that none of them ever holds such weights:
    the previous checkpoint stays the latest one.
    """
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all() if tensors else True
    if not bool(finite):
        names = [
            name
            for name, t in (*model.named_parameters(), *model.named_buffers())
            if t.is_floating_point() and not bool(torch.isfinite(t).all())
        ]
        raise TrainingDiverged(
            f"The weights are no longer finite at optimizer step {step} ({names[:4]}...): the run "
            "stops without saving, exporting or pushing them; the latest checkpoint on disk is the "
            "last good one. Lower --learning_rate or clip with --max_grad_norm."
        )
