"""The trainer's data stage: the training split, checked before any compute, its labels, the
data-ratio sampler and the online kNN monitor.

Everything here runs before the model exists, so a wrong dataset (unreadable images, no labels
for a method that needs them, no targets and no prior for ReLA, too few images for one batch)
fails with a specific message before a single step is spent. The ReLA targets are the next stage
(:mod:`rela_hf.training.targets`).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import datasets
import numpy as np
from accelerate.logging import get_logger
from accelerate.utils import broadcast_object_list

from rela_hf.data import DataRatioSampler, load_image_dataset
from rela_hf.errors import ConfigError, DataError
from rela_hf.evaluation import KNNMonitor
from rela_hf.image_checks import check_images, unreadable_images_message
from rela_hf.methods import method_class
from rela_hf.training.best_model import ValidationSplit

if TYPE_CHECKING:
    from accelerate import Accelerator

    from rela_hf.training.arguments import ReLATrainingArguments

__all__ = ["TrainingData", "prepare_data"]

logger = get_logger(__name__)


@dataclasses.dataclass
class TrainingData:
    """The training split and what the loop needs of it.

    Attributes:
        dataset: the training split (targets are attached by the next stage).
        label_column: the label column, ``None`` when the dataset has none (or it is turned off).
        sampler: the data-ratio sampler over the rows that train (the same subset on every process).
        monitor: the online kNN monitor, ``None`` when off.
        validation: the rows held out for ``load_best_model_at_end``, ``None`` without it.
    """

    dataset: datasets.Dataset
    label_column: str | None
    sampler: DataRatioSampler
    monitor: KNNMonitor | None
    validation: ValidationSplit | None = None

    @property
    def num_classes(self) -> int | None:
        """Classes of the label column (its ClassLabel, else the largest label + 1)."""
        if self.label_column is None:
            return None
        feature = self.dataset.features[self.label_column]
        known = getattr(feature, "num_classes", None)
        return known or int(np.max(self.dataset.with_format("numpy")[self.label_column])) + 1


def load_training_split(args: ReLATrainingArguments, accelerator: Accelerator) -> datasets.Dataset:
    """The training split (``max_train_samples`` applied), its images checked before any compute.

    With ``verify_images`` the main process decodes the images (``verify_images_num_proc``
    processes, all or a ``verify_images_max_samples`` sample drawn with ``seed``; a clean result
    recorded for this dataset version answers again without decoding) while the other processes
    wait for its verdict; every process then refuses a dataset with unreadable rows, naming them.
    """
    assert args.dataset_name is not None  # ReLATrainingArguments requires it
    dataset = load_image_dataset(
        args.dataset_name,
        split=args.train_split,
        config_name=args.dataset_config_name,
        revision=args.dataset_revision,
        image_column=args.image_column,
    )
    if args.max_train_samples is not None and args.max_train_samples < len(dataset):
        dataset = dataset.select(range(args.max_train_samples))
    if args.verify_images:
        problem = None
        if accelerator.is_main_process:
            result = check_images(
                dataset,
                args.image_column,
                num_proc=args.verify_images_num_proc,
                max_samples=args.verify_images_max_samples,
                seed=args.seed,
            )
            if not result.ok:
                problem = unreadable_images_message(result, f"{args.dataset_name} ({args.train_split})")
        problem = broadcast_object_list([problem])[0]  # the other processes wait here, decoding nothing
        if problem:
            raise DataError(problem)
    return dataset


def check_method_needs(args: ReLATrainingArguments, dataset: datasets.Dataset) -> None:
    """ReLA needs targets (a column, a published targets dataset or a prior); some methods need labels."""
    has_targets = args.target_column in dataset.column_names
    if args.use_rela and not (has_targets or args.targets_dataset_name or args.prior):
        raise ConfigError(
            f"ReLA needs targets: {args.dataset_name} has no {args.target_column!r} column (columns: "
            f"{dataset.column_names}). Pass prior to compute them, targets_dataset_name to join published "
            "ones, target_column to name the right column, or use_rela false for the method alone."
        )
    method = method_class(args.method)
    if method.requires_labels and (args.labels is None or args.labels not in dataset.column_names):
        where = (
            "label_column is turned off"
            if args.labels is None
            else f"{args.dataset_name} has no {args.label_column!r} column"
        )
        raise ConfigError(
            f"The {method.title} method trains on labels, but {where} (columns: {dataset.column_names}). "
            "Pass label_column, or choose a self-supervised method."
        )


def build_sampler(args: ReLATrainingArguments, num_rows: int, num_processes: int) -> DataRatioSampler:
    """The same subset of floor(r N) rows on every process for a given (seed, epoch); Accelerate
    then hands each process every num_processes-th batch of it (incomplete batches dropped)."""
    sampler = DataRatioSampler(num_rows, ratio=args.data_ratio, seed=args.seed, shuffle=True)
    if len(sampler) < args.per_device_train_batch_size * num_processes:
        raise ConfigError(
            f"No full batch: {len(sampler)} images per epoch (data_ratio {args.data_ratio} x {num_rows}) "
            f"< {args.per_device_train_batch_size} per device x {num_processes} processes. Lower "
            "per_device_train_batch_size or raise data_ratio."
        )
    return sampler


def build_monitor(args: ReLATrainingArguments, dataset: datasets.Dataset) -> KNNMonitor | None:
    """The online kNN monitor (``eval_steps``): a fixed bank of training images, a fixed subset of
    the held-out split."""
    if not args.monitor_enabled:
        return None
    if args.labels is None or args.labels not in dataset.column_names:
        raise ConfigError(
            f"eval_steps: the online kNN monitor needs labels; {args.dataset_name} has no "
            f"{args.label_column!r} column (pass label_column, or eval_steps 0)."
        )
    own = args.eval_dataset_name in (None, args.dataset_name)
    # ReLATrainingArguments requires dataset_name, and eval_split when the monitor is on
    assert args.dataset_name is not None and args.eval_split is not None
    held_out = load_image_dataset(
        args.eval_dataset_name or args.dataset_name,
        split=args.eval_split,
        config_name=args.dataset_config_name if own else None,
        revision=args.dataset_revision if own else None,
        image_column=args.image_column,
    )
    return KNNMonitor(
        dataset,
        held_out,
        image_size=args.image_size,
        max_bank=args.eval_bank_max_samples,
        max_queries=args.max_eval_samples,
        image_column=args.image_column,
        label_column=args.labels,
    )


def carve_validation(args: ReLATrainingArguments, dataset: datasets.Dataset) -> ValidationSplit | None:
    """``load_best_model_at_end``: the rows held out as its validation split (they need labels)."""
    if not args.load_best_model_at_end:
        return None
    if args.labels is None or args.labels not in dataset.column_names:
        raise ConfigError(
            f"load_best_model_at_end: metric_for_best_model {args.metric_for_best_model} needs labels; "
            f"{args.dataset_name} has no {args.label_column!r} column (pass label_column)."
        )
    try:
        return ValidationSplit.carve(len(dataset), args.train_val_split, args.seed)
    except ValueError as error:
        raise ConfigError(str(error)) from error


def prepare_data(args: ReLATrainingArguments, accelerator: Accelerator) -> TrainingData:
    """The data stage: load and check the split, the validation rows, the sampler, the monitor
    and the labels."""
    dataset = load_training_split(args, accelerator)
    check_method_needs(args, dataset)
    validation = carve_validation(args, dataset)
    num_rows = len(validation.train_indices) if validation is not None else len(dataset)
    sampler = build_sampler(args, num_rows, accelerator.num_processes)
    monitor = build_monitor(args, dataset)
    label_column = args.labels
    if label_column is not None and label_column not in dataset.column_names:
        logger.info(f"No {label_column!r} column: the online linear probe is off.")
        label_column = None
    return TrainingData(
        dataset=dataset, label_column=label_column, sampler=sampler, monitor=monitor, validation=validation
    )
