"""Tests for rela_hf.evaluation.results: the optional evaluate cross-check."""

from __future__ import annotations

import textwrap

import torch

from rela_hf.evaluation import (
    evaluate_accuracy,
)

LOCAL_ACCURACY_MODULE = textwrap.dedent(
    """
    import datasets
    import evaluate


    class LocalAccuracy(evaluate.Metric):
        def _info(self):
            return evaluate.MetricInfo(
                description="top-1 accuracy", citation="", inputs_description="",
                features=datasets.Features({"predictions": datasets.Value("int64"),
                                            "references": datasets.Value("int64")}),
            )

        def _compute(self, predictions, references):
            correct = sum(int(p == r) for p, r in zip(predictions, references))
            return {"accuracy": correct / len(references)}
    """
)


def test_evaluate_accuracy_through_a_local_module_and_none_when_missing(tmp_path):
    module_dir = tmp_path / "local_accuracy"
    module_dir.mkdir()
    (module_dir / "local_accuracy.py").write_text(LOCAL_ACCURACY_MODULE)
    predictions, references = torch.tensor([1, 2, 3, 4]), torch.tensor([1, 2, 0, 4])
    assert evaluate_accuracy(predictions, references, metric_path=str(module_dir)) == 0.75
    assert evaluate_accuracy(predictions, references, metric_path=str(tmp_path / "missing")) is None
