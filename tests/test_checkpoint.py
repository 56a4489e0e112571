"""Atomic checkpoints: save/load round trip, crash safety, pruning, output-dir ownership."""

from __future__ import annotations

import json

import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file

from rela_hf.checkpoint import (
    RUN_STATE_NAME,
    CheckpointError,
    OutputDirError,
    check_output_dir,
    check_same_run,
    clear_checkpoints,
    config_diff,
    config_fingerprint,
    find_latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_run_state,
    remove_incomplete_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)

RUN_CONFIG = {"backbone": "test_resnet", "learning_rate": 1e-3, "seed": 0}


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture
def trained():
    """An accelerator with a prepared model + AdamW that has taken one step."""
    accelerator = Accelerator(cpu=True)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.backward(model(torch.randn(8, 4)).pow(2).sum())
    optimizer.step()
    optimizer.zero_grad()
    return accelerator, model, optimizer


def run_state(**extra):
    return {"config_fingerprint": config_fingerprint(RUN_CONFIG), "run_config": RUN_CONFIG, **extra}


def test_save_load_round_trip_restores_model_and_optimizer(trained, tmp_path):
    accelerator, model, optimizer = trained
    path = save_checkpoint(accelerator, tmp_path, step=7, run_state=run_state(epoch=1))
    assert path == tmp_path / "checkpoint-7"
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    saved_exp_avg = [s["exp_avg"].clone() for s in optimizer.state_dict()["state"].values()]

    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    accelerator.backward(model(torch.randn(8, 4)).sum())
    optimizer.step()

    state = load_checkpoint(accelerator, path)
    assert state["step"] == 7 and state["epoch"] == 1
    for key, value in model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    restored = [s["exp_avg"] for s in optimizer.state_dict()["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(restored, saved_exp_avg, strict=True))


def test_checkpoint_opens_with_plain_tools(trained, tmp_path):
    accelerator, model, _ = trained
    path = save_checkpoint(accelerator, tmp_path, step=1, run_state=run_state())
    weights = load_file(path / "model.safetensors")
    assert set(weights) == set(model.state_dict())
    optimizer_state = torch.load(path / "optimizer.bin", weights_only=True)
    assert "state" in optimizer_state and "param_groups" in optimizer_state
    state = json.loads((path / RUN_STATE_NAME).read_text())
    assert state["step"] == 1 and state["config_fingerprint"] == config_fingerprint(RUN_CONFIG)
    assert not list(tmp_path.glob("*.tmp"))


def test_interrupted_save_leaves_previous_checkpoint_latest(trained, tmp_path):
    accelerator, *_ = trained
    first = save_checkpoint(accelerator, tmp_path, step=10, run_state=run_state())
    # a crash during the save of step 20: the staging folder exists, complete or not
    crashed = tmp_path / "checkpoint-20.tmp"
    crashed.mkdir()
    (crashed / "model.safetensors").write_bytes(b"partial")
    # and a folder that has its final name but no run state (not written by save_checkpoint)
    (tmp_path / "checkpoint-30").mkdir()
    assert find_latest_checkpoint(tmp_path) == first
    assert list_checkpoints(tmp_path) == [first]
    # the next save of that step starts from a clean staging folder
    second = save_checkpoint(accelerator, tmp_path, step=20, run_state=run_state())
    assert not crashed.exists()
    assert find_latest_checkpoint(tmp_path) == second
    assert load_file(second / "model.safetensors")


def test_total_limit_keeps_the_newest(trained, tmp_path):
    accelerator, *_ = trained
    for step in (5, 10, 15, 20):
        save_checkpoint(accelerator, tmp_path, step=step, run_state=run_state(), total_limit=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["checkpoint-15", "checkpoint-20"]
    with pytest.raises(ValueError, match="total_limit"):
        save_checkpoint(accelerator, tmp_path, step=25, run_state=run_state(), total_limit=0)


def test_saving_an_existing_step_replaces_it(trained, tmp_path):
    accelerator, *_ = trained
    save_checkpoint(accelerator, tmp_path, step=5, run_state=run_state(epoch=0))
    save_checkpoint(accelerator, tmp_path, step=5, run_state=run_state(epoch=3))
    assert read_run_state(tmp_path / "checkpoint-5")["epoch"] == 3
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-5"]


def test_resolve_checkpoint(trained, tmp_path):
    accelerator, *_ = trained
    assert resolve_checkpoint(tmp_path, None) is None
    assert resolve_checkpoint(tmp_path, "latest") is None  # fresh start: nothing to resume yet
    save_checkpoint(accelerator, tmp_path, step=3, run_state=run_state())
    newest = save_checkpoint(accelerator, tmp_path, step=12, run_state=run_state())
    assert resolve_checkpoint(tmp_path, "latest") == newest
    assert resolve_checkpoint(tmp_path, str(tmp_path / "checkpoint-3")) == tmp_path / "checkpoint-3"
    with pytest.raises(CheckpointError, match="no such folder"):
        resolve_checkpoint(tmp_path, str(tmp_path / "checkpoint-99"))
    (tmp_path / "incomplete").mkdir()
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        resolve_checkpoint(tmp_path, str(tmp_path / "incomplete"))


def test_output_dir_of_another_run_is_refused(trained, tmp_path):
    accelerator, *_ = trained
    check_output_dir(tmp_path / "new", RUN_CONFIG, resuming=False, overwrite=False)  # empty: fine
    save_checkpoint(accelerator, tmp_path, step=4, run_state=run_state())
    other = {**RUN_CONFIG, "learning_rate": 3e-4}
    with pytest.raises(OutputDirError, match="another run") as info:
        check_output_dir(tmp_path, other, resuming=False, overwrite=False)
    assert "learning_rate" in str(info.value) and "--overwrite_output_dir" in str(info.value)
    with pytest.raises(OutputDirError, match="another run"):
        check_output_dir(tmp_path, other, resuming=True, overwrite=False)
    with pytest.raises(OutputDirError, match="--resume_from_checkpoint latest"):
        check_output_dir(tmp_path, RUN_CONFIG, resuming=False, overwrite=False)
    check_output_dir(tmp_path, RUN_CONFIG, resuming=True, overwrite=False)
    check_output_dir(tmp_path, other, resuming=False, overwrite=True)


def test_check_same_run_names_the_differences():
    state = run_state()
    check_same_run(state, dict(RUN_CONFIG), where="ckpt")
    with pytest.raises(CheckpointError, match="seed"):
        check_same_run(state, {**RUN_CONFIG, "seed": 1}, where="ckpt")


def test_clear_checkpoints_removes_only_checkpoints(trained, tmp_path):
    accelerator, *_ = trained
    save_checkpoint(accelerator, tmp_path, step=1, run_state=run_state())
    (tmp_path / "checkpoint-2.tmp").mkdir()
    (tmp_path / "config.yaml").write_text("seed: 0\n")
    (tmp_path / "runs").mkdir()
    removed = clear_checkpoints(tmp_path)
    assert sorted(p.name for p in removed) == ["checkpoint-1", "checkpoint-2.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "runs"]


def test_fingerprint_and_diff():
    assert config_fingerprint({"a": 1, "b": [1, 2]}) == config_fingerprint({"b": [1, 2], "a": 1})
    assert config_fingerprint({"a": 1}) != config_fingerprint({"a": 2})
    assert config_diff({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 0}) == {"b": (2, 3), "c": (None, 0)}


def test_unknown_run_state_format_is_refused(tmp_path):
    folder = tmp_path / "checkpoint-1"
    folder.mkdir()
    (folder / RUN_STATE_NAME).write_text(json.dumps({"format": 99}))
    with pytest.raises(CheckpointError, match="format"):
        read_run_state(folder)


def test_remove_incomplete_checkpoints(trained, tmp_path):
    accelerator, *_ = trained
    kept = save_checkpoint(accelerator, tmp_path, step=2, run_state=run_state())
    (tmp_path / "checkpoint-4.tmp").mkdir()
    (tmp_path / "notes.tmp").mkdir()
    assert remove_incomplete_checkpoints(tmp_path) == [tmp_path / "checkpoint-4.tmp"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [kept.name, "notes.tmp"]
