"""ReLATrainingArguments: what belongs to a run's identity, and resuming across an upgrade."""

from __future__ import annotations

import json

import pytest

from rela_hf.checkpoint import (
    RUN_STATE_FORMAT,
    RUN_STATE_NAME,
    CheckpointError,
    OutputDirError,
    check_output_dir,
    check_same_run,
    config_fingerprint,
)
from rela_hf.training import ReLATrainingArguments
from rela_hf.training.arguments import ADDED_OPTIONS


def arguments(tmp_path, **options) -> ReLATrainingArguments:
    return ReLATrainingArguments(dataset_name=str(tmp_path / "data"), output_dir=str(tmp_path / "run"), **options)


def older_run(tmp_path) -> dict:
    """The run config a rela-hf from before the 0.3 options would have checkpointed."""
    return {k: v for k, v in arguments(tmp_path).run_config().items() if k not in ADDED_OPTIONS}


def checkpointed(tmp_path, run_config: dict):
    run = tmp_path / "run"
    (run / "checkpoint-5").mkdir(parents=True)
    state = {
        "format": RUN_STATE_FORMAT,
        "step": 5,
        "config_fingerprint": config_fingerprint(run_config),
        "run_config": run_config,
    }
    (run / "checkpoint-5" / RUN_STATE_NAME).write_text(json.dumps(state))
    return run, state


def test_the_added_options_are_the_0_3_ones_at_their_defaults(tmp_path):
    assert ADDED_OPTIONS["view_pipeline"] == "pil" and ADDED_OPTIONS["handover"] == "hard"
    assert ADDED_OPTIONS["load_best_model_at_end"] is False and ADDED_OPTIONS["targets_dataset_name"] is None
    assert set(ADDED_OPTIONS) <= set(arguments(tmp_path).run_config())


def test_a_run_from_before_the_options_resumes_when_they_keep_the_old_behaviour(tmp_path):
    run, state = checkpointed(tmp_path, older_run(tmp_path))
    check_output_dir(run, arguments(tmp_path).run_config(), resuming=True, overwrite=False, added_options=ADDED_OPTIONS)
    check_same_run(state, arguments(tmp_path).run_config(), where="checkpoint-5", added_options=ADDED_OPTIONS)


def test_a_new_behaviour_is_another_run_and_the_message_names_it(tmp_path):
    run, state = checkpointed(tmp_path, older_run(tmp_path))
    changed = arguments(tmp_path, view_pipeline="batched", handover="fade").run_config()
    with pytest.raises(OutputDirError, match=r"'handover': \(None, 'fade'\).*'view_pipeline': \(None, 'batched'\)"):
        check_output_dir(run, changed, resuming=True, overwrite=False, added_options=ADDED_OPTIONS)
    with pytest.raises(CheckpointError, match="view_pipeline"):
        check_same_run(state, changed, where="checkpoint-5", added_options=ADDED_OPTIONS)


def test_without_the_table_any_missing_option_is_a_difference(tmp_path):
    run, _ = checkpointed(tmp_path, older_run(tmp_path))
    with pytest.raises(OutputDirError, match="view_pipeline"):
        check_output_dir(run, arguments(tmp_path).run_config(), resuming=True, overwrite=False)
