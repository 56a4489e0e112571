"""ReLAStudent (ReLABYOL for BYOL): phase gating of gradients, the online probe, the EMA
teacher, optimizer groups; with BYOL, DINO and SimCLR."""

from __future__ import annotations

import pytest
import torch

from rela_hf.backbones import create_backbone
from rela_hf.model import ReLABYOL, ReLAStudent
from rela_hf.views import TwoViews, byol_view_transforms, rela_view_transform

K = 16


pytestmark = pytest.mark.usefixtures("single_torch_thread")


@pytest.fixture
def views(cifar10_images):
    """Two ReLA views of 8 real CIFAR-10 images, their labels and random targets."""
    pair = TwoViews(rela_view_transform(32), rela_view_transform(32))
    pairs = [pair(image) for image in cifar10_images.select(range(8))["image"]]
    view1 = torch.stack([p[0] for p in pairs])
    view2 = torch.stack([p[1] for p in pairs])
    labels = torch.tensor(cifar10_images.select(range(8))["label"])
    return view1, view2, torch.randn(8, K), labels


def make_model(**kwargs) -> ReLABYOL:
    kwargs.setdefault("rela_dim", K)
    return ReLABYOL(create_backbone("test_resnet", cifar_stem=True), **kwargs)


def grads(module: torch.nn.Module) -> list[torch.Tensor | None]:
    return [p.grad for p in module.parameters()]


def test_rela_phase_only_drives_backbone_through_frozen_transfer_head(views):
    view1, view2, targets, labels = views
    model = make_model(num_classes=10)
    out = model([view1, view2], phase="rela", targets=targets, labels=labels)
    out["loss"].backward()

    assert set(out) == {"loss", "rela_loss", "classifier_loss", "classifier_accuracy"}
    assert all(g is not None for g in grads(model.backbone))
    assert sum(g.abs().sum() for g in grads(model.backbone)) > 0
    # BYOL heads are not run in the ReLA phase: no gradient at all (None, not zeros)
    assert all(g is None for g in grads(model.method.projector) + grads(model.method.predictor))
    # official default: W is a fixed random projection, outside autograd's leaves
    assert not any(p.requires_grad for p in model.transfer_head.parameters())
    assert all(g is None for g in grads(model.transfer_head))
    assert all(g is None for g in grads(model.method.target_backbone) + grads(model.method.target_projector))
    assert all(g is not None for g in grads(model.classifier))  # the probe keeps training
    assert torch.allclose(out["loss"].detach(), out["rela_loss"] + out["classifier_loss"])


def test_trainable_transfer_head_gets_gradients_in_rela_phase_only(views):
    view1, view2, targets, _ = views
    model = make_model(trainable_transfer_head=True)
    model([view1, view2], phase="rela", targets=targets)["loss"].backward()
    assert all(g is not None for g in grads(model.transfer_head))

    model.zero_grad(set_to_none=True)
    out = model([view1, view2], phase="ssl", targets=targets)
    out["loss"].backward()
    assert set(out) == {"loss", "byol_loss"}
    assert all(g is None for g in grads(model.transfer_head))
    for module in (model.backbone, model.method.projector, model.method.predictor):
        assert all(g is not None for g in grads(module))
    assert all(g is None for g in grads(model.method.target_backbone) + grads(model.method.target_projector))


def test_online_classifier_never_shapes_the_backbone(views):
    view1, view2, _, labels = views
    model = make_model(num_classes=10)
    model([view1, view2], phase="ssl", labels=labels)["loss"].backward()
    with_probe = [g.clone() for g in grads(model.backbone)]
    model.zero_grad(set_to_none=True)
    model([view1, view2], phase="ssl")["loss"].backward()  # no labels: no probe loss
    for a, b in zip(with_probe, grads(model.backbone), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_byol_loss_is_bounded_and_probe_accuracy_is_a_fraction(views):
    view1, view2, _, labels = views
    out = make_model(num_classes=10)([view1, view2], phase="ssl", labels=labels)
    assert -1.0 <= out["byol_loss"].item() <= 1.0
    assert 0.0 <= out["classifier_accuracy"].item() <= 1.0


def test_update_teacher_moves_target_towards_online():
    model = make_model()
    with torch.no_grad():
        for p in list(model.backbone.parameters()) + list(model.method.projector.parameters()):
            p.add_(1.0)
    before = [t.clone() for t in model.method.target_backbone.parameters()]
    model.update_teacher(momentum=0.75)
    for old, new, online in zip(
        before, model.method.target_backbone.parameters(), model.backbone.parameters(), strict=True
    ):
        assert torch.allclose(new, 0.75 * old + 0.25 * online, atol=1e-6)
    model.update_teacher(momentum=0.0)
    for target, online in zip(
        model.method.target_projector.parameters(), model.method.projector.parameters(), strict=True
    ):
        assert torch.equal(target, online)


def test_target_network_is_part_of_the_state_dict_and_starts_equal():
    model = make_model()
    keys = model.state_dict().keys()
    assert any(k.startswith("method.target_backbone.") for k in keys)
    assert any(k.startswith("method.target_projector.") for k in keys)
    for a, b in zip(
        model.backbone.state_dict().values(), model.method.target_backbone.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)


def test_parameter_groups_leave_out_target_and_frozen_head():
    model = make_model(num_classes=10)
    main, probe = model.parameter_groups(weight_decay=0.01)
    ids = {id(p) for p in main["params"]}
    assert main["weight_decay"] == 0.01 and probe["weight_decay"] == 0.0
    assert {id(p) for p in probe["params"]} == {id(p) for p in model.classifier.parameters()}
    for frozen in (model.method.target_backbone, model.method.target_projector, model.transfer_head):
        assert not ids & {id(p) for p in frozen.parameters()}
    assert {id(p) for p in model.method.projector.parameters()} <= ids
    trainable = make_model(trainable_transfer_head=True).parameter_groups(0.0)
    assert len(trainable) == 1  # no classifier without num_classes


def test_predictor_hidden_defaults_to_projector_hidden():
    model = make_model(rela_dim=None)
    assert model.method.projector.hidden_dim == 2 * model.feature_dim  # official ReLA
    assert model.method.predictor.hidden_dim == model.method.projector.hidden_dim
    assert model.transfer_head is None and model.rela_dim is None


def test_bad_inputs_are_reported(views):
    view1, view2, targets, _ = views
    with pytest.raises(ValueError, match="unknown phase"):
        make_model()([view1, view2], phase="simclr")
    with pytest.raises(ValueError, match="needs `targets`"):
        make_model()([view1, view2], phase="rela")
    with pytest.raises(ValueError, match="rela_dim"):
        make_model(rela_dim=None)([view1, view2], phase="rela", targets=targets)
    with pytest.raises(ValueError, match="target width"):
        make_model(rela_dim=8)([view1, view2], phase="rela", targets=targets)
    with pytest.raises(TypeError, match="num_features"):
        ReLABYOL(torch.nn.Linear(3, 3))


def test_byol_views_work_with_the_model(cifar10_images):
    pair = TwoViews(*byol_view_transforms(32))
    view1, view2 = (
        torch.stack(v) for v in zip(*[pair(im) for im in cifar10_images.select(range(4))["image"]], strict=True)
    )
    out = make_model()([view1, view2], phase="ssl")
    assert out["loss"].requires_grad


@pytest.mark.parametrize("method", ["byol", "dino", "simclr"])
def test_every_method_is_gated_by_the_phase(views, method):
    """ReLA phase: only the backbone (through W) learns; SSL phase: backbone + the method's heads,
    never a teacher; the teacher moves only through update_teacher."""
    view1, view2, targets, labels = views
    options = {"hidden_dim": 64, "bottleneck_dim": 16, "out_dim": 128} if method == "dino" else None
    model = ReLAStudent(
        create_backbone("test_resnet", cifar_stem=True), method, method_options=options, rela_dim=K, num_classes=10
    )
    trainable = [p for p in model.method.parameters() if p.requires_grad]
    teacher = [p for p in model.method.parameters() if not p.requires_grad]
    assert bool(teacher) == model.method.has_teacher or method == "dino"  # DINO: also its fixed norm
    model([view1, view2], phase="rela", targets=targets, labels=labels)["loss"].backward()
    assert all(p.grad is None for p in model.method.parameters())
    model.zero_grad(set_to_none=True)
    out = model([view1, view2], phase="ssl", labels=labels)
    assert set(out) == {"loss", model.method.loss_name, "classifier_loss", "classifier_accuracy"}
    out["loss"].backward()
    assert all(p.grad is not None for p in trainable) and all(p.grad is None for p in teacher)
    assert all(p.grad is not None for p in model.backbone.parameters())
    with torch.no_grad():  # as an optimizer step would: the online networks move away
        for p in [*model.backbone.parameters(), *trainable]:
            p.add_(0.1)
    before = [p.clone() for p in teacher]
    model.update_teacher(momentum=0.5)
    moved = [not torch.equal(a, b) for a, b in zip(before, teacher, strict=True)]
    assert any(moved) == model.method.has_teacher


def test_dino_takes_local_crops_and_simclr_needs_no_teacher(cifar10_images):
    from rela_hf.views import MultiView

    backbone = create_backbone("test_resnet", cifar_stem=True)
    options = {"hidden_dim": 64, "bottleneck_dim": 16, "out_dim": 128, "local_crops": 2}
    model = ReLAStudent(backbone, "dino", method_options=options)
    transforms = model.method.view_transforms(32, options)
    images = cifar10_images.select(range(6))["image"]
    views = [torch.stack(v) for v in zip(*[MultiView(transforms)(im) for im in images], strict=True)]
    assert [tuple(v.shape[-2:]) for v in views] == [(32, 32), (32, 32), (14, 14), (14, 14)]
    assert model(views, phase="ssl")["dino_loss"].item() > 0
    simclr = ReLAStudent(create_backbone("test_resnet", cifar_stem=True), "simclr")
    assert not simclr.method.has_teacher and "target" not in " ".join(simclr.state_dict())
