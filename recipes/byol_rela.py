#!/usr/bin/env python
"""Pretraining accelerated by ReLA, with HF Accelerate: ReLA, then BYOL, DINO, SimCLR or supervised.

ReLA (Sun, Jiang & Lin, NeurIPS 2024, arXiv:2405.14669) first trains the encoder to regress fixed,
PCA-whitened prior embeddings ("efficient data") through a linear transfer head, then switches for
good to the method it accelerates: ``--method byol`` (Grill et al., arXiv:2006.07733, the default
and the paper's), ``dino`` (arXiv:2104.14294), ``simclr`` (arXiv:2002.05709) or ``supervised``
(cross-entropy on the labels); the method's options go in ``--method_options`` (a JSON object, or a
mapping in the YAML config). ``--use_rela false`` is the method alone, the same code path without
the first phase. This script parses the options and runs ``rela_hf.training.ReLATrainer``: the
loop, checkpoints, export and pushes live in the library (a notebook calls the same trainer).

The same script runs everywhere; the global batch is
``per_device_train_batch_size x processes x gradient_accumulation_steps``:

    # one CPU (the offline demo) / one GPU
    accelerate launch --num_processes 1 --cpu recipes/byol_rela.py --config demo
    accelerate launch --num_processes 1 --mixed_precision fp16 recipes/byol_rela.py --config cifar10_resnet18
    # 8 GPUs on one node
    accelerate launch --multi_gpu --num_processes 8 --mixed_precision fp16 recipes/byol_rela.py \\
        --config imagenet_resnet50 --sync_batchnorm
    # 2 nodes x 8 GPUs: the same on each node with its --machine_rank (0 and 1); the output_dir
    # must be on a filesystem both nodes see (checkpoints are written by the main process)
    accelerate launch --multi_gpu --num_machines 2 --num_processes 16 --machine_rank 0 \\
        --main_process_ip 10.0.0.1 --main_process_port 29500 --mixed_precision fp16 \\
        recipes/byol_rela.py --config imagenet_resnet50 --sync_batchnorm
    # 2 CPU processes (gloo): the distributed code path without GPUs. `--cpu` alone would start a
    # single process; ACCELERATE_USE_CPU makes Accelerate pick gloo for the --multi_gpu launch.
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 --num_machines 1 \\
        --mixed_precision no --dynamo_backend no recipes/byol_rela.py --config demo

Resume exactly where a run stopped (model, EMA teacher, optimizer, switch, data position, tracker
run) by repeating the command with ``--resume_from_checkpoint latest`` (a fresh start when there
is no checkpoint yet, so preemptible jobs can always pass it) or ``PATH/checkpoint-<step>``.
Config: ``--config file.yaml`` or a preset name (keys = the option names), then command-line
overrides (``none`` / ``false`` turn a preset's option off); the resolved config is written to
``<output_dir>/config.yaml`` (usable as ``--config`` again).
"""

from __future__ import annotations

from rela_hf.arguments import parse_command_line
from rela_hf.config import presets_dir
from rela_hf.errors import ConfigError, run_command
from rela_hf.run_layout import TrainingSummary
from rela_hf.training import ReLATrainer, ReLATrainingArguments
from rela_hf.training.arguments import translate_former_values

#: kept for scripts written against rela-hf 0.2 (``recipe.ConfigError``)
__all__ = ["ConfigError", "main", "parse_args"]

PRESETS = presets_dir()


def parse_args(argv: list[str] | None = None) -> ReLATrainingArguments:
    """The run's options: ``--config`` (a YAML file or a preset) gives defaults, flags override."""
    return parse_command_line(
        ReLATrainingArguments,
        argv,
        renames=ReLATrainingArguments.renamed,
        presets_dir=PRESETS,
        description=__doc__.split("\n")[0],
        translate=translate_former_values,
    )


def main(argv: list[str] | None = None) -> TrainingSummary:
    args = parse_args(argv)
    return ReLATrainer(args).train()


def cli() -> None:
    """The ``rela-hf-train`` console command (and ``accelerate launch -m rela_hf.recipes.byol_rela``)."""
    run_command(main, "rela-hf-train")


if __name__ == "__main__":
    cli()
