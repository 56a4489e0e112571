"""The supervised method: cross-entropy of a linear classifier, its views, its need for labels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from rela_hf.backbones import create_backbone
from rela_hf.methods import MethodBatch, build_method


def test_loss_is_the_cross_entropy_of_the_classifier():
    torch.manual_seed(0)
    backbone = create_backbone("test_resnet", cifar_stem=True)
    method = build_method("supervised", backbone, {"label_smoothing": 0.2}, num_classes=5)
    features = [torch.randn(6, backbone.num_features)]
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    loss = method(MethodBatch(features=features, views=[torch.zeros(6, 3, 32, 32)], labels=labels))
    logits = features[0] @ method.classifier.weight.T + method.classifier.bias
    # label smoothing by hand: (1 - e) * NLL + e * mean over classes of -log p
    log_p = F.log_softmax(logits, dim=1)
    expected = (0.8 * -log_p[torch.arange(6), labels] + 0.2 * -log_p.mean(dim=1)).mean()
    assert torch.allclose(loss, expected, atol=1e-6)
    loss.backward()
    assert method.classifier.weight.grad is not None


def test_needs_labels_and_classes():
    backbone = create_backbone("test_resnet")
    with pytest.raises(ValueError, match="trains on labels"):
        build_method("supervised", backbone)
    method = build_method("supervised", backbone, num_classes=3)
    with pytest.raises(ValueError, match="needs the batch's labels"):
        method(MethodBatch(features=[torch.randn(2, backbone.num_features)], views=[torch.zeros(2, 3, 8, 8)]))
    assert method.requires_labels and not method.self_supervised


def test_one_view_of_the_requested_size(cifar10_images):
    views = build_method("supervised", create_backbone("test_resnet"), num_classes=10).view_transforms(32)
    assert len(views) == 1 and views[0](cifar10_images[0]["image"]).shape == (3, 32, 32)


def test_options_are_checked():
    with pytest.raises(ValueError, match="label_smoothing"):
        build_method("supervised", create_backbone("test_resnet"), {"label_smoothing": 1.5}, num_classes=2)
    with pytest.raises(ValueError, match="crop_scale"):
        build_method("supervised", create_backbone("test_resnet"), {"crop_scale": [0.5, 0.2]}, num_classes=2)
