"""Evaluation results in a model card: the ``model-index`` metadata, the table, their scope.

``eval_results.json`` (:mod:`rela_hf.evaluation.results`) holds top-1 accuracies as fractions.
The card uses one unit everywhere: a fraction in [0, 1], rounded to :data:`ACCURACY_DECIMALS`
(the convention of the Hub's ``accuracy`` metric and of transformers' cards), the same number in
the ``model-index`` metadata and in the Results table. Local dataset paths become neutral names
(:mod:`rela_hf.public_names`) before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from huggingface_hub import EvalResult

from rela_hf.model_names import safe_model_name
from rela_hf.public_names import public_name

__all__ = [
    "ACCURACY_DECIMALS",
    "eval_results_to_model_index",
    "eval_rows",
    "evaluation_scope",
    "format_accuracy",
]

#: decimals of every accuracy in a card (4: one image in 10,000)
ACCURACY_DECIMALS = 4
PROTOCOL_TITLES = {"knn": "kNN", "linear_probe": "linear probe"}


def format_accuracy(value: float) -> str:
    """An accuracy fraction as the card prints it (and stores it): ``0.6650``."""
    return f"{value:.{ACCURACY_DECIMALS}f}"


def _rounded(value: float) -> float:
    return round(float(value), ACCURACY_DECIMALS)


def protocol_title(entry: Mapping[str, Any]) -> str:
    """``kNN (k=200, T=0.1)``, ``linear probe (100 epochs, Adam lr 0.0003)``."""
    args = entry.get("args") or {}
    if entry["protocol"] == "knn":
        return f"kNN (k={args.get('k', '?')}, T={args.get('temperature', '?')})"
    if entry["protocol"] == "linear_probe":
        return f"linear probe ({args.get('epochs', '?')} epochs, Adam lr {args.get('lr', '?')})"
    return str(entry["protocol"])


def as_report_list(eval_results: Any) -> list[Mapping[str, Any]]:
    """One or several ``eval_results.json`` dicts as a list."""
    if eval_results is None:
        return []
    if isinstance(eval_results, Mapping):
        return [eval_results]
    return list(eval_results)


def dataset_names(dataset: Mapping[str, Any]) -> tuple[str, str]:
    """(pretty name, Hub ``dataset.type``) of an evaluated dataset; a local path never shows."""
    dataset_id = dataset.get("id")
    name = dataset.get("name") or dataset_id or "unnamed dataset"
    public = public_name(str(dataset_id)) if dataset_id else None
    if public is not None and not public.local and public.hub_id:
        dataset_type = public.hub_id
    else:
        dataset_type = safe_model_name(public.name if public else str(name), default="dataset")
    if name == dataset_id or public_name(str(name)).local:
        name = public_name(str(name)).name
    return str(name), dataset_type


def eval_results_to_model_index(
    eval_results: Mapping[str, Any] | list[Mapping[str, Any]] | None,
) -> list[EvalResult]:
    """``EvalResult`` entries (the card's ``model-index``) of one or more eval_results.json dicts.

    ``metric_value`` is the top-1 accuracy as a fraction, rounded as the Results table shows it.
    """
    entries = []
    for report in as_report_list(eval_results):
        dataset = report["dataset"]
        name, dataset_type = dataset_names(dataset)
        for result in report["results"]:
            args = {k: v for k, v in (result.get("args") or {}).items() if v is not None}
            entries.append(
                EvalResult(
                    task_type="image-classification",
                    # huggingface_hub merges results sharing task type + dataset into one entry and
                    # keeps the first task name, so the protocol goes into the metric name.
                    task_name="Image classification on frozen features",
                    dataset_type=dataset_type,
                    dataset_name=name,
                    dataset_config=dataset.get("config"),
                    dataset_split=dataset.get("split"),
                    dataset_revision=dataset.get("revision"),
                    metric_type=result["metric"],
                    metric_name=f"{protocol_title(result)} top-1 accuracy",
                    metric_value=_rounded(result["value"]),
                    metric_args=args or None,
                )
            )
    return entries


def eval_rows(eval_results: Any) -> list[dict[str, Any]]:
    """The Results table's rows: same fractions as :func:`eval_results_to_model_index`."""
    rows = []
    for report in as_report_list(eval_results):
        dataset = report["dataset"]
        name, dataset_type = dataset_names(dataset)
        if dataset_type == dataset.get("id") and dataset_type != name:
            name = f"{name} (`{dataset_type}`)"  # a Hub id, never a local path
        for result in report["results"]:
            value = format_accuracy(_rounded(result["value"]))
            if result.get("std") is not None:
                value += f" ± {format_accuracy(result['std'])}"
            rows.append(
                {
                    "dataset": name,
                    "train_split": dataset.get("train_split", "train"),
                    "split": dataset.get("split", "test"),
                    "protocol": protocol_title(result),
                    "value": value,
                    "num_train": dataset.get("num_train_samples", "?"),
                    "num_eval": dataset.get("num_samples", "?"),
                }
            )
    return rows


def evaluation_scope(eval_results: Any) -> list[str]:
    """What the recorded numbers cover, one sentence per evaluated dataset (the Limitations).

    Names the protocols, the split and its size, and the binomial standard error
    ``sqrt(p (1 - p) / n)`` of the best accuracy on that many images.
    """
    sentences = []
    for report in as_report_list(eval_results):
        dataset = report["dataset"]
        name, _ = dataset_names(dataset)
        results = report["results"]
        protocols = " and ".join(dict.fromkeys(PROTOCOL_TITLES.get(r["protocol"], str(r["protocol"])) for r in results))
        sentence = f"{protocols} on frozen features, on the `{dataset.get('split', 'test')}` split of {name} only"
        n = dataset.get("num_samples")
        if isinstance(n, int) and n > 0 and results:
            p = max(float(r["value"]) for r in results)
            error = math.sqrt(p * (1 - p) / n)
            sentence += (
                f" ({n} images: the standard error of an accuracy near {format_accuracy(p)} is about {error:.3f})"
            )
        sentences.append(sentence)
    return sentences
