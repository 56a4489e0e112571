"""Tests for rela_hf.byol: the projector and predictor heads and the BYOL loss."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from rela_hf.heads import ProjectionHead
from rela_hf.methods.byol import (
    BYOL_OUT_DIM,
    byol_loss,
    byol_predictor,
    byol_projector,
    negative_cosine_similarity,
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


def _transcribed_byol_loss(p1, p2, z1, z2) -> float:
    """BYOL eq. 2 with the official ReLA scaling: 0.5 * [mean_i -cos(p1_i, z2_i) + mean_i -cos(p2_i, z1_i)]."""

    def cos(u, v):
        return sum(a * b for a, b in zip(u, v, strict=True)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))

    n = len(p1)
    return 0.5 * (sum(-cos(p1[i], z2[i]) for i in range(n)) / n + sum(-cos(p2[i], z1[i]) for i in range(n)) / n)


def test_byol_loss_matches_the_transcription_values_and_gradients():
    generator = torch.Generator().manual_seed(3)
    p1, p2, z1, z2 = (torch.randn(4, 3, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(4))
    loss = byol_loss(p1, p2, z1, z2)
    assert loss.item() == pytest.approx(
        _transcribed_byol_loss(p1.tolist(), p2.tolist(), z1.tolist(), z2.tolist()), rel=1e-6
    )
    loss.backward()
    assert z1.grad is None and z2.grad is None  # stop-gradient into the targets
    eps = 1e-6
    for tensor, which in ((p1, 0), (p2, 1)):
        for i, d in ((0, 0), (3, 2)):

            def at(delta, which=which, i=i, d=d):
                values = [p1.detach().tolist(), p2.detach().tolist()]
                values[which][i][d] += delta
                return _transcribed_byol_loss(values[0], values[1], z1.tolist(), z2.tolist())

            assert tensor.grad[i, d].item() == pytest.approx((at(eps) - at(-eps)) / (2 * eps), abs=1e-5)
