"""The contract of a training method that ReLA accelerates (self-supervised or supervised).

ReLA (Sun, Jiang & Lin, arXiv:2405.14669, its Figure 1) accelerates "(self-)supervised" learning:
the student first regresses prior targets (the ReLA phase, :mod:`rela_hf.rela`), then the switch
(:mod:`rela_hf.switch`) hands over to the method for good. Neither knows which method follows.
A method is a :class:`Method`; it owns

- its heads (projector, predictor, classifier, ...) and its **loss**: ``forward(batch)`` returns
  the scalar loss of one :class:`MethodBatch` (the backbone features of every view, the views
  themselves for a teacher, the labels when the dataset has them, the optimizer step);
- its **teacher**, if any: :meth:`Method.update_teacher` moves it once per optimizer step (an EMA
  through :func:`rela_hf.momentum.update_momentum`), in both phases, with the trainer's momentum
  unless :meth:`Method.teacher_momentum` declares the method's own schedule;
- its **parameter groups**, if it needs its own (:meth:`Method.parameter_groups`, e.g. no weight
  decay on some heads), and **hooks around the optimizer step** (:meth:`Method.before_optimizer_step`
  for DINO's frozen last layer, :meth:`Method.after_optimizer_step` for normalised prototypes);
- its **view recipe**: :meth:`Method.view_transforms` gives one pipeline per view;
- its hyperparameters: a dataclass ``Options`` whose field names are the keys of
  ``--method_options``; and whether it needs labels (``requires_labels``).

Distributed helpers (gather with gradients, "is distributed") live in :mod:`rela_hf.distributed`.
A new method is one new file in ``rela_hf/methods/`` with ``@register_method`` on its class, and
one import line in ``rela_hf/methods/__init__.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import Tensor, nn

from rela_hf._deprecation import Moved, moved_names

__all__ = ["Method", "MethodBatch", "parse_options"]

ViewTransform = Callable[[Image.Image], Tensor]


def parse_options(options_class: type, values: Mapping[str, Any] | Any | None, *, method: str) -> Any:
    """A method's ``Options`` dataclass from a mapping (unknown keys are an error naming the valid ones)."""
    if values is None:
        return options_class()
    if isinstance(values, options_class):
        return values
    known = {field.name for field in dataclasses.fields(options_class)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"Unknown {method} option(s) {unknown}; the {method} options are {sorted(known)}.")
    return options_class(**values)


@dataclasses.dataclass
class MethodBatch:
    """What a method receives of one micro-batch.

    Attributes:
        features: the online backbone's pooled features of every view, ``(B, feature_dim)`` each,
            in the order of :meth:`Method.view_transforms` (the student runs the backbone once per
            view, so DDP sees one forward).
        views: the views themselves, ``(B, C, H, W)`` each (a teacher embeds them).
        labels: the class labels ``(B,)`` when the dataset has a label column, else ``None``.
        step: the optimizer step this micro-batch belongs to (for schedules).
    """

    features: Sequence[Tensor]
    views: Sequence[Tensor]
    labels: Tensor | None = None
    step: int = 0


class Method(nn.Module):
    """A training method: heads, loss, teacher, hooks and views (see the module docstring).

    Subclasses set the class attributes, build their heads in ``__init__`` (the student's
    ``backbone`` is passed so that a teacher can copy it; the method must not register it) and
    implement :meth:`forward` and :meth:`view_transforms`.

    Attributes:
        name: registry key (``--method``), e.g. ``"byol"``.
        title: how cards and logs name it, e.g. ``"BYOL"``.
        paper: its arXiv id.
        citation: its BibTeX entry.
        loss_name: the name its loss is logged under, e.g. ``"byol_loss"``.
        Options: the dataclass of its hyperparameters.
        has_teacher: whether it trains against a momentum teacher (:meth:`update_teacher`).
        requires_labels: whether it needs the dataset's labels (supervised methods).
        self_supervised: whether it learns without labels (cards and tags say so).
        num_classes: the classes of the dataset's labels, when known.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    paper: ClassVar[str]
    citation: ClassVar[str]
    loss_name: ClassVar[str]
    Options: ClassVar[type]
    has_teacher: ClassVar[bool] = False
    requires_labels: ClassVar[bool] = False
    self_supervised: ClassVar[bool] = True

    def __init__(self, backbone: nn.Module, options: Any = None, *, num_classes: int | None = None) -> None:
        super().__init__()
        feature_dim = getattr(backbone, "num_features", None)
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise TypeError(
                f"{type(self).__name__} needs a backbone with an integer `num_features` (its pooled "
                f"feature width), got {type(backbone).__name__} with num_features={feature_dim!r}; "
                "create it with rela_hf.backbones.create_backbone or timm.create_model(..., num_classes=0)."
            )
        if self.requires_labels and not num_classes:
            raise ValueError(
                f"The {self.title} method trains on labels: it needs num_classes (the dataset's label "
                f"classes), got {num_classes!r}."
            )
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.options = self.options_from(options)

    @classmethod
    def options_from(cls, options: Any = None) -> Any:
        """The method's ``Options`` from itself, a mapping of its fields, or ``None`` (defaults)."""
        return parse_options(cls.Options, options, method=cls.name)

    def forward(self, batch: MethodBatch) -> Tensor:
        """The method's scalar loss for one micro-batch."""
        raise NotImplementedError

    @torch.no_grad()
    def update_teacher(self, backbone: nn.Module, momentum: float) -> None:
        """One EMA step of the teacher toward the online networks; a no-op without a teacher.

        Call once per *optimizer* step (after gradient accumulation), on the unwrapped model.
        """

    def teacher_momentum(self, step: int, total_steps: int) -> float | None:
        """The method's own EMA momentum at optimizer ``step``, or ``None``: the trainer's
        (``--momentum`` / ``--momentum_schedule``)."""
        return None

    def parameter_groups(self, weight_decay: float) -> list[dict[str, Any]] | None:
        """The method's own optimizer parameter groups, or ``None``: its trainable parameters
        join the student's main group (with ``weight_decay``)."""
        return None

    def before_optimizer_step(self, step: int) -> None:
        """Called on every optimizer step after backward (and clipping), before ``optimizer.step()``:
        the place to edit gradients (DINO's frozen last layer). ``step``: the step being taken."""

    def after_optimizer_step(self, step: int) -> None:
        """Called after ``optimizer.step()``, before the teacher's EMA update (e.g. to normalise
        prototypes). ``step``: the step just taken."""

    @classmethod
    def view_transforms(cls, image_size: int, options: Any = None) -> list[ViewTransform]:
        """One pipeline per view (PIL image -> normalised tensor), for the method's phase."""
        raise NotImplementedError


__getattr__ = moved_names(
    __name__,
    {
        "SSLMethod": Moved(
            "rela_hf.methods.base:Method",
            "a method now also covers supervised training; forward() "
            "takes one MethodBatch (features, views, labels, step) instead of (features, views, step=).",
        ),
    },
)
