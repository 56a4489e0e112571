#!/usr/bin/env python
"""Overhead of the ReLA/BYOL trainer's step over a minimal hand-written PyTorch step.

Both sides train the same networks (same architecture, same initial weights) on the same batch
of precomputed views (real Fashion-MNIST images through the phase's view pipelines; no data
loading is timed):

- **trainer**: exactly what ``recipes/byol_rela.py`` runs per optimizer step (gradient
  accumulation 1): ``rela_hf.training.training_step`` on an Accelerate-prepared
  :class:`~rela_hf.model.ReLAStudent` with BYOL (``accumulate``, ``backward``, optimizer step, EMA
  update of the teacher), plus the loop's bookkeeping: the forward-pass seed, :class:`MetricMeans`,
  the lr-scheduler step and, in the ReLA phase, the switch's loss (a device-to-host read) and its
  finiteness check.
- **hand-written**: a plain loop over plain modules: forward, loss written inline, backward,
  ``AdamW.step``, ``zero_grad``, EMA with ``torch._foreach`` ops.

Repeats are interleaved (trainer block, hand block, alternating which goes first) so that load
changes on a shared machine hit both; the figure is the median step time. Goal: <= 5 % overhead.

    python benchmarks/trainer_overhead.py                       # CPU, reduced ResNet-18, 32 px
    python benchmarks/trainer_overhead.py --device cuda --backbone resnet18 --cifar_stem \\
        --batch_size 128 --mixed_precision bf16
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from typing import Any

import datasets
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from transformers import get_scheduler

from rela_hf.assets import fashion_mnist_dataset
from rela_hf.backbones import create_backbone
from rela_hf.model import ReLAStudent
from rela_hf.switch import PHASE_RELA, PHASE_SSL, build_switch
from rela_hf.training import (
    MetricMeans,
    ViewCollator,
    ViewDataset,
    check_finite_loss,
    forward_seed,
    training_step,
)
from rela_hf.views import byol_view_transforms, rela_view_transform

# --phases names what is timed (the hand-written side is BYOL); the trainer calls BYOL's phase "ssl"
TRAINER_PHASES = {"byol": PHASE_SSL, "rela": PHASE_RELA}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--backbone_kwargs", default='{"channels": [32, 64, 128, 256], "stem_width": 32}')
    parser.add_argument("--cifar_stem", action="store_true")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--rela_dim", type=int, default=128)
    parser.add_argument("--phases", nargs="+", default=["byol", "rela"], choices=["byol", "rela"])
    parser.add_argument("--steps", type=int, default=5, help="timed steps per block")
    parser.add_argument("--repeats", type=int, default=6, help="interleaved blocks per side")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--mixed_precision", default="no", choices=["no", "bf16", "fp16"])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument(
        "--control", action="store_true", help="also time a second hand-written copy: its 'overhead' is the noise floor"
    )
    return parser.parse_args()


def views_batch(args: argparse.Namespace, phase: str, device: torch.device) -> dict[str, Any]:
    """One batch of real images through the phase's view pipelines, with targets (no labels)."""
    images = fashion_mnist_dataset("train", limit=args.batch_size, seed=0)
    generator = torch.Generator().manual_seed(0)
    targets = torch.randn(args.batch_size, args.rela_dim, generator=generator)
    feature = datasets.List(datasets.Value("float32"), length=args.rela_dim)
    images = images.add_column("rela_target", targets.tolist(), feature=feature)
    data = ViewDataset(
        images,
        rela_views=rela_view_transform(args.image_size),
        ssl_views=list(byol_view_transforms(args.image_size)),
        target_column="rela_target",
        label_column=None,
        phase=TRAINER_PHASES[phase],
    )
    batch = ViewCollator(args.channels_last)(data.__getitems__(range(args.batch_size)))
    views = [view.to(device) for view in batch["views"]]
    return {"views": views, "targets": batch["targets"].to(device)}


def build_model(args: argparse.Namespace) -> ReLAStudent:
    torch.manual_seed(0)
    kwargs = json.loads(args.backbone_kwargs)
    backbone = create_backbone(args.backbone, cifar_stem=args.cifar_stem, **kwargs)
    model = ReLAStudent(backbone, "byol", rela_dim=args.rela_dim)
    return model.to(memory_format=torch.channels_last) if args.channels_last else model


class TrainerStep:
    """The recipe's per-step work, through Accelerate (single process here)."""

    def __init__(self, args: argparse.Namespace, model: ReLAStudent, phase: str) -> None:
        self.accelerator = Accelerator(cpu=args.device == "cpu", mixed_precision=args.mixed_precision)
        optimizer = torch.optim.AdamW(model.parameter_groups(0.01), lr=1e-3)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.unwrapped = self.accelerator.unwrap_model(self.model)
        self.scheduler = get_scheduler("constant", self.optimizer.optimizer)
        self.switch = build_switch("adaptive", fraction=None, total_steps=10**6)
        self.step_means, self.log_means = MetricMeans(), MetricMeans()
        self.phase, self.step = TRAINER_PHASES[phase], 0

    def __call__(self, batch: dict[str, Any]) -> None:
        torch.manual_seed(forward_seed(0, 0, self.step, self.accelerator.process_index))
        out = training_step(
            self.accelerator,
            self.model,
            self.optimizer,
            batch,
            phase=self.phase,
            momentum=0.99,
            step=self.step,
            unwrapped=self.unwrapped,
        )
        self.step_means.add(out)
        self.log_means.add(out)
        self.step += 1
        self.scheduler.step()
        if self.phase == PHASE_RELA:
            step_loss = self.step_means.compute(self.accelerator)
            check_finite_loss(step_loss, self.step)
            self.switch.update(step_loss["rela_loss"])
        else:
            self.step_means.reset()

    @torch.no_grad()
    def objective(self, batch: dict[str, Any]) -> float:
        """The phase's loss on ``batch`` with the current weights (no step)."""
        out = self.model(batch["views"], phase=self.phase, targets=batch["targets"])
        return float(out["rela_loss" if self.phase == PHASE_RELA else "byol_loss"])

    def sync(self) -> None:
        if self.accelerator.device.type == "cuda":
            torch.cuda.synchronize()


class HandWrittenStep:
    """A minimal BYOL/ReLA step in plain PyTorch over copies of the same modules."""

    def __init__(self, args: argparse.Namespace, model: ReLAStudent, phase: str, device: torch.device) -> None:
        model = copy.deepcopy(model).to(device)
        byol = model.method  # rela_hf.methods.byol.BYOL: its heads and momentum copies
        self.backbone, self.projector = model.backbone, byol.projector
        self.predictor = byol.predictor
        self.target_backbone, self.target_projector = byol.target_backbone, byol.target_projector
        self.head = model.transfer_head
        self.online = [*self.backbone.parameters(), *self.projector.parameters()]
        self.target = [*self.target_backbone.parameters(), *self.target_projector.parameters()]
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=1e-3, weight_decay=0.01)
        self.dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.mixed_precision)
        self.scaler = torch.amp.GradScaler(device.type) if args.mixed_precision == "fp16" else None
        self.device, self.phase = device, phase

    def loss(self, batch: dict[str, Any]) -> torch.Tensor:
        v1, v2 = batch["views"]
        h1, h2 = self.backbone(v1), self.backbone(v2)
        if self.phase == "rela":
            y = batch["targets"]
            return 1 - 0.5 * (
                F.cosine_similarity(self.head(h1).float(), y).mean()
                + F.cosine_similarity(self.head(h2).float(), y).mean()
            )
        p1, p2 = self.predictor(self.projector(h1)), self.predictor(self.projector(h2))
        with torch.no_grad():
            z1 = self.target_projector(self.target_backbone(v1))
            z2 = self.target_projector(self.target_backbone(v2))
        return -0.5 * (
            F.cosine_similarity(p1.float(), z2.float()).mean() + F.cosine_similarity(p2.float(), z1.float()).mean()
        )

    def __call__(self, batch: dict[str, Any]) -> None:
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            loss = self.loss(batch)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        with torch.no_grad():
            torch._foreach_mul_(self.target, 0.99)
            torch._foreach_add_(self.target, [p.detach() for p in self.online], alpha=0.01)

    @torch.no_grad()
    def objective(self, batch: dict[str, Any]) -> float:
        """The phase's loss on ``batch`` with the current weights (no step)."""
        with torch.autocast(self.device.type, dtype=self.dtype, enabled=self.dtype is not None):
            return float(self.loss(batch))

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def check_same_objective(sides: dict[str, Any], batch: dict[str, Any], mixed_precision: str) -> None:
    """Stop unless every side computes the same loss from the same weights and views.

    The ratio only means something if both sides do the same work; a model or loss change on one
    side (e.g. a new default head width) would otherwise show up as "overhead".
    """
    losses = {name: step.objective(batch) for name, step in sides.items()}
    tolerance = 1e-4 if mixed_precision == "no" else 5e-2
    limit = tolerance * max(1.0, abs(losses["hand"]))
    if any(abs(loss - losses["hand"]) > limit for loss in losses.values()):
        raise SystemExit(
            f"The sides compute different losses on the same batch: {losses}; fix the hand-written step before timing."
        )


def time_block(step, batch, n: int) -> float:
    step.sync()
    start = time.perf_counter()
    for _ in range(n):
        step(batch)
    step.sync()
    return (time.perf_counter() - start) / n


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    results = []
    for phase in args.phases:
        batch = views_batch(args, phase, device)
        model = build_model(args)
        sides = {
            "trainer": TrainerStep(args, model, phase),
            "hand": HandWrittenStep(args, model, phase, device),
        }
        if args.control:
            sides["hand (control)"] = HandWrittenStep(args, model, phase, device)
        check_same_objective(sides, batch, args.mixed_precision)
        for step in sides.values():
            for _ in range(args.warmup):
                step(batch)
        times: dict[str, list[float]] = {name: [] for name in sides}
        order = list(sides.items())
        for repeat in range(args.repeats):
            rotation = order[repeat % len(order) :] + order[: repeat % len(order)]
            for name, step in rotation if repeat % 2 == 0 else rotation[::-1]:
                times[name].append(time_block(step, batch, args.steps))
        medians = {name: 1000 * statistics.median(t) for name, t in times.items()}
        results.append((phase, medians))
    print(
        f"device={args.device} threads={torch.get_num_threads()} backbone={args.backbone} "
        f"{args.backbone_kwargs} cifar_stem={args.cifar_stem} batch={args.batch_size} "
        f"size={args.image_size} mixed_precision={args.mixed_precision} "
        f"median of {args.repeats} interleaved blocks x {args.steps} steps"
    )
    print(f"{'phase':<6} {'side':<15} {'ms/step':>9} {'vs hand-written':>16}")
    for phase, medians in results:
        for name, ms in medians.items():
            relative = "" if name == "hand" else f"{100 * (ms / medians['hand'] - 1):+.1f}%"
            print(f"{phase:<6} {name:<15} {ms:>9.1f} {relative:>16}")


if __name__ == "__main__":
    main()
