"""Tests of recipes/evaluate_encoder.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from rela_hf.evaluation import (
    read_eval_results,
)
from rela_hf.hub import export_backbone
from rela_hf.preprocessing import official_data_config
from tests.recipes import load_recipe

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=0).eval()


@pytest.fixture
def _fresh_accelerate_state():
    yield
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def test_evaluate_encoder_recipe_writes_results_next_to_a_training_run(
    tiny_encoder, tmp_path, capsys, _fresh_accelerate_state
):
    run = tmp_path / "run"
    export_backbone(tiny_encoder, run / "backbone", data_config=official_data_config(32))
    (run / "training_summary.json").write_text("{}")
    recipe = load_recipe("evaluate_encoder")
    results = recipe.main(
        [
            "--model_name_or_path",
            str(run / "backbone"),
            "--dataset_name",
            "offline:fashion_mnist",
            "--max_train_samples",
            "40",
            "--max_eval_samples",
            "20",
            "--probe_epochs",
            "3",
            "--per_device_eval_batch_size",
            "20",
        ]
    )
    written = read_eval_results(run / "eval_results.json")
    assert written == json.loads(json.dumps(results))
    assert written["dataset"]["num_train_samples"] == 40 and written["dataset"]["num_samples"] == 20
    assert written["dataset"]["name"].startswith("Fashion-MNIST")
    assert [r["protocol"] for r in written["results"]] == ["knn", "linear_probe"]
    out = capsys.readouterr().out
    assert "knn" in out and "linear_probe" in out and "eval_results.json" in out
    # the export folder itself stays an export (config.json + model.safetensors only)
    assert sorted(p.name for p in (run / "backbone").iterdir()) == ["config.json", "model.safetensors"]
