"""What a training run leaves behind: the exported backbone, ``training_summary.json``, Hub pushes.

The backbone is exported in timm format (``backbone/``: loads with ``timm.create_model(
"local-dir:...")`` and ``transformers.AutoModel``) next to a :class:`~rela_hf.run_layout.TrainingSummary`
of the run. With ``push_to_hub`` the run is published when ``hub_strategy`` says, as the HF
Trainer does: at the end, or also at every save in the background (``every_save``: backbone, card,
curves; ``checkpoint``: the same plus ``last-checkpoint/``), by the main process only
(:class:`HubPublisher` over :class:`~rela_hf.hub.RunPusher`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from accelerate.logging import get_logger

import rela_hf
from rela_hf.hub import RunPusher, export_backbone
from rela_hf.preprocessing import official_data_config
from rela_hf.run_layout import RunLayout, TrainingSummary
from rela_hf.switch import PHASE_RELA
from rela_hf.training.fsdp import gather_full_state, is_sharded
from rela_hf.training.student import build_backbone

if TYPE_CHECKING:
    from accelerate import Accelerator

    from rela_hf.model import ReLAStudent
    from rela_hf.switch import AdaptiveSwitch, StaticSwitch
    from rela_hf.training.arguments import ReLATrainingArguments
    from rela_hf.training.optimization import Budget
    from rela_hf.training.state import RunState

__all__ = ["HubPublisher", "build_summary", "export_run"]

logger = get_logger(__name__)


def build_summary(
    args: ReLATrainingArguments,
    accelerator: Accelerator,
    state: RunState,
    budget: Budget,
    *,
    model: ReLAStudent,
    switch: AdaptiveSwitch | StaticSwitch | None,
    target_dim: int | None,
    provenance: dict[str, Any],
    checkpoint: Path,
    exported_step: int | None = None,
) -> TrainingSummary:
    """The run so far, as ``training_summary.json`` records it (the same on every process)."""
    method = model.method
    device = accelerator.device
    best = state.best or {}
    return TrainingSummary(
        method=args.method,
        use_rela=args.use_rela,
        switch_rule=args.switch_rule if args.use_rela else None,
        switch_fraction=args.switch_fraction if args.use_rela else None,
        # optimizer step whose statistics triggered the switch (the last ReLA step); None: never
        switch_step=switch.switch_step if switch is not None else None,
        switch_state=switch.state_dict() if switch is not None else None,  # rho, loss EMAs
        phase=PHASE_RELA if switch is not None and not switch.switched else method.name,
        steps=state.step,
        total_steps=budget.total_steps,
        epochs=state.step / budget.steps_per_epoch,
        images_seen=state.images_seen,
        global_batch_size=budget.images_per_micro_batch * args.gradient_accumulation_steps,
        num_processes=accelerator.num_processes,
        device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        mixed_precision=accelerator.mixed_precision,
        wall_clock_seconds=round(state.train_seconds, 3),
        final_metrics={k.removeprefix("train/"): v for k, v in state.last_metrics.items()},
        backbone=args.backbone,
        dataset=args.dataset_name,
        dataset_config=args.dataset_config_name,
        dataset_revision=args.dataset_revision,
        train_split=args.train_split,
        **provenance,
        target_dim=target_dim,
        data_ratio=args.data_ratio,
        image_size=args.image_size,
        checkpoint=checkpoint.name,
        rela_hf_version=rela_hf.__version__,
        handover=dataclasses.asdict(args.handover_rule()) if args.use_rela else None,
        metric_for_best_model=args.metric_for_best_model if args.load_best_model_at_end else None,
        best_step=best.get("step"),
        best_metric_value=best.get("value"),
        exported_step=state.step if exported_step is None else exported_step,
    )


def export_run(
    args: ReLATrainingArguments, accelerator: Accelerator, model: torch.nn.Module, summary: TrainingSummary
) -> None:
    """The backbone in timm format and ``training_summary.json``, written by the main process.

    Every process calls it: a sharded (FSDP) student's backbone is gathered first.
    """
    student = accelerator.unwrap_model(model, keep_torch_compile=False)
    backbone = _full_backbone(args, student)
    if not accelerator.is_main_process:
        return
    assert backbone is not None  # _full_backbone gathers the full weights on the main process
    layout = RunLayout(args.output_dir)
    method = student.method
    export_backbone(
        backbone,
        layout.backbone_dir,
        data_config=official_data_config(args.image_size),
        pretrained_cfg={
            "tag": f"rela_{method.name}" if args.use_rela else method.name,
            "description": f"{'ReLA-accelerated ' if args.use_rela else ''}{method.title}-"
            "pretrained backbone (rela-hf).",
        },
    )
    summary.save(layout.summary_file)


def _full_backbone(args: ReLATrainingArguments, student: ReLAStudent) -> torch.nn.Module | None:
    """The student's backbone with its full weights (on the main process; ``None`` elsewhere)."""
    if not is_sharded(student):
        return student.backbone
    state = gather_full_state(student.backbone)  # a collective: every process takes part
    if state is None:
        return None
    backbone = build_backbone(args)
    backbone.load_state_dict(state, strict=True)
    return backbone


class HubPublisher:
    """The run's pushes (``push_to_hub``, ``hub_strategy``, ``hub_always_push``): main process only.

    At a save the main process stages a snapshot and goes on; the upload runs in the background
    (:class:`~rela_hf.hub.RunPusher`). The other processes never touch the network, so no process
    waits for it. The final push waits for the ones in flight, after the last collective.

    Args:
        args: the run's options (``output_dir`` and the hub group).
        accelerator: the run's Accelerator (only its main process pushes).
    """

    def __init__(self, args: ReLATrainingArguments, accelerator: Accelerator) -> None:
        self.pusher: RunPusher | None = None
        if args.push_to_hub and accelerator.is_main_process:
            assert args.hub_model_id is not None  # ReLATrainingArguments: push_to_hub needs it
            self.pusher = RunPusher(
                args.output_dir,
                args.hub_model_id,
                strategy=args.hub_strategy,
                always_push=args.hub_always_push,
                private=args.hub_private_repo or None,
            )

    def pushes_this_save(self, step: int) -> bool:
        """Whether this process pushes at the save of ``step`` (so the trainer exports the backbone
        first): the main process, a strategy that pushes at saves, and no push uploading (unless
        ``hub_always_push``; a skipped save is logged)."""
        if self.pusher is None:
            return False
        if self.pusher.will_push_at_save():
            return True
        self.pusher.log_skipped(step)
        return False

    def push_save(self, checkpoint: Path, step: int) -> None:
        """Start the push of this save in the background (after the save's export)."""
        if self.pusher is not None:
            self.pusher.push_save(checkpoint, step)

    def push_final(self, checkpoint: Path) -> None:
        """Wait for the pushes in flight, then the final push (main process, after the last collective).

        A failed push (PushError, after huggingface_hub's retries) ends the main process loudly
        without leaving the others waiting; re-push with ``rela-hf-push``.
        """
        if self.pusher is None:
            return
        commit = self.pusher.push_final(checkpoint)
        logger.info(f"Pushed to the Hub: {commit.commit_url}", main_process_only=True)
