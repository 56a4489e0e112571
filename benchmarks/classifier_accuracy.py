#!/usr/bin/env python
"""Test top-1 of the classifier a supervised run trained (``method.classifier`` in its checkpoint).

The supervised method (``--method supervised``) trains a linear classifier on the backbone's pooled
features by cross-entropy; the exported encoder is the backbone alone. This script puts the two
back together: the run's timm export (``backbone/``) and the classifier's weights from the final
checkpoint, then classifies the evaluated split with the deterministic eval preprocessing at the
run's input size. A ReLA run that never switched never trained the classifier (its accuracy is
then chance level, and the result says so).

    python benchmarks/classifier_accuracy.py --run_dir outputs/acceleration/supervised/runs/sup_r1.0_s0 \\
        --dataset_name outputs/acceleration/assets/fashion_mnist --eval_split test
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors.torch import load_file

from rela_hf.data import load_image_dataset
from rela_hf.evaluation import extract_features
from rela_hf.preprocessing import eval_transform, official_data_config
from rela_hf.run_layout import RunLayout, TrainingSummary

RESULT_NAME = "classifier_results.json"
CLASSIFIER_PREFIX = "method.classifier."


def classifier_accuracy(
    run_dir: Path, dataset_name: str, eval_split: str = "test", *, batch_size: int = 256
) -> dict[str, Any]:
    """Top-1 of ``run_dir``'s trained classifier on ``eval_split`` (a fraction in [0, 1])."""
    layout = RunLayout(run_dir)
    summary = TrainingSummary.load(layout.summary_file)
    weights = load_file(str(run_dir / summary.checkpoint / "model.safetensors"))
    head = {k.removeprefix(CLASSIFIER_PREFIX): v for k, v in weights.items() if k.startswith(CLASSIFIER_PREFIX)}
    if not head:
        raise SystemExit(f"{run_dir}: no {CLASSIFIER_PREFIX}* weights (not a supervised run).")
    classifier = torch.nn.Linear(head["weight"].shape[1], head["weight"].shape[0])
    classifier.load_state_dict(head)
    backbone = timm.create_model(f"local-dir:{layout.backbone_dir}", pretrained=True).eval()
    split = load_image_dataset(dataset_name, split=eval_split)
    transform = eval_transform(official_data_config(summary.image_size or 32))
    features, labels = extract_features(backbone, split, transform, batch_size=batch_size)
    with torch.no_grad():
        accuracy = (classifier(features).argmax(dim=1) == labels).float().mean().item()
    trained = summary.use_rela is False or summary.switch_step is not None
    return {
        "classifier_top1": accuracy,
        "classifier_trained": trained,
        "split": eval_split,
        "num_samples": len(labels),
        "checkpoint": summary.checkpoint,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run_dir", type=Path, required=True)
    parser.add_argument("--dataset_name", required=True)
    parser.add_argument("--eval_split", default="test")
    args = parser.parse_args()
    result = classifier_accuracy(args.run_dir, args.dataset_name, args.eval_split)
    (args.run_dir / RESULT_NAME).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
