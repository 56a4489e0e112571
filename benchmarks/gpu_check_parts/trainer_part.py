"""(b) The training step's throughput, fed three ways, and whether ``torch.compile`` pays.

ResNet-50 BYOL (arXiv:2006.07733) at 224 px, bf16 through Accelerate, channels-last, one
:func:`rela_hf.training.training_step` per batch (forward, backward, AdamW, EMA), on distinct
crops of real photos, the views made:

(i) by PIL in DataLoader workers (``ViewDataset`` + ``ViewCollator``, cores - 2 workers): the
    trainer's ``view_pipeline pil``;
(ii) on the device from 8-bit images (``ImageRowsDataset`` + ``ImageCollator`` in the workers,
    ``views_for_batch`` here): the trainer's ``view_pipeline batched``;
(iii) nowhere: a few batches of views already on the device, cycled: the step's own limit.

(i)/(iii) and (ii)/(iii) say how much of the device each data path leaves idle. The compile part
repeats (iii) with the model compiled as the trainer's ``torch_compile`` does (Accelerate's
``dynamo_backend``), in the same process, and weighs the compile time against the speed-up.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import datasets
import torch
from accelerate import Accelerator
from torch.utils.data import DataLoader, RandomSampler

from gpu_check_parts.assets import imagenet_photos, photo_crops
from gpu_check_parts.measure import fresh_accelerate, synchronize, timed_steps
from gpu_check_parts.profiles import TrainerSizes
from rela_hf.backbones import create_backbone
from rela_hf.gpu_views import (
    ImageCollator,
    ImageRowsDataset,
    lossless_short_side,
    method_view_recipes,
    views_for_batch,
)
from rela_hf.model import ReLAStudent
from rela_hf.switch import PHASE_SSL
from rela_hf.training import ViewCollator, ViewDataset

__all__ = ["run_compile", "run_trainer"]

FEEDS = ("pil_workers", "gpu_data_path", "resident")


def prepared_student(accelerator: Accelerator, sizes: TrainerSizes) -> tuple[Any, Any]:
    """The same seeded student (channels-last) and AdamW, prepared by ``accelerator``."""
    torch.manual_seed(0)
    model = ReLAStudent(create_backbone(sizes.backbone), sizes.method)
    model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameter_groups(0.01), lr=1e-3)
    return accelerator.prepare(model, optimizer)


def loader_warmup(sizes: TrainerSizes, workers: int) -> int:
    """Untimed steps of a loader feed: the workers deliver their first batches together, so the
    timed window starts once that burst is eaten (about one batch per worker)."""
    return max(sizes.warmup_steps, workers + 2)


def _loader(dataset: Any, collate: Any, sizes: TrainerSizes, workers: int, batches: int) -> DataLoader:
    """The trainer's DataLoader settings, over enough random rows for ``batches`` batches."""
    sampler = RandomSampler(dataset, num_samples=batches * sizes.batch_size, generator=torch.Generator().manual_seed(0))
    return DataLoader(
        dataset,
        batch_size=sizes.batch_size,
        sampler=sampler,
        drop_last=True,
        num_workers=workers,
        collate_fn=collate,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,
    )


def resident_views(
    rows: datasets.Dataset, recipes: list, sizes: TrainerSizes, device: torch.device
) -> list[dict[str, Any]]:
    """A few batches of views made once on the device (the batched path), kept there."""
    data = ImageRowsDataset(rows, seed=0, max_short_side=lossless_short_side(recipes))
    loader = _loader(data, ImageCollator(), sizes, workers=0, batches=sizes.resident_batches)
    return [views_for_batch(batch, recipes, device, channels_last=True) for batch in loader]


def _feed(
    name: str,
    rows: datasets.Dataset,
    recipes: list,
    model: Any,
    sizes: TrainerSizes,
    accelerator: Accelerator,
    workers: int,
    resident: list[dict[str, Any]],
) -> tuple[Any, Any]:
    """The batches of one feed and the step that turns them into views (``None``: they are)."""
    batches = loader_warmup(sizes, workers) + sizes.max_steps + 2
    if name == "resident":
        return itertools.cycle(resident), None
    if name == "pil_workers":
        views = accelerator.unwrap_model(model).method.view_transforms(sizes.image_size)
        data = ViewDataset(rows, rela_views=None, ssl_views=views, phase=PHASE_SSL, seed=0)
        return accelerator.prepare(_loader(data, ViewCollator(channels_last=True), sizes, workers, batches)), None
    data = ImageRowsDataset(rows, seed=0, max_short_side=lossless_short_side(recipes))
    loader = accelerator.prepare(_loader(data, ImageCollator(), sizes, workers, batches))
    device = accelerator.device
    return loader, lambda batch: views_for_batch(batch, recipes, device, channels_last=True)


def run_trainer(sizes: TrainerSizes, workers: int, deadline: float) -> tuple[dict[str, Any], list]:
    """Images/s of each feed, the ratios to the resident views; the resident views (for compile)."""
    fresh_accelerate()
    accelerator = Accelerator(mixed_precision="bf16")
    device = accelerator.device
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # this part's peak, not the targets part's
    rows = photo_crops(imagenet_photos(), sizes.rows, sizes.crop_sides, seed=1)
    recipes = method_view_recipes(sizes.method, sizes.image_size)
    model, optimizer = prepared_student(accelerator, sizes)
    resident = resident_views(rows, recipes, sizes, device)
    feeds: dict[str, Any] = {}
    for name in ("resident", "pil_workers", "gpu_data_path"):
        batches, to_views = _feed(name, rows, recipes, model, sizes, accelerator, workers, resident)
        warmup = sizes.warmup_steps if name == "resident" else loader_warmup(sizes, workers)
        window_end = min(deadline, time.perf_counter() + sizes.window_s)
        feeds[name] = timed_steps(
            accelerator,
            model,
            optimizer,
            iter(batches),
            batch_size=sizes.batch_size,
            warmup_steps=warmup,
            max_steps=sizes.max_steps,
            deadline=window_end,
            to_views=to_views,
        )
        del batches  # a loader's workers end with its iterator
    limit = feeds["resident"]["images_per_s"]
    result = {
        "backbone": sizes.backbone,
        "method": sizes.method,
        "image_size": sizes.image_size,
        "batch_size": sizes.batch_size,
        "mixed_precision": "bf16",
        "channels_last": True,
        "num_workers": workers,
        "rows": sizes.rows,
        "crop_sides": list(sizes.crop_sides),
        "feeds": feeds,
        "ratio_pil_workers_to_resident": round(feeds["pil_workers"]["images_per_s"] / limit, 3),
        "ratio_gpu_data_path_to_resident": round(feeds["gpu_data_path"]["images_per_s"] / limit, 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 1) if device.type == "cuda" else None,
    }
    del model, optimizer
    return result, resident


def run_compile(
    sizes: TrainerSizes, resident: list[dict[str, Any]], eager: dict[str, Any], deadline: float
) -> dict[str, Any]:
    """(iii) again with the model compiled (``dynamo_backend``, as ``--torch_compile`` does).

    Args:
        resident: the trainer part's resident views.
        eager: the trainer part's (iii) figures, measured in this process.
    """
    fresh_accelerate()
    accelerator = Accelerator(mixed_precision="bf16", dynamo_backend=sizes.compile_backend)
    model, optimizer = prepared_student(accelerator, sizes)
    batches = itertools.cycle(resident)
    synchronize(accelerator.device)
    start = time.perf_counter()
    first = timed_steps(
        accelerator,
        model,
        optimizer,
        batches,
        batch_size=sizes.batch_size,
        warmup_steps=3,
        max_steps=1,
        deadline=deadline,
    )  # compiles (and recompiles)
    compile_s = time.perf_counter() - start
    compiled = timed_steps(
        accelerator,
        model,
        optimizer,
        batches,
        batch_size=sizes.batch_size,
        warmup_steps=sizes.warmup_steps,
        max_steps=sizes.max_steps,
        deadline=min(deadline, time.perf_counter() + sizes.window_s),
    )
    eager_step_s = sizes.batch_size / eager["images_per_s"]
    compiled_step_s = sizes.batch_size / compiled["images_per_s"]
    overhead_s = compile_s - 4 * eager_step_s  # the first steps' cost beyond eager steps
    saved_per_step = eager_step_s - compiled_step_s
    breakeven = overhead_s / saved_per_step if saved_per_step > 0 else None
    return {
        "backend": sizes.compile_backend,
        "first_steps_seconds": round(compile_s, 1),
        "first_steps": first["warmup_steps"] + first["timed_steps"],
        "compiled": compiled,
        "eager_images_per_s": eager["images_per_s"],
        "speedup": round(compiled["images_per_s"] / eager["images_per_s"], 3),
        "breakeven_steps": None if breakeven is None else max(0, round(breakeven)),
        "breakeven_minutes": None if breakeven is None else round(max(0.0, breakeven) * compiled_step_s / 60, 1),
        "pays": breakeven is not None and compiled["images_per_s"] >= 1.05 * eager["images_per_s"],
    }
