"""Fixtures shared by the Hub and recipe tests: a tiny timm backbone and a finished training
run's output folder (export, summary, config, history, a checkpoint, eval results)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import timm
import torch
import yaml

from rela_hf.evaluation import write_eval_results
from rela_hf.hub import (
    export_backbone,
)
from rela_hf.preprocessing import official_data_config


@pytest.fixture(scope="module")
def tiny_backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=0).eval()


@pytest.fixture
def training_run(tiny_backbone, tmp_path, cifar10_images) -> Path:
    """A training output_dir as recipes/byol_rela.py leaves it (export, summary, config,
    history, a checkpoint with Accelerate's files) plus an eval_results.json."""
    run = tmp_path / "run"
    export_backbone(
        tiny_backbone, run / "backbone", data_config=official_data_config(32), pretrained_cfg={"tag": "rela_byol"}
    )
    summary = {
        "method": "rela",
        "switch_rule": "adaptive",
        "switch_step": 612,
        "phase": "byol",
        "steps": 1000,
        "total_steps": 1000,
        "epochs": 6.4,
        "images_seen": 128000,
        "global_batch_size": 128,
        "num_processes": 1,
        "device": "cpu",
        "mixed_precision": "no",
        "wall_clock_seconds": 1234.5,
        "final_metrics": {"loss": 0.12, "byol_loss": 0.12},
        "backbone": "test_resnet",
        "dataset": "zalando-datasets/fashion_mnist",
        "prior": "timm/resnet18.a1_in1k",
        "dataset_revision": "a" * 40,
        "prior_revision": "b" * 40,
        "checkpoint": "checkpoint-1000",
    }
    (run / "training_summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text(
        yaml.safe_dump({"method": "rela", "learning_rate": 1e-3, "per_device_train_batch_size": 128})
    )
    with (run / "history.jsonl").open("w") as f:
        for step in range(10, 1001, 10):
            record = {
                "step": step,
                "train/loss": 1 / math.sqrt(step),
                "train/lr": 1e-3,
                "train/online_accuracy": min(0.8, step / 1000),
            }
            if step <= 612:
                record.update({"train/rela_loss": 1 / math.sqrt(step), "train/rho": step / 620})
            else:
                record["train/byol_loss"] = 2 / math.sqrt(step)
            f.write(json.dumps(record) + "\n")
    checkpoint = run / "checkpoint-1000"
    checkpoint.mkdir()
    from safetensors.torch import save_file

    save_file({"backbone.w": torch.ones(2), "target.w": torch.zeros(2)}, str(checkpoint / "model.safetensors"))
    torch.save({"state": {}}, checkpoint / "optimizer.bin")
    (checkpoint / "random_states_0.pkl").write_bytes(b"pickled rng")
    (checkpoint / "run_state.json").write_text(json.dumps({"step": 1000}))
    results = {
        "format_version": 1,
        "encoder": str(run / "backbone"),
        "dataset": {
            "id": "zalando-datasets/fashion_mnist",
            "name": "Fashion-MNIST",
            "revision": "c" * 40,
            "train_split": "train",
            "split": "test",
            "num_train_samples": 500,
            "num_samples": 200,
        },
        "results": [
            {
                "protocol": "knn",
                "metric": "accuracy",
                "value": 0.66,
                "std": None,
                "args": {"k": 200, "temperature": 0.1},
            },
            {
                "protocol": "linear_probe",
                "metric": "accuracy",
                "value": 0.665,
                "std": 0.0024,
                "args": {"epochs": 100, "lr": 3e-4},
            },
        ],
    }
    write_eval_results(results, run / "eval_results.json")
    return run
