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

from rela_hf._deprecation import Moved, moved_names
from rela_hf.methods import byol, dino, simclr, supervised  # noqa: F401  register the shipped methods
from rela_hf.methods.base import Method, MethodBatch
from rela_hf.methods.registry import build_method, method_class, method_names, register_method

__all__ = ["Method", "MethodBatch", "build_method", "method_class", "method_names", "register_method"]


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
