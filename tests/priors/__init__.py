"""Tests of rela_hf.priors; shared helpers (hand-written references, tiny model configs)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import timm
import torch
import transformers

SHA = re.compile(r"[0-9a-f]{40}")


def timm_pooled(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The hand-written reference of a timm prior's embedding."""
    with torch.no_grad():
        return model.eval().forward_head(model.forward_features(pixels), pre_logits=True)


def save_timm_folder(model: torch.nn.Module, folder: Path) -> Path:
    """A timm Hub-format folder, with the transformers-compatibility fix of hf-conventions §2."""
    timm.models.save_for_hf(model, folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["model_args"].pop("num_classes", None)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def tiny_vit_config(**overrides) -> transformers.ViTConfig:
    kwargs = {
        "image_size": 32,
        "patch_size": 8,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 37,
    }
    return transformers.ViTConfig(**{**kwargs, **overrides})


def tiny_clip_config() -> transformers.CLIPConfig:
    tower = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    return transformers.CLIPConfig(
        text_config=dict(tower, vocab_size=99, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(tower, image_size=32, patch_size=8),
        projection_dim=16,
    )
