"""Augmented views of a ``datasets.Dataset``, seeded per sample, for the training loop.

- :class:`ViewDataset`: a map-style dataset of augmented views (+ ReLA target, + label) whose
  augmentations are *seeded per sample* from ``(seed, epoch, index)``. The views therefore do not
  depend on DataLoader workers, prefetching, the number of processes or where a run was resumed:
  a resumed run sees exactly the images an uninterrupted one would have seen.
- :class:`ViewCollator`: the batch of views (optionally channels-last).
- :func:`sample_seed`, :func:`forward_seed`: the seeds of a sample's augmentations and of a
  micro-batch's forward pass (dropout, stochastic depth), so a resumed run repeats both.

ReLA: arXiv:2405.14669; the methods' views: rela_hf.methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from rela_hf.seeds import forward_seed, sample_seed
from rela_hf.switch import PHASE_RELA, PHASE_SSL

if TYPE_CHECKING:
    import datasets

__all__ = ["ViewCollator", "ViewDataset", "forward_seed", "sample_seed"]


class ViewDataset(Dataset):
    """Augmented views of every image, with its ReLA target and label when present.

    Items are dicts ``{"views": [view, ...][, "targets"][, "labels"]}``. ``phase`` picks the view
    pipelines: two ReLA views (both from ``rela_views``) or the SSL method's views (one pipeline
    per view, e.g. BYOL's asymmetric pair or DINO's global and local crops). Each row's
    augmentations are drawn from a generator seeded with :func:`sample_seed` ``(seed, epoch, row)``
    inside :func:`torch.random.fork_rng`, so the global RNG is untouched and the views are the
    same whatever the worker, prefetch depth, process count or resume point.

    DataLoader workers hold *copies* of this object, made when an iterator starts. Set
    :meth:`set_phase` and :meth:`set_epoch` before iterating and use ``persistent_workers=False``
    (the recipe restarts the epoch's iterator at the switch, so the very next batch already has
    the method's views).

    Args:
        dataset: A map-style ``datasets.Dataset``.
        rela_views: The ReLA view transform (PIL -> tensor), applied twice; may be ``None`` for a
            run without a ReLA phase.
        ssl_views: The SSL method's view transforms, one per view (``method.view_transforms``).
        image_column: Column of PIL images.
        target_column: Column of fixed-length float targets (``None``: no targets).
        label_column: Column of integer labels for the online classifier (``None``: none).
        seed: Base seed of the augmentations.
        phase: Initial phase, ``"rela"`` or ``"ssl"``.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        *,
        rela_views: Callable[[Any], Tensor] | None,
        ssl_views: Sequence[Callable[[Any], Tensor]],
        image_column: str = "image",
        target_column: str | None = None,
        label_column: str | None = None,
        seed: int = 0,
        phase: str = PHASE_RELA,
    ) -> None:
        columns = [image_column] + [c for c in (target_column, label_column) if c is not None]
        missing = [c for c in columns if c not in dataset.column_names]
        if missing:
            raise ValueError(f"ViewDataset: columns {missing} are not in the dataset (it has {dataset.column_names}).")
        array_columns = [c for c in (target_column, label_column) if c is not None]
        # Targets and labels as numpy arrays (one Arrow read per batch); images stay PIL.
        self.data = dataset.select_columns(columns).with_format("numpy", columns=array_columns, output_all_columns=True)
        self.rela_views = rela_views
        if not ssl_views:
            raise ValueError("ViewDataset: ssl_views needs at least one view pipeline.")
        self.ssl_views = list(ssl_views)
        self.image_column = image_column
        self.target_column = target_column
        self.label_column = label_column
        self.seed = int(seed)
        self.epoch = 0
        self.phase = PHASE_RELA
        self.set_phase(phase)

    def set_phase(self, phase: str) -> None:
        """Choose the views: ``"rela"`` or ``"ssl"`` (takes effect for new iterators)."""
        if phase not in (PHASE_RELA, PHASE_SSL):
            raise ValueError(f"ViewDataset: unknown phase {phase!r}.")
        if phase == PHASE_RELA and self.rela_views is None:
            raise ValueError("ViewDataset: the ReLA phase needs rela_views.")
        self.phase = phase

    def set_epoch(self, epoch: int) -> None:
        """Epoch that seeds the augmentations (Accelerate's loaders call this too)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def _views(self, image: Any, index: int) -> list[Tensor]:
        # fork_rng restores the CPU generator afterwards; seeding only the CPU generator (not
        # torch.manual_seed) leaves the CUDA generators of the training process alone.
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(sample_seed(self.seed, self.epoch, index))
            if self.phase == PHASE_RELA and self.rela_views is not None:  # set_phase checked it
                return [self.rela_views(image), self.rela_views(image)]
            return [view(image) for view in self.ssl_views]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """A batch of items with one Arrow read (``DataLoader`` uses it when present)."""
        indices = [int(i) for i in indices]
        try:
            rows = self.data[indices]
        except (OSError, SyntaxError, ValueError) as error:  # what PIL raises for a bad file
            raise self._unreadable_row_error(indices) from error
        items = []
        for position, index in enumerate(indices):
            item: dict[str, Any] = {"views": self._views(rows[self.image_column][position], index)}
            if self.target_column is not None:
                item["targets"] = torch.from_numpy(np.asarray(rows[self.target_column][position]))
            if self.label_column is not None:
                item["labels"] = int(rows[self.label_column][position])
            items.append(item)
        return items

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.__getitems__([index])[0]

    def _unreadable_row_error(self, indices: Sequence[int]) -> ValueError:
        """Name the first row of a batch whose image does not decode (the trainer's check of
        every image, ``--verify_images``, was turned off)."""
        for index in indices:
            try:
                self.data[index]
            except (OSError, SyntaxError, ValueError) as error:
                return ValueError(
                    f"Row {index} of the training data: its {self.image_column!r} image cannot be "
                    f"decoded ({type(error).__name__}: {error}). The run stops here rather than skip "
                    "it silently. Rerun with --verify_images true to list every such row before "
                    "training, remove them (e.g. dataset.filter) and resume."
                )
        return ValueError(f"Rows {list(indices)} of the training data cannot be read.")


class ViewCollator:
    """``default_collate``, then optionally channels-last views (a class so workers can pickle it).

    Converting on the CPU side means the host-to-device copy already has the layout that
    channels-last convolutions want (``Tensor.to`` preserves it).
    """

    def __init__(self, channels_last: bool = False) -> None:
        self.channels_last = channels_last

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = default_collate(items)  # "views": one (B, C, H, W) tensor per view
        if self.channels_last:
            batch["views"] = [view.contiguous(memory_format=torch.channels_last) for view in batch["views"]]
        return batch
