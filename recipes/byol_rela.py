#!/usr/bin/env python
"""Self-supervised pretraining (BYOL, DINO, SimCLR) accelerated by ReLA, with HF Accelerate.

ReLA (Sun, Jiang & Lin, NeurIPS 2024, arXiv:2405.14669) first trains the encoder to regress
fixed, PCA-whitened prior embeddings ("efficient data") through a linear transfer head, then
switches for good to a self-supervised method: ``--ssl_method byol`` (Grill et al.,
arXiv:2006.07733, the default and the paper's), ``dino`` (Caron et al., arXiv:2104.14294) or
``simclr`` (Chen et al., arXiv:2002.05709); its hyperparameters go in ``--method_options`` (a
JSON object, or a mapping in the YAML config). ``--method baseline`` (alias ``byol``) is the
method alone: the same code path without the first phase. One script, top to bottom: config ->
data (+ targets) -> model -> optimizer -> loop (accumulation, EMA, switch, logging, atomic
checkpoints) -> export of the backbone in timm format.

The same script runs everywhere; the global batch is
``per_device_train_batch_size x processes x gradient_accumulation_steps``:

    # one CPU (the offline demo) / one GPU
    accelerate launch --num_processes 1 --cpu recipes/byol_rela.py --config recipes/configs/demo.yaml
    accelerate launch --num_processes 1 --mixed_precision fp16 recipes/byol_rela.py \\
        --config recipes/configs/cifar10_resnet18.yaml
    # 8 GPUs on one node
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision fp16 recipes/byol_rela.py \\
        --config recipes/configs/imagenet_resnet50.yaml --sync_batchnorm
    # 2 nodes x 8 GPUs: the same on each node with its --machine_rank (0 and 1); the output_dir
    # must be on a filesystem both nodes see (checkpoints are written by the main process)
    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 \\
        --main_process_ip 10.0.0.1 --main_process_port 29500 --mixed_precision fp16 \\
        recipes/byol_rela.py --config recipes/configs/imagenet_resnet50.yaml --sync_batchnorm
    # 2 CPU processes (gloo): the distributed code path without GPUs. `--cpu` alone would start a
    # single process; ACCELERATE_USE_CPU makes Accelerate pick gloo for the --multi_gpu launch.
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --mixed_precision no --dynamo_backend no recipes/byol_rela.py --config recipes/configs/demo.yaml

Resume exactly where a run stopped (model, EMA target, optimizer, switch, data position, tracker
run) by repeating the command with ``--resume_from_checkpoint latest`` (a fresh start when there
is no checkpoint yet, so preemptible jobs can always pass it) or ``PATH/checkpoint-<step>``.
Config: ``--config file.yaml`` (keys = the option names below), then command-line overrides;
the resolved config is written to ``<output_dir>/config.yaml`` (usable as ``--config`` again).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import datasets
import numpy as np
import torch
import yaml
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import (
    DistributedDataParallelKwargs,
    DistributedType,
    InitProcessGroupKwargs,
    ProjectConfiguration,
    broadcast_object_list,
    set_seed,
)
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import HfArgumentParser, get_scheduler

import rela_hf
from rela_hf.backbones import create_backbone
from rela_hf.checkpoint import (
    check_output_dir,
    check_same_run,
    clear_checkpoints,
    config_fingerprint,
    load_checkpoint,
    read_run_state,
    remove_incomplete_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
)
from rela_hf.config import ConfigFileError, config_argument, read_config
from rela_hf.data import DataRatioSampler, find_unreadable_images, load_image_dataset
from rela_hf.evaluation import KNNMonitor
from rela_hf.hub import (
    PushError,
    download_training_state,
    export_backbone,
    push_training_output,
    push_training_state,
)
from rela_hf.methods import method_class, method_names
from rela_hf.methods.byol import BYOLOptions
from rela_hf.model import ReLAStudent
from rela_hf.momentum import cosine_momentum
from rela_hf.preprocessing import official_data_config
from rela_hf.priors import load_prior
from rela_hf.run_layout import RunLayout, TrainingSummary
from rela_hf.switch import PHASE_RELA, PHASE_SSL, build_switch
from rela_hf.targets import (
    add_rela_targets,
    attach_rela_targets,
    find_rela_targets_info,
    save_rela_dataset,
)
from rela_hf.training import (
    MetricMeans,
    ViewCollator,
    ViewDataset,
    check_finite_loss,
    check_finite_weights,
    forward_seed,
    training_step,
)
from rela_hf.views import rela_view_transform

logger = get_logger("byol_rela")


# ---------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------
@dataclass
class DataArguments:
    dataset_name: str | None = field(default=None, metadata={"help": "Hub dataset id, local image folder or save_to_disk folder."})
    dataset_config_name: str | None = field(default=None, metadata={"help": "Dataset config (Hub)."})
    dataset_revision: str | None = field(default=None, metadata={"help": "Dataset revision (pin a commit sha)."})
    train_split: str = field(default="train", metadata={"help": "Split to train on."})
    image_column: str = field(default="image", metadata={"help": "Column of images."})
    label_column: str | None = field(default="label", metadata={"help": "Labels for the online linear probe (monitoring only); skipped if absent, 'none' to disable."})
    target_column: str = field(default="rela_target", metadata={"help": "Column of ReLA targets (fixed-length float lists)."})
    prior: str | None = field(default=None, metadata={"help": "Prior model (Hub id, hf-hub:/timm name, local folder) to compute targets with when the dataset has no target column."})
    prior_revision: str | None = field(default=None, metadata={"help": "Revision of the prior."})
    prior_preprocessing: Literal["prior", "official"] = field(default="prior", metadata={"help": "The prior's own preprocessing, or the official code's (resize + crop + ImageNet mean/std)."})
    prior_image_size: int | None = field(default=None, metadata={"help": "Override the prior's input size (e.g. 64 to embed small images cheaply on CPU)."})
    prior_batch_size: int = field(default=64, metadata={"help": "Images per prior forward pass."})
    image_size: int = field(default=32, metadata={"help": "Student input size (views are cropped to it)."})
    data_ratio: float = field(default=1.0, metadata={"help": "Fraction r in (0, 1] of the dataset drawn (fresh, uniformly) every epoch: the budget."})
    dataloader_num_workers: int = field(default=2, metadata={"help": "DataLoader worker processes per training process."})
    verify_images: bool = field(default=True, metadata={"help": "Decode every training image once before training and refuse unreadable ones, naming the rows (rela-hf never skips images silently); --verify_images false for huge, known-good datasets."})


@dataclass
class ModelArguments:
    backbone: str = field(default="resnet18", metadata={"help": "timm architecture, hf-hub:org/name or local-dir:/path."})
    backbone_kwargs: str | None = field(default=None, metadata={"help": "JSON object of extra timm.create_model kwargs, e.g. '{\"drop_path_rate\": 0.1}'."})
    cifar_stem: bool = field(default=False, metadata={"help": "3x3 stride-1 stem without max-pool (ResNets at 32-64 px)."})
    projection_dim: int = field(default=256, metadata={"help": "BYOL only: projection width (other methods: --method_options)."})
    projector_hidden_dim: int | None = field(default=None, metadata={"help": "BYOL only: projector hidden width (default 2 x feature width, official ReLA)."})
    predictor_hidden_dim: int | None = field(default=None, metadata={"help": "BYOL only: predictor hidden width (default: the projector's)."})
    rela_dim: int | None = field(default=None, metadata={"help": "Target width k (default: the target column's; for new targets min(student width, prior width))."})
    trainable_transfer_head: bool = field(default=False, metadata={"help": "Learn the transfer head W (the official code keeps it a fixed random projection)."})


@dataclass
class TrainArguments:
    output_dir: str = field(default="outputs/byol_rela", metadata={"help": "Checkpoints, logs, config, exported backbone."})
    overwrite_output_dir: bool = field(default=False, metadata={"help": "Delete the checkpoints of an earlier run in output_dir."})
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "'latest', a checkpoint folder, or 'hub': the training_state/ pushed to --hub_model_id (--hub_strategy every_save or checkpoint)."})
    method: Literal["rela", "baseline", "byol"] = field(default="rela", metadata={"help": "rela: ReLA, then the SSL method; baseline (alias byol): the SSL method alone."})
    ssl_method: str = field(default="byol", metadata={"help": "The self-supervised method after the switch: byol | dino | simclr."})
    method_options: str | None = field(default=None, metadata={"help": "JSON object of the SSL method's options, e.g. '{\"teacher_temp\": 0.07}' (dino), '{\"temperature\": 0.2}' (simclr)."})
    switch_rule: Literal["adaptive", "static"] = field(default="adaptive", metadata={"help": "When ReLA hands over to the SSL method."})
    switch_fraction: float | None = field(default=None, metadata={"help": "Static rule: share of the step budget spent on ReLA (ignored by the adaptive rule)."})
    num_train_epochs: int = field(default=100, metadata={"help": "Epochs (of data_ratio x N images each)."})
    max_train_steps: int | None = field(default=None, metadata={"help": "Optimizer steps; overrides num_train_epochs."})
    per_device_train_batch_size: int = field(default=128, metadata={"help": "Images per process per micro-batch."})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "Micro-batches per optimizer step."})
    learning_rate: float = field(default=1e-3, metadata={"help": "AdamW learning rate."})
    weight_decay: float = field(default=0.01, metadata={"help": "AdamW weight decay."})
    lr_scheduler_type: str = field(default="constant", metadata={"help": "transformers scheduler name (constant, cosine, linear, ...)."})
    warmup_steps: int = field(default=0, metadata={"help": "Learning-rate warm-up, optimizer steps."})
    max_grad_norm: float | None = field(default=None, metadata={"help": "Clip the gradient norm (none by default, as in the official code)."})
    momentum: float = field(default=0.99, metadata={"help": "EMA momentum (constant), or the cosine schedule's start."})
    momentum_schedule: Literal["constant", "cosine"] = field(default="constant", metadata={"help": "constant (official ReLA) or cosine to 1.0 (BYOL paper)."})
    mixed_precision: str | None = field(default=None, metadata={"help": "no | fp16 | bf16; default: accelerate launch's setting."})
    sync_batchnorm: bool = field(default=False, metadata={"help": "SyncBatchNorm across GPUs (multi-GPU runs only)."})
    torch_compile: bool = field(default=False, metadata={"help": "torch.compile the model (inductor)."})
    channels_last: bool = field(default=False, metadata={"help": "Channels-last memory format (faster convolutions on GPU and CPU)."})
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard | wandb | trackio | all | none."})
    logging_steps: int = field(default=10, metadata={"help": "Log every N optimizer steps."})
    checkpointing_steps: int | None = field(default=500, metadata={"help": "Checkpoint every N optimizer steps (and always at the end)."})
    checkpoints_total_limit: int | None = field(default=2, metadata={"help": "Keep at most N checkpoints."})
    seed: int = field(default=42, metadata={"help": "Seed of the initialisation, data subset and augmentations."})
    push_to_hub: bool = field(default=False, metadata={"help": "Publish backbone + model card + training curves to --hub_model_id (rela_hf.hub.push_training_output), when --hub_strategy says."})
    hub_strategy: Literal["end", "every_save", "checkpoint"] = field(default="end", metadata={"help": "end: push once, at the end; every_save: at every checkpoint push the backbone, card, curves and the checkpoint (training_state/), so the Hub holds the latest progress and a crashed run resumes from it (--resume_from_checkpoint hub); checkpoint: at every checkpoint push only training_state/, the rest at the end."})
    hub_model_id: str | None = field(default=None, metadata={"help": "Hub model repo 'org/name' for --push_to_hub (token: HF_TOKEN or huggingface-cli login)."})
    hub_private: bool = field(default=False, metadata={"help": "Create the Hub repo private."})
    eval_dataset_name: str | None = field(default=None, metadata={"help": "Dataset of the online kNN monitor's held-out split (default: --dataset_name)."})
    eval_split: str | None = field(default=None, metadata={"help": "Held-out split for the online kNN monitor (e.g. test); needs labels."})
    eval_steps: int | None = field(default=None, metadata={"help": "Online kNN accuracy (k=200, t=0.1) on --eval_split every N optimizer steps and at the end, logged to the trackers and the card's curves."})
    eval_max_samples: int = field(default=1000, metadata={"help": "Queries of the kNN monitor: a fixed random subset of --eval_split."})
    eval_bank_max_samples: int = field(default=2000, metadata={"help": "Memory bank of the kNN monitor: a fixed random subset of the training split."})
    ddp_timeout: int = field(default=7200, metadata={"help": "Collective timeout, seconds (targets are computed while the other processes wait)."})


ARGUMENT_CLASSES = (DataArguments, ModelArguments, TrainArguments)
# Options that may change when a run is resumed: everything else is part of the run's identity
# (its fingerprint), and a checkpoint made with another value refuses to load.
RESUMABLE_OPTIONS = {
    "output_dir", "overwrite_output_dir", "resume_from_checkpoint", "report_to", "logging_steps",
    "checkpointing_steps", "checkpoints_total_limit", "dataloader_num_workers", "prior_batch_size",
    "torch_compile", "channels_last", "ddp_timeout", "push_to_hub", "hub_model_id", "hub_private",
    "hub_strategy", "verify_images", "eval_dataset_name", "eval_split", "eval_steps", "eval_max_samples", "eval_bank_max_samples",
}


#: The presets (``--config cifar10_resnet18``), next to this script in the repository and in the wheel.
PRESETS = Path(__file__).resolve().parent / "configs"


class ConfigError(ValueError):
    """A bad option value, reported before any compute is spent."""


def parse_args(argv: list[str] | None = None) -> tuple[DataArguments, ModelArguments, TrainArguments]:
    """``--config file.yaml`` gives the defaults, the other flags override them."""
    parser = HfArgumentParser(ARGUMENT_CLASSES, description=__doc__.split("\n")[0])
    parser.add_argument("--config", type=str, default=None,
                        help=f"YAML file of option values, or a preset: {sorted(p.stem for p in PRESETS.glob('*.yaml'))}.")
    config_path = config_argument(argv)
    if config_path is not None:
        known = {f.name for cls in ARGUMENT_CLASSES for f in dataclasses.fields(cls)}
        try:
            parser.set_defaults(**read_config(config_path, known=known, presets_dir=PRESETS))
        except ConfigFileError as error:
            raise ConfigError(str(error)) from error
    *parsed, _namespace = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=False)
    return tuple(parsed)  # type: ignore[return-value]


def resolved_config(*args_objects: Any) -> dict[str, Any]:
    """All options as one flat dict (the format of ``--config`` files)."""
    return {k: v for obj in args_objects for k, v in dataclasses.asdict(obj).items()}


def validate_args(data: DataArguments, model: ModelArguments, train: TrainArguments) -> None:
    """Cheap checks of option values, before anything is loaded."""
    if train.method == "byol":  # the baseline's name before other methods existed
        train.method = "baseline"
    if train.ssl_method not in method_names():
        raise ConfigError(f"--ssl_method {train.ssl_method!r} is not one of {list(method_names())}.")
    method_options(model, train)  # parses and checks, or a clear error
    if not data.dataset_name:
        raise ConfigError("--dataset_name is required (Hub id, image folder or save_to_disk folder).")
    if not 0.0 < data.data_ratio <= 1.0:
        raise ConfigError(f"--data_ratio must be in (0, 1], got {data.data_ratio}.")
    if train.method == "rela" and train.switch_rule == "static" and train.switch_fraction is None:
        raise ConfigError("--switch_rule static needs --switch_fraction c in [0, 1].")
    if train.switch_fraction is not None and not 0.0 <= train.switch_fraction <= 1.0:
        raise ConfigError(f"--switch_fraction must be in [0, 1], got {train.switch_fraction}.")
    if train.mixed_precision not in (None, "no", "fp16", "bf16"):
        raise ConfigError(f"--mixed_precision must be no, fp16 or bf16, got {train.mixed_precision!r}.")
    if not 0.0 <= train.momentum <= 1.0:
        raise ConfigError(f"--momentum must be in [0, 1], got {train.momentum}.")
    for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps"):
        if getattr(train, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(train, name)}.")
    if train.report_to not in ("tensorboard", "wandb", "trackio", "all", "none"):
        raise ConfigError(f"--report_to must be tensorboard, wandb, trackio, all or none, got {train.report_to!r}.")
    if train.push_to_hub and not train.hub_model_id:
        raise ConfigError("--push_to_hub needs --hub_model_id org/name.")
    if train.resume_from_checkpoint == "hub" and not train.hub_model_id:
        raise ConfigError("--resume_from_checkpoint hub needs --hub_model_id (the repo the run pushed to).")
    if train.eval_steps is not None and (train.eval_steps < 1 or not train.eval_split):
        raise ConfigError("--eval_steps N needs N >= 1 and --eval_split (a held-out split with labels).")
    backbone_kwargs(model)  # parses, or a clear error


def method_options(model: ModelArguments, train: TrainArguments) -> Any:
    """The SSL method's ``Options``: ``--method_options`` (+ the BYOL flags, for BYOL)."""
    values = json_object(train.method_options, "--method_options")
    byol_flags = {"projection_dim": model.projection_dim, "projector_hidden_dim": model.projector_hidden_dim,
                  "predictor_hidden_dim": model.predictor_hidden_dim}
    if train.ssl_method == "byol":
        values = {**byol_flags, **values}
    elif any(value != getattr(BYOLOptions(), key) for key, value in byol_flags.items()):
        raise ConfigError(
            f"--projection_dim/--projector_hidden_dim/--predictor_hidden_dim are BYOL's; for "
            f"--ssl_method {train.ssl_method} pass the method's options in --method_options."
        )
    try:
        return method_class(train.ssl_method).options_from(values)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"--method_options for {train.ssl_method}: {error}") from error


def json_object(value: str | dict | None, flag: str) -> dict[str, Any]:
    """A JSON object option (a string on the command line, a mapping in YAML)."""
    if value is None or isinstance(value, dict):
        return dict(value or {})
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{flag} is not valid JSON ({error}): {value!r}") from error
    if not isinstance(parsed, dict):
        raise ConfigError(f"{flag} must be a JSON object, got {value!r}.")
    return parsed


def backbone_kwargs(model: ModelArguments) -> dict[str, Any]:
    """``--backbone_kwargs`` as a dict (a JSON string on the command line, a mapping in YAML)."""
    return json_object(model.backbone_kwargs, "--backbone_kwargs")


def tracker_config(config: dict[str, Any]) -> dict[str, Any]:
    """TensorBoard's hparams take scalars and strings only."""
    return {k: v if isinstance(v, int | float | str | bool) else json.dumps(v) for k, v in config.items()}


# ---------------------------------------------------------------------------------------------
# Data: the ReLA targets, computed once by the main process when the dataset has none
# ---------------------------------------------------------------------------------------------
def target_width(dataset: datasets.Dataset, column: str) -> int:
    """Length k of a fixed-length target column (checked on the schema or the first row)."""
    feature = dataset.features[column]
    length = getattr(feature, "length", -1)
    if length is None or length < 0:
        length = len(dataset.select_columns([column])[0][column])
    return int(length)


def targets_provenance(data: DataArguments, use_rela: bool) -> dict[str, Any]:
    """Which prior made the targets, for the summary and the model card.

    With --prior the targets were made here; otherwise read the record that make_targets.py
    saved or pushed with the dataset (rela_targets.json), if there is one.
    """
    if not use_rela:
        return {"prior": None, "prior_revision": None}
    if data.prior is not None:
        return {"prior": data.prior, "prior_revision": data.prior_revision}
    info = find_rela_targets_info(data.dataset_name, config_name=data.dataset_config_name,
                                  revision=data.dataset_revision)
    if info is None:
        return {"prior": None, "prior_revision": None}
    return {"prior": info.prior.name, "prior_revision": info.prior.revision,
            "prior_pretrained": info.prior.pretrained, "prior_preprocessing": info.prior.preprocessing}


def add_targets_cached(accelerator, dataset, data: DataArguments, k: int | None, student_width: int):
    """``add_rela_targets`` on the main process, cached in ``<output_dir>/rela_targets/<key>``.

    Only the target column is cached (images are never copied); the other processes wait at
    the barrier and read the cache, so the prior runs once per machine and every process
    trains on identical targets. For large datasets, precompute the targets with
    ``recipes/make_targets.py`` (one process per GPU) and train on that dataset instead.
    """
    # The main process names the cache (in-memory datasets have a random fingerprint per process).
    key = config_fingerprint({
        "dataset": dataset._fingerprint, "prior": data.prior, "revision": data.prior_revision,
        "preprocessing": data.prior_preprocessing, "prior_image_size": data.prior_image_size,
        "k": k, "student_width": student_width, "image_column": data.image_column,
    })
    key = broadcast_object_list([key])[0]
    cache_dir = RunLayout(accelerator.project_dir).targets_cache_dir(key)
    if accelerator.is_main_process and not cache_dir.exists():
        logger.info(f"Computing ReLA targets with prior {data.prior} (cached in {cache_dir})")
        prior = load_prior(
            data.prior, revision=data.prior_revision, preprocessing=data.prior_preprocessing,
            image_size=data.prior_image_size, device=accelerator.device,
        )
        with_targets = add_rela_targets(
            dataset, prior, k=k, student_width=student_width, image_column=data.image_column,
            target_column=data.target_column, batch_size=data.prior_batch_size,
        )
        # only idx + targets (and the whitening record), atomically: images are never copied
        save_rela_dataset(with_targets, cache_dir, targets_only=True, card=False)
    accelerator.wait_for_everyone()  # the others wait here while the prior runs
    return attach_rela_targets(dataset, datasets.load_from_disk(str(cache_dir)))


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> TrainingSummary:
    data_args, model_args, args = parse_args(argv)
    validate_args(data_args, model_args, args)
    config = resolved_config(data_args, model_args, args)
    run_config = {k: v for k, v in config.items() if k not in RESUMABLE_OPTIONS}
    output_dir = Path(args.output_dir)
    layout = RunLayout(output_dir)

    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,  # None: the launcher's --mixed_precision
        dynamo_backend="inductor" if args.torch_compile else None,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(layout.logging_dir)),
        kwargs_handlers=[
            # The phase decides which heads get gradients (transfer head in ReLA, projector and
            # predictor in BYOL), so DDP must look for unused parameters; their gradients stay
            # None and AdamW skips them (no weight decay, no moment update) on every process.
            DistributedDataParallelKwargs(find_unused_parameters=True),
            InitProcessGroupKwargs(timeout=timedelta(seconds=args.ddp_timeout)),
        ],
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    if not accelerator.is_local_main_process:
        datasets.utils.logging.set_verbosity_error()
    set_seed(args.seed)  # same initial weights on every process (DDP also broadcasts rank 0's)

    # --- Resume or fresh start, and whose output_dir this is: decided before any compute ----
    if args.resume_from_checkpoint == "hub":  # the training_state/ the run pushed, then as "latest"
        if accelerator.is_main_process:
            pulled = download_training_state(args.hub_model_id, output_dir)
            logger.info(f"Resuming from the Hub copy of {args.hub_model_id}: {pulled}")
        accelerator.wait_for_everyone()
        args.resume_from_checkpoint = "latest"
    resume_dir = resolve_checkpoint(output_dir, args.resume_from_checkpoint)
    check_output_dir(output_dir, run_config, resuming=resume_dir is not None, overwrite=args.overwrite_output_dir)
    run_state: dict[str, Any] = {}
    if resume_dir is not None:
        run_state = read_run_state(resume_dir)
        check_same_run(run_state, run_config, where=str(resume_dir))

    # --- Data ------------------------------------------------------------------------------
    dataset = load_image_dataset(
        data_args.dataset_name, split=data_args.train_split, config_name=data_args.dataset_config_name,
        revision=data_args.dataset_revision, image_column=data_args.image_column,
    )
    if data_args.verify_images:  # before any compute: one decode of every image, on the main process
        bad = broadcast_object_list([find_unreadable_images(dataset, data_args.image_column) if accelerator.is_main_process else None])[0]
        if bad:
            raise ConfigError(
                f"{data_args.dataset_name} ({data_args.train_split}) has images that cannot be decoded; rela-hf never "
                f"skips images silently. Fix or remove these rows, then run again: {bad}"
            )
    use_rela = args.method == "rela"
    has_targets = data_args.target_column in dataset.column_names
    if use_rela and not has_targets and data_args.prior is None:
        raise ConfigError(
            f"--method rela needs ReLA targets: {data_args.dataset_name} has no "
            f"{data_args.target_column!r} column (columns: {dataset.column_names}). Pass --prior "
            "to compute them, --target_column to name the right column, or --method baseline."
        )
    # The same subset of floor(r N) rows on every process for a given (seed, epoch); Accelerate
    # then hands each process every num_processes-th batch of it (incomplete batches dropped).
    sampler = DataRatioSampler(len(dataset), ratio=data_args.data_ratio, seed=args.seed, shuffle=True)
    images_per_micro_batch = args.per_device_train_batch_size * accelerator.num_processes
    if len(sampler) < images_per_micro_batch:
        raise ConfigError(
            f"No full batch: {len(sampler)} images per epoch (data_ratio {data_args.data_ratio} x "
            f"{len(dataset)}) < {args.per_device_train_batch_size} per device x "
            f"{accelerator.num_processes} processes. Lower --per_device_train_batch_size or raise --data_ratio."
        )
    label_column = data_args.label_column if data_args.label_column not in (None, "none") else None
    monitor = None
    if args.eval_steps:
        if label_column is None or label_column not in dataset.column_names:
            raise ConfigError(f"--eval_steps: the online kNN monitor needs labels; {data_args.dataset_name} has no "
                              f"{data_args.label_column!r} column (pass --label_column).")
        own = args.eval_dataset_name in (None, data_args.dataset_name)
        held_out = load_image_dataset(args.eval_dataset_name or data_args.dataset_name, split=args.eval_split,
                                      config_name=data_args.dataset_config_name if own else None,
                                      revision=data_args.dataset_revision if own else None, image_column=data_args.image_column)
        monitor = KNNMonitor(dataset, held_out, image_size=data_args.image_size, max_bank=args.eval_bank_max_samples,
                             max_queries=args.eval_max_samples, image_column=data_args.image_column, label_column=label_column)
    if label_column is not None and label_column not in dataset.column_names:
        logger.info(f"No {label_column!r} column: the online linear probe is off.")
        label_column = None

    # --- Model (an unknown backbone fails here, before targets are computed) --------------
    backbone = create_backbone(model_args.backbone, cifar_stem=model_args.cifar_stem, **backbone_kwargs(model_args))
    rela_dim = None
    if use_rela:
        if has_targets:
            rela_dim = target_width(dataset, data_args.target_column)
            if model_args.rela_dim is not None and model_args.rela_dim != rela_dim:
                raise ConfigError(
                    f"--rela_dim {model_args.rela_dim} does not match the {rela_dim}-d targets in "
                    f"column {data_args.target_column!r}; drop --rela_dim or use targets with k={model_args.rela_dim}."
                )
        else:
            dataset = add_targets_cached(accelerator, dataset, data_args, model_args.rela_dim, backbone.num_features)
            rela_dim = target_width(dataset, data_args.target_column)
    num_classes = None
    if label_column is not None:
        feature = dataset.features[label_column]
        num_classes = getattr(feature, "num_classes", None) or int(np.max(dataset.with_format("numpy")[label_column])) + 1
    options = method_options(model_args, args)
    model = ReLAStudent(
        backbone, args.ssl_method, method_options=options, rela_dim=rela_dim,
        trainable_transfer_head=model_args.trainable_transfer_head, num_classes=num_classes,
    )
    ssl = model.method  # the method's name, title, loss name and views
    if args.sync_batchnorm:
        # Accelerate does not convert BatchNorm (accelerate#791); do it before prepare(), on
        # multi-GPU runs only (SyncBatchNorm needs a GPU process group).
        if accelerator.distributed_type == DistributedType.MULTI_GPU:
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning("--sync_batchnorm ignored: it needs a multi-GPU run.")
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)

    # Views are seeded per (seed, epoch, row): independent of workers, processes and resumes.
    train_data = ViewDataset(
        dataset,
        rela_views=rela_view_transform(data_args.image_size) if use_rela else None,
        ssl_views=ssl.view_transforms(data_args.image_size, options),
        image_column=data_args.image_column,
        target_column=data_args.target_column if use_rela else None,
        label_column=label_column,
        seed=args.seed,
        phase=PHASE_RELA if use_rela else PHASE_SSL,
    )
    train_loader = DataLoader(
        train_data, batch_size=args.per_device_train_batch_size, sampler=sampler, drop_last=True,
        num_workers=data_args.dataloader_num_workers, collate_fn=ViewCollator(args.channels_last),
        pin_memory=torch.cuda.is_available(),
        # Workers copy the dataset (its phase and epoch) when an iterator starts: no persistent
        # workers, so a new iterator (every epoch, and right after the switch) sees the change.
        persistent_workers=False,
    )
    optimizer = torch.optim.AdamW(model.parameter_groups(args.weight_decay), lr=args.learning_rate)
    model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)

    # Budget in optimizer steps, from the *prepared* (per-process) loader length.
    steps_per_epoch = math.ceil(len(train_loader) / args.gradient_accumulation_steps)
    total_steps = args.max_train_steps or args.num_train_epochs * steps_per_epoch
    # Not prepared: Accelerate's scheduler wrapper steps num_processes times per optimizer step;
    # this one steps exactly once per optimizer step, like the EMA and the switch.
    lr_scheduler = get_scheduler(
        args.lr_scheduler_type, optimizer.optimizer, num_warmup_steps=args.warmup_steps, num_training_steps=total_steps
    )
    fraction = args.switch_fraction if args.switch_rule == "static" else None  # adaptive: unused
    switch = build_switch(args.switch_rule, fraction=fraction, total_steps=total_steps) if use_rela else None

    def momentum_at(step: int) -> float:
        if args.momentum_schedule == "constant":
            return args.momentum
        return cosine_momentum(step, total_steps, start=args.momentum, end=1.0)

    # --- Restore ----------------------------------------------------------------------------
    step, epoch, batch_in_epoch, train_seconds, images_seen = 0, 0, 0, 0.0, 0
    last_metrics: dict[str, float] = {}
    tracker = {"run_name": output_dir.name, "run_id": uuid.uuid4().hex[:8]}
    if resume_dir is not None:
        load_checkpoint(accelerator, resume_dir)  # model + EMA target, optimizer, scaler, RNG
        lr_scheduler.load_state_dict(run_state["scheduler"])
        sampler.load_state_dict(run_state["sampler"])
        if switch is not None:
            switch.load_state_dict(run_state["switch"])
        step, epoch, batch_in_epoch = run_state["step"], run_state["epoch"], run_state["batch_in_epoch"]
        train_seconds, images_seen = run_state["train_seconds"], run_state["images_seen"]
        last_metrics, tracker = run_state["last_metrics"], run_state["tracker"]
        if run_state["num_processes"] != accelerator.num_processes and batch_in_epoch:
            # The position inside an epoch counts per-process batches: convert it (not exact).
            batch_in_epoch = batch_in_epoch * run_state["num_processes"] // accelerator.num_processes
            logger.warning("Resuming mid-epoch with another number of processes: data order is not exact.")
        logger.info(f"Resumed from {resume_dir}: step {step}, epoch {epoch}, batch {batch_in_epoch}")
    elif args.overwrite_output_dir and accelerator.is_main_process:
        for path in clear_checkpoints(output_dir):
            logger.info(f"--overwrite_output_dir: removed {path}")
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        for path in remove_incomplete_checkpoints(output_dir):
            logger.info(f"Removed {path}, left by an interrupted save")
        layout.config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        # one JSON line per logged step, for the model card's training curves (rela_hf.hub); a
        # resumed run appends and the reader keeps the last record of each step
        history_file = layout.history_file.open("a" if resume_dir is not None else "w")

    # Trackers: the same run continues on resume (wandb id, TensorBoard folder; purge_step drops
    # the events a crashed run logged after its last checkpoint).
    accelerator.init_trackers(
        "rela_byol", config=tracker_config(config),
        init_kwargs={
            "tensorboard": {"purge_step": step} if resume_dir is not None else {},
            "wandb": {"name": tracker["run_name"], "id": tracker["run_id"], "resume": "allow"},
            "trackio": {"name": tracker["run_name"], "resume": "allow"},
        },
    )
    logger.info(
        f"{args.method}: {len(train_data)} images, ratio {data_args.data_ratio}, {steps_per_epoch} steps/epoch, "
        f"{total_steps} steps, global batch {args.per_device_train_batch_size * accelerator.num_processes * args.gradient_accumulation_steps}, "
        f"{accelerator.num_processes} process(es) on {accelerator.device}"
    )

    def run_state_now() -> dict[str, Any]:
        next_epoch, next_batch = (epoch + 1, 0) if batch_in_epoch >= len(train_loader) else (epoch, batch_in_epoch)
        return {
            "epoch": next_epoch, "batch_in_epoch": next_batch, "num_processes": accelerator.num_processes,
            "switch": switch.state_dict() if switch is not None else None, "sampler": sampler.state_dict(),
            "scheduler": lr_scheduler.state_dict(), "train_seconds": train_seconds, "images_seen": images_seen,
            "last_metrics": last_metrics, "tracker": tracker, "config_fingerprint": config_fingerprint(run_config),
            "run_config": run_config, "config": config, "rela_hf_version": rela_hf.__version__,
        }

    def log_record(metrics: dict[str, float]) -> None:
        """To the trackers and, on the main process, as one line of history.jsonl (the card's curves)."""
        accelerator.log(metrics, step=step)
        if accelerator.is_main_process:
            history_file.write(json.dumps({"step": step, **metrics}) + "\n")
            history_file.flush()

    def export_and_summarize(checkpoint: Path) -> TrainingSummary:
        """The run so far: the backbone exported in timm format and training_summary.json (main process)."""
        summary = TrainingSummary(
            method=args.method, ssl_method=ssl.name, switch_rule=args.switch_rule if use_rela else None,
            switch_fraction=args.switch_fraction if use_rela else None,
            # optimizer step whose statistics triggered the switch (the last ReLA step); None: never
            switch_step=switch.switch_step if switch is not None else None,
            switch_state=switch.state_dict() if switch is not None else None,  # rho, loss EMAs
            phase=PHASE_RELA if switch is not None and not switch.switched else ssl.name,
            steps=step, total_steps=total_steps, epochs=step / steps_per_epoch, images_seen=images_seen,
            global_batch_size=images_per_micro_batch * args.gradient_accumulation_steps,
            num_processes=accelerator.num_processes, device=str(accelerator.device),
            device_name=torch.cuda.get_device_name(accelerator.device) if accelerator.device.type == "cuda" else None,
            mixed_precision=accelerator.mixed_precision, wall_clock_seconds=round(train_seconds, 3),
            final_metrics={k.removeprefix("train/"): v for k, v in last_metrics.items()},
            backbone=model_args.backbone, dataset=data_args.dataset_name,
            dataset_config=data_args.dataset_config_name, dataset_revision=data_args.dataset_revision,
            train_split=data_args.train_split, **targets_provenance(data_args, use_rela),
            target_dim=rela_dim, data_ratio=data_args.data_ratio, image_size=data_args.image_size,
            checkpoint=checkpoint.name, rela_hf_version=rela_hf.__version__,
        )
        if accelerator.is_main_process:
            export_backbone(
                accelerator.unwrap_model(model, keep_torch_compile=False).backbone, layout.backbone_dir,
                data_config=official_data_config(data_args.image_size),
                pretrained_cfg={"tag": f"rela_{ssl.name}" if use_rela else ssl.name,
                                "description": f"{'ReLA-accelerated ' if use_rela else ''}{ssl.title}-pretrained backbone (rela-hf)."},
            )
            summary.save(layout.summary_file)
        return summary

    def publish_progress(checkpoint: Path) -> None:
        """--hub_strategy every_save / checkpoint: the latest progress on the Hub after a save."""
        if not args.push_to_hub or args.hub_strategy == "end":
            return
        if args.hub_strategy == "every_save":
            export_and_summarize(checkpoint)  # every process: the summary's values are collective-free
        if not accelerator.is_main_process:
            return
        push = push_training_output if args.hub_strategy == "every_save" else push_training_state
        kwargs = {"include_training_state": True} if args.hub_strategy == "every_save" else {}
        try:
            commit = push(output_dir, args.hub_model_id, checkpoint=checkpoint, private=args.hub_private or None, **kwargs)
            logger.info(f"Pushed step {step} to the Hub ({args.hub_strategy}): {commit.commit_url}")
        except PushError as error:  # the run goes on; the next save pushes again
            logger.warning(f"Push of step {step} to {args.hub_model_id} failed, training continues: {error}")

    # --- Train --------------------------------------------------------------------------------
    unwrapped = accelerator.unwrap_model(model)  # ReLAStudent itself: update_teacher lives there
    step_means, log_means = MetricMeans(), MetricMeans()
    progress = tqdm(total=total_steps, initial=step, disable=not accelerator.is_local_main_process, desc="train")
    window_start, window_images = time.perf_counter(), 0
    while step < total_steps:
        phase = switch.phase if switch is not None else PHASE_SSL
        train_data.set_phase(phase)
        # Mid-epoch (a resume, or right after the switch): skip the batches already seen. The
        # sampler is deterministic per epoch, so the remaining batches are exactly the same.
        loader = accelerator.skip_first_batches(train_loader, batch_in_epoch) if batch_in_epoch else train_loader
        loader.set_epoch(epoch)  # Accelerate forwards it to the sampler and the dataset
        sampler.set_epoch(epoch)
        train_data.set_epoch(epoch)
        restart = False
        tick = time.perf_counter()
        for batch in loader:
            # dropout / stochastic depth: seeded by the data position, so a resume repeats them
            torch.manual_seed(forward_seed(args.seed, epoch, batch_in_epoch, accelerator.process_index))
            out = training_step(
                accelerator, model, optimizer, batch, phase=phase, momentum=momentum_at(step),
                step=step, max_grad_norm=args.max_grad_norm, unwrapped=unwrapped,
            )
            batch_in_epoch += 1
            images_seen += images_per_micro_batch
            window_images += images_per_micro_batch
            step_means.add(out)
            log_means.add(out)
            if not accelerator.sync_gradients:
                continue
            # ---- once per optimizer step (after accumulation) ----
            step += 1
            lr_scheduler.step()
            progress.update(1)
            if phase == PHASE_RELA:
                # `cur` of the switch: this step's ReLA loss, mean over micro-batches and processes
                # (all-reduced, so every process takes the same decision).
                step_loss = step_means.compute(accelerator)
                check_finite_loss(step_loss, step)
                switched = switch.update(step_loss["rela_loss"])
                if switched:
                    logger.info(
                        f"ReLA -> {ssl.title} switch ({args.switch_rule} rule) at optimizer step {step}; {ssl.title} views from step {step + 1}",
                        main_process_only=True,
                    )
                    restart = True  # new iterator: the next batch gets the method's views
            else:
                step_means.reset()  # after the switch: nothing to decide, no host sync needed
            evaluation: dict[str, float] = {}
            if monitor is not None and (step % args.eval_steps == 0 or step == total_steps):
                train_seconds += time.perf_counter() - tick  # the monitor is not training time
                evaluation = monitor(unwrapped.backbone, accelerator)
                tick = time.perf_counter()
                last_metrics["eval/knn_accuracy"] = evaluation["eval/knn_accuracy"]
            if step % args.logging_steps == 0 or restart or step == total_steps:
                now = time.perf_counter()
                metrics = {f"train/{k}": v for k, v in log_means.compute(accelerator).items()}
                check_finite_loss(metrics, step)
                last_metrics.update(metrics)
                metrics.update({
                    "train/phase": 0.0 if phase == PHASE_RELA else 1.0, "train/lr": lr_scheduler.get_last_lr()[0],
                    "train/momentum": momentum_at(step - 1), "train/epoch": epoch + batch_in_epoch / len(train_loader),
                    "train/images_per_second": window_images / max(now - window_start, 1e-9),
                })
                if getattr(switch, "rho", None) is not None:  # the adaptive rule's statistic
                    metrics["train/rho"] = switch.rho
                log_record({**metrics, **evaluation})  # one record per step: the history's unit
                progress.set_postfix({k.split("/")[1]: f"{v:.4g}" for k, v in metrics.items() if "loss" in k or "accuracy" in k})
                window_start, window_images = now, 0
            elif evaluation:
                log_record(evaluation)
            if args.checkpointing_steps and step % args.checkpointing_steps == 0 and step < total_steps:
                train_seconds += time.perf_counter() - tick
                check_finite_weights(unwrapped, step)  # never a checkpoint, export or push of NaN weights
                checkpoint = save_checkpoint(accelerator, output_dir, step=step, run_state=run_state_now(), total_limit=args.checkpoints_total_limit)
                publish_progress(checkpoint)
                tick = time.perf_counter()
            if restart or step >= total_steps:
                break
        train_seconds += time.perf_counter() - tick
        loader.end()  # leaving the loop early skips Accelerate's own end-of-loader bookkeeping
        if restart and batch_in_epoch < len(train_loader):
            continue  # same epoch, from the next batch, with the new views
        if batch_in_epoch >= len(train_loader):
            epoch, batch_in_epoch = epoch + 1, 0
    progress.close()

    # --- Final checkpoint, backbone export, summary -----------------------------------------
    check_finite_weights(unwrapped, step)
    final_checkpoint = save_checkpoint(accelerator, output_dir, step=step, run_state=run_state_now(), total_limit=args.checkpoints_total_limit)
    summary = export_and_summarize(final_checkpoint)
    if accelerator.is_main_process:
        logger.info(f"Backbone exported to {layout.backbone_dir}; summary: {json.dumps(summary.to_dict())}")
        history_file.close()
    accelerator.wait_for_everyone()
    accelerator.end_training()
    if args.push_to_hub and accelerator.is_main_process:
        # after the last collective: a failed push (PushError, after retries) ends the main
        # process loudly without leaving the others waiting; re-push with recipes/push_to_hub.py
        commit = push_training_output(output_dir, args.hub_model_id, private=args.hub_private or None,
                                      include_training_state=args.hub_strategy != "end", checkpoint=final_checkpoint)
        logger.info(f"Pushed to the Hub: {commit.commit_url}", main_process_only=True)
    return summary


def cli() -> None:
    """The ``rela-hf-train`` console command (and ``accelerate launch -m rela_hf.recipes.byol_rela``)."""
    main(sys.argv[1:])


if __name__ == "__main__":
    cli()
