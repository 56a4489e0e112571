#!/usr/bin/env python
"""Validate the prior scorer: does ``rela-hf-score-priors`` rank priors by the gain ReLA gives?

ReLA (arXiv:2405.14669) works with any prior, but priors differ in how much they help (its
Figure 4). ``recipes/score_priors.py`` ranks candidate priors before any training, from a few
hundred images. This benchmark checks that ranking against the real thing, with the project's own
commands:

1. ``recipes/prepare_offline_assets.py``: a fixed Fashion-MNIST training subset, the test split and
   the ImageNet EfficientNet-Lite0 prior (a timm folder);
2. ``recipes/byol_rela.py --use_rela false``: the method alone at the budget (the baseline) and the
   short runs whose exported students serve as priors too;
3. for every prior: ``recipes/make_targets.py`` (timed: the one-off targets cost), then
   ``recipes/byol_rela.py`` (ReLA at the same budget), then ``recipes/evaluate_encoder.py``;
4. ``recipes/score_priors.py`` once over all priors (timed: the scorer's cost);
5. the gain of each prior (ReLA's kNN / linear accuracy minus the baseline's) against each score:
   Spearman's rank correlation, and the scorer's cost against one ReLA run.

Every step is skipped when its output exists, so the command resumes; ``--report_only`` only
rebuilds ``results.md`` / ``results.json`` from what exists.

    python benchmarks/prior_scores.py --config benchmarks/configs/prior_scores.yaml
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import acceleration as grid  # benchmarks/acceleration.py: run_command, targets_ready
import prior_scores_report as report  # benchmarks/prior_scores_report.py: results.md / results.json
import yaml

from rela_hf.prior_scores import PriorCandidate

REPO = Path(__file__).resolve().parent.parent
logger = logging.getLogger("prior_scores")
RESULTS = report.RESULTS


@dataclass
class PriorSpec:
    """One candidate prior of the study: where it comes from and how it is run."""

    name: str
    prior: str
    image_size: int | None = None
    random_init: bool = False
    seed: int = 0
    target_dim: int | None = None  # k, when the prior's embeddings have fewer directions than it

    @property
    def student(self) -> str | None:
        """The run of this study whose exported backbone is the prior, if any."""
        return self.prior.removeprefix("run:") if self.prior.startswith("run:") else None


@dataclass
class Study:
    """The parsed YAML config (benchmarks/configs/prior_scores.yaml documents every key)."""

    name: str
    description: str
    assets_dir: Path
    work_dir: Path
    results_dir: Path
    train_limit: int | None
    test_limit: int | None
    subset_seed: int
    student_width: int
    students: dict[str, int]
    priors: list[PriorSpec]
    trainer: dict[str, Any]
    scoring: dict[str, Any]
    parallel: int
    threads_per_run: int | None
    evaluation: dict[str, Any]
    cost_reference: dict[str, Any] = field(default_factory=dict)
    config_path: Path = field(default=Path())

    @classmethod
    def from_yaml(cls, path: Path) -> Study:
        raw = yaml.safe_load(path.read_text())
        known = {
            "name",
            "description",
            "data",
            "students",
            "priors",
            "trainer",
            "scoring",
            "execution",
            "evaluation",
            "cost_reference",
        }
        if unknown := set(raw) - known:
            raise SystemExit(f"{path}: unknown top-level keys {sorted(unknown)}; expected {sorted(known)}.")
        data, execution = raw["data"], raw.get("execution", {})
        priors = [PriorSpec(name=name, **options) for name, options in raw["priors"].items()]
        runs = {"baseline", *raw.get("students", {})}
        for spec in priors:
            if spec.student and spec.student not in runs:
                raise SystemExit(f"{path}: prior {spec.name!r} uses run {spec.student!r}, not among {sorted(runs)}.")
        return cls(
            name=raw["name"],
            description=raw.get("description", ""),
            assets_dir=REPO / data["assets_dir"],
            work_dir=REPO / data["work_dir"],
            results_dir=REPO / data["results_dir"],
            train_limit=data.get("train_limit"),
            test_limit=data.get("test_limit"),
            subset_seed=data.get("subset_seed", 0),
            student_width=data["student_width"],
            students=dict(raw.get("students", {})),
            priors=priors,
            trainer=dict(raw["trainer"]),
            scoring=dict(raw.get("scoring", {})),
            parallel=execution.get("parallel", 1),
            threads_per_run=execution.get("threads_per_run"),
            evaluation=raw.get("evaluation", {}),
            cost_reference=raw.get("cost_reference", {}),
            config_path=path,
        )

    # --- paths ---------------------------------------------------------------------------------
    @property
    def dataset_dir(self) -> Path:
        return self.assets_dir / "fashion_mnist"

    def run_dir(self, name: str) -> Path:
        """``baseline``, a student's name, or ``rela_<prior>``."""
        return self.work_dir / "runs" / name

    def targets_dir(self, spec: PriorSpec) -> Path:
        return self.work_dir / "targets" / spec.name

    @property
    def scores_dir(self) -> Path:
        return self.work_dir / "scores"

    @property
    def sample_sizes(self) -> list[int]:
        """The images scored: one scorer run per size (the first is the one the table shows)."""
        return list(self.scoring.get("sample_sizes", [512]))

    def location(self, spec: PriorSpec) -> str:
        """What load_prior is given for this prior."""
        if spec.prior == "imagenet":
            return str(self.assets_dir / "efficientnet_lite0")
        if spec.student:
            return str(self.run_dir(spec.student) / "backbone")
        return spec.prior

    def candidate(self, spec: PriorSpec) -> PriorCandidate:
        return PriorCandidate(
            name=spec.name,
            prior=self.location(spec),
            image_size=spec.image_size,
            random_init=spec.random_init,
            seed=spec.seed,
        )


# ---------------------------------------------------------------------------------------------
# the project's commands
# ---------------------------------------------------------------------------------------------
def child_env(study: Study) -> dict[str, str]:
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_DISABLE_TELEMETRY="1")
    if study.threads_per_run:
        threads = str(study.threads_per_run)
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def flags(**options: Any) -> list[str]:
    """``--name value`` for every option that is set (booleans as ``true`` / ``false``)."""

    def text(value: Any) -> str:
        return str(value).lower() if isinstance(value, bool) else str(value)

    return [item for name, value in options.items() if value is not None for item in (f"--{name}", text(value))]


def timed(command: list[str], log_file: Path, study: Study) -> dict[str, Any]:
    """Run a command like ``grid.run_command``; its wall-clock and CPU seconds (user + system, its
    reaped children such as DataLoader workers included) and the machine's load around it. On a
    shared machine the wall-clock grows with the load; the CPU seconds barely move."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    logger.info("$ %s", " ".join(command))
    start, load_before = time.perf_counter(), os.getloadavg()[0]
    with log_file.open("a") as log:
        log.write(f"\n$ {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(command, cwd=REPO, env=child_env(study), stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{command[1]} failed (exit {process.returncode}); see {log_file}")
    return {
        "seconds": time.perf_counter() - start,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
        "threads": study.threads_per_run,
        "parallel": study.parallel,
    }


def prepare_assets(study: Study) -> None:
    assets = study.dataset_dir / "dataset_dict.json", study.assets_dir / "efficientnet_lite0"
    if assets[0].is_file() and assets[1].is_dir():
        return
    command = [
        sys.executable,
        "recipes/prepare_offline_assets.py",
        *flags(
            output_dir=study.assets_dir,
            seed=study.subset_seed,
            max_train_samples=study.train_limit or None,
            max_eval_samples=study.test_limit or None,
        ),
    ]
    grid.run_command(command, study.work_dir / "assets.log", child_env(study))


def make_targets(study: Study, spec: PriorSpec) -> None:
    """The prior's whitened targets for the training subset, timed (the one-off targets cost)."""
    folder = study.targets_dir(spec)
    if grid.targets_ready(folder):
        return
    command = [
        sys.executable,
        "recipes/make_targets.py",
        "--overwrite_output_dir",
        *flags(
            dataset_name=study.dataset_dir,
            train_split="train",
            prior=study.location(spec),
            student_width=study.student_width,
            output_dir=folder,
            prior_batch_size=128,
            device="cpu",
            seed=spec.seed,
            prior_image_size=spec.image_size,
            prior_random_init=spec.random_init or None,
            target_dim=spec.target_dim,
        ),
    ]
    timing = timed(command, folder.parent / f"{spec.name}.log", study)
    (folder / "benchmark_timing.json").write_text(json.dumps(timing) + "\n")


def train(study: Study, name: str, **options: Any) -> Path:
    """``recipes/byol_rela.py`` into ``runs/<name>`` (resumed from its checkpoint), evaluated."""
    run_dir = study.run_dir(name)
    if not (run_dir / "training_summary.json").is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        config = {**study.trainer, **options, "output_dir": str(run_dir)}
        (run_dir / "benchmark_config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        resume = (
            ["--resume_from_checkpoint", "latest"] if any(run_dir.glob("checkpoint*")) else ["--overwrite_output_dir"]
        )
        config_file = str(run_dir / "benchmark_config.yaml")
        timing = timed(
            [sys.executable, "recipes/byol_rela.py", "--config", config_file, *resume],
            run_dir / "train.log",
            study,
        )
        with (run_dir / "benchmark_timing.jsonl").open("a") as attempts:  # one line per attempt
            attempts.write(json.dumps(timing) + "\n")
    if not (run_dir / "eval_results.json").is_file():
        evaluation = study.evaluation
        command = [
            sys.executable,
            "recipes/evaluate_encoder.py",
            *flags(
                model_name_or_path=run_dir / "backbone",
                dataset_name=study.dataset_dir,
                dataset_pretty_name="fashion_mnist",
                train_split="train",
                eval_split="test",
                output_file=run_dir / "eval_results.json",
                probe_epochs=evaluation.get("epochs"),
                knn_k=evaluation.get("k"),
                knn_temperature=evaluation.get("temperature"),
            ),
        ]
        grid.run_command(command, run_dir / "eval.log", child_env(study))
    return run_dir


def method_alone(study: Study, name: str) -> str:
    steps = study.students.get(name, study.trainer["max_train_steps"])
    train(study, name, dataset_name=str(study.dataset_dir), use_rela=False, max_train_steps=steps)
    return name


def rela_with(study: Study, spec: PriorSpec) -> str:
    make_targets(study, spec)
    train(study, f"rela_{spec.name}", dataset_name=str(study.targets_dir(spec)), use_rela=True)
    return spec.name


def score(study: Study, num_images: int) -> Path:
    """``recipes/score_priors.py`` over every prior on ``num_images`` images, with labels; timed."""
    folder = study.scores_dir / f"n{num_images}"
    if (folder / RESULTS).is_file():
        return folder / RESULTS
    missing = [
        spec.name for spec in study.priors if spec.student and not (study.run_dir(spec.student) / "backbone").is_dir()
    ]
    if missing:
        raise SystemExit(f"priors {missing}: their runs have not finished; run the whole study first.")
    candidates = [study.candidate(spec).spec() for spec in study.priors]
    options = {key: value for key, value in study.scoring.items() if key != "sample_sizes"}
    command = [
        sys.executable,
        "recipes/score_priors.py",
        "--overwrite_output_dir",
        *flags(
            dataset_name=study.dataset_dir,
            train_split="train",
            label_column="label",
            student_width=study.student_width,
            output_dir=folder,
            device="cpu",
            max_train_samples=num_images,
            **options,
        ),
        "--priors",
        *candidates,
    ]
    timing = timed(command, folder / "score.log", study)
    (folder / "benchmark_timing.json").write_text(json.dumps(timing) + "\n")
    return folder / RESULTS


def run_study(study: Study) -> None:
    """Everything, ``parallel`` jobs at a time; a prior that is a run of this study waits for it.

    The method-alone runs are queued first, so a waiting job only ever waits for a started one.
    """
    study.work_dir.mkdir(parents=True, exist_ok=True)
    prepare_assets(study)
    with concurrent.futures.ThreadPoolExecutor(max_workers=study.parallel) as pool:
        runs = {name: pool.submit(method_alone, study, name) for name in ["baseline", *study.students]}

        def rela_after_student(spec: PriorSpec) -> str:
            if spec.student:
                runs[spec.student].result()
            return rela_with(study, spec)

        jobs = [*runs.values(), *[pool.submit(rela_after_student, spec) for spec in study.priors]]
        for future in concurrent.futures.as_completed(jobs):
            logger.info("done: %s", future.result())
    for num_images in study.sample_sizes:
        score(study, num_images)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, required=True, help="benchmarks/configs/prior_scores.yaml")
    parser.add_argument("--report_only", action="store_true", help="Only rebuild the results from what exists.")
    parser.add_argument("--scores_only", action="store_true", help="Only score the priors (their runs must exist).")
    parser.add_argument("--parallel", type=int, default=None, help="Override execution.parallel.")
    args = parser.parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    study = Study.from_yaml(args.config.resolve())
    if args.parallel:
        study.parallel = args.parallel
    if args.scores_only:
        for num_images in study.sample_sizes:
            score(study, num_images)
    elif not args.report_only:
        run_study(study)
    logger.info("wrote %s", report.write_results(study))


if __name__ == "__main__":
    main()
