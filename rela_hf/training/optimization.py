"""The trainer's optimisation pieces: the step budget, AdamW, the learning-rate schedule, the
teacher's momentum schedule and the ReLA switch.

The official ReLA code (arXiv:2405.14669) trains with AdamW (lr 1e-3, weight decay 0.01, constant
learning rate) and a constant EMA momentum of 0.99; the budget is counted in optimizer steps, after
gradient accumulation, from the prepared (per-process) DataLoader's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from transformers import get_scheduler

from rela_hf.momentum import cosine_momentum
from rela_hf.switch import AdaptiveSwitch, StaticSwitch, build_switch

if TYPE_CHECKING:
    from rela_hf.model import ReLAStudent
    from rela_hf.training.arguments import ReLATrainingArguments

__all__ = ["Budget", "build_optimizer", "build_scheduler", "build_training_switch", "momentum_at"]


@dataclass(frozen=True)
class Budget:
    """The run's length in optimizer steps.

    Attributes:
        steps_per_epoch: optimizer steps per epoch (per-process batches / accumulation).
        batches_per_epoch: per-process micro-batches per epoch.
        total_steps: ``max_train_steps``, else ``num_train_epochs x steps_per_epoch``.
        images_per_micro_batch: images of one micro-batch, all processes together.
    """

    steps_per_epoch: int
    batches_per_epoch: int
    total_steps: int
    images_per_micro_batch: int

    @classmethod
    def of(cls, args: ReLATrainingArguments, batches_per_epoch: int, num_processes: int) -> Budget:
        steps_per_epoch = math.ceil(batches_per_epoch / args.gradient_accumulation_steps)
        return cls(
            steps_per_epoch=steps_per_epoch,
            batches_per_epoch=batches_per_epoch,
            total_steps=args.max_train_steps or args.num_train_epochs * steps_per_epoch,
            images_per_micro_batch=args.per_device_train_batch_size * num_processes,
        )


def build_optimizer(args: ReLATrainingArguments, model: ReLAStudent) -> torch.optim.AdamW:
    """AdamW over the student's parameter groups (teacher and frozen transfer head excluded)."""
    return torch.optim.AdamW(model.parameter_groups(args.weight_decay), lr=args.learning_rate)


def build_scheduler(
    args: ReLATrainingArguments, optimizer: torch.optim.Optimizer, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The learning-rate schedule, stepped once per optimizer step.

    Not prepared by Accelerate on purpose: its scheduler wrapper steps ``num_processes`` times per
    optimizer step. ``optimizer``: the prepared optimizer's inner one.
    """
    return get_scheduler(
        args.lr_scheduler_type, optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=total_steps
    )


def build_training_switch(args: ReLATrainingArguments, total_steps: int) -> AdaptiveSwitch | StaticSwitch | None:
    """The ReLA -> method switch rule, ``None`` for the method alone."""
    if not args.use_rela:
        return None
    fraction = args.switch_fraction if args.switch_rule == "static" else None  # adaptive: unused
    return build_switch(args.switch_rule, fraction=fraction, total_steps=total_steps)


def momentum_at(args: ReLATrainingArguments, model: ReLAStudent, step: int, total_steps: int) -> float:
    """The teacher's EMA momentum at optimizer ``step``: the method's own schedule if it declares
    one, else ``momentum`` constant or cosine to 1.0 (the BYOL paper)."""
    if args.momentum_schedule == "constant":
        default = args.momentum
    else:
        default = cosine_momentum(step, total_steps, start=args.momentum, end=1.0)
    return model.teacher_momentum(step, total_steps, default)
