"""Resuming a run from the Hub: the checkpoint a run pushed, back into a run folder.

A run pushed with the trainer's ``--hub_strategy checkpoint`` keeps its latest checkpoint in the
repo's ``last-checkpoint/`` (the HF Trainer's folder; rela-hf 0.2 pushed ``training_state/``,
still read until rela-hf 0.4). When the machine that ran it is gone, ``--resume_from_checkpoint
hub`` calls :func:`download_training_state` to put that checkpoint into the (new) output folder,
and the run continues exactly where the push left it: the weights, the EMA teacher, the
optimizer, the switch and the data position are all in it (the RNG pickles, never pushed, are
not needed: views and forward passes are seeded by position).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download

from rela_hf.checkpoint import CheckpointError, read_run_state
from rela_hf.hub.push import CHECKPOINT_DIR_IN_REPO, LEGACY_STATE_DIR
from rela_hf.run_layout import RUN_STATE_NAME, RunLayout

__all__ = ["download_training_state"]


def _pushed_checkpoint_dir(repo_files: list[str], repo_id: str = "the repo") -> str:
    """The repo folder holding a pushed checkpoint: ``last-checkpoint``, else the legacy
    ``training_state`` (with a FutureWarning).

    Raises:
        CheckpointError: neither holds a ``run_state.json`` (pushed with ``--hub_strategy end``?).
    """
    files = set(repo_files)
    if f"{CHECKPOINT_DIR_IN_REPO}/{RUN_STATE_NAME}" in files:
        return CHECKPOINT_DIR_IN_REPO
    if f"{LEGACY_STATE_DIR}/{RUN_STATE_NAME}" in files:
        warnings.warn(
            f"{repo_id} keeps its checkpoint in {LEGACY_STATE_DIR}/ (rela-hf 0.2); rela-hf pushes it to "
            f"{CHECKPOINT_DIR_IN_REPO}/ now and reads {LEGACY_STATE_DIR}/ until rela-hf 0.4.",
            FutureWarning,
            stacklevel=3,
        )
        return LEGACY_STATE_DIR
    raise CheckpointError(
        f"The Hub repo {repo_id!r} holds no {CHECKPOINT_DIR_IN_REPO}/ to resume from: train with "
        "--push_to_hub --hub_strategy checkpoint to keep the latest checkpoint there."
    )


def download_training_state(
    repo_id: str,
    output_dir: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """Download the repo's ``last-checkpoint/`` as ``<output_dir>/checkpoint-<step>``; return it.

    The checkpoint lands atomically (a staging folder renamed into place); the run's
    ``config.yaml`` and ``history.jsonl`` saved beside it go to the output folder's root when it
    has none yet, so the resumed run's curves continue the pushed ones.

    Raises:
        CheckpointError: the repo holds no checkpoint (pushed with ``--hub_strategy end``?).
    """
    run = RunLayout(output_dir)
    folder = _pushed_checkpoint_dir(HfApi(token=token).list_repo_files(repo_id, revision=revision), repo_id)
    with tempfile.TemporaryDirectory(prefix="rela_hf_pull_") as cache:
        snapshot = Path(
            snapshot_download(repo_id, revision=revision, token=token, cache_dir=cache, allow_patterns=[f"{folder}/*"])
        )
        state = snapshot / folder
        step = int(read_run_state(state)["step"])
        target = run.checkpoint_dir(step)
        run.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=run.root))
        try:
            for path in state.iterdir():
                if path.name in (run.CONFIG, run.HISTORY):
                    if not (run.root / path.name).exists():
                        shutil.copy2(path, run.root / path.name)
                    continue
                copy = shutil.copytree if path.is_dir() else shutil.copy2
                copy(path.resolve(), staging / path.name)
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target
