"""load_best_model_at_end: a validation split carved from the training data, the best checkpoint
kept and exported; and the soft hand-overs through the trainer (real images, tiny ResNet)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from rela_hf.errors import ConfigError
from rela_hf.training.best_model import ValidationSplit
from tests.recipes.trainer import args, backbone_state, recipe


def test_validation_rows_never_train():
    split = ValidationSplit.carve(64, 0.1, seed=3)
    assert len(split.validation_indices) == 7 and len(split.train_indices) == 57
    assert not set(split.validation_indices) & set(split.train_indices)
    assert split == ValidationSplit.carve(64, 0.1, seed=3)  # seeded


@pytest.mark.parametrize("metric", ["knn_accuracy", "linear_probe_accuracy"])
def test_the_best_checkpoint_is_kept_and_exported(metric, rela_data, tmp_path):
    output_dir = tmp_path / "best"
    summary = recipe.main(
        args(
            rela_data,
            output_dir,
            "--load_best_model_at_end",
            "--metric_for_best_model",
            metric,
            "--train_val_split",
            "0.25",
            "--checkpoints_total_limit",
            "1",
            "--per_device_train_batch_size",
            "8",
        )
    )
    history = [json.loads(line) for line in (output_dir / "history.jsonl").read_text().splitlines()]
    values = {r["step"]: r[f"eval/validation_{metric}"] for r in history if f"eval/validation_{metric}" in r}
    assert sorted(values) == [5, 10, 15, 20]  # every checkpoint and the end
    best_step = max(values, key=lambda step: (values[step], -step))  # ties: the earlier one
    assert summary.best_step == best_step == summary.exported_step
    assert summary.best_metric_value == pytest.approx(values[best_step])
    assert summary.metric_for_best_model == metric and summary.checkpoint == "checkpoint-20"
    kept = {p.name for p in output_dir.glob("checkpoint-*")}
    assert kept == {f"checkpoint-{best_step}", "checkpoint-20"}  # the limit (1) never prunes the best
    exported = load_file(output_dir / "backbone" / "model.safetensors")
    best = backbone_state(output_dir / f"checkpoint-{best_step}")
    assert all(torch.equal(exported[k], best[k]) for k in best)
    # 48 training rows of 64 (16 held out): 6 batches of 8 per epoch, 20 steps = 3 epochs + 2 batches
    assert summary.images_seen == 160 and summary.epochs == pytest.approx(20 / 6)


def test_best_model_needs_labels(rela_data, tmp_path):
    with pytest.raises(ConfigError, match=r"load_best_model_at_end.*needs labels"):
        recipe.main(args(rela_data, tmp_path / "x", "--load_best_model_at_end", "--label_column", "none"))


@pytest.mark.parametrize(
    ("handover", "extra"), [("fade", ["--handover_steps", "4"]), ("regularize", ["--handover_weight", "0.5"])]
)
def test_soft_hand_overs_keep_the_rela_loss_after_the_switch(handover, extra, rela_data, tmp_path):
    output_dir = tmp_path / handover
    summary = recipe.main(args(rela_data, output_dir, "--handover", handover, *extra, "--logging_steps", "1"))
    assert summary.switch_step == 6 and summary.handover["kind"] == handover
    history = [json.loads(line) for line in (output_dir / "history.jsonl").read_text().splitlines()]
    rela_after = [r["step"] for r in history if r["step"] > 6 and "train/rela_loss" in r]
    # fade over 4 steps: steps 7-10 have weight 1, 0.75, 0.5, 0.25; then 0 (no ReLA loss computed)
    assert rela_after == (list(range(7, 11)) if handover == "fade" else list(range(7, 21)))


def test_batched_views_train_through_the_trainer_and_resume_the_same(rela_data, tmp_path):
    """view_pipeline batched: 8-bit images from the workers, the views made on the device, both
    phases; seeded per row, so the same run twice gives the same weights."""
    runs = [
        recipe.main(args(rela_data, tmp_path / name, "--view_pipeline", "batched", "--max_train_steps", "8"))
        for name in ("a", "b")
    ]
    assert all(run.switch_step == 2 and run.steps == 8 for run in runs)
    a = load_file(tmp_path / "a" / "checkpoint-8" / "model.safetensors")
    b = load_file(tmp_path / "b" / "checkpoint-8" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
