"""The trainer's checkpoints: decide fresh start or resume, save the run, restore it exactly.

On top of :mod:`rela_hf.checkpoint` (atomic folders through ``accelerator.save_state``): a
checkpoint holds the model (online networks and the method's teacher), the optimizer, the scaler
and the RNGs, plus the :class:`~rela_hf.training.state.RunState` as ``run_state.json`` (the
loop's position, the switch, sampler and scheduler states, the tracker run, the run's config and
fingerprint). Whose output folder it is, and whether a checkpoint belongs to this run, is decided
before any compute.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from accelerate.logging import get_logger

import rela_hf
from rela_hf.checkpoint import (
    check_output_dir,
    check_same_run,
    clear_checkpoints,
    config_fingerprint,
    load_checkpoint,
    read_run_state,
    remove_incomplete_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)
from rela_hf.errors import ConfigError
from rela_hf.hub import download_training_state
from rela_hf.run_layout import RunLayout
from rela_hf.training.arguments import ADDED_OPTIONS
from rela_hf.training.state import RunState

if TYPE_CHECKING:
    from accelerate import Accelerator

    from rela_hf.data import DataRatioSampler
    from rela_hf.switch import AdaptiveSwitch, StaticSwitch
    from rela_hf.training.arguments import ReLATrainingArguments

__all__ = ["RunComponents", "find_resume_checkpoint", "prepare_output_dir", "restore_run", "save_run"]

logger = get_logger(__name__)


@dataclasses.dataclass
class RunComponents:
    """The stateful parts a checkpoint saves beside the model and optimizer."""

    switch: AdaptiveSwitch | StaticSwitch | None
    sampler: DataRatioSampler
    scheduler: Any  # a torch LR scheduler


def find_resume_checkpoint(
    args: ReLATrainingArguments, accelerator: Accelerator
) -> tuple[Path | None, RunState | None]:
    """The checkpoint to resume (``None``: a fresh start) and its state, checked against this run.

    ``resume_from_checkpoint hub`` first downloads the ``last-checkpoint/`` the run pushed, then
    resumes it as ``latest``.
    """
    output_dir = Path(args.output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"output_dir {output_dir} is a file; pass a folder (it is created if missing).")
    resume = args.resume_from_checkpoint
    if resume == "hub":
        assert args.hub_model_id is not None  # ReLATrainingArguments refuses "hub" without it
        if accelerator.is_main_process:
            pulled = download_training_state(args.hub_model_id, output_dir)
            logger.info(f"Resuming from the Hub copy of {args.hub_model_id}: {pulled}")
        accelerator.wait_for_everyone()
        resume = "latest"
    resume_dir = resolve_checkpoint(output_dir, resume)
    run_config = args.run_config()
    check_output_dir(
        output_dir,
        run_config,
        resuming=resume_dir is not None,
        overwrite=args.overwrite_output_dir,
        added_options=ADDED_OPTIONS,
    )
    if resume_dir is None:
        return None, None
    values = read_run_state(resume_dir)
    check_same_run(values, run_config, where=str(resume_dir), added_options=ADDED_OPTIONS)
    return resume_dir, RunState.from_dict(values)


def prepare_output_dir(args: ReLATrainingArguments, accelerator: Accelerator, *, resuming: bool) -> None:
    """The run folder on the main process: old checkpoints cleared (``overwrite_output_dir``),
    interrupted saves removed, the resolved config written."""
    output_dir = Path(args.output_dir)
    if not accelerator.is_main_process:
        return
    if args.overwrite_output_dir and not resuming:
        for path in clear_checkpoints(output_dir):
            logger.info(f"overwrite_output_dir: removed {path}")
    output_dir.mkdir(parents=True, exist_ok=True)
    for path in remove_incomplete_checkpoints(output_dir):
        logger.info(f"Removed {path}, left by an interrupted save")
    RunLayout(output_dir).config_file.write_text(yaml.safe_dump(args.to_dict(), sort_keys=False))


def restore_run(accelerator: Accelerator, checkpoint: Path, state: RunState, components: RunComponents) -> RunState:
    """Load a checkpoint into the prepared objects; returns the run state to continue from."""
    load_checkpoint(accelerator, checkpoint)  # model + teacher, optimizer, scaler, RNG
    components.scheduler.load_state_dict(state.scheduler)
    assert state.sampler is not None  # a saved RunState holds every component's state
    components.sampler.load_state_dict(state.sampler)
    if components.switch is not None:
        assert state.switch is not None  # saved with the switch the run has
        components.switch.load_state_dict(state.switch)
    if state.rescale_position(accelerator.num_processes):
        logger.warning("Resuming mid-epoch with another number of processes: data order is not exact.")
    logger.info(f"Resumed from {checkpoint}: step {state.step}, epoch {state.epoch}, batch {state.batch_in_epoch}")
    return state


def save_run(
    args: ReLATrainingArguments,
    accelerator: Accelerator,
    state: RunState,
    components: RunComponents,
    *,
    batches_per_epoch: int,
) -> Path:
    """Write ``checkpoint-<step>`` (every process takes part); returns its folder. The best
    checkpoint so far (``state.best``) is never pruned."""
    saved = dataclasses.replace(
        state,
        last_metrics=dict(state.last_metrics),
        switch=components.switch.state_dict() if components.switch is not None else None,
        sampler=components.sampler.state_dict(),
        scheduler=components.scheduler.state_dict(),
        phase=components.switch.phase if components.switch is not None else state.phase,
        num_processes=accelerator.num_processes,
        config_fingerprint=config_fingerprint(args.run_config()),
        run_config=args.run_config(),
        config=args.to_dict(),
        rela_hf_version=rela_hf.__version__,
    )
    saved.at_epoch_end(batches_per_epoch)  # a finished epoch resumes at the next one
    keep = [Path(args.output_dir) / state.best["checkpoint"]] if state.best else []
    return save_checkpoint(
        accelerator,
        args.output_dir,
        step=state.step,
        run_state=saved.to_dict(),
        total_limit=args.checkpoints_total_limit,
        keep=keep,
    )
