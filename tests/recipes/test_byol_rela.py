"""End-to-end tests of recipes/byol_rela.py on real images (CPU, tiny ResNet, 32 px).

- one process, in-process ``main()``: both phases, checkpoints, TensorBoard, timm export;
- a run killed right after a checkpoint and resumed ends bitwise equal to an uninterrupted one;
- two processes (gloo) through ``accelerate launch``, with targets computed from a prior on the
  fly, gradient accumulation and the switch decided on all-reduced losses;
- bad input fails with a clear error before any compute is spent.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest
import torch
import yaml
from safetensors.torch import load_file

from rela_hf.checkpoint import CheckpointError, OutputDirError, read_run_state
from rela_hf.errors import ConfigError
from rela_hf.training import checkpointing
from tests.recipes import REPO
from tests.recipes.trainer import (
    K,
    Killed,
    args,
    assert_export_matches,
    one_thread,
    recipe,
    reset_accelerate,
    two_process_launch,
)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, rela_data):
    output_dir = tmp_path_factory.mktemp("runs") / "one_process"
    with one_thread():  # module-scoped: set up before the function-scoped autouse fixture
        summary = recipe.main(args(rela_data, output_dir, "--report_to", "tensorboard"))
    reset_accelerate()
    return output_dir, summary


def test_one_process_run_passes_both_phases_and_exports_the_encoder(finished_run, random_prior):
    output_dir, summary = finished_run
    # the prior that made the dataset's targets is read from the record saved with them
    assert summary.prior == str(random_prior) and summary.prior_revision is None
    assert summary.switch_step == 6 and summary.phase == "byol"  # floor(0.3 * 20) ReLA steps
    assert summary.steps == 20 and summary.images_seen == 160
    assert {"rela_loss", "byol_loss", "classifier_accuracy"} <= set(summary.final_metrics)
    assert json.loads((output_dir / "training_summary.json").read_text()) == summary.to_dict()
    assert [p.name for p in sorted(output_dir.glob("checkpoint-*"))] == [
        "checkpoint-10",
        "checkpoint-15",
        "checkpoint-20",
    ]
    state = read_run_state(output_dir / "checkpoint-20")
    assert state["switch"]["switch_step"] == 6 and state["epoch"] == 2 and state["batch_in_epoch"] == 4
    assert list((output_dir / "runs").rglob("events.out.tfevents.*"))  # TensorBoard
    config = yaml.safe_load((output_dir / "config.yaml").read_text())
    assert config["switch_fraction"] == 0.3 and config["backbone"] == "test_resnet"
    assert_export_matches(output_dir, output_dir / "checkpoint-20")


def test_resolved_config_file_reproduces_the_options(finished_run, tmp_path):
    output_dir, _ = finished_run
    args = recipe.parse_args(["--config", str(output_dir / "config.yaml"), "--learning_rate", "0.5"])
    assert args.learning_rate == 0.5 and args.switch_fraction == 0.3  # flag over file
    assert args.cifar_stem and args.image_size == 32


def test_resume_after_kill_matches_uninterrupted_run(finished_run, rela_data, tmp_path, monkeypatch):
    reference, _ = finished_run  # uninterrupted, same seed and config (switch at step 6)
    output_dir = tmp_path / "killed"
    real_save = checkpointing.save_checkpoint

    def save_then_die(*a, **kw):
        path = real_save(*a, **kw)
        if kw["step"] == 10:  # mid-epoch 1, BYOL phase
            raise Killed
        return path

    monkeypatch.setattr(checkpointing, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        recipe.main(args(rela_data, output_dir))
    reset_accelerate()
    monkeypatch.setattr(checkpointing, "save_checkpoint", real_save)
    # an interrupted save of a later step must not be taken for the latest checkpoint
    (output_dir / "checkpoint-15.tmp").mkdir()

    (output_dir / "checkpoint-25.tmp").mkdir()

    summary = recipe.main(args(rela_data, output_dir, "--resume_from_checkpoint", "latest"))
    assert summary.steps == 20 and summary.switch_step == 6
    assert not list(output_dir.glob("*.tmp"))  # staging folders of interrupted saves cleaned up
    resumed = load_file(output_dir / "checkpoint-20" / "model.safetensors")
    uninterrupted = load_file(reference / "checkpoint-20" / "model.safetensors")
    assert resumed.keys() == uninterrupted.keys()
    assert any(k.startswith("method.target_backbone.") for k in resumed)  # the EMA teacher is restored
    for key in resumed:
        assert torch.equal(resumed[key], uninterrupted[key]), key
    optimizer_a = torch.load(output_dir / "checkpoint-20" / "optimizer.bin", weights_only=True)
    optimizer_b = torch.load(reference / "checkpoint-20" / "optimizer.bin", weights_only=True)
    for index, state in optimizer_a["state"].items():
        assert torch.equal(state["exp_avg_sq"], optimizer_b["state"][index]["exp_avg_sq"])


@pytest.mark.slow
def test_two_processes_with_targets_from_a_prior(plain_data, random_prior, tmp_path):
    """2 CPU processes over gloo: ``--cpu`` alone would launch one, so the multi-GPU launcher
    is used with ACCELERATE_USE_CPU=1 (Accelerate then picks MULTI_CPU + gloo)."""
    output_dir = tmp_path / "two_processes"
    command = two_process_launch(
        *args(
            plain_data,
            output_dir,
            "--prior",
            str(random_prior),
            "--prior_image_size",
            "32",
            "--target_dim",
            str(K),
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
    # 64 images / (4 x 2 processes) = 8 micro-batches per process per epoch = 4 steps per epoch
    assert summary["num_processes"] == 2 and summary["global_batch_size"] == 16
    assert summary["steps"] == 8 and summary["images_seen"] == 128
    assert summary["switch_step"] == 2 and summary["phase"] == "byol" and summary["target_dim"] == K
    state = read_run_state(output_dir / "checkpoint-8")
    assert state["num_processes"] == 2 and state["switch"]["steps"] == 2  # once per optimizer step
    assert len(list((output_dir / "rela_targets").iterdir())) == 1  # computed once, cached
    assert "switch (static rule) at optimizer step 2" in result.stderr
    assert_export_matches(output_dir, output_dir / "checkpoint-8")


def test_byol_baseline_needs_no_targets(plain_data, tmp_path):
    summary = recipe.main(
        args(
            plain_data,
            tmp_path / "byol",
            "--method",
            "byol",
            "--use_rela",
            "false",
            "--max_train_steps",
            "3",
            "--label_column",
            "none",
        )
    )
    assert summary.switch_step is None and summary.phase == "byol"
    assert "classifier_accuracy" not in summary.final_metrics
    assert (tmp_path / "byol" / "backbone" / "model.safetensors").is_file()


def test_adaptive_switch_waits_for_the_loss_to_flatten(rela_data, tmp_path):
    summary = recipe.main(
        args(
            rela_data,
            tmp_path / "adaptive",
            "--switch_rule",
            "adaptive",
            "--max_train_steps",
            "4",
            "--gradient_accumulation_steps",
            "2",
        )
    )
    # from fast=1, slow=2 the adaptive rule cannot fire before ~528 optimizer steps
    assert summary.switch_step is None and summary.phase == "rela"
    state = summary.switch_state
    assert state["kind"] == "adaptive" and state["steps"] == 4  # once per optimizer step
    assert 0.0 < state["rho"] < 0.995 and state["fast"] < 1.0


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (["--data_ratio", "0"], ConfigError, r"data_ratio must be in \(0, 1\]"),
        (["--data_ratio", "1.5"], ConfigError, r"data_ratio must be in \(0, 1\]"),
        (["--target_dim", "32"], ConfigError, "does not match the 16-d targets"),
        (["--backbone", "resnet_does_not_exist"], ValueError, "timm does not know"),
        (["--switch_fraction", "1.5"], ConfigError, r"switch_fraction must be in \[0, 1\]"),
        (["--backbone_kwargs", "[1, 2]"], ConfigError, "JSON object"),
        (["--data_ratio", "0.1"], ConfigError, "No full batch: 6 images per epoch"),
    ],
)
def test_bad_options_fail_before_any_compute(rela_data, tmp_path, extra, error, message):
    output_dir = tmp_path / "out"
    with pytest.raises(error, match=message):
        recipe.main(args(rela_data, output_dir, *extra))
    assert not list(output_dir.glob("checkpoint-*")) and not (output_dir / "config.yaml").exists()


def test_rela_without_targets_or_prior_is_refused(plain_data, tmp_path):
    with pytest.raises(ConfigError, match=r"no 'rela_target' column.*prior"):
        recipe.main(args(plain_data, tmp_path / "out"))


def test_output_dir_of_another_run_is_refused(finished_run, rela_data):
    output_dir, _ = finished_run
    with pytest.raises(OutputDirError, match=r"another run.*learning_rate"):
        recipe.main(args(rela_data, output_dir, "--report_to", "tensorboard", "--learning_rate", "0.01"))
    with pytest.raises(OutputDirError, match="--resume_from_checkpoint latest"):
        recipe.main(args(rela_data, output_dir, "--report_to", "tensorboard"))
    with pytest.raises(CheckpointError, match="another config"):
        recipe.main(
            args(
                rela_data,
                output_dir / "elsewhere",
                "--learning_rate",
                "0.01",
                "--resume_from_checkpoint",
                str(output_dir / "checkpoint-20"),
            )
        )


def test_unknown_config_keys_are_refused(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("learning_rate: 0.1\nlearnig_rate: 0.2\n")
    with pytest.raises(ConfigError, match="learnig_rate"):
        recipe.parse_args(["--config", str(config)])


@pytest.mark.parametrize("preset", sorted(p.stem for p in (REPO / "recipes" / "configs").glob("*.yaml")))
def test_presets_parse_and_validate(preset):
    args = recipe.parse_args(["--config", preset])  # checked when built: a wrong preset fails here
    assert args.use_rela and args.method in ("byol", "dino", "simclr", "supervised")
