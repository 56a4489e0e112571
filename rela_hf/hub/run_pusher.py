"""Pushing a training run at its saves without making training wait, as the HF Trainer does.

The trainer's ``--hub_strategy`` (the HF ``TrainingArguments`` names and meanings):

- ``end``: one push, when training ends;
- ``every_save``: at every save, the model (timm export), card, curves and summary;
- ``checkpoint``: as ``every_save``, plus the checkpoint in the repo's ``last-checkpoint/``, so a
  run can resume from the Hub (``--resume_from_checkpoint hub``).

A push at a save runs in the background (``HfApi.run_as_future``: one worker thread, jobs in
order): the training loop only *stages* a snapshot of what will be pushed (hard links of the
immutable checkpoint and export files, copies of the small files the run rewrites in place)
and goes on. The snapshot, not the run folder, is uploaded, so the next checkpoint's pruning or
writing cannot change a push under way. While a push is still uploading, the next save pushes
nothing (``always_push``: it queues behind it); the final push first waits for the ones in
flight, then pushes the final state, so the Hub ends with it. A failed background push is logged
and training goes on (the next save pushes again); a failed final push raises
:class:`~rela_hf.hub.push.PushError`.
"""

from __future__ import annotations

import concurrent.futures
import logging
import os
import shutil
import tempfile
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi

from rela_hf.hub.push import (
    CHECKPOINT_DIR_IN_REPO,
    PushError,
    build_hub_folder,
    create_hub_repo,
    place_file,
    publishable_files,
    upload_to_hub,
)
from rela_hf.run_layout import RunLayout

logger = logging.getLogger(__name__)

__all__ = ["HUB_STRATEGIES", "RunPusher", "stage_snapshot"]

#: ``--hub_strategy`` values (the HF Trainer's; ``all_checkpoints`` is not offered).
HUB_STRATEGIES = ("end", "every_save", "checkpoint")
#: Snapshots being pushed live in ``<output_dir>/.hub-push-*`` (hidden: never a checkpoint,
#: never published); a killed run's leftovers are removed when the next run starts.
STAGING_PREFIX = ".hub-push-"
SAVE_MESSAGE = "Training in progress, step {step}"
FINAL_MESSAGE = "End of training"


@dataclass
class BackgroundPush:
    """One push started at a save: its step and the future of its ``CommitInfo``."""

    step: int
    future: Future


def stage_snapshot(output_dir: str | os.PathLike, checkpoint: Path | None) -> Path:
    """A consistent copy of what a push reads, in ``<output_dir>/.hub-push-*/run``; returns it.

    Hard links (the same bytes, no copy; a copy where links are impossible) of the backbone
    export and the checkpoint's files, which are written once into new folders and never
    rewritten in place; copies of ``training_summary.json``, ``config.yaml``, ``history.jsonl``
    and ``eval_results.json``, which the run rewrites or appends to. Pickles stay behind.
    """
    run = RunLayout(output_dir)
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=run.root))
    snapshot = RunLayout(staging / "run")
    snapshot.backbone_dir.mkdir(parents=True)
    for path in run.backbone_dir.iterdir():
        if path.is_file():
            place_file(path, snapshot.backbone_dir / path.name, link=True)
    for path in (run.summary_file, run.config_file, run.history_file, run.eval_results_file):
        if path.is_file():
            shutil.copy2(path, snapshot.root / path.name)
    if checkpoint is not None:
        target = snapshot.root / checkpoint.name
        for path in publishable_files(checkpoint):
            (target / path.relative_to(checkpoint)).parent.mkdir(parents=True, exist_ok=True)
            place_file(path, target / path.relative_to(checkpoint), link=True)
    return snapshot.root


def remove_stale_snapshots(output_dir: str | os.PathLike) -> list[Path]:
    """Delete the snapshots a killed run left in ``output_dir`` (their pushes never finished)."""
    root = Path(output_dir)
    stale = sorted(root.glob(f"{STAGING_PREFIX}*")) if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


class RunPusher:
    """Pushes one training run to one Hub repo: at its saves in the background, and at its end.

    Args:
        output_dir: the run's folder (``backbone/``, ``checkpoint-<step>/``, summary, history).
        repo_id: ``"org/name"``; created at the first push if missing.
        strategy: one of :data:`HUB_STRATEGIES`.
        always_push: push at every save even while the previous push is still uploading (the
            pushes queue); default: skip that save's push (the HF Trainer's ``hub_always_push``).
        private: visibility of a newly created repo (``None``: the Hub's default).
        token: Hub token (default: the logged-in one / ``HF_TOKEN``); never logged.
        endpoint: another Hub endpoint (default ``HF_ENDPOINT``).
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        repo_id: str,
        *,
        strategy: str = "every_save",
        always_push: bool = False,
        private: bool | None = None,
        token: str | bool | None = None,
        endpoint: str | None = None,
    ) -> None:
        if strategy not in HUB_STRATEGIES:
            raise ValueError(f"hub strategy must be one of {', '.join(HUB_STRATEGIES)}, got {strategy!r}.")
        self.output_dir, self.repo_id, self.strategy = Path(output_dir), repo_id, strategy
        self.always_push, self.private = always_push, private
        self.api = HfApi(endpoint=endpoint, token=token)
        self.pushes: list[BackgroundPush] = []
        self._repo_created = False
        for path in remove_stale_snapshots(self.output_dir):
            logger.info("Removed %s, the snapshot of a push that an earlier run did not finish.", path)

    @property
    def in_flight(self) -> list[BackgroundPush]:
        """The background pushes not finished yet (queued or uploading)."""
        return [push for push in self.pushes if not push.future.done()]

    def will_push_at_save(self) -> bool:
        """Whether :meth:`push_save` would push now (the strategy pushes at saves, and no push is
        uploading or ``always_push``); callers skip preparing the export when not."""
        return self.strategy != "end" and (self.always_push or not self.in_flight)

    def log_skipped(self, step: int) -> None:
        """Say why the save at ``step`` is not pushed (a push still uploading)."""
        if self.strategy != "end":
            uploading = ", ".join(str(push.step) for push in self.in_flight)
            logger.info(
                "Step %d not pushed: the push of step %s is still uploading (hub_always_push queues every save).",
                step,
                uploading,
            )

    def push_save(self, checkpoint: Path, step: int) -> Future | None:
        """Stage the run at this save and push it in the background; ``None`` when skipped.

        Call after the save's export (``backbone/``, ``training_summary.json``) is written.
        Returns at once: the future holds the ``CommitInfo`` (or the :class:`PushError`).
        """
        if not self.will_push_at_save():
            self.log_skipped(step)
            return None
        snapshot = stage_snapshot(self.output_dir, checkpoint if self.strategy == "checkpoint" else None)
        future = self.api.run_as_future(self._push_in_background, snapshot, checkpoint.name, step)
        self.pushes.append(BackgroundPush(step, future))
        return future

    def wait(self) -> list[BaseException]:
        """Wait for every background push; returns the errors of those that failed."""
        if self.in_flight:
            logger.info("Waiting for %d push(es) to %s to finish.", len(self.in_flight), self.repo_id)
        concurrent.futures.wait([push.future for push in self.pushes])
        errors = [push.future.exception() for push in self.pushes]
        return [error for error in errors if error is not None]

    def push_final(self, checkpoint: Path) -> Any:
        """Wait for the pushes in flight, then push the final state (blocking).

        Returns:
            The final commit's ``CommitInfo``.

        Raises:
            PushError: the final push failed (naming the repo; the run's files are intact).
        """
        self.wait()
        include_checkpoint = self.strategy == "checkpoint"
        snapshot = stage_snapshot(self.output_dir, checkpoint if include_checkpoint else None)
        return self._push_snapshot(snapshot, checkpoint.name, FINAL_MESSAGE)

    def _push_snapshot(self, snapshot: Path, checkpoint_name: str, message: str) -> Any:
        """Build the repo folder from a staged snapshot and upload it; the snapshot is removed."""
        staging = snapshot.parent
        try:
            with_checkpoint = (snapshot / checkpoint_name).is_dir()
            folder = build_hub_folder(
                snapshot,
                staging / "repo",
                repo_id=self.repo_id,
                link=True,
                include_training_state=with_checkpoint,
                checkpoint=snapshot / checkpoint_name if with_checkpoint else None,
            )
            if not self._repo_created:
                create_hub_repo(self.api, self.repo_id, private=self.private)
                self._repo_created = True
            return upload_to_hub(
                self.api,
                folder,
                self.repo_id,
                commit_message=message,
                delete_patterns=[f"{CHECKPOINT_DIR_IN_REPO}/*"] if with_checkpoint else None,
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def _push_in_background(self, snapshot: Path, checkpoint_name: str, step: int) -> Any:
        """:meth:`_push_snapshot` in the worker thread, logged before its future completes."""
        try:
            commit = self._push_snapshot(snapshot, checkpoint_name, SAVE_MESSAGE.format(step=step))
        except Exception as error:  # building the card/plot or the upload: never stops training
            logger.warning(
                "Push of step %d failed, training continues (the next save pushes again): %s",
                step,
                error if isinstance(error, PushError) else f"{type(error).__name__}: {error}",
            )
            raise
        logger.info("Pushed step %d to the Hub (%s): %s", step, self.strategy, commit.commit_url)
        return commit
