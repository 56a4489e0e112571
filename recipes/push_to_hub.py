#!/usr/bin/env python3
"""Publish a trained encoder on the Hugging Face Hub: timm-format backbone + model card, one commit.

``--folder_path`` may be

- a training run's ``output_dir`` (``recipes/byol_rela.py``): its ``backbone/`` export is pushed
  with a model card rendered from ``training_summary.json``, ``config.yaml``, ``history.jsonl``
  (training-curve plot) and ``eval_results.json`` (``recipes/evaluate_encoder.py``); with
  ``--include_training_state`` the final checkpoint goes to ``last-checkpoint/``;
- a bare export (``config.json`` + ``model.safetensors`` from ``rela_hf.hub.export_backbone``):
  pushed with a card from its config and any ``--eval_results`` files;
- a folder that already has its ``README.md``: pushed as is.

The licence of the weights is derived from the training data's and the prior's
(``rela_hf.licenses``); when it comes out unknown the card says so and this command warns: set
it with ``--license``.

The repo then loads with ``timm.create_model("hf-hub:<repo_id>", pretrained=True)`` and
``transformers.AutoModel.from_pretrained("<repo_id>")``. The run's files are never modified; a
failed transfer is retried by huggingface_hub (backoff) and then fails naming the repo. The token comes from
``HF_TOKEN`` or ``huggingface-cli login`` (never from the command line, never printed).

Examples:
    python recipes/push_to_hub.py --folder_path outputs/rela --hub_model_id me/rela-byol-resnet18-cifar10
    python recipes/push_to_hub.py --folder_path outputs/rela --hub_model_id me/rela-byol-resnet18-cifar10 \\
        --include_training_state --hub_revision step-2000 --hub_private_repo true
    python recipes/push_to_hub.py --folder_path outputs/rela --hub_model_id me/x --dry_run /tmp/preview
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard

from rela_hf.arguments import Rename, arg, parse_command_line
from rela_hf.errors import ConfigError, run_command
from rela_hf.evaluation import read_eval_results
from rela_hf.hub import build_hub_folder, push_encoder
from rela_hf.hub.export import CONFIG_NAME
from rela_hf.hub.push import DEFAULT_COMMIT_MESSAGE, README_NAME
from rela_hf.run_layout import RunLayout

logger = logging.getLogger("push_to_hub")


@dataclass
class PushArguments:
    """Every option of ``rela-hf-push``."""

    folder_path: str | None = arg("folder_path")
    hub_model_id: str | None = arg("hub_model_id")
    hub_revision: str | None = arg("hub_revision")
    hub_private_repo: bool | None = arg("hub_private_repo")
    create_pr: bool = arg("create_pr")
    commit_message: str | None = arg("commit_message")
    include_training_state: bool = arg("include_training_state")
    eval_results: list[str] | None = arg("eval_results")
    license: str | None = arg("license")
    max_retries: int | None = arg("max_retries")  # deprecated: push_encoder warns, ignores it
    dry_run: str | None = arg("dry_run")

    def __post_init__(self) -> None:
        for name in ("folder_path", "hub_model_id"):
            if not getattr(self, name):
                raise ConfigError(f"--{name} is required.")


RENAMED_OPTIONS = (
    Rename("folder", "folder_path"),
    Rename("repo_id", "hub_model_id"),
    Rename("revision", "hub_revision"),
    Rename("private", "hub_private_repo", flag=True),
)


def parse_args(argv: list[str] | None = None) -> PushArguments:
    return parse_command_line(PushArguments, argv, renames=RENAMED_OPTIONS, description=__doc__.split("\n\n")[0])


def folder_kind(folder: Path) -> str:
    """``run`` (a training output_dir), ``ready`` (has its README) or ``export`` (bare backbone)."""
    run = RunLayout(folder)
    if (run.backbone_dir / CONFIG_NAME).is_file() or run.summary_file.is_file():
        return "run"
    if (folder / CONFIG_NAME).is_file():
        return "ready" if (folder / README_NAME).is_file() else "export"
    raise ConfigError(
        f"{folder} is neither a training output_dir (backbone/ + training_summary.json) nor a "
        "timm-format export (config.json + model.safetensors)."
    )


def warn_if_license_unknown(folder: Path) -> bool:
    """Warn, naming why and what to do, when the card in ``folder`` declares no known licence.

    Returns:
        Whether it warned.
    """
    data = ModelCard.load(folder / README_NAME, ignore_metadata_errors=True).data
    if data.license not in (None, "unknown"):
        return False
    reason = (getattr(data, "rela_hf", None) or {}).get("license_rule") or "the card declares none"
    logger.warning(
        "The licence of these weights is unknown (%s); the card says so. Find out the terms of "
        "the training data and the prior, then push again with --license <Hub licence id>.",
        reason,
    )
    return True


def main(argv: list[str] | None = None) -> Any:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    folder = Path(args.folder_path)
    kind = folder_kind(folder)
    eval_results = [read_eval_results(p) for p in args.eval_results] if args.eval_results else None
    push = {
        "revision": args.hub_revision,
        "private": args.hub_private_repo,
        "create_pr": args.create_pr,
        "commit_message": args.commit_message or DEFAULT_COMMIT_MESSAGE,
        "max_retries": args.max_retries,
    }

    if kind == "ready":
        if args.dry_run:
            print(f"{folder} is ready to push as is (it has its README.md).")
            return None
        warn_if_license_unknown(folder)
        commit = push_encoder(folder, args.hub_model_id, **push)
    else:
        build = {
            "repo_id": args.hub_model_id,
            "eval_results": eval_results,
            "license": args.license,
            "include_training_state": args.include_training_state and kind == "run",
            "backbone_dir": folder if kind == "export" else None,
        }
        if args.dry_run:
            out = build_hub_folder(folder, args.dry_run, **build)
            warn_if_license_unknown(out)
            print(f"Built the repo contents in {out} (not pushed):")
            for path in sorted(p for p in out.rglob("*") if p.is_file()):
                print(f"  {path.relative_to(out)}")
            return None
        with tempfile.TemporaryDirectory(prefix="rela_hf_push_") as staging:
            out = build_hub_folder(folder, Path(staging) / "repo", **build)
            warn_if_license_unknown(out)
            commit = push_encoder(out, args.hub_model_id, **push)
    print(f"Pushed {args.hub_model_id}: {commit.commit_url}" + (f" (PR {commit.pr_url})" if commit.pr_url else ""))
    return commit


def cli() -> None:
    """The ``rela-hf-push`` console command."""
    run_command(main, "rela-hf-push")


if __name__ == "__main__":
    cli()
