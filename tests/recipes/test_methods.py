"""recipes/byol_rela.py with every method: ReLA then DINO, SimCLR or supervised training, killed
and resumed bitwise, and on two processes (gloo), on real images (CPU, tiny ResNet, 32 px)."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
from safetensors.torch import load_file

from rela_hf.checkpoint import read_run_state
from rela_hf.errors import ConfigError
from rela_hf.training import checkpointing
from tests.recipes import REPO
from tests.recipes.trainer import (
    Killed,
    args,
    assert_export_matches,
    one_thread,
    recipe,
    reset_accelerate,
    two_process_launch,
)

#: small heads so that the tests stay fast; DINO with two local crops (multi-crop views)
METHOD_OPTIONS = {
    "dino": {"hidden_dim": 64, "bottleneck_dim": 16, "out_dim": 128, "local_crops": 2},
    "simclr": {"temperature": 0.5, "projection_dim": 32},
    "supervised": {"label_smoothing": 0.1},
}

pytestmark = pytest.mark.usefixtures("_one_thread_fresh_accelerate")


def method_args(data, output_dir, method: str, *extra: str) -> list[str]:
    return args(data, output_dir, "--method", method, "--method_options", json.dumps(METHOD_OPTIONS[method]), *extra)


@pytest.mark.parametrize("method", ["dino", "simclr", "supervised"])
def test_kill_and_resume_is_bitwise_exact(method, rela_data, tmp_path, monkeypatch):
    with one_thread():
        reference = recipe.main(method_args(rela_data, tmp_path / "uninterrupted", method))
    reset_accelerate()
    assert reference.method == method and reference.switch_step == 6 and reference.phase == method
    assert {"rela_loss", f"{method}_loss"} <= set(reference.final_metrics)

    real_save = checkpointing.save_checkpoint

    def save_then_die(*a, **kw):
        path = real_save(*a, **kw)
        if kw["step"] == 10:  # mid-epoch, after the switch: the method's phase
            raise Killed
        return path

    monkeypatch.setattr(checkpointing, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        recipe.main(method_args(rela_data, tmp_path / "killed", method))
    reset_accelerate()
    monkeypatch.setattr(checkpointing, "save_checkpoint", real_save)
    resumed = recipe.main(method_args(rela_data, tmp_path / "killed", method, "--resume_from_checkpoint", "latest"))
    assert resumed.steps == 20 and resumed.switch_step == 6

    a = load_file(tmp_path / "killed" / "checkpoint-20" / "model.safetensors")
    b = load_file(tmp_path / "uninterrupted" / "checkpoint-20" / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    if method == "dino":  # the teacher and the loss's center travel with the weights
        assert "method.criterion.center" in a and a["method.criterion.center"].abs().sum() > 0
        assert any(k.startswith("method.teacher_head.") for k in a)
    if method == "supervised":  # the classifier the method trained travels with the weights
        assert a["method.classifier.weight"].shape[0] == 10  # one row per class
    optimizer_a = torch.load(tmp_path / "killed" / "checkpoint-20" / "optimizer.bin", weights_only=True)
    optimizer_b = torch.load(tmp_path / "uninterrupted" / "checkpoint-20" / "optimizer.bin", weights_only=True)
    for index, state in optimizer_a["state"].items():
        assert torch.equal(state["exp_avg"], optimizer_b["state"][index]["exp_avg"])
    export = json.loads((tmp_path / "killed" / "backbone" / "config.json").read_text())
    assert export["pretrained_cfg"]["tag"] == f"rela_{method}"


def test_method_options_are_checked_before_any_compute(rela_data, tmp_path):
    with pytest.raises(ConfigError, match=r"Unknown dino option\(s\) \['temprature'\]"):
        recipe.main(args(rela_data, tmp_path / "x", "--method", "dino", "--method_options", '{"temprature": 0.1}'))
    with pytest.raises(ConfigError, match="method 'moco' is not one of"):
        recipe.main(args(rela_data, tmp_path / "x", "--method", "moco"))
    with pytest.raises(ConfigError, match="are BYOL's"):
        recipe.main(args(rela_data, tmp_path / "x", "--method", "simclr", "--projection_dim", "64"))
    assert not (tmp_path / "x").exists()


def test_a_method_that_needs_labels_refuses_a_dataset_without_them(rela_data, tmp_path):
    with pytest.raises(ConfigError, match="Supervised method trains on labels, but label_column is turned off"):
        recipe.main(args(rela_data, tmp_path / "x", "--method", "supervised", "--label_column", "none"))
    assert not (tmp_path / "x" / "config.yaml").exists()


def test_every_method_has_a_preset():
    for method in ("byol", "dino", "simclr", "supervised"):
        preset = REPO / "recipes" / "configs" / f"cifar10_resnet18{'' if method == 'byol' else '_' + method}.yaml"
        assert recipe.parse_args(["--config", str(preset)]).method == method


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dino", "simclr", "supervised"])
def test_two_processes(method, plain_data, random_prior, tmp_path):
    """2 CPU processes over gloo, targets from a prior on the fly, accumulation: DINO's centering
    is all-reduced and SimCLR's negatives are gathered across the processes."""
    output_dir = tmp_path / "two_processes"
    command = two_process_launch(
        *method_args(
            plain_data,
            output_dir,
            method,
            "--prior",
            str(random_prior),
            "--prior_image_size",
            "32",
            "--target_dim",
            "16",
            "--per_device_train_batch_size",
            "4",
            "--gradient_accumulation_steps",
            "2",
            "--max_train_steps",
            "8",
            "--checkpointing_steps",
            "4",
        ),
    )
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads((output_dir / "training_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["global_batch_size"] == 16 and summary["steps"] == 8
    assert summary["switch_step"] == 2 and summary["phase"] == method and summary["method"] == method
    assert f"{method}_loss" in summary["final_metrics"]
    state = read_run_state(output_dir / "checkpoint-8")
    assert state["num_processes"] == 2 and state["switch"]["steps"] == 2
    assert_export_matches(output_dir, output_dir / "checkpoint-8")
