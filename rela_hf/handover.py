"""How ReLA hands over to the method at the switch: the weight of the ReLA loss afterwards.

The official ReLA code (arXiv:2405.14669) switches hard: once the switch rule fires
(:mod:`rela_hf.switch`), the ReLA loss stops and the method's loss alone trains the student (the
paper's lambda goes 1 -> 0 in one step). On rela-hf's plateau benchmark this loses what the ReLA
phase gained when the prior is good (the ImageNet prior: 83.6 % kNN before the switch, about 81.7
after it, never recovered), while a random prior gains after the switch. The hand-overs here keep
the ReLA loss for a while after the switch, added to the method's loss with a weight ``w``:

- ``hard``: ``w = 0`` right after the switch (the spec; the default);
- ``fade``: ``w`` falls linearly from 1 to 0 over ``handover_steps`` optimizer steps;
- ``regularize``: ``w = handover_weight`` for the rest of the run (the prior's targets stay a
  regulariser of the method).

Before the switch the ReLA loss alone trains the student (``w`` does not apply). The weight is a
function of the steps since the switch only, so it needs no state beyond the switch's own.

Examples:
    >>> Handover("fade", steps=100).rela_weight(step=150, switch_step=100)
    0.5
    >>> Handover("hard").rela_weight(step=101, switch_step=100)
    0.0
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HANDOVERS", "Handover"]

HANDOVERS = ("hard", "fade", "regularize")


@dataclass(frozen=True)
class Handover:
    """The ReLA loss's weight after the switch (see the module docstring).

    Attributes:
        kind: ``"hard"``, ``"fade"`` or ``"regularize"``.
        steps: ``fade``: the optimizer steps over which the weight falls from 1 to 0.
        weight: ``regularize``: the constant weight of the ReLA loss.
    """

    kind: str = "hard"
    steps: int = 0
    weight: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in HANDOVERS:
            raise ValueError(f"Unknown hand-over {self.kind!r}; choose one of {list(HANDOVERS)}.")
        if self.kind == "fade" and self.steps < 1:
            raise ValueError(f"The fade hand-over needs steps >= 1 (the fade's length), got {self.steps}.")
        if self.kind == "regularize" and not self.weight > 0:
            raise ValueError(f"The regularize hand-over needs a weight > 0, got {self.weight}.")

    def rela_weight(self, step: int, switch_step: int | None) -> float:
        """The ReLA loss's weight in optimizer step ``step`` (0-based index of the step being
        taken; ``switch_step``: the last ReLA step, ``None`` before the switch)."""
        if switch_step is None or self.kind == "hard":
            return 0.0
        if self.kind == "regularize":
            return self.weight
        since = step - switch_step  # 0 for the first step after the switch (whose index is switch_step)
        return max(0.0, 1.0 - since / self.steps)
