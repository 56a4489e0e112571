#!/usr/bin/env python
"""ReLA vs the SSL method alone at equal budgets on real images, side by side (the acceleration
benchmark), for BYOL (the default), DINO, SimCLR or supervised training (``trainer.method``).

ReLA (Sun, Jiang & Lin, arXiv:2405.14669) claims BYOL's (arXiv:2006.07733) full-budget accuracy
at a fraction of the compute, and accelerates any method. This script measures what *our* implementation delivers, with the
project's own commands and nothing else, so that the numbers are those a user would get:

1. ``recipes/prepare_offline_assets.py``: real Fashion-MNIST (a fixed random training subset and
   the 10k test images) and the ImageNet EfficientNet-Lite0 prior as a timm folder;
2. ``recipes/make_targets.py``: the whitened ``rela_target`` column, once per prior (the ImageNet
   prior and the same architecture randomly initialised), cached and shared by every grid that
   uses the same data, prior input size and target width;
3. ``recipes/byol_rela.py``: every cell of the grid, the method alone (``use_rela: false``) and
   ReLA through the same code path, the only difference the ``use_rela`` flag (and
   the prior / switch / transfer-head options of the ReLA
   variants). The budget is the spec's data ratio: a fixed number of epochs, each of
   ``floor(r N)`` images, so ``r`` is the fraction of the full optimizer-step budget at a fixed
   batch size, identical for both methods;
4. ``recipes/evaluate_encoder.py``: kNN (k=200, t=0.1) and the official linear probe on the
   frozen encoder, on the test split;
5. the floors every table must show (raw pixels, the randomly initialised student, the prior's
   own features), then a markdown table, raw JSON/CSV and an accuracy-vs-compute plot.

Runs can go ``parallel`` at a time with ``threads_per_run`` threads each (on 2 cores two
one-thread runs beat one two-thread run by ~1.3x). Everything is resumable: a cell whose
``training_summary.json`` and ``eval_results.json`` exist is skipped; an interrupted training run
continues from its last checkpoint. ``--report_only`` rebuilds the results from what exists.

    python benchmarks/acceleration.py --config benchmarks/configs/acceleration_quick.yaml
    python benchmarks/acceleration.py --config benchmarks/configs/acceleration.yaml
    python benchmarks/acceleration.py --config benchmarks/configs/acceleration_gpu.yaml  # GPU
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rela_hf.methods import method_class

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("acceleration")

#: A ReLA cell "matches" the baseline's full-budget accuracy when its mean is at most this many
#: percentage points below the baseline's mean (about the seed-to-seed spread of one cell here).
MATCH_TOLERANCE_POINTS = 0.5
#: The adaptive switch cannot fire before about this many optimizer steps (rela-spec.md).
ADAPTIVE_EARLIEST_STEP = 528


# ---------------------------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------------------------
@dataclass
class Cell:
    """One grid cell: the method alone or with ReLA, at a budget (+ the ReLA variant's options).

    ``use_rela``: ReLA, then the grid's method; false: the method alone. Configs written for
    rela-hf 0.2 say ``method: rela | baseline | byol`` instead (read as ``use_rela``).
    """

    name: str
    data_ratio: float
    use_rela: bool | None = None
    prior: str | None = None
    switch_rule: str = "adaptive"
    switch_fraction: float | None = None
    trainable_transfer_head: bool = False
    label: str = ""
    method: str | None = None  # rela-hf 0.2 configs: rela | baseline | byol
    options: dict[str, Any] = field(default_factory=dict)  # other trainer options of this cell

    def __post_init__(self) -> None:
        if self.use_rela is None:
            if self.method not in ("rela", "baseline", "byol"):
                raise ValueError(f"cell {self.name!r}: set use_rela: true | false")
            self.use_rela = self.method == "rela"

    @property
    def is_baseline(self) -> bool:
        """The method alone."""
        return not self.use_rela

    def trainer_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {"use_rela": self.use_rela, "data_ratio": self.data_ratio, **self.options}
        if self.use_rela:
            args.update(switch_rule=self.switch_rule, trainable_transfer_head=self.trainable_transfer_head)
            if self.switch_fraction is not None:
                args["switch_fraction"] = self.switch_fraction
        return args


@dataclass
class Benchmark:
    """The parsed YAML config (see benchmarks/configs/acceleration.yaml for every key)."""

    name: str
    assets_dir: Path
    cache_dir: Path
    work_dir: Path
    results_dir: Path
    train_limit: int | None
    test_limit: int | None
    subset_seed: int
    priors: dict[str, dict[str, Any]]
    prior_image_size: int | None
    target_dim: int
    trainer: dict[str, Any]
    cells: list[Cell]
    seeds: list[int]
    parallel: int
    threads_per_run: int | None
    launcher: list[str]
    evaluation: dict[str, Any]
    description: str = ""
    env: dict[str, str] = field(default_factory=dict)
    order: str = "longest_first"

    @classmethod
    def from_yaml(cls, path: Path) -> Benchmark:
        raw = yaml.safe_load(path.read_text())
        # "plateau": the profile of benchmarks/plateau.py, which reads this same config format
        known = {
            "name",
            "description",
            "data",
            "priors",
            "trainer",
            "grid",
            "seeds",
            "execution",
            "evaluation",
            "plateau",
            "handover",
        }
        unknown = set(raw) - known
        if unknown:
            raise SystemExit(f"{path}: unknown top-level keys {sorted(unknown)}; expected {sorted(known)}.")
        data, execution = raw["data"], raw.get("execution", {})
        try:
            cells = [Cell(**cell) for cell in raw["grid"]]
        except (TypeError, ValueError) as error:
            raise SystemExit(f"{path}: {error}") from error
        trainer = dict(raw["trainer"])
        if "ssl_method" in trainer:  # rela-hf 0.2's name of the method
            trainer["method"] = trainer.pop("ssl_method")
        for cell in cells:
            if cell.use_rela and cell.prior not in raw["priors"]:
                raise SystemExit(
                    f"{path}: cell {cell.name!r} uses prior {cell.prior!r}, not among {sorted(raw['priors'])}."
                )
        if execution.get("order", "longest_first") not in ("longest_first", "shortest_first"):
            raise SystemExit(f"{path}: execution.order must be longest_first or shortest_first.")
        if len({cell.name for cell in cells}) != len(cells):
            raise SystemExit(f"{path}: cell names must be unique.")
        return cls(
            name=raw["name"],
            description=raw.get("description", ""),
            assets_dir=REPO / data["assets_dir"],
            cache_dir=REPO / data["cache_dir"],
            work_dir=REPO / data["work_dir"],
            results_dir=REPO / data["results_dir"],
            train_limit=data.get("train_limit"),
            test_limit=data.get("test_limit"),
            subset_seed=data.get("subset_seed", 0),
            priors=raw["priors"],
            prior_image_size=data.get("prior_image_size"),
            target_dim=data["target_dim"],
            trainer=trainer,
            cells=cells,
            seeds=list(raw["seeds"]),
            parallel=execution.get("parallel", 1),
            threads_per_run=execution.get("threads_per_run"),
            # "python3" in older configs: this interpreter (a venv's python3 may not be first on PATH)
            launcher=[
                sys.executable if part in ("python", "python3") else part
                for part in execution.get("launcher", [sys.executable])
            ],
            evaluation=raw.get("evaluation", {}),
            env=execution.get("env", {}),
            order=execution.get("order", "longest_first"),
        )

    @property
    def method(self) -> str:
        """The method of the grid (ReLA's, after the switch, and the baseline's)."""
        return self.trainer.get("method", "byol")

    @property
    def ssl_title(self) -> str:
        """The method's name in reports: BYOL, DINO, SimCLR, Supervised."""
        return method_class(self.method).title

    # --- paths ---------------------------------------------------------------------------------
    @property
    def dataset_dir(self) -> Path:
        return self.assets_dir / "fashion_mnist"

    @property
    def prior_dir(self) -> Path:
        return self.assets_dir / "efficientnet_lite0"

    def targets_dir(self, prior: str) -> Path:
        size = self.prior_image_size or "native"
        return self.cache_dir / f"targets_{prior}_{size}px_k{self.target_dim}"

    def run_dir(self, cell: Cell, seed: int) -> Path:
        return self.work_dir / "runs" / f"{cell.name}_s{seed}"


# ---------------------------------------------------------------------------------------------
# running the project's commands
# ---------------------------------------------------------------------------------------------
def child_env(bench: Benchmark) -> dict[str, str]:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_TELEMETRY="1", **bench.env)
    if bench.threads_per_run:
        threads = str(bench.threads_per_run)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def run_command(command: list[str], log_file: Path, env: dict[str, str]) -> None:
    """Run one project command, its output to ``log_file``; a failure names the log."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.info("$ %s", " ".join(command))
    with log_file.open("a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        result = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if result.returncode != 0:
        raise RuntimeError(
            f"{command[1] if len(command) > 1 else command[0]} failed (exit {result.returncode}); see {log_file}"
        )


def prepare_assets(bench: Benchmark) -> None:
    command = [
        sys.executable,
        "recipes/prepare_offline_assets.py",
        "--output_dir",
        str(bench.assets_dir),
        "--seed",
        str(bench.subset_seed),
    ]
    if bench.train_limit:
        command += ["--max_train_samples", str(bench.train_limit)]
    if bench.test_limit:
        command += ["--max_eval_samples", str(bench.test_limit)]
    run_command(command, bench.assets_dir.parent / f"{bench.assets_dir.name}.log", child_env(bench))


def targets_ready(folder: Path) -> bool:
    return (folder / "dataset_info.json").is_file() or (folder / "dataset_dict.json").is_file()


def make_targets(bench: Benchmark, prior: str) -> None:
    """The prior's whitened targets for the training subset, once (cached across grids)."""
    folder = bench.targets_dir(prior)
    if targets_ready(folder):
        logger.info("targets for prior %r cached at %s", prior, folder)
        return
    options = bench.priors[prior]
    command = [
        sys.executable,
        "recipes/make_targets.py",
        "--dataset_name",
        str(bench.dataset_dir),
        "--train_split",
        "train",
        "--prior",
        str(bench.prior_dir),
        "--target_dim",
        str(bench.target_dim),
        "--output_dir",
        str(folder),
        "--overwrite_output_dir",
        "--prior_batch_size",
        "128",
    ]
    if bench.prior_image_size:
        command += ["--prior_image_size", str(bench.prior_image_size)]
    if options.get("random_init"):
        command += ["--prior_random_init", "--seed", str(options.get("seed", 0))]
    if options.get("preprocessing"):
        command += ["--prior_preprocessing", options["preprocessing"]]
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    run_command(command, folder.parent / f"{folder.name}.log", child_env(bench))
    seconds = time.perf_counter() - start
    # the conditions, since a shared machine's load changes the figure several-fold
    note = (
        f"{bench.threads_per_run or 'default'} thread(s), load average {load_before:.1f} before / "
        f"{os.getloadavg()[0]:.1f} after, {bench.parallel} job(s) at a time"
    )
    (folder / "benchmark_timing.json").write_text(json.dumps({"seconds": seconds, "note": note}) + "\n")


def train_cell(bench: Benchmark, cell: Cell, seed: int) -> Path:
    """``recipes/byol_rela.py`` for one cell and seed; skipped when its summary exists."""
    run_dir = bench.run_dir(cell, seed)
    if (run_dir / "training_summary.json").is_file():
        return run_dir
    config = {
        **bench.trainer,
        **cell.trainer_args(),
        "dataset_name": str(bench.targets_dir(cell.prior) if cell.use_rela else bench.dataset_dir),
        "output_dir": str(run_dir),
        "seed": seed,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "benchmark_config.yaml"
    config_file.write_text(yaml.safe_dump(config, sort_keys=False))
    resume = ["--resume_from_checkpoint", "latest"] if any(run_dir.glob("checkpoint*")) else ["--overwrite_output_dir"]
    run_command(
        [*bench.launcher, "recipes/byol_rela.py", "--config", str(config_file), *resume],
        run_dir / "train.log",
        child_env(bench),
    )
    return run_dir


def evaluate_cell(bench: Benchmark, run_dir: Path) -> None:
    """``recipes/evaluate_encoder.py`` on the exported backbone; skipped when done."""
    output = run_dir / "eval_results.json"
    if output.is_file():
        return
    command = [
        sys.executable,
        "recipes/evaluate_encoder.py",
        "--model_name_or_path",
        str(run_dir / "backbone"),
        "--dataset_name",
        str(bench.dataset_dir),
        "--dataset_pretty_name",
        "fashion_mnist",
        "--train_split",
        "train",
        "--eval_split",
        "test",
        "--output_file",
        str(output),
    ]
    flags = {
        "epochs": "probe_epochs",
        "k": "knn_k",
        "temperature": "knn_temperature",
        "batch_size": "per_device_eval_batch_size",
    }
    for key, flag in flags.items():
        if key in bench.evaluation:
            command += [f"--{flag}", str(bench.evaluation[key])]
    run_command(command, run_dir / "eval.log", child_env(bench))
    if method_class(bench.method).requires_labels:  # the classifier the method trained, too
        run_command(
            [
                sys.executable,
                "benchmarks/classifier_accuracy.py",
                "--run_dir",
                str(run_dir),
                "--dataset_name",
                str(bench.dataset_dir),
                "--eval_split",
                "test",
            ],
            run_dir / "eval.log",
            child_env(bench),
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_job(bench: Benchmark, cell: Cell, seed: int) -> str:
    # A run still training under another grid process (an earlier invocation) is waited for,
    # not started twice; the lock holds the pid of the process that trains it.
    lock = bench.run_dir(cell, seed) / "benchmark_running.pid"
    if lock.is_file() and int(lock.read_text()) != os.getpid():
        while _alive(int(lock.read_text())):
            time.sleep(20)
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(str(os.getpid()))
    try:
        run_dir = train_cell(bench, cell, seed)
    finally:
        lock.unlink(missing_ok=True)
    evaluate_cell(bench, run_dir)
    return f"{cell.name} seed {seed}"


def floors_job(bench: Benchmark) -> str:
    """The floors, in a child process with the run's thread count (``--floors_only``)."""
    output = bench.work_dir / "floors.json"
    if not output.is_file():
        run_command(
            [sys.executable, str(Path(__file__).resolve()), "--config", str(bench.config_path), "--floors_only"],
            bench.work_dir / "floors.log",
            child_env(bench),
        )
    return "floors"


# ---------------------------------------------------------------------------------------------
# the floors: raw pixels, the untrained student, the prior's own features
# ---------------------------------------------------------------------------------------------
def _probe(train_x, train_y, test_x, test_y, bench: Benchmark) -> dict[str, float]:
    from rela_hf.evaluation import knn_accuracy, linear_probe

    knn = knn_accuracy(
        train_x,
        train_y,
        test_x,
        test_y,
        k=bench.evaluation.get("k", 200),
        temperature=bench.evaluation.get("temperature", 0.1),
    )
    probe = linear_probe(train_x, train_y, test_x, test_y, epochs=bench.evaluation.get("epochs", 100))
    return {"knn": knn, "linear": probe["accuracy"], "linear_std": probe["accuracy_std"]}


def compute_floors(bench: Benchmark) -> dict[str, Any]:
    """Every reference figure a result must be read against, on the same splits."""
    import numpy as np
    import torch

    from rela_hf.backbones import create_backbone
    from rela_hf.data import load_image_dataset
    from rela_hf.evaluation import extract_features
    from rela_hf.preprocessing import eval_transform, official_data_config

    train = load_image_dataset(str(bench.dataset_dir), split="train")
    test = load_image_dataset(str(bench.dataset_dir), split="test")
    train_y, test_y = torch.tensor(train["label"]), torch.tensor(test["label"])
    device = "cuda" if torch.cuda.is_available() else "cpu"
    floors: dict[str, Any] = {}

    def pixels(split: Any) -> torch.Tensor:
        return torch.tensor(
            np.stack([np.asarray(img.convert("L"), dtype=np.float32).ravel() / 255.0 for img in split["image"]])
        )

    raw_cache = bench.cache_dir / (
        f"floor_raw_pixels_n{len(train)}_{len(test)}_"
        f"{bench.evaluation.get('k', 200)}_{bench.evaluation.get('epochs', 100)}.json"
    )
    if not raw_cache.is_file():
        raw = {
            "what": "raw 28x28 pixels in [0, 1] (784-d)",
            **_probe(pixels(train), train_y, pixels(test), test_y, bench),
        }
        raw_cache.write_text(json.dumps(raw, indent=2) + "\n")
    floors["raw_pixels"] = json.loads(raw_cache.read_text())
    logger.info("floor raw pixels: %s", floors["raw_pixels"])

    trainer = bench.trainer
    kwargs = dict(trainer.get("backbone_kwargs") or {})
    transform = eval_transform(official_data_config(trainer.get("image_size", 32)))
    students = []
    for seed in bench.seeds:
        torch.manual_seed(seed)
        student = create_backbone(
            trainer.get("backbone", "resnet18"), cifar_stem=trainer.get("cifar_stem", False), **kwargs
        )
        tr_x, _ = extract_features(student, train, transform, batch_size=256, device=device)
        te_x, _ = extract_features(student, test, transform, batch_size=256, device=device)
        students.append({"seed": seed, **_probe(tr_x, train_y, te_x, test_y, bench)})
    floors["random_student"] = {
        "what": "the student's architecture, randomly initialised, untrained",
        "per_seed": students,
        **_mean_of(students),
    }
    logger.info("floor random student: %s", floors["random_student"])

    floors["priors"] = {name: prior_floor(bench, name, train, test, train_y, test_y) for name in bench.priors}
    return floors


def _mean_of(rows: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.fmean(row[key] for row in rows) for key in ("knn", "linear")}


def prior_floor(bench: Benchmark, name: str, train: Any, test: Any, train_y: Any, test_y: Any) -> dict[str, Any]:
    """What the prior's targets alone give: the whitened targets as features.

    Two readings: (a) on a held-out 20 % of the training subset (bank and probe on the other
    80 %), available for every prior from the cached targets alone; (b) on the test split, where
    the prior can be rebuilt exactly (pretrained weights, or random weights from the seed
    make_targets.py was given) and the test images whitened with the saved PCA. Targets made by an
    unseeded random prior (rela-hf before make_targets --seed) have (a) only.
    """
    import torch

    from rela_hf.data import load_image_dataset
    from rela_hf.targets import load_rela_targets_info, whiten_new_images

    folder = bench.targets_dir(name)
    if not targets_ready(folder):
        return {"what": "targets not computed"}
    cache = (
        folder / f"benchmark_prior_floor_{bench.evaluation.get('k', 200)}_{bench.evaluation.get('epochs', 100)}.json"
    )
    if cache.is_file():  # the test split's prior embeddings are slow on CPU: once per prior
        return json.loads(cache.read_text())
    dataset = load_image_dataset(str(folder), split="train").with_format("numpy", columns=["rela_target", "label"])
    targets = torch.tensor(dataset["rela_target"], dtype=torch.float32)
    labels = torch.tensor(dataset["label"])
    order = torch.randperm(len(targets), generator=torch.Generator().manual_seed(0))
    cut = int(0.8 * len(order))
    result: dict[str, Any] = {
        "what": f"whitened prior targets (k={targets.shape[1]}) as features",
        "holdout": _probe(targets[order[:cut]], labels[order[:cut]], targets[order[cut:]], labels[order[cut:]], bench),
    }
    from rela_hf.priors import load_prior

    info = load_rela_targets_info(folder)
    random_init = bool(bench.priors[name].get("random_init"))
    if random_init:
        torch.manual_seed(bench.priors[name].get("seed", 0))  # as make_targets.py seeded it
    # the prior exactly as recorded with the targets (its name is part of its identity)
    prior = load_prior(
        info.prior.name,
        image_size=bench.prior_image_size,
        pretrained=not random_init,
        preprocessing=bench.priors[name].get("preprocessing", "prior"),
        device="cuda" if torch.cuda.is_available() else "cpu",
    )
    if prior.fingerprint != info.prior.fingerprint:
        logger.warning("prior %r cannot be rebuilt (targets from unseeded random weights): hold-out floor only", name)
    else:
        images = [image.convert("RGB") for image in test["image"]]
        test_targets = torch.cat(
            [whiten_new_images(images[i : i + 256], prior, info) for i in range(0, len(images), 256)]
        )
        result["test"] = _probe(targets, train_y, test_targets.cpu(), test_y, bench)
    logger.info("floor prior %s: %s", name, result)
    cache.write_text(json.dumps(result, indent=2) + "\n")
    return result


# ---------------------------------------------------------------------------------------------
# results: rows, table, plot
# ---------------------------------------------------------------------------------------------
def collect_rows(bench: Benchmark) -> list[dict[str, Any]]:
    rows = []
    for cell in bench.cells:
        for seed in bench.seeds:
            run_dir = bench.run_dir(cell, seed)
            summary_file, eval_file = run_dir / "training_summary.json", run_dir / "eval_results.json"
            if not (summary_file.is_file() and eval_file.is_file()):
                continue
            summary, evaluation = json.loads(summary_file.read_text()), json.loads(eval_file.read_text())
            by_protocol = {entry["protocol"]: entry for entry in evaluation["results"]}
            classifier_file = run_dir / "classifier_results.json"
            classifier = json.loads(classifier_file.read_text()) if classifier_file.is_file() else {}
            rows.append(
                {
                    "cell": cell.name,
                    "label": cell.label or cell.name,
                    "use_rela": cell.use_rela,
                    "prior": cell.prior,
                    "data_ratio": cell.data_ratio,
                    "switch_rule": cell.switch_rule if cell.use_rela else None,
                    "switch_fraction": cell.switch_fraction if cell.use_rela else None,
                    "trainable_transfer_head": cell.trainable_transfer_head if cell.use_rela else None,
                    "seed": seed,
                    "steps": summary["steps"],
                    "images_seen": summary["images_seen"],
                    "batch_size": summary["global_batch_size"],
                    "wall_clock_seconds": summary["wall_clock_seconds"],
                    "switch_step": summary["switch_step"],
                    "final_phase": summary["phase"],
                    "final_rho": _last_logged(run_dir / "history.jsonl", "train/rho"),
                    "knn": by_protocol["knn"]["value"],
                    "linear": by_protocol["linear_probe"]["value"],
                    "linear_last_epochs_std": by_protocol["linear_probe"]["std"],
                    "classifier": classifier.get("classifier_top1") if classifier.get("classifier_trained") else None,
                }
            )
    return rows


def _last_logged(history: Path, key: str) -> float | None:
    """The last value of ``key`` in a run's history.jsonl (the adaptive rule's rho, for example)."""
    value = None
    if history.is_file():
        for line in history.read_text().splitlines():
            value = json.loads(line).get(key, value)
    return value


def _pm(values: list[float]) -> str:
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}"


def aggregate(bench: Benchmark, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    cells = []
    for cell in bench.cells:
        mine = [row for row in rows if row["cell"] == cell.name]
        if not mine:
            continue
        cells.append(
            {
                "cell": cell,
                "rows": mine,
                "seeds": [row["seed"] for row in mine],
                "knn": [row["knn"] for row in mine],
                "linear": [row["linear"] for row in mine],
                "classifier": [row["classifier"] for row in mine if row.get("classifier") is not None],
                "steps": mine[0]["steps"],
                "images_seen": mine[0]["images_seen"],
                "wall": [row["wall_clock_seconds"] for row in mine],
                "switch": [row["switch_step"] for row in mine],
                "rho": [row["final_rho"] for row in mine],
            }
        )
    return cells


def _switch_text(cell: Cell, switches: list[int | None], rhos: list[float | None]) -> str:
    if not cell.use_rela:
        return "—"
    # a run that never switched: how close the adaptive rule came (it fires at rho >= 0.995)
    return ", ".join(
        str(step)
        if step is not None
        else "never" + (f" (ρ {rho:.3f})" if rho is not None and cell.switch_rule == "adaptive" else "")
        for step, rho in zip(switches, rhos, strict=True)
    )


def _floor_rows(floors: dict[str, Any]) -> list[str]:
    lines = []
    raw, student = floors.get("raw_pixels"), floors.get("random_student")
    if raw:
        lines.append(
            f"| floor: raw pixels (784-d) | — | — | — | — | — | {100 * raw['knn']:.2f} | {100 * raw['linear']:.2f} |"
        )
    if student:
        knn = [row["knn"] for row in student["per_seed"]]
        lin = [row["linear"] for row in student["per_seed"]]
        lines.append(f"| floor: randomly initialised student | — | 0 | 0 | — | — | {_pm(knn)} | {_pm(lin)} |")
    for name, prior in (floors.get("priors") or {}).items():
        if "test" in prior:
            lines.append(
                f"| floor: prior `{name}` targets, test split | — | — | — | — | — | "
                f"{100 * prior['test']['knn']:.2f} | {100 * prior['test']['linear']:.2f} |"
            )
        if "holdout" in prior:
            lines.append(
                f"| floor: prior `{name}` targets, train hold-out* | — | — | — | — | — | "
                f"{100 * prior['holdout']['knn']:.2f} | {100 * prior['holdout']['linear']:.2f} |"
            )
    return lines


def comparison(cells: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The baseline at r=1.0 vs the main ReLA line (ImageNet prior, adaptive, fixed head; for a
    supervised method's trained classifier: the static rule, the runs where the classifier trained)."""
    byol_full = next((c for c in cells if c["cell"].is_baseline and c["cell"].data_ratio == 1.0), None)
    if byol_full is None or not byol_full[metric]:
        return {}
    reference = statistics.fmean(byol_full[metric])
    rule = "static" if metric == "classifier" else "adaptive"
    main = sorted(
        (c for c in cells if _is_main_rela(c["cell"], rule) and c[metric]), key=lambda c: c["cell"].data_ratio
    )
    verdicts = []
    for c in main:
        mean = statistics.fmean(c[metric])
        verdicts.append(
            {
                "data_ratio": c["cell"].data_ratio,
                "mean": mean,
                "delta_points": 100 * (mean - reference),
                "matches": 100 * (mean - reference) >= -MATCH_TOLERANCE_POINTS,
            }
        )
    first = next((v["data_ratio"] for v in verdicts if v["matches"]), None)
    return {"byol_full": reference, "rela": verdicts, "first_matching_ratio": first}


def _is_main_rela(cell: Cell, rule: str = "adaptive") -> bool:
    return cell.use_rela and cell.prior == "imagenet" and cell.switch_rule == rule and not cell.trainable_transfer_head


def _targets_cost_line(bench: Benchmark, cells: list[dict[str, Any]], timings: dict[str, Any]) -> str | None:
    """ReLA's one-off cost: the prior embedding every training image, in baseline steps of this grid."""
    byol = [c for c in cells if c["cell"].is_baseline]
    used = sorted({c["cell"].prior for c in cells if c["cell"].use_rela} & set(timings))
    if not byol or not used:
        return None
    seconds_per_step = statistics.fmean(w / c["steps"] for c in byol for w in c["wall"])
    parts = [
        f"prior `{name}` {timings[name]['seconds']:.0f} s (≈ {timings[name]['seconds'] / seconds_per_step:,.0f} "
        f"{bench.ssl_title} steps of this grid; {timings[name].get('note', 'conditions not recorded')})"
        for name in used
    ]
    return (
        "**One-off cost not in the budget column:** the targets (the prior embedding every training image "
        "once, shared by every ReLA run on this dataset, and by everyone who loads a published efficient "
        "dataset instead) took " + "; ".join(parts) + "."
    )


def render_markdown(
    bench: Benchmark,
    cells: list[dict[str, Any]],
    floors: dict[str, Any],
    plot_name: str,
    timings: dict[str, Any] | None = None,
) -> str:
    expected = len(bench.cells) * len(bench.seeds)
    done = sum(len(c["rows"]) for c in cells)
    supervised = method_class(bench.method).requires_labels
    lines = [
        f"# Acceleration benchmark `{bench.name}`: ReLA vs {bench.ssl_title} at equal budgets",
        "",
        bench.description.strip(),
        "",
        (
            f"Runs finished: **{done} of {expected}** (cells × seeds {bench.seeds}). "
            "Accuracies are top-1 % on the Fashion-MNIST test split (10,000 images), mean ± sample std over "
            "the seeds finished (no ± with one seed); kNN: k=200, t=0.1, cosine; linear: the official probe "
            "(Adam 3e-4, 100 epochs, mean of the last 3 epochs). Budget = optimizer steps at batch "
            f"{bench.trainer.get('per_device_train_batch_size', 128)}, identical for both methods; wall-clock is the "
            "training loop only (evaluation excluded), measured in the same grid on the same machine "
            f"({bench.parallel} run(s) at a time, {bench.threads_per_run or 'default'} thread(s) each)."
        ),
        "",
        "| run | r | steps | images seen | wall-clock (s) | switch step | kNN % | linear % |"
        + (" trained classifier % |" if supervised else ""),
        "|---|---|---|---|---|---|---|---|" + ("---|" if supervised else ""),
        *[row + (" — |" if supervised else "") for row in _floor_rows(floors)],
    ]
    for c in cells:
        cell = c["cell"]
        wall = statistics.fmean(c["wall"])
        classifier = (f" {_pm(c['classifier'])} |" if c["classifier"] else " — (never trained) |") if supervised else ""
        lines.append(
            f"| {cell.label or cell.name} | {cell.data_ratio} | {c['steps']} | {c['images_seen']:,} | "
            f"{wall:.0f} | {_switch_text(cell, c['switch'], c['rho'])} | {_pm(c['knn'])} | {_pm(c['linear'])} |"
            + classifier
        )
    cost = _targets_cost_line(bench, cells, timings or {})
    lines += [
        "",
        (
            "\\* hold-out floor: bank/probe on a fixed 80 % of the training subset, queries the other 20 % "
            "(where the prior cannot be rebuilt to embed the test images: targets of an unseeded random prior)."
        ),
        *(["", cost] if cost else []),
        "",
        f"![accuracy vs compute]({plot_name})",
        "",
        "## What each comparison tests",
        "",
    ]
    short = [c for c in cells if c["cell"].use_rela and c["steps"] < ADAPTIVE_EARLIEST_STEP]
    if short:
        lines.append(
            f"- **Short-budget check** (ReLA runs of fewer than ~{ADAPTIVE_EARLIEST_STEP} steps: "
            + ", ".join(sorted({f"r={c['cell'].data_ratio}" for c in short}))
            + "): the adaptive switch cannot fire, so these runs are pure distillation of the prior; compare "
            f"them with {bench.ssl_title} at the same r, with the static-rule rows (ReLA for the first half, then "
            f"{bench.ssl_title}), and "
            "with the prior floor."
        )
    byol = {c["cell"].data_ratio: statistics.fmean(c["knn"]) for c in cells if c["cell"].is_baseline}
    title = bench.ssl_title
    if 0.5 in byol and 1.0 in byol:
        gain = 100 * (byol[1.0] - byol[0.5])
        lines.append(
            f"- **Has {title} levelled off?** {title} kNN r=0.5 → r=1.0: {gain:+.2f} pt. "
            + (
                f"It is still improving, so r=1.0 is *not* {title}'s converged accuracy here: the comparison "
                f"below is at equal budgets (the paper's setting: {title}'s full budget vs ReLA's fraction of it), "
                f"not against {title} trained to convergence."
                if gain > MATCH_TOLERANCE_POINTS
                else f"Within the tolerance: {title}'s accuracy has about levelled off, so the comparison below "
                "tests the paper's claim at this scale."
            )
        )
    metrics = (("knn", "kNN"), ("linear", "linear probe")) + (
        (("classifier", "trained classifier"),) if supervised else ()
    )
    for metric, title in metrics:
        verdict = comparison(cells, metric)
        name = bench.ssl_title
        if not verdict:
            lines.append(f"- **Reaches {name} r=1.0 with less budget** ({title}): {name} at r=1.0 not finished yet.")
            continue
        parts = [
            f"r={v['data_ratio']}: {100 * v['mean']:.2f} ({v['delta_points']:+.2f} pt, "
            f"{'matches' if v['matches'] else 'below'})"
            for v in verdict["rela"]
        ]
        first = verdict["first_matching_ratio"]
        lines.append(
            f"- **Reaches {name} r=1.0 with less budget** ({title}): {name} r=1.0 = {100 * verdict['byol_full']:.2f}; "
            f"ReLA (ImageNet prior, {'static' if metric == 'classifier' else 'adaptive'}) "
            + "; ".join(parts)
            + ". "
            + (
                f"First ReLA budget of this grid matching it (within {MATCH_TOLERANCE_POINTS} pt): r={first}."
                if first is not None
                else f"No ReLA budget run here matches it (within {MATCH_TOLERANCE_POINTS} pt)."
            )
        )
    return "\n".join(lines) + "\n"


def plot(bench: Benchmark, cells: list[dict[str, Any]], floors: dict[str, Any], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    styles = {
        "byol": {"color": "tab:blue", "marker": "o", "label": bench.ssl_title},
        "main": {"color": "tab:red", "marker": "s", "label": "ReLA, ImageNet prior (adaptive)"},
        "static": {"color": "tab:orange", "marker": "^", "label": "ReLA, ImageNet prior (static 50 %)"},
        "random": {"color": "tab:purple", "marker": "D", "label": "ReLA, random prior"},
        "head": {"color": "tab:green", "marker": "P", "label": "ReLA, trainable transfer head"},
    }

    def family(cell: Cell) -> str:
        if cell.is_baseline:
            return "byol"
        if cell.prior != "imagenet":
            return "random"
        if cell.trainable_transfer_head:
            return "head"
        return "static" if cell.switch_rule == "static" else "main"

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharex=True)
    for ax, metric, title in ((axes[0], "knn", "kNN (k=200)"), (axes[1], "linear", "linear probe")):
        for key, style in styles.items():
            mine = sorted((c for c in cells if family(c["cell"]) == key), key=lambda c: c["images_seen"])
            if not mine:
                continue
            x = [c["images_seen"] for c in mine]
            y = [100 * statistics.fmean(c[metric]) for c in mine]
            err = [100 * statistics.stdev(c[metric]) if len(c[metric]) > 1 else 0.0 for c in mine]
            ax.errorbar(x, y, yerr=err, capsize=3, linestyle="-" if len(mine) > 1 else "none", **style)
        floor_lines = [
            ("raw pixels", floors.get("raw_pixels", {}).get(metric), "gray", ":"),
            ("random student", (floors.get("random_student") or {}).get(metric), "black", "--"),
        ]
        prior = (floors.get("priors") or {}).get("imagenet", {})
        if "test" in prior:
            floor_lines.append(("ImageNet prior targets", prior["test"][metric], "tab:red", "-."))
        for name, value, color, style in floor_lines:
            if value is not None:
                ax.axhline(100 * value, color=color, linestyle=style, linewidth=1, label=f"floor: {name}")
        ax.set_xscale("log")
        thousands = matplotlib.ticker.FuncFormatter(lambda value, _: f"{value / 1000:g}k")
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(thousands)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(f"images seen (= optimizer steps × {bench.trainer.get('per_device_train_batch_size', 128)})")
        ax.set_ylabel("test top-1 accuracy (%)")
        ax.set_title(f"Fashion-MNIST, {title}")
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle(f"ReLA vs {bench.ssl_title} at equal budgets ({bench.name} grid)")
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(bench: Benchmark) -> Path:
    rows = collect_rows(bench)
    floors_file = bench.work_dir / "floors.json"
    floors = json.loads(floors_file.read_text()) if floors_file.is_file() else {}
    cells = aggregate(bench, rows)
    out = bench.results_dir
    out.mkdir(parents=True, exist_ok=True)
    timings = {
        name: json.loads((bench.targets_dir(name) / "benchmark_timing.json").read_text())
        for name in bench.priors
        if (bench.targets_dir(name) / "benchmark_timing.json").is_file()
    }
    raw = {
        "benchmark": bench.name,
        "config": str(bench.config_path.relative_to(REPO)),
        "floors": floors,
        "target_seconds": timings,
        "runs": rows,
        "comparison": {metric: comparison(cells, metric) for metric in ("knn", "linear", "classifier")},
    }
    (out / "results.json").write_text(json.dumps(raw, indent=2) + "\n")
    if rows:
        with (out / "results.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    plot_name = "accuracy_vs_compute.png"
    if cells:
        plot(bench, cells, floors, out / plot_name)
    (out / "results.md").write_text(render_markdown(bench, cells, floors, plot_name, timings))
    return out / "results.md"


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="benchmarks/configs/acceleration*.yaml")
    parser.add_argument("--report_only", action="store_true", help="Only rebuild the results from finished runs.")
    parser.add_argument("--floors_only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--parallel", type=int, default=None, help="Override execution.parallel.")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="Override the config's seeds.")
    parser.add_argument(
        "--cells",
        nargs="+",
        default=None,
        help="Train only these cells of the grid (names); the results list every finished run.",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    bench = Benchmark.from_yaml(args.config)
    bench.config_path = args.config.resolve()
    if "plateau" in yaml.safe_load(args.config.read_text()) and not args.floors_only:
        raise SystemExit(
            f"{args.config} is a plateau profile: run it with benchmarks/plateau.py --config {args.config}"
        )
    if args.parallel:
        bench.parallel = args.parallel
    if args.seeds:
        bench.seeds = args.seeds
    bench.work_dir.mkdir(parents=True, exist_ok=True)
    if args.floors_only:
        floors = compute_floors(bench)
        (bench.work_dir / "floors.json").write_text(json.dumps(floors, indent=2) + "\n")
        return
    if not args.report_only:
        unknown = set(args.cells or ()) - {cell.name for cell in bench.cells}
        if unknown:
            raise SystemExit(f"--cells: no such cell(s) {sorted(unknown)} in {args.config}")
        run_grid(bench, only=set(args.cells) if args.cells else None)
    print(write_results(bench).read_text())


def run_grid(bench: Benchmark, only: set[str] | None = None) -> None:
    if not (bench.dataset_dir / "dataset_dict.json").is_file() or not (bench.prior_dir / "config.json").is_file():
        prepare_assets(bench)
    priors = sorted({cell.prior for cell in bench.cells if cell.use_rela})
    # seed-major (the first seed of every cell finishes before the second seed starts), ReLA
    # before the baseline at equal budget; "longest_first" packs best (long runs do not end up alone at
    # the tail), "shortest_first" leaves complete short-budget comparisons when a grid on a
    # shared machine is cut short
    sign = -1 if bench.order == "longest_first" else 1
    jobs = [
        (cell, seed)
        for seed in bench.seeds
        for cell in sorted(bench.cells, key=lambda c: (sign * c.data_ratio, not c.use_rela))
        if only is None or cell.name in only
    ]
    failures = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, bench.parallel)) as pool:
        # targets first (one per prior, side by side), then the floors and the runs
        for future in [pool.submit(make_targets, bench, prior) for prior in priors]:
            future.result()
        # the floors after the first seed's runs (they are cheap, the runs are the budget)
        first_seed = [(cell, seed) for cell, seed in jobs if seed == bench.seeds[0]]
        futures = {pool.submit(run_job, bench, cell, seed): f"{cell.name} seed {seed}" for cell, seed in first_seed}
        futures[pool.submit(floors_job, bench)] = "floors"
        futures.update(
            {
                pool.submit(run_job, bench, cell, seed): f"{cell.name} seed {seed}"
                for cell, seed in jobs[len(first_seed) :]
            }
        )
        for future in concurrent.futures.as_completed(futures):
            try:
                logger.info("done: %s", future.result())
            except Exception as error:  # noqa: BLE001 - one failed run must not stop the grid
                failures.append(f"{futures[future]}: {error}")
                logger.error("FAILED %s: %s", futures[future], error)
            write_results(bench)  # keep the tables current while the grid runs
    if failures:
        logger.error("%d job(s) failed:\n  %s", len(failures), "\n  ".join(failures))


if __name__ == "__main__":
    main()
