"""Tests for rela_hf.rela: the transfer head and the ReLA loss."""

from __future__ import annotations

import io
import math

import pytest
import timm
import torch

from rela_hf.rela import TransferHead, rela_loss


def test_transfer_head_frozen_by_default_yet_backbone_gets_gradients():
    backbone = timm.create_model("test_resnet", num_classes=0)
    head = TransferHead(backbone.num_features, 16)
    assert not head.weight.requires_grad and not head.bias.requires_grad
    assert head.bias is not None and not head.trainable
    images = torch.randn(4, 3, 32, 32)
    targets = torch.randn(4, 16)
    loss = rela_loss(head(backbone(images)), head(backbone(images.flip(-1))), targets)
    loss.backward()
    assert head.weight.grad is None and head.bias.grad is None
    grads = [p.grad for p in backbone.parameters()]
    assert all(g is not None for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0
    # an optimizer over trainable parameters never sees the frozen head
    trainable = [p for p in head.parameters() if p.requires_grad]
    assert trainable == []


def test_transfer_head_trainable_option():
    head = TransferHead(8, 4, trainable=True)
    features = torch.randn(5, 8, requires_grad=True)
    rela_loss(head(features), head(features * 2), torch.randn(5, 4)).backward()
    assert head.weight.grad is not None and head.bias.grad is not None
    assert features.grad is not None
    assert "trainable=True" in repr(head)


def test_transfer_head_weights_are_saved_and_restored():
    head = TransferHead(8, 4)
    clone = TransferHead(8, 4)
    buffer = io.BytesIO()
    torch.save(head.state_dict(), buffer)
    buffer.seek(0)
    clone.load_state_dict(torch.load(buffer, weights_only=True))
    torch.testing.assert_close(clone.weight, head.weight)
    assert not clone.weight.requires_grad


@pytest.mark.parametrize(
    ("pred1", "pred2", "target", "expected"),
    [
        ([[2.0, 0.0]], [[0.5, 0.0]], [[1.0, 0.0]], 0.0),  # both along the target
        ([[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 0.0]], 0.5),  # aligned + orthogonal
        ([[-1.0, 0.0]], [[-3.0, 0.0]], [[1.0, 0.0]], 2.0),  # both opposite
        (
            [[1.0, 1.0], [1.0, 0.0]],
            [[0.0, 1.0], [0.0, -1.0]],
            [[1.0, 0.0], [1.0, 0.0]],
            # view 1: mean(1 - 1/sqrt2, 0); view 2: mean(1, 1)
            0.5 * ((1 - 1 / math.sqrt(2)) / 2 + 1.0),
        ),
    ],
)
def test_rela_loss_values(pred1, pred2, target, expected):
    value = rela_loss(torch.tensor(pred1), torch.tensor(pred2), torch.tensor(target))
    assert value.item() == pytest.approx(expected, abs=1e-6)


def test_rela_loss_matches_the_formula_on_random_batches():
    pred1, pred2, target = torch.randn(3, 16, 64).unbind(0)
    cos = torch.nn.functional.cosine_similarity
    expected = 0.5 * ((1 - cos(pred1, target)).mean() + (1 - cos(pred2, target)).mean())
    torch.testing.assert_close(rela_loss(pred1, pred2, target), expected)


def test_rela_loss_shape_error_names_the_fix():
    with pytest.raises(ValueError, match="out_features must equal the target width"):
        rela_loss(torch.randn(2, 8), torch.randn(2, 8), torch.randn(2, 4))
