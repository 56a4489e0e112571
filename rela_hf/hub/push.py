"""Pushing encoders to the Hub: a training run's output folder -> repo contents -> one commit.

- :func:`build_hub_folder`: what a run publishes, assembled without touching the run's files:
  the backbone export at the root (one ``config.json``), the model card, the training curves,
  the summary and evaluation results, optionally the final training state (no pickles);
- :func:`push_encoder`: one ``create_commit`` for the whole folder, retried with backoff on
  network/5xx errors, so the Hub shows the whole new version or the previous one;
- :func:`push_training_output`: both, from a temporary folder (what the trainer calls).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import CommitOperationAdd, HfApi
from huggingface_hub.errors import HfHubHTTPError

from rela_hf.checkpoint import find_latest_checkpoint, read_run_state
from rela_hf.evaluation.results import read_eval_results
from rela_hf.hub.export import CONFIG_NAME, WEIGHTS_NAME, read_export_config
from rela_hf.hub.history import plot_training_history, read_training_history
from rela_hf.hub.model_card import render_model_card
from rela_hf.run_layout import RunLayout, TrainingSummary

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
TRAINING_STATE_DIR = "training_state"
#: Accelerate's RNG states are arbitrary pickles: never published (an exact resume does not
#: need them, see rela_hf.checkpoint).
UNSAFE_STATE_PATTERNS = ("*.pkl", "*.pickle")

DEFAULT_COMMIT_MESSAGE = "Upload encoder (rela-hf)"
#: HTTP statuses worth retrying: the server or a proxy was briefly unavailable or rate-limited.
RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})


class PushError(RuntimeError):
    """A push to the Hub failed (after retries where retrying could help)."""


def _is_retryable(error: BaseException) -> bool:
    """Network trouble and 5xx/429 answers are retried; a 4xx (bad token, bad name) is not."""
    if isinstance(error, HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        return status is None or status in RETRYABLE_STATUS
    # httpx2 / requests transport errors (refused, reset, timed out) and plain OS errors
    return isinstance(error, (ConnectionError, TimeoutError, OSError)) or any(
        cls.__name__ in ("TransportError", "ConnectionError", "Timeout", "RequestError")
        for cls in type(error).__mro__
    )


def _with_retries(
    action: str, repo_id: str, call: Callable[[], Any], *, max_retries: int, backoff: float
) -> Any:
    """Run ``call()``; on a retryable error wait ``backoff * 2**attempt`` s and try again."""
    for attempt in range(max_retries + 1):
        try:
            return call()
        except Exception as error:
            retryable = _is_retryable(error)
            if not retryable or attempt == max_retries:
                tries = f"after {attempt + 1} attempts" if retryable else "(not retryable)"
                raise PushError(
                    f"Could not {action} for Hub repo {repo_id!r} {tries}: "
                    f"{type(error).__name__}: {error}"
                ) from error
            delay = backoff * 2**attempt
            logger.warning("Hub request to %s failed to %s (%s); retry %d/%d in %.1f s.", repo_id,
                           action, type(error).__name__, attempt + 1, max_retries, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


def _folder_files(folder: Path) -> list[Path]:
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
    files (card, plot, ``training_state/``) may be anywhere but never a second ``config.json``
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
    max_retries: int = 3,
    retry_backoff: float = 2.0,
    endpoint: str | None = None,
) -> Any:
    """Push an encoder folder (timm export at the root + card + plot + state) as ONE commit.

    The repo is created if needed (``exist_ok``), a missing ``revision`` branch is created
    from ``main``, then every file goes up in a single ``HfApi.create_commit``: the Hub shows
    either the whole new version or the previous one, never half a push. Network errors and
    5xx/429 answers are retried ``max_retries`` times with exponential backoff
    (``retry_backoff``, 2x, 4x... seconds); then, or on any other error, :class:`PushError`
    names the repo. The local folder is only read. The token is handed to ``HfApi`` and never
    logged.

    Args:
        folder: e.g. the output of :func:`build_hub_folder` or :func:`export_backbone`.
        repo_id: ``"org/name"``.
        revision: branch to commit to (created if missing); default ``main``.
        private: visibility of a newly created repo (``None``: the Hub's default).
        token: Hub token (default: the logged-in one / ``HF_TOKEN``).
        create_pr: open a pull request instead of committing to the branch.
        endpoint: another Hub endpoint (default ``HF_ENDPOINT``).

    Returns:
        The ``CommitInfo`` of the commit (``.oid``, ``.commit_url``, ``.pr_url``).
    """
    folder = Path(folder)
    check_hub_folder(folder)
    return commit_folder(folder, repo_id, revision=revision, private=private, token=token,
                         commit_message=commit_message, commit_description=commit_description,
                         create_pr=create_pr, max_retries=max_retries, retry_backoff=retry_backoff,
                         endpoint=endpoint)


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
    max_retries: int = 3,
    retry_backoff: float = 2.0,
    endpoint: str | None = None,
) -> Any:
    """Every file of ``folder`` (no hidden files, no pickles) in ONE commit, with retries.

    What :func:`push_encoder` does after checking the folder is a timm export; also used to push
    a training state alone (:func:`push_training_state`).
    """
    folder = Path(folder)
    if max_retries < 0:
        raise ValueError(f"max_retries must be >= 0, got {max_retries}.")
    api = HfApi(endpoint=endpoint, token=token)

    def retry(action: str, call: Callable[[], Any]) -> Any:
        return _with_retries(action, repo_id, call, max_retries=max_retries, backoff=retry_backoff)

    url = retry("create the repo", lambda: api.create_repo(repo_id, private=private, exist_ok=True))
    if revision is not None and not revision.startswith("refs/"):
        retry(f"create branch {revision!r}",
              lambda: api.create_branch(repo_id, branch=revision, exist_ok=True))
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
        for path in _folder_files(folder)
    ]
    commit = retry("commit the files", lambda: api.create_commit(
        repo_id, operations, commit_message=commit_message,
        commit_description=commit_description, revision=revision, create_pr=create_pr,
    ))
    logger.info("Pushed %d files of %s to %s (commit %s).", len(operations), folder,
                getattr(url, "repo_id", repo_id), commit.oid)
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
) -> Path:
    """Assemble what a training run publishes, without touching the run's files.

    ``out_dir`` (new or empty) receives: the backbone export at the root (``config.json``,
    ``model.safetensors``, copied), ``README.md`` (:func:`render_model_card`),
    ``training_curves.png`` (from :func:`read_training_history`), ``training_summary.json``,
    ``eval_results.json`` and, with ``include_training_state``, ``training_state/``: the final
    checkpoint (full online + EMA target networks with heads, optimizer, ``run_state.json``;
    Accelerate's RNG pickles left out), the run's ``config.yaml`` and ``history.jsonl``.

    Reads from ``output_dir``: ``backbone/`` (or ``backbone_dir``), ``training_summary.json``,
    ``config.yaml``, ``history.jsonl`` (else TensorBoard events under ``runs/``),
    ``eval_results.json`` (unless ``eval_results`` is given: a dict, list of dicts or path),
    and ``checkpoint-<step>/`` (``checkpoint`` or the summary's ``checkpoint`` or the latest).
    """
    run = RunLayout(output_dir)
    out_dir = Path(out_dir)
    backbone = Path(backbone_dir) if backbone_dir is not None else run.backbone_dir
    read_export_config(backbone)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; build_hub_folder needs a new or empty folder.")
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        shutil.copy2(backbone / name, out_dir / name)

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
        history, out_dir / PLOT_NAME,
        switch_step=summary.switch_step if summary else None, title=repo_id.split("/")[-1],
    )
    if include_training_state:
        _copy_training_state(run, out_dir / TRAINING_STATE_DIR, summary, checkpoint)
    card = render_model_card(
        out_dir, repo_id=repo_id, training_summary=summary, training_config=train_config,
        eval_results=eval_results, plot_file=PLOT_NAME if plot else None, license=license,
        has_training_state=include_training_state, template_path=template_path,
        knn_monitor=any("eval/knn_accuracy" in record for record in history),
    )
    card.save(str(out_dir / README_NAME))
    return out_dir


def _copy_training_state(run: RunLayout, state_dir: Path, summary: TrainingSummary | None,
                         checkpoint: str | Path | None) -> None:
    if checkpoint is None and summary is not None and summary.checkpoint:
        checkpoint = run.root / summary.checkpoint
    source = Path(checkpoint) if checkpoint is not None else find_latest_checkpoint(run.root)
    if source is None or not source.is_dir():
        raise FileNotFoundError(
            f"include_training_state=True but no checkpoint folder was found in {run.root} "
            f"({source}); pass checkpoint= or include_training_state=False."
        )
    state_dir.mkdir(parents=True)
    for path in _folder_files(source):
        target = state_dir / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    for path in (run.config_file, run.history_file):
        if path.is_file():
            shutil.copy2(path, state_dir / path.name)
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
    """Publish a finished (or checkpointed) training run: card, plot, backbone, optional state.

    What the trainer calls at the end of a run (main process only), or every N checkpoints
    after exporting the backbone: it builds the repo contents in a temporary folder with
    :func:`build_hub_folder` (so the run's own files are never modified), pushes them as one
    commit with :func:`push_encoder` (``revision``, ``private``, ``token``, ``create_pr``,
    ``max_retries``... pass through), and removes the temporary folder.

    Returns:
        The ``CommitInfo`` of the push.
    """
    run = RunLayout(output_dir)
    if commit_message is None:
        steps = TrainingSummary.load(run.summary_file).steps if run.summary_file.is_file() else None
        commit_message = f"Upload encoder at step {steps} (rela-hf)" if steps else DEFAULT_COMMIT_MESSAGE
    with tempfile.TemporaryDirectory(prefix="rela_hf_push_") as staging:
        folder = build_hub_folder(
            run.root, Path(staging) / "repo", repo_id=repo_id, backbone_dir=backbone_dir,
            eval_results=eval_results, include_training_state=include_training_state,
            checkpoint=checkpoint, license=license,
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
    """Push only ``training_state/``: a run's checkpoint (default: its latest), to resume from.

    The ``checkpoint`` hub strategy of the trainer: each save puts the state on the Hub without
    exporting the backbone or rendering a card (:func:`push_training_output` does those). Like
    every push, no pickle leaves the machine (an exact resume does not need Accelerate's RNG
    pickles) and the run's files are only read.
    """
    run = RunLayout(output_dir)
    with tempfile.TemporaryDirectory(prefix="rela_hf_push_") as staging:
        _copy_training_state(run, Path(staging) / TRAINING_STATE_DIR, None, checkpoint)
        step = read_run_state(Path(staging) / TRAINING_STATE_DIR).get("step")
        message = commit_message or f"Training state at step {step} (rela-hf)"
        return commit_folder(staging, repo_id, commit_message=message, **push_kwargs)
