"""Seeds derived from a run's seed and a data position, so a resumed run repeats an uninterrupted one.

- :func:`sample_seed` ``(seed, epoch, row)``: the augmentations of one training image, whatever the
  DataLoader worker, prefetch depth, process count or resume point (PIL views in
  :class:`~rela_hf.training.ViewDataset`, batched views in :mod:`rela_hf.gpu_views`);
- :func:`forward_seed` ``(seed, epoch, batch, process)``: the forward pass of one micro-batch
  (dropout, stochastic depth).

Examples:
    >>> sample_seed(42, 0, 7) == sample_seed(42, 0, 7) != sample_seed(42, 1, 7)
    True
"""

from __future__ import annotations

import hashlib

__all__ = ["forward_seed", "sample_seed"]

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
