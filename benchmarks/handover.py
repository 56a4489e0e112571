#!/usr/bin/env python
"""The hand-over after ReLA's switch, measured on the plateau profile (benchmarks/plateau.py).

The plateau benchmark showed that after the official hard switch the ImageNet-prior run loses what
its ReLA phase had (83.6 % kNN at step 2,496, the switch at 2,611, ~81.7 afterwards), while the
random-prior run gains after the switch. This script trains the hand-over variants of
``rela_hf.handover`` (``fade``, ``regularize``) and ``load_best_model_at_end`` with the plateau
profile's data, student, optimiser, priors and evaluation, and compares them with the hard switch
and BYOL from the committed plateau results (the same code, bitwise, since the trainer refactor).

To spend the compute where the variants differ, the hand-over variants start from a shared
pre-switch checkpoint: a ``base`` run per prior trains with the default options up to a step before
its switch, and every variant of that prior continues from a copy of that checkpoint (its run
config rewritten to the variant's: the variants differ only after the switch, so up to the fork
they are the same run). ``load_best_model_at_end`` runs start from scratch (they hold out a
validation split, so their data differ from the first step). Every run is evaluated on the test
split (kNN k=200 t=0.1, linear probe) every ``eval_every`` steps and at its last step; a
``load_best_model_at_end`` run also has its exported (best) backbone evaluated.

    python benchmarks/handover.py --config benchmarks/configs/handover.yaml
    python benchmarks/handover.py --config benchmarks/configs/handover.yaml --report_only

Resumable: finished evaluations are kept, training resumes from the newest checkpoint.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import json
import logging
import shutil
import statistics
import sys
from pathlib import Path
from typing import Any

import acceleration as grid  # benchmarks/acceleration.py: config, assets, targets, commands
import plateau  # benchmarks/plateau.py: the checkpoint evaluator
import yaml

from rela_hf.checkpoint import config_fingerprint
from rela_hf.training import ReLATrainingArguments

logger = logging.getLogger("handover")
EVALS_NAME = "handover_evals.json"


def load(path: Path) -> tuple[grid.Benchmark, dict[str, Any]]:
    """The benchmark (the acceleration config format) and its ``handover`` section."""
    bench = grid.Benchmark.from_yaml(path)
    bench.config_path = path.resolve()
    return bench, yaml.safe_load(path.read_text())["handover"]


def trainer_config(bench: grid.Benchmark, study: dict[str, Any], cell: grid.Cell, seed: int) -> dict[str, Any]:
    forks = study["forks"]
    last = study["fork_steps"][cell.prior] if cell.name in forks.values() else study["horizon"]
    return {
        **bench.trainer,
        **cell.trainer_args(),
        "dataset_name": str(bench.targets_dir(cell.prior) if cell.use_rela else bench.dataset_dir),
        "output_dir": str(bench.run_dir(cell, seed)),
        "seed": seed,
        "max_train_steps": last,
        "checkpointing_steps": study["checkpoint_every"],
        "checkpoints_total_limit": None,
    }


def fork(bench: grid.Benchmark, study: dict[str, Any], cell: grid.Cell, seed: int, config: dict[str, Any]) -> None:
    """Copy the base run's pre-switch checkpoint into this run, as this run's own checkpoint."""
    run_dir = bench.run_dir(cell, seed)
    if plateau._complete_checkpoints(run_dir):
        return  # forked earlier (or trained further since)
    base = next(c for c in bench.cells if c.name == study["forks"][cell.name])
    step = study["fork_steps"][cell.prior]
    source = bench.run_dir(base, seed) / f"checkpoint-{step}"
    target = run_dir / source.name
    shutil.copytree(source, target)
    args = ReLATrainingArguments(**config)
    state_file = target / "run_state.json"
    state = json.loads(state_file.read_text())
    state.update(
        run_config=args.run_config(), config=args.to_dict(), config_fingerprint=config_fingerprint(args.run_config())
    )
    state_file.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
    logger.info("%s: forked from %s", cell.name, source)


def evaluate(
    bench: grid.Benchmark, study: dict[str, Any], evaluator: plateau.CheckpointEvaluator, cell: grid.Cell, seed: int
) -> list[dict[str, Any]]:
    """Evaluate the scheduled checkpoints (and the exported backbone of a best-model run)."""
    run_dir = bench.run_dir(cell, seed)
    path = run_dir / EVALS_NAME
    evals = json.loads(path.read_text()) if path.is_file() else []
    done = {(e["step"], e.get("what", "checkpoint")) for e in evals}
    summary = json.loads((run_dir / "training_summary.json").read_text())
    for step, checkpoint in plateau._complete_checkpoints(run_dir):
        if (step % study["eval_every"] and step != summary["steps"]) or (step, "checkpoint") in done:
            continue
        state = json.loads((checkpoint / "run_state.json").read_text())
        evals.append(
            {
                "step": step,
                "what": "checkpoint",
                "switch_step": (state.get("switch") or {}).get("switch_step"),
                "train_seconds": state["train_seconds"],
                **evaluator(checkpoint),
            }
        )
    if summary.get("metric_for_best_model") and not any(e.get("what") == "exported" for e in evals):
        exported = run_dir / f"checkpoint-{summary['exported_step']}"
        evals.append({"step": summary["exported_step"], "what": "exported", **evaluator(exported)})
    evals.sort(key=lambda e: (e["step"], e["what"]))
    plateau.write_json(path, evals)
    return evals


def run_cell(
    bench: grid.Benchmark, study: dict[str, Any], evaluator: plateau.CheckpointEvaluator, cell: grid.Cell, seed: int
) -> str:
    run_dir = bench.run_dir(cell, seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    config = trainer_config(bench, study, cell, seed)
    if cell.name in study["forks"]:
        fork(bench, study, cell, seed, config)
    if (
        not (run_dir / "training_summary.json").is_file()
        or json.loads((run_dir / "training_summary.json").read_text())["steps"] < config["max_train_steps"]
    ):
        config_file = run_dir / "benchmark_config.yaml"
        config_file.write_text(yaml.safe_dump(config, sort_keys=False))
        resume = (
            ["--resume_from_checkpoint", "latest"]
            if plateau._complete_checkpoints(run_dir)
            else ["--overwrite_output_dir"]
        )
        grid.run_command(
            [*bench.launcher, "recipes/byol_rela.py", "--config", str(config_file), *resume],
            run_dir / "train.log",
            grid.child_env(bench),
        )
    if cell.name in study["forks"].values():
        return f"{cell.name}: trained to its fork step"
    evals = evaluate(bench, study, evaluator, cell, seed)
    return f"{cell.name}: {len(evals)} evaluations"


def run_all(bench: grid.Benchmark, study: dict[str, Any], seed: int) -> None:
    for prior in sorted({c.prior for c in bench.cells if c.use_rela}):
        grid.make_targets(bench, prior)
    evaluator = plateau.CheckpointEvaluator(bench)
    bases = [c for c in bench.cells if c.name in study["forks"].values()]
    others = [c for c in bench.cells if c not in bases]
    with concurrent.futures.ThreadPoolExecutor(max_workers=bench.parallel) as pool:
        base_done = {c.name: pool.submit(run_cell, bench, study, evaluator, c, seed) for c in bases}
        scratch = [
            pool.submit(run_cell, bench, study, evaluator, c, seed) for c in others if c.name not in study["forks"]
        ]
        for future in base_done.values():
            logger.info("done: %s", future.result())
        forked = [pool.submit(run_cell, bench, study, evaluator, c, seed) for c in others if c.name in study["forks"]]
        for future in concurrent.futures.as_completed([*scratch, *forked]):
            logger.info("done: %s", future.result())


# ---------------------------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------------------------
def reference_curves(study: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The committed plateau runs (hard switch, BYOL): run -> evaluations by step."""
    curves: dict[str, list[dict[str, Any]]] = {}
    with open(grid.REPO / study["reference_csv"]) as handle:
        for row in csv.DictReader(handle):
            curves.setdefault(row["run"], []).append(
                {
                    "step": int(row["step"]),
                    "knn": float(row["knn"]),
                    "linear": float(row["linear"]),
                    "switch_step": int(row["switch_step"]) if row["switch_step"] else None,
                }
            )
    return curves


def _at(curve: list[dict[str, Any]], step: int) -> dict[str, Any] | None:
    return next((e for e in curve if e["step"] == step), None)


def _knn(e: dict[str, Any] | None) -> str:
    return "—" if e is None else f"{100 * e['knn']:.2f} ({e['step']})"


def _both(e: dict[str, Any] | None) -> str:
    return "—" if e is None else f"{100 * e['knn']:.2f} / {100 * e['linear']:.2f}"


def _step(e: dict[str, Any] | None) -> str:
    return "" if e is None else f" ({e['step']})"


def report(bench: grid.Benchmark, study: dict[str, Any], seed: int) -> str:
    reference = reference_curves(study)
    byol = reference["byol"]
    last_quarter = [e for e in byol if e["step"] >= 0.75 * byol[-1]["step"]]
    byol_level = statistics.fmean(e["knn"] for e in last_quarter)
    horizon = study["horizon"]
    lines = [
        f"# Hand-over after the switch (`{bench.name}`)",
        "",
        bench.description.strip(),
        "",
        f"BYOL's final level (plateau benchmark, mean kNN of its last quarter): {100 * byol_level:.2f} %.",
        "",
        "| run | prior | hand-over | best pre-switch kNN (step) | kNN at the switch + 1 eval | "
        f"kNN / linear at step {horizon} | exported kNN / linear (step) | first step ≥ BYOL's final level |",
        "|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    hard = {"imagenet": reference.get("rela_in1k", []), "random": reference.get("rela_random", [])}
    for prior, curve in hard.items():
        rows.append(("hard (spec), committed plateau run", prior, "hard", curve, None))
    for cell in bench.cells:
        if cell.name in study["forks"].values():
            continue
        path = bench.run_dir(cell, seed) / EVALS_NAME
        evals = json.loads(path.read_text()) if path.is_file() else []
        kind = cell.options.get("handover", "hard") + (
            " + best model" if cell.options.get("load_best_model_at_end") else ""
        )
        rows.append((cell.label or cell.name, cell.prior, kind, evals, cell))
    for label, prior, kind, evals, cell in rows:
        checkpoints = [e for e in evals if e.get("what", "checkpoint") == "checkpoint"]
        full = hard[prior] if cell is not None and cell.name in study["forks"] else []
        switch = next((e["switch_step"] for e in checkpoints if e.get("switch_step")), None)
        before = [e for e in (full + checkpoints) if switch is None or e["step"] <= switch]
        best = max(before, key=lambda e: e["knn"]) if before else None
        after = next((e for e in checkpoints if switch is not None and e["step"] > switch), None)
        end = _at(checkpoints, horizon)
        exported = next((e for e in evals if e.get("what") == "exported"), None)
        reach = next(
            (e["step"] for e in sorted(full + checkpoints, key=lambda e: e["step"]) if e["knn"] >= byol_level), None
        )
        lines.append(
            f"| {label} | {prior} | {kind} | {_knn(best)} | {_knn(after)} | {_both(end)} | "
            f"{_both(exported)}{_step(exported)} | {reach if reach is not None else 'not within the horizon'} |"
        )
    return "\n".join(lines) + "\n"


def only_cells(bench: grid.Benchmark, study: dict[str, Any], names: list[str]) -> grid.Benchmark:
    """The benchmark with only the named cells, and the base runs they fork from."""
    unknown = set(names) - {cell.name for cell in bench.cells}
    if unknown:
        raise SystemExit(f"--cells: no such cell(s) {sorted(unknown)}")
    wanted = set(names) | {study["forks"][name] for name in names if name in study["forks"]}
    return dataclasses.replace(bench, cells=[cell for cell in bench.cells if cell.name in wanted])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--report_only", action="store_true", help="Only rebuild the results.")
    parser.add_argument(
        "--cells",
        nargs="+",
        default=None,
        help="Train only these cells (a variant brings its base run); the results list every finished run.",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    bench, study = load(args.config)
    seed = bench.seeds[0]
    if not args.report_only:
        run_all(only_cells(bench, study, args.cells) if args.cells else bench, study, seed)
    bench.results_dir.mkdir(parents=True, exist_ok=True)
    text = report(bench, study, seed)
    (bench.results_dir / "results.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
