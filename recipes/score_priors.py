#!/usr/bin/env python3
"""Rank candidate priors on your images in minutes, before making targets or training.

The prior is ReLA's main knob (Sun, Jiang & Lin, arXiv:2405.14669), and finding the best one by
making its targets and training costs as much as the training ReLA saves. This embeds a fixed
random sample of ``--max_train_samples`` images (clean, and one ReLA view of each) with every
candidate in ``--priors`` and prints them ranked by a label-free score (with ``--label_column``,
also the kNN accuracy of each prior's whitened targets), the targets' width and the projected
one-off cost of each prior's targets for the whole split. ``--output_dir`` gets
``prior_scores.json`` (every score of every prior, the command, the dataset).

Each candidate is ``[name=]prior[,option=value...]``: ``prior`` as in ``rela-hf-targets --prior``
(a timm name, ``hf-hub:org/name``, a Hub repo id or a local folder), options ``image_size``,
``random_init``, ``seed``, ``revision``, ``library``, ``preprocessing``.

Examples:
    # the ImageNet EfficientNet-Lite0 (offline assets) at two input sizes vs a random network
    python recipes/score_priors.py --dataset_name outputs/offline/fashion_mnist --label_column label \\
        --priors in1k_64=outputs/offline/efficientnet_lite0,image_size=64 \\
                 in1k_128=outputs/offline/efficientnet_lite0,image_size=128 \\
                 random=outputs/offline/efficientnet_lite0,image_size=64,random_init=true \\
        --student_width 512 --output_dir outputs/prior_scores

    # Hub priors on a Hub dataset, label-free
    rela-hf-score-priors --dataset_name uoft-cs/cifar10 --image_column img --label_column none \\
        --priors hf-hub:timm/resnet18.a1_in1k hf-hub:timm/vit_small_patch16_224.dino --student_width 512
"""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rela_hf.arguments import DatasetArguments, arg, parse_command_line
from rela_hf.data import dataset_commit, load_image_dataset
from rela_hf.errors import ConfigError, run_command
from rela_hf.prior_scores import PRIMARY_SCORE, PriorCandidate, PriorScore, score_priors
from rela_hf.priors import PriorError

logger = logging.getLogger("score_priors")
RESULTS_FILE = "prior_scores.json"


@dataclass
class ScoredImagesArguments(DatasetArguments):
    """The images the priors are scored on (a fixed random sample of the split)."""

    _argument_group_name = "images scored"

    label_column: str | None = arg("label_column", default=None)
    max_train_samples: int | None = arg("max_train_samples", default=512)


@dataclass
class CandidatePriorsArguments:
    """The candidate priors and how they run."""

    _argument_group_name = "candidate priors"

    priors: list[str] = arg("priors")
    prior_image_size: int | None = arg("prior_image_size")
    prior_batch_size: int = arg("prior_batch_size")
    target_dim: int | None = arg("target_dim")
    student_width: int | None = arg("student_width")
    seed: int = arg("seed", default=0)
    device: str | None = arg("device")
    trust_remote_code: bool = arg("trust_remote_code")


@dataclass
class ScoresOutputArguments:
    """Where the ranking goes (it is always printed)."""

    _argument_group_name = "output"

    output_dir: str | None = arg("output_dir")
    overwrite_output_dir: bool = arg("overwrite_output_dir")


@dataclass
class ScorePriorsArguments(ScoredImagesArguments, CandidatePriorsArguments, ScoresOutputArguments):
    """Every option of ``rela-hf-score-priors``; checked when built, before any prior runs."""

    def __post_init__(self) -> None:
        if self.dataset_name is None:
            raise ConfigError("--dataset_name is required (on the command line or as `dataset_name:` in --config).")
        if not self.priors:
            raise ConfigError("--priors is required: one or more candidates, each [name=]prior[,option=value...].")
        for option in (
            "max_train_samples",
            "prior_batch_size",
            "target_dim",
            "student_width",
            "prior_image_size",
        ):
            value = getattr(self, option)
            if value is not None and value < (3 if option == "max_train_samples" else 1):
                raise ConfigError(f"--{option} {value}: must be at least {3 if option == 'max_train_samples' else 1}.")
        try:
            self.candidates = [PriorCandidate.parse(item, image_size=self.prior_image_size) for item in self.priors]
        except ValueError as error:
            raise ConfigError(f"--priors: {error}") from error
        names = [candidate.name for candidate in self.candidates]
        if len(set(names)) != len(names):
            raise ConfigError(f"--priors: two candidates share a name ({names}); name them: name=prior,...")
        results = Path(self.output_dir) / RESULTS_FILE if self.output_dir else None
        if results and Path(self.output_dir).is_file():
            raise ConfigError(f"--output_dir {self.output_dir} is a file; pass a folder (it is created if missing).")
        if results and results.exists() and not self.overwrite_output_dir:
            raise ConfigError(f"{results} exists: pass --overwrite_output_dir or another --output_dir.")


def parse_args(argv: list[str] | None = None) -> ScorePriorsArguments:
    return parse_command_line(ScorePriorsArguments, argv, description=__doc__.split("\n\n")[0])


def load_images(args: ScorePriorsArguments) -> tuple[Any, dict[str, Any]]:
    """The split to score on and where it came from (a Hub dataset's commit is pinned)."""
    local = Path(args.dataset_name).expanduser().is_dir()
    if not local and (Path(args.dataset_name).exists() or args.dataset_name.startswith((".", "/", "~"))):
        raise ConfigError(f"--dataset_name {args.dataset_name!r} is not a folder (save_to_disk or image folder).")
    revision = args.dataset_revision if local else dataset_commit(args.dataset_name, args.dataset_revision)
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
    name = (dataset.info.dataset_name or Path(args.dataset_name).resolve().name) if local else args.dataset_name
    return dataset, {
        "name": name,
        "config": args.dataset_config_name,
        "split": args.train_split,
        "revision": revision,
        "num_rows": len(dataset),
    }


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def ranking_table(ranked: list[PriorScore]) -> str:
    """The ranked table the command prints (markdown)."""
    labelled = any(result.knn_accuracy is not None for result in ranked)
    header = [
        "rank",
        "prior",
        PRIMARY_SCORE,
        *(["kNN acc. of targets"] if labelled else []),
        "k",
        "targets cost (whole split)",
        "embed ms/image",
        "scored in",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rank, result in enumerate(ranked, start=1):
        label = [f"{100 * result.knn_accuracy:.1f} %" if result.knn_accuracy is not None else "—"] if labelled else []
        lines.append(
            "| "
            + " | ".join(
                [
                    str(rank),
                    result.name,
                    f"{result.score:.3f}",
                    *label,
                    str(result.target_dim),
                    _duration(result.projected_targets_seconds),
                    f"{1000 * result.seconds_per_image:.1f}",
                    f"{result.scoring_seconds:.0f} s",
                ]
            )
            + " |"
        )
    return "\n".join(lines)


def write_results(folder: Path, results: dict[str, Any]) -> Path:
    """``prior_scores.json``, written whole (to a temporary file, then renamed)."""
    folder.mkdir(parents=True, exist_ok=True)
    path, partial = folder / RESULTS_FILE, folder / f".{RESULTS_FILE}.tmp"
    partial.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(partial, path)
    return path


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    dataset, source = load_images(args)
    try:
        ranked = score_priors(
            dataset,
            args.candidates,
            image_column=args.image_column,
            label_column=args.label_column,
            max_samples=args.max_train_samples,
            target_dim=args.target_dim,
            student_width=args.student_width,
            batch_size=args.prior_batch_size,
            seed=args.seed,
            device=args.device,
            trust_remote_code=args.trust_remote_code,
        )
    except PriorError as error:
        raise ConfigError(f"--priors: {error}") from error
    except ValueError as error:  # a missing column, too few images
        raise ConfigError(str(error)) from error
    results = {
        "command": " ".join(["rela-hf-score-priors", *(sys.argv[1:] if argv is None else argv)]),
        "dataset": source,
        "num_images": ranked[0].num_images,
        "primary_score": PRIMARY_SCORE,
        "priors": [result.to_dict() for result in ranked],
    }
    print(
        f"\nPriors ranked by {PRIMARY_SCORE} (label-free, higher is better) on {ranked[0].num_images} images of "
        f"{source['name']} ({source['split']}, {source['num_rows']} images):\n"
    )
    print(ranking_table(ranked))
    if args.output_dir:
        results["output_file"] = str(write_results(Path(args.output_dir), results))
        print(f"\nAll scores: {results['output_file']}")
    return results


def cli() -> None:
    """The ``rela-hf-score-priors`` console command."""
    run_command(main, "rela-hf-score-priors")


if __name__ == "__main__":
    cli()
