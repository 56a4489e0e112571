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
    python recipes/evaluate_encoder.py --model_name_or_path outputs/rela/backbone \\
        --dataset_name offline:fashion_mnist --max_train_samples 10000 --max_eval_samples 2000

    # a Hub encoder on a Hub dataset, pinned revisions, 2 GPUs for the feature extraction
    accelerate launch --num_processes 2 recipes/evaluate_encoder.py \\
        --model_name_or_path me/rela-byol-resnet18-cifar10 --model_revision main \\
        --dataset_name uoft-cs/cifar10 --image_column img --dataset_revision <sha>
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import datasets
from accelerate import Accelerator
from huggingface_hub import HfApi

from rela_hf.arguments import DatasetArguments, Rename, arg, parse_command_line
from rela_hf.assets import fashion_mnist_dataset
from rela_hf.data import load_image_dataset
from rela_hf.errors import ConfigError, run_command
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


@dataclass
class EncoderArguments:
    """The encoder evaluated."""

    _argument_group_name = "encoder"

    model_name_or_path: str | None = arg("model_name_or_path")
    model_revision: str | None = arg("model_revision")
    preprocessing: Literal["encoder", "official"] = arg("preprocessing")
    image_size: int | None = arg("image_size", default=None)


@dataclass
class EvaluationDataArguments(DatasetArguments):
    """The labelled images: the kNN bank / probe training split and the evaluated split."""

    _argument_group_name = "data"

    dataset_pretty_name: str | None = arg("dataset_pretty_name")
    eval_split: str | None = arg("eval_split", default="test")
    max_train_samples: int | None = arg("max_train_samples")
    max_eval_samples: int | None = arg("max_eval_samples")
    label_column: str | None = arg("label_column")


@dataclass
class ProtocolArguments:
    """The protocols and their settings (the official code's by default)."""

    _argument_group_name = "protocol"

    protocols: list[str] = arg("protocols", default=list(PROTOCOLS), choices=list(PROTOCOLS))
    knn_k: int = arg("knn_k", default=KNN_K)
    knn_temperature: float = arg("knn_temperature", default=KNN_TEMPERATURE)
    probe_epochs: int = arg("probe_epochs", default=LINEAR_PROBE_EPOCHS)
    probe_learning_rate: float = arg("probe_learning_rate", default=LINEAR_PROBE_LR)
    probe_batch_size: int = arg("probe_batch_size", default=LINEAR_PROBE_BATCH_SIZE)
    seed: int = arg("seed", default=0)
    use_evaluate: bool = arg("use_evaluate")


@dataclass
class EvaluationRunArguments:
    """How the features are extracted and where the results go."""

    _argument_group_name = "run"

    per_device_eval_batch_size: int = arg("per_device_eval_batch_size")
    dataloader_num_workers: int = arg("dataloader_num_workers", default=0)
    output_file: str | None = arg("output_file")


@dataclass
class EvaluateArguments(EncoderArguments, EvaluationDataArguments, ProtocolArguments, EvaluationRunArguments):
    """Every option of ``rela-hf-evaluate``; checked when built."""

    def __post_init__(self) -> None:
        for name in ("model_name_or_path", "dataset_name", "eval_split"):
            if not getattr(self, name):
                raise ConfigError(f"--{name} is required.")
        if "linear_probe" in self.protocols and self.probe_epochs < LINEAR_PROBE_LAST_EPOCHS:
            raise ConfigError(
                f"--probe_epochs {self.probe_epochs}: the linear probe reports the mean of its last "
                f"{LINEAR_PROBE_LAST_EPOCHS} epochs, so it needs at least {LINEAR_PROBE_LAST_EPOCHS}."
            )


RENAMED_OPTIONS = (
    Rename("encoder", "model_name_or_path"),
    Rename("revision", "model_revision"),
    Rename("dataset", "dataset_name"),
    Rename("dataset_config", "dataset_config_name"),
    Rename("test_split", "eval_split"),
    Rename("max_test_samples", "max_eval_samples"),
    Rename("k", "knn_k"),
    Rename("temperature", "knn_temperature"),
    Rename("epochs", "probe_epochs"),
    Rename("lr", "probe_learning_rate"),
    Rename("batch_size", "per_device_eval_batch_size"),
    Rename("num_workers", "dataloader_num_workers"),
)


def _former_display_name(argv: list[str]) -> list[str]:
    """rela-hf 0.2's ``--dataset X --dataset_name "Pretty"``: there ``--dataset_name`` was the
    display name (now ``--dataset_pretty_name``)."""
    if not any(token == "--dataset" or token.startswith("--dataset=") for token in argv):
        return argv
    renamed = [
        token.replace("--dataset_name", "--dataset_pretty_name", 1)
        if token.split("=")[0] == "--dataset_name"
        else token
        for token in argv
    ]
    if renamed != argv:
        warnings.warn(
            Rename("dataset_name", "dataset_pretty_name").message() + " (next to the former --dataset)",
            FutureWarning,
            stacklevel=3,
        )
    return renamed


def parse_args(argv: list[str] | None = None) -> EvaluateArguments:
    return parse_command_line(
        EvaluateArguments,
        argv,
        renames=RENAMED_OPTIONS,
        description=__doc__.split("\n\n")[0],
        rewrite_argv=_former_display_name,
    )


def load_split(args: EvaluateArguments, split: str, limit: int | None) -> Any:
    """One labelled split, optionally a seeded random subset of ``limit`` images."""
    if args.dataset_name.startswith(OFFLINE_PREFIX):
        name = args.dataset_name.removeprefix(OFFLINE_PREFIX)
        if name not in OFFLINE_DATASETS:
            raise ConfigError(f"Unknown offline dataset {name!r}; available: {sorted(OFFLINE_DATASETS)}.")
        return fashion_mnist_dataset(split, limit=limit, seed=args.seed)
    dataset = load_image_dataset(
        args.dataset_name,
        split=split,
        config_name=args.dataset_config_name,
        revision=args.dataset_revision,
        image_column=args.image_column,
    )
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
        logger.warning(
            "Could not resolve the revision of %s (%s); recording %r.", repo_id, type(error).__name__, revision
        )
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
    print(
        f"\n{results['encoder'] or 'encoder'} on {dataset['name']} "
        f"({dataset['train_split']}: {dataset['num_train_samples']}, "
        f"{dataset['split']}: {dataset['num_samples']} images, {results['feature_dim']}-d features)"
    )
    for entry in results["results"]:
        std = f" ± {100 * entry['std']:.2f}" if entry.get("std") is not None else ""
        check = f"   (evaluate: {100 * entry['evaluate_value']:.2f})" if entry.get("evaluate_value") is not None else ""
        print(f"  {entry['protocol']:<13} top-1 {100 * entry['value']:6.2f}{std} %   {entry['args']}{check}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    accelerator = Accelerator()
    if not accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_error()

    train = load_split(args, args.train_split, args.max_train_samples)
    test = load_split(args, args.eval_split, args.max_eval_samples)
    offline = args.dataset_name.startswith(OFFLINE_PREFIX)
    dataset_info = {
        "id": args.dataset_name,
        "name": args.dataset_pretty_name
        or OFFLINE_DATASETS.get(args.dataset_name.removeprefix(OFFLINE_PREFIX))
        or args.dataset_name,
        "revision": None if offline else resolve_hub_revision(args.dataset_name, args.dataset_revision, "dataset"),
        "config": args.dataset_config_name,
        "train_split": args.train_split,
        "split": args.eval_split,
    }
    results = evaluate_encoder(
        args.model_name_or_path,
        train,
        test,
        dataset=dataset_info,
        protocols=args.protocols,
        revision=args.model_revision,
        preprocessing=args.preprocessing,
        image_size=args.image_size,
        batch_size=args.per_device_eval_batch_size,
        accelerator=accelerator,
        image_column=args.image_column,
        label_column=args.label_column,
        k=args.knn_k,
        temperature=args.knn_temperature,
        epochs=args.probe_epochs,
        lr=args.probe_learning_rate,
        probe_batch_size=args.probe_batch_size,
        seed=args.seed,
        use_evaluate=args.use_evaluate,
    )
    if results["encoder"] and not Path(args.model_name_or_path).exists():
        results["encoder_revision"] = resolve_hub_revision(args.model_name_or_path, args.model_revision, "model")
    if accelerator.is_main_process:
        print_results(results)
        path = write_eval_results(results, args.output_file or default_output_file(args.model_name_or_path))
        print(f"\nWrote {path}")
    accelerator.wait_for_everyone()
    return results


def cli() -> None:
    """The ``rela-hf-evaluate`` console command."""
    run_command(main, "rela-hf-evaluate")


if __name__ == "__main__":
    cli()
