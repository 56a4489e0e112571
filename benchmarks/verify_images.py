#!/usr/bin/env python
"""Throughput of the trainer's image verification (``rela_hf.image_checks.check_images``).

Two datasets of real images, each saved with ``save_to_disk`` and read back memory-mapped, as the
trainer reads a local dataset:

- **fashion_mnist**: Fashion-MNIST training images (28x28 grey PNGs, ~0.3 kB), from the Debian
  package ``dataset-fashion-mnist``.
- **imagenet_like**: crops of the 20 ImageNet-val photos shipped in the foolbox wheel, at
  ImageNet's average size (random widths 320-480, heights 280-420: ~400x350 px) and re-encoded
  as JPEG quality 99, 4:2:0, which brings the mean file to ImageNet's ~110 kB. Crops are taken
  at native resolution (no upscaling), half of them mirrored, so no two files are alike.

For each dataset the same rows are verified, interleaved (so load changes on a shared machine hit
every variant alike), ``--repeats`` times each:

- ``former loop``: the check as it was (one process, a Python loop over 1000-row slices);
- ``check_images, num_proc=N`` for each ``--num_proc``: a fresh record folder every time, so it
  decodes everything;
- ``recorded``: ``check_images`` again on the same dataset version: the record answers.

Two rates are reported: images per wall-clock second, and images per CPU second (user + system
time of this process and its worker processes, from ``getrusage``), the per-core cost that stays
meaningful on a loaded machine. ImageNet's check (1,281,167 images) is projected from the
``imagenet_like`` per-core rate: CPU hours, and hours on 8, 16 and 32 cores at that rate.

    python benchmarks/verify_images.py      # writes benchmarks/results/verify/
    python benchmarks/verify_images.py --fashion_mnist_images 2000 --jpeg_images 100 --repeats 1
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

from rela_hf.assets import fashion_mnist_dataset, foolbox_image_files
from rela_hf.image_checks import check_images

IMAGENET_TRAIN_IMAGES = 1_281_167
RESULTS = Path(__file__).resolve().parent / "results" / "verify"
IMAGE = datasets.Features({"image": datasets.Image()})


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fashion_mnist_images", type=int, default=20000)
    parser.add_argument("--jpeg_images", type=int, default=800)
    parser.add_argument("--num_proc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each variant (median)")
    parser.add_argument("--output_dir", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def imagenet_like_jpegs(count: int, seed: int) -> list[bytes]:
    """Native-resolution crops of the foolbox ImageNet photos, ~400x350 px, JPEG q99 (~110 kB)."""
    photos = [Image.open(path).convert("RGB") for path, _ in foolbox_image_files("imagenet")]
    rng = np.random.default_rng(seed)
    encoded = []
    for index in range(count):
        photo = photos[index % len(photos)]
        width, height = int(rng.uniform(320, 480)), int(rng.uniform(280, 420))
        left = int(rng.integers(0, photo.width - width + 1))
        top = int(rng.integers(0, photo.height - height + 1))
        crop = photo.crop((left, top, left + width, top + height))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=99, subsampling="4:2:0")
        encoded.append(buffer.getvalue())
    return encoded


def saved_datasets(args: argparse.Namespace, work: Path) -> dict[str, datasets.Dataset]:
    """Both datasets, saved to ``work`` and loaded back memory-mapped."""
    fashion = fashion_mnist_dataset("train", limit=args.fashion_mnist_images, seed=args.seed)
    jpegs = imagenet_like_jpegs(args.jpeg_images, args.seed)
    built = {
        "fashion_mnist": fashion.select_columns(["image"]),
        "imagenet_like": datasets.Dataset.from_dict(
            {"image": [{"bytes": data, "path": None} for data in jpegs]}, features=IMAGE
        ),
    }
    loaded = {}
    for name, dataset in built.items():
        dataset.save_to_disk(str(work / name))
        loaded[name] = datasets.load_from_disk(str(work / name))
    return loaded


def describe(dataset: datasets.Dataset) -> dict[str, float]:
    """Mean file size and pixel count of the dataset's images."""
    raw = dataset.cast_column("image", datasets.Image(decode=False))["image"]
    sizes = [Image.open(io.BytesIO(cell["bytes"])).size for cell in raw]
    return {
        "images": len(raw),
        "mean_kB": round(float(np.mean([len(c["bytes"]) for c in raw])) / 1000, 2),
        "mean_width": round(float(np.mean([s[0] for s in sizes])), 1),
        "mean_height": round(float(np.mean([s[1] for s in sizes])), 1),
    }


def former_loop(dataset: datasets.Dataset) -> int:
    """The check as the trainer ran it before: one process, 1000-row slices, a full decode each."""
    raw = dataset.select_columns(["image"]).cast_column("image", datasets.Image(decode=False))
    bad = 0
    for start in range(0, len(raw), 1000):
        for cell in raw[start : start + 1000]["image"]:
            try:
                with Image.open(io.BytesIO(cell["bytes"])) as image:
                    image.load()
            except OSError:
                bad += 1
    return bad


def cpu_seconds() -> float:
    """User + system time of this process and of its finished child processes."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    run()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def variants(dataset: datasets.Dataset, num_procs: list[int]) -> dict[str, Callable[[], object]]:
    def fresh_check(num_proc: int) -> Callable[[], object]:
        def run() -> None:
            with tempfile.TemporaryDirectory() as records:
                result = check_images(dataset, num_proc=num_proc, record_dir=records)
                assert result.ok and result.decoded == len(dataset), result

        return run

    runs: dict[str, Callable[[], object]] = {"former loop": lambda: former_loop(dataset)}
    runs.update({f"check_images, num_proc={n}": fresh_check(n) for n in num_procs})
    return runs


def measure(dataset: datasets.Dataset, num_procs: list[int], repeats: int) -> dict[str, dict[str, float]]:
    """Median wall and CPU time of each variant, interleaved; then the recorded re-check."""
    runs = variants(dataset, num_procs)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for repeat in range(repeats):
        order = list(runs) if repeat % 2 == 0 else list(reversed(runs))
        for name in order:
            times[name].append(timed(runs[name]))
    rows = {}
    for name, samples in times.items():
        wall = statistics.median(s[0] for s in samples)
        cpu = statistics.median(s[1] for s in samples)
        rows[name] = {
            "wall_s": round(wall, 3),
            "cpu_s": round(cpu, 3),
            "images_per_s": round(len(dataset) / wall, 1),
            "images_per_cpu_s": round(len(dataset) / cpu, 1),
        }
    with tempfile.TemporaryDirectory() as records:
        check_images(dataset, record_dir=records)
        wall, cpu = timed(lambda: check_images(dataset, record_dir=records))
    rows["recorded"] = {"wall_s": round(wall, 4), "cpu_s": round(cpu, 4)}
    return rows


def projection(per_cpu_second: float) -> dict[str, float]:
    """ImageNet's check (1.28 M images) at the measured per-core rate."""
    cpu_hours = IMAGENET_TRAIN_IMAGES / per_cpu_second / 3600
    return {
        "cpu_hours": round(cpu_hours, 2),
        **{f"hours_on_{n}_cores": round(cpu_hours / n, 3) for n in (8, 16, 32)},
    }


def machine() -> dict[str, object]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": model,
        "cores_usable": len(os.sched_getaffinity(0)),
        "load_average": os.getloadavg(),
        "pillow": Image.__version__,
        "datasets": datasets.__version__,
    }


def load(averages: tuple[float, ...]) -> str:
    return " / ".join(f"{value:.1f}" for value in averages)


def markdown(report: dict) -> str:
    lines = [
        "# Image verification throughput (`benchmarks/verify_images.py`)",
        "",
        (
            f"Machine: {report['machine']['cpu']}, {report['machine']['cores_usable']} usable "
            f"cores; load average {load(report['load_before'])} before, "
            f"{load(report['machine']['load_average'])} after (1, 5, 15 min). Wall-clock rates "
            "depend on that load; images per CPU second (this process + its workers) measure the "
            "per-core cost."
        ),
        "",
    ]
    for name, data in report["datasets"].items():
        shape = data["shape"]
        lines += [
            (
                f"## {name}: {shape['images']} images, mean {shape['mean_kB']} kB, "
                f"{shape['mean_width']:.0f}x{shape['mean_height']:.0f} px"
            ),
            "",
            "| variant | wall s | images/s | CPU s | images per CPU s |",
            "|---|---|---|---|---|",
        ]
        for variant, row in data["runs"].items():
            if variant == "recorded":
                continue
            lines.append(
                f"| {variant} | {row['wall_s']} | {row['images_per_s']} | {row['cpu_s']} | {row['images_per_cpu_s']} |"
            )
        lines += [
            "",
            f"Recorded re-check (same dataset version): {data['runs']['recorded']['wall_s']} s.",
            "",
        ]
    lines += [
        "## ImageNet (1,281,167 images) at the imagenet_like per-core rate",
        "",
        "| variant | CPU hours | hours on 8 / 16 / 32 cores |",
        "|---|---|---|",
    ]
    for variant, row in report["imagenet_projection"].items():
        lines.append(
            f"| {variant} | {row['cpu_hours']} | {row['hours_on_8_cores']} / "
            f"{row['hours_on_16_cores']} / {row['hours_on_32_cores']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    datasets.disable_progress_bars()
    load_before = os.getloadavg()
    report: dict = {
        "arguments": {k: str(v) for k, v in vars(args).items()},
        "load_before": load_before,
        "datasets": {},
    }
    with tempfile.TemporaryDirectory() as work:
        for name, dataset in saved_datasets(args, Path(work)).items():
            report["datasets"][name] = {
                "shape": describe(dataset),
                "runs": measure(dataset, args.num_proc, args.repeats),
            }
            print(name, json.dumps(report["datasets"][name], indent=1), flush=True)
    report["machine"] = machine()
    runs = report["datasets"]["imagenet_like"]["runs"]
    report["imagenet_projection"] = {v: projection(r["images_per_cpu_s"]) for v, r in runs.items() if v != "recorded"}
    args.output_dir.mkdir(parents=True, exist_ok=True)
    (args.output_dir / "results.json").write_text(json.dumps(report, indent=1))
    (args.output_dir / "results.md").write_text(markdown(report))
    print(markdown(report))


if __name__ == "__main__":
    main()
