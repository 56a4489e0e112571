"""The transformers prior loader: any ``AutoModel`` that embeds images, CLIP's image tower.

Which embedding is taken (the spec's ReLA-D step 2):

- CLIP (``model_type`` ``clip``, or a ``CLIPVisionModelWithProjection``): only the vision tower and
  its projection are loaded; the embedding is the projected ``image_embeds`` (what
  ``CLIPModel.get_image_features`` returns).
- other dual encoders with ``get_image_features`` (SigLIP, ALIGN, ...): that method (the full
  model is loaded).
- any other ``AutoModel`` taking ``pixel_values``: ``pooler_output`` (flattened) when the model has
  one *and its weights came from the checkpoint*; otherwise the CLS token
  (``last_hidden_state[:, 0]``) for token sequences and the spatial mean for feature maps. The
  exception matters: ``ViTModel`` adds a ``tanh(Linear(CLS))`` pooler that checkpoints such as DINO
  ViTs do not contain, and a freshly initialised pooler would scramble the targets.

Models load in float32 (transformers 5 would otherwise keep a checkpoint's fp16); pass
``dtype=torch.bfloat16`` to ``load_prior`` to run in half precision. ``trust_remote_code`` stays
off unless asked for.
"""

from __future__ import annotations

import inspect
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import transformers
from torch import nn
from transformers import CONFIG_MAPPING, AutoConfig, AutoModel

from rela_hf.priors.image_processors import transformers_preprocessing
from rela_hf.priors.prior import (
    LoadedPrior,
    PriorNotFoundError,
    PriorRequest,
    PriorSource,
    UnsupportedPriorError,
)
from rela_hf.priors.registry import register_prior_loader
from rela_hf.priors.sources import is_timm_config

__all__ = ["TransformersPooledFeatures", "load_transformers_prior"]


@dataclass(frozen=True)
class TransformersPooledFeatures:
    """transformers: one pooled vector per image, chosen by ``pooling`` (see the module docstring).

    Attributes:
        pooling: ``image_features`` (``get_image_features``), ``image_embeds`` (CLIP vision tower
            with projection), ``pooler`` (``pooler_output``), ``cls`` (``last_hidden_state[:, 0]``)
            or ``mean`` (spatial mean of a ``[B, C, H, W]`` ``last_hidden_state``).
        forward_kwargs: extra keyword arguments of the forward call, e.g.
            ``interpolate_pos_encoding=True`` when a ViT runs at another input size.
    """

    pooling: str
    forward_kwargs: tuple[tuple[str, Any], ...] = ()

    def __call__(self, model: nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
        kwargs = dict(self.forward_kwargs)
        hf_model: Any = model  # a transformers PreTrainedModel
        if self.pooling == "image_features":
            out = hf_model.get_image_features(pixel_values=pixel_values, **kwargs)
            # transformers 5 returns a ModelOutput whose pooler_output is the projected embedding
            return out if isinstance(out, torch.Tensor) else out.pooler_output
        out = model(pixel_values=pixel_values, **kwargs)
        if self.pooling == "image_embeds":
            return out.image_embeds
        if self.pooling == "pooler":
            return out.pooler_output.flatten(1)
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        if self.pooling == "mean":
            return hidden.mean(dim=(2, 3))
        raise ValueError(f"Unknown pooling rule {self.pooling!r}.")


def _check_transformers_config(source: PriorSource, trust_remote_code: bool) -> None:
    """Reject what transformers would refuse or misload, with a message saying what to do."""
    config = source.config or {}
    model_type = config.get("model_type")
    if model_type is None and "pretrained_cfg" in config:
        return  # a timm export: transformers loads it as TimmWrapperModel (hf-conventions §2)
    if model_type is None:
        raise UnsupportedPriorError(
            f"{source.location!r}: config.json has neither 'model_type' (transformers) nor "
            "'architecture' (timm), so no library can load it."
        )
    if model_type not in CONFIG_MAPPING:
        if config.get("auto_map") and not trust_remote_code:
            raise UnsupportedPriorError(
                f"{source.location!r} (model_type={model_type!r}) needs custom code from its "
                "repository. Read that code, then pass trust_remote_code=True if you trust it."
            )
        if not config.get("auto_map"):
            raise UnsupportedPriorError(
                f"{source.location!r}: model_type {model_type!r} is unknown to transformers "
                f"{transformers.__version__}; upgrade transformers or use another prior."
            )


def _is_clip_vision_with_projection(config: Any) -> bool:
    return config.model_type == "clip" or (
        config.model_type == "clip_vision_model"
        and "CLIPVisionModelWithProjection" in (getattr(config, "architectures", None) or [])
    )


def _takes_no_pixels(model_or_class: Any) -> bool:
    return getattr(model_or_class, "main_input_name", "pixel_values") != "pixel_values"


def _load_transformers(
    source: PriorSource,
    *,
    pretrained: bool,
    trust_remote_code: bool,
    model_kwargs: dict[str, Any],
) -> tuple[nn.Module, Any, str | None]:
    """The model, its config, and the pooling rule forced by its type (None: decide by probing)."""
    _check_transformers_config(source, trust_remote_code)
    config: Any = AutoConfig.from_pretrained(
        source.location, revision=source.revision, trust_remote_code=trust_remote_code
    )
    # transformers 5 loads a checkpoint in its stored dtype ("auto"), fp16 for many CLIP
    # uploads; targets are float32, so load float32 unless the caller asks otherwise.
    model_kwargs = {"dtype": torch.float32, **model_kwargs}

    if _is_clip_vision_with_projection(config):
        # Load only the vision tower + projection. ⚠ CLIPVisionConfig carries projection_dim only
        # in the top-level CLIPConfig; without copying it, CLIPVisionModelWithProjection builds a
        # 512-wide projection and refuses (or reinitialises) the checkpoint's.
        if config.model_type == "clip":
            vision_config = transformers.CLIPVisionConfig(
                **{**config.vision_config.to_dict(), "projection_dim": config.projection_dim}
            )
        else:
            vision_config = config
        model_cls, config, pooling = (
            transformers.CLIPVisionModelWithProjection,
            vision_config,
            "image_embeds",
        )
    else:
        model_cls, pooling = None, None
        mapped: Any
        try:  # the AutoModel class, known before any weights are read
            mapped = transformers.MODEL_MAPPING[type(config)]
        except (KeyError, ValueError):
            mapped = None  # remote code: checked after instantiation below
        if isinstance(mapped, tuple):  # several classes registered: the first is AutoModel's
            mapped = next((cls for cls in mapped if cls is not None), None)
        if mapped is not None and hasattr(mapped, "get_image_features"):
            pooling = "image_features"  # a dual encoder (SigLIP, ALIGN, ...): its image side
        elif mapped is not None and _takes_no_pixels(mapped):
            raise UnsupportedPriorError(
                f"{source.location!r} is not an image model: {mapped.__name__} takes "
                f"{mapped.main_input_name!r}, not pixel_values. A ReLA prior must embed images."
            )

    missing: set[str] = set()
    model: Any
    try:
        if pretrained:
            loader: Any = model_cls or AutoModel
            model, info = loader.from_pretrained(
                source.location,
                config=config,
                output_loading_info=True,
                revision=source.revision,
                trust_remote_code=trust_remote_code,
                **model_kwargs,
            )
            missing = set(info.get("missing_keys", ()))
        else:
            dtype = model_kwargs.pop("dtype")
            if model_cls is not None:
                model = model_cls(config, **model_kwargs)
            else:
                model = AutoModel.from_config(config, trust_remote_code=trust_remote_code, **model_kwargs)
            model.to(dtype)
    except TypeError as err:
        if "num_classes" in str(err) and (source.config or {}).get("pretrained_cfg") is not None:
            raise UnsupportedPriorError(
                f"{source.location!r} is a timm export whose config.json lists num_classes in "
                "model_args, which transformers' TimmWrapper cannot load; load it with "
                "library='timm' or delete model_args.num_classes from config.json."
            ) from err
        raise
    except OSError as err:
        raise PriorNotFoundError(f"transformers could not load the weights of {source.location!r}: {err}") from err

    if pooling is None and hasattr(model, "get_image_features"):
        pooling = "image_features"
    if pooling is None and _takes_no_pixels(model):
        raise UnsupportedPriorError(
            f"{source.location!r} is not an image model: {type(model).__name__} takes "
            f"{model.main_input_name!r}, not pixel_values."
        )
    if pooling is None and any(key.startswith("pooler.") or ".pooler." in key for key in missing):
        pooling = "no_pooler"  # the pooler was freshly initialised: never use it
    untrained = sorted(key for key in missing if "pooler" not in key)
    if untrained:
        warnings.warn(
            f"{len(untrained)} weights of the prior {source.location!r} were not in the checkpoint "
            f"and are randomly initialised (e.g. {untrained[:3]}); its embeddings are partly "
            "random.",
            stacklevel=3,
        )
    return model, config, pooling


def _transformers_embed_fn(
    model: nn.Module,
    config: Any,
    pooling: str | None,
    input_size: tuple[int, int],
    device: torch.device,
) -> TransformersPooledFeatures:
    """Choose the pooling rule (probing one blank image where the output type decides) and the
    forward kwargs (position-embedding interpolation when the input size differs)."""
    hf_model: Any = model
    forward = hf_model.get_image_features if pooling == "image_features" else hf_model.forward
    # dual encoders (SigLIP, ALIGN, ...) keep the image size in their vision sub-config
    native = getattr(getattr(config, "vision_config", None) or config, "image_size", None)
    native = (native, native) if isinstance(native, int) else tuple(native) if native else None
    kwargs: tuple[tuple[str, Any], ...] = ()
    if native and native != input_size and "interpolate_pos_encoding" in inspect.signature(forward).parameters:
        kwargs = (("interpolate_pos_encoding", True),)
    if pooling in ("image_features", "image_embeds"):
        return TransformersPooledFeatures(pooling, kwargs)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    probe = torch.zeros(1, 3, *input_size, device=device, dtype=dtype)
    with torch.inference_mode():
        out = model(pixel_values=probe, **dict(kwargs))
    if pooling != "no_pooler" and getattr(out, "pooler_output", None) is not None:
        return TransformersPooledFeatures("pooler", kwargs)
    hidden = getattr(out, "last_hidden_state", None)
    if hidden is None:
        raise UnsupportedPriorError(
            f"{type(model).__name__} returns neither pooler_output nor last_hidden_state; "
            "cannot take an image embedding from it."
        )
    return TransformersPooledFeatures("cls" if hidden.ndim == 3 else "mean", kwargs)


def _any_config(config: dict[str, Any]) -> bool:
    """Asked by name, the loader tries any config (timm exports load through TimmWrapper) and
    says itself what is wrong with one it cannot read."""
    return True


@register_prior_loader("transformers", claims=lambda config: not is_timm_config(config), accepts=_any_config)
def load_transformers_prior(request: PriorRequest) -> LoadedPrior:
    """A transformers model (Hub repo id or ``save_pretrained`` folder) as a prior."""
    source = request.source
    model, config, pooling = _load_transformers(
        source,
        pretrained=request.pretrained,
        trust_remote_code=request.trust_remote_code,
        model_kwargs=request.model_kwargs,
    )
    description, transform = transformers_preprocessing(
        source, config, request.preprocessing, request.image_size, request.trust_remote_code
    )
    model.eval().to(request.device)
    embed_fn = _transformers_embed_fn(model, config, pooling, tuple(description["input_size"][1:]), request.device)
    return LoadedPrior(model, source.revision, description, transform, embed_fn)
