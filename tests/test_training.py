"""Training-loop helpers: seeded view pairs, the accumulation-aware step, metric means."""

from __future__ import annotations

import io

import datasets
import pytest
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from torch.utils.data import DataLoader

from rela_hf.backbones import create_backbone
from rela_hf.model import ReLABYOL
from rela_hf.training import (
    MetricMeans,
    ViewCollator,
    ViewDataset,
    forward_seed,
    sample_seed,
    training_step,
)
from rela_hf.views import byol_view_transforms, rela_view_transform

K = 8


@pytest.fixture(autouse=True)
def _fresh_accelerate_state(single_torch_thread):
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


@pytest.fixture(scope="module")
def image_data(fashion_mnist_slice):
    """16 real Fashion-MNIST images with labels and a (random, fixed) K-d target column."""
    data = fashion_mnist_slice.select(range(16))
    targets = torch.randn(len(data), K, generator=torch.Generator().manual_seed(0)).tolist()
    feature = datasets.List(datasets.Value("float32"), length=K)
    return data.add_column("rela_target", targets, feature=feature)


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def view_data(data, **kwargs) -> ViewDataset:
    kwargs.setdefault("target_column", "rela_target")
    kwargs.setdefault("label_column", "label")
    return ViewDataset(data, rela_views=rela_view_transform(32), ssl_views=byol_view_transforms(32), **kwargs)


def test_items_have_views_targets_and_labels(image_data):
    item = view_data(image_data)[3]
    assert item["views"][0].shape == item["views"][1].shape == (3, 32, 32)
    assert item["targets"].dtype == torch.float32 and item["targets"].shape == (K,)
    assert torch.allclose(item["targets"], torch.tensor(image_data[3]["rela_target"]))
    assert item["labels"] == image_data[3]["label"]
    assert not torch.equal(item["views"][0], item["views"][1])  # two independent augmentations


def test_views_depend_only_on_seed_epoch_and_row(image_data):
    data = view_data(image_data, seed=3)
    batch = data.__getitems__([5, 2, 9])
    single = data[2]
    assert torch.equal(batch[1]["views"][0], single["views"][0])  # batching and order do not matter
    data.set_epoch(1)
    assert not torch.equal(data[2]["views"][0], single["views"][0])  # a new epoch, new augmentations
    data.set_epoch(0)
    assert torch.equal(data[2]["views"][1], single["views"][1])
    assert not torch.equal(view_data(image_data, seed=4)[2]["views"][0], single["views"][0])


def test_views_leave_the_global_rng_alone(image_data):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    view_data(image_data).__getitems__([0, 1, 2])
    assert torch.equal(torch.rand(3), expected)


def test_phase_selects_the_view_pipelines(image_data):
    data = view_data(image_data)
    rela = data[4]
    data.set_phase("ssl")
    byol = data[4]
    assert not torch.equal(rela["views"][0], byol["views"][0])
    with pytest.raises(ValueError, match="unknown phase"):
        data.set_phase("dino")
    byol_only = view_data(image_data, target_column=None, phase="ssl")
    assert "targets" not in byol_only[0]
    with pytest.raises(ValueError, match="needs rela_views"):
        ViewDataset(image_data, rela_views=None, ssl_views=byol_view_transforms(32))


def test_missing_columns_are_named(image_data):
    with pytest.raises(ValueError, match="not_there"):
        view_data(image_data, target_column="not_there")


def test_an_undecodable_image_names_its_row(fashion_mnist_slice):
    """With the upfront check off (--verify_images false) a corrupt file still stops the run
    where it is read, naming the row and the way out, never skipped silently."""
    images = [{"bytes": png_bytes(fashion_mnist_slice[i]["image"]), "path": None} for i in range(4)]
    images[2] = {"bytes": b"\x89PNG\r\n\x1a\n" + b"not a png" * 8, "path": None}
    data = datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()}))
    views = view_data(data, target_column=None, label_column=None)
    assert len(views.__getitems__([0, 1])) == 2
    with pytest.raises(ValueError, match=r"Row 2 of the training data.*cannot be decoded.*--verify_images true"):
        views.__getitems__([1, 2, 3])


def test_worker_processes_give_the_same_batches(image_data):
    data = view_data(image_data, seed=1)
    data.set_epoch(2)

    def batches(num_workers):
        loader = DataLoader(data, batch_size=4, num_workers=num_workers, collate_fn=ViewCollator())
        return list(loader)

    for a, b in zip(batches(0), batches(1), strict=True):
        assert torch.equal(a["views"][0], b["views"][0]) and torch.equal(a["views"][1], b["views"][1])
        assert torch.equal(a["targets"], b["targets"]) and torch.equal(a["labels"], b["labels"])


def test_collator_channels_last(image_data):
    batch = ViewCollator(channels_last=True)(view_data(image_data).__getitems__([0, 1]))
    assert batch["views"][0].is_contiguous(memory_format=torch.channels_last)
    assert batch["labels"].dtype == torch.int64 and batch["targets"].shape == (2, K)


def test_seeds_are_stable_and_distinct():
    assert sample_seed(0, 1, 2) == sample_seed(0, 1, 2)
    assert len({sample_seed(0, 1, 2), sample_seed(0, 2, 1), sample_seed(1, 1, 2)}) == 3
    assert forward_seed(0, 0, 5, 0) != forward_seed(0, 0, 5, 1)  # per-process streams
    assert 0 <= forward_seed(7, 3, 2, 1) < 2**63


class CountingReLABYOL(ReLABYOL):
    """Counts EMA updates (the training loop must call it once per optimizer step)."""

    ema_updates = 0

    def update_teacher(self, momentum: float) -> None:
        self.ema_updates += 1
        super().update_teacher(momentum)


def test_ema_and_optimizer_step_once_per_accumulation_cycle(image_data):
    accumulation = 3
    accelerator = Accelerator(cpu=True, gradient_accumulation_steps=accumulation)
    model = CountingReLABYOL(create_backbone("test_resnet", cifar_stem=True), rela_dim=K)
    optimizer = torch.optim.AdamW(model.parameter_groups(0.01), lr=1e-3)
    # 16 images, batch 2: 8 micro-batches = two full cycles of 3 and a last one cut short by
    # the end of the loader (Accelerate syncs there too): 3 optimizer steps
    loader = DataLoader(view_data(image_data), batch_size=2, collate_fn=ViewCollator())
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    target_before = [p.clone() for p in model.method.target_backbone.parameters()]

    syncs, means, step_losses = [], MetricMeans(), []
    for batch in loader:
        out = training_step(accelerator, model, optimizer, batch, phase="rela", momentum=0.9)
        means.add(out)
        syncs.append(accelerator.sync_gradients)
        if accelerator.sync_gradients:
            step_losses.append(means.compute(accelerator)["rela_loss"])

    assert syncs == [False, False, True, False, False, True, False, True]
    assert model.ema_updates == 3 and len(step_losses) == 3
    adam_steps = {int(s["step"]) for s in optimizer.state_dict()["state"].values()}
    assert adam_steps == {3}
    # only parameters that got gradients were ever stepped: the BYOL heads stay untouched
    assert all(p.grad is None for p in model.method.projector.parameters())
    assert any(
        not torch.equal(a, b) for a, b in zip(target_before, model.method.target_backbone.parameters(), strict=True)
    )


def test_training_step_byol_phase_moves_heads(image_data):
    accelerator = Accelerator(cpu=True)
    model = ReLABYOL(create_backbone("test_resnet", cifar_stem=True), rela_dim=K, num_classes=10)
    optimizer = torch.optim.AdamW(model.parameter_groups(0.0), lr=1e-2)
    model, optimizer = accelerator.prepare(model, optimizer)
    batch = ViewCollator()(view_data(image_data, phase="ssl").__getitems__(list(range(4))))
    before = model.method.predictor.fc2.weight.clone()
    head_before = model.transfer_head.weight.clone()
    out = training_step(accelerator, model, optimizer, batch, phase="ssl", momentum=0.99, max_grad_norm=1.0)
    assert {"byol_loss", "classifier_accuracy"} <= set(out)
    assert not torch.equal(before, model.method.predictor.fc2.weight)
    assert torch.equal(head_before, model.transfer_head.weight)


def test_metric_means():
    means = MetricMeans()
    assert not means and means.compute() == {}
    means.add({"loss": torch.tensor(5.0), "a": torch.tensor(1.0)})
    means.add({"loss": torch.tensor(5.0), "a": torch.tensor(2.0), "b": torch.tensor(4.0)})
    assert means.compute() == {"a": 1.5, "b": 4.0}
    means.add({"a": torch.tensor(1.0)})
    means.reset()
    assert not means
