"""(c) ReLA vs BYOL, the grids' 32 px setup, full Fashion-MNIST, same steps, via ``ReLATrainer``.

The setup is ``benchmarks/configs/acceleration_gpu.yaml``'s (ResNet-18 with the CIFAR stem at full
width, 32 px, batch 128, AdamW 1e-3 / wd 0.01, constant lr, EMA 0.99, channels-last, PIL views)
for a short budget: the same optimizer steps for both runs; ReLA's targets come from the ImageNet
EfficientNet-Lite0 at the quick grid's 64 px, computed by the trainer itself (``prior=``), whose
wall time therefore includes them. Precision is bf16 (the grid config says fp16: bf16 needs no
loss scaling on Hopper). Each export is scored by the kNN protocol (k=200, t=0.1) on the test
split with the training split as the bank, beside the floors every table shows: raw pixels, the
randomly initialised student, the prior's own features.

Far too short to test the paper's claim (BYOL is still early; the adaptive switch cannot fire
before ~528 steps): it checks that both runs train at GPU speed end to end and says what they reach.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch

from gpu_check_parts.assets import fashion_mnist_folder, prior_folder
from gpu_check_parts.measure import fresh_accelerate
from gpu_check_parts.profiles import RelaVsByolSizes
from rela_hf.backbones import create_backbone
from rela_hf.evaluation import encoder_data_config, extract_features, knn_accuracy, load_encoder
from rela_hf.preprocessing import eval_transform
from rela_hf.training import ReLATrainer, ReLATrainingArguments

__all__ = ["run_rela_vs_byol"]


def trainer_arguments(
    sizes: RelaVsByolSizes,
    data: Path,
    prior: Path,
    output_dir: Path,
    *,
    use_rela: bool,
    workers: int,
) -> ReLATrainingArguments:
    """The grid's options for one run; only ``use_rela`` (and the prior) differ."""
    rela = (
        {
            "prior": str(prior),
            "prior_image_size": sizes.prior_image_size,
            "prior_batch_size": sizes.prior_batch_size,
            "target_dim": sizes.target_dim,
        }
        if use_rela
        else {}
    )
    return ReLATrainingArguments(
        dataset_name=str(data),
        train_split="train",
        label_column="label",
        output_dir=str(output_dir),
        backbone=sizes.backbone,
        cifar_stem=sizes.cifar_stem,
        image_size=sizes.image_size,
        method="byol",
        use_rela=use_rela,
        max_train_steps=sizes.steps,
        per_device_train_batch_size=sizes.batch_size,
        learning_rate=sizes.learning_rate,
        weight_decay=sizes.weight_decay,
        lr_scheduler_type="constant",
        momentum=sizes.momentum,
        momentum_schedule="constant",
        mixed_precision=sizes.mixed_precision,
        channels_last=True,
        view_pipeline=sizes.view_pipeline,
        dataloader_num_workers=workers,
        seed=sizes.seed,
        report_to="none",
        logging_steps=50,
        checkpointing_steps=0,
        checkpoints_total_limit=1,
        verify_images=False,
        eval_steps=0,
        **rela,
    )


def train_once(args: ReLATrainingArguments) -> dict[str, Any]:
    """One run from scratch; its summary's figures and the wall time (setup, targets, export)."""
    shutil.rmtree(args.output_dir, ignore_errors=True)
    fresh_accelerate()
    start = time.perf_counter()
    summary = ReLATrainer(args).train()
    wall = time.perf_counter() - start
    return {
        "steps": summary.steps,
        "images_seen": summary.images_seen,
        "switch_step": summary.switch_step,
        "phase_at_end": summary.phase,
        "target_dim": summary.target_dim,
        "loop_seconds": round(summary.wall_clock_seconds or 0.0, 1),
        "wall_seconds": round(wall, 1),
        "final_metrics": summary.final_metrics or {},
        "output_dir": args.output_dir,
    }


def knn_percent(
    encoder: torch.nn.Module,
    data_config: dict,
    train: Any,
    test: Any,
    sizes: RelaVsByolSizes,
    workers: int,
    device: torch.device,
) -> float:
    """kNN top-1 (%) of frozen features: the training split is the bank, the test split queries."""
    transform = eval_transform(data_config)
    options = {"batch_size": sizes.knn_batch_size, "num_workers": workers, "device": device}
    bank, bank_labels = extract_features(encoder, train, transform, **options)
    queries, query_labels = extract_features(encoder, test, transform, **options)
    return round(100 * knn_accuracy(bank.to(device), bank_labels, queries.to(device), query_labels), 2)


def raw_pixel_knn(train: Any, test: Any, device: torch.device) -> float:
    def pixels(split: Any) -> tuple[torch.Tensor, torch.Tensor]:
        images = np.stack([np.asarray(image, dtype=np.float32) for image in split["image"]])
        return torch.from_numpy(images.reshape(len(images), -1) / 255), torch.tensor(split["label"])

    (bank, bank_labels), (queries, query_labels) = pixels(train), pixels(test)
    return round(100 * knn_accuracy(bank.to(device), bank_labels, queries.to(device), query_labels), 2)


def floors(
    sizes: RelaVsByolSizes,
    prior: Path,
    byol_config: dict,
    splits: tuple[Any, Any],
    workers: int,
    device: torch.device,
    deadline: float,
) -> dict[str, float | str]:
    """Raw pixels, the random student, the prior's features; each skipped past the deadline."""
    results: dict[str, float | str] = {}
    train, test = splits
    results["raw_pixels"] = raw_pixel_knn(train, test, device)
    torch.manual_seed(sizes.seed)
    random_student = create_backbone(sizes.backbone, cifar_stem=sizes.cifar_stem)
    encoders = {
        "random_student": (random_student, byol_config),
        "prior_features": (load_encoder(prior), None),
    }
    for name, (encoder, config) in encoders.items():
        if time.perf_counter() > deadline:
            results[name] = "skipped: the part's time was up"
            continue
        config = config or encoder_data_config(encoder, image_size=sizes.prior_image_size)
        results[name] = knn_percent(encoder, config, train, test, sizes, workers, device)
    return results


def run_rela_vs_byol(
    sizes: RelaVsByolSizes, workers: int, work_dir: Path, device: torch.device, deadline: float
) -> dict[str, Any]:
    """Both runs, then the kNN of each export and the floors."""
    data = fashion_mnist_folder(work_dir, sizes.train_limit, sizes.test_limit)
    prior = prior_folder(sizes.prior_kind, work_dir)
    runs = {}
    for name, use_rela in (("byol", False), ("rela", True)):
        args = trainer_arguments(sizes, data, prior, work_dir / "runs" / name, use_rela=use_rela, workers=workers)
        runs[name] = train_once(args)
    splits = datasets.load_from_disk(str(data))
    train, test = splits["train"], splits["test"]
    byol_config = None
    for run in runs.values():
        encoder = load_encoder(run["output_dir"])
        config = encoder_data_config(encoder)
        byol_config = byol_config or config
        run["knn_percent"] = knn_percent(encoder, config, train, test, sizes, workers, device)
    return {
        "setup": {
            "backbone": sizes.backbone,
            "cifar_stem": sizes.cifar_stem,
            "image_size": sizes.image_size,
            "batch_size": sizes.batch_size,
            "steps": sizes.steps,
            "train_images": len(train),
            "test_images": len(test),
            "mixed_precision": sizes.mixed_precision,
            "view_pipeline": sizes.view_pipeline,
            "num_workers": workers,
            "prior": sizes.prior_kind,
            "prior_image_size": sizes.prior_image_size,
        },
        "runs": runs,
        "floors_knn_percent": floors(sizes, prior, byol_config, (train, test), workers, device, deadline),
    }
