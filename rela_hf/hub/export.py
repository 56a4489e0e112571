"""Exporting a trained backbone in timm's Hub format (``config.json`` + ``model.safetensors``).

Both ``timm.create_model("hf-hub:org/name", pretrained=True)`` and
``transformers.AutoModel.from_pretrained("org/name")`` (through ``TimmWrapperModel``) read the
export. Two traps of the pinned stack are handled here: timm records ``num_classes`` in
``model_args`` while transformers' ``TimmWrapperModel`` passes ``num_classes`` itself
(``TypeError: got multiple values``), so the key is stripped from ``model_args``; and timm copies
the provenance (tag, licence, paper ids, origin url) of the architecture's *default* ImageNet
weights into every export, so those keys are replaced by ours. The export is rebuilt and checked
to compute the same features before it is moved into place.

Usage (a trained backbone; not a doctest)::

    export_backbone(backbone, "out/backbone", data_config=official_data_config(32))
"""

from __future__ import annotations

import copy
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from timm.models import model_entrypoint, save_for_hf
from timm.models._hub import get_model_args
from torch import nn

from rela_hf.preprocessing import DATA_CONFIG_KEYS

logger = logging.getLogger(__name__)

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_PRETRAINED_CFG",
    "WEIGHTS_NAME",
    "ExportError",
    "export_backbone",
    "is_timm_native",
    "read_export_config",
]

RELA_PAPER_ID = "arXiv:2405.14669"

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Files that make up an export; a folder holding only these may be replaced by a new export.
EXPORT_FILES = frozenset({CONFIG_NAME, WEIGHTS_NAME})
#: Provenance keys timm inherits from the architecture's default (ImageNet) pretrained cfg.
#: They describe weights we did not train, so an export never keeps them.
INHERITED_PROVENANCE_KEYS = (
    "tag",
    "license",
    "origin_url",
    "paper_ids",
    "paper_name",
    "description",
    "notes",
    "label_names",
    "label_descriptions",
    "hf_hub_id",
    "url",
    "file",
    "source",
)

DEFAULT_PRETRAINED_CFG: dict[str, Any] = {
    "tag": "rela_byol",
    "license": "apache-2.0",
    "paper_ids": RELA_PAPER_ID,
    "paper_name": "Efficiency for Free: Ideal Data Are Transportable Representations",
    "description": "Backbone pretrained with ReLA-accelerated self-supervised learning (rela-hf).",
}


class ExportError(RuntimeError):
    """An export could not be written or would not load back."""


def _validate_data_config(data_config: Mapping[str, Any], in_chans: int) -> dict[str, Any]:
    unknown = set(data_config) - set(DATA_CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"data_config has unknown keys {sorted(unknown)}; expected a timm data config "
            f"with keys among {DATA_CONFIG_KEYS} (see rela_hf.preprocessing.official_data_config)."
        )
    config = dict(data_config)
    if "input_size" in config:
        size = tuple(int(v) for v in config["input_size"])
        if len(size) != 3 or size[0] != in_chans:
            raise ValueError(
                f"data_config['input_size'] must be (channels, height, width) with "
                f"channels={in_chans} (the model's in_chans), got {config['input_size']!r}."
            )
        config["input_size"] = size
    for key in ("mean", "std"):
        if key in config:
            values = tuple(float(v) for v in config[key])
            if len(values) != in_chans:
                raise ValueError(
                    f"data_config[{key!r}] has {len(values)} values but the model takes {in_chans} input channels."
                )
            config[key] = values
    return config


def _pretrained_cfg_of(model: nn.Module) -> dict[str, Any]:
    """A timm model's ``pretrained_cfg`` (``{}`` for other modules)."""
    cfg = getattr(model, "pretrained_cfg", None)
    return dict(cfg) if isinstance(cfg, Mapping) else {}


def _check_backbone(model: nn.Module) -> None:
    if "architecture" not in _pretrained_cfg_of(model):
        raise TypeError(
            f"export_backbone expects a timm model (created with timm.create_model), got "
            f"{type(model).__name__} without a timm pretrained_cfg. Export the backbone "
            "itself, not the ReLA student (method heads, teacher) around it."
        )
    if getattr(model, "num_classes", None) != 0:
        raise ValueError(
            f"export_backbone expects a backbone without classifier (num_classes=0), got "
            f"num_classes={getattr(model, 'num_classes', None)}. Call "
            "model.reset_classifier(0) on a copy, or create it with num_classes=0."
        )


def is_timm_native(architecture: str) -> bool:
    """Whether timm itself defines ``architecture``, so that plain clients can build an export.

    ``timm.create_model("hf-hub:...")``, transformers' ``TimmWrapperModel`` (``AutoModel``,
    ``pipeline``) and the Hub's timm snippet, widget and inference endpoints rebuild a model from
    ``config.json``'s ``architecture`` in timm's registry. An architecture that another package
    registers there (rela_hf.backbones' ``*_cifar`` ResNets) exists only in processes that
    imported that package first.

    Examples:
        >>> is_timm_native("resnet18")
        True
        >>> import rela_hf.backbones
        >>> is_timm_native("resnet18_cifar")
        False
    """
    return timm.is_model(architecture) and model_entrypoint(architecture).__module__.startswith("timm.")


def _warn_unless_timm_native(architecture: str) -> None:
    """Warn before writing an export that only processes importing its registrar can load."""
    if is_timm_native(architecture):
        return
    registrar = model_entrypoint(architecture).__module__ if timm.is_model(architecture) else "?"
    warnings.warn(
        f"Exporting architecture {architecture!r}, which timm does not define ({registrar} "
        "registers it): plain timm.create_model('hf-hub:...'), transformers.AutoModel, "
        "pipeline('image-feature-extraction') and the Hub's timm widget and endpoints cannot "
        f"build it; users must `import {registrar.split('.')[0]}` first. Publish a timm "
        "architecture instead (CIFAR-sized images: --backbone resnet18 without --cifar_stem "
        "at --image_size 128 keeps the CIFAR stem's stage resolutions).",
        UserWarning,
        stacklevel=3,
    )


def _model_in_chans(model: nn.Module) -> int:
    """Input channels as timm records them for the rebuild (``model_args['in_chans']``)."""
    in_chans = get_model_args(model).get("in_chans")
    return int(in_chans if in_chans is not None else _pretrained_cfg_of(model)["input_size"][0])


def _finalize_config(config_path: Path, ours: Mapping[str, Any]) -> None:
    """Fix what ``save_for_hf`` writes: the TimmWrapper incompatibility and the provenance.

    - timm 1.0.31 records ``num_classes`` in ``model_args`` while transformers 5.24's
      ``TimmWrapperModel`` passes ``num_classes`` itself (``TypeError: multiple values``):
      drop it from ``model_args`` (the root ``num_classes`` stays).
    - timm merges our ``pretrained_cfg`` over the architecture's *default* one, whose
      provenance (tag, licence, paper, origin url...) describes weights we did not train:
      drop every provenance key, then set ours (a ``None`` value leaves the key out).
    """
    config = json.loads(config_path.read_text())
    config.get("model_args", {}).pop("num_classes", None)
    cfg = config["pretrained_cfg"]
    for key in INHERITED_PROVENANCE_KEYS:
        cfg.pop(key, None)
    cfg.update({key: value for key, value in ours.items() if value is not None})
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def _verify_reload(model: nn.Module, folder: Path, input_size: tuple[int, int, int]) -> None:
    """Rebuild the model from the export and check it computes the same features.

    A backbone modified after ``timm.create_model`` (a stem swapped by hand, a stride or a
    pooling changed) cannot be rebuilt from ``architecture`` + ``model_args``; a change of
    stride keeps every parameter shape, so names and shapes are compared *and* one forward
    pass on a fixed input. Catching it here beats publishing a checkpoint nobody can load.
    """
    try:
        reloaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    except Exception as error:
        raise ExportError(
            f"The export of {type(model).__name__} does not load back with timm "
            f"(create_model('local-dir:...', pretrained=True)): {error}. Is the backbone "
            "expressible as timm architecture + model_args (no modules replaced by hand)?"
        ) from error
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in reloaded.state_dict().items()}
    hint = (
        "The backbone was modified after timm.create_model, so config.json cannot describe "
        "it; build it from timm model_args or a registered timm architecture instead."
    )
    if expected != got:
        missing = sorted(set(expected) - set(got))[:5]
        extra = sorted(set(got) - set(expected))[:5]
        changed = sorted(k for k in set(expected) & set(got) if expected[k] != got[k])[:5]
        raise ExportError(
            f"timm rebuilds {type(reloaded).__name__} from the export, but its parameters "
            f"differ from the model's (missing {missing}, unexpected {extra}, shape changed "
            f"{changed}). {hint}"
        )
    parameter = next(model.parameters())
    probe = torch.randn((2, *input_size), generator=torch.Generator().manual_seed(0))
    probe = probe.to(device=parameter.device, dtype=parameter.dtype)
    reloaded.to(device=parameter.device, dtype=parameter.dtype).eval()
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            ours, theirs = model(probe), reloaded(probe)
    finally:
        model.train(was_training)
    if not bool(torch.isfinite(ours).all()):
        # finite weights can still be too large to compute with: a diverged run (e.g. a learning
        # rate far too high) must not be published as if the reload were at fault.
        raise ExportError(
            "The backbone computes non-finite features (NaN or inf) on a probe batch: its weights "
            "have diverged, so it is not exported. Lower --learning_rate or clip with "
            "--max_grad_norm and resume an earlier checkpoint, or start over."
        )
    if ours.shape != theirs.shape or not torch.allclose(ours, theirs, rtol=1e-4, atol=1e-5):
        raise ExportError(
            f"timm rebuilds {type(reloaded).__name__} from the export with the same parameters, "
            f"but it computes different features (shapes {tuple(ours.shape)} vs "
            f"{tuple(theirs.shape)}). {hint}"
        )


def _replace_dir_atomically(tmp_dir: Path, out_dir: Path) -> None:
    """Move a finished export into place; a previous export there is replaced, nothing else."""
    if out_dir.exists():
        if not out_dir.is_dir():
            raise FileExistsError(f"{out_dir} exists and is not a directory.")
        leftovers = {p.name for p in out_dir.iterdir()} - EXPORT_FILES
        if leftovers:
            raise FileExistsError(
                f"{out_dir} already holds files that are not part of an export "
                f"({sorted(leftovers)[:5]}); choose an empty or new directory."
            )
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
        tmp_dir.rename(out_dir)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp_dir.rename(out_dir)


def export_backbone(
    model: nn.Module,
    out_dir: str | Path,
    *,
    pretrained_cfg: dict[str, Any] | None = None,
    data_config: dict[str, Any] | None = None,
    verify: bool = True,
) -> Path:
    """Write a timm backbone (``num_classes=0``) in timm's Hub format, atomically.

    The folder holds ``config.json`` and ``model.safetensors`` only and loads with
    ``timm.create_model("local-dir:<out_dir>", pretrained=True)`` (``hf-hub:`` once pushed),
    ``transformers.AutoModel.from_pretrained(out_dir)`` and ``AutoImageProcessor`` with
    identical features.

    The export's ``pretrained_cfg`` never keeps the provenance timm inherits from the
    architecture's default ImageNet weights; it records ours (``DEFAULT_PRETRAINED_CFG``:
    tag ``rela_byol``, licence, paper id arXiv:2405.14669) updated with ``pretrained_cfg``,
    and the preprocessing given as ``data_config`` (input size, mean/std, interpolation,
    crop). The files are written to a temporary sibling folder, checked to load back, then
    renamed into place, so ``out_dir`` is never half written.

    Args:
        model: a timm model created with ``num_classes=0`` (the student backbone, unwrapped
            from Accelerate/DDP, in any train/eval mode; its weights are copied to CPU).
        out_dir: the export folder. If it exists it must be empty or a previous export.
        pretrained_cfg: provenance overrides, e.g. ``{"tag": "rela_byol_cifar10"}``.
        data_config: the training preprocessing, e.g. ``official_data_config(32)``; without
            it the model's current data config is recorded.
        verify: rebuild the model from the export and check that it has the same parameters
            and computes the same features on a fixed input (catches hand-modified models).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Warns:
        UserWarning: the architecture is not timm's own (:func:`is_timm_native` is false, e.g.
            a ``--cifar_stem`` ResNet): the export loads only where rela_hf was imported, so
            plain timm/transformers users and the Hub's widgets cannot load it.

    Examples:
        >>> import tempfile, timm
        >>> from rela_hf.preprocessing import official_data_config
        >>> backbone = timm.create_model("test_resnet", num_classes=0)
        >>> folder = export_backbone(backbone, tempfile.mkdtemp() + "/backbone",
        ...                          data_config=official_data_config(32),
        ...                          pretrained_cfg={"tag": "rela_byol_cifar10"})
        >>> sorted(path.name for path in folder.iterdir())
        ['config.json', 'model.safetensors']
        >>> read_export_config(folder)["pretrained_cfg"]["input_size"]
        [3, 32, 32]
    """
    _check_backbone(model)
    _warn_unless_timm_native(_pretrained_cfg_of(model)["architecture"])
    out_dir = Path(out_dir)
    in_chans = _model_in_chans(model)
    data_config = _validate_data_config(data_config or {}, in_chans)

    ours = {**DEFAULT_PRETRAINED_CFG, **(pretrained_cfg or {})}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        with torch.no_grad():
            # safetensors refuses non-contiguous tensors: a channels_last model (the trainer's
            # --channels_last) is saved through a standard-layout copy, the model is untouched
            channels_last = any(not p.is_contiguous() for p in model.state_dict().values())
            save_for_hf(
                copy.deepcopy(model).to(memory_format=torch.contiguous_format) if channels_last else model,
                str(tmp_dir),
                model_config={"pretrained_cfg": {k: v for k, v in ours.items() if v is not None}},
                safe_serialization=True,
                data_config=data_config or None,
            )
        _finalize_config(tmp_dir / CONFIG_NAME, ours)
        if verify:
            input_size = read_export_config(tmp_dir)["pretrained_cfg"]["input_size"]
            _verify_reload(model, tmp_dir, tuple(input_size))
        _replace_dir_atomically(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    logger.info("Exported %s backbone to %s", _pretrained_cfg_of(model)["architecture"], out_dir)
    return out_dir


def read_export_config(folder: str | Path) -> dict[str, Any]:
    """Read and sanity-check the ``config.json`` of a timm-format export."""
    folder = Path(folder)
    config_path = folder / CONFIG_NAME
    if not config_path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a timm-format export: {CONFIG_NAME} is missing "
            "(write one with rela_hf.hub.export_backbone)."
        )
    config = json.loads(config_path.read_text())
    for key in ("architecture", "pretrained_cfg"):
        if key not in config:
            raise ValueError(
                f"{config_path} has no {key!r}: it is not a timm-format config, so neither timm "
                "nor transformers' TimmWrapper would recognise it."
            )
    if "num_classes" in config.get("model_args", {}):
        raise ValueError(
            f"{config_path} lists num_classes in model_args, which makes "
            "transformers.AutoModel fail (TypeError: multiple values for 'num_classes'). "
            "Re-export with rela_hf.hub.export_backbone."
        )
    return config
