"""Resuming a run from the Hub: the ``training_state/`` a run pushed, back into a run folder.

A run pushed with the trainer's ``--hub_strategy every_save`` or ``checkpoint`` keeps its latest
checkpoint on the Hub (:func:`rela_hf.hub.push.push_training_state`). When the machine that ran it
is gone, ``--resume_from_checkpoint hub`` calls :func:`download_training_state` to put that
checkpoint into the (new) output folder, and the run continues exactly where the push left it:
the weights, the EMA teacher, the optimizer, the switch and the data position are all in it (the
RNG pickles, never pushed, are not needed: views and forward passes are seeded by position).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from huggingface_hub import snapshot_download

from rela_hf.checkpoint import CheckpointError, read_run_state
from rela_hf.hub.push import TRAINING_STATE_DIR
from rela_hf.run_layout import RUN_STATE_NAME, RunLayout

__all__ = ["download_training_state"]


def download_training_state(
    repo_id: str,
    output_dir: str | os.PathLike,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
) -> Path:
    """Download ``<repo_id>/training_state/`` as ``<output_dir>/checkpoint-<step>``; return it.

    The checkpoint lands atomically (a staging folder renamed into place); the run's
    ``config.yaml`` and ``history.jsonl`` saved beside it go to the output folder's root when it
    has none yet, so the resumed run's curves continue the pushed ones.

    Raises:
        CheckpointError: the repo holds no training state (pushed with ``--hub_strategy end``?).
    """
    run = RunLayout(output_dir)
    with tempfile.TemporaryDirectory(prefix="rela_hf_pull_") as cache:
        snapshot = Path(snapshot_download(repo_id, revision=revision, token=token, cache_dir=cache,
                                          allow_patterns=[f"{TRAINING_STATE_DIR}/*"]))
        state = snapshot / TRAINING_STATE_DIR
        if not (state / RUN_STATE_NAME).is_file():
            raise CheckpointError(
                f"The Hub repo {repo_id!r} holds no {TRAINING_STATE_DIR}/ to resume from: train with "
                "--push_to_hub --hub_strategy every_save (or checkpoint) to keep one there."
            )
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
