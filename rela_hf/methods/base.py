"""The contract of a self-supervised method that ReLA accelerates.

ReLA (Sun, Jiang & Lin, arXiv:2405.14669) is an accelerator for any self-supervised method: the
student first regresses prior targets (the ReLA phase, :mod:`rela_hf.rela`), then the switch
(:mod:`rela_hf.switch`) hands over to the method for good. Neither knows which method follows.
A method is an :class:`SSLMethod`: it owns

- its heads (projector, predictor, ...) and its **loss**: ``forward(features, views, step=...)``
  returns the scalar loss from the backbone features of every view (the student runs the
  backbone once per view, so DDP sees one forward) and the views themselves (a teacher embeds
  them);
- its **teacher**, if any: :meth:`SSLMethod.update_teacher` moves it once per optimizer step (an
  EMA through :func:`rela_hf.momentum.update_momentum`), in both phases;
- its **view recipe**: :meth:`SSLMethod.view_transforms` gives one pipeline per view (two for
  BYOL and SimCLR, two global crops plus optional local crops for DINO);
- its hyperparameters: a dataclass ``Options`` whose field names are the keys of the recipe's
  ``--method_options``.

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

__all__ = ["SSLMethod", "parse_options"]

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
        raise ValueError(
            f"Unknown {method} option(s) {unknown}; the {method} options are {sorted(known)}."
        )
    return options_class(**values)


class SSLMethod(nn.Module):
    """A self-supervised method: heads, loss, teacher and views (see the module docstring).

    Subclasses set the class attributes, build their heads in ``__init__`` (the student's
    ``backbone`` is passed so that a teacher can copy it; the method must not register it) and
    implement :meth:`forward` and :meth:`view_transforms`.

    Attributes:
        name: registry key (``--ssl_method``), e.g. ``"byol"``.
        title: how cards and logs name it, e.g. ``"BYOL"``.
        paper: its arXiv id.
        citation: its BibTeX entry.
        loss_name: the name its loss is logged under, e.g. ``"byol_loss"``.
        Options: the dataclass of its hyperparameters.
        has_teacher: whether it trains against a momentum teacher (:meth:`update_teacher`).
    """

    name: ClassVar[str]
    title: ClassVar[str]
    paper: ClassVar[str]
    citation: ClassVar[str]
    loss_name: ClassVar[str]
    Options: ClassVar[type]
    has_teacher: ClassVar[bool] = False  # trains against a momentum teacher (update_teacher)

    def __init__(self, backbone: nn.Module, options: Any = None) -> None:
        super().__init__()
        feature_dim = getattr(backbone, "num_features", None)
        if not isinstance(feature_dim, int) or feature_dim < 1:
            raise TypeError(
                f"{type(self).__name__} needs a backbone with an integer `num_features` (its pooled "
                f"feature width), got {type(backbone).__name__} with num_features={feature_dim!r}; "
                "create it with rela_hf.backbones.create_backbone or timm.create_model(..., num_classes=0)."
            )
        self.feature_dim = feature_dim
        self.options = self.options_from(options)

    @classmethod
    def options_from(cls, options: Any = None) -> Any:
        """The method's ``Options`` from itself, a mapping of its fields, or ``None`` (defaults)."""
        return parse_options(cls.Options, options, method=cls.name)

    def forward(self, features: Sequence[Tensor], views: Sequence[Tensor], *, step: int = 0) -> Tensor:
        """The method's loss for one batch.

        Args:
            features: the online backbone's pooled features of every view, ``(B, feature_dim)``
                each, in the order of :meth:`view_transforms`.
            views: the views themselves, ``(B, C, H, W)`` each (a teacher embeds them).
            step: the optimizer step (for schedules such as DINO's teacher temperature).
        """
        raise NotImplementedError

    @torch.no_grad()
    def update_teacher(self, backbone: nn.Module, momentum: float) -> None:
        """One EMA step of the teacher toward the online networks; a no-op without a teacher.

        Call once per *optimizer* step (after gradient accumulation), on the unwrapped model.
        """

    @classmethod
    def view_transforms(cls, image_size: int, options: Any = None) -> list[ViewTransform]:
        """One pipeline per view (PIL image -> normalised tensor), for the SSL phase."""
        raise NotImplementedError
