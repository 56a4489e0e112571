"""Publishing trained encoders: timm Hub-format export, training curves, model card, push.

- ``export.py``: :func:`export_backbone` (``config.json`` + ``model.safetensors``, loads with timm
  ``hf-hub:`` and transformers ``AutoModel``), :func:`read_export_config`;
- ``history.py``: the run's logged metrics and their plot;
- ``model_card.py``: :func:`render_model_card` from ``model_cards/encoder.md``;
- ``push.py``: :func:`build_hub_folder`, :func:`push_encoder`, :func:`push_training_output`,
  :func:`push_training_state`; ``run_pusher.py``: :class:`RunPusher` (a training run's pushes at
  its saves, in the background, as the HF Trainer's ``hub_strategy``); ``resume.py``:
  :func:`download_training_state` (resume from the Hub).

Examples:
    >>> export_backbone(backbone, "out/backbone", data_config=official_data_config(32))  # doctest: +SKIP
    >>> push_training_output("out", "me/rela-byol-resnet18-cifar10")  # doctest: +SKIP
"""

from rela_hf.hub.export import (
    DEFAULT_PRETRAINED_CFG,
    ExportError,
    export_backbone,
    read_export_config,
)
from rela_hf.hub.history import plot_training_history, read_training_history
from rela_hf.hub.model_card import (
    compute_summary,
    eval_results_to_model_index,
    render_model_card,
)
from rela_hf.hub.push import (
    PushError,
    build_hub_folder,
    check_hub_folder,
    push_encoder,
    push_training_output,
    push_training_state,
)
from rela_hf.hub.resume import download_training_state
from rela_hf.hub.run_pusher import HUB_STRATEGIES, RunPusher

__all__ = [
    "DEFAULT_PRETRAINED_CFG",
    "HUB_STRATEGIES",
    "ExportError",
    "PushError",
    "RunPusher",
    "build_hub_folder",
    "check_hub_folder",
    "compute_summary",
    "download_training_state",
    "eval_results_to_model_index",
    "export_backbone",
    "plot_training_history",
    "push_encoder",
    "push_training_output",
    "push_training_state",
    "read_export_config",
    "read_training_history",
    "render_model_card",
]
