"""Tests for rela_hf.run_layout: the run folder's names and the training summary's schema."""

from __future__ import annotations

import dataclasses
import json

import pytest

from rela_hf.run_layout import CHECKPOINT_PREFIX, RUN_STATE_NAME, RunLayout, TrainingSummary


def test_layout_names_every_file_of_a_run(tmp_path):
    layout = RunLayout(tmp_path)
    assert {
        path.name
        for path in (
            layout.config_file,
            layout.history_file,
            layout.summary_file,
            layout.backbone_dir,
            layout.eval_results_file,
            layout.logging_dir,
        )
    } == {"config.yaml", "history.jsonl", "training_summary.json", "backbone", "eval_results.json", "runs"}
    assert layout.checkpoint_dir(500) == tmp_path / f"{CHECKPOINT_PREFIX}500"
    assert layout.targets_cache_dir("abc") == tmp_path / "rela_targets" / "abc"
    assert RUN_STATE_NAME == "run_state.json"


def test_summary_round_trip_and_partial_summaries(tmp_path):
    summary = TrainingSummary(method="dino", use_rela=True, switch_step=12, steps=30, final_metrics={"loss": 0.5})
    path = summary.save(tmp_path / "training_summary.json")
    assert TrainingSummary.load(path) == summary
    assert set(json.loads(path.read_text())) == {f.name for f in dataclasses.fields(TrainingSummary)}
    assert TrainingSummary.from_dict({}) == TrainingSummary()  # nothing recorded: every field None
    assert TrainingSummary.from_dict({"wall_clock_s": 3.0}).wall_clock_seconds == 3.0  # early rela-hf
    # rela-hf 0.2: method said whether ReLA ran, ssl_method named the method
    former = TrainingSummary.from_dict({"method": "baseline", "ssl_method": "simclr"})
    assert (former.method, former.use_rela) == ("simclr", False)
    assert TrainingSummary.from_dict({"method": "rela"}).method == "byol"


def test_unknown_summary_fields_are_an_error():
    with pytest.raises(ValueError, match=r"Unknown training summary fields \['extra'\]"):
        TrainingSummary.from_dict({"method": "rela", "extra": 1})
