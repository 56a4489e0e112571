"""Atomic, resumable training checkpoints on top of ``accelerator.save_state``.

A checkpoint is a folder ``<output_dir>/checkpoint-<step>`` holding what Accelerate saves
(``model.safetensors`` with the online *and* EMA target networks, ``optimizer.bin``,
``scaler.pt`` with fp16, ``random_states_<rank>.pkl``) plus ``run_state.json``: the optimizer
step, the position in the epoch, the ReLA switch state, the sampler and scheduler states, the
tracker run and the resolved config with its fingerprint. All of it opens with plain tools:
safetensors, JSON, and ``torch.load(weights_only=True)`` for the optimizer and scaler (only
Accelerate's RNG pickles need ``weights_only=False``; the recipe's data pipeline is seeded per
sample, so an exact resume does not depend on them).

Writes are atomic: everything goes to ``checkpoint-<step>.tmp`` first, ``run_state.json`` is the
last file written, and ``os.replace`` then gives the folder its final name. A crash in the middle
leaves a ``.tmp`` folder that :func:`find_latest_checkpoint` ignores (and the next save removes),
so the previous checkpoint stays the latest usable one.

Usage, inside a training script with its ``accelerator`` (not a doctest)::

    save_checkpoint(accelerator, "out", step=500, run_state={"step": 500}, total_limit=3)
    latest = find_latest_checkpoint("out")  # out/checkpoint-500
    run_state = load_checkpoint(accelerator, latest)
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from safetensors import safe_open

from rela_hf.run_layout import CHECKPOINT_PREFIX, RUN_STATE_NAME

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = [
    "CHECKPOINT_PREFIX",
    "RUN_STATE_NAME",
    "CheckpointError",
    "OutputDirError",
    "check_output_dir",
    "check_same_run",
    "clear_checkpoints",
    "config_diff",
    "config_fingerprint",
    "find_latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "read_run_state",
    "remove_incomplete_checkpoints",
    "resolve_checkpoint",
    "save_checkpoint",
    "verify_checkpoint_files",
]

TMP_SUFFIX = ".tmp"
# 2: the SSL method's heads and teacher moved under `method.` in model.safetensors (rela-hf 0.2)
RUN_STATE_FORMAT = 2
_CHECKPOINT_RE = re.compile(rf"^{re.escape(CHECKPOINT_PREFIX)}(\d+)$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, incomplete or does not belong to this run."""


class OutputDirError(RuntimeError):
    """The output directory holds checkpoints that this run must not overwrite or mix with."""


def _canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """Short SHA-256 of a config mapping (key order does not matter).

    Pass only what defines the *run* (model, data, optimisation, seed); leave out what may change
    between a run and its resumption (output paths, logging, worker counts).

    Examples:
        >>> config_fingerprint({"lr": 1e-3, "seed": 0}) == config_fingerprint({"seed": 0, "lr": 1e-3})
        True
    """
    return hashlib.sha256(_canonical_json(dict(config)).encode()).hexdigest()[:16]


def config_diff(
    old: Mapping[str, Any], new: Mapping[str, Any], added_options: Mapping[str, Any] | None = None
) -> dict[str, tuple[Any, Any]]:
    """Keys whose values differ between two configs, as ``{key: (old, new)}``.

    Args:
        old: The checkpoint's config.
        new: This run's config.
        added_options: Options that a newer rela-hf added, with the value that reproduces what
            runs did before them: such a key, absent from ``old`` and at that value in ``new``,
            is no difference (a run checkpointed before an upgrade still resumes).

    Examples:
        >>> config_diff({"lr": 1e-3}, {"lr": 1e-3, "handover": "hard"}, {"handover": "hard"})
        {}
        >>> config_diff({"lr": 1e-3}, {"lr": 1e-3, "handover": "fade"}, {"handover": "hard"})
        {'handover': (None, 'fade')}
    """
    added_options = added_options or {}
    keys = sorted(set(old) | set(new))
    missing = object()
    diff = {}
    for key in keys:
        a, b = old.get(key, missing), new.get(key, missing)
        if a is missing and key in added_options and b == added_options[key]:
            continue
        if _canonical_json(a if a is not missing else "<unset>") != _canonical_json(
            b if b is not missing else "<unset>"
        ):
            diff[key] = (None if a is missing else a, None if b is missing else b)
    return diff


def _step_of(path: Path) -> int | None:
    match = _CHECKPOINT_RE.match(path.name)
    return int(match.group(1)) if match else None


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in ``output_dir``, oldest (lowest step) first.

    A checkpoint is complete when its folder has its final name and holds ``run_state.json``;
    ``.tmp`` folders left by an interrupted save are not listed.
    """
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        step = _step_of(path)
        if step is not None and path.is_dir() and (path / RUN_STATE_NAME).is_file():
            found.append((step, path))
    return [path for _, path in sorted(found)]


def find_latest_checkpoint(output_dir: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step, or ``None``."""
    checkpoints = list_checkpoints(output_dir)
    return checkpoints[-1] if checkpoints else None


def read_run_state(checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``run_state.json`` of a checkpoint folder."""
    path = Path(checkpoint_dir) / RUN_STATE_NAME
    if not path.is_file():
        raise CheckpointError(
            f"{checkpoint_dir} is not a complete checkpoint: {RUN_STATE_NAME} is missing (an "
            "interrupted save, or not a rela_hf checkpoint)."
        )
    state = json.loads(path.read_text())
    if state.get("format") != RUN_STATE_FORMAT:
        raise CheckpointError(
            f"{path} has run-state format {state.get('format')!r}; this version of rela_hf "
            f"reads format {RUN_STATE_FORMAT}."
        )
    return state


def verify_checkpoint_files(checkpoint_dir: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` if a weight or optimizer file of a checkpoint is damaged.

    Atomic saves never leave a half-written checkpoint, but a disk can still truncate or corrupt
    one later. Checked before any compute: every ``*.safetensors`` header must describe a file
    that is all there, every torch zip (``optimizer.bin``, ``scaler.pt``) must pass its CRCs.
    """
    folder = Path(checkpoint_dir)
    for path in sorted(folder.iterdir()):
        try:
            if path.suffix == ".safetensors":
                with safe_open(str(path), framework="pt"):
                    pass
            elif path.suffix in (".bin", ".pt") and zipfile.is_zipfile(path):
                with zipfile.ZipFile(path) as archive:
                    damaged = archive.testzip()
                if damaged is not None:
                    raise ValueError(f"CRC mismatch in {damaged}")
            elif path.suffix in (".bin", ".pt"):
                raise ValueError("not a complete torch file (no zip directory)")
        except Exception as error:  # the message says which file and what to do
            raise CheckpointError(
                f"{path} is damaged ({type(error).__name__}: {error}). Resume from an earlier "
                f"checkpoint (--resume_from_checkpoint {folder.parent}/{CHECKPOINT_PREFIX}<step>), "
                "or delete this one to make the previous one the latest."
            ) from error


def resolve_checkpoint(output_dir: str | os.PathLike, resume_from_checkpoint: str | None) -> Path | None:
    """Which checkpoint to resume from.

    Args:
        output_dir: The run's output directory.
        resume_from_checkpoint: ``None`` (start fresh), ``"latest"`` (the newest complete
            checkpoint in ``output_dir``, or a fresh start when there is none, so the same
            command line can (re)start a preemptible job), or a checkpoint folder path.

    Returns:
        The checkpoint folder, or ``None`` for a fresh start.
    """
    if resume_from_checkpoint is None:
        return None
    if resume_from_checkpoint == "latest":
        latest = find_latest_checkpoint(output_dir)
        if latest is not None:
            verify_checkpoint_files(latest)
        return latest
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise CheckpointError(
            f"--resume_from_checkpoint {resume_from_checkpoint}: no such folder. Pass a "
            f"{CHECKPOINT_PREFIX}<step> folder, or 'latest' to resume from the newest one in "
            f"{output_dir}."
        )
    read_run_state(path)  # complete and readable, or a clear error now
    verify_checkpoint_files(path)
    return path


def check_same_run(
    run_state: Mapping[str, Any],
    run_config: Mapping[str, Any],
    *,
    where: str,
    added_options: Mapping[str, Any] | None = None,
) -> None:
    """Raise :class:`CheckpointError` unless a checkpoint was written by a run with this config.

    Args:
        run_state: The checkpoint's ``run_state.json``.
        run_config: This run's fingerprinted config (see :func:`config_fingerprint`).
        where: The checkpoint, for the message.
        added_options: See :func:`config_diff`.
    """
    if run_state.get("config_fingerprint") == config_fingerprint(run_config):
        return
    diff = config_diff(run_state.get("run_config", {}), run_config, added_options)
    if not diff and "run_config" in run_state:
        return  # only options added since, at the value the checkpoint's run had
    raise CheckpointError(
        f"{where} was written by a run with another config (fingerprint "
        f"{run_state.get('config_fingerprint')}, this run's is {config_fingerprint(run_config)}); "
        f"differences (checkpoint, now): {diff}. Resume with the checkpoint's config "
        "(its config.yaml), or start a new run in another --output_dir."
    )


def check_output_dir(
    output_dir: str | os.PathLike,
    run_config: Mapping[str, Any],
    *,
    resuming: bool,
    overwrite: bool,
    added_options: Mapping[str, Any] | None = None,
) -> None:
    """Refuse to start a run in a folder that already holds checkpoints, unless told to.

    - ``overwrite``: allowed (the caller removes the old checkpoints with
      :func:`clear_checkpoints` before writing its own).
    - Resuming: the checkpoints must come from the same config (same fingerprint).
    - Otherwise any existing checkpoint is an error that names the flag to use.

    Args:
        output_dir: The run's output directory.
        run_config: This run's fingerprinted config.
        resuming: Whether the run resumes (``--resume_from_checkpoint``).
        overwrite: Whether ``--overwrite_output_dir`` was given.
        added_options: See :func:`config_diff`.

    Raises:
        OutputDirError: with the remedy in the message.
    """
    latest = find_latest_checkpoint(output_dir)
    if latest is None or overwrite:
        return
    state = read_run_state(latest)
    fingerprint = config_fingerprint(run_config)
    diff = config_diff(state.get("run_config", {}), run_config, added_options)
    if state.get("config_fingerprint") != fingerprint and (diff or "run_config" not in state):
        raise OutputDirError(
            f"{output_dir} holds checkpoints of another run (latest {latest.name}, config "
            f"fingerprint {state.get('config_fingerprint')}; this run's is {fingerprint}; "
            f"differences (theirs, yours): {diff}). Choose another --output_dir, pass "
            "--overwrite_output_dir to delete them, or resume that run with its own config."
        )
    if not resuming:
        raise OutputDirError(
            f"{output_dir} already holds checkpoints of this run (latest {latest.name}). Pass "
            "--resume_from_checkpoint latest to continue it, or --overwrite_output_dir to start "
            "over."
        )


def clear_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Delete every ``checkpoint-*`` folder (complete or not) of ``output_dir``; return them."""
    root = Path(output_dir)
    removed = []
    if root.is_dir():
        for path in sorted(root.iterdir()):
            name = path.name.removesuffix(TMP_SUFFIX)
            if path.is_dir() and _CHECKPOINT_RE.match(name):
                shutil.rmtree(path)
                removed.append(path)
    return removed


def remove_incomplete_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Delete the ``checkpoint-<step>.tmp`` staging folders that interrupted saves left behind.

    Call on the main process before training resumes; complete checkpoints are not touched.
    """
    root = Path(output_dir)
    removed = []
    if root.is_dir():
        for path in sorted(root.glob(f"{CHECKPOINT_PREFIX}*{TMP_SUFFIX}")):
            if path.is_dir() and _CHECKPOINT_RE.match(path.name.removesuffix(TMP_SUFFIX)):
                shutil.rmtree(path)
                removed.append(path)
    return removed


def _write_json_atomically(path: Path, value: Mapping[str, Any]) -> None:
    part = path.with_name(path.name + ".part")
    with open(part, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)


def _prune(checkpoints: Iterable[Path], limit: int, protect: Iterable[Path]) -> None:
    """Delete the oldest checkpoints beyond ``limit``, never one of ``protect`` (which count)."""
    protect = {Path(path).resolve() for path in protect if Path(path).is_dir()}
    candidates = [path for path in checkpoints if path.resolve() not in protect]
    excess = len(candidates) + len(protect) - limit
    for path in candidates[: max(excess, 0)]:
        shutil.rmtree(path, ignore_errors=True)


def save_checkpoint(
    accelerator: Accelerator,
    output_dir: str | os.PathLike,
    *,
    step: int,
    run_state: Mapping[str, Any],
    total_limit: int | None = None,
    keep: Iterable[str | os.PathLike] = (),
) -> Path:
    """Write ``<output_dir>/checkpoint-<step>`` atomically; call it on *every* process.

    All processes take part in ``accelerator.save_state`` (each writes its RNG state, the main
    process the weights and optimizer); only the main process then writes ``run_state.json``,
    renames the folder and prunes old checkpoints beyond ``total_limit``. With several nodes
    ``output_dir`` must be on a shared filesystem (Accelerate's default ``save_on_each_node=False``).

    Args:
        accelerator: The run's accelerator (the model, optimizer and scaler are prepared on it).
        output_dir: The run's output directory.
        step: Optimizer step; names the folder.
        run_state: JSON-serialisable run state (the recipe's loop position, switch, sampler ...).
        total_limit: Keep at most this many complete checkpoints (oldest removed first).
        keep: Checkpoints never pruned (the best one of ``load_best_model_at_end``); they count
            toward ``total_limit``.

    Returns:
        The final checkpoint folder.
    """
    if total_limit is not None and total_limit < 1:
        raise ValueError(f"checkpoints_total_limit must be >= 1 or None, got {total_limit}.")
    root = Path(output_dir)
    final = root / f"{CHECKPOINT_PREFIX}{step}"
    tmp = root / f"{CHECKPOINT_PREFIX}{step}{TMP_SUFFIX}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        if tmp.exists():  # left by a crash during an earlier save of the same step
            shutil.rmtree(tmp)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        _write_json_atomically(tmp / RUN_STATE_NAME, {"format": RUN_STATE_FORMAT, "step": step, **run_state})
        stale = None
        if final.exists():  # e.g. resumed from an older checkpoint and reached this step again
            stale = final.with_name(final.name + ".stale")
            if stale.exists():
                shutil.rmtree(stale)
            os.replace(final, stale)
        os.replace(tmp, final)
        if stale is not None:
            shutil.rmtree(stale, ignore_errors=True)
        if total_limit is not None:
            _prune(list_checkpoints(root), total_limit, protect=[final, *(Path(p) for p in keep)])
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Accelerator, checkpoint_dir: str | os.PathLike) -> dict[str, Any]:
    """Restore model, optimizer, scaler and RNG states; return the checkpoint's run state.

    Call after ``accelerator.prepare`` (Accelerate loads into the prepared objects).
    """
    run_state = read_run_state(checkpoint_dir)
    accelerator.load_state(str(checkpoint_dir))
    return run_state
