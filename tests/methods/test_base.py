"""The method contract (rela_hf.methods.base): the batch a method gets, its hooks around the
optimizer step, its own momentum schedule and parameter groups; proven by a method written here."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from accelerate import Accelerator

from rela_hf.backbones import create_backbone
from rela_hf.methods import Method, MethodBatch
from rela_hf.model import ReLAStudent
from rela_hf.training import training_step


@dataclass(frozen=True)
class RecordingOptions:
    momentum: float | None = None


class Recording(Method):
    """A method that records what the contract hands it (not registered: built directly)."""

    name = "recording"
    title = "Recording"
    paper = ""
    citation = ""
    loss_name = "recording_loss"
    Options = RecordingOptions

    def __init__(self, backbone, options=None, *, num_classes=None):
        super().__init__(backbone, options, num_classes=num_classes)
        self.head = torch.nn.Linear(self.feature_dim, 4)
        self.batches: list[MethodBatch] = []
        self.calls: list[tuple[str, int]] = []

    def forward(self, batch):
        self.batches.append(batch)
        return self.head(batch.features[0]).pow(2).mean()

    def teacher_momentum(self, step, total_steps):
        return self.options.momentum

    def parameter_groups(self, weight_decay):
        return [{"params": list(self.head.parameters()), "weight_decay": 0.0, "lr": 0.5}]

    def before_optimizer_step(self, step):
        self.calls.append(("before", step))
        assert self.head.weight.grad is not None  # after backward: gradients can be edited here

    def after_optimizer_step(self, step):
        self.calls.append(("after", step))


def _student(options=None):
    backbone = create_backbone("test_resnet", cifar_stem=True)
    model = ReLAStudent(backbone, "byol", num_classes=3)
    model.method = Recording(backbone, options, num_classes=3)  # a method object of our own
    return model


def test_a_method_gets_views_features_labels_and_the_step():
    model = _student()
    views = [torch.randn(4, 3, 32, 32) for _ in range(2)]
    labels = torch.tensor([0, 1, 2, 0])
    model(views, phase="ssl", labels=labels, step=7)
    batch = model.method.batches[-1]
    assert len(batch.features) == 2 and batch.features[0].shape == (4, model.feature_dim)
    assert batch.views[1] is views[1] and torch.equal(batch.labels, labels) and batch.step == 7


def test_own_parameter_groups_and_momentum():
    model = _student(RecordingOptions(momentum=0.5))
    groups = model.parameter_groups(weight_decay=0.01)
    head = {id(p) for p in model.method.head.parameters()}
    assert [{id(p) for p in g["params"]} == head for g in groups] == [False, True, False]
    assert groups[1]["lr"] == 0.5 and not head & {id(p) for p in groups[0]["params"]}
    assert model.teacher_momentum(3, 10, default=0.99) == 0.5
    assert _student().teacher_momentum(3, 10, default=0.99) == 0.99  # None: the trainer's


def test_hooks_run_once_per_optimizer_step_around_it():
    model = _student()
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=2)
    optimizer = torch.optim.AdamW(model.parameter_groups(0.01), lr=1e-3)
    model, optimizer = accelerator.prepare(model, optimizer)
    batch = {"views": [torch.randn(4, 3, 32, 32) for _ in range(2)], "labels": torch.tensor([0, 1, 2, 0])}
    for micro in range(4):  # 4 micro-batches, accumulation 2: optimizer steps 0 and 1
        training_step(accelerator, model, optimizer, batch, phase="ssl", momentum=0.99, step=micro // 2)
    assert model.method.calls == [("before", 0), ("after", 0), ("before", 1), ("after", 1)]


def test_a_method_that_needs_labels_says_so():
    class NeedsLabels(Recording):
        requires_labels = True

    with pytest.raises(ValueError, match="needs num_classes"):
        NeedsLabels(create_backbone("test_resnet"), None, num_classes=None)


def test_the_former_name_warns():
    import rela_hf.methods as methods

    with pytest.warns(FutureWarning, match=r"rela_hf\.methods\.base\.Method"):
        assert methods.SSLMethod is Method
