"""ReLA-F: the transfer head, the ReLA loss and the rules that switch from ReLA to BYOL.

ReLA (Sun, Jiang & Lin, "Efficiency for Free: Ideal Data Are Transportable Representations",
NeurIPS 2024, arXiv:2405.14669) first trains the backbone ``f`` to map two views of an image onto
a fixed, PCA-whitened target ``y`` made by a prior model, through a linear *transfer head* ``W``:

    L_ReLA = 1/2 [ mean(1 - cos(W f(v1), y)) + mean(1 - cos(W f(v2), y)) ]

and then switches, once and for good, to plain BYOL. The switch is *adaptive* by default (two
exponential moving averages of the ReLA loss tell when it has flattened out) or *static* (after
a fixed fraction of the step budget). The constants below are those of the official code
(github.com/LINs-lab/ReLA, ``boostor/rela.py``); they are defined here and nowhere else.

Examples:
    >>> import torch
    >>> head = TransferHead(512, 128)             # frozen random projection (official default)
    >>> switch = AdaptiveSwitch()
    >>> features1, features2 = torch.randn(8, 512), torch.randn(8, 512)
    >>> targets = torch.randn(8, 128)
    >>> loss = rela_loss(head(features1), head(features2), targets)
    >>> switch.update(loss.item()), switch.phase
    (False, 'rela')
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FAST_LOSS_DECAY",
    "FAST_LOSS_INIT",
    "PHASE_BYOL",
    "PHASE_RELA",
    "SLOW_LOSS_DECAY",
    "SLOW_LOSS_INIT",
    "SWITCH_THRESHOLD",
    "AdaptiveSwitch",
    "StaticSwitch",
    "TransferHead",
    "build_switch",
    "rela_loss",
]

FAST_LOSS_INIT = 1.0
"""Initial value of the fast moving average of the ReLA loss."""
SLOW_LOSS_INIT = 2.0
"""Initial value of the slow moving average of the ReLA loss (above the fast one, so rho < 1)."""
FAST_LOSS_DECAY = 0.999
"""Decay of the fast average: ``fast = 0.999 fast + 0.001 loss``."""
SLOW_LOSS_DECAY = 0.99
"""Decay of the slow average, which smooths the fast one: ``slow = 0.99 slow + 0.01 fast``."""
SWITCH_THRESHOLD = 0.995
"""Switch to BYOL once ``rho = exp(-max(slow - fast, 0))`` reaches this value."""

PHASE_RELA = "rela"
"""Phase name before the switch: the ReLA loss drives the backbone."""
PHASE_BYOL = "byol"
"""Phase name after the switch: plain BYOL."""


class TransferHead(nn.Linear):
    """The transfer head ``W``: backbone features ``(B, feature width)`` -> target space ``(B, k)``.

    In the official ReLA code ``W = nn.Linear(feature_dim, k)`` is never given to the optimizer:
    it stays a fixed random projection with PyTorch's default ``Linear`` initialisation, and the
    ReLA loss trains the backbone *through* it. That is the default here (``trainable=False``:
    ``requires_grad`` is off on weight and bias, yet gradients still reach the backbone). The
    paper's wording ("linear transport") suggests a learned map: ``trainable=True`` gives one.

    The weights are ordinary parameters, so they are saved in ``state_dict`` either way (a frozen
    head must be restored exactly on resume). Build optimizers from parameters with
    ``requires_grad`` so that a frozen head stays out of them, and do not call
    ``requires_grad_(True)`` on a whole model that contains a frozen head.

    Args:
        in_features: Backbone feature width.
        out_features: Target width ``k``.
        trainable: Whether ``W`` is learned (default False, as in the official code).

    Examples:
        >>> import torch
        >>> head = TransferHead(512, 128)
        >>> head.weight.requires_grad, head(torch.randn(2, 512)).shape
        (False, torch.Size([2, 128]))
    """

    def __init__(self, in_features: int, out_features: int, trainable: bool = False) -> None:
        super().__init__(in_features, out_features, bias=True)
        self.trainable = trainable
        self.requires_grad_(trainable)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, trainable={self.trainable}"


def rela_loss(pred1: Tensor, pred2: Tensor, target: Tensor) -> Tensor:
    """ReLA loss ``1/2 [mean(1 - cos(pred1, y)) + mean(1 - cos(pred2, y))]``.

    Both views of an image regress the *same* fixed target ``y`` (ReLA-D's whitened prior
    embedding). Computed in float32, so fp16 autocast cannot underflow the normalisation.

    Args:
        pred1: Transfer-head output for view 1, ``(B, k)``.
        pred2: Transfer-head output for view 2, ``(B, k)``.
        target: The targets ``y``, ``(B, k)``; treated as constants.

    Returns:
        A scalar tensor in ``[0, 2]`` (0 when both predictions point along their targets).

    Examples:
        >>> import torch
        >>> y = torch.tensor([[1.0, 0.0]])
        >>> rela_loss(torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 1.0]]), y)
        tensor(0.5000)
    """
    for name, pred in (("pred1", pred1), ("pred2", pred2)):
        if pred.shape != target.shape:
            raise ValueError(
                f"rela_loss: {name} has shape {tuple(pred.shape)} but the targets have shape "
                f"{tuple(target.shape)}; the transfer head's out_features must equal the target "
                "width k."
            )
    y = target.detach().float()
    loss1 = (1.0 - F.cosine_similarity(pred1.float(), y, dim=-1)).mean()
    loss2 = (1.0 - F.cosine_similarity(pred2.float(), y, dim=-1)).mean()
    return 0.5 * (loss1 + loss2)


def _as_finite_float(loss: float, step: int) -> float:
    value = float(loss)
    if not math.isfinite(value):
        raise ValueError(
            f"ReLA switch: the ReLA loss of optimizer step {step} is {value}; training has "
            "diverged (check the learning rate and mixed-precision settings)."
        )
    return value


def _check_state(kind: str, state: dict[str, Any], keys: tuple[str, ...]) -> None:
    if state.get("kind") != kind:
        raise ValueError(
            f"Cannot load a {state.get('kind')!r} switch state into a {kind!r} switch; resume "
            "with the same switch rule the checkpoint was trained with."
        )
    missing = [key for key in keys if key not in state]
    if missing:
        raise ValueError(f"{kind} switch state is missing {missing}; got keys {sorted(state)}.")


class _SwitchStateDict:
    """``state_dict`` shared by the switch rules: their ``_STATE_KEYS`` as plain Python values."""

    kind: str
    _STATE_KEYS: tuple[str, ...]

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values (loadable with ``torch.load(weights_only=True)``)."""
        return {"kind": self.kind, **{key: getattr(self, key) for key in self._STATE_KEYS}}


class AdaptiveSwitch(_SwitchStateDict):
    """The adaptive ReLA -> BYOL switch of the official code (the default rule).

    Two moving averages of the ReLA loss, a fast one and a slow one that smooths the fast one,
    measure whether the loss still falls: while it falls the slow average lags above the fast
    one. Once per optimizer step, with ``cur`` the ReLA loss of that step (averaged over
    gradient-accumulation micro-batches and over all processes):

    1. ``rho = exp(-max(slow - fast, 0))`` from the values *before* this step's update;
    2. ``fast = 0.999 fast + 0.001 cur``;
    3. ``slow = 0.99 slow + 0.01 fast``.

    When ``rho >= 0.995`` training switches, once and for good, to BYOL: the step that computed
    it was still a ReLA step, the next one is BYOL. From ``fast = 1``, ``slow = 2`` the gap must
    shrink below ``-ln 0.995``, so with a constant loss of 1.0 the switch comes at optimizer step
    528, never before a few hundred steps.

    Attributes:
        fast: Fast moving average of the ReLA loss.
        slow: Slow moving average (of ``fast``).
        rho: Last computed switch statistic, in ``(0, 1]``.
        switched: Whether the switch has happened.
        switch_step: Number of ReLA optimizer steps when it switched (``None`` before).
        steps: Number of ReLA optimizer steps seen so far.

    Examples:
        >>> switch = AdaptiveSwitch()
        >>> switched = [switch.update(1.0) for _ in range(600)]
        >>> switched.index(True) + 1, switch.switch_step, switch.phase
        (528, 528, 'byol')
    """

    kind = "adaptive"
    _STATE_KEYS = ("fast", "slow", "rho", "switched", "switch_step", "steps")

    def __init__(self) -> None:
        self.fast = FAST_LOSS_INIT
        self.slow = SLOW_LOSS_INIT
        self.rho = 0.0
        self.switched = False
        self.switch_step: int | None = None
        self.steps = 0

    @property
    def phase(self) -> str:
        """``"rela"`` before the switch, ``"byol"`` after it."""
        return PHASE_BYOL if self.switched else PHASE_RELA

    def update(self, loss: float) -> bool:
        """Record one optimizer step's ReLA loss; return True exactly on the switching step.

        Args:
            loss: The step's ReLA loss, averaged over accumulation micro-batches and processes
                (a Python float or a 0-d tensor).

        Returns:
            True on the step whose ``rho`` reaches the threshold, False otherwise (and always
            False, without changing anything, once switched).
        """
        if self.switched:
            return False
        value = _as_finite_float(loss, self.steps + 1)
        self.steps += 1
        self.rho = math.exp(-max(self.slow - self.fast, 0.0))
        self.fast = FAST_LOSS_DECAY * self.fast + (1.0 - FAST_LOSS_DECAY) * value
        self.slow = SLOW_LOSS_DECAY * self.slow + (1.0 - SLOW_LOSS_DECAY) * self.fast
        if self.rho >= SWITCH_THRESHOLD:
            self.switched = True
            self.switch_step = self.steps
            return True
        return False

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the switch then continues exactly where it stopped."""
        _check_state(self.kind, state, self._STATE_KEYS)
        self.fast, self.slow = float(state["fast"]), float(state["slow"])
        self.rho = float(state["rho"])
        self.switched, self.steps = bool(state["switched"]), int(state["steps"])
        self.switch_step = None if state["switch_step"] is None else int(state["switch_step"])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(phase={self.phase!r}, steps={self.steps}, "
            f"fast={self.fast:.6f}, slow={self.slow:.6f}, rho={self.rho:.6f})"
        )


class StaticSwitch(_SwitchStateDict):
    """Static ReLA -> BYOL switch: ReLA for the first ``floor(fraction * total_steps)`` steps.

    The paper's static schedule (``--rela_conlam c`` in the official code, which counts epochs;
    here optimizer steps, so it also works with a data-ratio budget and mid-epoch resume).
    Same interface as :class:`AdaptiveSwitch`; the loss is only checked for finiteness.

    Args:
        fraction: ``c`` in ``[0, 1]``, the share of the optimizer-step budget spent on ReLA.
        total_steps: Total number of optimizer steps of the run.

    Examples:
        >>> switch = StaticSwitch(fraction=0.3, total_steps=10)
        >>> [switch.update(1.0) for _ in range(4)]
        [False, False, True, False]
    """

    kind = "static"
    _STATE_KEYS = ("fraction", "total_steps", "switched", "switch_step", "steps")

    def __init__(self, fraction: float, total_steps: int) -> None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError(f"StaticSwitch: fraction must be in [0, 1], got {fraction}.")
        if total_steps < 1:
            raise ValueError(f"StaticSwitch: total_steps must be >= 1, got {total_steps}.")
        self.fraction = float(fraction)
        self.total_steps = int(total_steps)
        # round() first: 0.29 * 100 is 28.999999999999996 in binary floating point
        self.rela_steps = math.floor(round(self.fraction * self.total_steps, 9))
        self.switched = self.rela_steps == 0
        self.switch_step: int | None = 0 if self.switched else None
        self.steps = 0

    @property
    def phase(self) -> str:
        """``"rela"`` before the switch, ``"byol"`` after it."""
        return PHASE_BYOL if self.switched else PHASE_RELA

    def update(self, loss: float) -> bool:
        """Count one ReLA optimizer step; return True on the last ReLA step.

        Args:
            loss: The step's ReLA loss (not used by the rule, checked for finiteness).

        Returns:
            True on step ``floor(fraction * total_steps)``, False otherwise (and always False,
            without changing anything, once switched).
        """
        if self.switched:
            return False
        _as_finite_float(loss, self.steps + 1)
        self.steps += 1
        if self.steps >= self.rela_steps:
            self.switched = True
            self.switch_step = self.steps
            return True
        return False

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` saved by a switch with the same fraction and budget."""
        _check_state(self.kind, state, self._STATE_KEYS)
        same_budget = int(state["total_steps"]) == self.total_steps
        if float(state["fraction"]) != self.fraction or not same_budget:
            raise ValueError(
                f"StaticSwitch checkpoint was made with fraction={state['fraction']}, "
                f"total_steps={state['total_steps']}, but this run has fraction={self.fraction}, "
                f"total_steps={self.total_steps}; resume with the same budget and static fraction."
            )
        self.switched, self.steps = bool(state["switched"]), int(state["steps"])
        self.switch_step = None if state["switch_step"] is None else int(state["switch_step"])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(phase={self.phase!r}, steps={self.steps}, "
            f"rela_steps={self.rela_steps}, total_steps={self.total_steps})"
        )


def build_switch(
    rule: str, *, fraction: float | None, total_steps: int
) -> AdaptiveSwitch | StaticSwitch:
    """Build the ReLA -> BYOL switch rule by name.

    Args:
        rule: ``"adaptive"`` (the official default) or ``"static"``.
        fraction: The static rule's share of the budget spent on ReLA; required for
            ``"static"``, ignored (with a warning) for ``"adaptive"``.
        total_steps: Total number of optimizer steps of the run (used by ``"static"``).

    Returns:
        A fresh switch.

    Examples:
        >>> build_switch("static", fraction=0.5, total_steps=100).rela_steps
        50
    """
    if rule == AdaptiveSwitch.kind:
        if fraction is not None:
            warnings.warn(
                f"build_switch: fraction={fraction} is ignored by the adaptive switch rule "
                "(it applies to rule='static' only).",
                stacklevel=2,
            )
        return AdaptiveSwitch()
    if rule == StaticSwitch.kind:
        if fraction is None:
            raise ValueError(
                "build_switch: the static switch rule needs a fraction in [0, 1] (the share of "
                "the optimizer-step budget spent on ReLA)."
            )
        return StaticSwitch(fraction, total_steps)
    raise ValueError(f"Unknown ReLA switch rule {rule!r}; choose 'adaptive' or 'static'.")
