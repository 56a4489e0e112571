"""The results of benchmarks/prior_scores.py: measured gains against the scores, and the costs.

Reads what the study left in its ``work_dir`` (runs, targets, scores) and writes ``results.json``
and ``results.md`` to its ``results_dir``: one row per prior (scores, targets cost, ReLA's
accuracy and its gain over the method alone), Spearman's rank correlation of every score with the
kNN and linear gains for every sample size scored, and the scorer's cost against one ReLA run.
Run alone, it rewrites ``results.md`` from a saved ``results.json`` (no runs needed):

    python benchmarks/prior_scores_report.py benchmarks/results/prior_scores/results.json
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rela_hf.prior_scores import LABEL_FREE_SCORES, PRIMARY_SCORE, spearman

if TYPE_CHECKING:  # the study's config class (benchmarks/prior_scores.py imports this module)
    from prior_scores import Study

REPO = Path(__file__).resolve().parent.parent
RESULTS = "prior_scores.json"  # what recipes/score_priors.py writes in its --output_dir
LABEL_SCORE = "knn_accuracy"
GAINS = ("knn", "linear")


def _json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def run_result(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's accuracies, steps and costs (CPU seconds summed over resumed attempts)."""
    summary, evaluation = (
        _json(run_dir / "training_summary.json"),
        _json(run_dir / "eval_results.json"),
    )
    if not (summary and evaluation):
        return None
    by_protocol = {entry["protocol"]: entry["value"] for entry in evaluation["results"]}
    attempts_file = run_dir / "benchmark_timing.jsonl"
    attempts = [json.loads(line) for line in attempts_file.read_text().splitlines()] if attempts_file.is_file() else []
    return {
        "knn": by_protocol["knn"],
        "linear": by_protocol["linear_probe"],
        "steps": summary["steps"],
        "loop_seconds": summary["wall_clock_seconds"],
        "command_seconds": sum(a["seconds"] for a in attempts) if attempts else None,
        "cpu_seconds": sum(a["cpu_seconds"] for a in attempts) if attempts else None,
    }


def collect(study: Study) -> dict[str, Any]:
    """Every measured number of the study, one row per prior."""
    baseline = run_result(study.run_dir("baseline"))
    rows = []
    for spec in study.priors:
        run = run_result(study.run_dir(f"rela_{spec.name}"))
        row = {
            "prior": spec.name,
            "candidate": study.candidate(spec).spec(),
            "run": run,
            "targets": _json(study.targets_dir(spec) / "benchmark_timing.json"),
        }
        if run and baseline:
            row["gain"] = {metric: 100 * (run[metric] - baseline[metric]) for metric in GAINS}
        rows.append(row)
    scores = {}
    for num_images in study.sample_sizes:
        folder = study.scores_dir / f"n{num_images}"
        if (written := _json(folder / RESULTS)) is not None:
            scores[num_images] = {
                "timing": _json(folder / "benchmark_timing.json"),
                "command": written["command"],
                "priors": {p["name"]: p for p in written["priors"]},
            }
    return {
        "study": {
            "name": study.name,
            "description": study.description,
            "config": study.config_path.relative_to(REPO).as_posix()
            if study.config_path.is_relative_to(REPO)
            else str(study.config_path),
            "sample_sizes": study.sample_sizes,
            "cost_reference": {
                "label": study.cost_reference.get("label"),
                "seconds": reference_seconds(study),
            },
        },
        "baseline": baseline,
        "students": {name: run_result(study.run_dir(name)) for name in study.students},
        "priors": rows,
        "scores": scores,
    }


def score_value(scored: dict[str, Any], name: str) -> float | None:
    return scored[LABEL_SCORE] if name == LABEL_SCORE else scored["scores"].get(name)


def correlations(results: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """Spearman's rho of every score with the kNN and linear gains, per sample size.

    Over the priors with a measured gain (``n`` of them, named in ``priors``); none below 3.
    """
    done = [row for row in results["priors"] if row.get("gain")]
    rho: dict[int, dict[str, Any]] = {}
    for num_images, scored in results["scores"].items():
        rows = [row for row in done if row["prior"] in scored["priors"]]
        if len(rows) < 3:
            continue
        gains = {metric: [row["gain"][metric] for row in rows] for metric in GAINS}
        rho[num_images] = {
            "n": len(rows),
            "priors": [row["prior"] for row in rows],
            "scores": {
                name: {
                    metric: spearman(
                        [score_value(scored["priors"][row["prior"]], name) for row in rows],
                        gains[metric],
                    )
                    for metric in GAINS
                }
                for name in (*LABEL_FREE_SCORES, LABEL_SCORE)
            },
        }
    return rho


def reference_seconds(study: Study) -> float | None:
    """Mean training-loop wall-clock of the reference cells of another grid (``cost_reference``)."""
    reference = study.cost_reference
    csv_path = Path(reference.get("results_csv", ""))
    csv_path = csv_path if csv_path.is_absolute() else REPO / csv_path
    if not reference or not csv_path.is_file():
        return None
    with csv_path.open(newline="") as handle:
        seconds = [
            float(row["wall_clock_seconds"])
            for row in csv.DictReader(handle)
            if row["cell"] in reference.get("cells", [])
        ]
    return statistics.mean(seconds) if seconds else None


def _cell(value: float | None, digits: int = 3, scale: float = 1.0) -> str:
    return "—" if value is None else f"{scale * value:.{digits}f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def prior_table(results: dict[str, Any], num_images: int) -> list[str]:
    scored = results["scores"].get(num_images, {"priors": {}})["priors"]
    rows = []
    for row in results["priors"]:
        score, run, gain = scored.get(row["prior"], {}), row["run"] or {}, row.get("gain") or {}
        targets = row["targets"] or {}
        projected = score["cpu_seconds_per_image"] * score["dataset_size"] if score else None
        rows.append(
            [
                f"`{row['prior']}`",
                _cell(score.get("score")),
                _cell(score.get(LABEL_SCORE), 1, 100),
                str(score.get("target_dim", "—")),
                _cell(projected, 0),
                _cell(targets.get("cpu_seconds"), 0),
                _cell(run.get("knn"), 2, 100),
                _cell(run.get("linear"), 2, 100),
                _cell(gain.get("knn"), 2),
                _cell(gain.get("linear"), 2),
            ]
        )
    header = [
        "prior",
        f"{PRIMARY_SCORE} (label-free)",
        "kNN of targets % (labels)",
        "k",
        "targets CPU s, projected",
        "targets CPU s, measured",
        "ReLA kNN %",
        "ReLA linear %",
        "kNN gain (pt)",
        "linear gain (pt)",
    ]
    return _table(header, rows)


def all_scores_table(results: dict[str, Any], num_images: int) -> list[str]:
    scored = results["scores"].get(num_images, {"priors": {}})["priors"]
    rows = [
        [f"`{name}`", *(_cell(score_value(p, s)) for s in (*LABEL_FREE_SCORES, LABEL_SCORE))]
        for name, p in scored.items()
    ]
    return _table(["prior", *LABEL_FREE_SCORES, LABEL_SCORE], rows)


def correlation_table(rho: dict[int, dict[str, Any]]) -> list[str]:
    sizes = sorted(rho)
    header = ["score", *(f"{n} images scored: vs kNN gain / vs linear gain" for n in sizes)]
    names = (*LABEL_FREE_SCORES, LABEL_SCORE)
    rows = [
        [
            f"`{name}`" + (" (labels)" if name == LABEL_SCORE else ""),
            *(
                f"{_cell(rho[n]['scores'][name]['knn'], 2)} / {_cell(rho[n]['scores'][name]['linear'], 2)}"
                for n in sizes
            ),
        ]
        for name in names
    ]
    if not sizes:
        return ["Fewer than 3 priors with a measured gain: no correlation yet."]
    counted = rho[sizes[0]]
    intro = [
        (
            f"Over the **n = {counted['n']}** priors with a measured gain "
            f"({', '.join(f'`{p}`' for p in counted['priors'])})."
        ),
        "",
    ]
    return intro + _table(header, rows)


def cost_lines(results: dict[str, Any]) -> list[str]:
    """The scorer's CPU seconds against one ReLA run of this study and one run of the full grid."""
    runs = [row["run"] for row in results["priors"] if row["run"] and row["run"]["cpu_seconds"]]
    if not runs:
        return []
    run_cpu = statistics.median(r["cpu_seconds"] for r in runs)
    run_wall = statistics.median(r["command_seconds"] for r in runs)
    loop = statistics.median(r["loop_seconds"] for r in runs)
    reference = results["study"]["cost_reference"]
    grid_seconds = reference.get("seconds")
    lines = [
        (
            f"One ReLA run of this study (the whole command, median of {len(runs)}): "
            f"**{run_cpu:.0f} CPU s** ({run_wall:.0f} s wall-clock on the shared machine; "
            f"training loop alone {loop:.0f} s)."
        ),
    ]
    if grid_seconds:
        label = reference.get("label") or "the reference run"
        lines += ["", f"Reference: {label}: **{grid_seconds:.0f} s** (training loop, load ~1)."]
    rows = []
    for num_images, scored in sorted(results["scores"].items()):
        per_prior = [p["scoring_cpu_seconds"] for p in scored["priors"].values()]
        timing = scored["timing"] or {}
        command_cpu = timing.get("cpu_seconds")
        median = statistics.median(per_prior)
        row = [
            str(num_images),
            str(len(per_prior)),
            f"{median:.1f} ({100 * median / run_cpu:.1f} %)",
            f"{max(per_prior):.1f} ({100 * max(per_prior) / run_cpu:.1f} %)",
            _cell(command_cpu, 0),
            _cell(command_cpu / len(per_prior) / run_cpu if command_cpu else None, 1, 100),
        ]
        if grid_seconds:
            row += [
                _cell(command_cpu / len(per_prior) / grid_seconds if command_cpu else None, 1, 100),
                _cell(command_cpu / grid_seconds if command_cpu else None, 1, 100),
            ]
        rows.append([*row, _cell(timing.get("seconds"), 0), _cell(timing.get("load_before"), 1)])
    header = [
        "images scored",
        "priors",
        "per prior, median CPU s (% of a study ReLA run)",
        "per prior, max CPU s (%)",
        "whole command CPU s",
        "whole command per prior, % of a study ReLA run",
    ]
    if grid_seconds:
        header += ["whole command per prior, % of the grid run", "whole command, % of the grid run"]
    header += ["whole command wall s", "load average"]
    return [*lines, "", *_table(header, rows)]


def render_markdown(results: dict[str, Any], rho: dict[int, dict[str, Any]]) -> str:
    """results.md from what :func:`collect` gathered (or results.json holds)."""
    study = results["study"]
    shown = study["sample_sizes"][0]
    lines = [
        f"# Prior scores vs the gain ReLA gives (`{study['name']}`)",
        "",
        study["description"].strip(),
        "",
    ]
    if baseline := results["baseline"]:
        lines += [
            (
                f"BYOL alone at the budget ({baseline['steps']} steps): "
                f"kNN {100 * baseline['knn']:.2f} %, linear {100 * baseline['linear']:.2f} % "
                "(Fashion-MNIST test split). Gain = ReLA's accuracy with the prior minus this, "
                "in points."
            ),
            "",
        ]
    lines += [
        f"## Priors, scored on {shown} images",
        "",
        *prior_table(results, shown),
        "",
        "## Rank correlation (Spearman) of each score with the measured gain",
        "",
        *correlation_table(rho),
        "",
        f"## Every score, {shown} images",
        "",
        *all_scores_table(results, shown),
        "",
        "## Cost",
        "",
        *cost_lines(results),
        "",
        f"Reproduce: `python benchmarks/prior_scores.py --config {study['config']}`.",
    ]
    if shown in results["scores"]:
        lines += ["", f"The scorer alone: `{results['scores'][shown]['command']}`"]
    return "\n".join(lines) + "\n"


def write_results(study: Study) -> Path:
    """``results.json`` and ``results.md`` in the study's ``results_dir``; returns the latter."""
    results = collect(study)
    rho = correlations(results)
    study.results_dir.mkdir(parents=True, exist_ok=True)
    (study.results_dir / "results.json").write_text(json.dumps({**results, "spearman": rho}, indent=2) + "\n")
    path = study.results_dir / "results.md"
    path.write_text(render_markdown(results, rho))
    return path


def render_saved(results_json: Path) -> Path:
    """Rewrite the ``results.md`` beside a saved ``results.json`` (no runs needed)."""
    results = json.loads(results_json.read_text())
    results["scores"] = {int(size): scored for size, scored in results["scores"].items()}
    path = results_json.with_name("results.md")
    path.write_text(render_markdown(results, correlations(results)))
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results_json", type=Path, help="benchmarks/results/prior_scores/results.json")
    args = parser.parse_args(argv)
    print(f"wrote {render_saved(args.results_json)}")


if __name__ == "__main__":
    main()
