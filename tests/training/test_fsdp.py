"""FSDP2 students on two CPU processes (gloo): training, the sharded EMA, checkpoints, the export.

Accelerate 1.15 does not shard on CPU: with ``cpu=True`` (``ACCELERATE_USE_CPU``) it stays
``MULTI_CPU`` and ``prepare`` wraps the model in DDP even when an FSDP plugin is given (the first
assertion pins this). So the sharded student here is made with torch's ``fully_shard`` the way
Accelerate's ``TRANSFORMER_BASED_WRAP`` does it (the listed classes bottom-up, then the root), and
everything rela-hf owns runs on it: :func:`~rela_hf.training.step.training_step` through the
ReLA -> BYOL (and ReLA -> DINO) switch, the teacher's EMA, the BatchNorm averaging, Accelerate's
own FSDP checkpoint functions (what ``save_state``/``load_state`` call under FSDP2) and the
gathered export. The reference is the same student under DDP, prepared by the same Accelerator
as the trainer's. The inputs are random tensors: both runs see the same ones, their content does
not matter.
"""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any

import datasets
import numpy as np
import pytest
import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from accelerate import Accelerator
from accelerate.utils import (
    DistributedDataParallelKwargs,
    DistributedType,
    FullyShardedDataParallelPlugin,
)
from accelerate.utils.fsdp_utils import (
    fsdp2_load_full_state_dict,
    load_fsdp_model,
    load_fsdp_optimizer,
    save_fsdp_model,
    save_fsdp_optimizer,
)
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor
from torch.distributed.tensor.debug import CommDebugMode

from rela_hf.errors import ConfigError
from rela_hf.evaluation import extract_features
from rela_hf.model import ReLAStudent
from rela_hf.momentum import update_momentum
from rela_hf.preprocessing import eval_transform, official_data_config
from rela_hf.switch import PHASE_RELA, PHASE_SSL
from rela_hf.training import ReLATrainingArguments
from rela_hf.training.divergence import TrainingDiverged, check_finite_weights
from rela_hf.training.fsdp import (
    average_buffers_,
    check_fsdp_version,
    check_hub_options,
    check_sharded_student,
    gather_full_state,
    is_sharded,
)
from rela_hf.training.step import training_step
from tests.recipes.trainer import free_port

# what a user passes as --fsdp_transformer_layer_cls_to_wrap for test_resnet and the methods' heads
WRAP_CLASSES = ("ResNet", "BasicBlock", "Bottleneck", "ProjectionHead", "DINOHead")
K, CLASSES, BATCH = 8, 4, 4
PHASES = (PHASE_RELA, PHASE_RELA, PHASE_SSL, PHASE_SSL)  # the switch after two optimizer steps
SMALL_DINO = {"hidden_dim": 32, "bottleneck_dim": 16, "out_dim": 64, "freeze_last_layer_steps": 3}


def _student(method: str = "byol", seed: int | None = 0) -> ReLAStudent:
    if seed is not None:
        torch.manual_seed(seed)
    options = SMALL_DINO if method == "dino" else None
    backbone = timm.create_model("test_resnet", num_classes=0)
    return ReLAStudent(backbone, method, method_options=options, rela_dim=K, num_classes=CLASSES)


def _shard(student: ReLAStudent, classes: tuple[str, ...] = WRAP_CLASSES) -> ReLAStudent:
    """``fully_shard`` on every module of a listed class, deepest first, then on the root."""
    for module in reversed(list(student.modules())):
        if module is not student and type(module).__name__ in classes:
            fully_shard(module)
    fully_shard(student)
    return student


def _optimizer(student: ReLAStudent) -> torch.optim.Optimizer:
    return torch.optim.AdamW(student.parameter_groups(weight_decay=0.05), lr=1e-2)


def _batches(process: int) -> list[dict[str, torch.Tensor]]:
    """Each process its own micro-batches (one per optimizer step, plus one after the resume)."""
    generator = torch.Generator().manual_seed(100 + process)
    return [
        {
            "views": [torch.randn(BATCH, 3, 32, 32, generator=generator) for _ in range(2)],
            "targets": torch.randn(BATCH, K, generator=generator),
            "labels": torch.randint(0, CLASSES, (BATCH,), generator=generator),
        }
        for _ in range(len(PHASES) + 1)
    ]


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def _max_difference(sharded: ReLAStudent, reference: torch.nn.Module, names: list[str]) -> float:
    mine, theirs = sharded.state_dict(), reference.state_dict()
    return max((_full(mine[n]).float() - theirs[n].float()).abs().max().item() for n in names)


def _same_on_every_process(tensors: list[torch.Tensor]) -> bool:
    flat = torch.cat([t.detach().reshape(-1).float() for t in tensors])
    low, high = flat.clone(), flat.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return torch.equal(low, high)


def _teacher_layout(student: ReLAStudent) -> bool:
    """Every BYOL teacher parameter a DTensor with its online twin's placements and local shape."""
    method = student.method
    pairs = [
        *zip(student.backbone.parameters(), method.target_backbone.parameters(), strict=True),
        *zip(method.projector.parameters(), method.target_projector.parameters(), strict=True),
    ]
    return all(
        isinstance(t, DTensor) and t.placements == o.placements and t.to_local().shape == o.to_local().shape
        for o, t in pairs
    )


def _train(
    accelerator: Accelerator,
    student: ReLAStudent,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: list[dict],
    steps: range | list[int],
) -> None:
    # no clipping: a sharded norm is summed in another order (see _clipping_norms), and Adam's
    # first steps turn last-bit differences of near-zero gradients into +-lr
    for step in steps:
        phase = PHASES[min(step, len(PHASES) - 1)]
        training_step(
            accelerator, model, optimizer, batches[step], phase=phase, momentum=0.9, step=step, unwrapped=student
        )


def _clipping_norms(accelerator: Accelerator, models: list[torch.nn.Module], batch: dict) -> list[float]:
    """The gradient norm ``accelerator.clip_grad_norm_`` finds for each model on one SSL batch."""
    norms = []
    for model in models:
        out = model(batch["views"], phase=PHASE_SSL, labels=batch["labels"])
        accelerator.backward(out["loss"])
        norms.append(float(_full(accelerator.clip_grad_norm_(model.parameters(), 1.0))))
        model.zero_grad(set_to_none=True)
    return norms


def _train_both(accelerator: Accelerator, method: str, batches: list[dict], out: dict[str, Any]) -> tuple:
    """The same steps sharded and under DDP; what differs between them goes into ``out``."""
    sharded, plain = _shard(_student(method)), _student(method)
    optimizer = _optimizer(sharded)
    reference, reference_optimizer = accelerator.prepare(plain, _optimizer(plain))
    ddp = torch.nn.parallel.DistributedDataParallel
    out[f"{method}_reference_is_ddp"] = isinstance(reference, ddp)
    check_sharded_student(sharded)
    _train(accelerator, sharded, sharded, optimizer, batches, range(len(PHASES)))
    _train(accelerator, plain, reference, reference_optimizer, batches, range(len(PHASES)))
    with CommDebugMode() as comm:  # one more EMA step each: sharded, it needs no communication
        sharded.update_teacher(0.9)
    plain.update_teacher(0.9)
    out[f"{method}_ema_collectives"] = comm.get_total_counts()
    names = [name for name, _ in plain.named_parameters()]
    out[f"{method}_parameter_difference"] = _max_difference(sharded, plain, names)
    teacher = [name for name in names if name.startswith(("method.target_", "method.teacher_"))]
    out[f"{method}_teacher_difference"] = _max_difference(sharded, plain, teacher)
    out[f"{method}_buffers_identical"] = _same_on_every_process([b for b in sharded.buffers() if b.is_floating_point()])
    return sharded, optimizer, plain, reference, reference_optimizer


def _images(count: int) -> datasets.Dataset:
    """A few random 32-px images (what the evaluations embed; their content does not matter)."""
    pixels = np.random.default_rng(0).integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    columns = {"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=2)}
    rows = {"image": list(pixels), "label": [i % 2 for i in range(count)]}
    return datasets.Dataset.from_dict(rows, features=datasets.Features(columns))


def _export(
    accelerator: Accelerator, sharded: ReLAStudent, plain: ReLAStudent, process: int, out: dict[str, Any]
) -> None:
    """The gathered backbone (the export) against DDP's; the monitor's features against it."""
    backbone = gather_full_state(sharded.backbone)  # what the export writes
    out["gathered_here"] = backbone is not None  # the main process only
    images, transform = _images(7), eval_transform(official_data_config(32))
    # the kNN monitor's path: each process embeds its batches (7 images: one repeated), gathered
    features, labels = extract_features(sharded.backbone, images, transform, batch_size=2, accelerator=accelerator)
    if process == 0:
        exported = timm.create_model("test_resnet", num_classes=0)
        exported.load_state_dict(backbone, strict=True)
        reference = plain.backbone.state_dict()
        weights = exported.state_dict()
        out["export_difference"] = max(
            (weights[name] - reference[name]).abs().max().item() for name, _ in exported.named_parameters()
        )
        expected, _ = extract_features(exported, images, transform, batch_size=2)
        out["monitor_features"] = (tuple(features.shape), labels.tolist(), (features - expected).abs().max().item())


def _accelerate_rank0_loading(accelerator: Accelerator, out: dict[str, Any]) -> None:
    """Accelerate's ``cpu_ram_efficient_loading`` path, as ``fsdp2_prepare_model`` runs it."""
    student = _student()
    full = student.state_dict()
    student = _shard(student.to(torch.device("meta")))
    try:
        fsdp2_load_full_state_dict(accelerator, student, full)
    except AttributeError as error:  # the first BatchNorm buffer: a plain tensor, no device_mesh
        out["rank0_loading_error"] = str(error)


def _resume(
    accelerator: Accelerator,
    plugin: FullyShardedDataParallelPlugin,
    folder: str,
    trained: tuple,
    batches: list[dict],
    out: dict[str, Any],
) -> None:
    """Save with Accelerate's FSDP functions, load into a fresh sharded student, one more step."""
    sharded, optimizer, plain, reference, reference_optimizer = trained
    save_fsdp_model(plugin, accelerator, sharded, folder)  # what save_state calls under FSDP2
    save_fsdp_optimizer(plugin, accelerator, optimizer, sharded, folder)
    restored = _shard(_student(seed=None))  # other initial weights: everything must be loaded
    restored_optimizer = _optimizer(restored)
    load_fsdp_model(plugin, accelerator, restored, folder)
    load_fsdp_optimizer(plugin, accelerator, restored_optimizer, restored, folder)
    last = [len(PHASES)]  # one more SSL step: uninterrupted, resumed, and under DDP
    _train(accelerator, sharded, sharded, optimizer, batches, last)
    _train(accelerator, restored, restored, restored_optimizer, batches, last)
    _train(accelerator, plain, reference, reference_optimizer, batches, last)
    pairs = zip(sharded.state_dict().values(), restored.state_dict().values(), strict=True)
    equal = [torch.equal(_full(a), _full(b)) for a, b in pairs]  # every process runs every gather
    out["resume_exact"] = all(equal)
    out["clipping_norms"] = _clipping_norms(accelerator, [sharded, restored, reference], batches[0])


def _refusals(sharded: ReLAStudent, plain: ReLAStudent, out: dict[str, Any]) -> None:
    plain_target = copy.deepcopy(plain.backbone)
    before = [p.clone() for p in plain_target.parameters()]
    try:
        update_momentum(sharded.backbone, plain_target, 0.9)
    except ValueError as error:
        out["mixed_sharding_error"] = str(error)
    after = plain_target.parameters()
    out["mixed_sharding_untouched"] = all(torch.equal(a, b) for a, b in zip(before, after, strict=True))
    try:
        check_sharded_student(_shard(_student(), classes=()))  # the root only: Accelerate's NO_WRAP
    except ConfigError as error:
        out["root_only_error"] = str(error)
    check_finite_weights(sharded, step=4)  # a collective over the shards: every process calls it
    poisoned = _shard(_student())
    if dist.get_rank() == 1:  # one bad value in one process's shard stops both
        with torch.no_grad():
            next(poisoned.method.projector.parameters()).to_local().view(-1)[0] = float("nan")
    try:
        check_finite_weights(poisoned, step=5)
    except TrainingDiverged as error:
        out["divergence_error"] = str(error)


def _fsdp_against_ddp(process: int, port: int, folder: str, results) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(process),
        WORLD_SIZE="2",
        LOCAL_RANK=str(process),
        LOCAL_WORLD_SIZE="2",
        OMP_NUM_THREADS="1",
    )
    torch.set_num_threads(1)
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2)
    ddp_options = DistributedDataParallelKwargs(find_unused_parameters=True)  # the trainer's
    accelerator = Accelerator(cpu=True, fsdp_plugin=plugin, kwargs_handlers=[ddp_options])
    out = {"distributed_type": accelerator.distributed_type, "is_fsdp2": accelerator.is_fsdp2}
    try:
        batches = _batches(process)
        trained = _train_both(accelerator, "byol", batches, out)
        out["teacher_sharded_like_student"] = _teacher_layout(trained[0])
        _export(accelerator, trained[0], trained[2], process, out)
        _resume(accelerator, plugin, folder, trained, batches, out)
        _refusals(trained[0], trained[2], out)
        _train_both(accelerator, "dino", batches, out)
        _accelerate_rank0_loading(accelerator, out)
    finally:
        results[process] = out
        dist.destroy_process_group()


@pytest.mark.slow
def test_fsdp2_student_trains_like_ddp_with_a_sharded_teacher():
    results = mp.Manager().dict()
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_fsdp_against_ddp, args=(free_port(), folder, results), nprocs=2, join=True)
    for process in (0, 1):
        out = results[process]
        # the blocker: Accelerate keeps MULTI_CPU (DDP) on CPU, the FSDP plugin is not used
        assert out["distributed_type"] == DistributedType.MULTI_CPU and not out["is_fsdp2"]
        assert out["teacher_sharded_like_student"]
        for method in ("byol", "dino"):
            assert out[f"{method}_reference_is_ddp"]
            assert out[f"{method}_ema_collectives"] == 0  # shard by shard, no all-gather
            # 2 ReLA steps, the switch, 2 method steps: the same weights as DDP, teacher included
            assert out[f"{method}_parameter_difference"] < 1e-6, method
            assert out[f"{method}_teacher_difference"] < 1e-6, method
            assert out[f"{method}_buffers_identical"]  # BatchNorm statistics averaged: one copy
        assert out["resume_exact"]
        sharded_norm, restored_norm, ddp_norm = out["clipping_norms"]  # DTensor-aware clipping
        assert sharded_norm == restored_norm and sharded_norm == pytest.approx(ddp_norm, rel=1e-5)
        assert "must be sharded like the online network" in out["mixed_sharding_error"]
        assert out["mixed_sharding_untouched"]
        assert "--fsdp_transformer_layer_cls_to_wrap ResNet" in out["root_only_error"]
        assert "['method.projector.fc1.weight']" in out["divergence_error"]  # seen by both
        # why the trainer switches cpu_ram_efficient_loading off (configure_fsdp)
        assert "has no attribute 'device_mesh'" in out["rank0_loading_error"]
    assert results[0]["gathered_here"] and not results[1]["gathered_here"]
    assert results[0]["export_difference"] < 1e-6
    shape, labels, difference = results[0]["monitor_features"]
    assert shape == (7, 96) and labels == [0, 1, 0, 1, 0, 1, 0] and difference < 1e-5


# ---- one process, no process group: everything is a no-op or the plain state ------------------


def test_without_sharding_the_helpers_change_nothing():
    student = _student()
    student(_batches(0)[0]["views"], phase=PHASE_SSL)  # BatchNorm statistics move off their start
    before = copy.deepcopy(student.state_dict())
    assert not is_sharded(student)
    check_sharded_student(student)  # nothing to check
    average_buffers_(student)  # one process: nothing to average
    state = gather_full_state(student.backbone)
    assert state.keys() == student.backbone.state_dict().keys()
    assert all(torch.equal(state[n], t) for n, t in student.backbone.state_dict().items())
    assert all(torch.equal(before[n], t) for n, t in student.state_dict().items())


def test_fsdp1_is_refused_with_the_flag_that_gives_fsdp2():
    check_fsdp_version(FullyShardedDataParallelPlugin(fsdp_version=2))
    with pytest.raises(ConfigError, match="--fsdp_version 2"):
        check_fsdp_version(FullyShardedDataParallelPlugin())  # Accelerate's default: FSDP1


@pytest.mark.parametrize(
    "options",
    [
        {"push_to_hub": True, "hub_model_id": "org/run", "hub_strategy": "checkpoint"},
        {"push_to_hub": True, "hub_model_id": "org/run", "hub_strategy": "every_save"},
        {"resume_from_checkpoint": "hub", "hub_model_id": "org/run"},
    ],
)
def test_a_sharded_student_pushes_nothing_at_saves_and_never_resumes_from_the_hub(options, tmp_path):
    args = ReLATrainingArguments(dataset_name="data", output_dir=str(tmp_path), **options)
    check_hub_options(args, sharded=False)  # DDP and one process can
    with pytest.raises(ConfigError, match="--hub_strategy end"):
        check_hub_options(args, sharded=True)


def test_a_sharded_student_may_push_the_export_at_the_end(tmp_path):
    args = ReLATrainingArguments(
        dataset_name="data", output_dir=str(tmp_path), push_to_hub=True, hub_model_id="org/run", hub_strategy="end"
    )
    check_hub_options(args, sharded=True)
