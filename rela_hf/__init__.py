"""rela-hf: ReLA-accelerated self-supervised pretraining for the Hugging Face ecosystem.

ReLA (Sun, Jiang & Lin, "Efficiency for Free: Ideal Data Are Transportable Representations",
NeurIPS 2024, arXiv:2405.14669) pairs every training image with a fixed target vector made by a
public pretrained *prior* model, lets the encoder regress onto those targets first, then switches
to a self-supervised method (BYOL, DINO, SimCLR). The public API is imported lazily so that
``import rela_hf`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.3.0.dev0"

# public name -> module that defines it
_LAZY = {
    "Prior": "priors",
    "load_prior": "priors",
    "PCAWhitening": "whitening",
    "add_rela_targets": "targets",
    "rela_targets_info": "targets",
    "load_rela_targets_info": "targets",
    "whiten_new_images": "targets",
    "attach_rela_targets": "targets",
    "save_rela_dataset": "targets",
    "push_rela_dataset": "targets",
    "rela_view_transform": "views",
    "byol_view_transforms": "views",
    "TwoViews": "views",
    "eval_transform": "preprocessing",
    "official_data_config": "preprocessing",
    "parse_model_name": "model_names",
    "ProjectionHead": "heads",
    "byol_projector": "methods.byol",
    "byol_predictor": "methods.byol",
    "byol_loss": "methods.byol",
    "dino_view_transforms": "methods.dino",
    "DINOLoss": "methods.dino",
    "nt_xent_loss": "methods.simclr",
    "SSLMethod": "methods",
    "build_method": "methods",
    "register_method": "methods",
    "MultiView": "views",
    "cosine_momentum": "momentum",
    "make_target_network": "momentum",
    "update_momentum": "momentum",
    "TransferHead": "rela",
    "rela_loss": "rela",
    "AdaptiveSwitch": "switch",
    "StaticSwitch": "switch",
    "build_switch": "switch",
    "create_backbone": "backbones",
    "DataRatioSampler": "data",
    "load_image_dataset": "data",
    "extract_features": "evaluation",
    "evaluate_encoder": "evaluation",
    "knn_accuracy": "evaluation",
    "linear_probe": "evaluation",
    "export_backbone": "hub",
    "push_encoder": "hub",
    "render_model_card": "hub",
    "RunLayout": "run_layout",
    "TrainingSummary": "run_layout",
    "ReLABYOL": "model",
    "ReLAStudent": "model",
}

__all__ = ["__version__"]
__all__ += list(_LAZY)  # the lazy names


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, name)
    raise AttributeError(f"module 'rela_hf' has no attribute {name!r}")
