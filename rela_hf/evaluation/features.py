"""Frozen features of an encoder: loading it, its preprocessing, and one pass over a dataset.

The encoder is a timm backbone (Hub id, local export, a training run's folder, or a module); its
deterministic preprocessing is its own ``pretrained_cfg`` (for rela-hf exports, the training
preprocessing) or the official one; :func:`extract_features` embeds a whole dataset once, correct
under Accelerate with any number of processes (``gather_for_metrics``).

Usage (an encoder on the Hub; not a doctest)::

    model = load_encoder("org/rela-byol-resnet18-cifar10")
    transform = eval_transform(encoder_data_config(model))
    train_x, train_y = extract_features(model, train_ds, transform)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import timm
import torch
from accelerate.data_loader import prepare_data_loader
from timm.data import resolve_data_config
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

import rela_hf.backbones  # noqa: F401  registers rela-hf's timm architectures (*_cifar ResNets)
from rela_hf.model_names import ModelNameError, parse_model_name
from rela_hf.preprocessing import official_data_config
from rela_hf.run_layout import RunLayout

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["encoder_data_config", "extract_features", "load_encoder"]


def load_encoder(encoder: str | os.PathLike | nn.Module, *, revision: str | None = None) -> nn.Module:
    """A frozen-feature encoder from a Hub id, a local timm-format folder or a module.

    Args:
        encoder: an ``nn.Module`` (returned as is); a folder written by
            :func:`rela_hf.hub.export_backbone` (``config.json`` + ``model.safetensors``) or a
            training run's ``output_dir`` holding one in ``backbone/``; a
            Hub repo id ``"org/name"`` in timm format; or an explicit timm name
            ``"hf-hub:org/name"`` / ``"local-dir:/path"``.
        revision: branch, tag or commit of a Hub repo (timm's ``@revision`` suffix).

    Returns:
        The model in eval mode, its classifier removed (``num_classes=0``), on CPU.
    """
    if isinstance(encoder, nn.Module):
        return encoder
    name = os.fspath(encoder)
    cannot_tell = (
        f"Cannot tell what encoder {name!r} is: expected a Hub repo id 'org/name', a local "
        "timm-format folder, or 'hf-hub:...'/'local-dir:...'."
    )
    try:
        parsed = parse_model_name(name)
    except ModelNameError as error:
        raise ValueError(f"{cannot_tell} ({error})") from error
    if parsed.kind == "registry":
        raise ValueError(cannot_tell)
    if revision is not None:
        if parsed.kind != "hub":
            raise ValueError(f"revision={revision!r} only applies to Hub encoders, not {name!r}.")
        if parsed.revision is not None:
            raise ValueError(f"{name!r} already names a revision; do not pass revision= too.")
        parsed = dataclasses.replace(parsed, revision=revision)
    if parsed.kind == "folder" and not parsed.timm_prefixed:
        folder = RunLayout(parsed.path).backbone_dir
        if not (parsed.path / "config.json").is_file() and (folder / "config.json").is_file():
            parsed = dataclasses.replace(parsed, id=str(folder))  # a run's output_dir: its export
        if not (parsed.path / "config.json").is_file():
            raise FileNotFoundError(
                f"{name} is a folder without config.json, so it is not a timm-format export "
                "(nor a training run's output_dir with a backbone/ export); write one with "
                "rela_hf.hub.export_backbone."
            )
    model = timm.create_model(parsed.timm_name, pretrained=True, num_classes=0)
    return model.eval()


def encoder_data_config(
    model: nn.Module,
    *,
    preprocessing: str = "encoder",
    image_size: int | None = None,
) -> dict[str, Any]:
    """The deterministic evaluation preprocessing of an encoder, as a timm data config.

    Args:
        model: the encoder; a timm model's ``pretrained_cfg`` gives its own preprocessing.
        preprocessing: ``"encoder"`` (default): the encoder's own ``pretrained_cfg`` (input
            size, interpolation, crop, mean/std), which for a rela-hf export is the training
            preprocessing; ``"official"``: the official ReLA evaluation: shorter side resized to
            ``image_size``, centre crop, ImageNet mean/std.
        image_size: override the input size (required for ``"official"`` with a non-timm
            module).
    """
    cfg = getattr(model, "pretrained_cfg", None) or {}
    if preprocessing == "official":
        size = image_size or (cfg.get("input_size") or (None, None, None))[-1]
        if size is None:
            raise ValueError("preprocessing='official' needs image_size= for a non-timm encoder.")
        return official_data_config(int(size))
    if preprocessing != "encoder":
        raise ValueError(f"preprocessing must be 'encoder' or 'official', got {preprocessing!r}.")
    if not cfg:
        raise ValueError(
            f"{type(model).__name__} has no timm pretrained_cfg to take its preprocessing from; "
            "use preprocessing='official' with image_size=, or pass your own transform."
        )
    config = resolve_data_config(model=model)
    if image_size is not None:
        config["input_size"] = (config["input_size"][0], int(image_size), int(image_size))
    return config


class _TransformedImages(Dataset):
    """Index a (Hugging Face or list-of-dicts) dataset into ``(pixels, label)`` pairs."""

    def __init__(self, dataset: Any, transform: Callable, image_column: str, label_column: str):
        self.dataset, self.transform = dataset, transform
        self.image_column, self.label_column = image_column, label_column

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor, int]:
        row = self.dataset[index]
        return self.transform(row[self.image_column]), int(row[self.label_column])


def _check_columns(dataset: Any, image_column: str, label_column: str) -> None:
    columns = getattr(dataset, "column_names", None)
    if columns is None:
        return
    missing = [c for c in (image_column, label_column) if c not in columns]
    if missing:
        raise KeyError(
            f"The dataset has no column(s) {missing} (it has {columns}); pass "
            "image_column=/label_column= to name the image and label columns."
        )


def _pooled_features(output: Any) -> Tensor:
    """The pooled ``(B, D)`` features of a timm backbone or a transformers model output."""
    if isinstance(output, Tensor):
        features = output
    elif getattr(output, "pooler_output", None) is not None:
        features = output.pooler_output
    else:
        raise TypeError(
            f"The encoder returned {type(output).__name__}; expected pooled features (a tensor, "
            "as a timm backbone with num_classes=0 gives, or an output with pooler_output)."
        )
    if features.ndim != 2:
        raise ValueError(
            f"The encoder returned features of shape {tuple(features.shape)}; expected (batch, "
            "dim). Create it with num_classes=0 and global pooling (a timm backbone)."
        )
    return features


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset: Any,
    transform: Callable[[Any], Tensor],
    *,
    batch_size: int = 256,
    accelerator: Accelerator | None = None,
    image_column: str = "image",
    label_column: str = "label",
    num_workers: int = 0,
    device: str | torch.device | None = None,
) -> tuple[Tensor, Tensor]:
    """Frozen features and labels of a whole dataset, in dataset order.

    The model runs in eval mode without gradients (its train/eval mode is restored after).
    Under Accelerate each process embeds its shard of the batches and the results are gathered
    with ``accelerator.gather_for_metrics``, which drops the samples repeated to even out the
    last batch, so every process returns exactly ``len(dataset)`` rows, in the same order as a
    single process would. (The loader is prepared with ``accelerate``'s
    ``prepare_data_loader`` rather than ``accelerator.prepare``, so evaluation loaders never
    join the training state saved by ``accelerator.save_state``.)

    Args:
        model: the encoder (a timm backbone or anything returning pooled ``(B, D)`` features
            or an output with ``pooler_output``); a DDP-wrapped model is unwrapped.
        dataset: a map-style dataset of rows with an image and an integer label.
        transform: PIL image -> tensor (e.g. :func:`rela_hf.preprocessing.eval_transform`).
        batch_size: images per forward pass, per process.
        accelerator: gathers across processes; ``None`` for a single process.
        image_column, label_column: the columns holding the image and the label.
        num_workers: DataLoader workers.
        device: where to run the model without an accelerator (default: its parameters' device).

    Returns:
        ``(features, labels)``: float32 ``(N, D)`` and int64 ``(N,)`` tensors on CPU.
    """
    _check_columns(dataset, image_column, label_column)
    if len(dataset) == 0:
        raise ValueError("extract_features got an empty dataset.")
    if accelerator is not None:
        model = accelerator.unwrap_model(model)
        device = accelerator.device
    elif device is None:
        device = next(model.parameters()).device
    model.to(device)
    loader: Any = DataLoader(
        _TransformedImages(dataset, transform, image_column, label_column),
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
    )
    if accelerator is not None:
        loader = prepare_data_loader(
            loader,
            accelerator.device,
            num_processes=accelerator.num_processes,
            process_index=accelerator.process_index,
            put_on_device=True,
            even_batches=True,
        )
    was_training = model.training
    model.eval()
    all_features, all_labels = [], []
    try:
        for pixels, labels in loader:
            pixels, labels = pixels.to(device), labels.to(device)
            features = _pooled_features(model(pixels)).float()
            if accelerator is not None:
                features, labels = accelerator.gather_for_metrics((features, labels))
            all_features.append(features.cpu())
            all_labels.append(labels.cpu())
    finally:
        model.train(was_training)
    return torch.cat(all_features), torch.cat(all_labels).long()
