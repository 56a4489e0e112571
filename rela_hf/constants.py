"""Deprecated module (rela-hf 0.1): the ImageNet statistics moved to :mod:`rela_hf.preprocessing`.

Since 0.2 every deterministic pipeline is described once, as a timm data config, in
:mod:`rela_hf.preprocessing`, next to the constants it uses. Reading a name here warns
(``FutureWarning``) and returns the same tuple. This shim goes away in rela-hf 0.4.
"""

from __future__ import annotations

from rela_hf._deprecation import moved_names, warn_moved_module

warn_moved_module(__name__, "rela_hf.preprocessing")

__getattr__ = moved_names(
    __name__,
    {
        "IMAGENET_MEAN": "rela_hf.preprocessing:IMAGENET_MEAN",
        "IMAGENET_STD": "rela_hf.preprocessing:IMAGENET_STD",
    },
)
