"""ReLA-D: efficient targets from a prior model, as a dataset column.

ReLA (Sun, Jiang & Lin, "Efficiency for Free: Ideal Data Are Transportable Representations",
NeurIPS 2024, arXiv:2405.14669) pairs every training image with one fixed target vector: the pooled
embedding of a public *prior* model, PCA-whitened (:mod:`rela_hf.whitening`). This package builds
and publishes those targets:

- ``add.py``: :func:`add_rela_targets` (the entry point) and :func:`whiten_new_images`;
- ``map_passes.py`` / ``streaming.py``: the passes over a map-style or a streaming dataset;
- ``embedding.py``: the steps they share (checks, image decoding, the prior over a batch);
- ``record.py``: :class:`RelaTargetsInfo`, the provenance of the targets, and its files;
- ``provenance.py``: that record inside the dataset's features (:func:`rela_targets_info`), so
  it survives ``select``, ``map``, ``save_to_disk``, ``push_to_hub``, ``load_dataset``...;
- ``publish.py``: save to disk, push to the Hub, read records back, rejoin targets to images;
- ``card.py``: the dataset card.
"""

from rela_hf._deprecation import moved_names
from rela_hf.targets.add import add_rela_targets, whiten_new_images
from rela_hf.targets.card import render_dataset_card
from rela_hf.targets.embedding import resolve_n_components
from rela_hf.targets.provenance import rela_targets_info, with_rela_targets_info
from rela_hf.targets.publish import (
    attach_rela_targets,
    find_rela_targets_info,
    load_rela_targets_info,
    push_rela_dataset,
    save_rela_dataset,
    targets_only_dataset,
)
from rela_hf.targets.record import (
    DEFAULT_EMBEDDING_COLUMN,
    DEFAULT_TARGET_COLUMN,
    INFO_FILENAME,
    WHITENING_FILENAME,
    DatasetSource,
    PriorIdentity,
    RelaTargetsInfo,
    load_whitening,
    save_whitening,
)

__all__ = [
    "DEFAULT_EMBEDDING_COLUMN",
    "DEFAULT_TARGET_COLUMN",
    "INFO_FILENAME",
    "WHITENING_FILENAME",
    "DatasetSource",
    "PriorIdentity",
    "RelaTargetsInfo",
    "add_rela_targets",
    "attach_rela_targets",
    "find_rela_targets_info",
    "load_rela_targets_info",
    "load_whitening",
    "push_rela_dataset",
    "rela_targets_info",
    "render_dataset_card",
    "resolve_n_components",
    "save_rela_dataset",
    "save_whitening",
    "targets_only_dataset",
    "whiten_new_images",
    "with_rela_targets_info",
]


# Names that lived here in rela-hf 0.1: reading one warns (FutureWarning) and forwards to its
# new place until 0.4 (rela_hf/_deprecation.py; CHANGELOG.md lists them).
__getattr__ = moved_names(
    __name__,
    {
        "PCAWhitening": "rela_hf.whitening:PCAWhitening",
        "RELA_CITATION": "rela_hf.card_templates:RELA_CITATION",
    },
)
