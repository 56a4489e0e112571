"""The trainer's model stage: the student network and the DataLoader of its views.

The student (:class:`~rela_hf.model.ReLAStudent`) is the backbone, the method (heads, loss,
teacher), ReLA's transfer head and the online probe. Its views are seeded per sample
(:class:`~rela_hf.training.views_dataset.ViewDataset`), so a resumed run sees exactly the images
an uninterrupted one would have seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import datasets
import torch
from accelerate.logging import get_logger
from accelerate.utils import DistributedType
from torch import nn
from torch.utils.data import DataLoader

from rela_hf.backbones import create_backbone
from rela_hf.data import DataRatioSampler
from rela_hf.gpu_views import ImageCollator, ImageRowsDataset, ViewRecipe, method_view_recipes, rela_view_recipes
from rela_hf.model import ReLAStudent
from rela_hf.switch import PHASE_RELA, PHASE_SSL
from rela_hf.training.views_dataset import ViewCollator, ViewDataset
from rela_hf.views import rela_view_transform

if TYPE_CHECKING:
    from accelerate import Accelerator

    from rela_hf.training.arguments import ReLATrainingArguments

__all__ = ["build_backbone", "build_student", "build_train_loader", "view_recipes"]

logger = get_logger(__name__)


def build_backbone(args: ReLATrainingArguments) -> nn.Module:
    """The student's backbone (an unknown name fails here, before targets are computed)."""
    return create_backbone(args.backbone, cifar_stem=args.cifar_stem, **args.backbone_kwargs_dict())


def build_student(
    args: ReLATrainingArguments,
    accelerator: Accelerator,
    backbone: nn.Module,
    *,
    target_dim: int | None,
    num_classes: int | None,
) -> ReLAStudent:
    """Backbone + method + transfer head (with ReLA) + online probe (with labels)."""
    model = ReLAStudent(
        backbone,
        args.method,
        method_options=args.method_options_object(),
        rela_dim=target_dim,
        trainable_transfer_head=args.trainable_transfer_head,
        num_classes=num_classes,
    )
    if args.sync_batchnorm:
        # Accelerate does not convert BatchNorm (accelerate#791); do it before prepare(), on
        # multi-GPU runs only, DDP or FSDP (SyncBatchNorm needs a GPU process group).
        if accelerator.distributed_type in (DistributedType.MULTI_GPU, DistributedType.FSDP):
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning("sync_batchnorm ignored: it needs a multi-GPU run.")
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def view_recipes(args: ReLATrainingArguments, model: ReLAStudent) -> dict[str, list[ViewRecipe]] | None:
    """``view_pipeline batched``: each phase's view recipes for the device; ``None`` for PIL views."""
    if args.view_pipeline != "batched":
        return None
    recipes = {PHASE_SSL: method_view_recipes(args.method, args.image_size, model.method.options)}
    if args.use_rela:
        recipes[PHASE_RELA] = rela_view_recipes(args.image_size)
    return recipes


def build_train_loader(
    args: ReLATrainingArguments,
    model: ReLAStudent,
    dataset: datasets.Dataset,
    *,
    sampler: DataRatioSampler,
    label_column: str | None,
) -> DataLoader:
    """The (unprepared) DataLoader: of views (:class:`ViewDataset`, PIL in the workers), or of
    8-bit images the device turns into views (``view_pipeline batched``: :class:`ImageRowsDataset`)."""
    target_column = args.target_column if args.use_rela else None
    if args.view_pipeline == "batched":
        rows = ImageRowsDataset(
            dataset,
            image_column=args.image_column,
            target_column=target_column,
            label_column=label_column,
            seed=args.seed,
        )
        return DataLoader(
            rows,
            batch_size=args.per_device_train_batch_size,
            sampler=sampler,
            drop_last=True,
            num_workers=args.dataloader_num_workers,
            collate_fn=ImageCollator(),
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )
    # Views are seeded per (seed, epoch, row): independent of workers, processes and resumes.
    views = ViewDataset(
        dataset,
        rela_views=rela_view_transform(args.image_size) if args.use_rela else None,
        ssl_views=model.method.view_transforms(args.image_size, model.method.options),
        image_column=args.image_column,
        target_column=target_column,
        label_column=label_column,
        seed=args.seed,
        phase=PHASE_RELA if args.use_rela else PHASE_SSL,
    )
    return DataLoader(
        views,
        batch_size=args.per_device_train_batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=args.dataloader_num_workers,
        collate_fn=ViewCollator(args.channels_last),
        pin_memory=torch.cuda.is_available(),
        # Workers copy the dataset (its phase and epoch) when an iterator starts: no persistent
        # workers, so a new iterator (every epoch, and right after the switch) sees the change.
        persistent_workers=False,
    )
