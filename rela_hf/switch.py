"""When ReLA hands over to the SSL method: the adaptive and the static switch rules.

ReLA (Sun, Jiang & Lin, "Efficiency for Free: Ideal Data Are Transportable Representations",
NeurIPS 2024, arXiv:2405.14669) trains the backbone on the ReLA objective first and then switches,
once and for good, to the self-supervised method (BYOL in the paper; any method here). The switch
is *adaptive* by default (two exponential moving averages of the ReLA loss tell when it has
flattened out) or *static* (after a fixed fraction of the step budget). The rules know nothing of
the method that follows; the constants below are those of the official code (github.com/LINs-lab/
ReLA, ``boostor/rela.py``) and are defined here and nowhere else.

Examples:
    >>> switch = AdaptiveSwitch()
    >>> switch.update(0.9), switch.phase
    (False, 'rela')
"""

from __future__ import annotations

import math
import warnings
from typing import Any

from rela_hf._deprecation import Moved, moved_names

__all__ = [
    "FAST_LOSS_DECAY",
    "FAST_LOSS_INIT",
    "PHASE_RELA",
    "PHASE_SSL",
    "SLOW_LOSS_DECAY",
    "SLOW_LOSS_INIT",
    "SWITCH_THRESHOLD",
    "AdaptiveSwitch",
    "StaticSwitch",
    "build_switch",
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
"""Switch to the SSL method once ``rho = exp(-max(slow - fast, 0))`` reaches this value."""

PHASE_RELA = "rela"
"""Phase name before the switch: the ReLA loss drives the backbone."""
PHASE_SSL = "ssl"
"""Phase name after the switch: the self-supervised method alone (BYOL, DINO, SimCLR...)."""


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


class _SwitchRule:
    """What the switch rules share: the phase, the step count, switching once, the state.

    A rule only says, once per ReLA optimizer step, whether this step is the last ReLA step
    (:meth:`_is_last_rela_step`); everything else is the same for every rule.
    """

    kind: str
    _STATE_KEYS: tuple[str, ...]
    switched: bool
    switch_step: int | None
    steps: int

    @property
    def phase(self) -> str:
        """``"rela"`` before the switch, ``"ssl"`` after it."""
        return PHASE_SSL if self.switched else PHASE_RELA

    def update(self, loss: float) -> bool:
        """Record one optimizer step's ReLA loss; return True exactly on the switching step.

        Args:
            loss: The step's ReLA loss, averaged over accumulation micro-batches and processes
                (a Python float or a 0-d tensor); checked for finiteness.

        Returns:
            True on the step the rule makes the last ReLA step, False otherwise (and always
            False, without changing anything, once switched).
        """
        if self.switched:
            return False
        value = _as_finite_float(loss, self.steps + 1)
        self.steps += 1
        if self._is_last_rela_step(value):
            self.switched = True
            self.switch_step = self.steps
            return True
        return False

    def _is_last_rela_step(self, loss: float) -> bool:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values (loadable with ``torch.load(weights_only=True)``)."""
        return {"kind": self.kind, **{key: getattr(self, key) for key in self._STATE_KEYS}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; the switch then continues exactly where it stopped."""
        _check_state(self.kind, state, self._STATE_KEYS)
        self._load_rule_state(state)
        self.switched, self.steps = bool(state["switched"]), int(state["steps"])
        self.switch_step = None if state["switch_step"] is None else int(state["switch_step"])

    def _load_rule_state(self, state: dict[str, Any]) -> None:
        """Check and restore what only this rule keeps."""


class AdaptiveSwitch(_SwitchRule):
    """The adaptive ReLA -> SSL switch of the official code (the default rule).

    Two moving averages of the ReLA loss, a fast one and a slow one that smooths the fast one,
    measure whether the loss still falls: while it falls the slow average lags above the fast
    one. Once per optimizer step, with ``cur`` the ReLA loss of that step (averaged over
    gradient-accumulation micro-batches and over all processes):

    1. ``rho = exp(-max(slow - fast, 0))`` from the values *before* this step's update;
    2. ``fast = 0.999 fast + 0.001 cur``;
    3. ``slow = 0.99 slow + 0.01 fast``.

    When ``rho >= 0.995`` training switches, once and for good, to the SSL method: the step that
    computed it was still a ReLA step, the next one is not. From ``fast = 1``, ``slow = 2`` the gap must
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
        (528, 528, 'ssl')
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

    def _is_last_rela_step(self, loss: float) -> bool:
        # rho from the averages *before* this step's update, then the two updates
        self.rho = math.exp(-max(self.slow - self.fast, 0.0))
        self.fast = FAST_LOSS_DECAY * self.fast + (1.0 - FAST_LOSS_DECAY) * loss
        self.slow = SLOW_LOSS_DECAY * self.slow + (1.0 - SLOW_LOSS_DECAY) * self.fast
        return self.rho >= SWITCH_THRESHOLD

    def _load_rule_state(self, state: dict[str, Any]) -> None:
        self.fast, self.slow = float(state["fast"]), float(state["slow"])
        self.rho = float(state["rho"])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(phase={self.phase!r}, steps={self.steps}, "
            f"fast={self.fast:.6f}, slow={self.slow:.6f}, rho={self.rho:.6f})"
        )


class StaticSwitch(_SwitchRule):
    """Static ReLA -> SSL switch: ReLA for the first ``floor(fraction * total_steps)`` steps.

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

    def _is_last_rela_step(self, loss: float) -> bool:
        return self.steps >= self.rela_steps  # the loss is not used by this rule

    def _load_rule_state(self, state: dict[str, Any]) -> None:
        same_budget = int(state["total_steps"]) == self.total_steps
        if float(state["fraction"]) != self.fraction or not same_budget:
            raise ValueError(
                f"StaticSwitch checkpoint was made with fraction={state['fraction']}, "
                f"total_steps={state['total_steps']}, but this run has fraction={self.fraction}, "
                f"total_steps={self.total_steps}; resume with the same budget and static fraction."
            )

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(phase={self.phase!r}, steps={self.steps}, "
            f"rela_steps={self.rela_steps}, total_steps={self.total_steps})"
        )


def build_switch(rule: str, *, fraction: float | None, total_steps: int) -> AdaptiveSwitch | StaticSwitch:
    """Build the ReLA -> SSL switch rule by name.

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


# Names that lived here in rela-hf 0.1: reading one warns (FutureWarning) and forwards to its
# new place until 0.4 (rela_hf/_deprecation.py; CHANGELOG.md lists them).
_SSL_PHASE_NOTE = (
    "its value is now 'ssl', not 'byol': the phase after the switch runs whichever SSL method the run chose."
)
__getattr__ = moved_names(
    __name__,
    {"PHASE_BYOL": Moved("rela_hf.switch:PHASE_SSL", _SSL_PHASE_NOTE)},
)
