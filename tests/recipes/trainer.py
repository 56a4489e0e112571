"""Helpers of the trainer tests: the recipe as a module, its command line for the tests' tiny
runs, thread and Accelerate-state hygiene, checks of the exported backbone."""

from __future__ import annotations

import contextlib
import socket
import sys
from pathlib import Path

import timm
import torch
from accelerate.state import AcceleratorState, GradientState
from safetensors.torch import load_file

from rela_hf.backbones import create_backbone
from tests.recipes import REPO, load_recipe

RECIPE = REPO / "recipes" / "byol_rela.py"


K = 16


recipe = load_recipe("byol_rela")


@contextlib.contextmanager
def one_thread():
    """One torch thread: tiny models gain nothing from two, shared cores make OpenMP spin badly,
    and runs compared bitwise must use the same thread count (reduction order)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def reset_accelerate() -> None:
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def args(data: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        "--dataset_name",
        str(data),
        "--output_dir",
        str(output_dir),
        "--backbone",
        "test_resnet",
        "--cifar_stem",
        "--image_size",
        "32",
        "--per_device_train_batch_size",
        "8",
        "--max_train_steps",
        "20",
        "--switch_rule",
        "static",
        "--switch_fraction",
        "0.3",
        "--checkpointing_steps",
        "5",
        "--checkpoints_total_limit",
        "3",
        "--dataloader_num_workers",
        "0",
        "--logging_steps",
        "5",
        "--report_to",
        "none",
        *extra,
    ]


def backbone_state(checkpoint: Path) -> dict[str, torch.Tensor]:
    weights = load_file(checkpoint / "model.safetensors")
    return {k.removeprefix("backbone."): v for k, v in weights.items() if k.startswith("backbone.")}


def assert_export_matches(output_dir: Path, checkpoint: Path) -> None:
    """The timm export reloads with plain timm and computes the trained backbone's features."""
    exported = timm.create_model(f"local-dir:{output_dir / 'backbone'}", pretrained=True).eval()
    trained = create_backbone("test_resnet", cifar_stem=True)
    trained.load_state_dict(backbone_state(checkpoint))
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(exported(x), trained.eval()(x), atol=1e-6)


class Killed(Exception):
    """Stands for the process dying right after a checkpoint was written."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def two_process_launch(*recipe_args: str) -> list[str]:
    """``accelerate launch`` of the recipe on 2 processes (gloo on CPU with ACCELERATE_USE_CPU=1)."""
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        str(RECIPE),
        *recipe_args,
    ]
