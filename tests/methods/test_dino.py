"""DINO (arXiv:2104.14294): the loss against a transcription of the paper's formula (values and
gradients), the centering and the teacher-temperature schedule, the head, the views."""

from __future__ import annotations

import math

import pytest
import torch

from rela_hf.backbones import create_backbone
from rela_hf.methods import MethodBatch, build_method
from rela_hf.methods.dino import DINO, DINOHead, DINOLoss, DINOOptions, dino_view_transforms


def softmax(logits: list[float]) -> list[float]:
    top = max(logits)
    exps = [math.exp(v - top) for v in logits]
    return [e / sum(exps) for e in exps]


def transcribed_dino_loss(teacher, student, center, teacher_temp, student_temp):
    """The paper's objective written out with Python floats: for every teacher global view t and
    every *other* student view s, H(P_t, P_s) = -sum_k P_t[k] log P_s[k], averaged over the pairs
    and the images; P_t = softmax((g_t - c) / tau_t), P_s = softmax(g_s / tau_s)."""
    total, terms = 0.0, 0
    for t, g_t in enumerate(teacher):
        for s, g_s in enumerate(student):
            if s == t:
                continue
            for b in range(len(g_t)):
                p_t = softmax([(v - c) / teacher_temp for v, c in zip(g_t[b], center, strict=True)])
                p_s = softmax([v / student_temp for v in g_s[b]])
                total += -sum(pt * math.log(ps) for pt, ps in zip(p_t, p_s, strict=True))
                terms += 1
    return total / terms


@pytest.mark.parametrize("local_views", [0, 2])
def test_loss_matches_the_transcription_values_and_gradients(local_views):
    generator = torch.Generator().manual_seed(0)
    teacher = [torch.randn(3, 5, generator=generator, dtype=torch.float64) for _ in range(2)]
    student = [
        torch.randn(3, 5, generator=generator, dtype=torch.float64, requires_grad=True) for _ in range(2 + local_views)
    ]
    criterion = DINOLoss(5, teacher_temp=0.07, student_temp=0.2).double()
    criterion.center.copy_(torch.randn(1, 5, generator=generator, dtype=torch.float64))
    center = criterion.center[0].tolist()
    loss = criterion(teacher, student, step=0)
    expected = transcribed_dino_loss([t.tolist() for t in teacher], [s.tolist() for s in student], center, 0.07, 0.2)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    loss.backward()
    # gradients of the transcription, by central differences on the student outputs
    eps = 1e-6
    for view in range(len(student)):
        for b, k in ((0, 0), (2, 4), (1, 2)):

            def at(delta, view=view, b=b, k=k):
                values = [s.detach().tolist() for s in student]
                values[view][b][k] += delta
                return transcribed_dino_loss([t.tolist() for t in teacher], values, center, 0.07, 0.2)

            numeric = (at(eps) - at(-eps)) / (2 * eps)
            assert student[view].grad[b, k].item() == pytest.approx(numeric, abs=1e-7)


def test_centering_is_an_ema_of_the_teacher_batch_mean():
    criterion = DINOLoss(4, center_momentum=0.9)
    teacher = [torch.tensor([[1.0, 2.0, 3.0, 4.0], [3.0, 2.0, 1.0, 0.0]]), torch.zeros(2, 4)]
    student = [torch.zeros(2, 4), torch.zeros(2, 4)]
    criterion(teacher, student)
    mean = torch.tensor([[1.0, 1.0, 1.0, 1.0]])  # over both views and both images
    assert torch.allclose(criterion.center, 0.1 * mean)
    criterion(teacher, student)
    assert torch.allclose(criterion.center, 0.9 * 0.1 * mean + 0.1 * mean)
    # the center is a buffer: it travels with the model's state_dict (exact resume)
    assert "center" in dict(criterion.named_buffers())


def test_teacher_temperature_warms_up_linearly_then_stays():
    criterion = DINOLoss(4, warmup_teacher_temp=0.04, teacher_temp=0.07, warmup_teacher_temp_steps=30)
    assert criterion.teacher_temperature(0) == pytest.approx(0.04)
    assert criterion.teacher_temperature(15) == pytest.approx(0.055)
    assert criterion.teacher_temperature(30) == pytest.approx(0.07)
    assert criterion.teacher_temperature(10_000) == pytest.approx(0.07)
    # and the loss uses it: the transcription at step 15 uses 0.055
    generator = torch.Generator().manual_seed(1)
    teacher = [torch.randn(2, 4, generator=generator, dtype=torch.float64) for _ in range(2)]
    student = [torch.randn(2, 4, generator=generator, dtype=torch.float64) for _ in range(2)]
    loss = criterion.double()(teacher, student, step=15)
    expected = transcribed_dino_loss(
        [t.tolist() for t in teacher], [s.tolist() for s in student], [0.0] * 4, 0.055, 0.1
    )
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    official = DINOLoss(4)  # the official ReLA code: 0.04 throughout
    assert official.teacher_temperature(0) == official.teacher_temperature(10**6) == 0.04


def test_head_is_the_official_two_layer_mlp_with_a_unit_norm_last_layer():
    head = DINOHead(96)
    layers = [type(m).__name__ for m in head.mlp]
    assert layers == ["Linear", "BatchNorm1d", "GELU", "Linear"]
    assert head.mlp[0].out_features == 2048 and head.mlp[3].out_features == 256
    weight = head.last_layer.weight
    assert weight.shape == (2048, 256)
    assert torch.allclose(weight.norm(dim=1), torch.ones(2048), atol=1e-5)
    assert not head.last_layer.parametrizations.weight.original0.requires_grad


def test_teacher_head_is_built_fresh_and_moves_by_ema():
    backbone = create_backbone("test_resnet")
    torch.manual_seed(0)
    dino = DINO(backbone, {"hidden_dim": 32, "bottleneck_dim": 8, "out_dim": 16})
    assert not torch.equal(dino.head.mlp[0].weight, dino.teacher_head.mlp[0].weight)
    for a, b in zip(backbone.parameters(), dino.teacher_backbone.parameters(), strict=True):
        assert torch.equal(a, b)
    assert not any(p.requires_grad for p in [*dino.teacher_head.parameters(), *dino.teacher_backbone.parameters()])
    student, teacher = dino.head.mlp[0].weight, dino.teacher_head.mlp[0].weight.clone()
    dino.update_teacher(backbone, momentum=0.99)
    assert torch.allclose(dino.teacher_head.mlp[0].weight, 0.99 * teacher + 0.01 * student)


def test_views_global_and_local(cifar10_images):
    image = cifar10_images["image"][0]
    official = dino_view_transforms(32)
    assert len(official) == 2 and all(v(image).shape == (3, 32, 32) for v in official)
    names = [type(t).__name__ for t in official[1].transforms]
    assert "RandomSolarize" in names and "RandomGaussianBlur" not in names  # no blur at 32 px
    crops = dino_view_transforms(224, DINOOptions(local_crops=3))
    assert [v(image).shape[-1] for v in crops] == [224, 224, 96, 96, 96]
    assert crops[0].transforms[1].scale == (0.4, 1.0) and crops[2].transforms[1].scale == (0.05, 0.4)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="teacher_temp must be > 0"):
        DINOOptions(teacher_temp=0.0)
    with pytest.raises(ValueError, match=r"Unknown dino option\(s\) \['temperature'\]"):
        DINO(create_backbone("test_resnet"), {"temperature": 0.1})


def test_freeze_last_layer_keeps_the_last_layer_fixed_for_the_first_steps():
    """DINO's freeze_last_layer through the method's hook before the optimizer step."""
    backbone = create_backbone("test_resnet", cifar_stem=True)
    dino = build_method(
        "dino", backbone, {"out_dim": 32, "hidden_dim": 16, "bottleneck_dim": 8, "freeze_last_layer_steps": 2}
    )
    views = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    last = [p for p in dino.head.last_layer.parameters() if p.requires_grad]
    for step, frozen in ((0, True), (1, True), (2, False)):
        dino.zero_grad(set_to_none=True)
        dino(MethodBatch(features=[backbone(v) for v in views], views=views, step=step)).backward()
        dino.before_optimizer_step(step)
        assert all((p.grad is None) == frozen for p in last), step
