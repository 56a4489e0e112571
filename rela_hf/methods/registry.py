"""The methods by name: ``--method byol|dino|simclr|supervised`` and whatever registers itself.

Examples:
    >>> import rela_hf.methods  # registers the shipped methods
    >>> sorted(method_names())
    ['byol', 'dino', 'simclr', 'supervised']
"""

from __future__ import annotations

from typing import Any

from torch import nn

from rela_hf.methods.base import Method

__all__ = ["build_method", "method_class", "method_names", "register_method"]

_METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: make ``cls`` available as ``--method <cls.name>``."""
    _METHODS[cls.name] = cls
    return cls


def method_names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(_METHODS)


def method_class(name: str) -> type[Method]:
    """The method registered as ``name``; a ValueError names the registered ones otherwise."""
    if name not in _METHODS:
        raise ValueError(f"Unknown SSL method {name!r}; choose one of {list(_METHODS)}.")
    return _METHODS[name]


def build_method(name: str, backbone: nn.Module, options: Any = None, *, num_classes: int | None = None) -> Method:
    """A fresh method ``name`` for ``backbone`` with ``options`` (its ``Options`` or a mapping);
    ``num_classes``: the dataset's label classes (supervised methods need them)."""
    return method_class(name)(backbone, options, num_classes=num_classes)
