"""The trainer's targets stage: where the ReLA targets of the training images come from.

Three sources, tried in this order (ReLA-D, arXiv:2405.14669):

1. the training dataset already has the target column (made by ``rela-hf-targets``);
2. a published **targets-only** dataset (``targets_dataset_name``: ``idx`` + targets, pushed by
   ``rela-hf-targets --targets_only``), joined to the images by ``idx`` after checking that it
   was made from the same rows (same split, same source revision when both are known): the
   prior is never loaded;
3. the ``prior``: the targets are computed once by the main process and cached in the run
   folder (``rela_targets/<key>``; only ``idx`` + targets, never the images).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import datasets
import pyarrow.compute as pc
from accelerate.logging import get_logger
from accelerate.utils import broadcast_object_list

from rela_hf.checkpoint import config_fingerprint
from rela_hf.data import dataset_commit, load_image_dataset
from rela_hf.errors import ConfigError, DataError
from rela_hf.priors import load_prior
from rela_hf.run_layout import RunLayout
from rela_hf.targets import (
    RelaTargetsInfo,
    add_rela_targets,
    attach_rela_targets,
    find_rela_targets_info,
    save_rela_dataset,
)

if TYPE_CHECKING:
    from accelerate import Accelerator

    from rela_hf.training.arguments import ReLATrainingArguments

__all__ = ["attach_targets", "target_width", "targets_provenance"]

logger = get_logger(__name__)
INDEX_COLUMN = "idx"


def target_width(dataset: datasets.Dataset, column: str) -> int:
    """Length k of a fixed-length target column (checked on the schema or the first row)."""
    feature = dataset.features[column]
    length = getattr(feature, "length", -1)
    if length is None or length < 0:
        length = len(dataset.select_columns([column])[0][column])
    return int(length)


def check_target_rows(
    dataset: datasets.Dataset, column: str, width: int, *, batch_size: int = 65_536, limit: int = 10
) -> None:
    """Refuse target rows that are not finite or not ``width`` long, naming them, before any step.

    Read in Arrow batches (bounded memory, no Python objects per value): a NaN target would
    otherwise train until the loss diverges and the user is sent to the wrong knob.
    """
    offset, not_finite, wrong_width = 0, [], []
    for table in dataset.select_columns([column]).with_format("arrow").iter(batch_size=batch_size):
        values = table.column(column)
        lengths = pc.list_value_length(values)
        wrong_width += [offset + i for i in pc.indices_nonzero(pc.not_equal(lengths, width)).to_pylist()[:limit]]
        bad = pc.invert(pc.is_finite(pc.list_flatten(values)))
        rows = pc.unique(pc.filter(pc.list_parent_indices(values), bad)).to_pylist()
        not_finite += [offset + int(row) for row in rows[:limit]]
        offset += table.num_rows
        if len(not_finite) >= limit or len(wrong_width) >= limit:
            break
    problems = [
        f"non-finite values (NaN or inf) in rows {not_finite[:limit]}" if not_finite else "",
        f"not {width} values in rows {wrong_width[:limit]}" if wrong_width else "",
    ]
    problems = [p for p in problems if p]
    if problems:
        raise DataError(
            f"The target column {column!r} has {' and '.join(problems)}: training on them would diverge or fail "
            "mid-run. Recompute the targets (rela-hf-targets), or drop these rows (dataset.filter) and train again."
        )


def targets_provenance(args: ReLATrainingArguments) -> dict[str, Any]:
    """Which prior made the targets, for the summary and the model card (``None`` when unknown).

    With ``prior`` the targets were made here; otherwise read the record that ``rela-hf-targets``
    saved or pushed with the targets (``rela_targets.json``), if there is one.
    """
    if not args.use_rela:
        return {"prior": None, "prior_revision": None}
    if args.prior is not None and not args.targets_dataset_name:
        return {"prior": args.prior, "prior_revision": args.prior_revision}
    if args.targets_dataset_name:
        info = find_rela_targets_info(
            args.targets_dataset_name, config_name=args.targets_config_name, revision=args.targets_revision
        )
    else:
        assert args.dataset_name is not None  # ReLATrainingArguments requires it
        info = find_rela_targets_info(
            args.dataset_name, config_name=args.dataset_config_name, revision=args.dataset_revision
        )
    if info is None:
        return {"prior": None, "prior_revision": None}
    return {
        "prior": info.prior.name,
        "prior_revision": info.prior.revision,
        "prior_pretrained": info.prior.pretrained,
        "prior_preprocessing": info.prior.preprocessing,
    }


def _check_same_source(args: ReLATrainingArguments, info: RelaTargetsInfo | None, num_rows: int) -> None:
    """The published targets were made from these images: same split, rows and source revision."""
    if info is None:
        logger.warning(
            f"{args.targets_dataset_name} has no targets record (rela_targets.json): its source "
            "cannot be checked beyond the row count and idx."
        )
        return
    source = info.source
    problems = []
    if source.split is not None and source.split.split("[")[0] != args.train_split:
        problems.append(f"split {source.split!r} (training on {args.train_split!r})")
    if source.num_rows is not None and source.num_rows != num_rows:
        problems.append(f"{source.num_rows} rows (the training split has {num_rows})")
    assert args.dataset_name is not None  # ReLATrainingArguments requires it
    if source.revision and not Path(args.dataset_name).exists():  # a Hub dataset: compare commits
        current = dataset_commit(args.dataset_name, args.dataset_revision)
        if current != source.revision:
            problems.append(
                f"dataset revision {source.revision} (training on {current}, "
                f"{args.dataset_revision or 'the default branch'})"
            )
    if problems:
        raise DataError(
            f"The targets in {args.targets_dataset_name} were made from other images than "
            f"{args.dataset_name} ({args.train_split}): {'; '.join(problems)}. Make targets for this "
            "split (rela-hf-targets), or pin dataset_revision to the revision they were made from."
        )


def join_published_targets(args: ReLATrainingArguments, images: datasets.Dataset) -> datasets.Dataset:
    """The images with the targets of a targets-only dataset, joined by ``idx`` (no prior)."""
    assert args.targets_dataset_name is not None  # called only when it is set
    targets = load_image_dataset(
        args.targets_dataset_name,
        split=args.train_split,
        config_name=args.targets_config_name,
        revision=args.targets_revision,
        image_column=None,
    )
    missing = [c for c in (INDEX_COLUMN, args.target_column) if c not in targets.column_names]
    if missing:
        raise DataError(
            f"{args.targets_dataset_name} has no column(s) {missing} (columns: {targets.column_names}): "
            "is it a targets-only dataset made by rela-hf-targets --targets_only?"
        )
    info = find_rela_targets_info(
        args.targets_dataset_name, config_name=args.targets_config_name, revision=args.targets_revision
    )
    _check_same_source(args, info, len(images))
    try:
        return attach_rela_targets(images, targets.select_columns([INDEX_COLUMN, args.target_column]))
    except ValueError as error:
        raise DataError(f"Cannot join {args.targets_dataset_name} to {args.dataset_name}: {error}") from error


def compute_targets_cached(
    args: ReLATrainingArguments, accelerator: Accelerator, dataset: datasets.Dataset, student_width: int
) -> datasets.Dataset:
    """``add_rela_targets`` with ``prior`` on the main process, cached in ``<output_dir>/rela_targets/<key>``.

    Only the target column is cached (images are never copied); the other processes wait at the
    barrier and read the cache, so the prior runs once per machine and every process trains on
    identical targets. For large datasets, precompute the targets with ``rela-hf-targets`` (one
    process per GPU) and train on them instead.
    """
    assert args.prior is not None  # check_data: ReLA without targets needs a prior
    # The main process names the cache (in-memory datasets have a random fingerprint per process).
    key = config_fingerprint(
        {
            "dataset": dataset._fingerprint,
            "prior": args.prior,
            "revision": args.prior_revision,
            "preprocessing": args.prior_preprocessing,
            "prior_image_size": args.prior_image_size,
            "k": args.target_dim,
            "student_width": student_width,
            "image_column": args.image_column,
        }
    )
    key = broadcast_object_list([key])[0]
    cache_dir = RunLayout(accelerator.project_dir).targets_cache_dir(key)
    if accelerator.is_main_process and not cache_dir.exists():
        logger.info(f"Computing ReLA targets with prior {args.prior} (cached in {cache_dir})")
        prior = load_prior(
            args.prior,
            revision=args.prior_revision,
            library=args.prior_library,
            preprocessing=args.prior_preprocessing,
            image_size=args.prior_image_size,
            device=accelerator.device,
            trust_remote_code=args.trust_remote_code,
        )
        with_targets = add_rela_targets(
            dataset,
            prior,
            k=args.target_dim,
            student_width=student_width,
            image_column=args.image_column,
            target_column=args.target_column,
            batch_size=args.prior_batch_size,
        )
        # only idx + targets (and the whitening record), atomically: images are never copied
        save_rela_dataset(with_targets, cache_dir, targets_only=True, card=False)
    accelerator.wait_for_everyone()  # the others wait here while the prior runs
    return attach_rela_targets(dataset, datasets.load_from_disk(str(cache_dir)))


def attach_targets(
    args: ReLATrainingArguments, accelerator: Accelerator, dataset: datasets.Dataset, student_width: int
) -> tuple[datasets.Dataset, int | None]:
    """The training split with its ReLA targets, and their width k (``None`` without ReLA)."""
    if not args.use_rela:
        return dataset, None
    if args.target_column in dataset.column_names:
        width = target_width(dataset, args.target_column)
        if args.target_dim is not None and args.target_dim != width:
            raise ConfigError(
                f"target_dim {args.target_dim} does not match the {width}-d targets in column "
                f"{args.target_column!r}; drop target_dim or use targets with k={args.target_dim}."
            )
        check_target_rows(dataset, args.target_column, width)
        return dataset, width
    if args.targets_dataset_name:
        dataset = join_published_targets(args, dataset)
        check_target_rows(dataset, args.target_column, target_width(dataset, args.target_column))
    else:
        dataset = compute_targets_cached(args, accelerator, dataset, student_width)
    return dataset, target_width(dataset, args.target_column)
