"""Frozen-feature evaluation of encoders: weighted kNN and the linear probe.

- ``features.py``: :func:`load_encoder`, :func:`encoder_data_config`, :func:`extract_features`;
- ``knn.py``: :func:`knn_predict`, :func:`knn_accuracy` (InstDisc, k=200, t=0.1);
- ``linear_probe.py``: :func:`linear_probe` (the official ReLA protocol);
- ``results.py``: ``eval_results.json`` and the optional ``evaluate`` cross-check;
- ``run.py``: :func:`evaluate_encoder`, the whole protocol;
- ``monitor.py``: :class:`KNNMonitor`, the online kNN accuracy while pretraining.

Everything is computed in torch, so it works offline.
"""

from rela_hf._deprecation import Moved, moved_names
from rela_hf.evaluation.features import encoder_data_config, extract_features, load_encoder
from rela_hf.evaluation.knn import KNN_K, KNN_TEMPERATURE, knn_accuracy, knn_predict
from rela_hf.evaluation.linear_probe import (
    LINEAR_PROBE_BATCH_SIZE,
    LINEAR_PROBE_EPOCHS,
    LINEAR_PROBE_LAST_EPOCHS,
    LINEAR_PROBE_LR,
    linear_probe,
)
from rela_hf.evaluation.monitor import KNNMonitor
from rela_hf.evaluation.results import evaluate_accuracy, read_eval_results, write_eval_results
from rela_hf.evaluation.run import PROTOCOLS, evaluate_encoder

__all__ = [
    "KNN_K",
    "KNN_TEMPERATURE",
    "LINEAR_PROBE_BATCH_SIZE",
    "LINEAR_PROBE_EPOCHS",
    "LINEAR_PROBE_LAST_EPOCHS",
    "LINEAR_PROBE_LR",
    "PROTOCOLS",
    "KNNMonitor",
    "encoder_data_config",
    "evaluate_accuracy",
    "evaluate_encoder",
    "extract_features",
    "knn_accuracy",
    "knn_predict",
    "linear_probe",
    "load_encoder",
    "read_eval_results",
    "write_eval_results",
]


# Names that lived here in rela-hf 0.1: reading one warns (FutureWarning) and forwards to its
# new place until 0.4 (rela_hf/_deprecation.py; CHANGELOG.md lists them).
__getattr__ = moved_names(
    __name__,
    {
        "EVAL_RESULTS_FORMAT_VERSION": "rela_hf.evaluation.results:EVAL_RESULTS_FORMAT_VERSION",
        "EVAL_RESULTS_NAME": "rela_hf.run_layout:RunLayout.EVAL_RESULTS",
        "eval_transform_for": Moved(
            "rela_hf.preprocessing:eval_transform",
            "eval_transform(data_config) is eval_transform_for(data_config); it also takes an image size.",
        ),
    },
)
