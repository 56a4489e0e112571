"""Tests for rela_hf.momentum: the target-network copy, the EMA update and the momentum schedule."""

from __future__ import annotations

import io
import itertools

import pytest
import torch
from torch import nn

from rela_hf.momentum import cosine_momentum, make_target_network, update_momentum

# ---- heads -----------------------------------------------------------------------------------


def _small_net() -> nn.Module:
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def test_make_target_network_copies_and_freezes():
    online = _small_net()
    target = make_target_network(online)
    assert target is not online
    assert all(not p.requires_grad for p in target.parameters())
    assert all(p.requires_grad for p in online.parameters())
    target_state = target.state_dict()
    for name, p_online in online.state_dict().items():
        p_target = target_state[name]
        assert torch.equal(p_online, p_target), name
        assert p_online.data_ptr() != p_target.data_ptr(), name
    # the mode is not forced: BYOL runs its target in training mode (batch statistics)
    assert target.training
    online.eval()
    assert not make_target_network(online).training


def test_update_momentum_matches_the_ema_formula():
    online, momentum = _small_net(), 0.99
    target = make_target_network(online)
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    expected = {
        name: momentum * t + (1 - momentum) * o
        for (name, t), o in zip(target.named_parameters(), online.parameters(), strict=True)
    }
    update_momentum(online, target, momentum)
    for name, t in target.named_parameters():
        torch.testing.assert_close(t, expected[name], rtol=0, atol=1e-7)
        assert not t.requires_grad


@pytest.mark.parametrize(("momentum", "source"), [(0.0, "online"), (1.0, "target")])
def test_update_momentum_endpoints(momentum, source):
    online = _small_net()
    target = make_target_network(online)
    with torch.no_grad():
        for p in online.parameters():
            p.mul_(2.0).add_(1.0)
    before = {k: v.clone() for k, v in target.named_parameters()}
    update_momentum(online, target, momentum)
    reference = dict(online.named_parameters()) if source == "online" else before
    for name, t in target.named_parameters():
        assert torch.equal(t, reference[name]), name


def test_update_momentum_copies_buffers():
    """Buffers (BN running stats, num_batches_tracked) are copied, not averaged (documented)."""
    online = _small_net()
    target = make_target_network(online)
    online.train()
    online(torch.randn(16, 4) * 3 + 1)  # moves the online running statistics
    update_momentum(online, target, momentum=0.99)
    for (name, b_online), b_target in zip(online.named_buffers(), target.buffers(), strict=True):
        assert torch.equal(b_online, b_target), name
    assert int(target[1].num_batches_tracked) == 1


def test_update_momentum_rejects_mismatched_networks():
    with pytest.raises(ValueError, match="differ in structure"):
        update_momentum(_small_net(), nn.Linear(4, 2), 0.99)
    with pytest.raises(ValueError, match="momentum"):
        update_momentum(_small_net(), _small_net(), 1.5)


def test_ema_target_moves_toward_online_under_training():
    """A real optimizer loop: the target trails the online net, and keeps no autograd graph."""
    online = _small_net()
    target = make_target_network(online)
    optimizer = torch.optim.SGD(online.parameters(), lr=0.5)
    x = torch.randn(32, 4)
    for _ in range(5):
        loss = online(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        update_momentum(online, target, momentum=0.9)
    gap = sum((o - t).abs().sum() for o, t in zip(online.parameters(), target.parameters(), strict=True))
    assert gap > 0
    assert all(t.grad is None for t in target.parameters())


def test_cosine_momentum_endpoints_and_midpoint():
    assert cosine_momentum(0, 1000) == pytest.approx(0.996)
    assert cosine_momentum(1000, 1000) == pytest.approx(1.0)
    assert cosine_momentum(500, 1000) == pytest.approx(0.998)
    assert cosine_momentum(5000, 1000) == pytest.approx(1.0)  # clamped past the end
    assert cosine_momentum(0, 10, start=0.99, end=0.99) == 0.99  # official ReLA: constant
    assert type(cosine_momentum(3, 10)) is float


def test_cosine_momentum_is_monotone():
    values = [cosine_momentum(k, 200, start=0.99) for k in range(201)]
    assert all(a <= b for a, b in itertools.pairwise(values))
    assert values[0] == pytest.approx(0.99) and values[-1] == pytest.approx(1.0)


def test_cosine_momentum_checkpoints_as_plain_float():
    buffer = io.BytesIO()
    torch.save({"momentum": cosine_momentum(7, 100)}, buffer)
    buffer.seek(0)
    assert torch.load(buffer, weights_only=True)["momentum"] == cosine_momentum(7, 100)


@pytest.mark.parametrize(("step", "total"), [(-1, 10), (0, 0)])
def test_cosine_momentum_rejects_bad_steps(step, total):
    with pytest.raises(ValueError):
        cosine_momentum(step, total)
