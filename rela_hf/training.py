"""Reusable pieces of the ReLA/SSL training loop (Accelerate), kept out of the recipe.

The recipe ``recipes/byol_rela.py`` reads top to bottom; what it needs that is neither obvious nor
recipe-specific lives here, small and tested:

- :class:`ViewDataset`: a map-style dataset of augmented views (+ ReLA target, + label)
  whose augmentations are *seeded per sample* from ``(seed, epoch, index)``. The views therefore
  do not depend on DataLoader workers, prefetching, the number of processes or where a run was
  resumed: a resumed run sees exactly the images an uninterrupted one would have seen.
- :func:`training_step`: one micro-batch (forward, backward, optimizer step once accumulation is
  complete, EMA update of the method's teacher on that same step). The trainer-overhead benchmark
  times exactly this function.
- :class:`MetricMeans`: per-step and per-logging-window means of the model's detached outputs,
  averaged over accumulation micro-batches and over processes with one collective.
- :func:`step_seed`: a per-optimizer-step seed for the forward pass (stochastic depth, dropout),
  again so that a resumed run reproduces an uninterrupted one.

ReLA: arXiv:2405.14669; the SSL methods: rela_hf.methods.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from rela_hf.switch import PHASE_RELA, PHASE_SSL

if TYPE_CHECKING:
    import datasets
    from accelerate import Accelerator

    from rela_hf.model import ReLAStudent

__all__ = [
    "MetricMeans",
    "TrainingDiverged",
    "ViewCollator",
    "ViewDataset",
    "check_finite_loss",
    "check_finite_weights",
    "forward_seed",
    "sample_seed",
    "training_step",
]

_SEED_MODULUS = 2**63 - 1


def _derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends on every part (stable across Python runs, unlike ``hash``)."""
    digest = hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % _SEED_MODULUS


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Seed of the augmentations of dataset row ``index`` in ``epoch`` (same on every process)."""
    return _derive_seed("views", seed, epoch, index)


def forward_seed(seed: int, epoch: int, batch_index: int, process_index: int) -> int:
    """Seed of the forward pass (dropout, stochastic depth) of one micro-batch on one process.

    It depends on the data position (epoch, per-process batch index) only, so a run resumed at
    any checkpoint draws the same masks as an uninterrupted one; each process gets its own
    stream (independent masks across replicas, as with ``set_seed(device_specific=True)``).
    """
    return _derive_seed("forward", seed, epoch, batch_index, process_index)


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
            raise ValueError(
                f"ViewDataset: columns {missing} are not in the dataset (it has "
                f"{dataset.column_names})."
            )
        array_columns = [c for c in (target_column, label_column) if c is not None]
        # Targets and labels as numpy arrays (one Arrow read per batch); images stay PIL.
        self.data = dataset.select_columns(columns).with_format(
            "numpy", columns=array_columns, output_all_columns=True
        )
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


def training_step(
    accelerator: Accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: dict[str, Tensor],
    *,
    phase: str,
    momentum: float,
    step: int = 0,
    max_grad_norm: float | None = None,
    unwrapped: ReLAStudent | None = None,
) -> dict[str, Tensor]:
    """One micro-batch of ReLA/SSL training under Accelerate.

    Forward and backward run on every micro-batch; inside ``accelerator.accumulate`` the DDP
    gradient all-reduce, ``optimizer.step()`` and ``zero_grad()`` only happen on the micro-batch
    that completes an accumulation cycle (``accelerator.sync_gradients``; the Accelerate optimizer
    wrapper turns them into no-ops otherwise). The EMA update of the method's teacher happens on
    that same micro-batch, *once per optimizer step* (updating it per micro-batch is a recurring
    bug: lightly-ai/lightly-train#968), and on the unwrapped model, whose ``update_teacher`` DDP
    does not expose.

    Args:
        accelerator: The run's accelerator.
        model: The prepared :class:`~rela_hf.model.ReLAStudent` (possibly DDP-wrapped/compiled).
        optimizer: The prepared optimizer.
        batch: ``{"views"[, "targets"][, "labels"]}`` on the device.
        phase: ``"rela"`` or ``"ssl"``.
        momentum: EMA momentum for this optimizer step.
        step: The optimizer step this micro-batch belongs to (the method's schedules).
        max_grad_norm: Clip the gradient norm on optimizer steps (``None``: no clipping).
        unwrapped: ``accelerator.unwrap_model(model)``, computed once by the caller to save
            unwrapping it on every step (done here when ``None``).

    Returns:
        The model's outputs (``loss`` and detached parts), see :meth:`ReLAStudent.forward`.
    """
    with accelerator.accumulate(model):
        out = model(
            batch["views"],
            phase=phase,
            targets=batch.get("targets"),
            labels=batch.get("labels"),
            step=step,
        )
        accelerator.backward(out["loss"])
        if max_grad_norm is not None and accelerator.sync_gradients:
            accelerator.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if accelerator.sync_gradients:
        if unwrapped is None:
            unwrapped = cast("ReLAStudent", accelerator.unwrap_model(model))
        unwrapped.update_teacher(momentum)
    return out


class MetricMeans:
    """Means of detached scalar outputs over micro-batches, then over processes.

    :meth:`add` keeps running sums on the device (no host sync); :meth:`compute` stacks them,
    averages over processes with one ``accelerator.reduce`` and resets. Every process must add
    the same keys (they run the same phase with the same columns), or the collective would
    mismatch.

    Examples:
        >>> means = MetricMeans()
        >>> means.add({"loss": torch.tensor(1.0), "rela_loss": torch.tensor(0.5)})
        >>> means.add({"loss": torch.tensor(1.0), "rela_loss": torch.tensor(0.7)})
        >>> round(means.compute()["rela_loss"], 6)
        0.6
    """

    def __init__(self, exclude: Sequence[str] = ("loss",)) -> None:
        self.exclude = frozenset(exclude)
        self._sums: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}

    def add(self, outputs: dict[str, Tensor]) -> None:
        """Accumulate one micro-batch's scalar outputs (keys in ``exclude`` are skipped)."""
        for key, value in outputs.items():
            if key in self.exclude:
                continue
            value = value.detach().float()
            self._sums[key] = self._sums[key] + value if key in self._sums else value
            self._counts[key] = self._counts.get(key, 0) + 1

    def __bool__(self) -> bool:
        return bool(self._counts)

    def reset(self) -> None:
        """Drop the sums without computing them (no device-to-host sync)."""
        self._sums.clear()
        self._counts.clear()

    def compute(self, accelerator: Accelerator | None = None) -> dict[str, float]:
        """Means since the last call, averaged over processes; resets the sums."""
        if not self._counts:
            return {}
        keys = sorted(self._sums)
        means = torch.stack([self._sums[key] / self._counts[key] for key in keys])
        if accelerator is not None and accelerator.num_processes > 1:
            # all-reduce: every process receives the same values, so any decision taken on
            # them (the ReLA switch) is identical everywhere.
            means = accelerator.reduce(means, reduction="mean")
        self.reset()
        return dict(zip(keys, means.tolist(), strict=True))


class TrainingDiverged(RuntimeError):
    """The loss or the weights stopped being finite: the run stops before anything is saved."""


def check_finite_loss(metrics: Mapping[str, float], step: int) -> None:
    """Raise :class:`TrainingDiverged` if a logged loss of optimizer step ``step`` is NaN or inf."""
    bad = {key: value for key, value in metrics.items() if "loss" in key and not math.isfinite(value)}
    if bad:
        raise TrainingDiverged(
            f"Training diverged at optimizer step {step}: {bad}. Nothing was saved after the last "
            "good checkpoint. Lower --learning_rate, clip with --max_grad_norm, or check the mixed "
            "precision settings, then resume that checkpoint (--resume_from_checkpoint latest) or "
            "start over."
        )


@torch.no_grad()
def check_finite_weights(model: torch.nn.Module, step: int) -> None:
    """Raise :class:`TrainingDiverged` if a parameter or buffer of ``model`` is NaN or inf.

    Called before every checkpoint, export and push, so that none of them ever holds such weights:
    the previous checkpoint stays the latest one.
    """
    tensors = [t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()]
    finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all() if tensors else True
    if not bool(finite):
        names = [name for name, t in (*model.named_parameters(), *model.named_buffers())
                 if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        raise TrainingDiverged(
            f"The weights are no longer finite at optimizer step {step} ({names[:4]}...): the run "
            "stops without saving, exporting or pushing them; the latest checkpoint on disk is the "
            "last good one. Lower --learning_rate or clip with --max_grad_norm."
        )
