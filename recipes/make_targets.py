#!/usr/bin/env python3
"""Make ReLA efficient data: an image dataset + one fixed, whitened prior target per image.

ReLA-D (Sun, Jiang & Lin, NeurIPS 2024, arXiv:2405.14669): run a pretrained *prior* once over the
training images, PCA-whiten its embeddings to k = min(student width, prior width) dimensions and
store them as a dataset column. The result feeds ``recipes/byol_rela.py``.

In: a Hub dataset id (``--dataset_config``, ``--split``, ``--revision``), a ``save_to_disk``
folder or an image folder (``imagefolder`` layout). Out: ``--output_dir`` (``save_to_disk`` +
``rela_targets.json`` + ``rela_whitening.safetensors`` + README card) and/or ``--hub_dataset_id``
(``Dataset.push_to_hub`` + the same files + card). ``--targets_only`` keeps only ``idx`` + targets,
pushed as a separate config named after prior and k (e.g. ``efficientnet_lite0_pca512``) and
joined to the images by index, so the images are not uploaded again.

Examples:
    # CIFAR-10 with an ImageNet prior, targets for a ResNet-18 student, pushed next to the images
    python recipes/make_targets.py --dataset uoft-cs/cifar10 --split train \\
        --prior hf-hub:timm/resnet18.a1_in1k --student_width 512 \\
        --hub_dataset_id me/cifar10 --targets_only

    # offline: a local folder and the converted EfficientNet-Lite0 prior, saved to disk
    python recipes/make_targets.py --dataset ./fashion_mnist_train --prior ./efficientnet_lite0 \\
        --image_size 64 --k 512 --output_dir ./fashion_mnist_rela

Several GPUs: one process per GPU is used automatically when the prior is on CUDA.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import datasets
import multiprocess
import torch

from rela_hf.config import ConfigFileError, config_argument, read_config
from rela_hf.data import dataset_commit, load_image_dataset
from rela_hf.priors import load_prior
from rela_hf.targets import (
    add_rela_targets,
    push_rela_dataset,
    rela_targets_info,
    save_rela_dataset,
)

logger = logging.getLogger("make_targets")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--config", default=None,
                        help="YAML file of option values (keys = the option names); flags override it.")
    data = parser.add_argument_group("source images")
    data.add_argument(
        "--dataset", default=None, help="Hub dataset id, a save_to_disk folder or an image folder (required)."
    )
    data.add_argument("--dataset_config", default=None, help="Hub dataset config name.")
    data.add_argument("--split", default="train", help="Split to convert (default: train).")
    data.add_argument(
        "--revision", default=None, help="Hub dataset revision (branch, tag or commit sha)."
    )
    data.add_argument("--image_column", default="image")
    data.add_argument(
        "--max_samples", type=int, default=None, help="Only the first N images (quick runs)."
    )

    prior = parser.add_argument_group("prior model")
    prior.add_argument(
        "--prior", default=None, help="timm name, hf-hub:/local-dir: id, Hub repo or local folder (required)."
    )
    prior.add_argument("--prior_revision", default=None)
    prior.add_argument("--prior_library", default="auto", choices=["auto", "timm", "transformers"])
    prior.add_argument(
        "--preprocessing",
        default="prior",
        choices=["prior", "official"],
        help="prior: the prior's own eval preprocessing; official: the ReLA code's (ImageNet).",
    )
    prior.add_argument(
        "--image_size", type=int, default=None, help="Prior input size (default: the prior's)."
    )
    prior.add_argument(
        "--random_init", action="store_true", help="A randomly initialised prior (ReLA allows it)."
    )
    prior.add_argument(
        "--seed",
        type=int,
        default=0,
        help="Seed of the --random_init weights (same seed, same prior, same targets).",
    )
    prior.add_argument("--device", default=None, help="Default: cuda if available, else cpu.")
    prior.add_argument("--trust_remote_code", action="store_true",
                       help="Let transformers run code from the prior's repository (read it first).")

    targets = parser.add_argument_group("targets")
    targets.add_argument(
        "--k",
        type=int,
        default=None,
        help="Target width (default: min(student width, prior width)).",
    )
    targets.add_argument(
        "--student_width",
        type=int,
        default=None,
        help="Student feature width, e.g. 512 (ResNet-18).",
    )
    targets.add_argument("--target_column", default="rela_target")
    targets.add_argument(
        "--keep_embeddings", action="store_true", help="Also keep the raw prior embeddings."
    )
    targets.add_argument("--batch_size", type=int, default=64)
    targets.add_argument(
        "--num_proc", type=int, default=None, help="Embedding processes (default: one per GPU)."
    )

    out = parser.add_argument_group("output")
    out.add_argument(
        "--output_dir", default=None, help="save_to_disk folder (+ whitening files + card)."
    )
    out.add_argument("--overwrite_output_dir", action="store_true")
    out.add_argument("--hub_dataset_id", default=None, help="Push to this Hub dataset repo.")
    out.add_argument(
        "--targets_only", action="store_true", help="Only idx + targets, as a separate config."
    )
    out.add_argument(
        "--config_name", default=None, help="Hub config (default: 'default', or <prior>_pca<k>)."
    )
    out.add_argument("--private", action="store_true", default=None)
    out.add_argument("--no_card", action="store_true", help="Do not write a dataset card.")
    config = config_argument(argv)
    if config is not None:
        known = {action.dest for action in parser._actions} - {"help", "config"}
        try:
            parser.set_defaults(**read_config(config, known=known))
        except ConfigFileError as error:
            parser.error(str(error))
    args = parser.parse_args(argv)
    for name in ("dataset", "prior"):
        if getattr(args, name) is None:
            parser.error(f"--{name} is required (on the command line or as `{name}:` in --config).")
    if args.output_dir is None and args.hub_dataset_id is None:
        parser.error("nothing would be kept: pass --output_dir and/or --hub_dataset_id.")
    output_dir = Path(args.output_dir) if args.output_dir else None
    # say so now, not after the prior ran over everything
    if output_dir and output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite_output_dir:
        parser.error(f"{output_dir} is not empty: pass --overwrite_output_dir or another folder.")
    if args.max_samples is not None and args.max_samples < 1:
        parser.error("--max_samples must be a positive integer.")
    return args


def load_source(args: argparse.Namespace) -> tuple[datasets.Dataset, dict]:
    """The split to convert, and where it came from (a Hub commit sha is pinned in the card)."""
    local = Path(args.dataset).expanduser().is_dir()
    if not local and (Path(args.dataset).exists() or args.dataset.startswith((".", "/", "~"))):
        raise SystemExit(f"--dataset {args.dataset!r} is not a folder (save_to_disk or image folder).")
    revision = args.revision if local else dataset_commit(args.dataset, args.revision)  # pin what is read
    try:
        dataset = load_image_dataset(args.dataset, split=args.split, config_name=args.dataset_config,
                                     revision=revision, image_column=args.image_column)
    except (ValueError, FileNotFoundError) as error:
        raise SystemExit(f"--dataset {args.dataset!r}: {error}") from error
    if local:  # the Hub id it was saved from, else the folder's name (no local paths in cards)
        source = {"id": dataset.info.dataset_name or Path(args.dataset).resolve().name, "split": args.split}
    else:
        source = {"id": args.dataset, "config": args.dataset_config, "split": args.split, "revision": revision}
    if args.max_samples is not None:
        dataset = dataset.select(range(min(args.max_samples, len(dataset))))
    return dataset, source


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO
    )

    dataset, source = load_source(args)
    logger.info("Source: %s (%d images)", source, len(dataset))
    if args.random_init:  # the random prior's weights are its only content: make them repeatable
        torch.manual_seed(args.seed)
    prior = load_prior(
        args.prior,
        revision=args.prior_revision,
        library=args.prior_library,
        preprocessing=args.preprocessing,
        image_size=args.image_size,
        pretrained=not args.random_init,
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
        k=args.k,
        student_width=args.student_width,
        image_column=args.image_column,
        target_column=args.target_column,
        keep_embeddings=args.keep_embeddings,
        batch_size=args.batch_size,
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
                card=not args.no_card,
                overwrite=args.overwrite_output_dir,
            )
        )
        logger.info("Saved to %s", result["output_dir"])
    if args.hub_dataset_id:
        config_name = args.config_name or (info.config_name if args.targets_only else "default")
        result["commit_url"] = push_rela_dataset(
            dataset,
            args.hub_dataset_id,
            info=info,
            targets_only=args.targets_only,
            config_name=config_name,
            split=args.split,
            private=args.private,
            card=not args.no_card,
        )
        result["config_name"] = config_name
        logger.info("Pushed config %r to %s", config_name, result["commit_url"])
    return result


def cli() -> None:
    """The ``rela-hf-targets`` console command."""
    if torch.cuda.device_count() > 1:  # one process per GPU needs spawned workers
        multiprocess.set_start_method("spawn")
    main()


if __name__ == "__main__":
    cli()
