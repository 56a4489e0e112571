"""The sizes and time caps of the GPU check: the real run (one H100/H200) and the CPU smoke run.

The smoke profile runs every code path of the real one at toy sizes (``test_resnet`` for the
ResNet-50 and ResNet-18, a few dozen images, a couple of steps), so the tests catch a broken check
before a GPU session spends its minutes on it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "IMAGENET_TRAIN_IMAGES",
    "PART_NAMES",
    "Profile",
    "RelaVsByolSizes",
    "TargetsSizes",
    "TrainerSizes",
    "gpu_profile",
    "smoke_profile",
    "usable_cores",
]

#: Images in the ImageNet-1k training split: what the targets projection is for.
IMAGENET_TRAIN_IMAGES = 1_281_167
#: The parts, in the order they run (compile last: the one most likely to overrun its cap).
PART_NAMES = ("targets", "trainer", "rela_vs_byol", "compile")


@dataclass(frozen=True)
class TargetsSizes:
    """(a) ``add_rela_targets`` against a raw timm loop, over real-photo crops."""

    prior: str  # a timm architecture, randomly initialised (no ImageNet weights offline)
    image_size: int
    num_images: int
    k: int  # target width; the per-image cost does not depend on it
    batch_size: int
    repeats: int  # interleaved repeats of each variant (median reported)
    crop_sides: tuple[int, int]  # the crops' side lengths, like ImageNet's photos on the GPU


@dataclass(frozen=True)
class TrainerSizes:
    """(b) one BYOL training step, fed three ways, and ``torch.compile`` on the resident views."""

    backbone: str
    image_size: int
    batch_size: int
    rows: int  # distinct real-photo crops the loaders read
    warmup_steps: int  # before the timed window; loaders use max(this, workers + 2)
    window_s: float  # timed window of each variant
    max_steps: int  # timed steps at most (the smoke run's couple of steps)
    resident_batches: int  # batches of views kept on the device for (iii)
    compile_backend: str  # inductor on the GPU; eager (dynamo only, fast) in the smoke run
    crop_sides: tuple[int, int]
    method: str = "byol"


@dataclass(frozen=True)
class RelaVsByolSizes:
    """(c) the grids' 32 px setup (acceleration_gpu.yaml) on full Fashion-MNIST, same steps."""

    backbone: str
    cifar_stem: bool
    image_size: int
    batch_size: int
    steps: int
    train_limit: int | None  # None: all 60,000
    test_limit: int | None  # None: all 10,000
    prior_kind: str  # efficientnet_lite0 (ImageNet) or random_test_resnet (assets.prior_folder)
    prior_image_size: int  # the quick grid's 64 px: 224 px costs ~12x more CPU preprocessing
    prior_batch_size: int
    knn_batch_size: int
    target_dim: int | None = None  # None: min(student width, prior width), 512 for ResNet-18
    mixed_precision: str = "bf16"
    view_pipeline: str = "pil"  # the grids' views
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    momentum: float = 0.99
    seed: int = 0


@dataclass(frozen=True)
class Profile:
    """Everything the check's size depends on; recorded in ``results.json``."""

    name: str  # "gpu" or "smoke"
    num_workers: int  # DataLoader workers: cores - 2 on the GPU machine
    budget_s: float  # the whole check
    caps_s: dict[str, float] = field(default_factory=dict)  # per part (hard caps)
    targets: TargetsSizes | None = None
    trainer: TrainerSizes | None = None
    rela_vs_byol: RelaVsByolSizes | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for the results."""
        return dataclasses.asdict(self)


def usable_cores() -> int:
    """CPU cores this process may use (the affinity mask, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def gpu_profile(cores: int | None = None) -> Profile:
    """One H100/H200 with 16 cores: about 8 minutes in all, each part under its cap."""
    cores = usable_cores() if cores is None else cores
    return Profile(
        name="gpu",
        num_workers=max(1, cores - 2),
        budget_s=480.0,
        caps_s={"targets": 75.0, "trainer": 110.0, "rela_vs_byol": 165.0, "compile": 120.0},
        targets=TargetsSizes(
            prior="resnet50",
            image_size=224,
            num_images=2048,
            k=256,
            batch_size=256,
            repeats=2,
            crop_sides=(256, 512),
        ),
        trainer=TrainerSizes(
            backbone="resnet50",
            image_size=224,
            batch_size=256,
            rows=1024,
            warmup_steps=8,
            window_s=15.0,
            max_steps=10_000,
            resident_batches=4,
            compile_backend="inductor",
            crop_sides=(256, 512),
        ),
        rela_vs_byol=RelaVsByolSizes(
            backbone="resnet18",
            cifar_stem=True,
            image_size=32,
            batch_size=128,
            steps=1000,
            train_limit=None,
            test_limit=None,
            prior_kind="efficientnet_lite0",
            prior_image_size=64,
            prior_batch_size=512,
            knn_batch_size=1024,
        ),
    )


def smoke_profile() -> Profile:
    """The same code paths on the CPU at toy sizes (tests/test_gpu_check.py runs it)."""
    return Profile(
        name="smoke",
        num_workers=1,  # one worker: the fork and pickling paths run too
        budget_s=600.0,
        caps_s={"targets": 120.0, "trainer": 150.0, "rela_vs_byol": 180.0, "compile": 90.0},
        targets=TargetsSizes(
            prior="test_resnet",
            image_size=64,
            num_images=24,
            k=8,
            batch_size=8,
            repeats=1,
            crop_sides=(48, 96),
        ),
        trainer=TrainerSizes(
            backbone="test_resnet",
            image_size=64,
            batch_size=4,
            rows=16,
            warmup_steps=1,
            window_s=30.0,
            max_steps=2,
            resident_batches=2,
            compile_backend="eager",
            crop_sides=(48, 96),
        ),
        rela_vs_byol=RelaVsByolSizes(
            backbone="test_resnet",
            cifar_stem=True,
            image_size=32,
            batch_size=8,
            steps=2,
            train_limit=64,
            test_limit=32,
            prior_kind="random_test_resnet",
            prior_image_size=32,
            prior_batch_size=32,
            knn_batch_size=64,
            target_dim=16,
        ),
    )
