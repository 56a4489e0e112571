"""rela_hf.distributed: the identity in one process, gathers and means across two (gloo)."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from rela_hf.distributed import all_reduce_mean_, gather_with_grad, is_distributed, rank, world_size
from tests.recipes.trainer import free_port


def _two_processes(process: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=process, world_size=2)
    try:
        x = torch.full((2, 3), float(process + 1), requires_grad=True)
        gathered, offset = gather_with_grad(x)
        gathered.sum().backward()  # gradients flow back to this process's rows only
        mean = all_reduce_mean_(torch.tensor([float(process)]))
        results[process] = (
            is_distributed(),
            world_size(),
            rank(),
            gathered.detach().clone(),
            offset,
            x.grad.clone(),
            mean.item(),
        )
    finally:
        dist.destroy_process_group()


def test_two_processes_gather_with_gradients_and_average():
    results = mp.Manager().dict()
    mp.spawn(_two_processes, args=(free_port(), results), nprocs=2, join=True)
    for process in (0, 1):
        distributed, size, process_rank, gathered, offset, grad, mean = results[process]
        assert distributed and size == 2 and process_rank == process and offset == 2 * process
        assert torch.equal(gathered, torch.cat([torch.full((2, 3), 1.0), torch.full((2, 3), 2.0)]))
        assert torch.equal(grad, torch.full((2, 3), 2.0))  # the sum over both processes' gathers
        assert mean == 0.5
