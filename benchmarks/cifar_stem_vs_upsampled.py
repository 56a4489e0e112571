#!/usr/bin/env python
"""ResNet-18 with the CIFAR stem at 32 px vs timm's standard ``resnet18`` at 128 px: cost, quality.

Why: the CIFAR stem (3x3 stride-1 conv, no max-pool; the official ReLA code's CIFAR student,
arXiv:2405.14669) is no timm architecture, so its exports load only after ``import rela_hf``.
The standard ``resnet18`` fed the same images upsampled 4x (128 px) downsamples by 4 in its stem
(7x7 stride-2 conv + stride-2 max-pool), so its residual stages see 32, 16, 8 and 4 px maps: the
CIFAR stem's stage resolutions at 32 px, in a model that plain timm, transformers and the Hub's
widgets build. This script measures what the switch costs and whether it loses accuracy.

- ``cost``: FLOPs per image (``torch.utils.flop_counter``; forward, and forward + backward), the
  stage resolutions, CPU images/s of a backbone training step (forward, backward, AdamW; the
  BYOL step is two of these plus two forwards of the EMA copy) and of the BYOL two-view pipeline
  on real CIFAR-10 images (also: augmenting at 32 px and upsampling the tensor last). Arms are
  timed side by side in interleaved rounds (alternating which goes first), so load changes on a
  shared machine hit both; the figure is the median.
- ``quality``: the project's own commands (``recipes/prepare_offline_assets.py`` ->
  ``recipes/byol_rela.py`` -> ``recipes/evaluate_encoder.py``) train both arms at 1/4 width with
  the same number of steps on Fashion-MNIST (the quick grid's setup: 20,000-image subset, batch
  128, AdamW 1e-3, EMA 0.99; the method alone, no ReLA), then kNN (k=200) and the linear probe on
  the 10,000 test images. Resumable: finished runs are skipped.
- ``report``: print what ``benchmarks/results/presets/{cost,quality}.json`` hold.

    OMP_NUM_THREADS=1 python benchmarks/cifar_stem_vs_upsampled.py cost
    OMP_NUM_THREADS=1 python benchmarks/cifar_stem_vs_upsampled.py quality --methods byol supervised
    python benchmarks/cifar_stem_vs_upsampled.py report
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

from rela_hf.assets import foolbox_dataset
from rela_hf.backbones import create_backbone
from rela_hf.views import TwoViews, byol_view_transforms

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "presets"
WORK = REPO / "outputs" / "presets"
QUARTER_WIDTH = {"channels": [16, 32, 64, 128], "stem_width": 16}  # the quick grid's student


@dataclass(frozen=True)
class Arm:
    """One student: ResNet-18 with or without the CIFAR stem, at its input size."""

    name: str
    cifar_stem: bool
    image_size: int

    def backbone(self, **kwargs: Any) -> torch.nn.Module:
        return create_backbone("resnet18", cifar_stem=self.cifar_stem, **kwargs)


ARMS = (Arm("cifar_stem_32", True, 32), Arm("resnet18_128", False, 128))


# ---- cost ------------------------------------------------------------------------------------
def flops_per_image(model: torch.nn.Module, size: int, backward: bool) -> float:
    """FLOPs of one image (batch of 2 in train mode: BatchNorm needs more than one value)."""
    x = torch.randn(2, 3, size, size)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if backward:
            out.square().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def stage_sizes(model: torch.nn.Module, size: int) -> list[int]:
    """The side of the feature maps leaving layer1..layer4."""
    sides: list[int] = []
    hooks = [
        getattr(model, f"layer{i}").register_forward_hook(lambda m, i, o: sides.append(o.shape[-1]))
        for i in range(1, 5)
    ]
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, size, size))
    for hook in hooks:
        hook.remove()
    return sides


def architecture_table(width: str, kwargs: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for arm in ARMS:
        model = arm.backbone(**kwargs)
        rows.append(
            {
                "arm": arm.name,
                "width": width,
                "image_size": arm.image_size,
                "parameters": sum(p.numel() for p in model.parameters()),
                "stage_sizes": stage_sizes(model, arm.image_size),
                "forward_mflops": flops_per_image(model.train(), arm.image_size, False) / 1e6,
                "train_step_mflops": flops_per_image(model.train(), arm.image_size, True) / 1e6,
            }
        )
    return rows


def _train_step_timer(arm: Arm, kwargs: dict[str, Any], batch: int):
    model = arm.backbone(**kwargs).to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    x = torch.randn(batch, 3, arm.image_size, arm.image_size).to(memory_format=torch.channels_last)

    def step() -> float:
        start = time.perf_counter()
        model(x).square().mean().backward()  # content does not matter for timing
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start

    return step


def interleaved_rate(timers: dict[str, Any], items: int, rounds: int) -> dict[str, float]:
    """Median items/s of each timer over ``rounds`` interleaved rounds (after one warm-up)."""
    for timer in timers.values():
        timer()
    seconds: dict[str, list[float]] = {name: [] for name in timers}
    names = list(timers)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            seconds[name].append(timers[name]())
    return {name: items / statistics.median(values) for name, values in seconds.items()}


def views_timer(transforms: list[Any], images: list[Any], passes: int):
    views = TwoViews(*transforms)

    def run() -> float:
        start = time.perf_counter()
        for _ in range(passes):
            for image in images:
                views(image)
        return time.perf_counter() - start

    return run


def measure_cost(args: argparse.Namespace) -> dict[str, Any]:
    torch.manual_seed(0)
    widths = {"full": {}, "quarter": QUARTER_WIDTH}
    load_before = os.getloadavg()[0]
    result: dict[str, Any] = {
        "architectures": [row for width, kwargs in widths.items() for row in architecture_table(width, kwargs)]
    }
    result["train_step_images_per_s"] = {}
    for width, batch in (("full", args.batch_size), ("quarter", 128)):
        timers = {arm.name: _train_step_timer(arm, widths[width], batch) for arm in ARMS}
        result["train_step_images_per_s"][f"{width}, batch {batch}"] = interleaved_rate(timers, batch, args.rounds)
    images = [image.convert("RGB") for image in foolbox_dataset("cifar10")["image"]]
    pipelines = {
        "32 px (no blur)": byol_view_transforms(32),
        "128 px (blur, the default above 32 px)": byol_view_transforms(128),
        "128 px, no blur": byol_view_transforms(128, gaussian_blur=False),
        # a possible alternative: augment at the images' own 32 px, upsample the tensor last
        "32 px views upsampled to 128 px": [
            v2.Compose([view, v2.Resize(128, antialias=False)]) for view in byol_view_transforms(32)
        ],
    }
    view_timers = {name: views_timer(list(views), images, args.view_passes) for name, views in pipelines.items()}
    result["byol_views_images_per_s"] = interleaved_rate(view_timers, len(images) * args.view_passes, args.rounds)
    result["conditions"] = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
        "rounds": args.rounds,
        "full_width_batch": args.batch_size,
    }
    return result


# ---- quality ---------------------------------------------------------------------------------
def run_logged(command: list[str], log: Path) -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    )
    with log.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        code = subprocess.run(
            command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False
        ).returncode
    if code != 0:
        raise RuntimeError(f"{command[1]} failed (exit {code}); see {log}")


def trainer_config(arm: Arm, method: str, dataset: Path, run_dir: Path, steps: int) -> dict[str, Any]:
    return {
        "dataset_name": str(dataset),
        "train_split": "train",
        "image_column": "image",
        "label_column": "label",
        "backbone": "resnet18",
        "backbone_kwargs": QUARTER_WIDTH,
        "cifar_stem": arm.cifar_stem,
        "image_size": arm.image_size,
        "method": method,
        "use_rela": False,
        "max_train_steps": steps,
        "per_device_train_batch_size": 128,
        "learning_rate": 0.001,
        "weight_decay": 0.01,
        "lr_scheduler_type": "constant",
        "momentum": 0.99,
        "momentum_schedule": "constant",
        "mixed_precision": "no",
        "channels_last": True,
        "dataloader_num_workers": 1,
        "report_to": "none",
        "logging_steps": 25,
        "checkpointing_steps": 50,
        "checkpoints_total_limit": 1,
        "output_dir": str(run_dir),
        "seed": 0,
    }


def train_and_evaluate(arm: Arm, method: str, dataset: Path, steps: int) -> dict[str, Any]:
    run_dir = WORK / "quality" / f"{method}_{arm.name}"
    if not (run_dir / "training_summary.json").is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        config = run_dir / "benchmark_config.yaml"
        config.write_text(yaml.safe_dump(trainer_config(arm, method, dataset, run_dir, steps), sort_keys=False))
        resume = (
            ["--resume_from_checkpoint", "latest"] if any(run_dir.glob("checkpoint*")) else ["--overwrite_output_dir"]
        )
        run_logged(
            [sys.executable, "recipes/byol_rela.py", "--config", str(config), *resume],
            run_dir / "train.log",
        )
    evaluation = run_dir / "eval_results.json"
    if not evaluation.is_file():
        run_logged(
            [
                sys.executable,
                "recipes/evaluate_encoder.py",
                "--model_name_or_path",
                str(run_dir / "backbone"),
                "--dataset_name",
                str(dataset),
                "--train_split",
                "train",
                "--eval_split",
                "test",
                "--output_file",
                str(evaluation),
            ],
            run_dir / "eval.log",
        )
    summary = json.loads((run_dir / "training_summary.json").read_text())
    by_protocol = {entry["protocol"]: entry["value"] for entry in json.loads(evaluation.read_text())["results"]}
    return {
        "method": method,
        "arm": arm.name,
        "image_size": arm.image_size,
        "steps": summary["steps"],
        "wall_clock_seconds": summary["wall_clock_seconds"],
        "knn": by_protocol["knn"],
        "linear": by_protocol["linear_probe"],
    }


def measure_quality(args: argparse.Namespace) -> dict[str, Any]:
    assets = WORK / "assets"
    dataset = assets / "fashion_mnist"
    if not (dataset / "dataset_dict.json").is_file():
        run_logged(
            [
                sys.executable,
                "recipes/prepare_offline_assets.py",
                "--output_dir",
                str(assets),
                "--max_train_samples",
                "20000",
                "--seed",
                "0",
            ],
            WORK / "assets.log",
        )
    rows = []
    load_before = os.getloadavg()[0]
    for method in args.methods:  # both arms of a method side by side: the same machine load
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(ARMS)) as pool:
            futures = [pool.submit(train_and_evaluate, arm, method, dataset, args.steps) for arm in ARMS]
            rows += [future.result() for future in futures]
    return {
        "runs": rows,
        "width": QUARTER_WIDTH,
        "steps": args.steps,
        "dataset": "Fashion-MNIST, 20,000-image training subset (seed 0), 10,000 test images",
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }


# ---- report ----------------------------------------------------------------------------------
def summary_lines(cost: dict[str, Any] | None, quality: dict[str, Any] | None) -> list[str]:
    """The measured figures as plain text; the ratios are new arm / CIFAR-stem arm."""
    lines = []
    for row in (cost or {}).get("architectures", []):
        lines.append(
            f"{row['arm']:14} {row['width']:8} {row['image_size']:4} px"
            f"  stages {row['stage_sizes']}  {row['parameters']:>10,} params"
            f"  forward {row['forward_mflops']:8.1f} MFLOPs"
            f"  fwd+bwd {row['train_step_mflops']:8.1f} MFLOPs"
        )
    for setting, rates in (cost or {}).get("train_step_images_per_s", {}).items():
        old, new = (rates[arm.name] for arm in ARMS)
        lines.append(f"train step ({setting}): {old:.1f} vs {new:.1f} images/s, ratio {new / old:.2f}")
    for name, rate in (cost or {}).get("byol_views_images_per_s", {}).items():
        lines.append(f"BYOL two views, {name}: {rate:.0f} images/s")
    for row in (quality or {}).get("runs", []):
        lines.append(
            f"{row['method']:10} {row['arm']:14} {row['steps']} steps  kNN {100 * row['knn']:.2f}"
            f"  linear {100 * row['linear']:.2f}  ({row['wall_clock_seconds']:.0f} s)"
        )
    return lines


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("part", choices=["cost", "quality", "report"])
    parser.add_argument("--batch_size", type=int, default=16, help="cost: full-width training-step batch")
    parser.add_argument("--rounds", type=int, default=5, help="cost: interleaved timing rounds")
    parser.add_argument("--view_passes", type=int, default=10, help="cost: passes over the 20 images per round")
    parser.add_argument("--steps", type=int, default=156, help="quality: optimizer steps per run")
    parser.add_argument("--methods", nargs="+", default=["byol"], help="quality: byol, supervised, ...")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    if args.part == "cost":
        (RESULTS / "cost.json").write_text(json.dumps(measure_cost(args), indent=2) + "\n")
    elif args.part == "quality":
        (RESULTS / "quality.json").write_text(json.dumps(measure_quality(args), indent=2) + "\n")
    cost, quality = read_json(RESULTS / "cost.json"), read_json(RESULTS / "quality.json")
    print("\n".join(summary_lines(cost, quality)))


if __name__ == "__main__":
    main()
