"""Pushing encoders to the Hub: a training run's output folder -> repo contents -> one commit.

- :func:`build_hub_folder`: what a run publishes, assembled without touching the run's files:
  the backbone export at the root (one ``config.json``), the model card, the training curves,
  the summary and evaluation results, optionally the run's checkpoint in ``last-checkpoint/``
  (the HF Trainer's folder name; no pickles);
- :func:`push_encoder`: the whole folder through ``HfApi.upload_folder``, so the Hub shows the
  whole new version or the previous one. Retries are huggingface_hub's own: every transfer request
  (preupload, LFS/xet uploads; on the real Hub, with xet, the commit too) is retried with backoff
  on timeouts, connection errors, 408, 429 and 5xx; anything else fails at once with a
  :class:`PushError` naming the repo;
- :func:`push_training_output`: both, from a temporary folder (what ``rela-hf-push`` calls).

Pushing at a training run's saves without making it wait lives in :mod:`rela_hf.hub.run_pusher`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import HfApi

from rela_hf.checkpoint import find_latest_checkpoint
from rela_hf.evaluation.results import read_eval_results
from rela_hf.hub.export import CONFIG_NAME, WEIGHTS_NAME, read_export_config
from rela_hf.hub.history import plot_training_history, read_training_history
from rela_hf.hub.model_card import render_model_card
from rela_hf.run_layout import RUN_STATE_NAME, RunLayout, TrainingSummary

logger = logging.getLogger(__name__)

__all__ = [
    "PushError",
    "build_hub_folder",
    "check_hub_folder",
    "push_encoder",
    "push_training_output",
    "push_training_state",
]

PLOT_NAME = "training_curves.png"
README_NAME = "README.md"
#: Where a pushed run keeps its checkpoint, to resume from: the HF Trainer's ``hub_strategy
#: checkpoint`` folder (``Trainer.train(resume_from_checkpoint="last-checkpoint")``).
CHECKPOINT_DIR_IN_REPO = "last-checkpoint"
#: The folder name rela-hf 0.2 pushed the checkpoint to; still read (resume) until rela-hf 0.4.
LEGACY_STATE_DIR = "training_state"
#: Accelerate's RNG states are arbitrary pickles: never published (an exact resume does not
#: need them, see rela_hf.checkpoint).
UNSAFE_STATE_PATTERNS = ("*.pkl", "*.pickle")
#: What ``upload_folder`` leaves out of any pushed folder: hidden files and folders, pickles.
IGNORED_PATTERNS = [".*", "*/.*", *UNSAFE_STATE_PATTERNS]

DEFAULT_COMMIT_MESSAGE = "Upload encoder (rela-hf)"


class PushError(RuntimeError):
    """A push to the Hub failed (after huggingface_hub's own retries, where it retries)."""


def _warn_retry_options(max_retries: int | None, retry_backoff: float | None) -> None:
    """rela-hf 0.2's ``max_retries`` / ``retry_backoff``: accepted, ignored, until rela-hf 0.4."""
    if max_retries is not None or retry_backoff is not None:
        warnings.warn(
            "max_retries / retry_backoff are ignored since rela-hf 0.3: huggingface_hub retries every "
            "transfer itself (backoff on timeouts, connection errors, 408, 429, 5xx); the options go "
            "in rela-hf 0.4.",
            FutureWarning,
            stacklevel=3,
        )


def publishable_files(folder: Path) -> list[Path]:
    """Files to upload: everything but hidden files/folders (e.g. .cache) and unsafe pickles."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if any(relative.match(pattern) for pattern in UNSAFE_STATE_PATTERNS):
            continue
        files.append(path)
    return files


def check_hub_folder(folder: str | Path) -> dict[str, Any]:
    """Check that a folder is a publishable encoder repo; return its ``config.json``.

    The root must be a timm-format export (``config.json`` with ``architecture`` and
    ``pretrained_cfg``, no ``num_classes`` in ``model_args``, ``model.safetensors``); other
    files (card, plot, ``last-checkpoint/``) may be anywhere but never a second ``config.json``
    at the root, which the Hub and TimmWrapper read as the model's.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"No folder {folder} to push.")
    config = read_export_config(folder)
    if not (folder / WEIGHTS_NAME).is_file():
        raise FileNotFoundError(f"{folder} has no {WEIGHTS_NAME}; export the backbone first.")
    if not (folder / README_NAME).is_file():
        logger.warning("%s has no README.md: the repo will have no model card.", folder)
    return config


def push_encoder(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    commit_description: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
    delete_patterns: list[str] | None = None,
    max_retries: int | None = None,
    retry_backoff: float | None = None,
) -> Any:
    """Push an encoder folder (timm export at the root + card + plot + checkpoint) as one version.

    The repo is created if needed (``exist_ok``), a missing ``revision`` branch is created
    from ``main``, then the folder goes up with ``HfApi.upload_folder``: the Hub shows either the
    whole new version or the previous one, never half a push. huggingface_hub retries each
    transfer request with backoff on network errors, 408, 429 and 5xx answers; when the push
    still fails, or at once on any other error (a bad token, a bad name), :class:`PushError`
    names the repo. The local folder is only read. The token is handed to ``HfApi`` and never
    logged.

    Args:
        folder: e.g. the output of :func:`build_hub_folder` or :func:`export_backbone`.
        repo_id: ``"org/name"``.
        revision: branch to commit to (created if missing); default ``main``.
        private: visibility of a newly created repo (``None``: the Hub's default).
        token: Hub token (default: the logged-in one / ``HF_TOKEN``).
        create_pr: open a pull request (against the default branch) instead of committing.
        endpoint: another Hub endpoint (default ``HF_ENDPOINT``).
        delete_patterns: repo files to delete in the same commit unless the folder has them
            (e.g. ``["last-checkpoint/*"]``: no stale file of an older checkpoint stays).
        max_retries: deprecated, ignored (huggingface_hub retries); removed in rela-hf 0.4.
        retry_backoff: deprecated, ignored; removed in rela-hf 0.4.

    Returns:
        The ``CommitInfo`` of the commit (``.oid``, ``.commit_url``, ``.pr_url``).
    """
    _warn_retry_options(max_retries, retry_backoff)
    folder = Path(folder)
    check_hub_folder(folder)
    return commit_folder(
        folder,
        repo_id,
        revision=revision,
        private=private,
        token=token,
        commit_message=commit_message,
        commit_description=commit_description,
        create_pr=create_pr,
        endpoint=endpoint,
        delete_patterns=delete_patterns,
    )


def create_hub_repo(api: HfApi, repo_id: str, *, private: bool | None = None, revision: str | None = None) -> None:
    """The repo (and the ``revision`` branch) if missing; :class:`PushError` naming the repo if not."""
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        if revision is not None and not revision.startswith("refs/"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
    except Exception as error:  # HTTP, network or validation errors alike: name the repo
        raise PushError(f"Could not create the Hub repo {repo_id!r}: {type(error).__name__}: {error}") from error


def upload_to_hub(api: HfApi, folder: Path, repo_id: str, **upload_kwargs: Any) -> Any:
    """``api.upload_folder`` of ``folder`` (no hidden files, no pickles) to an existing repo.

    Raises:
        PushError: naming the repo, once huggingface_hub's own retries are spent.
    """
    try:
        return api.upload_folder(
            repo_id=repo_id, folder_path=folder, ignore_patterns=list(IGNORED_PATTERNS), **upload_kwargs
        )
    except Exception as error:  # HTTP, network or validation errors alike: name the repo
        raise PushError(
            f"Could not push {folder.name!r} to the Hub repo {repo_id!r}: {type(error).__name__}: {error} "
            "(the local files are unchanged: push again, e.g. with rela-hf-push)."
        ) from error


def commit_folder(
    folder: str | Path,
    repo_id: str,
    *,
    revision: str | None = None,
    private: bool | None = None,
    token: str | bool | None = None,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    commit_description: str | None = None,
    create_pr: bool = False,
    endpoint: str | None = None,
    delete_patterns: list[str] | None = None,
) -> Any:
    """Every file of ``folder`` (no hidden files, no pickles) as one new version of the repo.

    What :func:`push_encoder` does after checking the folder is a timm export; also used to push
    a checkpoint alone (:func:`push_training_state`).
    """
    if create_pr and revision is not None:
        raise ValueError(
            f"create_pr with revision {revision!r}: huggingface_hub opens pull requests against the "
            "default branch only. Push to the branch, or open the pull request without a revision."
        )
    folder = Path(folder)
    api = HfApi(endpoint=endpoint, token=token)
    create_hub_repo(api, repo_id, private=private, revision=revision)
    commit = upload_to_hub(
        api,
        folder,
        repo_id,
        revision=revision,
        commit_message=commit_message,
        commit_description=commit_description,
        create_pr=create_pr,
        delete_patterns=delete_patterns,
    )
    logger.info("Pushed %s to %s (commit %s).", folder, repo_id, commit.oid)
    return commit


def build_hub_folder(
    output_dir: str | Path,
    out_dir: str | Path,
    *,
    repo_id: str,
    backbone_dir: str | Path | None = None,
    eval_results: Mapping[str, Any] | list[Mapping[str, Any]] | str | Path | None = None,
    include_training_state: bool = False,
    checkpoint: str | Path | None = None,
    license: str | None = None,
    template_path: str | Path | None = None,
    link: bool = False,
) -> Path:
    """Assemble what a training run publishes, without touching the run's files.

    ``out_dir`` (new or empty) receives: the backbone export at the root (``config.json``,
    ``model.safetensors``, copied), ``README.md`` (:func:`render_model_card`),
    ``training_curves.png`` (from :func:`read_training_history`), ``training_summary.json``,
    ``eval_results.json`` and, with ``include_training_state``, ``last-checkpoint/``: the
    checkpoint (full online + EMA target networks with heads, optimizer, ``run_state.json``;
    Accelerate's RNG pickles left out), the run's ``config.yaml`` and ``history.jsonl``.

    Reads from ``output_dir``: ``backbone/`` (or ``backbone_dir``), ``training_summary.json``,
    ``config.yaml``, ``history.jsonl`` (else TensorBoard events under ``runs/``),
    ``eval_results.json`` (unless ``eval_results`` is given: a dict, list of dicts or path),
    and ``checkpoint-<step>/`` (``checkpoint`` or the summary's ``checkpoint`` or the latest).

    ``link``: hard-link the weights and checkpoint files instead of copying them where the
    filesystem allows (for sources that are never rewritten in place, such as a staged snapshot).
    """
    run = RunLayout(output_dir)
    out_dir = Path(out_dir)
    backbone = Path(backbone_dir) if backbone_dir is not None else run.backbone_dir
    read_export_config(backbone)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; build_hub_folder needs a new or empty folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        place_file(backbone / name, out_dir / name, link=link)

    published = RunLayout(out_dir)  # the repo keeps the run's names for what it copies
    summary = TrainingSummary.load(run.summary_file) if run.summary_file.is_file() else None
    if summary is not None:
        shutil.copy2(run.summary_file, published.summary_file)
    train_config = yaml.safe_load(run.config_file.read_text()) if run.config_file.is_file() else {}

    if eval_results is None and run.eval_results_file.is_file():
        eval_results = run.eval_results_file
    if isinstance(eval_results, (str, Path)):
        eval_results = read_eval_results(eval_results)
    if eval_results:
        published.eval_results_file.write_text(json.dumps(eval_results, indent=2) + "\n")

    history = read_training_history(run.root)
    plot = plot_training_history(
        history,
        out_dir / PLOT_NAME,
        switch_step=summary.switch_step if summary else None,
        title=repo_id.split("/")[-1],
    )
    if include_training_state:
        source = _checkpoint_to_publish(run, summary, checkpoint)
        copy_checkpoint(run, source, out_dir / CHECKPOINT_DIR_IN_REPO, link=link)
    card = render_model_card(
        out_dir,
        repo_id=repo_id,
        training_summary=summary,
        training_config=train_config,
        eval_results=eval_results,
        plot_file=PLOT_NAME if plot else None,
        license=license,
        has_training_state=include_training_state,
        template_path=template_path,
        knn_monitor=any("eval/knn_accuracy" in record for record in history),
    )
    card.save(str(out_dir / README_NAME))
    return out_dir


def place_file(source: Path, target: Path, *, link: bool) -> None:
    """``target`` becomes a hard link to ``source`` (``link``, same filesystem) or a copy."""
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # another filesystem, or links not supported: copy
            pass
    shutil.copy2(source, target)


def _checkpoint_to_publish(run: RunLayout, summary: TrainingSummary | None, checkpoint: str | Path | None) -> Path:
    if checkpoint is None and summary is not None and summary.checkpoint:
        checkpoint = run.root / summary.checkpoint
    source = Path(checkpoint) if checkpoint is not None else find_latest_checkpoint(run.root)
    if source is None or not source.is_dir():
        raise FileNotFoundError(
            f"include_training_state=True but no checkpoint folder was found in {run.root} "
            f"({source}); pass checkpoint= or include_training_state=False."
        )
    return source


def copy_checkpoint(run: RunLayout, source: Path, state_dir: Path, *, link: bool = False) -> None:
    """A checkpoint folder as it is published: no pickles, the run's ``config.yaml`` and
    ``history.jsonl`` beside it (a resumed run's curves continue), no second ``config.json``."""
    state_dir.mkdir(parents=True)
    for path in publishable_files(source):
        target = state_dir / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        place_file(path, target, link=link)
    for path in (run.config_file, run.history_file):
        if path.is_file():
            shutil.copy2(path, state_dir / path.name)  # rewritten in place by the run: a copy
    if (state_dir / CONFIG_NAME).exists():  # never let a checkpoint look like a model config
        (state_dir / CONFIG_NAME).rename(state_dir / "checkpoint_config.json")


def push_training_output(
    output_dir: str | Path,
    repo_id: str,
    *,
    include_training_state: bool = False,
    eval_results: Mapping[str, Any] | list[Mapping[str, Any]] | str | Path | None = None,
    backbone_dir: str | Path | None = None,
    checkpoint: str | Path | None = None,
    license: str | None = None,
    commit_message: str | None = None,
    **push_kwargs: Any,
) -> Any:
    """Publish a finished (or checkpointed) training run: card, plot, backbone, optional checkpoint.

    Builds the repo contents in a temporary folder with :func:`build_hub_folder` (so the run's
    own files are never modified), pushes them with :func:`push_encoder` (``revision``,
    ``private``, ``token``, ``create_pr``... pass through; with ``include_training_state`` the
    repo's older ``last-checkpoint/`` files are replaced in the same commit), and removes the
    temporary folder.

    Returns:
        The ``CommitInfo`` of the push.
    """
    run = RunLayout(output_dir)
    if commit_message is None:
        steps = TrainingSummary.load(run.summary_file).steps if run.summary_file.is_file() else None
        commit_message = f"Upload encoder at step {steps} (rela-hf)" if steps else DEFAULT_COMMIT_MESSAGE
    if include_training_state:
        push_kwargs.setdefault("delete_patterns", [f"{CHECKPOINT_DIR_IN_REPO}/*"])
    with tempfile.TemporaryDirectory(prefix="rela_hf_push_") as staging:
        folder = build_hub_folder(
            run.root,
            Path(staging) / "repo",
            repo_id=repo_id,
            backbone_dir=backbone_dir,
            eval_results=eval_results,
            include_training_state=include_training_state,
            checkpoint=checkpoint,
            license=license,
        )
        return push_encoder(folder, repo_id, commit_message=commit_message, **push_kwargs)


def push_training_state(
    output_dir: str | Path,
    repo_id: str,
    *,
    checkpoint: str | Path | None = None,
    commit_message: str | None = None,
    **push_kwargs: Any,
) -> Any:
    """Push only ``last-checkpoint/``: a run's checkpoint (default: its latest), to resume from.

    No backbone export, no card (:func:`push_training_output` does those). Like every push, no
    pickle leaves the machine (an exact resume does not need Accelerate's RNG pickles), the
    run's files are only read, and the repo's older ``last-checkpoint/`` files go in the same
    commit.
    """
    run = RunLayout(output_dir)
    with tempfile.TemporaryDirectory(prefix="rela_hf_push_") as staging:
        state_dir = Path(staging) / CHECKPOINT_DIR_IN_REPO
        copy_checkpoint(run, _checkpoint_to_publish(run, None, checkpoint), state_dir)
        step = json.loads((state_dir / RUN_STATE_NAME).read_text()).get("step")  # just for the message
        message = commit_message or f"Training state at step {step} (rela-hf)"
        push_kwargs.setdefault("delete_patterns", [f"{CHECKPOINT_DIR_IN_REPO}/*"])
        return commit_folder(staging, repo_id, commit_message=message, **push_kwargs)
