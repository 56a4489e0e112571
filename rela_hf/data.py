"""Training data: loading image datasets, and the per-epoch data-ratio sampler.

- :func:`load_image_dataset` gives a :class:`datasets.Dataset` with a PIL image column from a
  Hub dataset id, a local ``save_to_disk`` folder or a local image folder, with specific errors
  (missing split, missing image column, unreachable Hub).
- :class:`DataRatioSampler` is ReLA's training budget (arXiv:2405.14669, "data ratio"): each
  epoch draws a fresh uniform random subset of ``floor(r N)`` examples without replacement, the
  number of epochs stays fixed, so ``r`` is the fraction of the full step budget. The BYOL
  baselines use the same mechanism. The subset depends only on ``(seed, epoch)``, so every
  process of a distributed run draws the same one (the official code draws it with Python's
  global ``random``, which only agrees across processes if they were seeded alike).

Examples:
    >>> sampler = DataRatioSampler(num_samples=10, ratio=0.5, seed=0)
    >>> sampler.set_epoch(3)
    >>> indices = list(sampler)
    >>> len(indices), len(set(indices))
    (5, 5)
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from huggingface_hub import HfApi
from torch.utils.data import Sampler

from rela_hf._deprecation import Moved, moved_names

__all__ = ["DataRatioSampler", "load_image_dataset"]

_SAVED_DATASET_MARKERS = ("dataset_info.json", "state.json")  # Dataset.save_to_disk
_SAVED_DATASET_DICT_MARKER = "dataset_dict.json"  # DatasetDict.save_to_disk


def _is_saved_dataset(path: Path) -> bool:
    has_dataset = all((path / marker).is_file() for marker in _SAVED_DATASET_MARKERS)
    return has_dataset or (path / _SAVED_DATASET_DICT_MARKER).is_file()


def _missing_split_error(name: str, split: str, available: list[str]) -> ValueError:
    return ValueError(
        f"Dataset {name!r} has no split {split!r}; available splits: {available}. Pass one of them as split=."
    )


def _load_saved(path: Path, split: str, streaming: bool) -> datasets.Dataset:
    try:
        loaded = datasets.load_from_disk(str(path))
    except IndexError as error:  # datasets cannot concatenate the zero tables of an empty save
        raise ValueError(f"{path} holds an empty dataset (0 rows): there is nothing to load.") from error
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise _missing_split_error(str(path), split, list(loaded))
        dataset = loaded[split]
    else:
        saved_split = None if loaded.split is None else str(loaded.split).split("[")[0]
        if saved_split is not None and saved_split != split:
            raise _missing_split_error(str(path), split, [saved_split])
        dataset = loaded
    return dataset.to_iterable_dataset() if streaming else dataset


def _load_image_folder(path: Path, split: str, streaming: bool) -> datasets.Dataset:
    builder = datasets.load_dataset_builder("imagefolder", data_dir=str(path))
    available = [str(name) for name in (builder.config.data_files or {})]
    if split not in available:
        raise _missing_split_error(str(path), split, available)
    data_dir = str(path)
    return datasets.load_dataset("imagefolder", data_dir=data_dir, split=split, streaming=streaming)


def _unreachable_hub_message(name: str, error: Exception) -> str:
    if datasets.config.HF_HUB_OFFLINE:
        cause = "offline mode is on (HF_HUB_OFFLINE) and no cached copy exists"
        cache_hint = ""
    else:
        cause = f"the Hub ({datasets.config.HF_ENDPOINT}) is unreachable from here"
        cache_hint = "; or set HF_HUB_OFFLINE=1 to use the cache of an earlier download"
    return (
        f"Could not load the dataset {name!r}: {cause} ({error}), and there is no local "
        "directory of that name either. Pass a local folder instead: a Dataset.save_to_disk "
        "folder or an image folder "
        f"(split/class/image.png){cache_hint}."
    )


def _load_from_hub(
    name: str, split: str, config_name: str | None, revision: str | None, streaming: bool
) -> datasets.Dataset:
    try:
        return datasets.load_dataset(name, config_name, split=split, revision=revision, streaming=streaming)
    except ConnectionError as error:
        raise ConnectionError(_unreachable_hub_message(name, error)) from error
    except ValueError as error:
        if "Unknown split" not in str(error):
            raise
        available = datasets.get_dataset_split_names(name, config_name, revision=revision)
        raise _missing_split_error(name, split, available) from error


def _check_image_column(dataset: datasets.Dataset, name: str, image_column: str) -> None:
    features = dataset.features
    if features is None:  # a streaming dataset whose schema is only known once read
        return
    if image_column not in features:
        raise ValueError(
            f"Dataset {name!r} has no image column {image_column!r}; its columns are "
            f"{list(features)}. Pass the right one as image_column=."
        )
    if not isinstance(features[image_column], datasets.Image):
        raise ValueError(  # noqa: TRY004 - the data is wrong, not the argument's type
            f"Column {image_column!r} of {name!r} holds {features[image_column]!r}, not images. "
            f"Decode it first, e.g. dataset.cast_column({image_column!r}, datasets.Image())."
        )


def load_image_dataset(
    name_or_path: str,
    *,
    split: str = "train",
    config_name: str | None = None,
    revision: str | None = None,
    image_column: str | None = "image",
    streaming: bool = False,
) -> datasets.Dataset:
    """Load one split of an image dataset from the Hub or from a local folder.

    Sources, in the order they are recognised:

    1. a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``
       (read with ``datasets.load_from_disk``; a ``DatasetDict`` gives its ``split``);
    2. any other directory: an image folder (``datasets.load_dataset("imagefolder",
       data_dir=...)``; ``split/class/image.png`` or just ``class/image.png`` for "train");
    3. otherwise a Hub dataset id (``load_dataset(name, config_name, split=, revision=)``).

    Args:
        name_or_path: Hub dataset id or local directory.
        split: The split to return (a slice such as ``"train[:10%]"`` works for Hub ids).
        config_name: Hub dataset configuration (subset) name.
        revision: Hub revision (branch, tag or commit) to pin; Hub datasets only.
        image_column: Column that holds the images; checked to exist and to be an
            ``Image`` feature (``None``: a dataset without images, e.g. targets only).
        streaming: Return an ``IterableDataset`` instead of downloading/mapping everything.

    Returns:
        The split as a ``datasets.Dataset`` (``IterableDataset`` when streaming).

    Raises:
        ValueError: Missing split (the available ones are listed), missing or non-image
            column (the columns are listed), or Hub-only options given for a local folder.
        ConnectionError: The Hub is unreachable (with what to do offline).

    Examples:
        >>> import datasets, tempfile
        >>> from PIL import Image
        >>> folder = tempfile.mkdtemp()
        >>> images = [Image.new("RGB", (8, 8)) for _ in range(3)]
        >>> datasets.Dataset.from_dict({"image": images}).save_to_disk(folder)
        >>> load_image_dataset(folder).num_rows
        3
    """
    path = Path(name_or_path).expanduser()
    if not path.exists() and name_or_path.startswith((".", "~", os.sep)):
        raise FileNotFoundError(
            f"No dataset directory {str(path.resolve())!r}. Pass an existing save_to_disk or "
            "image folder, or a Hub dataset id such as 'namespace/name'."
        )
    if path.is_file():
        raise ValueError(
            f"{name_or_path!r} is a file; load_image_dataset takes a Hub dataset id or a "
            "directory (a save_to_disk folder or an image folder)."
        )
    if path.is_dir():
        if revision is not None or config_name is not None:
            raise ValueError(
                f"{name_or_path!r} is a local folder: revision= and config_name= apply to Hub datasets only."
            )
        if _is_saved_dataset(path):
            dataset = _load_saved(path, split, streaming)
        else:
            dataset = _load_image_folder(path, split, streaming)
    else:
        dataset = _load_from_hub(name_or_path, split, config_name, revision, streaming)
    if image_column is not None:
        _check_image_column(dataset, name_or_path, image_column)
    return dataset


def _subset_seed(seed: int, epoch: int) -> int:
    # SeedSequence mixes (seed, epoch) into a well-spread 63-bit seed: (0, 1) and (1, 0) differ
    state = np.random.SeedSequence([seed, epoch]).generate_state(1, dtype=np.uint64)[0]
    return int(state) >> 1


class DataRatioSampler(Sampler[int]):
    """A fresh uniform random subset of ``floor(ratio * N)`` indices every epoch.

    ReLA's data-ratio budget: the subset is drawn without replacement from all ``N`` examples,
    anew each epoch, from a ``torch.Generator`` seeded by ``(seed, epoch)`` only. Every process
    therefore draws the same subset in the same order; Accelerate's prepared DataLoader then
    hands each process its own share of the batches. Accelerate calls :meth:`set_epoch` at the
    start of every epoch (``DataLoaderShard.__iter__``); with a plain DataLoader, call it
    yourself (like ``DistributedSampler``), otherwise every epoch sees the same subset.

    Args:
        num_samples: Dataset size ``N`` (>= 1).
        ratio: Fraction ``r`` in ``(0, 1]`` of the examples used per epoch.
        seed: Non-negative base seed, shared by all processes.
        shuffle: Random order (default). With ``shuffle=False`` the (still random, when
            ``ratio < 1``) subset comes in ascending index order; ``ratio=1`` then gives
            ``0..N-1``.

    Examples:
        >>> sampler = DataRatioSampler(100, ratio=0.1, seed=1)
        >>> len(sampler)
        10
        >>> first = list(sampler); sampler.set_epoch(1)
        >>> first != list(sampler)
        True
    """

    def __init__(self, num_samples: int, ratio: float = 1.0, seed: int = 0, shuffle: bool = True) -> None:
        if num_samples < 1:
            raise ValueError(f"DataRatioSampler: num_samples must be >= 1, got {num_samples}.")
        if not 0.0 < ratio <= 1.0:
            raise ValueError(
                f"DataRatioSampler: ratio must be in (0, 1] (the fraction of the dataset used per epoch), got {ratio}."
            )
        if seed < 0:
            raise ValueError(f"DataRatioSampler: seed must be >= 0, got {seed}.")
        self.num_samples = int(num_samples)
        self.ratio = float(ratio)
        self.seed = int(seed)
        self.shuffle = shuffle
        self.epoch = 0
        # round() first: 0.29 * 100 is 28.999999999999996 in binary floating point
        self.subset_size = max(1, math.floor(round(self.ratio * self.num_samples, 9)))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose subset :meth:`__iter__` yields."""
        if epoch < 0:
            raise ValueError(f"DataRatioSampler: epoch must be >= 0, got {epoch}.")
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(_subset_seed(self.seed, self.epoch))
        subset = torch.randperm(self.num_samples, generator=generator)[: self.subset_size]
        if not self.shuffle:
            subset = subset.sort().values
        return iter(subset.tolist())

    def __len__(self) -> int:
        return self.subset_size

    def state_dict(self) -> dict[str, Any]:
        """Plain Python values (loadable with ``torch.load(weights_only=True)``)."""
        return {
            "epoch": self.epoch,
            "seed": self.seed,
            "ratio": self.ratio,
            "num_samples": self.num_samples,
            "shuffle": self.shuffle,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the epoch; refuse a state drawn with another seed, ratio or dataset size."""
        for key in ("seed", "ratio", "num_samples"):
            if key in state and state[key] != getattr(self, key):
                raise ValueError(
                    f"DataRatioSampler: the checkpoint was drawn with {key}={state[key]!r}, this "
                    f"run has {key}={getattr(self, key)!r}; resume with the same data, ratio "
                    "and seed."
                )
        self.set_epoch(int(state["epoch"]))

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_samples={self.num_samples}, ratio={self.ratio}, "
            f"seed={self.seed}, epoch={self.epoch}, subset_size={self.subset_size})"
        )


def dataset_commit(repo_id: str, revision: str | None = None) -> str:
    """The commit sha a Hub dataset's ``revision`` (branch, tag; default ``main``) points at now.

    Reading a dataset at its sha, and recording that sha, makes the provenance of whatever is
    derived from it (targets, evaluation results) exact.
    """
    info = HfApi().dataset_info(repo_id, revision=revision)
    if not info.sha:
        raise ConnectionError(f"The Hub did not report a commit for dataset {repo_id!r} at {revision!r}.")
    return info.sha


__getattr__ = moved_names(
    __name__,
    {
        "find_unreadable_images": Moved(
            "rela_hf.image_checks:find_unreadable_images",
            "rela_hf.image_checks.check_images is the full check (parallel, recorded, sampled).",
        ),
    },
)
