"""The SSL methods by name: ``--ssl_method byol|dino|simclr`` and whatever registers itself.

Examples:
    >>> import rela_hf.methods  # registers the shipped methods
    >>> sorted(method_names())
    ['byol', 'dino', 'simclr']
"""

from __future__ import annotations

from typing import Any

from torch import nn

from rela_hf.methods.base import SSLMethod

__all__ = ["build_method", "method_class", "method_names", "register_method"]

_METHODS: dict[str, type[SSLMethod]] = {}


def register_method(cls: type[SSLMethod]) -> type[SSLMethod]:
    """Class decorator: make ``cls`` available as ``--ssl_method <cls.name>``."""
    _METHODS[cls.name] = cls
    return cls


def method_names() -> tuple[str, ...]:
    """The registered method names, in registration order."""
    return tuple(_METHODS)


def method_class(name: str) -> type[SSLMethod]:
    """The method registered as ``name``; a ValueError names the registered ones otherwise."""
    if name not in _METHODS:
        raise ValueError(f"Unknown SSL method {name!r}; choose one of {list(_METHODS)}.")
    return _METHODS[name]


def build_method(name: str, backbone: nn.Module, options: Any = None) -> SSLMethod:
    """A fresh method ``name`` for ``backbone`` with ``options`` (its ``Options`` or a mapping)."""
    return method_class(name)(backbone, options)
