"""What a training run leaves behind: the exported backbone, ``training_summary.json``, Hub pushes.

The backbone is exported in timm format (``backbone/``: loads with ``timm.create_model(
"local-dir:...")`` and ``transformers.AutoModel``) next to a :class:`~rela_hf.run_layout.TrainingSummary`
of the run. With ``push_to_hub`` the run is published when ``hub_strategy`` says: at the end, or
at every checkpoint (``every_save``: backbone, card, curves and ``training_state/``;
``checkpoint``: ``training_state/`` only).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate.logging import get_logger

import rela_hf
from rela_hf.hub import PushError, export_backbone, push_training_output, push_training_state
from rela_hf.preprocessing import official_data_config
from rela_hf.run_layout import RunLayout, TrainingSummary
from rela_hf.switch import PHASE_RELA

if TYPE_CHECKING:
    from accelerate import Accelerator

    from rela_hf.model import ReLAStudent
    from rela_hf.switch import AdaptiveSwitch, StaticSwitch
    from rela_hf.training.arguments import ReLATrainingArguments
    from rela_hf.training.optimization import Budget
    from rela_hf.training.state import RunState

__all__ = ["build_summary", "export_run", "publish_checkpoint", "push_final"]

logger = get_logger(__name__)


def build_summary(args: ReLATrainingArguments, accelerator: Accelerator, state: RunState, budget: Budget, *,
                  model: ReLAStudent, switch: AdaptiveSwitch | StaticSwitch | None, target_dim: int | None,
                  provenance: dict[str, Any], checkpoint: Path, exported_step: int | None = None) -> TrainingSummary:
    """The run so far, as ``training_summary.json`` records it (the same on every process)."""
    method = model.method
    device = accelerator.device
    best = state.best or {}
    return TrainingSummary(
        method=args.method, use_rela=args.use_rela, switch_rule=args.switch_rule if args.use_rela else None,
        switch_fraction=args.switch_fraction if args.use_rela else None,
        # optimizer step whose statistics triggered the switch (the last ReLA step); None: never
        switch_step=switch.switch_step if switch is not None else None,
        switch_state=switch.state_dict() if switch is not None else None,  # rho, loss EMAs
        phase=PHASE_RELA if switch is not None and not switch.switched else method.name,
        steps=state.step, total_steps=budget.total_steps, epochs=state.step / budget.steps_per_epoch,
        images_seen=state.images_seen,
        global_batch_size=budget.images_per_micro_batch * args.gradient_accumulation_steps,
        num_processes=accelerator.num_processes, device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        mixed_precision=accelerator.mixed_precision, wall_clock_seconds=round(state.train_seconds, 3),
        final_metrics={k.removeprefix("train/"): v for k, v in state.last_metrics.items()},
        backbone=args.backbone, dataset=args.dataset_name, dataset_config=args.dataset_config_name,
        dataset_revision=args.dataset_revision, train_split=args.train_split, **provenance,
        target_dim=target_dim, data_ratio=args.data_ratio, image_size=args.image_size,
        checkpoint=checkpoint.name, rela_hf_version=rela_hf.__version__,
        handover=dataclasses.asdict(args.handover_rule()) if args.use_rela else None,
        metric_for_best_model=args.metric_for_best_model if args.load_best_model_at_end else None,
        best_step=best.get("step"), best_metric_value=best.get("value"),
        exported_step=state.step if exported_step is None else exported_step,
    )


def export_run(args: ReLATrainingArguments, accelerator: Accelerator, model: torch.nn.Module,
               summary: TrainingSummary) -> None:
    """The backbone in timm format and ``training_summary.json``, written by the main process."""
    if not accelerator.is_main_process:
        return
    layout = RunLayout(args.output_dir)
    method = accelerator.unwrap_model(model, keep_torch_compile=False).method
    export_backbone(
        accelerator.unwrap_model(model, keep_torch_compile=False).backbone, layout.backbone_dir,
        data_config=official_data_config(args.image_size),
        pretrained_cfg={"tag": f"rela_{method.name}" if args.use_rela else method.name,
                        "description": f"{'ReLA-accelerated ' if args.use_rela else ''}{method.title}-"
                                       "pretrained backbone (rela-hf)."},
    )
    summary.save(layout.summary_file)


def publish_checkpoint(args: ReLATrainingArguments, accelerator: Accelerator, checkpoint: Path, step: int) -> None:
    """``hub_strategy`` every_save / checkpoint: the latest progress on the Hub after a save.

    Call after :func:`export_run` for every_save (the pushed card describes that export). A
    failed push does not stop the run: the next save pushes again.
    """
    if not accelerator.is_main_process:
        return
    every_save = args.hub_strategy == "every_save"
    push = push_training_output if every_save else push_training_state
    kwargs = {"include_training_state": True} if every_save else {}
    try:
        commit = push(Path(args.output_dir), args.hub_model_id, checkpoint=checkpoint,
                      private=args.hub_private_repo or None, **kwargs)
        logger.info(f"Pushed step {step} to the Hub ({args.hub_strategy}): {commit.commit_url}")
    except PushError as error:  # the run goes on; the next save pushes again
        logger.warning(f"Push of step {step} to {args.hub_model_id} failed, training continues: {error}")


def push_final(args: ReLATrainingArguments, accelerator: Accelerator, checkpoint: Path) -> None:
    """The final push (main process, after the last collective).

    A failed push (PushError, after retries) ends the main process loudly without leaving the
    others waiting; re-push with ``rela-hf-push``.
    """
    if not (args.push_to_hub and accelerator.is_main_process):
        return
    commit = push_training_output(Path(args.output_dir), args.hub_model_id, private=args.hub_private_repo or None,
                                  include_training_state=args.hub_strategy != "end", checkpoint=checkpoint)
    logger.info(f"Pushed to the Hub: {commit.commit_url}", main_process_only=True)
