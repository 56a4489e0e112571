"""The training methods that ReLA accelerates: BYOL, DINO, SimCLR, supervised, behind one contract.

- ``base.py``: :class:`Method` (heads, loss, teacher, hooks, views, options) and
  :class:`MethodBatch` (what a method receives);
- ``registry.py``: the methods by name (``--method``);
- ``byol.py``, ``dino.py``, ``simclr.py``, ``supervised.py``: one file per method. A new method is
  one new file with ``@register_method`` on its class, imported here.

Examples:
    >>> import timm
    >>> backbone = timm.create_model("test_resnet", num_classes=0)
    >>> method = build_method("simclr", backbone, {"temperature": 0.2})
    >>> method.title, method.has_teacher, len(method.view_transforms(32))
    ('SimCLR', False, 2)
"""

import warnings
from typing import Any

from rela_hf.methods import byol, dino, simclr, supervised  # noqa: F401  register the shipped methods
from rela_hf.methods.base import Method, MethodBatch
from rela_hf.methods.registry import build_method, method_class, method_names, register_method

__all__ = ["Method", "MethodBatch", "build_method", "method_class", "method_names", "register_method"]


def __getattr__(name: str) -> Any:
    if name == "SSLMethod":  # rela-hf 0.2's name, before supervised methods existed
        warnings.warn("rela_hf.methods.SSLMethod is renamed rela_hf.methods.Method (rela-hf 0.3); "
                      "the old name works until rela-hf 0.4.", FutureWarning, stacklevel=2)
        return Method
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
