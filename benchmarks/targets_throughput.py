#!/usr/bin/env python3
"""Throughput of ``add_rela_targets`` against a raw timm inference loop; ``num_proc`` 1 vs 2.

1. **Ratio to the raw loop.** Side by side in one process, alternating which goes first:
   ``add_rela_targets`` on an in-memory Fashion-MNIST dataset (PNG bytes in Arrow, as
   ``Dataset.from_dict`` and Hub datasets hold images; in memory, so nothing is cached between
   repeats) against the loop a user would write without ``datasets``, here: the same weights
   through ``timm.create_model(..., num_classes=0)``, timm's own eval transform
   (``resolve_data_config`` + ``create_transform``), ``torch.stack`` of a batch and a forward
   pass under ``inference_mode``, over the same images decoded once into a Python list of PIL
   images (outside its timing; ``add_rela_targets`` decodes the PNGs inside its own). Before
   timing, the loop's embeddings are checked to be the prior's. ``add_rela_targets`` also fits
   the PCA whitening (float64, plus one fixed ``eigh``) and writes two Arrow columns.
2. **num_proc 1 vs 2.** ``add_rela_targets`` in fresh processes (``benchmarks/targets_load.py``):
   its wall time and the peak resident memory of the whole process tree, same prior and images.

The 1-minute load average is recorded with every timing: the 2 cores may be shared.

    python benchmarks/targets_throughput.py      # 2,000, 8,000, 20,000 images, EfficientNet-Lite0 64 px
    python benchmarks/targets_throughput.py --num_images 512 --repeats 2 --num_proc_images 0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL.Image
import timm
import timm.data
import torch
from targets_load import measure_add_rela_targets  # benchmarks/targets_load.py

from rela_hf.assets import fashion_mnist_dataset
from rela_hf.convert import convert_efficientnet_lite0
from rela_hf.priors import load_prior
from rela_hf.targets import add_rela_targets
from rela_hf.whitening import PCAWhitening

REPO = Path(__file__).resolve().parent.parent


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, nargs="+", default=[2000, 8000, 20000])
    parser.add_argument(
        "--repeats",
        type=int,
        nargs="+",
        default=[5, 3, 3],
        help="timed pairs per --num_images entry (one value: the same for all)",
    )
    parser.add_argument(
        "--prior",
        default=None,
        help="a timm prior folder (default: the PyPI EfficientNet-Lite0, converted)",
    )
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both contenders")
    parser.add_argument("--student_width", type=int, default=512, help="k = min(this, prior width)")
    parser.add_argument("--num_proc_images", type=int, default=20000, help="0: skip num_proc 1 vs 2")
    parser.add_argument("--num_proc_repeats", type=int, default=2)
    parser.add_argument("--output_dir", type=Path, default=REPO / "benchmarks" / "results" / "targets")
    parser.add_argument("--report_only", action="store_true", help="re-render results.md from results.json")
    return parser.parse_args()


def raw_timm_model(folder: str, image_size: int) -> tuple[torch.nn.Module, Callable]:
    """The prior's weights as a user would load them with timm alone, and timm's eval transform."""
    model = timm.create_model(f"local-dir:{folder}", pretrained=True, num_classes=0).eval()
    config = timm.data.resolve_data_config({"input_size": (3, image_size, image_size)}, model=model)
    return model, timm.data.create_transform(**config, is_training=False)


def raw_timm_loop(
    model: torch.nn.Module, transform: Callable, images: list[PIL.Image.Image], batch_size: int
) -> torch.Tensor:
    """The baseline: batched inference over decoded PIL images (grey -> RGB), nothing else."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            outputs.append(model(torch.stack([transform(image.convert("RGB")) for image in batch])))
    return torch.cat(outputs)


def timed(fn: Callable[[], Any]) -> dict[str, float]:
    load, wall, cpu = os.getloadavg()[0], time.perf_counter(), time.process_time()
    fn()
    return {
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
        "load_average": round(load, 2),
    }


def ratio_to_raw_loop(
    args: argparse.Namespace, prior, model, transform, n: int, repeats: int
) -> tuple[dict, torch.Tensor]:
    """Alternating pairs (raw loop, add_rela_targets) on the first ``n`` images.

    Returns the row and the raw loop's embeddings (the prior's), to time the whitening fit on.
    """
    dataset = fashion_mnist_dataset("train", limit=n, seed=0)
    images = list(dataset["image"])  # decoded once, outside the raw loop's timing
    head = images[: 2 * args.batch_size]
    reference = torch.cat([prior.embed(head[i : i + args.batch_size]) for i in (0, args.batch_size)])
    same = raw_timm_loop(model, transform, head, args.batch_size)
    torch.testing.assert_close(same, reference, rtol=0, atol=1e-5)
    embeddings: list[torch.Tensor] = []
    contenders = {
        "raw timm loop": lambda: embeddings.append(raw_timm_loop(model, transform, images, args.batch_size)),
        "add_rela_targets": lambda: add_rela_targets(
            dataset, prior, student_width=args.student_width, batch_size=args.batch_size
        ),
    }
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in contenders}
    for repeat in range(repeats):
        order = list(contenders) if repeat % 2 == 0 else list(contenders)[::-1]
        for name in order:
            runs[name].append(timed(contenders[name]))
        print(
            f"{n} images, repeat {repeat}: "
            + ", ".join(
                f"{name} {runs[name][-1]['wall_s']:.1f} s (load {runs[name][-1]['load_average']})"
                for name in contenders
            ),
            flush=True,
        )
    raw, add = runs["raw timm loop"], runs["add_rela_targets"]

    def median(rows: list[dict[str, Any]], key: str) -> float:
        return statistics.median(row[key] for row in rows)

    row = {
        "num_images": n,
        "repeats": repeats,
        "runs": runs,
        "embeddings_bitwise_equal_to_the_prior": bool(torch.equal(same, reference)),
        "images_per_s": {name: round(n / median(rows, "wall_s"), 1) for name, rows in runs.items()},
        "ratio": round(median(raw, "wall_s") / median(add, "wall_s"), 3),
        "ratio_median_of_pairs": round(
            statistics.median(r["wall_s"] / a["wall_s"] for r, a in zip(raw, add, strict=True)), 3
        ),
        "cpu_time_ratio": round(median(raw, "cpu_s") / median(add, "cpu_s"), 3),
        "load_average_range": [
            min(r["load_average"] for r in raw + add),
            max(r["load_average"] for r in raw + add),
        ],
    }
    return row, embeddings[-1]


def num_proc_comparison(args: argparse.Namespace, folder: str, work: Path) -> dict:
    """num_proc 1 and 2 in fresh processes, alternating, ``--num_proc_repeats`` times each."""
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for repeat in range(args.num_proc_repeats):
        for num_proc in (1, 2) if repeat % 2 == 0 else (2, 1):
            runs[num_proc].append(
                measure_add_rela_targets(
                    work / f"targets_{num_proc}.npy",
                    images=args.num_proc_images,
                    num_proc=num_proc,
                    prior=folder,
                    random_init=False,
                    image_size=args.image_size,
                    k=min(args.student_width, 1280),
                    batch_size=args.batch_size,
                    threads=args.threads,
                )
            )
            print(f"num_proc={num_proc}: {runs[num_proc][-1]}", flush=True)
    equal = np.array_equal(np.load(work / "targets_1.npy"), np.load(work / "targets_2.npy"))
    return {
        "num_images": args.num_proc_images,
        "runs": {str(k): v for k, v in runs.items()},
        "median_seconds": {str(k): statistics.median(r["seconds"] for r in v) for k, v in runs.items()},
        "peak_rss_mib": {str(k): max(r["peak_rss_mib"] for r in v) for k, v in runs.items()},
        "targets_bitwise_equal": bool(equal),
    }


NOTES = [
    "## Reading the numbers",
    "",
    (
        "- Both contenders run the same forward passes (the raw loop's embeddings are checked "
        "against the prior's first). What `add_rela_targets` adds: decoding the PNGs (the raw "
        "loop is handed decoded images), the float64 whitening fit (a streaming covariance, "
        "O(N D^2), and one D x D `eigh`, a fixed cost) and the whitened column. What it saves: "
        "`ToTensor` and `Normalize` run once per batch instead of once per image (same bits)."
    ),
    (
        "- On a shared 2-core machine, torch's 2-thread OpenMP regions wait for whichever thread "
        "was preempted, so both contenders slow down together when the load average is high; "
        "the alternating pairs keep the comparison fair, not the absolute rates."
    ),
    (
        "- `num_proc=2` on CPU runs two worker threads in this process with `cores // 2` torch "
        "threads each (no spawned processes, no second copy of the libraries or of the prior), "
        "so its memory is about one process's; its targets are bitwise those of one worker at the "
        "same thread count."
    ),
]


def render(result: dict[str, Any]) -> str:
    setup, fit = result["setup"], result["whitening_fit"]
    lines = [
        "# `add_rela_targets` throughput (`benchmarks/targets_throughput.py`)",
        "",
        (
            f"{setup['cpus']} CPUs ({setup['cpu']}), torch {setup['torch']}, timm {setup['timm']}, "
            f"datasets {setup['datasets']}; rela-hf at {setup['revision']}. Prior {setup['prior']} "
            f"({setup['embed_dim']}-d) at {setup['image_size']} px, batch {setup['batch_size']}, "
            f"{setup['threads']} torch threads, k={setup['k']}; Fashion-MNIST training images "
            "(grey 28x28)."
        ),
        "",
        *([result["conditions"], ""] if "conditions" in result else []),
        "## Ratio to a raw timm inference loop (alternating pairs, same process)",
        "",
        (
            "| images | raw timm loop | add_rela_targets | ratio (medians) | median of pair ratios "
            "| CPU-time ratio | load average |"
        ),
        "|---|---|---|---|---|---|---|",
        *map(ratio_row, result["ratio"]),
        "",
        *(
            f"The {row['num_images']:,}-image row comes from {row['measured_separately']}.\n"
            for row in result["ratio"]
            if "measured_separately" in row
        ),
        (
            "Whitening fit alone (float64 streaming covariance + `eigh`), on the "
            f"{fit['num_images']:,}-image embeddings: {fit['seconds']} s."
        ),
        "",
    ]
    if result.get("num_proc"):
        npc = result["num_proc"]
        lines += [
            "## num_proc 1 vs 2 (fresh processes, alternating)",
            "",
            (
                "| num_proc | add_rela_targets s (each run) | median | peak RSS (process tree) "
                "| process lifetime | load average at start |"
            ),
            "|---|---|---|---|---|---|",
            *(num_proc_row(npc, key) for key in npc["runs"]),
            "",
            f"{npc['num_images']:,} images; targets bitwise equal: {npc['targets_bitwise_equal']}.",
            "",
        ]
    lines += [*NOTES, "", "Every timing with its load average: `results.json`."]
    return "\n".join(lines) + "\n"


def ratio_row(row: dict[str, Any]) -> str:
    rate, (low, high) = row["images_per_s"], row["load_average_range"]
    return (
        f"| {row['num_images']:,} ({row['repeats']} pairs) | {rate['raw timm loop']} img/s "
        f"| {rate['add_rela_targets']} img/s | **{row['ratio']}** "
        f"| {row['ratio_median_of_pairs']} | {row['cpu_time_ratio']} | {low}-{high} |"
    )


def num_proc_row(npc: dict[str, Any], key: str) -> str:
    runs = npc["runs"][key]

    def each(field: str) -> str:
        return ", ".join(str(run[field]) for run in runs)

    loads = ", ".join(str(run["load_average"][0]) for run in runs)
    return (
        f"| {key} | {each('seconds')} | {npc['median_seconds'][key]} "
        f"| {npc['peak_rss_mib'][key]} MiB | {each('process_seconds')} s | {loads} |"
    )


def main() -> None:
    args = parse_args()
    if args.report_only:
        result = json.loads((args.output_dir / "results.json").read_text())
        (args.output_dir / "results.md").write_text(render(result))
        print(render(result))
        return
    repeats = args.repeats * len(args.num_images) if len(args.repeats) == 1 else args.repeats
    if len(repeats) != len(args.num_images):
        raise SystemExit("--repeats takes one value or one per --num_images entry.")
    datasets.disable_progress_bars()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.prior or str(convert_efficientnet_lite0(Path(tmp) / "efficientnet_lite0"))
        prior = load_prior(folder, image_size=args.image_size)
        model, transform = raw_timm_model(folder, args.image_size)
        raw_timm_loop(model, transform, list(fashion_mnist_dataset("test", limit=128)["image"]), 64)  # warm-up
        rows = [
            ratio_to_raw_loop(args, prior, model, transform, n, r)
            for n, r in zip(args.num_images, repeats, strict=True)
        ]
        ratios = [row for row, _ in rows]
        embeddings = max((e for _, e in rows), key=len)  # the raw loop's, largest run
        k = min(args.student_width, prior.embed_dim)
        fit = timed(lambda: PCAWhitening(k).fit([embeddings[i : i + 8192] for i in range(0, len(embeddings), 8192)]))
        num_proc = num_proc_comparison(args, folder, Path(tmp)) if args.num_proc_images else None
    result = {
        "setup": {
            "cpus": os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "timm": timm.__version__,
            "datasets": datasets.__version__,
            "revision": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip(),
            "prior": Path(folder).name,
            "embed_dim": prior.embed_dim,
            "image_size": args.image_size,
            "batch_size": args.batch_size,
            "threads": args.threads,
            "k": k,
        },
        "ratio": ratios,
        "whitening_fit": {
            "num_images": len(embeddings),
            "seconds": fit["wall_s"],
            "load_average": fit["load_average"],
        },
        "num_proc": num_proc,
    }
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.output_dir / "results.md").write_text(render(result))
    print(render(result))


if __name__ == "__main__":
    main()
