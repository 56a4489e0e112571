"""rela_hf.handover: the ReLA loss's weight after the switch, and the student's soft hand-over."""

from __future__ import annotations

import pytest
import torch

from rela_hf.backbones import create_backbone
from rela_hf.handover import Handover
from rela_hf.model import ReLAStudent


def test_weights_before_and_after_the_switch():
    fade, keep, hard = Handover("fade", steps=4), Handover("regularize", weight=0.2), Handover()
    assert [fade.rela_weight(step, 10) for step in range(10, 16)] == [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    assert keep.rela_weight(500, 10) == 0.2 and hard.rela_weight(11, 10) == 0.0
    assert all(rule.rela_weight(3, None) == 0.0 for rule in (fade, keep, hard))  # before the switch


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("slow", {}, "Unknown hand-over"),
        ("fade", {"steps": 0}, "steps >= 1"),
        ("regularize", {}, "weight > 0"),
    ],
)
def test_bad_hand_overs_are_refused(kind, options, message):
    with pytest.raises(ValueError, match=message):
        Handover(kind, **options)


def test_the_student_adds_the_weighted_rela_loss_after_the_switch():
    torch.manual_seed(0)
    model = ReLAStudent(create_backbone("test_resnet", cifar_stem=True), "byol", rela_dim=8)
    views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    targets = torch.randn(4, 8)
    model.eval()  # batch norm in eval mode: the same forward twice
    hard = model(views, phase="ssl", targets=targets)
    soft = model(views, phase="ssl", targets=targets, rela_weight=0.5)
    assert "rela_loss" not in hard and torch.equal(hard["byol_loss"], soft["byol_loss"])
    assert torch.allclose(soft["loss"], hard["loss"] + 0.5 * soft["rela_loss"])
    soft["loss"].backward()
    assert model.transfer_head.weight.grad is None  # W stays fixed (official), the backbone learns
    assert next(model.backbone.parameters()).grad is not None
