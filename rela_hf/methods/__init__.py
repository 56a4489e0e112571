"""The self-supervised methods that ReLA accelerates: BYOL, DINO, SimCLR, behind one contract.

- ``base.py``: :class:`SSLMethod` (heads, loss, teacher, views, options);
- ``registry.py``: the methods by name (``--ssl_method``);
- ``byol.py``, ``dino.py``, ``simclr.py``: one file per method. A new method is one new file with
  ``@register_method`` on its class, imported here.

Examples:
    >>> import timm
    >>> backbone = timm.create_model("test_resnet", num_classes=0)
    >>> method = build_method("simclr", backbone, {"temperature": 0.2})
    >>> method.title, method.has_teacher, len(method.view_transforms(32))
    ('SimCLR', False, 2)
"""

from rela_hf.methods import byol, dino, simclr  # noqa: F401  register the shipped methods
from rela_hf.methods.base import SSLMethod
from rela_hf.methods.registry import build_method, method_class, method_names, register_method

__all__ = ["SSLMethod", "build_method", "method_class", "method_names", "register_method"]
