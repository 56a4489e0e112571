#!/usr/bin/env python3
"""Make ReLA efficient data: an image dataset + one fixed, whitened prior target per image.

ReLA-D (Sun, Jiang & Lin, NeurIPS 2024, arXiv:2405.14669): run a pretrained *prior* once over the
training images, PCA-whiten its embeddings to k = min(student width, prior width) dimensions and
store them as a dataset column. The result feeds ``recipes/byol_rela.py``.

In: ``--dataset_name``, a Hub dataset id (``--dataset_config_name``, ``--train_split``,
``--dataset_revision``), a ``save_to_disk`` folder or an image folder (``imagefolder`` layout). Out: ``--output_dir`` (``save_to_disk`` +
``rela_targets.json`` + ``rela_whitening.safetensors`` + README card) and/or ``--hub_dataset_id``
(``Dataset.push_to_hub`` + the same files + card). ``--targets_only`` keeps only ``idx`` + targets,
pushed as a separate config named after prior and k (e.g. ``efficientnet_lite0_pca512``) and
joined to the images by index, so the images are not uploaded again; the trainer joins it back
(``rela-hf-train --targets_dataset_name``) without loading the prior.

Examples:
    # CIFAR-10 with an ImageNet prior, targets for a ResNet-18 student, pushed next to the images
    python recipes/make_targets.py --dataset_name uoft-cs/cifar10 --train_split train \\
        --image_column img --prior hf-hub:timm/resnet18.a1_in1k --student_width 512 \\
        --hub_dataset_id me/cifar10 --targets_only

    # offline: a local folder and the converted EfficientNet-Lite0 prior, saved to disk
    python recipes/make_targets.py --dataset_name ./fashion_mnist_train --prior ./efficientnet_lite0 \\
        --prior_image_size 64 --target_dim 512 --output_dir ./fashion_mnist_rela

Several GPUs: one process per GPU is used automatically when the prior is on CUDA.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import datasets
import multiprocess
import torch

from rela_hf.arguments import DatasetArguments, PriorArguments, Rename, arg, parse_command_line
from rela_hf.data import dataset_commit, load_image_dataset
from rela_hf.errors import ConfigError, run_command
from rela_hf.priors import load_prior
from rela_hf.targets import (
    add_rela_targets,
    push_rela_dataset,
    rela_targets_info,
    save_rela_dataset,
)

logger = logging.getLogger("make_targets")


@dataclass
class SourceArguments(DatasetArguments):
    """The images to make targets for."""

    _argument_group_name = "source images"

    max_train_samples: int | None = arg("max_train_samples")


@dataclass
class TargetsPriorArguments(PriorArguments):
    """The prior and where it runs."""

    _argument_group_name = "prior model"

    prior_random_init: bool = arg("prior_random_init")
    seed: int = arg("seed", default=0)
    device: str | None = arg("device")
    num_proc: int | None = arg("num_proc")


@dataclass
class TargetsArguments:
    """The targets' width and columns."""

    _argument_group_name = "targets"

    target_dim: int | None = arg("target_dim")
    student_width: int | None = arg("student_width")
    target_column: str = arg("target_column")
    keep_embeddings: bool = arg("keep_embeddings")


@dataclass
class TargetsOutputArguments:
    """Where the efficient dataset goes: a folder and/or the Hub."""

    _argument_group_name = "output"

    output_dir: str | None = arg("output_dir")
    overwrite_output_dir: bool = arg("overwrite_output_dir")
    hub_dataset_id: str | None = arg("hub_dataset_id")
    targets_only: bool = arg("targets_only")
    hub_config_name: str | None = arg("hub_config_name")
    hub_private_repo: bool | None = arg("hub_private_repo")
    write_card: bool = arg("write_card")


@dataclass
class MakeTargetsArguments(SourceArguments, TargetsPriorArguments, TargetsArguments, TargetsOutputArguments):
    """Every option of ``rela-hf-targets``; checked when built, before the prior runs."""

    def __post_init__(self) -> None:
        for name in ("dataset_name", "prior"):
            if getattr(self, name) is None:
                raise ConfigError(f"--{name} is required (on the command line or as `{name}:` in --config).")
        if self.output_dir is None and self.hub_dataset_id is None:
            raise ConfigError("nothing would be kept: pass --output_dir and/or --hub_dataset_id.")
        output_dir = Path(self.output_dir) if self.output_dir else None
        if output_dir and output_dir.is_file():
            raise ConfigError(f"--output_dir {output_dir} is a file; pass a folder (it is created if missing).")
        # say so now, not after the prior ran over everything
        if output_dir and output_dir.exists() and any(output_dir.iterdir()) and not self.overwrite_output_dir:
            raise ConfigError(f"{output_dir} is not empty: pass --overwrite_output_dir or another folder.")
        if self.max_train_samples is not None and self.max_train_samples < 1:
            raise ConfigError("--max_train_samples must be a positive integer.")


RENAMED_OPTIONS = (
    Rename("dataset", "dataset_name"),
    Rename("dataset_config", "dataset_config_name"),
    Rename("split", "train_split"),
    Rename("revision", "dataset_revision"),
    Rename("max_samples", "max_train_samples"),
    Rename("preprocessing", "prior_preprocessing"),
    Rename("image_size", "prior_image_size"),
    Rename("random_init", "prior_random_init"),
    Rename("k", "target_dim"),
    Rename("batch_size", "prior_batch_size"),
    Rename("config_name", "hub_config_name"),
    Rename("private", "hub_private_repo", flag=True),
    Rename("no_card", "write_card", invert=True),
)


def parse_args(argv: list[str] | None = None) -> MakeTargetsArguments:
    return parse_command_line(MakeTargetsArguments, argv, renames=RENAMED_OPTIONS, description=__doc__.split("\n\n")[0])


def load_source(args: MakeTargetsArguments) -> tuple[datasets.Dataset, dict]:
    """The split to convert, and where it came from (a Hub commit sha is pinned in the card)."""
    local = Path(args.dataset_name).expanduser().is_dir()
    if not local and (Path(args.dataset_name).exists() or args.dataset_name.startswith((".", "/", "~"))):
        raise ConfigError(f"--dataset_name {args.dataset_name!r} is not a folder (save_to_disk or image folder).")
    revision = (
        args.dataset_revision if local else dataset_commit(args.dataset_name, args.dataset_revision)
    )  # pin what is read
    try:
        dataset = load_image_dataset(
            args.dataset_name,
            split=args.train_split,
            config_name=args.dataset_config_name,
            revision=revision,
            image_column=args.image_column,
        )
    except (ValueError, FileNotFoundError) as error:
        raise ConfigError(f"--dataset_name {args.dataset_name!r}: {error}") from error
    if local:  # the Hub id it was saved from, else the folder's name (no local paths in cards)
        source = {"id": dataset.info.dataset_name or Path(args.dataset_name).resolve().name, "split": args.train_split}
    else:
        source = {
            "id": args.dataset_name,
            "config": args.dataset_config_name,
            "split": args.train_split,
            "revision": revision,
        }
    if args.max_train_samples is not None:
        dataset = dataset.select(range(min(args.max_train_samples, len(dataset))))
    return dataset, source


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)

    dataset, source = load_source(args)
    logger.info("Source: %s (%d images)", source, len(dataset))
    if args.prior_random_init:  # the random prior's weights are its only content: make them repeatable
        torch.manual_seed(args.seed)
    prior = load_prior(
        args.prior,
        revision=args.prior_revision,
        library=args.prior_library,
        preprocessing=args.prior_preprocessing,
        image_size=args.prior_image_size,
        pretrained=not args.prior_random_init,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
    )
    logger.info(
        "Prior: %s (%s, revision %s), %d-d embeddings, input %s",
        prior.name,
        prior.library,
        prior.revision,
        prior.embed_dim,
        prior.preprocessing.get("input_size"),
    )

    start = time.perf_counter()
    dataset = add_rela_targets(
        dataset,
        prior,
        k=args.target_dim,
        student_width=args.student_width,
        image_column=args.image_column,
        target_column=args.target_column,
        keep_embeddings=args.keep_embeddings,
        batch_size=args.prior_batch_size,
        num_proc=args.num_proc,
        source=source,
    )
    seconds = time.perf_counter() - start
    info = rela_targets_info(dataset)
    logger.info(
        "Targets: k=%d, whitening keeps %.1f%% of the variance; %d images, %.1f s (%.1f images/s)",
        info.n_components,
        100 * info.whitening.total_explained_variance_ratio,
        len(dataset),
        seconds,
        len(dataset) / seconds,
    )

    result = {
        "num_rows": len(dataset),
        "k": info.n_components,
        "seconds": seconds,
        "config_name": None,
    }
    if args.output_dir:
        result["output_dir"] = str(
            save_rela_dataset(
                dataset,
                args.output_dir,
                info=info,
                targets_only=args.targets_only,
                card=args.write_card,
                overwrite=args.overwrite_output_dir,
            )
        )
        logger.info("Saved to %s", result["output_dir"])
    if args.hub_dataset_id:
        config_name = args.hub_config_name or (info.config_name if args.targets_only else "default")
        result["commit_url"] = push_rela_dataset(
            dataset,
            args.hub_dataset_id,
            info=info,
            targets_only=args.targets_only,
            config_name=config_name,
            split=args.train_split,
            private=args.hub_private_repo,
            card=args.write_card,
        )
        result["config_name"] = config_name
        logger.info("Pushed config %r to %s", config_name, result["commit_url"])
    return result


def cli() -> None:
    """The ``rela-hf-targets`` console command."""
    if torch.cuda.device_count() > 1:  # one process per GPU needs spawned workers
        multiprocess.set_start_method("spawn")
    run_command(main, "rela-hf-targets")


if __name__ == "__main__":
    cli()
