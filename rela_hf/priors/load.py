"""``load_prior``: any public image encoder as a ReLA prior (arXiv:2405.14669, ReLA-D).

The name is located (:mod:`rela_hf.priors.sources`), the registered loader of its library builds
the model, its preprocessing and its embedding rule (:mod:`rela_hf.priors.registry`), and the
result is checked with one forward pass before it is returned as a :class:`Prior`.

Provenance: ``Prior.revision`` is the Hub commit the weights came from (also for timm registry
names whose weights live on the Hub), and ``Prior.fingerprint`` identifies the targets a prior
produces (for ``Dataset.map(new_fingerprint=...)``).
"""

from __future__ import annotations

from typing import Any

import torch

from rela_hf.priors.prior import Prior, PriorRequest, UnsupportedPriorError
from rela_hf.priors.registry import prior_loader
from rela_hf.priors.sources import locate_prior

__all__ = ["PREPROCESSING_MODES", "load_prior"]

PREPROCESSING_MODES = ("prior", "official")


def _default_device(device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def load_prior(
    name_or_path: str,
    *,
    revision: str | None = None,
    library: str = "auto",
    preprocessing: str = "prior",
    image_size: int | None = None,
    pretrained: bool = True,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    channels_last: bool = False,
    **model_kwargs: Any,
) -> Prior:
    """Load a public image encoder as a ReLA prior (arXiv:2405.14669, ReLA-D).

    ``library="auto"`` decides from the name:

    - ``hf-hub:<org>/<name>[@rev]`` / ``local-dir:<folder>``: timm, as ``timm.create_model``.
    - an existing folder: timm if its ``config.json`` has ``architecture`` and no ``model_type``
      (a ``save_for_hf`` export), else transformers.
    - a timm registry name (``resnet18``, ``resnet18.a1_in1k``, ``test_resnet``): timm.
    - ``<org>/<name>``: a Hub repo, timm or transformers according to its ``config.json``.

    Args:
        name_or_path: timm name, Hub repo id, or local folder.
        revision: Hub branch, tag or commit; resolved to a commit sha stored in ``Prior.revision``.
        library: ``"auto"``, ``"timm"`` or ``"transformers"`` (forces the loader).
        preprocessing: ``"prior"`` (the prior's own, default) or ``"official"`` (the official
            ReLA code's resize + centre crop + ImageNet mean/std).
        image_size: input size override (square); defaults to the prior's own input size.
        pretrained: ``False`` builds the architecture with random weights (a valid prior too).
        device: where to run; defaults to CUDA when available.
        trust_remote_code: allow transformers to run code from the model repository.
        channels_last: run in channels-last memory format.
        **model_kwargs: passed to ``timm.create_model`` / ``from_pretrained`` / ``from_config``.

    Raises:
        ValueError: invalid ``library``, ``preprocessing`` or ``image_size``.
        PriorNotFoundError: unknown name or folder, missing repo or revision, unreachable Hub.
        UnsupportedPriorError: not an image model, remote code needed, unknown architecture.
    """
    if library != "auto":
        prior_loader(library)  # a clear error for an unknown library, before anything loads
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(
            f"preprocessing={preprocessing!r} is not one of {PREPROCESSING_MODES}: 'prior' uses "
            "the model's own preprocessing, 'official' the official ReLA code's (ImageNet "
            "mean/std)."
        )
    if image_size is not None and (not isinstance(image_size, int) or image_size <= 0):
        raise ValueError(f"image_size must be a positive int or None, got {image_size!r}.")
    if not isinstance(name_or_path, str) or not name_or_path:
        raise ValueError(f"name_or_path must be a non-empty string, got {name_or_path!r}.")
    target_device = _default_device(device)
    source = locate_prior(name_or_path, library, revision)
    loaded = prior_loader(source.library).load(
        PriorRequest(
            source=source,
            preprocessing=preprocessing,
            image_size=image_size,
            pretrained=pretrained,
            device=target_device,
            trust_remote_code=trust_remote_code,
            model_kwargs=model_kwargs,
        )
    )
    model = loaded.model
    model.eval().requires_grad_(False).to(target_device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    prior = Prior(
        model=model,
        name=name_or_path,
        # randomly initialised weights come from no commit (and fingerprint by their values)
        revision=loaded.revision if pretrained else None,
        library=source.library,
        embed_dim=0,
        preprocessing=loaded.preprocessing,
        transform=loaded.transform,
        device=target_device,
        embed_fn=loaded.embed_fn,
        channels_last=channels_last,
        pretrained=pretrained,
    )
    prior.embed_dim = _probe_embed_dim(prior)
    return prior


def _probe_embed_dim(prior: Prior) -> int:
    """Width of the embedding, from one forward pass on a blank input of the configured size.

    Also fails early, with a clear message, when the model cannot run at that size.
    """
    _, height, width = prior.preprocessing["input_size"]
    try:
        out = prior.embed(torch.zeros(1, 3, height, width))
    except Exception as err:  # re-raised with the context a user needs
        raise UnsupportedPriorError(
            f"The prior {prior.name!r} failed on a {height}x{width} input ({type(err).__name__}: "
            f"{err}). Check image_size, or that the model is an image encoder."
        ) from err
    if out.ndim != 2:
        raise UnsupportedPriorError(
            f"The prior {prior.name!r} returned embeddings of shape {tuple(out.shape)}, not "
            "[B, D]; pass global_pool (timm) or use a model with pooled outputs."
        )
    return int(out.shape[1])
