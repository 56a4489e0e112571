"""How the embedding pass uses the machine: worker threads on CPU, one process per GPU.

On CPU, ``num_proc=N`` runs ``N`` workers as threads of this process, each embedding whole
batches with ``cores // N`` torch threads (no oversubscription). Every torch operation and
Pillow's decoding and resizing release the GIL, so the workers run in parallel while sharing one
copy of the prior and of the imported libraries. Spawned processes, what ``Dataset.map(num_proc=N)``
starts, each import torch, timm, datasets and transformers again (about 0.8 GiB and 10-25 s
apiece on a busy 2-core machine) and ``datasets`` adds a manager process that imports the calling
script once more: at 20,000 images two processes took twice as long as one and 3.5 times its
memory. Batches keep their boundaries (multiples of ``batch_size``), so the targets are bitwise
those of one worker running with the same number of torch threads. At another thread count
torch's kernels may round differently: for the timm CNNs tried, batches of 16 images or more gave
the same bits with 1 and 2 threads, smaller ones (a last partial batch) differed in the last bit.

On CUDA, one spawned ``Dataset.map`` process per GPU stays: each needs its own device and CUDA
context, and a forked child cannot initialise CUDA again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import multiprocess
import torch

__all__ = [
    "WorkerPlan",
    "plan_workers",
    "require_spawn_start_method",
    "usable_cores",
    "worker_threads",
]

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class WorkerPlan:
    """How many batches are embedded at once, and by what.

    Attributes:
        workers: batches in flight at once (1: one batch after the other, torch's threads as set).
        gpu_processes: one spawned ``Dataset.map`` process per worker, each on
            ``cuda:{rank % device_count}``; else worker threads of this process.
        torch_threads: intra-op threads while the CPU worker threads run (``None``: leave
            torch's setting alone).
    """

    workers: int
    gpu_processes: bool = False
    torch_threads: int | None = None


def usable_cores() -> int:
    """The CPUs this process may run on (its affinity mask; ``os.cpu_count()`` where unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def plan_workers(
    num_proc: int | None,
    *,
    device: torch.device,
    num_examples: int,
    batch_size: int,
    cores: int | None = None,
    gpus: int | None = None,
) -> WorkerPlan:
    """The :class:`WorkerPlan` for ``num_proc`` on ``device``.

    CUDA: ``num_proc`` processes (default: one per visible GPU). CPU: ``min(num_proc, cores,
    number of batches)`` worker threads with ``cores // workers`` torch threads each; one worker
    (``num_proc`` of ``None`` or 1) leaves torch's thread setting as the caller made it. Other
    devices (MPS, XPU) run one batch at a time.

    Args:
        num_proc: what the caller asked for: ``None``, 0 or 1 (one worker) or more.
        device: where the prior runs.
        num_examples: images to embed.
        batch_size: images per forward pass.
        cores: CPUs to share out (default :func:`usable_cores`).
        gpus: visible GPUs (default ``torch.cuda.device_count()``).
    """
    if num_proc is not None and (not isinstance(num_proc, int) or isinstance(num_proc, bool) or num_proc < 0):
        raise ValueError(
            f"num_proc must be None or a non-negative integer (0 and 1: one worker, as in "
            f"Dataset.map), got {num_proc!r}."
        )
    if device.type == "cuda":
        gpus = torch.cuda.device_count() if gpus is None else gpus
        requested = num_proc or max(1, gpus)
        workers = min(requested, num_examples)
        return WorkerPlan(workers, gpu_processes=workers > 1)
    if device.type != "cpu":
        if num_proc and num_proc > 1:
            logger.warning("num_proc=%d ignored: the prior is on %s.", num_proc, device)
        return WorkerPlan(1)
    cores = usable_cores() if cores is None else cores
    workers = min(num_proc or 1, cores, math.ceil(num_examples / batch_size))
    if workers <= 1:
        return WorkerPlan(1)
    return WorkerPlan(workers, torch_threads=max(1, cores // workers))


@contextlib.contextmanager
def worker_threads(plan: WorkerPlan) -> Iterator[ThreadPoolExecutor | None]:
    """The CPU worker threads of ``plan`` (``None`` for one worker or GPU processes).

    Torch's intra-op thread count is a process-wide setting: it is set to
    ``plan.torch_threads`` while the workers run and restored afterwards, also on errors.
    """
    if plan.gpu_processes or plan.workers < 2 or plan.torch_threads is None:
        yield None
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(plan.torch_threads)
    try:
        with ThreadPoolExecutor(plan.workers, thread_name_prefix="rela-hf-embed") as pool:
            yield pool
    finally:
        torch.set_num_threads(previous)


def require_spawn_start_method(num_proc: int) -> None:
    """GPU worker processes must be spawned: the prior already ran here (``load_prior`` probes
    it), and a forked child can neither re-initialise CUDA nor reuse torch's CPU thread pool."""
    if multiprocess.get_start_method(allow_none=True) != "spawn":
        raise RuntimeError(
            f"Embedding on {num_proc} GPUs needs one process per GPU, started with the 'spawn' "
            "method (a forked process cannot re-initialise CUDA, and torch's CPU threads hang "
            "after a fork). In your script, under if __name__ == '__main__':, call "
            "multiprocess.set_start_method('spawn') first, or pass num_proc=1 (one process)."
        )
