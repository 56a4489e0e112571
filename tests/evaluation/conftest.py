"""Fixtures of the evaluation tests."""

from __future__ import annotations

import pytest
import timm
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny matmuls gain nothing from a second thread, and on shared cores OpenMP spins badly
    (a 100-epoch probe of 500 x 1280 features: ~1.7 s on one thread, ~16 s on two, loaded)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_encoder() -> torch.nn.Module:
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=0).eval()
    return model
