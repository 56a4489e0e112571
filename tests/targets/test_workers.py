"""Tests of rela_hf.targets.workers: how num_proc spreads the embedding pass (CPU worker threads
with cores // N torch threads each, one process per GPU), and that CPU workers give bitwise the
targets of one worker, in this process, on real Fashion-MNIST and CIFAR-10 images."""

from __future__ import annotations

import os
import threading

import multiprocess
import numpy as np
import pytest
import torch

from rela_hf.targets import add_rela_targets
from rela_hf.targets.workers import (
    WorkerPlan,
    plan_workers,
    require_spawn_start_method,
    usable_cores,
    worker_threads,
)

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def column(dataset, name: str) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")[name])


def cpu_plan(num_proc, cores, num_examples=10_000, batch_size=64) -> WorkerPlan:
    return plan_workers(num_proc, device=CPU, num_examples=num_examples, batch_size=batch_size, cores=cores)


def test_cpu_workers_share_the_cores_without_oversubscription():
    assert cpu_plan(2, cores=2) == WorkerPlan(2, torch_threads=1)
    assert cpu_plan(4, cores=16) == WorkerPlan(4, torch_threads=4)
    assert cpu_plan(3, cores=16) == WorkerPlan(3, torch_threads=5)  # 15 of 16 cores, never 18
    assert cpu_plan(8, cores=2) == WorkerPlan(2, torch_threads=1)  # at most one worker per core
    assert cpu_plan(32, cores=16) == WorkerPlan(16, torch_threads=1)


def test_one_cpu_worker_leaves_torch_threads_alone():
    assert cpu_plan(None, cores=16) == WorkerPlan(1)
    assert cpu_plan(1, cores=16) == WorkerPlan(1)
    assert cpu_plan(0, cores=16) == WorkerPlan(1)  # as in Dataset.map: 0 means no extra workers
    assert cpu_plan(4, cores=1) == WorkerPlan(1)
    # no more workers than batches: 100 images in batches of 64 are two batches
    assert cpu_plan(8, cores=16, num_examples=100) == WorkerPlan(2, torch_threads=8)
    assert cpu_plan(8, cores=16, num_examples=64) == WorkerPlan(1)


def test_gpu_plan_is_one_process_per_gpu():
    def plan(num_proc, gpus, n=1000):
        return plan_workers(num_proc, device=CUDA, num_examples=n, batch_size=64, gpus=gpus)

    assert plan(None, gpus=4) == WorkerPlan(4, gpu_processes=True)
    assert plan(2, gpus=4) == WorkerPlan(2, gpu_processes=True)
    assert plan(None, gpus=1) == WorkerPlan(1)
    assert plan(None, gpus=4, n=3) == WorkerPlan(3, gpu_processes=True)
    other = plan_workers(4, device=torch.device("mps"), num_examples=1000, batch_size=64)
    assert other == WorkerPlan(1)


@pytest.mark.parametrize("num_proc", [-1, 1.5, True, "2"])
def test_invalid_num_proc_is_refused(num_proc):
    with pytest.raises(ValueError, match="num_proc must be None or a non-negative integer"):
        cpu_plan(num_proc, cores=2)


def test_worker_threads_set_and_restore_torch_threads():
    before = torch.get_num_threads()
    with worker_threads(WorkerPlan(1)) as pool:
        assert pool is None and torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"), worker_threads(WorkerPlan(2, torch_threads=1)):
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


def test_gpu_processes_need_the_spawn_start_method():
    previous = multiprocess.get_start_method(allow_none=True)
    try:
        multiprocess.set_start_method("fork", force=True)
        with pytest.raises(RuntimeError, match="'spawn' method"):
            require_spawn_start_method(2)
        multiprocess.set_start_method("spawn", force=True)
        require_spawn_start_method(2)
    finally:
        multiprocess.set_start_method(previous, force=True)


class RecordingPooling:
    """The prior's own pooling, recording who ran each forward pass and on how many images."""

    def __init__(self, embed_fn) -> None:
        self.embed_fn, self.calls, self.lock = embed_fn, [], threading.Lock()

    def __call__(self, model, pixel_values):
        with self.lock:
            self.calls.append(
                (
                    len(pixel_values),
                    threading.current_thread().name,
                    os.getpid(),
                    torch.get_num_threads(),
                )
            )
        return self.embed_fn(model, pixel_values)


@pytest.mark.parametrize("prior_name", ["random_prior", "efficientnet_lite0_prior"])
def test_two_cpu_workers_give_bitwise_the_targets_of_one(prior_name, request, fashion_mnist_slice, cifar10_images):
    """num_proc=2 on CPU: two worker threads of this process (no spawned process, no 'spawn'
    start method needed), cores // 2 torch threads each, the same batches as one worker: the
    targets are bitwise those of one worker at that thread count."""
    prior = request.getfixturevalue(prior_name)
    images = fashion_mnist_slice if prior_name == "random_prior" else cifar10_images
    threads = max(1, usable_cores() // 2)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        single = add_rela_targets(images, prior, k=8, batch_size=6, keep_embeddings=True)
    finally:
        torch.set_num_threads(previous)
    recorder = RecordingPooling(prior.embed_fn)
    prior.embed_fn = recorder
    try:
        parallel = add_rela_targets(images, prior, k=8, batch_size=6, num_proc=2, keep_embeddings=True)
    finally:
        prior.embed_fn = recorder.embed_fn
    assert torch.get_num_threads() == previous
    for name in ("rela_target", "rela_embedding"):
        np.testing.assert_array_equal(column(parallel, name), column(single, name))
    full, rest = divmod(len(images), 6)
    assert sorted(size for size, *_ in recorder.calls) == sorted([6] * full + [rest] * (rest > 0))
    if usable_cores() >= 2:
        threads_seen = {thread for _, thread, _, _ in recorder.calls}
        assert len(threads_seen) == 2 and all(t.startswith("rela-hf-embed") for t in threads_seen)
    assert {pid for *_, pid, _ in recorder.calls} == {os.getpid()}
    assert {n for *_, n in recorder.calls} == {threads}
