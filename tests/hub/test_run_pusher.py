"""Tests for rela_hf.hub.run_pusher: a run's pushes at its saves, in the background, against a
test Hub made slow (each commit request waits before it is served)."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
import timm
import torch

from rela_hf.hub import PushError, RunPusher, export_backbone
from rela_hf.hub.run_pusher import STAGING_PREFIX
from tests.hub.test_push import _ScriptedServer

#: seconds each commit request waits on the slowed test Hub: far longer than anything the tests
#: do between starting a push and looking at the Hub
COMMIT_DELAY = 1.5


def _commit_titles(hub, repo_id: str) -> list[str]:
    return [commit.title for commit in reversed(hub.commits(repo_id))][1:]  # oldest first, no initial


def _next_save(run, step: int, *, export: bool = True) -> None:
    """What the trainer does between two saves: a new checkpoint folder, the old one pruned, a new
    export (``export``) and summary, more history."""
    old = next(run.glob("checkpoint-*"))
    new = run / f"checkpoint-{step}"
    shutil.copytree(old, new)
    (new / "run_state.json").write_text(json.dumps({"step": step}))
    shutil.rmtree(old)
    if export:
        torch.manual_seed(step)
        export_backbone(
            timm.create_model("test_resnet", num_classes=0), run / "backbone", pretrained_cfg={"tag": f"step-{step}"}
        )
    summary = json.loads((run / "training_summary.json").read_text())
    (run / "training_summary.json").write_text(json.dumps({**summary, "steps": step, "checkpoint": new.name}))
    with (run / "history.jsonl").open("a") as history:
        history.write(json.dumps({"step": step, "train/loss": 0.1}) + "\n")


def test_a_push_at_a_save_returns_before_the_upload_and_pushes_a_snapshot(hub, hub_namespace, training_run):
    repo_id = f"{hub_namespace}/background"
    pusher = RunPusher(training_run, repo_id, strategy="checkpoint")
    checkpoint = training_run / "checkpoint-1000"
    pushed = {name: (checkpoint / name).read_bytes() for name in ("model.safetensors", "run_state.json")}
    pushed_backbone = (training_run / "backbone" / "model.safetensors").read_bytes()
    with hub.slowed(COMMIT_DELAY, "/commit/"):
        future = pusher.push_save(checkpoint, 1000)
        assert future is not None and not future.done() and pusher.in_flight  # the caller goes on
        _next_save(training_run, 1500)  # prunes checkpoint-1000, rewrites export and summary
        commit = future.result(timeout=60)
    files = hub.files(repo_id)
    assert hub.commits(repo_id)[0].oid == commit.oid and _commit_titles(hub, repo_id) == [
        "Training in progress, step 1000"
    ]
    # what was staged at the save, not what the run holds now
    assert files["last-checkpoint/model.safetensors"] == pushed["model.safetensors"]
    assert files["last-checkpoint/run_state.json"] == pushed["run_state.json"]
    assert files["model.safetensors"] == pushed_backbone
    assert json.loads(files["training_summary.json"])["steps"] == 1000
    assert b"step-1500" not in files["config.json"]
    assert not [name for name in files if name.endswith(".pkl")]
    assert not list(training_run.glob(f"{STAGING_PREFIX}*"))  # the snapshot is gone once pushed


def test_saves_during_an_upload_are_skipped_and_the_final_push_waits(hub, hub_namespace, training_run, caplog):
    repo_id = f"{hub_namespace}/skipping"
    caplog.set_level(logging.INFO, logger="rela_hf.hub.run_pusher")
    pusher = RunPusher(training_run, repo_id, strategy="every_save")
    with hub.slowed(COMMIT_DELAY, "/commit/"):
        first = pusher.push_save(training_run / "checkpoint-1000", 1000)
        _next_save(training_run, 1500, export=False)
        assert not pusher.will_push_at_save()
        assert pusher.push_save(training_run / "checkpoint-1500", 1500) is None  # still uploading
        assert "Step 1500 not pushed: the push of step 1000 is still uploading" in caplog.text
        _next_save(training_run, 2000, export=False)
        pusher.push_final(training_run / "checkpoint-2000")  # waits for step 1000's upload first
    assert first.done() and first.exception() is None
    assert _commit_titles(hub, repo_id) == ["Training in progress, step 1000", "End of training"]
    files = hub.files(repo_id)
    assert json.loads(files["training_summary.json"])["steps"] == 2000  # the Hub ends with the final state
    assert not [name for name in files if name.startswith("last-checkpoint/")]  # every_save: no checkpoint


def test_always_push_queues_every_save_in_order(hub, hub_namespace, training_run):
    repo_id = f"{hub_namespace}/queued"
    pusher = RunPusher(training_run, repo_id, strategy="checkpoint", always_push=True)
    with hub.slowed(COMMIT_DELAY / 3, "/commit/"):
        for step in (1500, 2000):
            previous = next(training_run.glob("checkpoint-*"))
            assert pusher.push_save(previous, int(previous.name.split("-")[1])) is not None
            assert pusher.in_flight  # queued behind the previous push, or uploading
            _next_save(training_run, step, export=False)
        pusher.push_final(training_run / "checkpoint-2000")
    assert _commit_titles(hub, repo_id) == [
        "Training in progress, step 1000",
        "Training in progress, step 1500",
        "End of training",
    ]
    assert json.loads(hub.files(repo_id)["last-checkpoint/run_state.json"])["step"] == 2000


def test_a_failed_background_push_is_logged_and_the_next_save_pushes(hub, hub_namespace, training_run, caplog):
    repo_id = f"{hub_namespace}/recovering"
    proxy = _ScriptedServer(upstream=hub.url)
    caplog.set_level(logging.INFO, logger="rela_hf.hub.run_pusher")
    try:
        pusher = RunPusher(training_run, repo_id, strategy="checkpoint", endpoint=proxy.url)
        proxy.fail("/commit/", times=1, status=500)
        failed = pusher.push_save(training_run / "checkpoint-1000", 1000)
        assert isinstance(failed.exception(timeout=60), PushError)
        assert repo_id in str(failed.exception())
        assert "Push of step 1000 failed, training continues" in caplog.text
        _next_save(training_run, 1500, export=False)
        assert pusher.push_save(training_run / "checkpoint-1500", 1500).result(timeout=60)
        _next_save(training_run, 2000, export=False)
        proxy.fail("/commit/", times=1, status=500)
        with pytest.raises(PushError, match=repo_id):  # the final push does not fail quietly
            pusher.push_final(training_run / "checkpoint-2000")
    finally:
        proxy.close()
    assert _commit_titles(hub, repo_id) == ["Training in progress, step 1500"]
    assert not list(training_run.glob(f"{STAGING_PREFIX}*"))


def test_snapshots_of_a_killed_run_are_removed_and_the_token_stays_home(
    hub, hub_namespace, training_run, caplog, capfd
):
    stale = training_run / f"{STAGING_PREFIX}killed" / "run"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half")
    token = "hf_background_secret_0123456789"
    caplog.set_level(logging.DEBUG)
    repo_id = f"{hub_namespace}/secret-background"
    with hub.strict_auth(token):
        pusher = RunPusher(training_run, repo_id, strategy="checkpoint", token=token)
        assert not stale.parent.exists()
        pusher.push_save(training_run / "checkpoint-1000", 1000)
        pusher.push_final(training_run / "checkpoint-1000")
    assert all(token.encode() not in content for content in hub.files(repo_id).values())
    captured = capfd.readouterr()
    assert token not in caplog.text and token not in captured.out and token not in captured.err


def test_an_unknown_strategy_is_refused(training_run):
    with pytest.raises(ValueError, match="every_save, checkpoint"):
        RunPusher(training_run, "org/x", strategy="all_checkpoints")
