"""Tests for rela_hf.evaluation.linear_probe: the official protocol's probe."""

from __future__ import annotations

import pytest
import torch

from rela_hf.evaluation import (
    knn_accuracy,
    linear_probe,
)


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=generator)
    centres = torch.tensor([[3.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 3.0, 0]])
    return centres[labels] + torch.randn(n, 4, generator=generator), labels


def test_linear_probe_reports_mean_and_std_of_last_three_epochs():
    train_x, train_y = _blobs(120, 0)
    test_x, test_y = _blobs(60, 1)
    result = linear_probe(train_x, train_y, test_x, test_y, epochs=30, lr=1e-2, batch_size=32)
    last = result["last_accuracies"]
    assert len(last) == 3
    assert result["accuracy"] == pytest.approx(sum(last) / 3)
    mean = sum(last) / 3
    assert result["accuracy_std"] == pytest.approx((sum((a - mean) ** 2 for a in last) / 3) ** 0.5)
    assert result["accuracy"] > 0.9  # well-separated blobs
    assert result["predictions"].shape == (60,)
    assert (result["epochs"], result["lr"], result["batch_size"]) == (30, 1e-2, 32)


def test_linear_probe_is_deterministic_for_a_seed_and_leaves_global_rng_alone():
    train_x, train_y = _blobs(90, 2)
    test_x, test_y = _blobs(45, 3)
    state = torch.get_rng_state()
    first = linear_probe(train_x, train_y, test_x, test_y, epochs=5, seed=7)
    assert torch.equal(torch.get_rng_state(), state)
    second = linear_probe(train_x, train_y, test_x, test_y, epochs=5, seed=7)
    other = linear_probe(train_x, train_y, test_x, test_y, epochs=5, seed=8)
    assert first["last_accuracies"] == second["last_accuracies"]
    assert torch.equal(first["predictions"], second["predictions"])
    assert first["final_train_accuracy"] == second["final_train_accuracy"]
    assert other["seed"] == 8


def test_linear_probe_defaults_are_the_official_protocol():
    import inspect

    defaults = inspect.signature(linear_probe).parameters
    assert defaults["epochs"].default == 100
    assert defaults["lr"].default == 3e-4
    assert defaults["last_epochs"].default == 3
    knn_defaults = inspect.signature(knn_accuracy).parameters
    assert (knn_defaults["k"].default, knn_defaults["temperature"].default) == (200, 0.1)
