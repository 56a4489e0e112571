"""The check's real data and prior: from ``.gpu_check/`` (``--prepare``) or the local installs.

The GPU machine reaches no registry, so ``--prepare`` copies what the check reads into
``.gpu_check/`` (carried with the working tree). Here, without it, the same files come from where
the offline assets are installed (Debian's Fashion-MNIST, the foolbox wheel's ImageNet photos, the
PyPI EfficientNet-Lite0), so the smoke run needs no preparation.

- :func:`use_prepared_fashion_mnist`: point ``rela_hf.assets`` at the carried Fashion-MNIST files;
- :func:`imagenet_photos`, :func:`photo_crops`: real ImageNet-val photos, cut into distinct crops
  of ImageNet-like sizes, as a ``datasets.Dataset`` of JPEG bytes (what a Hub dataset holds);
- :func:`fashion_mnist_folder`: train + test saved with ``save_to_disk``, for ``ReLATrainer``;
- :func:`prior_folder`: the targets' prior as a timm folder (the ImageNet EfficientNet-Lite0 on
  the GPU, a random ``test_resnet`` in the smoke run).
"""

from __future__ import annotations

import io
import os
import random
from collections.abc import Sequence
from pathlib import Path

import datasets
import PIL.Image
import timm
import torch

from rela_hf.assets import fashion_mnist_dataset, foolbox_image_files
from rela_hf.convert import convert_efficientnet_lite0

__all__ = [
    "PREPARED_DIR",
    "REPO",
    "WHEEL_DIR",
    "fashion_mnist_folder",
    "imagenet_photos",
    "photo_crops",
    "prior_folder",
    "use_prepared_fashion_mnist",
]

REPO = Path(__file__).resolve().parents[2]
PREPARED_DIR = REPO / ".gpu_check"
WHEEL_DIR = REPO / ".whl"
FASHION_MNIST_SUBDIR = "fashion-mnist"
PHOTOS_SUBDIR = "imagenet_photos"
PRIOR_SUBDIR = "priors/efficientnet_lite0"


def use_prepared_fashion_mnist(prepared: Path = PREPARED_DIR) -> str:
    """Read Fashion-MNIST from the carried copy when there is one (``$FMNIST_DIR`` wins)."""
    carried = prepared / FASHION_MNIST_SUBDIR
    if "FMNIST_DIR" not in os.environ and (carried / "t10k-images-idx3-ubyte.gz").is_file():
        os.environ["FMNIST_DIR"] = str(carried)
    return os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist")


def imagenet_photos(prepared: Path = PREPARED_DIR) -> list[Path]:
    """The 20 ImageNet-val photos of the foolbox wheel (carried copy first)."""
    carried = sorted((prepared / PHOTOS_SUBDIR).glob("imagenet_*.jpg"))
    return carried or [path for path, _ in foolbox_image_files("imagenet")]


def photo_crops(photos: Sequence[Path], count: int, sides: tuple[int, int], seed: int = 0) -> datasets.Dataset:
    """``count`` distinct crops of the photos as JPEG bytes in an ``image`` column.

    Each crop has a random width and height in ``sides`` (clipped to the photo), a random place
    and a random mirror, so every row is a different real image (duplicated rows would make the
    targets' covariance rank-deficient) of roughly ImageNet's size on the GPU.
    """
    rng = random.Random(seed)
    opened = [PIL.Image.open(path).convert("RGB") for path in photos]
    rows = []
    for index in range(count):
        photo = opened[index % len(opened)]
        width = min(photo.width, rng.randint(*sides))
        height = min(photo.height, rng.randint(*sides))
        left, top = rng.randint(0, photo.width - width), rng.randint(0, photo.height - height)
        crop = photo.crop((left, top, left + width, top + height))
        if rng.random() < 0.5:
            crop = crop.transpose(PIL.Image.Transpose.FLIP_LEFT_RIGHT)
        buffer = io.BytesIO()
        crop.save(buffer, format="JPEG", quality=90)
        rows.append({"bytes": buffer.getvalue(), "path": None})
    features = datasets.Features({"image": datasets.Image()})
    return datasets.Dataset.from_dict({"image": rows}, features=features)


def fashion_mnist_folder(work_dir: Path, train_limit: int | None, test_limit: int | None) -> Path:
    """Fashion-MNIST train + test (``limit``: a fixed random subset) saved with ``save_to_disk``."""
    folder = work_dir / f"fashion_mnist_{train_limit or 'all'}_{test_limit or 'all'}"
    if not (folder / "dataset_dict.json").is_file():
        splits = {
            "train": fashion_mnist_dataset("train", limit=train_limit, seed=0),
            "test": fashion_mnist_dataset("test", limit=test_limit, seed=0),
        }
        datasets.DatasetDict(splits).save_to_disk(str(folder))
    return folder


def prior_folder(kind: str, work_dir: Path, prepared: Path = PREPARED_DIR) -> Path:
    """The targets' prior as a timm folder.

    Args:
        kind: ``"efficientnet_lite0"`` (the ImageNet EfficientNet-Lite0: the carried conversion,
            else converted here from the installed PyPI package) or ``"random_test_resnet"``
            (a randomly initialised ``test_resnet``, seed 0: the smoke run's).
        work_dir: where a prior made here is written.
    """
    if kind == "efficientnet_lite0":
        carried = prepared / PRIOR_SUBDIR
        if (carried / "config.json").is_file():
            return carried
        return convert_efficientnet_lite0(work_dir / "efficientnet_lite0")
    if kind == "random_test_resnet":
        folder = work_dir / "test_resnet_random"
        if not (folder / "config.json").is_file():
            torch.manual_seed(0)
            model = timm.create_model("test_resnet", num_classes=0)
            timm.models.save_for_hf(model, folder, safe_serialization=True)
        return folder
    raise ValueError(f"Unknown prior kind {kind!r}: use efficientnet_lite0 or random_test_resnet.")
