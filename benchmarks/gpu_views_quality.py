#!/usr/bin/env python
"""Do the batched (GPU) views train as well as the PIL views? Same runs, side by side.

Trains the same tiny SSL setup twice per seed, once on the PIL views
(:class:`rela_hf.training.ViewDataset`, the trainer's pipeline) and once on their batched twins
(:mod:`rela_hf.gpu_views`), with everything else equal: the same backbone and initial weights
(seeded), the same images in the same order, the same optimizer and steps. Each encoder is then
scored by the kNN protocol (k=200, t=0.1, :mod:`rela_hf.evaluation`) on the Fashion-MNIST test
split. The question is whether the batched views reach the PIL views' accuracy *within noise*:
the table gives each pipeline's mean and spread over the seeds, and the test split's own
binomial standard error.

The default is the QUICK grid's setup (``benchmarks/configs/acceleration_quick.yaml``: BYOL,
ResNet-18 layout at 1/4 width with timm's stem, 32 px, batch 128, AdamW 1e-3 / wd 0.01, EMA 0.99)
on its 20,000-image training subset for one epoch (156 steps: the grid's BYOL r = 1.0 cell), two
seeds.
It also times the view making of both pipelines (on the CPU here, one thread: a correctness run,
not the GPU speed-up). The runs alternate pipelines so that load changes hit both.

    python benchmarks/gpu_views_quality.py                                  # ~20 min, one core
    python benchmarks/gpu_views_quality.py --train_limit 2000 --test_limit 2000 --seeds 0  # smoke
    python benchmarks/gpu_views_quality.py --device cuda --train_limit 20000 --epochs 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from rela_hf.assets import fashion_mnist_dataset
from rela_hf.backbones import create_backbone
from rela_hf.evaluation import extract_features, knn_accuracy
from rela_hf.gpu_views import ImageCollator, ImageRowsDataset, method_view_recipes, views_for_batch
from rela_hf.methods import method_class
from rela_hf.model import ReLAStudent
from rela_hf.preprocessing import eval_transform, official_data_config
from rela_hf.switch import PHASE_SSL
from rela_hf.training import ViewCollator, ViewDataset

PIPELINES = ("pil", "batched")
RESULTS_DIR = Path(__file__).resolve().parent / "results" / "gpu_views"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", default="byol", help="SSL method (its views are compared)")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--backbone_kwargs", default='{"channels": [16, 32, 64, 128], "stem_width": 16}')
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--learning_rate", type=float, default=1e-3)
    parser.add_argument("--weight_decay", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.99)
    parser.add_argument("--train_limit", type=int, default=20000, help="training subset (seed 0)")
    parser.add_argument("--test_limit", type=int, default=None, help="test images (default all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--output_dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args()


def build_model(args: argparse.Namespace, seed: int) -> ReLAStudent:
    """The method alone (no ReLA phase) from ``seed``: the same weights for both pipelines."""
    torch.manual_seed(seed)
    backbone = create_backbone(args.backbone, **json.loads(args.backbone_kwargs))
    return ReLAStudent(backbone, args.method).to(args.device)


def batch_order(size: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's shuffled full batches, the same for both pipelines."""
    generator = torch.Generator().manual_seed(1000 * seed + epoch)
    order = torch.randperm(size, generator=generator).tolist()
    return [order[i : i + batch_size] for i in range(0, size - batch_size + 1, batch_size)]


class PILViews:
    """The trainer's path: per-row seeded PIL views (``ViewDataset``) and ``ViewCollator``."""

    def __init__(self, train: Any, args: argparse.Namespace, seed: int) -> None:
        views = method_class(args.method).view_transforms(args.image_size)
        self.data = ViewDataset(train, rela_views=None, ssl_views=views, phase=PHASE_SSL, seed=seed)
        self.collate, self.device = ViewCollator(), torch.device(args.device)

    def __call__(self, indices: list[int], epoch: int) -> list[torch.Tensor]:
        self.data.set_epoch(epoch)
        batch = self.collate(self.data.__getitems__(indices))
        return [view.to(self.device) for view in batch["views"]]


class BatchedViews:
    """The batched path: 8-bit rows with per-row seeds, views made on ``args.device``."""

    def __init__(self, train: Any, args: argparse.Namespace, seed: int) -> None:
        self.data = ImageRowsDataset(train, seed=seed)
        self.recipes = method_view_recipes(args.method, args.image_size)
        self.collate, self.device = ImageCollator(), torch.device(args.device)

    def __call__(self, indices: list[int], epoch: int) -> list[torch.Tensor]:
        self.data.set_epoch(epoch)
        batch = self.collate(self.data.__getitems__(indices))
        return views_for_batch(batch, self.recipes, self.device)["views"]


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train(args: argparse.Namespace, pipeline: str, seed: int, train_data: Any) -> tuple[ReLAStudent, dict]:
    """One run: ``epochs`` over the subset, plain loop over the library's model."""
    model = build_model(args, seed)
    optimizer = torch.optim.AdamW(model.parameter_groups(args.weight_decay), lr=args.learning_rate)
    make_views = (PILViews if pipeline == "pil" else BatchedViews)(train_data, args, seed)
    device = torch.device(args.device)
    view_seconds, losses, step = 0.0, [], 0
    start = time.perf_counter()
    for epoch in range(args.epochs):
        for indices in batch_order(len(train_data), args.batch_size, seed, epoch):
            synchronize(device)
            tick = time.perf_counter()
            views = make_views(indices, epoch)
            synchronize(device)
            view_seconds += time.perf_counter() - tick
            loss = model(views, phase=PHASE_SSL, step=step)["loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            model.update_teacher(args.momentum)
            losses.append(float(loss))
            step += 1
    synchronize(device)
    seconds = time.perf_counter() - start
    return model, {
        "steps": step,
        "train_seconds": seconds,
        "view_seconds": view_seconds,
        "final_loss": statistics.fmean(losses[-10:]),
    }


def knn(model: ReLAStudent, bank: Any, test: Any, args: argparse.Namespace) -> float:
    """kNN top-1 (%) of the frozen backbone: bank = the training subset, queries = test split."""
    transform = eval_transform(official_data_config(args.image_size))
    bank_x, bank_y = extract_features(model.backbone, bank, transform, batch_size=512, device=args.device)
    test_x, test_y = extract_features(model.backbone, test, transform, batch_size=512, device=args.device)
    return 100.0 * knn_accuracy(bank_x, bank_y, test_x, test_y)


def spread(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:.2f}"


def report(runs: list[dict], args: argparse.Namespace, test_size: int) -> str:
    """A markdown table: per run, then per pipeline, then the verdict against the noise."""
    lines = [
        f"# Batched (GPU) views vs PIL views: {args.method}, kNN after the same training\n",
        f"Fashion-MNIST, {args.train_limit} training images (subset seed 0), {args.epochs} "
        f"epoch(s) at "
        f"batch {args.batch_size}, {args.backbone} {args.backbone_kwargs}, {args.image_size} px, "
        f"AdamW {args.learning_rate} / wd {args.weight_decay}, EMA {args.momentum}; kNN k=200 "
        f"t=0.1 "
        f"on {test_size} test images (bank: the training subset). Device {args.device}, "
        f"{args.threads} thread(s); load average before: {runs[0]['load_before']:.1f}.\n",
        f"Command: `python benchmarks/gpu_views_quality.py {' '.join(sys.argv[1:])}`.\n",
        "| pipeline | seed | steps | final loss | kNN % | train s | of which views s |",
        "|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        lines.append(
            f"| {run['pipeline']} | {run['seed']} | {run['steps']} | {run['final_loss']:.4f} | "
            f"{run['knn']:.2f} | {run['train_seconds']:.0f} | {run['view_seconds']:.1f} |"
        )
    knns = {p: [r["knn"] for r in runs if r["pipeline"] == p] for p in PIPELINES}
    views = {p: sum(r["view_seconds"] for r in runs if r["pipeline"] == p) for p in PIPELINES}
    p = statistics.fmean(knns["pil"]) / 100
    binomial = 100 * math.sqrt(p * (1 - p) / test_size)
    gap = statistics.fmean(knns["batched"]) - statistics.fmean(knns["pil"])
    paired = [b - a for a, b in zip(knns["pil"], knns["batched"], strict=False)]
    lines += [
        "",
        f"- kNN, PIL views: **{spread(knns['pil'])}**; "
        f"batched views: **{spread(knns['batched'])}** "
        f"(mean ± sample std over seeds {args.seeds}).",
        f"- Gap batched - PIL: {gap:+.2f} pt (per seed: {', '.join(f'{d:+.2f}' for d in paired)}); "
        f"the test split's binomial standard error alone is {binomial:.2f} pt.",
        f"- View making, all runs: PIL {views['pil']:.1f} s, batched {views['batched']:.1f} s "
        f"({views['pil'] / max(views['batched'], 1e-9):.1f}x) on {args.device}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    train_data = fashion_mnist_dataset("train", limit=args.train_limit, seed=0)
    test_data = fashion_mnist_dataset("test", limit=args.test_limit, seed=0)
    runs = []
    for seed in args.seeds:
        for pipeline in PIPELINES if seed % 2 == 0 else PIPELINES[::-1]:
            load_before = os.getloadavg()[0]
            model, stats = train(args, pipeline, seed, train_data)
            accuracy = knn(model, train_data, test_data, args)
            runs.append(
                {
                    "pipeline": pipeline,
                    "seed": seed,
                    "knn": accuracy,
                    "load_before": load_before,
                    **stats,
                }
            )
            print(json.dumps(runs[-1]), flush=True)
    runs.sort(key=lambda r: (PIPELINES.index(r["pipeline"]), r["seed"]))
    args.output_dir.mkdir(parents=True, exist_ok=True)
    summary = report(runs, args, len(test_data))
    (args.output_dir / "results.md").write_text(summary)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    (args.output_dir / "results.json").write_text(json.dumps({"config": config, "runs": runs}, indent=2) + "\n")
    print(summary)


if __name__ == "__main__":
    main()
