"""ReLATrainingArguments: what belongs to a run's identity (its checkpoint fingerprint)."""

from __future__ import annotations

import json

import pytest

from rela_hf.checkpoint import RUN_STATE_FORMAT, RUN_STATE_NAME, OutputDirError, check_output_dir, config_fingerprint
from rela_hf.training import ReLATrainingArguments
from rela_hf.training.arguments import ADDED_OPTIONS


def arguments(tmp_path, **options) -> ReLATrainingArguments:
    return ReLATrainingArguments(dataset_name=str(tmp_path / "data"), output_dir=str(tmp_path / "run"), **options)


def test_an_option_added_later_at_its_old_behaviour_is_not_part_of_the_identity(tmp_path):
    # a run checkpointed before --view_pipeline existed had PIL views: its config has no such key
    now = arguments(tmp_path).run_config()
    before = {key: value for key, value in now.items() if key not in ADDED_OPTIONS}
    assert "view_pipeline" not in now and config_fingerprint(now) == config_fingerprint(before)
    batched = arguments(tmp_path, view_pipeline="batched").run_config()
    assert batched["view_pipeline"] == "batched" and config_fingerprint(batched) != config_fingerprint(before)


def test_a_run_from_before_the_option_resumes_and_another_view_pipeline_is_refused(tmp_path):
    run = tmp_path / "run"
    before = {key: value for key, value in arguments(tmp_path).run_config().items() if key != "view_pipeline"}
    (run / "checkpoint-5").mkdir(parents=True)
    (run / "checkpoint-5" / RUN_STATE_NAME).write_text(json.dumps(
        {"format": RUN_STATE_FORMAT, "step": 5, "config_fingerprint": config_fingerprint(before), "run_config": before}))
    check_output_dir(run, arguments(tmp_path).run_config(), resuming=True, overwrite=False)
    with pytest.raises(OutputDirError, match="view_pipeline"):
        check_output_dir(run, arguments(tmp_path, view_pipeline="batched").run_config(), resuming=True,
                         overwrite=False)
