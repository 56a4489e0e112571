"""Publishing trained encoders: timm Hub format export, model cards, pushing.

A ReLA/BYOL run (ReLA: arXiv:2405.14669, BYOL: arXiv:2006.07733) produces a backbone that is
only useful once others can load it. This module writes it in timm's Hub format, which both
``timm.create_model("hf-hub:org/name", pretrained=True)`` and
``transformers.AutoModel.from_pretrained("org/name")`` (through ``TimmWrapperModel``) read:

- ``config.json``: ``architecture``, ``num_classes`` (0), ``num_features``, ``model_args`` and
  a ``pretrained_cfg`` carrying *our* provenance and the preprocessing used in training.
- ``model.safetensors``: the weights (never pickles).

Two traps of the pinned stack are handled here (see the team's hf-conventions notes, §1-§2):
timm records ``num_classes`` in ``model_args`` while transformers' ``TimmWrapperModel`` passes
``num_classes`` itself (``TypeError: got multiple values``), so the key is stripped from
``model_args``; and timm copies the provenance (tag, licence, paper ids, origin url) of the
architecture's *default* ImageNet weights into every export, so those keys are replaced.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

logger = logging.getLogger(__name__)

RELA_PAPER_ID = "arXiv:2405.14669"
BYOL_PAPER_ID = "arXiv:2006.07733"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
#: Files that make up an export; a folder holding only these may be replaced by a new export.
EXPORT_FILES = frozenset({CONFIG_NAME, WEIGHTS_NAME})
#: Provenance keys timm inherits from the architecture's default (ImageNet) pretrained cfg.
#: They describe weights we did not train, so an export never keeps them.
INHERITED_PROVENANCE_KEYS = (
    "tag", "license", "origin_url", "paper_ids", "paper_name", "description", "notes",
    "label_names", "label_descriptions", "hf_hub_id", "url", "file", "source",
)
#: Preprocessing keys of a timm data config that an export records.
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")

DEFAULT_PRETRAINED_CFG: dict[str, Any] = {
    "tag": "rela_byol",
    "license": "apache-2.0",
    "paper_ids": RELA_PAPER_ID,
    "paper_name": "Efficiency for Free: Ideal Data Are Transportable Representations",
    "description": "Backbone pretrained with ReLA-accelerated BYOL (rela-hf).",
}


class ExportError(RuntimeError):
    """An export could not be written or would not load back."""


def training_data_config(
    image_size: int,
    *,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    interpolation: str = "bilinear",
    crop_pct: float = 1.0,
    in_chans: int = 3,
) -> dict[str, Any]:
    """The timm data config of the spec's evaluation preprocessing at ``image_size``.

    Deterministic resize (shorter side) + centre crop to ``image_size`` and ImageNet
    normalisation, as in the official ReLA evaluation code. Pass the result as
    ``data_config=`` to :func:`export_backbone` so the export says how it was trained.
    """
    return {
        "input_size": (in_chans, int(image_size), int(image_size)),
        "interpolation": interpolation,
        "mean": tuple(float(m) for m in mean),
        "std": tuple(float(s) for s in std),
        "crop_pct": float(crop_pct),
        "crop_mode": "center",
    }


def _validate_data_config(data_config: Mapping[str, Any], in_chans: int) -> dict[str, Any]:
    unknown = set(data_config) - set(DATA_CONFIG_KEYS)
    if unknown:
        raise ValueError(
            f"data_config has unknown keys {sorted(unknown)}; expected a timm data config "
            f"with keys among {DATA_CONFIG_KEYS} (see rela_hf.hub.training_data_config)."
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
                    f"data_config[{key!r}] has {len(values)} values but the model takes "
                    f"{in_chans} input channels."
                )
            config[key] = values
    return config


def _check_backbone(model: nn.Module) -> None:
    if not hasattr(model, "pretrained_cfg") or "architecture" not in model.pretrained_cfg:
        raise TypeError(
            f"export_backbone expects a timm model (created with timm.create_model), got "
            f"{type(model).__name__} without a timm pretrained_cfg. Export the backbone "
            "itself, not the BYOL/ReLA wrapper around it."
        )
    if getattr(model, "num_classes", None) != 0:
        raise ValueError(
            f"export_backbone expects a backbone without classifier (num_classes=0), got "
            f"num_classes={getattr(model, 'num_classes', None)}. Call "
            "model.reset_classifier(0) on a copy, or create it with num_classes=0."
        )


def _model_in_chans(model: nn.Module) -> int:
    """Input channels as timm records them for the rebuild (``model_args['in_chans']``)."""
    from timm.models._hub import get_model_args

    in_chans = get_model_args(model).get("in_chans")
    return int(in_chans if in_chans is not None else model.pretrained_cfg["input_size"][0])


def _strip_num_classes_from_model_args(config_path: Path) -> None:
    """The timm 1.0.31 <-> transformers 5.24 fix: TimmWrapper passes num_classes itself."""
    config = json.loads(config_path.read_text())
    config.get("model_args", {}).pop("num_classes", None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


def _verify_reload(model: nn.Module, folder: Path, input_size: tuple[int, int, int]) -> None:
    """Rebuild the model from the export and check it computes the same features.

    A backbone modified after ``timm.create_model`` (a stem swapped by hand, a stride or a
    pooling changed) cannot be rebuilt from ``architecture`` + ``model_args``; a change of
    stride keeps every parameter shape, so names and shapes are compared *and* one forward
    pass on a fixed input. Catching it here beats publishing a checkpoint nobody can load.
    """
    import timm

    try:
        reloaded = timm.create_model(f"local-dir:{folder}", pretrained=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the context that matters
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
        data_config: the training preprocessing, e.g. ``training_data_config(32)``; without
            it the model's current data config is recorded.
        verify: rebuild the model from the export and check that it has the same parameters
            and computes the same features on a fixed input (catches hand-modified models).

    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.

    Examples:
        >>> backbone = timm.create_model("resnet18", num_classes=0)
        >>> export_backbone(backbone, "out/backbone", data_config=training_data_config(32),
        ...                 pretrained_cfg={"tag": "rela_byol_cifar10"})
    """
    from timm.models import save_for_hf

    _check_backbone(model)
    out_dir = Path(out_dir)
    in_chans = _model_in_chans(model)
    data_config = _validate_data_config(data_config or {}, in_chans)

    # Start from the architecture's cfg minus its provenance, then add ours.
    ours = dict(DEFAULT_PRETRAINED_CFG)
    ours.update(pretrained_cfg or {})
    source_cfg = dict(model.pretrained_cfg)
    for key in INHERITED_PROVENANCE_KEYS:
        source_cfg.pop(key, None)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    original_cfg = model.pretrained_cfg
    try:
        # save_for_hf reads model.pretrained_cfg; hand it the cleaned one for the duration.
        model.pretrained_cfg = source_cfg
        with torch.no_grad():
            save_for_hf(
                model,
                tmp_dir,
                model_config={"pretrained_cfg": ours},
                safe_serialization=True,
                data_config=data_config or None,
            )
        config_path = tmp_dir / CONFIG_NAME
        _strip_num_classes_from_model_args(config_path)
        _drop_unset_provenance(config_path, ours)
        if verify:
            input_size = read_export_config(tmp_dir)["pretrained_cfg"]["input_size"]
            _verify_reload(model, tmp_dir, tuple(input_size))
        _replace_dir_atomically(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    finally:
        model.pretrained_cfg = original_cfg
    logger.info("Exported %s backbone to %s", original_cfg.get("architecture"), out_dir)
    return out_dir


def _drop_unset_provenance(config_path: Path, ours: Mapping[str, Any]) -> None:
    """Remove provenance keys explicitly set to ``None`` by the caller (e.g. no licence)."""
    config = json.loads(config_path.read_text())
    cfg = config["pretrained_cfg"]
    for key, value in ours.items():
        if value is None:
            cfg.pop(key, None)
    config_path.write_text(json.dumps(config, indent=2) + "\n")


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
