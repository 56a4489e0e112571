"""Momentum (EMA) teachers: the target-network copy, its update and momentum schedules.

BYOL (Grill et al., arXiv:2006.07733, eq. 1) and DINO (Caron et al., arXiv:2104.14294) both train
against a *teacher* that is an exponential moving average of the student. The parts here serve
every method that has one: :func:`make_target_network` copies a module without gradients,
:func:`update_momentum` moves it by one EMA step, :func:`cosine_momentum` is BYOL's schedule.

Examples:
    >>> from torch import nn
    >>> online = nn.Linear(2, 2)
    >>> target = make_target_network(online)
    >>> update_momentum(online, target, momentum=cosine_momentum(0, 100))
"""

from __future__ import annotations

import copy
import math

import torch
from torch import Tensor, nn
from torch.distributed.tensor import DTensor

__all__ = ["cosine_momentum", "make_target_network", "update_momentum"]


def make_target_network(online: nn.Module) -> nn.Module:
    """A momentum (target) copy of ``online``: same weights, no gradients.

    The copy keeps the train/eval mode of ``online`` and follows whatever mode the caller sets
    afterwards: BYOL runs its target in training mode (batch statistics in BatchNorm), like the
    online network. Only ``requires_grad`` is switched off, so the optimizer never sees it and
    autograd never records through it; :func:`update_momentum` moves it.

    Args:
        online: The online module (backbone or projector) to track.

    Returns:
        A deep copy with ``requires_grad=False`` on every parameter.

    Examples:
        >>> target = make_target_network(nn.Linear(2, 2))
        >>> any(p.requires_grad for p in target.parameters())
        False
    """
    target = copy.deepcopy(online)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def update_momentum(online: nn.Module, target: nn.Module, momentum: float) -> None:
    """EMA step ``t <- m t + (1 - m) o`` over parameters; buffers are copied from ``online``.

    Parameters follow BYOL's exponential moving average (arXiv:2006.07733, eq. 1). Buffers
    (BatchNorm running mean/var and ``num_batches_tracked``) are *copied* from the online
    network rather than averaged: they are statistics, not learned weights, and the target runs
    in training mode (batch statistics), so its running stats never influence training; copying
    them keeps an exported or evaluated target consistent with the online features it tracks.
    This is a deliberate choice between lightly's ``update_momentum`` (parameters only; target
    buffers evolve on their own) and timm's ``ModelEmaV3`` (EMA of buffers too).

    Call once per *optimizer* step (after gradient accumulation), on unwrapped modules. Under
    FSDP2 (``fully_shard``) the parameters are DTensor shards; when the target is sharded like
    the online network (same modules, same mesh) each process updates its own shards, with no
    communication.

    Args:
        online: The online module.
        target: Its momentum copy (:func:`make_target_network`), same structure.
        momentum: ``m`` in ``[0, 1]``; 1 freezes the target, 0 copies the online weights.

    Examples:
        >>> online, target = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> update_momentum(online, target, momentum=0.0)
        >>> bool(torch.equal(online.weight, target.weight))
        True
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"update_momentum: momentum must be in [0, 1], got {momentum}.")
    online_params: list[Tensor] = list(online.parameters())
    target_params: list[Tensor] = list(target.parameters())
    online_buffers = list(online.buffers())
    target_buffers = list(target.buffers())
    if len(online_params) != len(target_params) or len(online_buffers) != len(target_buffers):
        raise ValueError(
            "update_momentum: online and target networks differ in structure "
            f"({len(online_params)} vs {len(target_params)} parameters, "
            f"{len(online_buffers)} vs {len(target_buffers)} buffers); build the target with "
            "make_target_network(online)."
        )
    _check_same_sharding(online_params, target_params)
    pairs = zip(online_params, target_params, strict=True)
    online_values = [o.detach().to(t.dtype) for o, t in pairs]
    # t = m * t + (1 - m) * o, as fused multi-tensor ops over the whole list
    torch._foreach_mul_(target_params, momentum)
    torch._foreach_add_(target_params, online_values, alpha=1.0 - momentum)
    for target_buffer, online_buffer in zip(target_buffers, online_buffers, strict=True):
        target_buffer.copy_(online_buffer)


def _check_same_sharding(online: list[Tensor], target: list[Tensor]) -> None:
    """Refuse a sharded network paired with an unsharded copy (before anything is modified)."""
    online_sharded = [isinstance(p, DTensor) for p in online]
    target_sharded = [isinstance(p, DTensor) for p in target]
    if online_sharded != target_sharded:
        index = next(i for i, (o, t) in enumerate(zip(online_sharded, target_sharded, strict=False)) if o != t)
        kinds = ["a plain tensor", "a DTensor (sharded)"]
        raise ValueError(
            f"update_momentum: parameter {index} is {kinds[online_sharded[index]]} in the online "
            f"network but {kinds[target_sharded[index]]} in the target: with FSDP the target must "
            "be sharded like the online network (fully_shard applied to the module holding both, "
            "the target not excluded with ignored_params)."
        )


def cosine_momentum(step: int, total_steps: int, start: float = 0.996, end: float = 1.0) -> float:
    """BYOL's cosine momentum schedule ``end - (end - start) * (cos(pi k / K) + 1) / 2``.

    BYOL (arXiv:2006.07733, Sec. 3.2) raises the target momentum from ``tau_base = 0.996`` at
    step 0 to 1 at the last step ``K``. The official ReLA code uses a constant 0.99 instead
    (``start = end = 0.99``). Steps beyond ``total_steps`` stay at ``end``.

    Args:
        step: Optimizer step ``k >= 0``.
        total_steps: Total number of optimizer steps ``K >= 1``.
        start: Momentum at step 0.
        end: Momentum at step ``total_steps``.

    Returns:
        The momentum as a Python float (checkpoint-friendly).

    Examples:
        >>> cosine_momentum(0, 100), cosine_momentum(100, 100)
        (0.996, 1.0)
    """
    if total_steps < 1:
        raise ValueError(f"cosine_momentum: total_steps must be >= 1, got {total_steps}.")
    if step < 0:
        raise ValueError(f"cosine_momentum: step must be >= 0, got {step}.")
    progress = min(step, total_steps) / total_steps
    return float(end - (end - start) * (math.cos(math.pi * progress) + 1.0) / 2.0)
