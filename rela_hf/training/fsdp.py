"""Fully sharded students (FSDP2): the few things rela-hf adds to Accelerate's FSDP support.

``accelerate launch --use_fsdp --fsdp_version 2 ...`` makes Accelerate shard the prepared
:class:`~rela_hf.model.ReLAStudent` with torch's ``fully_shard``: every parameter becomes a DTensor
split along its first dimension over the processes, the teacher's like the student's (the
teacher is a submodule, and a wrap policy by class name gives its blocks the same boundaries).
Most of the trainer then works unchanged:

- the EMA (:func:`rela_hf.momentum.update_momentum`) runs shard by shard: the online and teacher
  shards of a parameter hold the same rows on every process, so the update is local, with no
  all-gather;
- phases leave heads unused (the transfer head after the switch, the method's heads before):
  FSDP2 reduce-scatters only the parameters that received a gradient, and every process runs the
  same phase, so the collectives match (DDP's ``find_unused_parameters`` has no FSDP counterpart
  and needs none).

What this module adds:

- :func:`configure_fsdp`: before ``prepare``, FSDP1 is refused (:func:`check_fsdp_version`:
  ``--use_fsdp`` alone means FSDP1 in Accelerate 1.15), the Hub options are checked and Accelerate's
  ``cpu_ram_efficient_loading`` (``accelerate launch``'s default) is switched off: every process
  builds the student itself from the seed, and Accelerate 1.15's rank-0 broadcast of the weights
  (``fsdp2_load_full_state_dict``) fails on the first plain-tensor entry of the state dict, a
  BatchNorm buffer (``'Tensor' object has no attribute 'device_mesh'``).
- :func:`check_sharded_student`: the evaluations call ``student.backbone`` on its own, which only
  works when the backbone is an FSDP unit; and a teacher left out of the sharding could not be
  moved shard by shard. Both are refused before training, with the fix.
- :func:`average_buffers_`: FSDP shards parameters, never buffers, and (unlike DDP, which
  broadcasts rank 0's buffers at every forward) never synchronises them: each process's
  BatchNorm running statistics would follow its own batches, and a checkpoint would keep one
  process's copy. Averaging them after each optimizer
  step keeps every process identical, so evaluations, checkpoints and exports agree and a resume
  is exact (timm's ``distribute_bn`` does the same once per epoch).
- :func:`check_hub_options`: pushes at saves export from the main process alone (a sharded
  backbone needs every process), and a sharded checkpoint (``torch.distributed.checkpoint``)
  keeps its index in a hidden, pickled ``.metadata`` file, which rela-hf neither uploads (hidden
  files are skipped) nor should load from the Hub; so Hub pushes at saves and Hub resumes are
  refused for a sharded student, with the alternatives.
- :func:`gather_full_state`: the full (unsharded) weights of a submodule on the main process, for
  the timm export of the backbone (``unwrap_model(model).backbone`` holds only this process's
  shards).

ReLA: arXiv:2405.14669; FSDP: Zhao et al., arXiv:2304.11277.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from accelerate.logging import get_logger
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
from torch import Tensor, nn
from torch.distributed.fsdp import FSDPModule
from torch.distributed.tensor import DTensor

from rela_hf.errors import ConfigError

if TYPE_CHECKING:
    from accelerate import Accelerator

    from rela_hf.training.arguments import ReLATrainingArguments

__all__ = [
    "average_buffers_",
    "check_fsdp_version",
    "check_hub_options",
    "check_sharded_student",
    "configure_fsdp",
    "gather_full_state",
    "is_sharded",
]

logger = get_logger(__name__)


def is_sharded(model: nn.Module) -> bool:
    """Whether ``model`` was sharded with FSDP2's ``fully_shard`` (by Accelerate or by hand)."""
    return isinstance(model, FSDPModule)


def check_sharded_student(student: nn.Module) -> None:
    """Refuse a sharded student the trainer cannot use, naming the Accelerate option to change.

    Args:
        student: the prepared :class:`~rela_hf.model.ReLAStudent` (a no-op unless it is sharded).

    Raises:
        ConfigError: the backbone is not an FSDP unit of its own, or some parameters (a teacher
            left out with ``ignored_modules``) are not sharded.
    """
    if not is_sharded(student):
        return
    backbone = student.backbone
    if not isinstance(backbone, FSDPModule):
        name = type(backbone).__name__
        raise ConfigError(
            f"FSDP: the backbone ({name}) is not an FSDP unit of its own, so the kNN monitor, the "
            "validation metric and the export cannot call it. Launch with --fsdp_auto_wrap_policy "
            f"TRANSFORMER_BASED_WRAP --fsdp_transformer_layer_cls_to_wrap {name},<its block class> "
            "(e.g. ResNet,Bottleneck or VisionTransformer,Block); the teacher, built from the same "
            "classes, is then sharded at the same boundaries."
        )
    unsharded = [name for name, p in student.named_parameters() if not isinstance(p, DTensor)]
    if unsharded:
        raise ConfigError(
            f"FSDP: {len(unsharded)} parameters are not sharded ({unsharded[:3]}...): the EMA "
            "teacher must be sharded like its student to be updated shard by shard. Do not list "
            "the teacher or the student in --fsdp_ignored_modules."
        )


_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def average_buffers_(model: nn.Module) -> None:
    """Replace BatchNorm running statistics by their mean over the processes (one all-reduce).

    The running means and variances of every BatchNorm layer (SyncBatchNorm's are the same on
    every process already; ``num_batches_tracked`` too) are averaged. The mean of per-process
    running variances is not the variance of the global batch (that needs SyncBatchNorm); it is
    what timm's ``distribute_bn`` reports. Without a process group of more than one process
    nothing happens.
    """
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    buffers = [
        stat
        for module in model.modules()
        if isinstance(module, _BATCH_NORMS)  # not SyncBatchNorm (another class): global already
        for stat in (module.running_mean, module.running_var)
        if stat is not None
    ]
    if not buffers:
        return
    flat = torch.cat([b.detach().reshape(-1).float() for b in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for buffer, mean in zip(buffers, flat.split([b.numel() for b in buffers]), strict=True):
        buffer.copy_(mean.view_as(buffer))


def configure_fsdp(args: ReLATrainingArguments, accelerator: Accelerator) -> None:
    """Under FSDP, before ``accelerator.prepare``: the checks and settings named above."""
    if accelerator.distributed_type != DistributedType.FSDP:
        return
    plugin = accelerator.state.fsdp_plugin
    check_fsdp_version(plugin)
    check_hub_options(args, sharded=True)
    if plugin.cpu_ram_efficient_loading:
        plugin.cpu_ram_efficient_loading = False
        logger.info(
            "FSDP: cpu_ram_efficient_loading switched off (every process builds the "
            "student from the seed; Accelerate's rank-0 broadcast cannot load BatchNorm "
            "buffers)."
        )


def check_fsdp_version(plugin: FullyShardedDataParallelPlugin) -> None:
    """Refuse FSDP1 (flat parameters), which ``accelerate launch --use_fsdp`` gives by default.

    FSDP1 flattens each unit's parameters into one tensor: a unit mixing the trained student and
    the frozen teacher needs ``use_orig_params``, and :func:`~rela_hf.momentum.update_momentum`
    would pair flat views instead of parameters. FSDP2 keeps every parameter a DTensor.

    Args:
        plugin: the run's FSDP plugin (``accelerator.state.fsdp_plugin``).

    Raises:
        ConfigError: ``plugin.fsdp_version`` is not 2.
    """
    if plugin.fsdp_version == 2:
        return
    raise ConfigError(
        f"FSDP: version {plugin.fsdp_version} (flat parameters) cannot move the EMA teacher "
        "parameter by parameter; rela-hf needs FSDP2. Launch with --use_fsdp --fsdp_version 2 "
        "(or fsdp_version: 2 in the accelerate config file)."
    )


def check_hub_options(args: ReLATrainingArguments, *, sharded: bool) -> None:
    """Refuse Hub pushes at saves and Hub resumes for a sharded student.

    A push at a save exports the backbone from the main process alone, while a sharded backbone
    must be gathered by every process; and a sharded checkpoint's index (``.metadata``) is a
    hidden pickle, which rela-hf neither uploads nor loads from the Hub.

    Args:
        args: the run's options (``push_to_hub``, ``hub_strategy``, ``resume_from_checkpoint``).
        sharded: whether the student is sharded (FSDP2).

    Raises:
        ConfigError: ``hub_strategy`` checkpoint/every_save, or ``resume_from_checkpoint hub``,
            for a sharded student.
    """
    pushes_at_saves = args.push_to_hub and args.hub_strategy in ("checkpoint", "every_save")
    if not sharded or not (pushes_at_saves or args.resume_from_checkpoint == "hub"):
        return
    raise ConfigError(
        "FSDP: --hub_strategy checkpoint/every_save and --resume_from_checkpoint hub are not "
        "available with a sharded student (a push at a save exports from the main process alone, "
        "and a sharded checkpoint's index is a hidden, pickled `.metadata` file that rela-hf does "
        "not put on the Hub). Push the export at the end (--hub_strategy end) and resume from the "
        "run's folder (--resume_from_checkpoint latest, on a shared filesystem)."
    )


@torch.no_grad()
def gather_full_state(module: nn.Module) -> dict[str, Tensor] | None:
    """The full weights of ``module`` (a sharded student's submodule) on the main process.

    Every process must call it (each parameter is all-gathered in turn, so at most one full
    parameter is held at a time besides the result); the main process (rank 0) gets the state
    dict with plain CPU tensors, the others ``None``. Without sharding it is the module's own
    state dict, detached on CPU.

    Args:
        module: e.g. ``student.backbone`` of a student prepared with FSDP2.

    Returns:
        ``{name: tensor}`` on rank 0 (or without a process group), ``None`` elsewhere.
    """
    main = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0
    state = {}
    for name, value in module.state_dict().items():
        full = value.full_tensor() if isinstance(value, DTensor) else value
        if main:
            state[name] = full.detach().cpu().clone()
    return state if main else None
