"""The prior loaders, one per library, by name: adding a prior source is one file + one entry.

A loader turns a located :class:`~rela_hf.priors.prior.PriorSource` into a
:class:`~rela_hf.priors.prior.LoadedPrior` (model, resolved revision, preprocessing, embedding
rule). It registers itself with the names of the ``config.json`` files it recognises, so that
``load_prior(..., library="auto")`` picks it::

    @register_prior_loader("open_clip", claims=lambda config: "model_cfg" in config)
    def load_open_clip(request: PriorRequest) -> LoadedPrior: ...

and ``rela_hf/priors/__init__.py`` imports the module. The loaders shipped: ``timm``
(:mod:`rela_hf.priors.timm_loader`) and ``transformers`` (:mod:`rela_hf.priors.transformers_loader`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rela_hf.priors.prior import LoadedPrior, PriorRequest, UnsupportedPriorError

__all__ = ["PriorLoader", "choose_library", "prior_libraries", "prior_loader", "register_prior_loader"]

ConfigTest = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class PriorLoader:
    """A registered loader.

    Attributes:
        library: its name (``load_prior(..., library=<name>)``).
        load: ``PriorRequest -> LoadedPrior``.
        claims: whether ``library="auto"`` should give it a ``config.json``.
        accepts: whether it can load a ``config.json`` when asked by name (default: ``claims``).
    """

    library: str
    load: Callable[[PriorRequest], LoadedPrior]
    claims: ConfigTest
    accepts: ConfigTest


_LOADERS: dict[str, PriorLoader] = {}


def register_prior_loader(
    library: str, *, claims: ConfigTest, accepts: ConfigTest | None = None
) -> Callable[[Callable[[PriorRequest], LoadedPrior]], Callable[[PriorRequest], LoadedPrior]]:
    """Decorator registering a loader function under ``library`` (see the module docstring)."""

    def decorator(load: Callable[[PriorRequest], LoadedPrior]) -> Callable[[PriorRequest], LoadedPrior]:
        _LOADERS[library] = PriorLoader(library, load, claims, accepts or claims)
        return load

    return decorator


def prior_libraries() -> tuple[str, ...]:
    """The registered library names, in registration order."""
    return tuple(_LOADERS)


def prior_loader(library: str) -> PriorLoader:
    if library not in _LOADERS:
        raise ValueError(f"library={library!r} is not one of {('auto', *_LOADERS)}.")
    return _LOADERS[library]


def choose_library(config: dict[str, Any], library: str, where: str) -> str:
    """``library`` if forced (checking that it can load ``config``), else the loader that claims it.

    Loaders are asked newest first, so a loader registered later can claim configs that a
    built-in one would take (a more specific reader of the same ``config.json``).
    """
    if library == "auto":
        for loader in reversed(_LOADERS.values()):
            if loader.claims(config):
                return loader.library
        raise UnsupportedPriorError(
            f"{where}: no prior loader recognises its config.json (loaders: {prior_libraries()})."
        )
    if not prior_loader(library).accepts(config):
        claimed = next((loader.library for loader in reversed(_LOADERS.values()) if loader.claims(config)), None)
        raise UnsupportedPriorError(
            f"{where} holds a model that the {library} loader cannot read "
            f"(model_type={config.get('model_type')!r}, architecture={config.get('architecture')!r}); "
            + (f"use library={claimed!r} or 'auto'." if claimed else "no registered loader claims it.")
        )
    return library
