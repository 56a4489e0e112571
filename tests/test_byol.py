"""Tests for rela_hf.byol: heads, loss, target network, momentum update and schedule."""

from __future__ import annotations

import doctest
import io
import itertools
import math

import pytest
import torch
from torch import nn

import rela_hf.byol
from rela_hf.byol import (
    BYOL_OUT_DIM,
    ProjectionHead,
    byol_loss,
    byol_predictor,
    byol_projector,
    cosine_momentum,
    make_target_network,
    negative_cosine_similarity,
    update_momentum,
)

# ---- heads -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("feature_dim", "hidden_dim", "expected_hidden"),
    [
        (512, None, 1024),  # ResNet-18, official ReLA code: 2 * feature width
        (2048, None, 4096),  # ResNet-50, official ReLA code
        (512, 4096, 4096),  # BYOL paper
    ],
)
def test_projector_widths(feature_dim, hidden_dim, expected_hidden):
    projector = byol_projector(feature_dim, hidden_dim)
    assert isinstance(projector, ProjectionHead)
    assert (projector.fc1.in_features, projector.fc1.out_features) == (feature_dim, expected_hidden)
    assert projector.bn1.num_features == expected_hidden
    assert (projector.fc2.in_features, projector.fc2.out_features) == (expected_hidden, 256)
    assert projector(torch.randn(4, feature_dim)).shape == (4, BYOL_OUT_DIM)


def test_predictor_widths():
    predictor = byol_predictor(hidden_dim=1024)  # official ReLA code with ResNet-18
    assert (predictor.fc1.in_features, predictor.fc1.out_features) == (256, 1024)
    assert (predictor.fc2.in_features, predictor.fc2.out_features) == (1024, 256)
    assert byol_predictor().hidden_dim == 4096  # BYOL paper default
    assert byol_predictor(128, 64)(torch.randn(3, 128)).shape == (3, 128)


def test_projection_head_layer_order_and_bias():
    head = ProjectionHead(8, 16, 4)
    assert [type(m) for m in head.children()] == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Linear]
    assert head.fc1.bias is None  # BatchNorm follows: a bias would be redundant
    assert head.fc2.bias is not None
    x = torch.randn(5, 8)
    manual = head.fc2(torch.relu(head.bn1(head.fc1(x))))
    torch.testing.assert_close(head(x), manual)


def test_projection_head_rejects_bad_width():
    with pytest.raises(ValueError, match="hidden_dim"):
        ProjectionHead(8, 0, 4)


# ---- loss ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("p", "z", "expected"),
    [
        ([[1.0, 0.0]], [[5.0, 0.0]], -1.0),  # same direction, any scale
        ([[1.0, 0.0]], [[0.0, 2.0]], 0.0),  # orthogonal
        ([[1.0, 0.0]], [[-1.0, 0.0]], 1.0),  # opposite
        ([[1.0, 1.0], [1.0, 0.0]], [[1.0, 0.0], [1.0, 0.0]], -(1 / math.sqrt(2) + 1) / 2),
    ],
)
def test_negative_cosine_similarity_values(p, z, expected):
    value = negative_cosine_similarity(torch.tensor(p), torch.tensor(z))
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_negative_cosine_similarity_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        negative_cosine_similarity(torch.randn(2, 3), torch.randn(2, 4))


def test_byol_loss_value_on_known_vectors():
    p1 = torch.tensor([[1.0, 0.0]])
    p2 = torch.tensor([[0.0, 1.0]])
    z1 = torch.tensor([[0.0, 3.0]])  # p2 points along z1: ncs = -1
    z2 = torch.tensor([[1.0, 1.0]])  # p1 at 45 degrees to z2: ncs = -1/sqrt(2)
    expected = 0.5 * (-1 / math.sqrt(2) - 1.0)
    assert byol_loss(p1, p2, z1, z2).item() == pytest.approx(expected, abs=1e-6)


def test_byol_loss_is_symmetric_in_the_views():
    p1, p2, z1, z2 = torch.randn(4, 6, 32).unbind(0)
    torch.testing.assert_close(byol_loss(p1, p2, z1, z2), byol_loss(p2, p1, z2, z1))


def test_byol_loss_stops_gradient_into_targets():
    p1, p2, z1, z2 = (torch.randn(6, 32, requires_grad=True) for _ in range(4))
    byol_loss(p1, p2, z1, z2).backward()
    assert p1.grad is not None and p2.grad is not None
    assert p1.grad.abs().sum() > 0
    assert z1.grad is None and z2.grad is None


def test_byol_loss_in_fp16_is_float32():
    p1, p2, z1, z2 = (torch.randn(4, 8).half() for _ in range(4))
    assert byol_loss(p1, p2, z1, z2).dtype == torch.float32


# ---- target network and EMA ----------------------------------------------------------------


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
        for (name, t), o in zip(target.named_parameters(), online.parameters())
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
    for (name, b_online), b_target in zip(online.named_buffers(), target.buffers()):
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
    gap = sum((o - t).abs().sum() for o, t in zip(online.parameters(), target.parameters()))
    assert gap > 0
    assert all(t.grad is None for t in target.parameters())


# ---- momentum schedule ----------------------------------------------------------------------


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


def test_docstring_examples_run():
    result = doctest.testmod(rela_hf.byol, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
