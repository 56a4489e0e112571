#!/usr/bin/env python3
"""Record (or compare against) bitwise fingerprints of short reference runs of the recipes.

A refactor that claims "behaviour unchanged" proves it here: the same commands, before and after,
must produce identical bytes. The runs, on real images (512 Fashion-MNIST training images) with the
real EfficientNet-Lite0 prior, one CPU thread:

- ``make_targets``: ``recipes/make_targets.py`` at 64 px, k = 32 (the target column and whitening);
- ``rela``: ``recipes/byol_rela.py``, 30 optimizer steps, static switch at 0.5 (15 ReLA steps, then
  15 BYOL steps), online classifier on, channels-last;
- ``rela_prior``: 12 steps where the trainer computes the targets itself (``--prior``);
- ``byol``: the BYOL baseline, 30 steps.

Recorded: the SHA-256 of every tensor of the final checkpoint and of the exported backbone, of the
optimizer state, of the targets, and the logged losses. ``--compare`` reports the first difference;
tensors are matched by name, and where names moved (a refactor of the module tree) by content.

    python scripts/reference_runs.py --output before.json
    python scripts/reference_runs.py --compare before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

TRAINER = {
    "image_size": 32,
    "backbone": "resnet18",
    "backbone_kwargs": '{"channels": [16, 32, 64, 128], "stem_width": 16}',
    "per_device_train_batch_size": 32,
    "learning_rate": 0.001,
    "weight_decay": 0.01,
    "momentum": 0.99,
    "mixed_precision": "no",
    "channels_last": "true",
    "dataloader_num_workers": 0,
    "report_to": "none",
    "logging_steps": 1,
    "checkpointing_steps": 10,
    "seed": 7,
    "label_column": "label",
}
RUNS: dict[str, dict[str, Any]] = {
    "rela": {
        "use_rela": "true",
        "switch_rule": "static",
        "switch_fraction": 0.5,
        "max_train_steps": 30,
        "dataset_name": "{targets}",
    },
    "rela_prior": {
        "use_rela": "true",
        "switch_rule": "static",
        "switch_fraction": 0.5,
        "max_train_steps": 12,
        "dataset_name": "{images}",
        "prior": "{prior}",
        "prior_image_size": 64,
        "target_dim": 32,
    },
    "byol": {"method": "byol", "use_rela": "false", "max_train_steps": 30, "dataset_name": "{images}"},
    "dino": {
        "method": "dino",
        "switch_rule": "static",
        "switch_fraction": 0.5,
        "max_train_steps": 20,
        "dataset_name": "{targets}",
        "method_options": '{"hidden_dim": 64, "bottleneck_dim": 32, "out_dim": 128}',
    },
    "simclr": {
        "method": "simclr",
        "switch_rule": "static",
        "switch_fraction": 0.5,
        "max_train_steps": 20,
        "dataset_name": "{targets}",
    },
    "rela_accum": {
        "use_rela": "true",
        "switch_rule": "static",
        "switch_fraction": 0.5,
        "max_train_steps": 12,
        "gradient_accumulation_steps": 2,
        "dataset_name": "{targets}",
        "eval_dataset_name": "{images}",
        "eval_split": "test",
        "eval_steps": 6,
    },
}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def tensor_hashes(path: Path) -> dict[str, str]:
    from safetensors.torch import load_file

    return {
        key: sha(tensor.contiguous().numpy().tobytes()) + f":{tuple(tensor.shape)}"
        for key, tensor in sorted(load_file(str(path)).items())
    }


def optimizer_hashes(path: Path) -> list[str]:
    import torch

    state = torch.load(path, weights_only=True, map_location="cpu")
    values = []

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            values.append(sha(value.contiguous().numpy().tobytes()))
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                walk(value[key])
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
        else:
            values.append(repr(value))

    walk(state["state"])
    return values


def run(command: list[str], log: Path) -> None:
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=str(REPO),
        TOKENIZERS_PARALLELISM="false",
        HF_HUB_DISABLE_TELEMETRY="1",
    )
    with log.open("w") as handle:
        result = subprocess.run(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command[:2])} failed; see {log}\n{log.read_text()[-3000:]}")


def record(work: Path) -> dict[str, Any]:
    python = sys.executable
    assets = work / "assets"
    run(
        [
            python,
            "recipes/prepare_offline_assets.py",
            "--output_dir",
            str(assets),
            "--train_limit",
            "512",
            "--test_limit",
            "128",
            "--seed",
            "0",
        ],
        work / "assets.log",
    )
    images, prior, targets = assets / "fashion_mnist", assets / "efficientnet_lite0", work / "targets"
    run(
        [
            python,
            "recipes/make_targets.py",
            "--dataset",
            str(images),
            "--split",
            "train",
            "--prior",
            str(prior),
            "--image_size",
            "64",
            "--k",
            "32",
            "--output_dir",
            str(targets),
            "--batch_size",
            "64",
        ],
        work / "targets.log",
    )
    import datasets
    import numpy as np

    column = np.asarray(datasets.load_from_disk(str(targets)).with_format("numpy")["rela_target"], dtype=np.float32)
    out: dict[str, Any] = {
        "targets": {
            "rela_target": sha(column.tobytes()),
            "rela_whitening.safetensors": tensor_hashes(targets / "rela_whitening.safetensors"),
        },
        "runs": {},
    }
    for name, options in RUNS.items():
        run_dir = work / name
        values = {**TRAINER, **options, "output_dir": str(run_dir)}
        argv = []
        for key, value in values.items():
            for placeholder, path in (("{targets}", targets), ("{images}", images), ("{prior}", prior)):
                value = str(value).replace(placeholder, str(path))
            argv += [f"--{key}", value]
        run([python, "recipes/byol_rela.py", *argv], work / f"{name}.log")
        summary = json.loads((run_dir / "training_summary.json").read_text())
        checkpoint = run_dir / summary["checkpoint"]
        history = [
            {k: v for k, v in json.loads(line).items() if "loss" in k or k in ("step", "train/rho")}
            for line in (run_dir / "history.jsonl").read_text().splitlines()
        ]
        out["runs"][name] = {
            "switch_step": summary["switch_step"],
            "backbone": tensor_hashes(run_dir / "backbone" / "model.safetensors"),
            "checkpoint": tensor_hashes(checkpoint / "model.safetensors"),
            "optimizer": optimizer_hashes(checkpoint / "optimizer.bin"),
            "history": history,
        }
    return out


def compare(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    problems = []
    if before["targets"] != after["targets"]:
        problems.append("targets differ")
    for name, old in before["runs"].items():
        new = after["runs"].get(name)
        if new is None:
            problems.append(f"{name}: missing")
            continue
        for key in ("switch_step", "backbone", "history"):
            if old[key] != new[key]:
                problems.append(f"{name}: {key} differs")
        if old["checkpoint"] != new["checkpoint"]:
            renamed = sorted(set(old["checkpoint"]) ^ set(new["checkpoint"]))
            if sorted(old["checkpoint"].values()) == sorted(new["checkpoint"].values()):
                print(f"{name}: checkpoint tensors identical, {len(renamed)} names moved (e.g. {renamed[:4]})")
            else:
                changed = [k for k in old["checkpoint"] if new["checkpoint"].get(k) != old["checkpoint"][k]]
                problems.append(f"{name}: checkpoint tensors differ (e.g. {changed[:4]})")
        if sorted(old["optimizer"]) != sorted(new["optimizer"]):
            problems.append(f"{name}: optimizer state differs")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--output", type=Path, help="Write the fingerprints here.")
    group.add_argument("--compare", type=Path, help="Compare with fingerprints recorded earlier.")
    parser.add_argument("--work_dir", type=Path, default=None, help="Keep the runs here (default: a temp dir).")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rela_hf_reference_") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        result = record(work)
    if args.output:
        args.output.write_text(json.dumps(result, indent=1) + "\n")
        print(f"recorded {len(result['runs'])} runs + targets -> {args.output}")
        return
    problems = compare(json.loads(args.compare.read_text()), result)
    if problems:
        raise SystemExit("NOT identical:\n  " + "\n  ".join(problems))
    print("bitwise identical: targets, backbones, checkpoints, optimizer states, losses")


if __name__ == "__main__":
    main()
