"""Tests for rela_hf.hub.history: the logged metrics and their plot."""

from __future__ import annotations

import pytest

from rela_hf.hub import (
    plot_training_history,
    read_training_history,
)


def test_read_training_history_from_jsonl_and_tensorboard(training_run, tmp_path):
    history = read_training_history(training_run)
    assert len(history) == 100 and history[0]["step"] == 10
    assert "loss" in history[0] and "train/loss" not in history[0]  # prefix dropped
    with (training_run / "history.jsonl").open("a") as f:  # a resumed run logs step 20 again
        f.write('{"step": 20, "train/loss": 7.0}\n{"step": 30, "trunc')  # + a torn last line
    history = read_training_history(training_run)
    assert len(history) == 100 and history[1] == {"step": 20, "loss": 7.0}
    from torch.utils.tensorboard import SummaryWriter

    tb_run = tmp_path / "tb"
    writer = SummaryWriter(str(tb_run / "runs" / "byol_rela"))
    for step in (10, 20, 30):
        writer.add_scalar("train/loss", 1.0 / step, step)
        writer.add_scalar("train/rho", step / 100, step)
    writer.close()
    history = read_training_history(tb_run)
    assert [r["step"] for r in history] == [10, 20, 30]
    assert history[1]["loss"] == pytest.approx(0.05) and history[2]["rho"] == pytest.approx(0.3)
    assert read_training_history(tmp_path / "nothing") == []


def test_plot_training_history_writes_a_png(training_run, tmp_path):
    path = plot_training_history(read_training_history(training_run), tmp_path / "curves.png", switch_step=612)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_training_history([{"step": 1, "phase": "rela"}], tmp_path / "none.png") is None
