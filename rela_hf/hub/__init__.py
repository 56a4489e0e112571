"""Publishing trained encoders: timm Hub-format export, training curves, model card, push.

- ``export.py``: :func:`export_backbone` (``config.json`` + ``model.safetensors``, loads with timm
  ``hf-hub:`` and transformers ``AutoModel``), :func:`read_export_config`;
- ``history.py``: the run's logged metrics and their plot;
- ``model_card.py``: :func:`render_model_card` from ``model_cards/encoder.md``;
- ``push.py``: :func:`build_hub_folder`, :func:`push_encoder`, :func:`push_training_output`,
  :func:`push_training_state`; ``run_pusher.py``: :class:`RunPusher` (a training run's pushes at
  its saves, in the background, as the HF Trainer's ``hub_strategy``); ``resume.py``:
  :func:`download_training_state` (resume from the Hub).

Usage (a trained backbone and the Hub; not a doctest)::

    export_backbone(backbone, "out/backbone", data_config=official_data_config(32))
    push_training_output("out", "me/rela-byol-resnet18-cifar10")
"""

from typing import TYPE_CHECKING

from rela_hf._deprecation import Moved, moved_names
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


# Names that lived here in rela-hf 0.1: reading one warns (FutureWarning) and forwards to its
# new place until 0.4 (rela_hf/_deprecation.py; CHANGELOG.md lists them).
if TYPE_CHECKING:  # 0.1's name, visible to type checkers and IDEs; at run time __getattr__ warns
    from rela_hf.preprocessing import official_data_config as training_data_config  # noqa: F401

__getattr__ = moved_names(
    __name__,
    {
        "BYOL_CITATION": "rela_hf.methods.byol:BYOL_CITATION",
        "BYOL_PAPER_ID": Moved(
            "rela_hf.methods.byol:BYOL.paper",
            "every method carries its own: rela_hf.methods.method_class(name).paper.",
        ),
        "CARD_TAGS": Moved(
            "rela_hf.hub.model_card:CARD_TAGS",
            "'byol' is no longer among them: the card adds the run's method as a tag.",
        ),
        "CONFIG_NAME": "rela_hf.hub.export:CONFIG_NAME",
        "DATA_CONFIG_KEYS": "rela_hf.preprocessing:DATA_CONFIG_KEYS",
        "DEFAULT_COMMIT_MESSAGE": "rela_hf.hub.push:DEFAULT_COMMIT_MESSAGE",
        "EXPORT_FILES": "rela_hf.hub.export:EXPORT_FILES",
        "HISTORY_NAME": "rela_hf.run_layout:RunLayout.HISTORY",
        "INHERITED_PROVENANCE_KEYS": "rela_hf.hub.export:INHERITED_PROVENANCE_KEYS",
        "PLOT_NAME": "rela_hf.hub.push:PLOT_NAME",
        "PROTOCOL_TITLES": "rela_hf.hub.card_results:PROTOCOL_TITLES",
        "README_NAME": "rela_hf.hub.push:README_NAME",
        "RELA_PAPER_ID": "rela_hf.hub.export:RELA_PAPER_ID",
        "RETRYABLE_STATUS": Moved(
            "huggingface_hub.utils:http_backoff",
            "rela-hf no longer classifies errors itself: huggingface_hub retries its transfers. "
            "The old value (HTTP statuses rela-hf retried) is still returned.",
            value=lambda: frozenset({408, 429, 500, 502, 503, 504}),
        ),
        "SUMMARY_NAME": "rela_hf.run_layout:RunLayout.SUMMARY",
        "TRAINING_CONFIG_NAME": "rela_hf.run_layout:RunLayout.CONFIG",
        "TRAINING_STATE_DIR": Moved(
            "rela_hf.hub.push:LEGACY_STATE_DIR",
            "pushes now keep the training state in last-checkpoint/ (rela_hf.hub.push."
            "CHECKPOINT_DIR_IN_REPO), as the HF Trainer does; training_state/ is still read on resume.",
        ),
        "UNSAFE_STATE_PATTERNS": "rela_hf.hub.push:UNSAFE_STATE_PATTERNS",
        "WEIGHTS_NAME": "rela_hf.hub.export:WEIGHTS_NAME",
        "training_data_config": Moved(
            "rela_hf.preprocessing:official_data_config",
            "same arguments and result; it now rejects a non-positive image_size or a crop_pct outside (0, 1].",
        ),
    },
)
