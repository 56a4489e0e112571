#!/usr/bin/env python
"""Training step times with and without Hub pushes at every save, side by side, on a slow Hub.

The trainer (``rela_hf.training.ReLATrainer``, what ``recipes/byol_rela.py`` runs) trains the
same run (real Fashion-MNIST images, ReLA targets of a seeded random prior, a checkpoint every
``--checkpointing_steps``) in four modes, against the project's Hub-compatible test server
(``tests/hub_server.py``, in its own process) where every request waits ``--request_delay``
seconds (a slow link):

- ``none``: no push (the reference);
- ``background``: ``--push_to_hub --hub_strategy checkpoint``: model, card, curves and
  ``last-checkpoint/`` pushed at each save in the background; a save is not pushed while the
  previous push still uploads (the HF Trainer's behaviour);
- ``always``: the same with ``--hub_always_push`` (every save's push queues);
- ``blocking``: the background mode, but the loop waits for each push to finish: what a push
  inside the training loop (rela-hf 0.2) costs, for contrast.

Modes are interleaved (the order rotates every repeat) so that load changes on a shared machine
hit all of them. Each step's time is measured from the end of the previous optimizer step to the
end of this one, saves included (a save step also exports the backbone and stages the push); the
first ``--warmup`` steps of a run are left out. The final push (``finish``: it waits for the
pushes in flight) is reported apart. Ratios are against ``none``.

    python benchmarks/push_overhead.py                     # CPU, reduced ResNet-18, 0.5 s/request
    python benchmarks/push_overhead.py --request_delay 1.0 --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
MODES = ("none", "background", "always", "blocking")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--request_delay", type=float, default=0.5, help="seconds each Hub request waits")
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--backbone_kwargs", default='{"channels": [16, 32, 64, 128], "stem_width": 16}')
    parser.add_argument("--images", type=int, default=512, help="Fashion-MNIST training images")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per run")
    parser.add_argument("--checkpointing_steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3, help="first steps of a run left out")
    parser.add_argument("--repeats", type=int, default=3, help="runs per mode (interleaved)")
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--work_dir", type=Path, default=REPO / "outputs" / "push_overhead")
    parser.add_argument("--results_dir", type=Path, default=REPO / "benchmarks" / "results" / "push")
    return parser.parse_args()


def start_slow_hub(delay: float, log: Path) -> tuple[subprocess.Popen, str]:
    """The test Hub in its own process (its threads do not compete with the trainer's)."""
    command = [sys.executable, str(REPO / "tests" / "hub_server.py"), "--port", "0", "--request-delay", str(delay)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log.open("w"), text=True)
    first_line = process.stdout.readline()
    if "serving at" not in first_line:
        process.kill()
        raise RuntimeError(f"the test Hub did not start: {first_line!r}; see {log}")
    return process, first_line.split("serving at", 1)[1].strip()


def hub_environment(url: str, hf_home: Path) -> None:
    """Point every Hugging Face library at the test Hub (before any of them is imported)."""
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.pop(name, None)
    os.environ.update(
        HF_ENDPOINT=url,
        HF_HUB_DISABLE_XET="1",
        HF_TOKEN="hf_benchmark_dummy",
        HF_HOME=str(hf_home),
        HF_UPDATE_DOWNLOAD_COUNTS="0",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        HF_DATASETS_DISABLE_PROGRESS_BARS="1",
        TOKENIZERS_PARALLELISM="false",
        TQDM_DISABLE="1",
    )


def run_mode(mode: str, repeat: int, data: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One training run in ``mode``; its step times and what reached the Hub."""
    # imported here, after hub_environment(): the HF libraries read HF_ENDPOINT once, at import
    from accelerate.state import AcceleratorState, GradientState
    from huggingface_hub import HfApi

    from rela_hf.training import ReLATrainer, ReLATrainingArguments

    class TimedTrainer(ReLATrainer):
        """The trainer, with the end time of every optimizer step (and ``blocking`` waits)."""

        def setup(self) -> None:
            super().setup()
            logging.getLogger("httpx2").setLevel(logging.WARNING)  # one line per Hub request otherwise
            self.step_ends, self.cpu_ends = [time.perf_counter()], [time.thread_time()]

        def optimizer_step_done(self) -> bool:
            stop = super().optimizer_step_done()
            self.step_ends.append(time.perf_counter())
            self.cpu_ends.append(time.thread_time())  # the loop thread's own CPU: steadier under load
            return stop

        def checkpoint_if_due(self) -> None:
            super().checkpoint_if_due()
            if mode == "blocking" and self.publisher.pusher is not None:
                self.publisher.pusher.wait()

        def finish(self) -> Any:
            self.loop_end = time.perf_counter()
            return super().finish()

    output_dir = args.work_dir / f"{mode}_{repeat}"
    shutil.rmtree(output_dir, ignore_errors=True)
    repo_id = f"bench/push-{mode}-{repeat}"
    push = (
        {}
        if mode == "none"
        else {
            "push_to_hub": True,
            "hub_model_id": repo_id,
            "hub_strategy": "checkpoint",
            "hub_always_push": mode == "always",
        }
    )
    options = ReLATrainingArguments(
        dataset_name=str(data),
        output_dir=str(output_dir),
        backbone=args.backbone,
        backbone_kwargs=args.backbone_kwargs,
        cifar_stem=True,
        image_size=32,
        per_device_train_batch_size=args.batch_size,
        max_train_steps=args.steps,
        switch_rule="static",
        switch_fraction=0.3,
        checkpointing_steps=args.checkpointing_steps,
        checkpoints_total_limit=2,
        dataloader_num_workers=0,
        logging_steps=10,
        report_to="none",
        **push,
    )
    trainer = TimedTrainer(options)
    start = time.perf_counter()
    try:
        trainer.train()
    finally:
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    end = time.perf_counter()
    steps = [b - a for a, b in itertools.pairwise(trainer.step_ends)][args.warmup :]
    cpu = [b - a for a, b in itertools.pairwise(trainer.cpu_ends)][args.warmup :]
    numbers = range(args.warmup + 1, args.steps + 1)  # the optimizer step each time belongs to
    saves = [t for t, n in zip(steps, numbers, strict=False) if n % args.checkpointing_steps == 0 and n < args.steps]
    commits = [] if mode == "none" else [c.title for c in HfApi().list_repo_commits(repo_id)]
    return {
        "mode": mode,
        "repeat": repeat,
        "step_seconds": steps,
        "mean_step": statistics.fmean(steps),
        "median_step": statistics.median(steps),
        "median_save_step": statistics.median(saves) if saves else None,
        "loop_cpu_per_step": statistics.fmean(cpu),
        "loop_seconds": trainer.loop_end - trainer.step_ends[0],
        "finish_seconds": end - trainer.loop_end,
        "total_seconds": end - start,
        "pushes_at_saves": sum(title.startswith("Training in progress") for title in commits),
        "final_pushed": "End of training" in commits,
    }


def prepare_data(work: Path, images: int) -> Path:
    """Real Fashion-MNIST images with 16-d targets of a seeded random prior (cached)."""
    import torch

    from rela_hf.assets import fashion_mnist_dataset
    from rela_hf.priors import load_prior
    from rela_hf.targets import add_rela_targets, save_rela_dataset

    folder = work / f"fashion_mnist_{images}_rela"
    if not (folder / "dataset_info.json").is_file():
        torch.manual_seed(0)
        prior = load_prior("test_resnet", pretrained=False, image_size=32)
        save_rela_dataset(
            add_rela_targets(fashion_mnist_dataset("train", limit=images, seed=0), prior, k=16), folder, overwrite=True
        )
    return folder


def summarize(runs: list[dict[str, Any]], modes: list[str]) -> dict[str, dict[str, float]]:
    """Per mode: means over its repeats; ratios against ``none`` (when it ran)."""
    table = {}
    for mode in modes:
        rows = [r for r in runs if r["mode"] == mode]
        table[mode] = {
            key: statistics.fmean(r[key] for r in rows)
            for key in (
                "mean_step",
                "median_step",
                "loop_cpu_per_step",
                "loop_seconds",
                "finish_seconds",
                "pushes_at_saves",
            )
        }
        saves = [r["median_save_step"] for r in rows if r["median_save_step"] is not None]
        table[mode]["median_save_step"] = statistics.fmean(saves) if saves else float("nan")
    if "none" in table:
        for row in table.values():
            row["mean_step_ratio"] = row["mean_step"] / table["none"]["mean_step"]
            row["loop_ratio"] = row["loop_seconds"] / table["none"]["loop_seconds"]
            row["loop_cpu_ratio"] = row["loop_cpu_per_step"] / table["none"]["loop_cpu_per_step"]
    return table


def render(table: dict[str, dict[str, float]], conditions: str) -> str:
    lines = [
        "# Push overhead (`benchmarks/push_overhead.py`)",
        "",
        conditions,
        "",
        (
            "| mode | mean step (s) | mean step / none | median step (s) | median save step (s) | loop (s) "
            "| loop / none | loop-thread CPU per step (s) | CPU / none | pushes at saves | finish (s) |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    nan = float("nan")
    for mode, row in table.items():
        lines.append(
            f"| {mode} | {row['mean_step']:.3f} | {row.get('mean_step_ratio', nan):.3f} | {row['median_step']:.3f} | "
            f"{row['median_save_step']:.3f} | {row['loop_seconds']:.1f} | {row.get('loop_ratio', nan):.3f} | "
            f"{row['loop_cpu_per_step']:.3f} | {row.get('loop_cpu_ratio', nan):.3f} | {row['pushes_at_saves']:.1f} | "
            f"{row['finish_seconds']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    args = parse_args()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    hf_home = Path(tempfile.mkdtemp(prefix="push_overhead_hf_home_"))
    hub, url = start_slow_hub(args.request_delay, args.work_dir / "hub.log")
    try:
        hub_environment(url, hf_home)
        sys.path.insert(0, str(REPO))
        import torch

        torch.set_num_threads(args.threads)
        data = prepare_data(args.work_dir, args.images)
        runs = []
        for repeat in range(args.repeats):
            order = args.modes[repeat % len(args.modes) :] + args.modes[: repeat % len(args.modes)]
            for mode in order:
                run = run_mode(mode, repeat, data, args)
                print(
                    f"{mode} #{repeat}: mean step {run['mean_step']:.3f} s, loop {run['loop_seconds']:.1f} s, "
                    f"final {run['finish_seconds']:.1f} s, {run['pushes_at_saves']} pushes at saves",
                    flush=True,
                )
                runs.append(run)
    finally:
        hub.kill()
        hub.wait()
        shutil.rmtree(hf_home, ignore_errors=True)
    table = summarize(runs, args.modes)
    load = os.getloadavg()
    conditions = (
        f"{os.cpu_count()} CPU cores, load average {load[0]:.1f} (1 min) at the end; {args.threads} torch "
        f"thread(s); {args.backbone} {args.backbone_kwargs}, batch {args.batch_size}, {args.steps} steps, a "
        f"save every {args.checkpointing_steps}; every Hub request delayed {args.request_delay} s; "
        f"{args.repeats} interleaved runs per mode, first {args.warmup} steps left out."
    )
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "push_overhead.json").write_text(
        json.dumps(
            {
                "conditions": conditions,
                "args": {k: str(v) for k, v in vars(args).items()},
                "summary": table,
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    report = render(table, conditions)
    (args.results_dir / "push_overhead.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
