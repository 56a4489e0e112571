"""The online kNN monitor: how good the representation is while it trains.

Every ``eval_steps`` optimizer steps the trainer embeds a labelled memory bank (a fixed subset of
the training split) and held-out queries (a fixed subset of another split) with the online
backbone in eval mode, and logs the weighted-kNN top-1 accuracy (InstDisc, k=200, t=0.1) to the
trackers and ``history.jsonl``, so it shows in the model card's curves: what users of lightly and
solo-learn watch. Correct across processes (:func:`~rela_hf.evaluation.extract_features` gathers)
and it changes nothing in training: no gradients, BatchNorm statistics untouched, the training
views and forward passes are seeded by position.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import datasets
from torch import nn

from rela_hf.evaluation.features import extract_features
from rela_hf.evaluation.knn import KNN_K, KNN_TEMPERATURE, knn_accuracy
from rela_hf.preprocessing import eval_transform, official_data_config

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["KNNMonitor"]


class KNNMonitor:
    """kNN accuracy of a backbone on fixed bank and query subsets.

    Args:
        bank: labelled images the queries vote with (e.g. part of the training split).
        queries: held-out labelled images to classify.
        image_size: the student's input size (the official deterministic preprocessing).
        max_bank, max_queries: a fixed random subset of at most this many rows (seed 0).
        image_column, label_column, k, temperature, batch_size: as for the evaluation protocol.

    Usage, inside a training loop (its model and accelerator; not a doctest)::

        monitor = KNNMonitor(train, test, image_size=32)
        monitor(model.backbone, accelerator)  # -> {'eval/knn_accuracy': 0.71, 'eval/seconds': 3.2}
    """

    def __init__(
        self,
        bank: datasets.Dataset,
        queries: datasets.Dataset,
        *,
        image_size: int,
        max_bank: int | None = 2000,
        max_queries: int | None = 1000,
        image_column: str = "image",
        label_column: str = "label",
        k: int = KNN_K,
        temperature: float = KNN_TEMPERATURE,
        batch_size: int = 256,
    ) -> None:
        for name, split in (("bank", bank), ("queries", queries)):
            missing = [c for c in (image_column, label_column) if c not in split.column_names]
            if missing:
                raise ValueError(
                    f"KNNMonitor: the {name} split has no column(s) {missing} "
                    f"(columns: {split.column_names}); the monitor needs labels."
                )
        self.bank = _subset(bank, max_bank).select_columns([image_column, label_column])
        self.queries = _subset(queries, max_queries).select_columns([image_column, label_column])
        self.transform = eval_transform(official_data_config(image_size))
        self.image_column, self.label_column = image_column, label_column
        self.k, self.temperature, self.batch_size = k, temperature, batch_size

    def __call__(self, backbone: nn.Module, accelerator: Accelerator | None = None) -> dict[str, float]:
        """``{"eval/knn_accuracy": top-1 fraction, "eval/seconds": time taken}``."""
        start = time.perf_counter()
        common: dict[str, Any] = {
            "batch_size": self.batch_size,
            "accelerator": accelerator,
            "image_column": self.image_column,
            "label_column": self.label_column,
        }
        bank_x, bank_y = extract_features(backbone, self.bank, self.transform, **common)
        query_x, query_y = extract_features(backbone, self.queries, self.transform, **common)
        accuracy = knn_accuracy(bank_x, bank_y, query_x, query_y, k=self.k, temperature=self.temperature)
        return {"eval/knn_accuracy": accuracy, "eval/seconds": time.perf_counter() - start}


def _subset(split: datasets.Dataset, limit: int | None) -> datasets.Dataset:
    if limit is None or limit >= len(split):
        return split
    return split.shuffle(seed=0).select(range(limit))
