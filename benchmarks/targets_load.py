#!/usr/bin/env python
"""``add_rela_targets`` in a fresh process: its time, and the peak memory of the process tree.

The measurement that ``benchmarks/faults.py`` (load case) and ``benchmarks/targets_throughput.py``
(``num_proc`` 1 vs 2) share. The parent starts this file as a child on Fashion-MNIST images,
samples the resident memory of the child and of every process below it (``/proc``, every 0.2 s)
and reads back the child's timing and targets:

    python benchmarks/targets_load.py --images 2000 --num_proc 2 --output targets.npy

prints ``seconds <add_rela_targets wall time>`` and saves the target column. Imports and loading
are outside that time and inside the peak memory, as a user's script would have them.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import multiprocess
import numpy as np
import torch

from rela_hf.assets import fashion_mnist_dataset
from rela_hf.priors import load_prior
from rela_hf.targets import add_rela_targets

SCRIPT = Path(__file__).resolve()


def tree_rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants, from /proc (KiB)."""
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            stack += [int(c) for c in children]
        except (OSError, StopIteration, ValueError):
            continue
    return total


def measure_add_rela_targets(
    output: Path,
    *,
    images: int,
    num_proc: int,
    prior: str = "test_resnet",
    random_init: bool = True,
    image_size: int = 32,
    k: int = 16,
    batch_size: int = 128,
    threads: int | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Run ``add_rela_targets`` in a child process; its seconds, the tree's peak RSS, the load.

    Returns ``{"seconds", "process_seconds", "peak_rss_mib", "load_average"}``: the call's wall
    time, the child's whole lifetime (imports included), the peak resident memory of the child
    and all its descendants, and the 1-minute load average at the start and the end.
    """
    command = [
        sys.executable,
        str(SCRIPT),
        "--images",
        str(images),
        "--num_proc",
        str(num_proc),
        "--prior",
        prior,
        "--image_size",
        str(image_size),
        "--k",
        str(k),
        "--batch_size",
        str(batch_size),
        "--output",
        str(output),
    ]
    command += ["--random_init"] if random_init else []
    command += ["--threads", str(threads)] if threads else []
    load_before, start = os.getloadavg()[0], time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss_kib(process.pid))
        time.sleep(0.2)
    stdout, stderr = process.communicate()
    lifetime = time.perf_counter() - start
    if process.returncode != 0:
        raise RuntimeError(f"add_rela_targets (num_proc={num_proc}) failed:\n{stderr[-3000:]}")
    seconds = float(next(line.split()[1] for line in stdout.splitlines() if line.startswith("seconds")))
    return {
        "seconds": round(seconds, 1),
        "process_seconds": round(lifetime, 1),
        "peak_rss_mib": round(peak / 1024),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }


def child(args: argparse.Namespace) -> None:
    """The measured process: what a user's script does, timed around ``add_rela_targets``."""
    multiprocess.set_start_method("spawn")  # what the docs ask of scripts that use num_proc
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    prior = load_prior(args.prior, pretrained=not args.random_init, image_size=args.image_size, device="cpu")
    data = fashion_mnist_dataset("train", limit=args.images, seed=2)
    start = time.perf_counter()
    result = add_rela_targets(
        data,
        prior,
        k=args.k,
        batch_size=args.batch_size,
        num_proc=None if args.num_proc == 1 else args.num_proc,
        load_from_cache_file=False,
    )
    np.save(args.output, np.asarray(result.with_format("numpy")["rela_target"]))
    print("seconds", time.perf_counter() - start, flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--num_proc", type=int, default=1)
    parser.add_argument("--prior", default="test_resnet", help="a timm name or a prior folder")
    parser.add_argument("--random_init", action="store_true")
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--output", type=Path, required=True, help="where to save the targets (.npy)")
    return parser.parse_args()


if __name__ == "__main__":
    child(parse_args())
