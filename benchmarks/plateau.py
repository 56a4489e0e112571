#!/usr/bin/env python
"""Time-to-accuracy: does ReLA reach BYOL's *final* accuracy sooner? (the plateau profile)

The equal-budget grid of ``benchmarks/acceleration.py`` compares the methods at fixed budgets while
BYOL is still climbing. ReLA's claim (Sun, Jiang & Lin, arXiv:2405.14669) is stronger: the student
reaches the accuracy that full BYOL (arXiv:2006.07733) *finally* reaches, at a fraction of the
compute. This profile measures exactly that, with the grid's data subset, student, optimiser,
priors and evaluation:

1. every run trains through ``recipes/byol_rela.py`` (checkpoint every ``checkpoint_every``
   optimizer steps); while it trains, this script evaluates the checkpoints of a fixed step
   schedule with the kNN (k=200, t=0.1) and linear protocols on the test split;
2. the reference run (BYOL) stops when its kNN accuracy has levelled off: the mean of the last
   ``smooth`` evaluations gains less than ``min_gain_points`` over the mean of the ``smooth``
   evaluations ending at ``1 - window`` of the steps (or at ``max_steps``);
3. the ReLA runs (adaptive switch) train as long as the reference did, evaluated at the same steps;
4. the report: accuracy-vs-compute curves (optimizer steps, and measured seconds with the targets'
   one-off cost added to ReLA), the headline ratio "compute at which ReLA first reaches BYOL's
   plateau accuracy / BYOL's compute to reach it", whether the student passes its prior's own
   features, and what happened after the switch fired.

Resumable: run the same command again; finished evaluations are kept in each run folder, training
continues from the newest checkpoint (older ones are deleted once evaluated).

    python benchmarks/plateau.py --config benchmarks/configs/acceleration_plateau.yaml
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import logging
import os
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import acceleration as grid  # benchmarks/acceleration.py: config, assets, targets, floors
import yaml

logger = logging.getLogger("plateau")

EVALS_NAME = "checkpoint_evals.json"
STOP_NAME = "plateau_stop.json"
_POLL_SECONDS = 15


@dataclass
class PlateauRule:
    """When a run has stopped improving, and which checkpoints are evaluated."""

    max_steps: int
    checkpoint_every: int
    eval_dense_until: int
    eval_every: int
    window: float = 0.25
    min_gain_points: float = 0.3
    smooth: int = 3
    min_steps: int = 0
    reference: str = "byol"

    def evaluated(self, step: int) -> bool:
        """Whether the checkpoint of ``step`` is on the evaluation schedule."""
        if step <= self.eval_dense_until:
            return step % self.checkpoint_every == 0
        return step % self.eval_every == 0 or step == self.max_steps

    def gain(self, evals: list[dict[str, Any]], metric: str = "knn") -> float | None:
        """kNN points gained over the last ``window`` of the steps (smoothed), or None if too early."""
        if len(evals) < 2 * self.smooth:
            return None
        last = evals[-1]["step"]
        earlier = [e for e in evals if e["step"] <= (1.0 - self.window) * last]
        if len(earlier) < self.smooth:
            return None
        recent = statistics.fmean(e[metric] for e in evals[-self.smooth :])
        before = statistics.fmean(e[metric] for e in earlier[-self.smooth :])
        return 100.0 * (recent - before)

    def plateaued(self, evals: list[dict[str, Any]]) -> bool:
        gain = self.gain(evals)
        return gain is not None and evals[-1]["step"] >= self.min_steps and gain < self.min_gain_points


# ---------------------------------------------------------------------------------------------
# evaluating checkpoints
# ---------------------------------------------------------------------------------------------
class CheckpointEvaluator:
    """kNN and linear probe of a checkpoint's online backbone, on the grid's splits (loaded once)."""

    def __init__(self, bench: grid.Benchmark) -> None:
        import torch

        from rela_hf.data import load_image_dataset

        self.bench = bench
        self.train = load_image_dataset(str(bench.dataset_dir), split="train")
        self.test = load_image_dataset(str(bench.dataset_dir), split="test")
        self.train_y, self.test_y = torch.tensor(self.train["label"]), torch.tensor(self.test["label"])
        self.lock = threading.Lock()  # one evaluation at a time: it is the third thread on 2 cores

    def backbone(self, checkpoint: Path):
        from safetensors.torch import load_file

        from rela_hf.backbones import create_backbone

        trainer = self.bench.trainer
        model = create_backbone(
            trainer.get("backbone", "resnet18"),
            cifar_stem=trainer.get("cifar_stem", False),
            **dict(trainer.get("backbone_kwargs") or {}),
        )
        state = load_file(str(checkpoint / "model.safetensors"))
        prefix = "backbone."
        model.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
        return model.eval()

    def __call__(self, checkpoint: Path) -> dict[str, float]:
        from rela_hf.evaluation import extract_features
        from rela_hf.preprocessing import eval_transform, official_data_config

        with self.lock:
            start = time.perf_counter()
            model = self.backbone(checkpoint)
            transform = eval_transform(official_data_config(self.bench.trainer.get("image_size", 32)))
            train_x, _ = extract_features(model, self.train, transform, batch_size=256, device="cpu")
            test_x, _ = extract_features(model, self.test, transform, batch_size=256, device="cpu")
            result = grid._probe(train_x, self.train_y, test_x, self.test_y, self.bench)
            result["eval_seconds"] = time.perf_counter() - start
            return result


def read_evals(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / EVALS_NAME
    return json.loads(path.read_text()) if path.is_file() else []


def write_json(path: Path, value: Any) -> None:
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(part, path)


def _complete_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in run_dir.glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (path / "run_state.json").is_file():
            found.append((int(suffix), path))
    return sorted(found)


def evaluate_new_checkpoints(rule: PlateauRule, evaluator: CheckpointEvaluator, run_dir: Path) -> list[dict[str, Any]]:
    """Evaluate the scheduled checkpoints not yet evaluated; delete all but the newest after."""
    evals = read_evals(run_dir)
    done = {e["step"] for e in evals}
    checkpoints = _complete_checkpoints(run_dir)
    for step, path in checkpoints:
        if step in done or not rule.evaluated(step):
            continue
        state = json.loads((path / "run_state.json").read_text())
        switch = state.get("switch") or {}
        result = evaluator(path)
        evals.append(
            {
                "step": step,
                "train_seconds": state["train_seconds"],
                "images_seen": state["images_seen"],
                "phase": "byol" if switch.get("switched", True) else "rela",
                "switch_step": switch.get("switch_step"),
                "rho": switch.get("rho"),
                **result,
            }
        )
        evals.sort(key=lambda e: e["step"])
        write_json(run_dir / EVALS_NAME, evals)
        logger.info(
            "%s step %d: kNN %.2f linear %.2f (%s)",
            run_dir.name,
            step,
            100 * result["knn"],
            100 * result["linear"],
            evals[-1]["phase"],
        )
    for _, path in checkpoints[:-1]:  # the newest stays: training resumes from it
        shutil.rmtree(path, ignore_errors=True)
    return evals


# ---------------------------------------------------------------------------------------------
# one run: train in a child process, evaluate as checkpoints appear, stop on the rule
# ---------------------------------------------------------------------------------------------
class Stops:
    """The reference run's final step, shared with the other runs (they train as long)."""

    def __init__(self, work_dir: Path) -> None:
        self.path = work_dir / STOP_NAME
        self.lock = threading.Lock()

    def get(self) -> dict[str, Any] | None:
        return json.loads(self.path.read_text()) if self.path.is_file() else None

    def set(self, value: dict[str, Any]) -> None:
        with self.lock:
            write_json(self.path, value)


def start_trainer(bench: grid.Benchmark, rule: PlateauRule, cell: grid.Cell, seed: int) -> subprocess.Popen:
    run_dir = bench.run_dir(cell, seed)
    config = {
        **bench.trainer,
        **cell.trainer_args(),
        "dataset_name": str(bench.targets_dir(cell.prior) if cell.use_rela else bench.dataset_dir),
        "output_dir": str(run_dir),
        "seed": seed,
        "max_train_steps": rule.max_steps,
        "checkpointing_steps": rule.checkpoint_every,
        "checkpoints_total_limit": None,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "benchmark_config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    resume = ["--resume_from_checkpoint", "latest"] if _complete_checkpoints(run_dir) else ["--overwrite_output_dir"]
    command = [*bench.launcher, "recipes/byol_rela.py", "--config", str(config_file), *resume]
    log = (run_dir / "train.log").open("a")
    log.write(f"\n$ {' '.join(command)}\n")
    log.flush()
    logger.info("$ %s", " ".join(command))
    # its own process group, so that stopping it also stops its DataLoader workers
    return subprocess.Popen(
        command, cwd=grid.REPO, env=grid.child_env(bench), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


def stop_trainer(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def target_step(rule: PlateauRule, cell: grid.Cell, stops: Stops) -> int | None:
    """The step this run may stop at: the reference's final step (None while unknown)."""
    if cell.name == rule.reference:
        return None
    stop = stops.get()
    return None if stop is None else stop["step"]


_RESULTS_LOCK = threading.Lock()


def run_cell(
    bench: grid.Benchmark, rule: PlateauRule, evaluator: CheckpointEvaluator, stops: Stops, cell: grid.Cell, seed: int
) -> str:
    run_dir = bench.run_dir(cell, seed)
    if (run_dir / "plateau_done.json").is_file():
        return f"{cell.name}: done earlier"
    process = start_trainer(bench, rule, cell, seed)
    try:
        while True:
            finished = process.poll() is not None
            before = len(read_evals(run_dir))
            evals = evaluate_new_checkpoints(rule, evaluator, run_dir)
            if len(evals) > before:  # keep the committed results current while the runs train
                with _RESULTS_LOCK:
                    write_results(bench, rule, seed)
            last = evals[-1]["step"] if evals else 0
            if cell.name == rule.reference and evals and (rule.plateaued(evals) or last >= rule.max_steps):
                reason = "plateau" if rule.plateaued(evals) else "max_steps"
                stops.set({"step": last, "reason": reason, "gain_points": rule.gain(evals)})
                break
            stop_at = target_step(rule, cell, stops)
            if stop_at is not None and last >= stop_at:
                break
            if finished:
                if process.returncode != 0:
                    raise RuntimeError(
                        f"{cell.name} training failed (exit {process.returncode}); see {run_dir / 'train.log'}"
                    )
                evals = evaluate_new_checkpoints(rule, evaluator, run_dir)
                break
            time.sleep(_POLL_SECONDS)
    finally:
        stop_trainer(process)
    write_json(run_dir / "plateau_done.json", {"last_step": evals[-1]["step"] if evals else 0})
    return f"{cell.name}: {len(evals)} evaluations"


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
def first_reaching(evals: list[dict[str, Any]], accuracy: float, metric: str = "knn") -> dict[str, Any] | None:
    return next((e for e in evals if e[metric] >= accuracy), None)


def summarize(bench: grid.Benchmark, rule: PlateauRule, seed: int, target_seconds: dict[str, float]) -> dict[str, Any]:
    curves = {cell.name: read_evals(bench.run_dir(cell, seed)) for cell in bench.cells}
    reference = curves.get(rule.reference) or []
    stop = Stops(bench.work_dir).get()
    out: dict[str, Any] = {"rule": rule.__dict__, "stop": stop, "runs": {}}
    if not reference:
        return out
    # BYOL's plateau accuracy: the mean over the last `window` of its steps
    last = reference[-1]["step"]
    window = [e for e in reference if e["step"] >= (1.0 - rule.window) * last]
    plateau = {metric: statistics.fmean(e[metric] for e in window) for metric in ("knn", "linear")}
    out["plateau"] = {
        "accuracy": plateau,
        "window_steps": [window[0]["step"], last],
        "reached_plateau": bool(stop and stop.get("reason") == "plateau"),
    }
    byol_reach = first_reaching(reference, plateau["knn"])
    for cell in bench.cells:
        evals = curves[cell.name]
        if not evals:
            continue
        extra = target_seconds.get(cell.prior, 0.0) if cell.use_rela else 0.0
        reach = first_reaching(evals, plateau["knn"])
        switch = next((e["switch_step"] for e in evals if e.get("switch_step") is not None), None)
        best = max(evals, key=lambda e: e["knn"])
        run = {
            "label": cell.label or cell.name,
            "use_rela": cell.use_rela,
            "prior": cell.prior,
            "targets_seconds": extra,
            "last_step": evals[-1]["step"],
            "switch_step": switch,
            "best": {"step": best["step"], "knn": best["knn"], "linear": best["linear"]},
            "final": {"knn": evals[-1]["knn"], "linear": evals[-1]["linear"]},
            "reaches_plateau_at": None,
        }
        if reach is not None and byol_reach is not None:
            run["reaches_plateau_at"] = {"step": reach["step"], "seconds": reach["train_seconds"] + extra}
            run["step_ratio"] = reach["step"] / byol_reach["step"]
            run["seconds_ratio"] = (reach["train_seconds"] + extra) / byol_reach["train_seconds"]
        if switch is not None:
            before = [e for e in evals if e["step"] <= switch]
            after = [e for e in evals if e["step"] > switch]
            if before and after:
                run["around_switch"] = {
                    "last_before": before[-1]["knn"],
                    "first_after": after[0]["knn"],
                    "min_after": min(e["knn"] for e in after),
                    "final": after[-1]["knn"],
                    "max_before": max(e["knn"] for e in before),
                }
        out["runs"][cell.name] = run
    return out


def write_results(bench: grid.Benchmark, rule: PlateauRule, seed: int) -> Path:
    out = bench.results_dir
    out.mkdir(parents=True, exist_ok=True)
    floors_file = bench.work_dir / "floors.json"
    floors = json.loads(floors_file.read_text()) if floors_file.is_file() else {}
    timings = {
        name: json.loads((bench.targets_dir(name) / "benchmark_timing.json").read_text())["seconds"]
        for name in bench.priors
        if (bench.targets_dir(name) / "benchmark_timing.json").is_file()
    }
    rows = [
        {"run": cell.name, "use_rela": cell.use_rela, "prior": cell.prior or "", **e}
        for cell in bench.cells
        for e in read_evals(bench.run_dir(cell, seed))
    ]
    summary = summarize(bench, rule, seed, timings)
    write_json(
        out / "results.json",
        {"benchmark": bench.name, "floors": floors, "target_seconds": timings, "summary": summary, "checkpoints": rows},
    )
    if rows:
        with (out / "checkpoints.csv").open("w", newline="") as handle:
            fields = [
                "run",
                "use_rela",
                "prior",
                "step",
                "images_seen",
                "train_seconds",
                "phase",
                "switch_step",
                "rho",
                "knn",
                "linear",
                "linear_std",
                "eval_seconds",
            ]
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        plot(bench, summary, rows, floors, timings, out / "time_to_accuracy.png")
    (out / "results.md").write_text(render_markdown(bench, summary, floors))
    return out / "results.md"


def render_markdown(bench: grid.Benchmark, summary: dict[str, Any], floors: dict[str, Any]) -> str:
    rule = summary["rule"]
    lines = [
        f"# Plateau benchmark `{bench.name}`: time to BYOL's final accuracy",
        "",
        bench.description.strip(),
        "",
        (
            f"Plateau rule: BYOL stops when the mean kNN of its last {rule['smooth']} evaluations gains less than "
            f"{rule['min_gain_points']} pt over the mean of the {rule['smooth']} evaluations ending at "
            f"{100 * (1 - rule['window']):.0f} % of its steps (not before step {rule['min_steps']}, at most "
            f"{rule['max_steps']}). The ReLA runs train as many steps, evaluated at the same checkpoints."
        ),
        "",
    ]
    plateau = summary.get("plateau")
    stop = summary.get("stop") or {}
    if plateau is None:
        return "\n".join([*lines, "BYOL has no evaluated checkpoint yet."]) + "\n"
    acc = plateau["accuracy"]
    lines.append(
        f"BYOL {'reached its plateau' if plateau['reached_plateau'] else 'did **not** reach the plateau rule'} "
        f"(stopped at step {stop.get('step')}, {stop.get('reason', 'running')}; last-window gain "
        f"{stop.get('gain_points') if stop.get('gain_points') is None else round(stop['gain_points'], 2)} pt). "
        f"Plateau accuracy (mean over steps {plateau['window_steps'][0]}-{plateau['window_steps'][1]}): "
        f"kNN **{100 * acc['knn']:.2f} %**, linear {100 * acc['linear']:.2f} %."
    )
    lines += [
        "",
        (
            "| run | switch step | first reaches BYOL's plateau kNN at step | steps ratio | seconds ratio "
            "(targets included) | best kNN (step) | final kNN / linear |"
        ),
        "|---|---|---|---|---|---|---|",
    ]
    for run in summary["runs"].values():
        reach = run["reaches_plateau_at"]
        lines.append(
            f"| {run['label']} | {run['switch_step'] if run['switch_step'] is not None else ('never' if run['use_rela'] else '—')} | "
            f"{reach['step'] if reach else 'never'} | {run.get('step_ratio', float('nan')):.3f} | "
            f"{run.get('seconds_ratio', float('nan')):.3f} | {100 * run['best']['knn']:.2f} ({run['best']['step']}) | "
            f"{100 * run['final']['knn']:.2f} / {100 * run['final']['linear']:.2f} |"
        )
    prior = ((floors.get("priors") or {}).get("imagenet") or {}).get("test")
    if prior:
        lines += [
            "",
            (
                f"Floors on the same test split: the ImageNet prior's own whitened features kNN "
                f"{100 * prior['knn']:.2f} / linear {100 * prior['linear']:.2f}; raw pixels "
                f"{100 * floors['raw_pixels']['knn']:.2f} / {100 * floors['raw_pixels']['linear']:.2f}."
            ),
        ]
    for run in summary["runs"].values():
        around = run.get("around_switch")
        if around:
            lines.append(
                f"- {run['label']}: switch at step {run['switch_step']}; kNN {100 * around['last_before']:.2f} "
                f"at the last evaluation before it, {100 * around['first_after']:.2f} at the first after, "
                f"lowest after {100 * around['min_after']:.2f}, final {100 * around['final']:.2f}."
            )
    lines += [
        "",
        "![time to accuracy](time_to_accuracy.png)",
        "",
        (
            "Raw per-checkpoint numbers: `checkpoints.csv` (seconds = the trainer's measured training time at "
            "that checkpoint, evaluation excluded; runs shared 2 CPU cores with each other)."
        ),
    ]
    return "\n".join(lines) + "\n"


def plot(
    bench: grid.Benchmark,
    summary: dict[str, Any],
    rows: list[dict[str, Any]],
    floors: dict[str, Any],
    timings: dict[str, float],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"baseline": "tab:blue"}
    palette = iter(["tab:red", "tab:purple", "tab:green", "tab:orange"])
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    for cell in bench.cells:
        mine = [r for r in rows if r["run"] == cell.name]
        if not mine:
            continue
        color = colors["baseline"] if cell.is_baseline else colors.setdefault(cell.name, next(palette))
        extra = timings.get(cell.prior, 0.0) if cell.use_rela else 0.0
        label = cell.label or cell.name
        axes[0].plot([r["step"] for r in mine], [100 * r["knn"] for r in mine], marker=".", color=color, label=label)
        axes[1].plot(
            [(r["train_seconds"] + extra) / 60 for r in mine],
            [100 * r["knn"] for r in mine],
            marker=".",
            color=color,
            label=label,
        )
        switch = next((r["switch_step"] for r in mine if r.get("switch_step") is not None), None)
        if switch is not None and cell.use_rela:
            axes[0].axvline(switch, color=color, linestyle=":", linewidth=1)
    plateau = (summary.get("plateau") or {}).get("accuracy")
    for ax in axes:
        if plateau:
            ax.axhline(100 * plateau["knn"], color="tab:blue", linestyle="--", linewidth=1, label="BYOL plateau kNN")
        prior = ((floors.get("priors") or {}).get("imagenet") or {}).get("test")
        if prior:
            ax.axhline(
                100 * prior["knn"], color="tab:red", linestyle="-.", linewidth=1, label="floor: ImageNet prior targets"
            )
        if floors.get("raw_pixels"):
            ax.axhline(
                100 * floors["raw_pixels"]["knn"], color="gray", linestyle=":", linewidth=1, label="floor: raw pixels"
            )
        ax.grid(True, alpha=0.3)
    axes[0].set_xlabel("optimizer steps (batch 128); dotted: the adaptive switch")
    axes[1].set_xlabel("training minutes (ReLA: + the targets' one-off cost)")
    axes[0].set_ylabel("test kNN top-1 (%)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"Time to BYOL's plateau accuracy ({bench.name})")
    fig.tight_layout(rect=(0, 0.1, 1, 0.95))
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--report_only", action="store_true", help="Only rebuild the results.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    raw = yaml.safe_load(args.config.read_text())
    rule = PlateauRule(**raw["plateau"])
    bench = grid.Benchmark.from_yaml(args.config)
    bench.config_path = args.config.resolve()
    if rule.reference not in {cell.name for cell in bench.cells}:
        raise SystemExit(f"{args.config}: plateau.reference {rule.reference!r} is not a grid cell.")
    seed = bench.seeds[0]
    bench.work_dir.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        import torch

        torch.set_num_threads(bench.threads_per_run or 1)  # the evaluations run in this process
        if not (bench.dataset_dir / "dataset_dict.json").is_file() or not (bench.prior_dir / "config.json").is_file():
            grid.prepare_assets(bench)
        for prior in sorted({cell.prior for cell in bench.cells if cell.use_rela}):
            grid.make_targets(bench, prior)
        grid.floors_job(bench)
        evaluator, stops = CheckpointEvaluator(bench), Stops(bench.work_dir)
        # the reference first, so that its stop step is known as early as possible
        cells = sorted(bench.cells, key=lambda c: c.name != rule.reference)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, bench.parallel)) as pool:
            futures = {pool.submit(run_cell, bench, rule, evaluator, stops, cell, seed): cell.name for cell in cells}
            for future in concurrent.futures.as_completed(futures):
                try:
                    logger.info("done: %s", future.result())
                except Exception as error:  # noqa: BLE001 - one failed run must not stop the others
                    logger.error("FAILED %s: %s", futures[future], error)
                with _RESULTS_LOCK:
                    write_results(bench, rule, seed)
    print(write_results(bench, rule, seed).read_text())


if __name__ == "__main__":
    sys.exit(main())
