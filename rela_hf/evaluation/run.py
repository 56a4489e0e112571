"""``evaluate_encoder``: the whole frozen-feature protocol, kNN and linear probe, in one call.

The official ReLA code (arXiv:2405.14669) reports a linear probe on frozen backbone features;
the weighted kNN (InstDisc, arXiv:1805.01978) is the usual companion. Features of both splits are
extracted once and both protocols run on the same tensors.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from rela_hf.evaluation.checks import num_classes_of
from rela_hf.evaluation.features import encoder_data_config, extract_features, load_encoder
from rela_hf.evaluation.knn import KNN_K, KNN_TEMPERATURE, knn_predict
from rela_hf.evaluation.linear_probe import (
    LINEAR_PROBE_BATCH_SIZE,
    LINEAR_PROBE_EPOCHS,
    LINEAR_PROBE_LR,
    linear_probe,
)
from rela_hf.evaluation.results import EVAL_RESULTS_FORMAT_VERSION, evaluate_accuracy
from rela_hf.preprocessing import eval_transform

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["PROTOCOLS", "evaluate_encoder"]

PROTOCOLS = ("knn", "linear_probe")


def evaluate_encoder(
    encoder: str | os.PathLike | nn.Module,
    train_dataset: Any,
    test_dataset: Any,
    *,
    dataset: Mapping[str, Any] | None = None,
    protocols: Sequence[str] = PROTOCOLS,
    revision: str | None = None,
    transform: Callable[[Any], Tensor] | None = None,
    preprocessing: str = "encoder",
    image_size: int | None = None,
    batch_size: int = 256,
    accelerator: Accelerator | None = None,
    image_column: str = "image",
    label_column: str = "label",
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    epochs: int = LINEAR_PROBE_EPOCHS,
    lr: float = LINEAR_PROBE_LR,
    probe_batch_size: int = LINEAR_PROBE_BATCH_SIZE,
    seed: int = 0,
    num_classes: int | None = None,
    use_evaluate: bool = False,
) -> dict[str, Any]:
    """Evaluate an encoder on frozen features with kNN and/or the linear probe.

    Features of both splits are extracted once (distributed-correct under ``accelerator``),
    then each protocol runs on every process on the same gathered tensors (cheap and
    deterministic, so all processes agree; write the results from the main process only).

    Args:
        encoder: a Hub id, a local timm-format folder or a module (see :func:`load_encoder`).
        train_dataset, test_dataset: labelled image datasets (kNN memory bank / probe
            training set, and the evaluation set).
        dataset: what to record about the data: ``id``, ``name``, ``revision``, ``config``,
            ``train_split``, ``split`` (test split name).
        protocols: any of ``"knn"``, ``"linear_probe"``.
        transform: PIL -> tensor; default from ``preprocessing``/``image_size`` through
            :func:`encoder_data_config`.
        use_evaluate: also compute the accuracy with ``evaluate`` (online machines; ``None``
            is recorded when its module cannot be loaded).
        Other arguments: the protocol settings (defaults: the official ones).

    Returns:
        The eval-results dict of :func:`write_eval_results`.
    """
    unknown = set(protocols) - set(PROTOCOLS)
    if unknown or not protocols:
        raise ValueError(f"protocols must be a non-empty subset of {PROTOCOLS}, got {list(protocols)}.")
    model = load_encoder(encoder, revision=revision)
    data_config: dict[str, Any] | None = None
    if transform is None:
        data_config = encoder_data_config(model, preprocessing=preprocessing, image_size=image_size)
        transform = eval_transform(data_config)

    def features_of(split: Any) -> tuple[Tensor, Tensor]:
        return extract_features(
            model,
            split,
            transform,
            batch_size=batch_size,
            accelerator=accelerator,
            image_column=image_column,
            label_column=label_column,
        )

    train_x, train_y = features_of(train_dataset)
    test_x, test_y = features_of(test_dataset)
    num_classes = num_classes_of(num_classes, train_y, test_y)

    results: list[dict[str, Any]] = []
    if "knn" in protocols:
        predictions = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature, num_classes=num_classes)
        results.append(
            {
                "protocol": "knn",
                "metric": "accuracy",
                "value": (predictions == test_y).float().mean().item(),
                "std": None,
                "args": {
                    "k": k,
                    "temperature": temperature,
                    "similarity": "cosine",
                    "weighting": "exp(sim/temperature)",
                },
                "evaluate_value": evaluate_accuracy(predictions, test_y) if use_evaluate else None,
            }
        )
    if "linear_probe" in protocols:
        probe = linear_probe(
            train_x,
            train_y,
            test_x,
            test_y,
            epochs=epochs,
            lr=lr,
            batch_size=probe_batch_size,
            seed=seed,
            num_classes=num_classes,
        )
        results.append(
            {
                "protocol": "linear_probe",
                "metric": "accuracy",
                "value": probe["accuracy"],
                "std": probe["accuracy_std"],
                "args": {
                    "epochs": epochs,
                    "lr": lr,
                    "optimizer": "Adam",
                    "batch_size": probe_batch_size,
                    "seed": seed,
                    "averaged_last_epochs": probe["last_epochs"],
                },
                "last_accuracies": probe["last_accuracies"],
                "final_train_accuracy": probe["final_train_accuracy"],
                "evaluate_value": (evaluate_accuracy(probe["predictions"], test_y) if use_evaluate else None),
            }
        )
    dataset = dict(dataset or {})
    encoder_name = None if isinstance(encoder, nn.Module) else os.fspath(encoder)
    return {
        "format_version": EVAL_RESULTS_FORMAT_VERSION,
        "encoder": encoder_name,
        "encoder_revision": revision,
        "architecture": (getattr(model, "pretrained_cfg", None) or {}).get("architecture"),
        "feature_dim": int(train_x.shape[1]),
        "dataset": {
            "id": dataset.get("id"),
            "name": dataset.get("name") or dataset.get("id"),
            "revision": dataset.get("revision"),
            "config": dataset.get("config"),
            "train_split": dataset.get("train_split", "train"),
            "split": dataset.get("split", "test"),
            "num_train_samples": int(train_x.shape[0]),
            "num_samples": int(test_x.shape[0]),
            "num_classes": num_classes,
        },
        "preprocessing": data_config,
        "results": results,
    }
