"""Deprecated module (rela-hf 0.1): the dataset card moved to :mod:`rela_hf.targets.card` in 0.2.

The template folder ``TEMPLATE_DIR`` is now :data:`rela_hf.card_templates.TEMPLATE_DIR` (the
encoder card and the dataset card share it). Reading a name here warns (``FutureWarning``) and
returns the object from its new place; the functions are unchanged. This shim goes away in
rela-hf 0.4.
"""

from __future__ import annotations

from rela_hf._deprecation import moved_names, warn_moved_module

warn_moved_module(__name__, "rela_hf.targets.card and rela_hf.card_templates")

__getattr__ = moved_names(
    __name__,
    {
        "DATASET_CARD_TEMPLATE": "rela_hf.targets.card:DATASET_CARD_TEMPLATE",
        "DATASET_TAGS": "rela_hf.targets.card:DATASET_TAGS",
        "TEMPLATE_DIR": "rela_hf.card_templates:TEMPLATE_DIR",
        "render_dataset_card": "rela_hf.targets.card:render_dataset_card",
        "size_category": "rela_hf.targets.card:size_category",
    },
)
