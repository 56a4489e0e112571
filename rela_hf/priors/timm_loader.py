"""The timm prior loader: registry names, ``hf-hub:`` repos and ``local-dir:`` exports.

The embedding is the pooled pre-logits, ``forward_head(forward_features(x), pre_logits=True)``
(the features the classifier would see: ``head_hidden_size`` wide, else ``num_features``), and the
preprocessing the model's own ``pretrained_cfg`` (``resolve_model_data_config``) or the official
one. Weights named by a registry name that live on the Hub are pinned to a commit.
"""

from __future__ import annotations

from typing import Any

import timm
import timm.data
import torch
from torch import nn

from rela_hf.preprocessing import eval_transform
from rela_hf.priors.prior import (
    LoadedPrior,
    PriorNotFoundError,
    PriorRequest,
    UnsupportedPriorError,
    official_preprocessing,
    official_transform,
)
from rela_hf.priors.registry import register_prior_loader
from rela_hf.priors.sources import is_timm_config, resolve_timm_registry_revision

__all__ = ["TimmPooledFeatures", "load_timm_prior"]


class TimmPooledFeatures:
    """timm: pooled pre-logits, ``forward_head(forward_features(x), pre_logits=True)``."""

    def __call__(self, model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        timm_model: Any = model  # forward_features/forward_head: timm's model API
        features = timm_model.forward_features(pixel_values)
        return timm_model.forward_head(features, pre_logits=True)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


@register_prior_loader("timm", claims=is_timm_config)
def load_timm_prior(request: PriorRequest) -> LoadedPrior:
    """A timm model (registry name, ``hf-hub:`` repo or ``local-dir:`` export) as a prior."""
    source, image_size, pretrained = request.source, request.image_size, request.pretrained
    location, revision = source.location, source.revision
    kwargs = dict(request.model_kwargs)
    if source.config is None and pretrained:  # timm registry name: pin the Hub weights, if any
        hub_id, revision = resolve_timm_registry_revision(location, source.revision)
        if hub_id is not None:
            overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
            overlay["hf_hub_id"] = f"{hub_id}@{revision}"
            kwargs["pretrained_cfg_overlay"] = overlay
    try:
        model = timm.create_model(location, pretrained=pretrained, **kwargs)
        pretrained_cfg: dict[str, Any] = dict(getattr(model, "pretrained_cfg", {}))
        native = tuple(pretrained_cfg.get("input_size", (3, 224, 224))[1:])
        if image_size and pretrained_cfg.get("fixed_input_size") and native != (image_size, image_size):
            # ViT-style models bake the input size into position embeddings: rebuild at the new
            # size (timm resamples the pretrained position embeddings while loading).
            model = timm.create_model(location, pretrained=pretrained, img_size=image_size, **kwargs)
    except FileNotFoundError as err:
        raise PriorNotFoundError(f"timm could not find the weights of {location!r}: {err}") from err
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise UnsupportedPriorError(
                f"{location!r}: timm {timm.__version__} does not know the architecture "
                f"({err}); upgrade timm or check the name."
            ) from err
        raise

    data_config = timm.data.resolve_model_data_config(model)
    if image_size:
        data_config["input_size"] = (3, image_size, image_size)
    embed = TimmPooledFeatures()
    if request.preprocessing == "official":
        size = image_size or int(data_config["input_size"][-1])
        return LoadedPrior(model, revision, official_preprocessing(size), official_transform(size), embed)
    description = {
        "mode": "prior",
        "input_size": list(data_config["input_size"]),
        "interpolation": data_config["interpolation"],
        "crop_pct": data_config["crop_pct"],
        "crop_mode": data_config["crop_mode"],
        "mean": list(data_config["mean"]),
        "std": list(data_config["std"]),
    }
    return LoadedPrior(model, revision, description, eval_transform(data_config), embed)
