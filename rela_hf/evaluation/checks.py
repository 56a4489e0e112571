"""Argument checks shared by the protocols: feature/label shapes and the number of classes."""

from __future__ import annotations

from torch import Tensor

__all__ = ["check_split", "num_classes_of"]


def check_split(features: Tensor, labels: Tensor, name: str) -> None:
    if features.ndim != 2:
        raise ValueError(f"{name}_features must be (N, D), got shape {tuple(features.shape)}.")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise ValueError(
            f"{name}_labels must be (N,) with N={features.shape[0]} ({name}_features rows), "
            f"got shape {tuple(labels.shape)}."
        )
    if features.shape[0] == 0:
        raise ValueError(f"{name}_features is empty.")
    if labels.dtype.is_floating_point:
        raise TypeError(f"{name}_labels must be integer class indices, got {labels.dtype}.")


def num_classes_of(num_classes: int | None, *labels: Tensor) -> int:
    needed = int(max(int(label.max()) for label in labels)) + 1
    if int(min(int(label.min()) for label in labels)) < 0:
        raise ValueError("Labels must be non-negative class indices.")
    if num_classes is None:
        return needed
    if num_classes < needed:
        raise ValueError(f"num_classes={num_classes} but the labels go up to {needed - 1}.")
    return num_classes
