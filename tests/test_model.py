"""ReLABYOL: phase gating of gradients, the online probe, the EMA target, optimizer groups."""

from __future__ import annotations

import pytest
import torch

from rela_hf.backbones import create_backbone
from rela_hf.model import ReLABYOL
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
    out = model(view1, view2, phase="rela", targets=targets, labels=labels)
    out["loss"].backward()

    assert set(out) == {"loss", "rela_loss", "classifier_loss", "classifier_accuracy"}
    assert all(g is not None for g in grads(model.backbone))
    assert sum(g.abs().sum() for g in grads(model.backbone)) > 0
    # BYOL heads are not run in the ReLA phase: no gradient at all (None, not zeros)
    assert all(g is None for g in grads(model.projector) + grads(model.predictor))
    # official default: W is a fixed random projection, outside autograd's leaves
    assert not any(p.requires_grad for p in model.transfer_head.parameters())
    assert all(g is None for g in grads(model.transfer_head))
    assert all(g is None for g in grads(model.target_backbone) + grads(model.target_projector))
    assert all(g is not None for g in grads(model.classifier))  # the probe keeps training
    assert torch.allclose(out["loss"].detach(), out["rela_loss"] + out["classifier_loss"])


def test_trainable_transfer_head_gets_gradients_in_rela_phase_only(views):
    view1, view2, targets, _ = views
    model = make_model(trainable_transfer_head=True)
    model(view1, view2, phase="rela", targets=targets)["loss"].backward()
    assert all(g is not None for g in grads(model.transfer_head))

    model.zero_grad(set_to_none=True)
    out = model(view1, view2, phase="byol", targets=targets)
    out["loss"].backward()
    assert set(out) == {"loss", "byol_loss"}
    assert all(g is None for g in grads(model.transfer_head))
    for module in (model.backbone, model.projector, model.predictor):
        assert all(g is not None for g in grads(module))
    assert all(g is None for g in grads(model.target_backbone) + grads(model.target_projector))


def test_online_classifier_never_shapes_the_backbone(views):
    view1, view2, _, labels = views
    model = make_model(num_classes=10)
    model(view1, view2, phase="byol", labels=labels)["loss"].backward()
    with_probe = [g.clone() for g in grads(model.backbone)]
    model.zero_grad(set_to_none=True)
    model(view1, view2, phase="byol")["loss"].backward()  # no labels: no probe loss
    for a, b in zip(with_probe, grads(model.backbone), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_byol_loss_is_bounded_and_probe_accuracy_is_a_fraction(views):
    view1, view2, _, labels = views
    out = make_model(num_classes=10)(view1, view2, phase="byol", labels=labels)
    assert -1.0 <= out["byol_loss"].item() <= 1.0
    assert 0.0 <= out["classifier_accuracy"].item() <= 1.0


def test_update_target_moves_target_towards_online():
    model = make_model()
    with torch.no_grad():
        for p in list(model.backbone.parameters()) + list(model.projector.parameters()):
            p.add_(1.0)
    before = [t.clone() for t in model.target_backbone.parameters()]
    model.update_target(momentum=0.75)
    for old, new, online in zip(before, model.target_backbone.parameters(), model.backbone.parameters(), strict=True):
        assert torch.allclose(new, 0.75 * old + 0.25 * online, atol=1e-6)
    model.update_target(momentum=0.0)
    for target, online in zip(model.target_projector.parameters(), model.projector.parameters(), strict=True):
        assert torch.equal(target, online)


def test_target_network_is_part_of_the_state_dict_and_starts_equal():
    model = make_model()
    keys = model.state_dict().keys()
    assert any(k.startswith("target_backbone.") for k in keys)
    assert any(k.startswith("target_projector.") for k in keys)
    for a, b in zip(model.backbone.state_dict().values(), model.target_backbone.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_parameter_groups_leave_out_target_and_frozen_head():
    model = make_model(num_classes=10)
    main, probe = model.parameter_groups(weight_decay=0.01)
    ids = {id(p) for p in main["params"]}
    assert main["weight_decay"] == 0.01 and probe["weight_decay"] == 0.0
    assert {id(p) for p in probe["params"]} == {id(p) for p in model.classifier.parameters()}
    for frozen in (model.target_backbone, model.target_projector, model.transfer_head):
        assert not ids & {id(p) for p in frozen.parameters()}
    assert {id(p) for p in model.projector.parameters()} <= ids
    trainable = make_model(trainable_transfer_head=True).parameter_groups(0.0)
    assert len(trainable) == 1  # no classifier without num_classes


def test_predictor_hidden_defaults_to_projector_hidden():
    model = make_model(rela_dim=None)
    assert model.projector.hidden_dim == 2 * model.feature_dim  # official ReLA
    assert model.predictor.hidden_dim == model.projector.hidden_dim
    assert model.transfer_head is None and model.rela_dim is None


def test_bad_inputs_are_reported(views):
    view1, view2, targets, _ = views
    with pytest.raises(ValueError, match="unknown phase"):
        make_model()(view1, view2, phase="simclr")
    with pytest.raises(ValueError, match="needs `targets`"):
        make_model()(view1, view2, phase="rela")
    with pytest.raises(ValueError, match="rela_dim"):
        make_model(rela_dim=None)(view1, view2, phase="rela", targets=targets)
    with pytest.raises(ValueError, match="target width"):
        make_model(rela_dim=8)(view1, view2, phase="rela", targets=targets)
    with pytest.raises(TypeError, match="num_features"):
        ReLABYOL(torch.nn.Linear(3, 3))


def test_byol_views_work_with_the_model(cifar10_images):
    pair = TwoViews(*byol_view_transforms(32))
    view1, view2 = (torch.stack(v) for v in zip(*[pair(im) for im in cifar10_images.select(range(4))["image"]], strict=True))
    out = make_model()(view1, view2, phase="byol")
    assert out["loss"].requires_grad
