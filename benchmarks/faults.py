#!/usr/bin/env python
"""Fault injection with figures: kills, make_targets kills, divergence, secrets, load.

What the test suite checks case by case, this script checks in long loops and reports as a table
(``benchmarks/results/faults/``), on real images (Fashion-MNIST) with the project's commands:

1. **Kill loop**: the trainer (``recipes/byol_rela.py``, a checkpoint at every optimizer step,
   pushing checkpoints to a Hub in the background with ``--hub_strategy checkpoint``; the Hub
   answers each request after ``--request_delay`` s, so kills often land mid-push) is SIGKILLed at random
   moments, at least ``--kills`` times, and restarted with ``--resume_from_checkpoint latest`` each
   time. Each kill is classified: during a checkpoint write (a ``checkpoint-*.tmp`` folder was
   left), during a push (a push's snapshot ``.hub-push-*`` was left, or the Hub saw more upload
   preparations than commits), or else. The final
   weights and optimizer state must be bitwise those of an uninterrupted run, and the Hub's copy
   those of the last checkpoint.
2. **make_targets killed mid-map**: ``recipes/make_targets.py`` SIGKILLed at random moments, then
   run again: the output folder is never half written, and the targets equal an uninterrupted
   run's, bit for bit.
3. **Divergence**: learning rate 1e6: the run must stop with a clear message, every checkpoint
   finite, nothing exported or pushed.
4. **Secrets**: ``HF_TOKEN`` is a sentinel for every run above (Hub pushes of the trainer and of
   make_targets); every file written (outputs, logs, caches, summaries, cards) and every file the
   Hub stored is searched for it.
5. **Load**: ``add_rela_targets`` with ``num_proc=2`` on ``--load_images`` images vs one process:
   time, peak resident memory of the process tree (``benchmarks/targets_load.py``), and the
   targets bitwise equal.

    python benchmarks/faults.py                      # the defaults: 20 kills, 20,000 images
    python benchmarks/faults.py --kills 5 --load_images 2000   # a quick pass
    python benchmarks/faults.py --cases kill_loop divergence secrets --kills 5   # the push-related cases
    python benchmarks/faults.py --only_load          # re-measure the load case alone
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # tests.hub_server: the project's Hub-compatible server

import datasets
import numpy as np
import torch
from huggingface_hub import HfApi
from safetensors.torch import load_file
from targets_load import measure_add_rela_targets  # benchmarks/targets_load.py

from rela_hf.assets import fashion_mnist_dataset
from rela_hf.priors import load_prior
from rela_hf.targets import add_rela_targets, save_rela_dataset
from tests.hub_server import FakeHub

logger = logging.getLogger("faults")
CASES = ("kill_loop", "make_targets", "divergence", "load", "secrets")
SENTINEL = "hf_SENTINEL_do_not_leak_0123456789abcdef"
PYTHON = sys.executable


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
def child_env(hub_url: str, hf_home: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(
        HF_ENDPOINT=hub_url,
        HF_TOKEN=SENTINEL,
        HF_HOME=str(hf_home),
        HF_HUB_DISABLE_XET="1",
        HF_HUB_DISABLE_TELEMETRY="1",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
        OMP_NUM_THREADS="1",
        TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(REPO),
    )
    return env


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("a")
    handle.write(f"\n$ {' '.join(command)}\n")
    handle.flush()
    return subprocess.Popen(command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def kill(process: subprocess.Popen) -> bool:
    """SIGKILL the process group; True if it was still running."""
    if process.poll() is not None:
        return False
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    return True


def latest_step(output_dir: Path) -> int:
    steps = [
        int(p.name.split("-")[1])
        for p in output_dir.glob("checkpoint-*")
        if p.name.split("-")[1].isdigit() and (p / "run_state.json").is_file()
    ]
    return max(steps, default=0)


def tensors_equal(a: Path, b: Path) -> bool:
    left, right = load_file(str(a)), load_file(str(b))
    return left.keys() == right.keys() and all(bool((left[k] == right[k]).all()) for k in left)


def optimizers_equal(a: Path, b: Path) -> bool:
    left = torch.load(a, weights_only=True)["state"]
    right = torch.load(b, weights_only=True)["state"]
    return left.keys() == right.keys() and all(
        torch.equal(left[i][key], right[i][key]) for i in left for key in left[i] if torch.is_tensor(left[i][key])
    )


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def prepare_data(work: Path) -> tuple[Path, Path]:
    """64 real images with 16-d targets of a seeded random prior (trainer), and 3,000 raw images."""

    rela_data, raw = work / "rela_data", work / "raw_3000"
    if not (rela_data / "dataset_info.json").is_file():
        torch.manual_seed(0)
        prior = load_prior("test_resnet", pretrained=False, image_size=32)
        save_rela_dataset(
            add_rela_targets(fashion_mnist_dataset("train", limit=64, seed=0), prior, k=16), rela_data, overwrite=True
        )
    if not (raw / "dataset_info.json").is_file():
        fashion_mnist_dataset("train", limit=3000, seed=1).save_to_disk(str(raw))
    return rela_data, raw


def trainer_command(data: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        PYTHON,
        "recipes/byol_rela.py",
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
        "40",
        "--switch_rule",
        "static",
        "--switch_fraction",
        "0.3",
        "--checkpointing_steps",
        "1",
        "--checkpoints_total_limit",
        "2",
        "--dataloader_num_workers",
        "0",
        "--logging_steps",
        "5",
        "--report_to",
        "tensorboard",
        *extra,
    ]


# ---------------------------------------------------------------------------------------------
# 1. the trainer's kill loop
# ---------------------------------------------------------------------------------------------
def kill_loop(hub: Any, data: Path, work: Path, env: dict[str, str], kills: int, rng: random.Random) -> dict[str, Any]:
    reference = work / "trainer_reference"
    shutil.rmtree(reference, ignore_errors=True)
    done = subprocess.run(
        trainer_command(data, reference), cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"reference run failed:\n{done.stderr[-3000:]}")

    output_dir, log = work / "trainer_killed", work / "trainer_killed.log"
    shutil.rmtree(output_dir, ignore_errors=True)
    log.unlink(missing_ok=True)
    repo_id = "faults/trainer"
    push = ["--push_to_hub", "--hub_model_id", repo_id, "--hub_strategy", "checkpoint"]
    records, lives = [], 0
    while True:
        resume = ["--resume_from_checkpoint", "latest"] if latest_step(output_dir) else []
        before, requests_before = latest_step(output_dir), hub.request_count
        process = start(trainer_command(data, output_dir, *push, *resume), env, log)
        lives += 1
        if len(records) >= kills:  # enough kills: let it finish
            if process.wait() != 0:
                raise RuntimeError(f"the final resumed run failed; see {log}")
            break
        if rng.random() < 0.2:  # during startup (imports, data, model): no progress expected
            time.sleep(rng.uniform(0.5, 3.0))
        else:  # once this life has saved a checkpoint: a random moment of steps, saves and pushes
            deadline = time.monotonic() + 300
            while process.poll() is None and latest_step(output_dir) <= before and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(rng.uniform(0.0, 1.5))
        if not kill(process):
            if process.returncode != 0:
                raise RuntimeError(f"a resumed run failed; see {log}")
            break  # it finished before the kill
        preparations = len(hub.find_requests(contains="/preupload/", since=requests_before))
        commits = len(hub.find_requests(contains="/commit/", since=requests_before))
        records.append(
            {
                "after_step": latest_step(output_dir),
                "from_step": before,
                "mid_checkpoint_write": any(output_dir.glob("checkpoint-*.tmp")),
                # a push staged (its snapshot not yet removed) or uploading
                "mid_push": preparations > commits or any(output_dir.glob(".hub-push-*")),
            }
        )
    final = output_dir / "checkpoint-40"
    hub_weights = work / "hub_final.safetensors"
    hub_weights.write_bytes(hub.files(repo_id)["last-checkpoint/model.safetensors"])
    return {
        "kills": len(records),
        "lives": lives,
        "records": records,
        "mid_checkpoint_write": sum(r["mid_checkpoint_write"] for r in records),
        "mid_push": sum(r["mid_push"] for r in records),
        "before_first_checkpoint_of_the_life": sum(r["after_step"] == r["from_step"] for r in records),
        "steps_at_each_kill": [r["after_step"] for r in records],
        "weights_bitwise_equal": tensors_equal(
            final / "model.safetensors", reference / "checkpoint-40" / "model.safetensors"
        ),
        "optimizer_bitwise_equal": optimizers_equal(
            final / "optimizer.bin", reference / "checkpoint-40" / "optimizer.bin"
        ),
        "hub_copy_equals_final": tensors_equal(hub_weights, final / "model.safetensors"),
        "leftover_tmp_folders": len(list(output_dir.glob("*.tmp"))),
    }


# ---------------------------------------------------------------------------------------------
# 2. make_targets killed mid-map
# ---------------------------------------------------------------------------------------------
def targets_command(raw: Path, output_dir: Path, *extra: str) -> list[str]:
    return [
        PYTHON,
        "recipes/make_targets.py",
        "--dataset",
        str(raw),
        "--prior",
        "test_resnet",
        "--random_init",
        "--seed",
        "0",
        "--image_size",
        "32",
        "--k",
        "16",
        "--batch_size",
        "32",
        "--output_dir",
        str(output_dir),
        "--overwrite_output_dir",
        *extra,
    ]


def targets_of(folder: Path) -> Any:
    return np.asarray(datasets.load_from_disk(str(folder)).with_format("numpy")["rela_target"])


def make_targets_kills(raw: Path, work: Path, env: dict[str, str], kills: int, rng: random.Random) -> dict[str, Any]:
    reference = work / "targets_reference"
    fresh_raw = work / "raw_reference"  # its own copy: no map cache shared with the killed runs
    shutil.rmtree(fresh_raw, ignore_errors=True)
    shutil.copytree(raw, fresh_raw)
    done = subprocess.run(
        targets_command(fresh_raw, reference), cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"make_targets reference failed:\n{done.stderr[-3000:]}")
    output_dir, log = work / "targets_killed", work / "targets_killed.log"
    shutil.rmtree(output_dir, ignore_errors=True)
    killed, half_written = 0, 0
    while killed < kills:
        process = start(targets_command(raw, output_dir), env, log)
        time.sleep(rng.uniform(3.0, 12.0))
        if not kill(process):
            break
        killed += 1
        if output_dir.exists() and not (
            (output_dir / "dataset_info.json").is_file() and (output_dir / "rela_targets.json").is_file()
        ):
            half_written += 1
    process = start(targets_command(raw, output_dir), env, log)
    if process.wait() != 0:
        raise RuntimeError(f"make_targets rerun failed; see {log}")
    reused = "Loading cached processed dataset" in log.read_text() or "cached" in log.read_text()
    return {
        "kills": killed,
        "half_written_outputs_seen": half_written,
        "rerun_used_the_cache": reused,
        "targets_bitwise_equal": bool(np.array_equal(targets_of(output_dir), targets_of(reference))),
        "leftover_staging": [p.name for p in work.glob(".targets_killed*")],
    }


# ---------------------------------------------------------------------------------------------
# 3. divergence, 4. secrets, 5. load
# ---------------------------------------------------------------------------------------------
def divergence(data: Path, work: Path, env: dict[str, str]) -> dict[str, Any]:
    output_dir = work / "diverged"
    shutil.rmtree(output_dir, ignore_errors=True)
    command = trainer_command(
        data,
        output_dir,
        "--learning_rate",
        "1e6",
        "--logging_steps",
        "1",
        "--push_to_hub",
        "--hub_model_id",
        "faults/diverged",
        "--hub_strategy",
        "every_save",
    )
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    checkpoints = list(output_dir.glob("checkpoint-*"))
    # the exception line of the traceback: "module.ErrorName: message"
    message = next(
        (line for line in reversed(done.stderr.splitlines()) if re.match(r"^[\w.]+(Error|Diverged): ", line)), ""
    )
    return {
        "exit_code": done.returncode,
        "message": message[-400:],
        "checkpoints_kept": len(checkpoints),
        "all_checkpoints_finite": all(
            all(bool(torch.isfinite(t).all()) for t in load_file(str(c / "model.safetensors")).values())
            for c in checkpoints
        ),
        "exported": (output_dir / "backbone").exists(),
        "pushed": HfApi(endpoint=env["HF_ENDPOINT"], token=False).repo_exists("faults/diverged"),
    }


def secrets(hub: Any, roots: list[Path]) -> dict[str, Any]:
    needle = SENTINEL.encode()
    found, files = [], 0
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                files += 1
                with path.open("rb") as handle:
                    if needle in handle.read():
                        found.append(str(path))
    hub_files = 0
    for repo_type, repo_id in (
        ("model", "faults/trainer"),
        ("model", "faults/diverged"),
        ("dataset", "faults/targets"),
    ):
        try:
            stored = hub.files(repo_id, repo_type=repo_type)
        except Exception as error:  # noqa: BLE001 - a repo that was never created (no push happened)
            logger.info("no %s repo %s on the Hub (%s): nothing to search", repo_type, repo_id, error)
            continue
        for name, content in stored.items():
            hub_files += 1
            if needle in content:
                found.append(f"hub:{repo_id}/{name}")
    return {"files_searched": files, "hub_files_searched": hub_files, "sentinel_found_in": found}


def load(work: Path, env: dict[str, str], images: int) -> dict[str, Any]:
    """num_proc=1 vs 2 on the same images (``targets_load``): time, process-tree memory, targets.

    Unlike the other children, these keep torch's default thread count (no OMP_NUM_THREADS=1):
    one process then uses every core, as a user's would, and each of two workers half of them.
    """
    env = {key: value for key, value in env.items() if key != "OMP_NUM_THREADS"}
    results: dict[str, Any] = {"images": images}
    for num_proc in (1, 2):
        results[f"num_proc_{num_proc}"] = measure_add_rela_targets(
            work / f"load_{num_proc}.npy", images=images, num_proc=num_proc, env=env, cwd=work
        )
    results["targets_bitwise_equal"] = bool(np.array_equal(np.load(work / "load_1.npy"), np.load(work / "load_2.npy")))
    return results


# ---------------------------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------------------------
def render(report: dict[str, Any]) -> str:
    kl, mt, dv, sc, ld = (report.get(k) for k in ("kill_loop", "make_targets", "divergence", "secrets", "load"))
    rows = (
        []
        if kl is None
        else [
            (
                "trainer SIGKILLs (checkpoint every step, background checkpoint pushes)",
                (
                    f"{kl['kills']} kills over {kl['lives']} lives: "
                    f"{kl['mid_checkpoint_write']} during a checkpoint write, {kl['mid_push']} during a push, "
                    f"{kl['before_first_checkpoint_of_the_life']} before the life's first checkpoint"
                ),
            ),
            (
                "final weights / optimizer vs an uninterrupted run",
                f"bitwise equal: {kl['weights_bitwise_equal']} / {kl['optimizer_bitwise_equal']}",
            ),
            ("the Hub's last-checkpoint vs the final checkpoint", f"bitwise equal: {kl['hub_copy_equals_final']}"),
        ]
    )
    rows += (
        []
        if mt is None
        else [
            (
                "make_targets SIGKILLs mid-map",
                (
                    f"{mt['kills']} kills; half-written outputs seen: {mt['half_written_outputs_seen']}; "
                    f"targets bitwise equal after the rerun: {mt['targets_bitwise_equal']}"
                ),
            ),
        ]
    )
    rows += (
        []
        if dv is None
        else [
            (
                "divergence (lr 1e6)",
                (
                    f"exit {dv['exit_code']}; {dv['checkpoints_kept']} checkpoints kept, all finite: "
                    f"{dv['all_checkpoints_finite']}; exported: {dv['exported']}; pushed: {dv['pushed']}"
                ),
            ),
        ]
    )
    rows += (
        []
        if sc is None
        else [
            (
                "secrets (HF_TOKEN sentinel)",
                (
                    f"{sc['files_searched']} files written + {sc['hub_files_searched']} files on the Hub "
                    f"searched; found in: {sc['sentinel_found_in'] or 'none'}"
                ),
            ),
        ]
    )
    rows += (
        []
        if ld is None
        else [
            (
                f"add_rela_targets, {ld['images']:,} images",
                (
                    f"one process: {ld['num_proc_1']['peak_rss_mib']} MiB peak, "
                    f"{ld['num_proc_1']['seconds']} s; num_proc=2: {ld['num_proc_2']['peak_rss_mib']} MiB peak (process tree), "
                    f"{ld['num_proc_2']['seconds']} s; targets bitwise equal: {ld['targets_bitwise_equal']}"
                    + (f" ({ld['conditions']})" if "conditions" in ld else "")
                ),
            ),
        ]
    )
    lines = [
        "# Fault injection (`benchmarks/faults.py`)",
        "",
        report["conditions"],
        "",
        "| fault | outcome |",
        "|---|---|",
        *[f"| {a} | {b} |" for a, b in rows],
        "",
        *([f"Divergence message: `{dv['message']}`", ""] if dv else []),
        "Raw numbers, every kill with its classification: `results.json`.",
    ]
    return "\n".join(lines) + "\n"


def remeasure_load(args: argparse.Namespace) -> None:
    """The load case alone, written into the committed report (the other cases are kept)."""
    work = args.work_dir / "load"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    report = json.loads((args.results_dir / "results.json").read_text())
    report["load"] = load(work, child_env("http://127.0.0.1:9", work / "hf_home"), args.load_images)
    report["load"]["conditions"] = (
        f"re-measured alone at rela-hf {git_revision()}, load average "
        f"{report['load']['num_proc_1']['load_average'][0]} at the start"
    )
    (args.results_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results_dir / "results.md").write_text(render(report))
    print(render(report))


def git_revision() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--kills", type=int, default=20, help="SIGKILLs of the trainer (and of make_targets: a quarter)."
    )
    parser.add_argument("--load_images", type=int, default=20_000)
    parser.add_argument("--work_dir", type=Path, default=REPO / "outputs" / "faults")
    parser.add_argument("--results_dir", type=Path, default=REPO / "benchmarks" / "results" / "faults")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES, help="which faults to inject")
    parser.add_argument(
        "--request_delay",
        type=float,
        default=0.2,
        help="seconds each Hub request waits (a slow link: kills land mid-push more often)",
    )
    parser.add_argument(
        "--only_load", action="store_true", help="Re-measure the load case alone and update it in the existing results."
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if args.only_load:
        remeasure_load(args)
        return

    rng = random.Random(args.seed)
    work = args.work_dir
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    hf_home = work / "hf_home"
    report: dict[str, Any] = {}
    with FakeHub() as hub:
        hub.request_delay = args.request_delay
        env = child_env(hub.url, hf_home)
        os.environ.update({k: env[k] for k in ("HF_ENDPOINT", "HF_HUB_DISABLE_XET")})
        rela_data, raw = prepare_data(work)
        if "kill_loop" in args.cases:
            logger.info("kill loop (%d kills)", args.kills)
            report["kill_loop"] = kill_loop(hub, rela_data, work, env, args.kills, rng)
        if "make_targets" in args.cases:
            logger.info("make_targets kills")
            report["make_targets"] = make_targets_kills(raw, work, env, max(3, args.kills // 4), rng)
            push = subprocess.run(
                targets_command(raw, work / "targets_pushed", "--hub_dataset_id", "faults/targets"),
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if push.returncode != 0:
                raise RuntimeError(f"make_targets push failed:\n{push.stderr[-3000:]}")
        if "divergence" in args.cases:
            logger.info("divergence")
            report["divergence"] = divergence(rela_data, work, env)
        if "load" in args.cases:
            logger.info("load")
            report["load"] = load(work, env, args.load_images)
        if "secrets" in args.cases:
            report["secrets"] = secrets(hub, [work])
    commit = git_revision()
    report = {
        "conditions": (
            f"{os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} at the end; "
            f"rela-hf at {commit}; seed {args.seed}; cases {', '.join(args.cases)}; "
            f"{args.kills} kills; Hub requests delayed {args.request_delay} s."
        ),
        **report,
    }
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.results_dir / "results.md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
