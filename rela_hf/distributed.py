"""Distributed helpers every method shares: is this run distributed, gather with gradients, means.

They work without a process group (one process: the identity), so a method's code is the same on
one CPU and on many GPUs. Gathering with gradients (``torch.distributed.nn.all_gather``) is what
contrastive losses need to take negatives from every process (SimCLR, arXiv:2002.05709; MoCo v3,
arXiv:2104.02057); the plain all-reduce mean is what running statistics need (DINO's centering,
arXiv:2104.14294) so that every process moves them identically.

Examples:
    >>> import torch
    >>> is_distributed(), world_size(), rank()
    (False, 1, 0)
    >>> x = torch.ones(2, 3)
    >>> gathered, offset = gather_with_grad(x)
    >>> gathered.shape, offset
    (torch.Size([2, 3]), 0)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
from torch import Tensor

__all__ = ["all_reduce_mean_", "gather_with_grad", "is_distributed", "rank", "world_size"]


def is_distributed() -> bool:
    """Whether a process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    """Processes in the run (1 without a process group)."""
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if is_distributed() else 0


def gather_with_grad(x: Tensor) -> tuple[Tensor, int]:
    """``x`` of every process concatenated along dim 0, and where this process's rows start.

    Gradients flow back to this process's rows (``torch.distributed.nn.all_gather``); every
    process must call it with the same shape.
    """
    if not is_distributed():
        return x, 0
    return torch.cat(dist_nn.all_gather(x)), dist.get_rank() * x.shape[0]


@torch.no_grad()
def all_reduce_mean_(x: Tensor) -> Tensor:
    """Replace ``x`` in place by its mean over processes (no gradient); returns ``x``."""
    if is_distributed():
        dist.all_reduce(x)
        x /= dist.get_world_size()
    return x
