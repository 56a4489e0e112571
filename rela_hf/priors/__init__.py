"""Prior models for ReLA-D: any public image encoder behind one small interface.

ReLA (Sun, Jiang & Lin, NeurIPS 2024, arXiv:2405.14669) pairs every training image with a fixed
target made by a *prior model*. :func:`load_prior` turns a timm model, a transformers model or a
local folder into a :class:`Prior` (the frozen model, its deterministic preprocessing and a batched
``embed``):

- ``prior.py``: the contract (:class:`Prior`, the errors, what loaders receive and return);
- ``sources.py``: which library reads a name, and from where (Hub commit pinned);
- ``registry.py``: the loaders by library name; ``timm_loader.py``, ``transformers_loader.py``
  (+ ``image_processors.py``): one per library. A new source (open_clip, ...) is one new loader
  module imported here;
- ``load.py``: :func:`load_prior`.

Usage with the Hub (not a doctest)::

    prior = load_prior("hf-hub:timm/resnet18.a1_in1k")  # timm
    prior = load_prior("openai/clip-vit-base-patch16")  # transformers

Examples:
    >>> prior = load_prior("test_resnet", pretrained=False)          # a random prior
    >>> prior.library, prior.embed_dim
    ('timm', 96)
"""

from rela_hf._deprecation import Moved, moved_names
from rela_hf.priors import timm_loader, transformers_loader  # noqa: F401  register the loaders
from rela_hf.priors.load import PREPROCESSING_MODES, load_prior
from rela_hf.priors.prior import (
    Prior,
    PriorError,
    PriorNotFoundError,
    UnsupportedPriorError,
    official_transform,
)
from rela_hf.priors.registry import prior_libraries, register_prior_loader

__all__ = [
    "PREPROCESSING_MODES",
    "Prior",
    "PriorError",
    "PriorNotFoundError",
    "UnsupportedPriorError",
    "load_prior",
    "official_transform",
    "prior_libraries",
    "register_prior_loader",
]


# Names that lived here in rela-hf 0.1: reading one warns (FutureWarning) and forwards to its
# new place until 0.4 (rela_hf/_deprecation.py; CHANGELOG.md lists them).
__getattr__ = moved_names(
    __name__,
    {
        "ConvertRGB": Moved(
            "rela_hf.preprocessing:ConvertImageMode",
            "ConvertImageMode() converts to RGB like ConvertRGB() did.",
        ),
        "ImageProcessorTransform": "rela_hf.priors.image_processors:ImageProcessorTransform",
        "TimmPooledFeatures": "rela_hf.priors.timm_loader:TimmPooledFeatures",
        "TransformersPooledFeatures": ("rela_hf.priors.transformers_loader:TransformersPooledFeatures"),
        "LIBRARIES": Moved(
            "rela_hf.priors:prior_libraries",
            "prior_libraries() lists the registered loaders (a new loader module adds one) "
            "without 'auto'; the old constant is rebuilt as ('auto', *prior_libraries()).",
            value=lambda: ("auto", *prior_libraries()),
        ),
    },
)
