"""Student backbones: timm models as pooled-feature encoders, with an optional CIFAR stem.

:func:`create_backbone` returns a timm model with ``num_classes=0``: its forward gives pooled
features ``(B, num_features)``, the input of BYOL's projector and of ReLA's transfer head. It
takes a timm architecture name (``resnet18``, ``resnet50``, ``test_resnet``, any
``timm.list_models()`` name), a local timm export (``local-dir:DIR`` or a plain directory) or a
Hub repository in timm format (``hf-hub:org/name``).

CIFAR stem. For 32/64 px inputs the official ReLA code (arXiv:2405.14669), like most CIFAR
self-supervised benchmarks, replaces ResNet's 7x7 stride-2 stem and its max-pool with a 3x3
stride-1 convolution and no pooling, so 32 px images keep 4x4 maps before the global pool
instead of 1x1. timm's ``ResNet`` has no such argument, so this module registers timm
architectures ``<resnet>_cifar`` (``resnet18_cifar``, ``resnet50_cifar``, ... see
:data:`CIFAR_RESNETS`; others on demand with :func:`register_cifar_resnet`). An export of such a
model names that architecture in its ``config.json``, so plain timm can reload it with
``timm.create_model("local-dir:DIR", pretrained=True)`` **after** ``import rela_hf.backbones``
(which registers them); :func:`create_backbone` does this by itself.

Examples:
    >>> import torch
    >>> backbone = create_backbone("test_resnet", cifar_stem=True)
    >>> backbone(torch.randn(2, 3, 32, 32)).shape == (2, backbone.num_features)
    True
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import timm
from timm.models import (
    ResNet,
    build_model_with_cfg,
    generate_default_cfgs,
    get_pretrained_cfg,
    load_model_config_from_hf,
    model_entrypoint,
    register_model,
)
from torch import nn

from rela_hf.model_names import ModelNameError, parse_model_name
from rela_hf.preprocessing import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "CIFAR_RESNETS",
    "CIFAR_SUFFIX",
    "create_backbone",
    "register_cifar_resnet",
    "to_cifar_stem",
]

CIFAR_SUFFIX = "_cifar"
CIFAR_RESNETS = ("test_resnet", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
"""ResNets whose ``<name>_cifar`` variant is registered with timm when this module is imported."""

CIFAR_INPUT_SIZE = 32
# a ResNet stem downsamples twice: its (first) conv has stride 2, then a stride-2 max-pool
_STEM_STRIDE, _POOL_STRIDE = 2, 2

# timm's register_model reads the pretrained cfgs of an entrypoint from its module's
# ``default_cfgs``; register_cifar_resnet adds one entry per variant.
default_cfgs: dict[str, Any] = {}


def to_cifar_stem(model: ResNet) -> ResNet:
    """Turn a timm ResNet's stem into the CIFAR stem, in place: 3x3 stride-1 conv, no max-pool.

    A plain stem's 7x7 stride-2 ``conv1`` becomes a freshly initialised 3x3 stride-1 conv with
    the same channels; a deep stem (three 3x3 convs) keeps its convs and its first one gets
    stride 1. The max-pool becomes ``nn.Identity``. ``feature_info`` reductions are updated.

    Args:
        model: A timm ``ResNet`` (built without a replaced stem pool).

    Returns:
        The same model, for chaining.

    Examples:
        >>> import timm
        >>> model = to_cifar_stem(timm.create_model("resnet18", num_classes=0))
        >>> model.conv1.kernel_size, model.conv1.stride, type(model.maxpool).__name__
        ((3, 3), (1, 1), 'Identity')
    """
    if not isinstance(model, ResNet):
        raise TypeError(f"to_cifar_stem needs a timm ResNet, got {type(model).__name__}.")
    if not isinstance(model.maxpool, nn.MaxPool2d):
        raise TypeError(
            "to_cifar_stem: this ResNet's stem pool is not a max-pool (replace_stem_pool=True?); "
            "the CIFAR stem removes the stem pooling, so build the ResNet with its default pool."
        )
    if isinstance(model.conv1, nn.Conv2d):
        conv = model.conv1
        cifar_conv = nn.Conv2d(conv.in_channels, conv.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        model.add_module("conv1", cifar_conv)  # replaces the 7x7 stride-2 conv
    else:  # deep stem: Sequential(conv 3x3 s2, BN, act, conv, BN, act, conv)
        first = next(m for m in model.conv1.modules() if isinstance(m, nn.Conv2d))
        first.stride = (1, 1)
    model.add_module("maxpool", nn.Identity())
    for info in model.feature_info:
        divisor = _STEM_STRIDE if info["module"] == "act1" else _STEM_STRIDE * _POOL_STRIDE
        reduction: int = info["reduction"]  # type: ignore[assignment]  # timm types it as object
        info["reduction"] = max(1, reduction // divisor)
    return model


def _cifar_pretrained_cfg(base_name: str) -> dict[str, Any]:
    """The base architecture's cfg without provenance (no weights exist), sized for 32 px."""
    base = get_pretrained_cfg(base_name)
    if base is None:
        raise ValueError(f"timm has no pretrained cfg for {base_name!r}.")
    size = CIFAR_INPUT_SIZE // 8  # with the CIFAR stem only layer2-4 downsample: 32 px -> 4x4
    cfg = dataclasses.replace(
        base,
        url="",
        file=None,
        hf_hub_id=None,
        architecture=None,
        tag=None,
        input_size=(3, CIFAR_INPUT_SIZE, CIFAR_INPUT_SIZE),
        test_input_size=None,
        interpolation="bilinear",
        crop_pct=1.0,
        test_crop_pct=None,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pool_size=(size, size),
        test_pool_size=None,
        license=None,
        origin_url=None,
        paper_ids=None,
        paper_name=None,
        description=f"{base_name} with a CIFAR stem (3x3 stride-1 conv1, no max-pool); rela_hf",
        notes=None,
    )
    return dataclasses.asdict(cfg)


def _cifar_entrypoint(base_name: str) -> Callable[..., ResNet]:
    variant = base_name + CIFAR_SUFFIX
    base_entrypoint = model_entrypoint(base_name)

    def build_cifar_resnet(**kwargs: Any) -> ResNet:
        # the base builder knows the architecture (block, layers, widths); weights come later,
        # from build_model_with_cfg, into the converted (CIFAR-shaped) model
        model = base_entrypoint(pretrained=False, **kwargs)
        return to_cifar_stem(model)

    def entrypoint(pretrained: bool = False, **kwargs: Any) -> ResNet:
        return build_model_with_cfg(build_cifar_resnet, variant, pretrained, **kwargs)

    entrypoint.__name__ = entrypoint.__qualname__ = variant
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"timm ``{base_name}`` with the CIFAR stem (see rela_hf.backbones)."
    return entrypoint


def register_cifar_resnet(base_name: str) -> str:
    """Register ``<base_name>_cifar`` with timm (idempotent) and return that name.

    Needed before plain timm can create or reload a CIFAR-stem variant of a ResNet that is not
    in :data:`CIFAR_RESNETS`.

    Args:
        base_name: A timm ResNet architecture (``timm.list_models(module="resnet")``).

    Returns:
        The registered architecture name.

    Examples:
        >>> register_cifar_resnet("resnet26")
        'resnet26_cifar'
    """
    base_name = base_name.removesuffix(CIFAR_SUFFIX)
    variant = base_name + CIFAR_SUFFIX
    if timm.is_model(variant):
        return variant
    if base_name not in timm.list_models(module="resnet"):
        raise ValueError(
            f"The CIFAR stem is defined for timm ResNets only, and {base_name!r} is not one "
            "(timm.list_models(module='resnet') lists them). Use cifar_stem=False, or a ResNet "
            "such as resnet18 or resnet50."
        )
    default_cfgs.update(generate_default_cfgs({variant: _cifar_pretrained_cfg(base_name)}))
    register_model(_cifar_entrypoint(base_name))
    return variant


for _name in CIFAR_RESNETS:
    register_cifar_resnet(_name)


def _unknown_model_error(name: str) -> ValueError:
    candidates = timm.list_models()
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    close += [m for m in timm.list_models(f"*{name}*") if m not in close][: 10 - len(close)]
    hint = f" Close matches: {', '.join(close)}." if close else ""
    return ValueError(
        f"timm does not know the architecture {name!r}.{hint} See timm.list_models('*pattern*'), "
        "or pass a local export directory or 'hf-hub:org/name'."
    )


def _checkpoint_source(name_or_path: str) -> str | None:
    """The timm ``local-dir:``/``hf-hub:`` name of a checkpoint; None for an architecture name."""
    try:
        parsed = parse_model_name(name_or_path)
    except ModelNameError as error:
        raise FileNotFoundError(
            f"Backbone {name_or_path!r} is neither a timm architecture name nor an existing "
            "directory; for a Hub repository in timm format write 'hf-hub:org/name' "
            f"({error})."
        ) from error
    return None if parsed.kind == "registry" else parsed.timm_name


def _checkpoint_architecture(source: str) -> str:
    if source.startswith("local-dir:"):
        config_path = Path(source[len("local-dir:") :]) / "config.json"
        if not config_path.is_file():
            raise FileNotFoundError(
                f"{config_path} not found: a timm export folder holds config.json and "
                "model.safetensors (timm.models.save_for_hf / rela_hf.hub.export_backbone)."
            )
        config = json.loads(config_path.read_text())
        architecture = config.get("architecture")
        if architecture is None:
            architecture = config.get("pretrained_cfg", {}).get("architecture")
    else:
        _, architecture, _ = load_model_config_from_hf(source[len("hf-hub:") :])
    if not architecture:
        raise ValueError(f"The checkpoint {source!r} names no timm architecture in config.json.")
    return str(architecture)


def create_backbone(
    name_or_path: str,
    *,
    cifar_stem: bool = False,
    pretrained: bool = False,
    **model_kwargs: Any,
) -> nn.Module:
    """Create a timm backbone that returns pooled features (``num_classes=0``).

    Args:
        name_or_path: A timm architecture name (``"resnet18"``, ``"test_resnet"``, optionally
            with a pretrained tag ``"resnet50.a1_in1k"``), a timm export directory (plain path
            or ``"local-dir:DIR"``) or ``"hf-hub:org/name"``. Checkpoint sources always load
            their weights.
        cifar_stem: Replace a ResNet's stem by the CIFAR stem (3x3 stride-1 conv, no
            max-pool), as the official ReLA code does for 32/64 px inputs. Creates the
            registered ``<name>_cifar`` architecture. ResNets only.
        pretrained: Load timm's pretrained weights for an architecture name.
        **model_kwargs: Passed to ``timm.create_model`` and recorded in the export's
            ``model_args`` (e.g. ``channels=(16, 32, 64, 128), stem_width=16`` for a reduced
            ResNet), so the export reloads with plain timm.

    Returns:
        The timm model; ``model.num_features`` is the feature width.

    Raises:
        ValueError: Unknown architecture (with close matches), ``cifar_stem`` on a non-ResNet
            or with pretrained weights, or ``num_classes`` other than 0.
        FileNotFoundError: A path that does not exist or holds no ``config.json``.

    Examples:
        >>> create_backbone("resnet18").num_features
        512
        >>> create_backbone("resnet18", cifar_stem=True).pretrained_cfg["architecture"]
        'resnet18_cifar'
    """
    if model_kwargs.get("num_classes", 0) != 0:
        raise ValueError(
            "create_backbone always builds a feature extractor (num_classes=0); got "
            f"num_classes={model_kwargs['num_classes']}. Put classifiers on top of the features."
        )
    model_kwargs["num_classes"] = 0
    source = _checkpoint_source(name_or_path)
    if source is not None:
        architecture = _checkpoint_architecture(source)
        if architecture.endswith(CIFAR_SUFFIX):
            register_cifar_resnet(architecture)  # so that exports of any ResNet variant reload
        elif cifar_stem:
            raise ValueError(
                f"The checkpoint {name_or_path!r} is a {architecture!r} with the standard stem; "
                "cifar_stem=True only applies when creating a backbone from an architecture name."
            )
        return timm.create_model(source, pretrained=True, **model_kwargs)

    architecture, _, tag = name_or_path.partition(".")
    if not timm.is_model(architecture):
        raise _unknown_model_error(architecture)
    if cifar_stem:
        if pretrained:
            raise ValueError(
                "No pretrained weights exist for the CIFAR stem (its 3x3 conv1 replaces the 7x7 "
                "one): use cifar_stem=True with pretrained=False, or a pretrained standard stem."
            )
        if tag:
            raise ValueError(f"cifar_stem=True takes an architecture name without a tag, got {name_or_path!r}.")
        name_or_path = register_cifar_resnet(architecture)
    return timm.create_model(name_or_path, pretrained=pretrained, **model_kwargs)
