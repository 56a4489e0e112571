"""The flag vocabulary of the five commands: every option name defined once, with one meaning.

``rela-hf-assets``, ``rela-hf-targets``, ``rela-hf-train``, ``rela-hf-evaluate`` and
``rela-hf-push`` (the recipes in ``recipes/``) declare their options as dataclass fields built by
:func:`arg` from the table below, so an option means the same thing wherever it appears: the
dataset is ``--dataset_name`` / ``--dataset_config_name`` / ``--dataset_revision`` everywhere, the
prior's input size (``--prior_image_size``), the target width (``--target_dim``) and the kNN
neighbours (``--knn_k``) have distinct names, and Hugging Face's names are used wherever
``TrainingArguments`` or the ``*_no_trainer.py`` examples have one (``max_train_samples``,
``max_eval_samples``, ``per_device_eval_batch_size``, ``hub_private_repo``, ``hub_model_id``, ...).
``tests/test_vocabulary.py`` parses all five commands and fails when a name has two meanings or
two names share one; ``docs/vocabulary.md`` is generated from this table.

A command may give an option its own *default* (``arg("output_dir", default="outputs/run")``),
never its own meaning.

Examples:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Example:
    ...     dataset_name: str | None = arg("dataset_name")
    >>> dataclasses.fields(Example)[0].metadata["help"].split(":")[0]
    'The image dataset'
"""

from __future__ import annotations

import dataclasses
from typing import Any

__all__ = ["FLAGS", "arg"]

_MISSING: Any = dataclasses.MISSING

#: name -> (help text = its one meaning, default). Grouped by subject, alphabetical inside a group.
FLAGS: dict[str, tuple[str, Any]] = {
    # --- the image dataset -----------------------------------------------------------------
    "dataset_name": ("The image dataset: a Hub dataset id, a save_to_disk folder or an image folder.", None),
    "dataset_config_name": ("The dataset's config (Hub datasets with several configs).", None),
    "dataset_revision": ("The dataset's revision on the Hub (branch, tag or commit sha; pin a sha).", None),
    "dataset_pretty_name": ("How results and cards name the dataset (default: its id).", None),
    "train_split": ("The dataset's training split.", "train"),
    "eval_split": ("The held-out split that is evaluated on (needs labels).", None),
    "image_column": ("The dataset's column of images.", "image"),
    "label_column": ("The dataset's column of class labels ('none': no labels).", "label"),
    "max_train_samples": ("Use at most this many images of the training split (quick runs).", None),
    "max_eval_samples": ("Use at most this many images of the evaluated split (a fixed random subset).", None),
    "view_pipeline": (
        "Where the training views are made: pil (PIL transforms per image in the DataLoader workers) or "
        "batched (per-image random views made in batches on the training device, rela_hf.gpu_views: the "
        "same distributions, a fraction of the CPU work).",
        "pil",
    ),
    "verify_images": (
        (
            "Decode every training image before training and refuse unreadable ones, naming the rows "
            "(rela-hf never skips images silently); a clean result is recorded in the datasets cache, "
            "so a resumed run on the same data does not decode again; 'false' for huge, known-good "
            "datasets."
        ),
        True,
    ),
    "verify_images_max_samples": (
        (
            "Decode only this many training images for --verify_images, a random subset drawn with "
            "--seed (default: all): a quick check of a huge dataset."
        ),
        None,
    ),
    "verify_images_num_proc": (
        (
            "Processes that decode the images for --verify_images (default: one per CPU core, with at "
            "least 2,000 images each)."
        ),
        None,
    ),
    # --- the prior and its targets (ReLA-D) --------------------------------------------------
    "prior": ("The prior model: a timm name, hf-hub:org/name, a Hub repo id or a local folder.", None),
    "priors": (
        "Candidate priors to rank, each [name=]prior[,option=value...]: the prior as in --prior, options "
        "image_size, random_init, seed, revision, library, preprocessing.",
        [],
    ),
    "prior_revision": ("The prior's revision on the Hub (pin a commit sha).", None),
    "prior_library": ("Which library loads the prior: auto, timm or transformers.", "auto"),
    "prior_preprocessing": (
        "The prior's input pipeline: 'prior' (its own eval preprocessing) or 'official' (the ReLA "
        "code's resize + centre crop + ImageNet mean/std).",
        "prior",
    ),
    "prior_image_size": ("The prior's input size (default: the prior's own).", None),
    "prior_batch_size": ("Images per forward pass of the prior.", 64),
    "prior_random_init": ("Use the prior's architecture with random weights (ReLA allows it).", False),
    "trust_remote_code": ("Let transformers run code from the prior's repository (read it first).", False),
    "target_column": ("The dataset's column of ReLA targets (fixed-length float lists).", "rela_target"),
    "target_dim": (
        "Width k of the ReLA targets (default: the target column's, or min(student width, prior width) "
        "for new targets).",
        None,
    ),
    "student_width": ("Feature width of the student the targets are for (e.g. 512 for a ResNet-18).", None),
    "targets_dataset_name": (
        "A published targets-only dataset (idx + targets, made by rela-hf-targets --targets_only) to join "
        "to --dataset_name by idx: the trainer then never loads the prior.",
        None,
    ),
    "targets_config_name": ("The config of --targets_dataset_name that holds the targets.", None),
    "targets_revision": ("The revision of --targets_dataset_name (pin a commit sha).", None),
    "keep_embeddings": ("Also keep the prior's raw embeddings as a column.", False),
    "targets_only": ("Keep only idx + targets (a separate dataset config, joined to the images by idx).", False),
    "num_proc": (
        "Workers for the prior's pass over the data: threads sharing the cores on CPU, one process "
        "per GPU on GPUs (default: one per GPU, else one).",
        None,
    ),
    "device": ("Where the prior runs (default: cuda if available, else cpu).", None),
    "write_card": ("Write a dataset card next to the data.", True),
    # --- the student and its method (ReLA-F) -------------------------------------------------
    "backbone": ("The student: a timm architecture, hf-hub:org/name or local-dir:/path.", "resnet18"),
    "backbone_kwargs": ("JSON object of extra timm.create_model kwargs, e.g. '{\"drop_path_rate\": 0.1}'.", None),
    "cifar_stem": (
        "Student ResNet with a 3x3 stride-1 stem and no max-pool (32-64 px images); exports load only "
        "after `import rela_hf` (timm has no such stem option).",
        False,
    ),
    "image_size": ("The encoder's input size (the student's views are cropped to it).", 32),
    "method": ("The training method ReLA accelerates: byol, dino, simclr, supervised (or registered).", "byol"),
    "use_rela": (
        "Start with ReLA's regression onto the prior targets, then switch to --method ('false': the method alone).",
        True,
    ),
    "method_options": ("JSON object of the method's options, e.g. '{\"teacher_temp\": 0.07}' (dino).", None),
    "projection_dim": ("BYOL's projection width (other methods: --method_options).", 256),
    "projector_hidden_dim": ("BYOL's projector hidden width (default 2 x feature width, as the official code).", None),
    "predictor_hidden_dim": ("BYOL's predictor hidden width (default: the projector's).", None),
    "trainable_transfer_head": (
        "Learn ReLA's transfer head W (the official code keeps it a fixed random projection).",
        False,
    ),
    "switch_rule": ("When ReLA hands over to the method: adaptive (the official rule) or static.", "adaptive"),
    "switch_fraction": ("The static rule's share of the step budget spent on ReLA, in [0, 1].", None),
    "handover": (
        "How ReLA hands over at the switch: hard (the official code: the ReLA loss stops), fade (its "
        "weight falls linearly to 0 over handover_steps) or regularize (it stays, weighted by handover_weight).",
        "hard",
    ),
    "handover_steps": ("The fade hand-over's length, in optimizer steps after the switch.", 1000),
    "handover_weight": ("The regularize hand-over's constant weight of the ReLA loss after the switch.", 0.1),
    "data_ratio": ("Fraction r in (0, 1] of the dataset drawn (fresh, uniformly) every epoch: the budget.", 1.0),
    # --- optimisation ------------------------------------------------------------------------
    "num_train_epochs": ("Training epochs (of data_ratio x N images each).", 100),
    "max_train_steps": ("Optimizer steps to train for; overrides num_train_epochs.", None),
    "per_device_train_batch_size": ("Images per process per micro-batch.", 128),
    "per_device_eval_batch_size": ("Images per process per batch when extracting evaluation features.", 256),
    "gradient_accumulation_steps": ("Micro-batches per optimizer step.", 1),
    "learning_rate": ("AdamW learning rate.", 1e-3),
    "weight_decay": ("AdamW weight decay.", 0.01),
    "lr_scheduler_type": ("transformers scheduler name (constant, cosine, linear, ...).", "constant"),
    "warmup_steps": ("Learning-rate warm-up, in optimizer steps.", 0),
    "max_grad_norm": ("Clip the gradient norm to this value (default: no clipping, as the official code).", None),
    "momentum": ("EMA momentum of the teacher (constant), or the cosine schedule's start.", 0.99),
    "momentum_schedule": (
        "The teacher's EMA schedule: constant (official ReLA) or cosine to 1.0 (BYOL paper).",
        "constant",
    ),
    "seed": ("Seed of everything random (initialisation, data subsets, augmentations, random priors).", 42),
    # --- runtime -----------------------------------------------------------------------------
    "mixed_precision": ("no | fp16 | bf16 (default: accelerate launch's setting).", None),
    "sync_batchnorm": ("SyncBatchNorm across GPUs (multi-GPU runs only).", False),
    "torch_compile": ("torch.compile the model (inductor).", False),
    "channels_last": ("Channels-last memory format (faster convolutions on GPU and CPU).", False),
    "dataloader_num_workers": ("DataLoader worker processes per process.", 2),
    "ddp_timeout": ("Timeout of collectives, seconds (the targets are computed while other processes wait).", 7200),
    # --- outputs, logging, checkpoints ---------------------------------------------------------
    "output_dir": ("The folder this command writes its results to.", None),
    "overwrite_output_dir": ("Replace what an earlier run left in --output_dir.", False),
    "output_file": ("The file the evaluation results are written to (default: next to a training run's export).", None),
    "report_to": ("Trackers to log to: tensorboard | wandb | trackio | all | none.", "tensorboard"),
    "logging_steps": ("Log every N optimizer steps.", 10),
    "checkpointing_steps": ("Save a checkpoint every N optimizer steps (0: only at the end).", 500),
    "checkpoints_total_limit": ("Keep at most N checkpoints (the best one is always kept).", 2),
    "resume_from_checkpoint": (
        "'latest' (the newest checkpoint in --output_dir, or a fresh start), a checkpoint folder, or "
        "'hub' (the last-checkpoint/ pushed to --hub_model_id with --hub_strategy checkpoint).",
        None,
    ),
    # --- keeping the best model ---------------------------------------------------------------
    "load_best_model_at_end": (
        "Export (and push) the best checkpoint by metric_for_best_model on the validation split instead "
        "of the last one; the best checkpoint is never pruned.",
        False,
    ),
    "metric_for_best_model": (
        "The validation metric that picks the best checkpoint: knn_accuracy or linear_probe_accuracy.",
        "knn_accuracy",
    ),
    "greater_is_better": (
        "Whether a larger metric_for_best_model is better (default: true unless its name ends in 'loss').",
        None,
    ),
    "train_val_split": (
        "Fraction of the training split held out (seeded) as the validation split of load_best_model_at_end; "
        "never trained on (the test split is never used).",
        0.05,
    ),
    # --- the online monitor and evaluation protocols -----------------------------------------
    "eval_dataset_name": ("The dataset of --eval_split, when it is not --dataset_name.", None),
    "eval_steps": ("Evaluate the online kNN monitor every N optimizer steps and at the end (0: never).", None),
    "eval_bank_max_samples": ("Training images in the online kNN monitor's memory bank (a fixed random subset).", 2000),
    "protocols": ("Evaluation protocols to run: knn and/or linear_probe.", None),
    "preprocessing": (
        "The evaluated encoder's input pipeline: 'encoder' (its pretrained_cfg) or 'official'.",
        "encoder",
    ),
    "knn_k": ("Neighbours that vote in the kNN classifier.", 200),
    "knn_temperature": ("Temperature of the kNN classifier's weights exp(sim / t).", 0.1),
    "probe_epochs": ("Epochs of the linear probe.", 100),
    "probe_learning_rate": ("Adam learning rate of the linear probe.", 3e-4),
    "probe_batch_size": ("Batch size of the linear probe.", 256),
    "use_evaluate": ("Cross-check the accuracies with the `evaluate` library (needs its module).", False),
    # --- the encoder evaluated or pushed -------------------------------------------------------
    "model_name_or_path": (
        "The encoder: a Hub repo id (timm format), a run's output_dir, an export folder, or hf-hub:/local-dir:.",
        None,
    ),
    "model_revision": ("The encoder's revision on the Hub.", None),
    "folder_path": ("What to push: a training run's output_dir, a bare timm export, or a ready repo folder.", None),
    # --- the Hub -------------------------------------------------------------------------------
    "push_to_hub": ("Push the trained encoder, its card and curves to --hub_model_id.", False),
    "hub_model_id": ("The Hub model repo 'org/name' (token: HF_TOKEN or `hf auth login`, never a flag).", None),
    "hub_dataset_id": ("The Hub dataset repo 'org/name' to push the efficient dataset to.", None),
    "hub_config_name": (
        "The dataset config to push to (default: 'default', or <prior>_pca<k> with --targets_only).",
        None,
    ),
    "hub_private_repo": ("Create the Hub repo private (an existing repo keeps its visibility).", None),
    "hub_revision": ("The Hub branch to push to (created if missing).", None),
    "hub_strategy": (
        "When to push (the HF Trainer's strategies): end (once, at the end); every_save (the backbone, "
        "card and curves at every save, in the background); checkpoint (as every_save, plus the "
        "checkpoint in last-checkpoint/, to resume from with --resume_from_checkpoint hub).",
        "end",
    ),
    "hub_always_push": (
        "Push at every save even while the previous push is still uploading (pushes queue); "
        "default: that save is not pushed.",
        False,
    ),
    "create_pr": ("Open a pull request instead of committing to the branch.", False),
    "commit_message": ("The Hub commit message.", None),
    "include_training_state": ("Also push the final checkpoint under last-checkpoint/.", False),
    "eval_results": ("eval_results.json files to put in the card (default: the run's own).", None),
    "license": (
        "The licence of the pushed weights (default: inherited from the data and the prior; asked for when unknown).",
        None,
    ),
    "max_retries": (
        "Deprecated and ignored: huggingface_hub retries every transfer itself (removed in rela-hf 0.4).",
        None,
    ),
    "dry_run": ("Only build the repo contents into this folder (inspect the card; nothing is pushed).", None),
}


def arg(name: str, *, default: Any = _MISSING, **metadata: Any) -> Any:
    """A dataclass field for the option ``name``: its one help text and (unless given) its default.

    Mutable defaults (lists) become ``default_factory``; extra ``metadata`` (e.g. ``choices``,
    ``nargs``) is passed to ``HfArgumentParser``.
    """
    if name not in FLAGS:
        raise KeyError(f"{name!r} is not in the vocabulary (rela_hf.arguments.vocabulary.FLAGS): add it there first.")
    help_text, table_default = FLAGS[name]
    value = table_default if default is _MISSING else default
    metadata = {"help": help_text, **metadata}
    if isinstance(value, list):
        return dataclasses.field(default_factory=lambda: list(value), metadata=metadata)
    return dataclasses.field(default=value, metadata=metadata)
