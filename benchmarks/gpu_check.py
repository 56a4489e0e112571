#!/usr/bin/env python
"""The one prepared GPU check: ReLA-D, the training step and ReLA vs BYOL on one H100/H200, ~8 min.

Writes ``results.json`` and ``results.md`` (the GPU's name, torch/CUDA versions, every figure and
ratio), rewritten after each part, each part under a hard time cap:

(a) targets: ``add_rela_targets`` with a ResNet-50 prior at 224 px on real photos (distinct crops
    of the foolbox wheel's ImageNet-val photos): images/s, the ratio to a raw timm inference loop
    over the same decoded images, the projected time for ImageNet-1k's 1.28 M images;
(b) trainer: ResNet-50 BYOL at 224 px, bf16 (Accelerate), channels-last, one
    ``rela_hf.training.training_step`` per batch, images/s with (i) PIL views in cores - 2
    DataLoader workers, (ii) the GPU data path (``rela_hf.gpu_views``), (iii) views already on the
    GPU (the limit), and the ratios (i)/(iii), (ii)/(iii); then ``torch.compile`` on (iii) and
    whether it pays;
(c) ReLA vs BYOL through ``ReLATrainer`` at the grids' 32 px setup (full-width ResNet-18, CIFAR
    stem) on full Fashion-MNIST, the same steps for both: kNN accuracy of each export, seconds.

Run it in three steps::

    # 1. here (a machine with PyPI and the offline assets): what the GPU machine lacks, ~57 MiB
    python benchmarks/gpu_check.py --prepare          # .gpu_check/ (data, prior) + .whl/ (wheels)
    python benchmarks/gpu_check.py --prepare --dry_run  # only the size check
    # 2. the device tool (about 9 minutes in all; one run, timeout_s=600):
    #    run(carry=[".gpu_check", ".whl"], timeout_s=600, command="bash benchmarks/gpu_check.sh")
    # 3. here: copy results.json / results.md from the returned files into benchmarks/results/gpu/

``benchmarks/gpu_check.sh`` installs the carried wheels into /tmp/site, puts them and the repo on
``PYTHONPATH``, checks that rela_hf imports, and runs this script with ``--output_dir $OUT``
(log in ``$OUT/gpu_check.log``). ``--smoke`` runs the same code paths on the CPU at toy sizes
(test_resnet, a few dozen images, a couple of steps; tests/test_gpu_check.py runs it). See
benchmarks/results/gpu/README.md.
"""

from __future__ import annotations

import os

# The GPU machine has no network: never let a library wait on the Hub (set before they import).
for _name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TQDM_DISABLE"):
    os.environ.setdefault(_name, "1")

import argparse
import dataclasses
import datetime
import gc
import json
import shlex
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from gpu_check_parts.assets import REPO, use_prepared_fashion_mnist
from gpu_check_parts.measure import PartTimeout, environment, hard_cap
from gpu_check_parts.prepare import prepare
from gpu_check_parts.profiles import PART_NAMES, Profile, gpu_profile, smoke_profile
from gpu_check_parts.rela_vs_byol_part import run_rela_vs_byol
from gpu_check_parts.report import write_results
from gpu_check_parts.targets_part import run_targets
from gpu_check_parts.trainer_part import run_compile, run_trainer

#: Share of a part's cap its timed windows may use; the rest is for its setup and clean-up.
SOFT_SHARE = 0.85
#: Below this, the compile part is skipped rather than started (compiling a ResNet-50 takes ~1 min).
MIN_COMPILE_S = {"gpu": 45.0, "smoke": 5.0}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="Write .gpu_check/ and .whl/ (what the GPU machine lacks) and check the size.",
    )
    parser.add_argument("--dry_run", action="store_true", help="With --prepare: only add up the sizes.")
    parser.add_argument("--smoke", action="store_true", help="CPU, toy sizes, the same code paths.")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=PART_NAMES,
        default=list(PART_NAMES),
        help="Parts to run (compile needs trainer).",
    )
    parser.add_argument(
        "--output_dir",
        type=Path,
        default=None,
        help="results.json + results.md (default: benchmarks/results/gpu, or outputs/gpu_check_smoke with --smoke)",
    )
    parser.add_argument(
        "--work_dir",
        type=Path,
        default=None,
        help="Datasets and training runs (default: /tmp/rela_gpu_check, or outputs/gpu_check_smoke/work with --smoke)",
    )
    parser.add_argument(
        "--cap",
        nargs="+",
        default=[],
        metavar="PART=SECONDS",
        help="Override parts' hard time caps, e.g. --cap compile=300 (a longer compile try).",
    )
    parser.add_argument(
        "--budget_s",
        type=float,
        default=None,
        help="The whole check's budget (default 480 s on the GPU); compile gets what is left.",
    )
    parser.add_argument(
        "--compile_backend",
        default=None,
        help="Override the compile part's dynamo backend (inductor on the GPU, eager in --smoke).",
    )
    return parser.parse_args(argv)


def utc_now() -> str:
    """ISO time of now, UTC (``datetime.UTC`` is Python 3.11+; rela-hf supports 3.10)."""
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def parse_caps(pairs: list[str]) -> dict[str, float]:
    """``["compile=300"]`` -> ``{"compile": 300.0}``, or a clear error."""
    caps = {}
    for pair in pairs:
        name, _, seconds = pair.partition("=")
        try:
            if name not in PART_NAMES:
                raise ValueError(f"no part {name!r}")
            caps[name] = float(seconds)
        except ValueError as error:
            raise SystemExit(f"--cap {pair}: expected PART=SECONDS with PART one of {PART_NAMES} ({error}).") from None
    return caps


def choose_profile(args: argparse.Namespace) -> Profile:
    profile = smoke_profile() if args.smoke else gpu_profile()
    caps = {**profile.caps_s, **parse_caps(args.cap)}
    profile = dataclasses.replace(profile, caps_s=caps, budget_s=args.budget_s or profile.budget_s)
    if args.compile_backend:
        trainer = dataclasses.replace(profile.trainer, compile_backend=args.compile_backend)
        profile = dataclasses.replace(profile, trainer=trainer)
    return profile


class Check:
    """The parts in order, each under its cap, the results rewritten after each."""

    def __init__(self, profile: Profile, device: torch.device, output_dir: Path, work_dir: Path) -> None:
        self.profile, self.device = profile, device
        self.output_dir, self.work_dir = output_dir, work_dir
        self.start = time.perf_counter()
        self.shared: dict[str, Any] = {}  # the trainer part's resident views and eager figures
        self.results: dict[str, Any] = {
            "format_version": 1,
            "mode": profile.name,
            "started_at": utc_now(),
            "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "environment": environment(device),
            "profile": profile.to_dict(),
            "parts": {},
        }

    def cap_of(self, name: str) -> float:
        cap = self.profile.caps_s[name]
        if name == "compile":  # the last part gets what is left of the budget
            cap = min(cap, self.profile.budget_s - (time.perf_counter() - self.start))
        return cap

    def run_part(self, name: str, soft_deadline: float) -> dict[str, Any]:
        profile, device = self.profile, self.device
        if name == "targets":
            return run_targets(profile.targets, device, soft_deadline)
        if name == "trainer":
            result, self.shared["resident"] = run_trainer(profile.trainer, profile.num_workers, soft_deadline)
            self.shared["eager"] = result["feeds"]["resident"]
            return result
        if name == "rela_vs_byol":
            return run_rela_vs_byol(profile.rela_vs_byol, profile.num_workers, self.work_dir, device, soft_deadline)
        if "resident" not in self.shared:
            raise RuntimeError("compile repeats the trainer part's (iii): run the trainer part first.")
        return run_compile(profile.trainer, self.shared["resident"], self.shared["eager"], soft_deadline)

    def run(self, names: list[str]) -> bool:
        """Every part in ``names``; True when all succeeded."""
        for name in (n for n in PART_NAMES if n in names):
            cap = self.cap_of(name)
            print(f"[gpu_check] {name}: cap {cap:.0f} s", flush=True)
            tick = time.perf_counter()
            if name == "compile" and cap < MIN_COMPILE_S[self.profile.name]:
                part = {"status": "skipped", "error": f"only {cap:.0f} s of the budget left"}
            else:
                part = self._guarded(name, cap, tick)
            part["seconds"] = round(time.perf_counter() - tick, 1)
            part["cap_s"] = round(cap, 1)
            self.results["parts"][name] = part
            self.results["elapsed_seconds"] = round(time.perf_counter() - self.start, 1)
            write_results(self.output_dir, self.results)
            print(f"[gpu_check] {name}: {part['status']} in {part['seconds']} s", flush=True)
            gc.collect()
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
        self.shared.clear()
        return all(part["status"] == "ok" for part in self.results["parts"].values())

    def _guarded(self, name: str, cap: float, tick: float) -> dict[str, Any]:
        try:
            with hard_cap(cap):
                return {"status": "ok", **self.run_part(name, tick + SOFT_SHARE * cap)}
        except PartTimeout as error:
            return {"status": "timed_out", "error": str(error)}
        # a failed part must not cost the others their results
        except Exception as error:  # noqa: BLE001
            traceback.print_exc()
            return {"status": "failed", "error": f"{type(error).__name__}: {error}"}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.prepare:
        report = prepare(dry_run=args.dry_run)
        print(json.dumps(report, indent=2))
        return 0 if report["fits"] else 1
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not args.smoke and device.type != "cuda":
        print(
            "gpu_check: no CUDA device here. Run it on the GPU machine "
            "(benchmarks/gpu_check.sh), or --smoke for the CPU code-path check.",
            file=sys.stderr,
        )
        return 2
    default_root = REPO / "outputs" / "gpu_check_smoke" if args.smoke else None
    output_dir = args.output_dir or (default_root or REPO / "benchmarks" / "results" / "gpu")
    work_dir = args.work_dir or (default_root / "work" if default_root else Path("/tmp/rela_gpu_check"))
    work_dir.mkdir(parents=True, exist_ok=True)
    print(f"[gpu_check] Fashion-MNIST from {use_prepared_fashion_mnist()}", flush=True)
    check = Check(choose_profile(args), device, output_dir, work_dir)
    all_ok = check.run(args.parts)
    print((output_dir / "results.md").read_text())
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
