"""``eval_results.json``: the evaluation's record, which the model card's ``model-index`` reads.

Also the optional cross-check through the ``evaluate`` library, whose ``accuracy`` module is a Hub
download (``evaluate.load("accuracy")``) that machines without Hub access can never fetch: the
torch figures are the reference, ``evaluate``'s is recorded beside them when it can be loaded.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

logger = logging.getLogger(__name__)

__all__ = ["EVAL_RESULTS_FORMAT_VERSION", "evaluate_accuracy", "read_eval_results", "write_eval_results"]

EVAL_RESULTS_FORMAT_VERSION = 1


def evaluate_accuracy(
    predictions: Tensor | Sequence[int],
    references: Tensor | Sequence[int],
    *,
    metric_path: str = "accuracy",
) -> float | None:
    """Accuracy through the ``evaluate`` library, or ``None`` when its module is unavailable.

    ``evaluate.load("accuracy")`` downloads the module ``evaluate-metric/accuracy`` from the Hub
    on first use, which machines without Hub access can never do; it is therefore a cross-check
    only (the torch figures are the reference). ``metric_path`` may name a local copy of the
    module (a folder or ``accuracy.py``) for offline machines.
    """
    try:
        import evaluate  # optional at run time: its metrics are Hub downloads

        metric = evaluate.load(metric_path)
        result = metric.compute(predictions=list(map(int, predictions)), references=list(map(int, references)))
    except Exception as error:  # noqa: BLE001 - any failure just means "not available here"
        logger.warning(
            "evaluate's %r metric is unavailable (%s); using the torch figure only.", metric_path, type(error).__name__
        )
        return None
    return float(result["accuracy"])


def write_eval_results(results: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write an eval-results dict as JSON, atomically (temp file then rename).

    The format (``format_version`` 1), read by :func:`rela_hf.hub.render_model_card`::

        {"format_version": 1, "encoder": ..., "encoder_revision": ...,
         "dataset": {"id", "name", "revision", "config", "train_split", "split",
                     "num_train_samples", "num_samples"},
         "preprocessing": {<timm data config>},
         "results": [{"protocol": "knn" | "linear_probe", "metric": "accuracy",
                      "value": <fraction>, "std": <fraction or null>, "args": {...},
                      "evaluate_value": <fraction or null>}, ...]}
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_jsonable(results), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_eval_results(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check an ``eval_results.json`` written by :func:`write_eval_results`."""
    path = Path(path)
    results = json.loads(path.read_text())
    for key in ("dataset", "results"):
        if key not in results:
            raise ValueError(f"{path} is not an eval_results.json of rela-hf: no {key!r} key.")
    for entry in results["results"]:
        missing = {"protocol", "metric", "value"} - set(entry)
        if missing:
            raise ValueError(f"{path}: a result lacks {sorted(missing)}: {entry}.")
        if not (isinstance(entry["value"], (int, float)) and math.isfinite(entry["value"])):
            raise ValueError(f"{path}: result value {entry['value']!r} is not a finite number.")
    return results


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Tensor):
        return value.tolist()
    return value
