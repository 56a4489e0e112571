#!/usr/bin/env python3
"""Evaluate a pretrained encoder on frozen features: weighted kNN and the linear probe.

The protocol of the official ReLA code (arXiv:2405.14669): deterministic resize + centre crop
(the encoder's own preprocessing from its timm ``pretrained_cfg``, or ``--preprocessing
official``: ImageNet mean/std at ``--image_size``), features extracted once without gradients,
then

- kNN (InstDisc): cosine similarity, k=200 neighbours voting with weight exp(sim / 0.1);
- linear probe: one Linear layer, Adam lr 3e-4, 100 epochs, reported as the mean ± std of the
  test accuracy over the last 3 epochs.

The results are printed and written to ``eval_results.json`` (dataset with revision, splits,
sample counts, preprocessing, one entry per protocol), which ``recipes/push_to_hub.py`` turns
into the model card's ``model-index``. By default the file goes next to the run when the encoder
is a training run's ``<output_dir>/backbone`` export, else to the working directory.

Examples:
    # a training run's export, on the offline Fashion-MNIST (no Hub needed)
    python recipes/evaluate_encoder.py --encoder outputs/byol_rela/backbone \\
        --dataset offline:fashion_mnist --max_train_samples 10000 --max_test_samples 2000

    # a Hub encoder on a Hub dataset, pinned revisions, 2 GPUs for the feature extraction
    accelerate launch --num_processes 2 recipes/evaluate_encoder.py \\
        --encoder me/rela-byol-resnet18-cifar10 --revision main \\
        --dataset uoft-cs/cifar10 --dataset_revision <sha> --label_column label
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

import datasets
from accelerate import Accelerator
from huggingface_hub import HfApi

from rela_hf.assets import fashion_mnist_dataset
from rela_hf.data import load_image_dataset
from rela_hf.evaluation import (
    KNN_K,
    KNN_TEMPERATURE,
    LINEAR_PROBE_BATCH_SIZE,
    LINEAR_PROBE_EPOCHS,
    LINEAR_PROBE_LAST_EPOCHS,
    LINEAR_PROBE_LR,
    PROTOCOLS,
    evaluate_encoder,
    write_eval_results,
)
from rela_hf.run_layout import RunLayout

logger = logging.getLogger("evaluate_encoder")

OFFLINE_PREFIX = "offline:"
OFFLINE_DATASETS = {"fashion_mnist": "Fashion-MNIST (Debian dataset-fashion-mnist, offline)"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    encoder = parser.add_argument_group("encoder")
    encoder.add_argument("--encoder", required=True,
                         help="Hub repo id (timm format), local export folder, or hf-hub:/local-dir: name.")
    encoder.add_argument("--revision", default=None, help="Hub revision of the encoder.")
    encoder.add_argument("--preprocessing", default="encoder", choices=["encoder", "official"],
                         help="encoder: its pretrained_cfg; official: resize+crop, ImageNet mean/std.")
    encoder.add_argument("--image_size", type=int, default=None, help="Override the input size.")

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", required=True,
                      help="Hub dataset id, save_to_disk or image folder, or offline:fashion_mnist.")
    data.add_argument("--dataset_name", default=None, help="Display name in results and card.")
    data.add_argument("--dataset_config", default=None)
    data.add_argument("--dataset_revision", default=None, help="Pin the Hub dataset (commit sha).")
    data.add_argument("--train_split", default="train", help="kNN memory bank / probe training split.")
    data.add_argument("--test_split", default="test", help="Evaluation split.")
    data.add_argument("--max_train_samples", type=int, default=None,
                      help="A fixed random subset (seeded) of the train split.")
    data.add_argument("--max_test_samples", type=int, default=None)
    data.add_argument("--image_column", default="image")
    data.add_argument("--label_column", default="label")

    protocol = parser.add_argument_group("protocol")
    protocol.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    protocol.add_argument("--k", type=int, default=KNN_K)
    protocol.add_argument("--temperature", type=float, default=KNN_TEMPERATURE)
    protocol.add_argument("--epochs", type=int, default=LINEAR_PROBE_EPOCHS)
    protocol.add_argument("--lr", type=float, default=LINEAR_PROBE_LR)
    protocol.add_argument("--probe_batch_size", type=int, default=LINEAR_PROBE_BATCH_SIZE)
    protocol.add_argument("--seed", type=int, default=0, help="Linear probe and subset seed.")
    protocol.add_argument("--use_evaluate", action="store_true",
                          help="Cross-check with the `evaluate` library (needs its module: Hub or local).")

    run = parser.add_argument_group("run")
    run.add_argument("--batch_size", type=int, default=256, help="Feature extraction, per process.")
    run.add_argument("--num_workers", type=int, default=0)
    run.add_argument("--output_file", default=None,
                     help="Where to write eval_results.json (default: next to a training run's "
                          "export, else ./eval_results.json).")
    args = parser.parse_args(argv)
    if "linear_probe" in args.protocols and args.epochs < LINEAR_PROBE_LAST_EPOCHS:
        parser.error(f"--epochs {args.epochs}: the linear probe reports the mean of its last "
                     f"{LINEAR_PROBE_LAST_EPOCHS} epochs, so it needs at least {LINEAR_PROBE_LAST_EPOCHS}.")
    return args


def load_split(args: argparse.Namespace, split: str, limit: int | None) -> Any:
    """One labelled split, optionally a seeded random subset of ``limit`` images."""
    if args.dataset.startswith(OFFLINE_PREFIX):
        name = args.dataset.removeprefix(OFFLINE_PREFIX)
        if name not in OFFLINE_DATASETS:
            raise SystemExit(f"Unknown offline dataset {name!r}; available: {sorted(OFFLINE_DATASETS)}.")
        return fashion_mnist_dataset(split, limit=limit, seed=args.seed)
    dataset = load_image_dataset(args.dataset, split=split, config_name=args.dataset_config,
                                 revision=args.dataset_revision, image_column=args.image_column)
    if limit is not None and limit < len(dataset):
        dataset = dataset.shuffle(seed=args.seed).select(range(limit))
    return dataset


def resolve_hub_revision(repo_id: str, revision: str | None, repo_type: str) -> str | None:
    """The commit sha a Hub revision points at now (so the results pin it), or None if local."""
    if Path(repo_id).exists() or repo_id.startswith((OFFLINE_PREFIX, "local-dir:")):
        return revision
    repo_id = repo_id.removeprefix("hf-hub:").removeprefix("hf_hub:")
    try:
        return HfApi().repo_info(repo_id, revision=revision, repo_type=repo_type).sha
    except Exception as error:  # noqa: BLE001 - provenance is best effort, never fatal
        logger.warning("Could not resolve the revision of %s (%s); recording %r.",
                       repo_id, type(error).__name__, revision)
        return revision


def default_output_file(encoder: str) -> Path:
    """``<output_dir>/eval_results.json`` for a training run (its output_dir or its backbone/)."""
    folder = Path(encoder.removeprefix("local-dir:"))
    for run in (RunLayout(folder), RunLayout(folder.parent)):  # the run's folder, or its export's
        if folder.is_dir() and run.summary_file.is_file():
            return run.eval_results_file
    return Path(RunLayout.EVAL_RESULTS)


def print_results(results: dict[str, Any]) -> None:
    dataset = results["dataset"]
    print(f"\n{results['encoder'] or 'encoder'} on {dataset['name']} "
          f"({dataset['train_split']}: {dataset['num_train_samples']}, "
          f"{dataset['split']}: {dataset['num_samples']} images, {results['feature_dim']}-d features)")
    for entry in results["results"]:
        std = f" ± {100 * entry['std']:.2f}" if entry.get("std") is not None else ""
        check = (f"   (evaluate: {100 * entry['evaluate_value']:.2f})"
                 if entry.get("evaluate_value") is not None else "")
        print(f"  {entry['protocol']:<13} top-1 {100 * entry['value']:6.2f}{std} %   {entry['args']}{check}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    accelerator = Accelerator()
    if not accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_error()

    train = load_split(args, args.train_split, args.max_train_samples)
    test = load_split(args, args.test_split, args.max_test_samples)
    offline = args.dataset.startswith(OFFLINE_PREFIX)
    dataset_info = {
        "id": args.dataset,
        "name": args.dataset_name or OFFLINE_DATASETS.get(args.dataset.removeprefix(OFFLINE_PREFIX))
        or args.dataset,
        "revision": None if offline else resolve_hub_revision(args.dataset, args.dataset_revision, "dataset"),
        "config": args.dataset_config,
        "train_split": args.train_split,
        "split": args.test_split,
    }
    results = evaluate_encoder(
        args.encoder, train, test, dataset=dataset_info, protocols=args.protocols,
        revision=args.revision, preprocessing=args.preprocessing, image_size=args.image_size,
        batch_size=args.batch_size, accelerator=accelerator, image_column=args.image_column,
        label_column=args.label_column, k=args.k, temperature=args.temperature, epochs=args.epochs,
        lr=args.lr, probe_batch_size=args.probe_batch_size, seed=args.seed,
        use_evaluate=args.use_evaluate,
    )
    if results["encoder"] and not Path(args.encoder).exists():
        results["encoder_revision"] = resolve_hub_revision(args.encoder, args.revision, "model")
    if accelerator.is_main_process:
        print_results(results)
        path = write_eval_results(results, args.output_file or default_output_file(args.encoder))
        print(f"\nWrote {path}")
    accelerator.wait_for_everyone()
    return results


def cli() -> None:
    """The ``rela-hf-evaluate`` console command."""
    main(sys.argv[1:])


if __name__ == "__main__":
    cli()
