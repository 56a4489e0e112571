"""``results.json`` and ``results.md`` of the GPU check, rewritten after every part.

A part that failed or ran out of time is recorded with its error, and the parts before it keep
their figures: an interrupted check still reports what it measured.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["render_markdown", "write_results"]

_FEED_LABELS = {
    "pil_workers": "(i) PIL views in DataLoader workers",
    "gpu_data_path": "(ii) GPU data path (8-bit images, views on the device)",
    "resident": "(iii) views already on the device (the limit)",
}


def write_results(output_dir: Path, results: dict[str, Any]) -> None:
    """Both files, each replaced atomically."""
    output_dir.mkdir(parents=True, exist_ok=True)
    for name, text in (
        ("results.json", json.dumps(results, indent=2, default=str) + "\n"),
        ("results.md", render_markdown(results)),
    ):
        staging = output_dir / f".{name}.tmp"
        staging.write_text(text)
        os.replace(staging, output_dir / name)


def _status_line(part: dict[str, Any]) -> str:
    line = f"{part.get('status', '?')} in {part.get('seconds', 0):.0f} s"
    return line + (f": {part['error']}" if part.get("error") else "")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.2f} h"


def _targets(part: dict[str, Any]) -> list[str]:
    rates, projected = part["images_per_s"], part["projected_imagenet_seconds"]
    lines = [
        (
            f"Prior {part['prior']} at {part['image_size']} px, {part['num_images']} distinct "
            f"crops of real ImageNet-val photos, batch {part['batch_size']}, k = {part['k']}; "
            f"median of interleaved repeats {part['repeats']}."
        ),
        "",
        "| way | images/s | ratio to the raw loop | projected, 1.28 M images |",
        "|---|---|---|---|",
    ]
    raw = rates["raw_timm_loop"]
    for name, label in (
        ("add_rela_targets", "`add_rela_targets` (JPEG bytes in a Dataset)"),
        ("raw_timm_loop", "raw timm loop (decoded images, eval transform + forward)"),
        ("forward_only", "forward only (batches preprocessed on the device)"),
    ):
        rate = rates[name]
        lines.append(f"| {label} | {rate:.0f} | {rate / raw:.3f} | {_minutes(projected[name])} |")
    lines += [
        "",
        (
            f"Raw loop vs the prior's own embeddings, first batch: max |diff| = "
            f"{part['raw_loop_vs_prior_max_abs_diff']:.2e}."
        ),
    ]
    return lines


def _trainer(part: dict[str, Any]) -> list[str]:
    lines = [
        (
            f"{part['backbone']} {part['method'].upper()} at {part['image_size']} px, batch "
            f"{part['batch_size']}, {part['mixed_precision']} (Accelerate), channels-last, "
            f"{part['num_workers']} DataLoader workers, {part['rows']} distinct photo crops."
        ),
        "",
        "| feed | images/s | ratio to (iii) | timed steps | warm-up steps |",
        "|---|---|---|---|---|",
    ]
    limit = part["feeds"]["resident"]["images_per_s"]
    for name, label in _FEED_LABELS.items():
        feed = part["feeds"][name]
        lines.append(
            f"| {label} | {feed['images_per_s']:.0f} | {feed['images_per_s'] / limit:.3f} | "
            f"{feed['timed_steps']} | {feed['warmup_steps']} |"
        )
    if part.get("peak_memory_gib") is not None:
        lines += ["", f"Peak device memory: {part['peak_memory_gib']} GiB."]
    return lines


def _compile(part: dict[str, Any]) -> list[str]:
    if part["pays"]:
        verdict = (
            f"pays after {part['breakeven_steps']} steps (about {part['breakeven_minutes']} min "
            "of compiled training): worth it for real runs, not for short checks"
        )
    else:
        verdict = "does not pay (a speed-up under 5 %)"
    return [
        (
            f"`{part['backend']}` on (iii): {part['compiled']['images_per_s']:.0f} images/s "
            f"against {part['eager_images_per_s']:.0f} eager (x{part['speedup']}); the first "
            f"{part['first_steps']} steps took {part['first_steps_seconds']} s. Verdict: {verdict}."
        )
    ]


def _rela_vs_byol(part: dict[str, Any]) -> list[str]:
    setup = part["setup"]
    lines = [
        (
            f"{setup['backbone']} (CIFAR stem: {setup['cifar_stem']}) at {setup['image_size']} px, "
            f"batch {setup['batch_size']}, {setup['steps']} steps each, {setup['train_images']} "
            f"training / {setup['test_images']} test images, {setup['mixed_precision']}, "
            f"{setup['view_pipeline']} views, {setup['num_workers']} workers; ReLA prior "
            f"{setup['prior']} at {setup['prior_image_size']} px. kNN k=200, t=0.1."
        ),
        "",
        ("| run | kNN % | switch step | training loop s | wall s (setup, targets, export) | last losses |"),
        "|---|---|---|---|---|---|",
    ]
    for name, run in part["runs"].items():
        switch = "-" if name == "byol" else (run["switch_step"] if run["switch_step"] is not None else "never")
        label = "BYOL" if name == "byol" else "ReLA -> BYOL"
        lines.append(
            f"| {label} | {run.get('knn_percent', '-')} | {switch} | {run['loop_seconds']} | "
            f"{run['wall_seconds']} | {_method_loss(run['final_metrics'])} |"
        )
    floors = part.get("floors_knn_percent", {})
    lines += [
        "",
        "Floors (kNN %): " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in floors.items()) + ".",
    ]
    return lines


def _method_loss(metrics: dict[str, float]) -> str:
    """The last logged loss of the objective the run ended on (not the online probe's)."""
    losses = {k: v for k, v in metrics.items() if k.endswith("_loss") and k != "classifier_loss"}
    return ", ".join(f"{k} {v:.4f}" for k, v in sorted(losses.items())) or "-"


_SECTIONS = {
    "targets": ("(a) Targets: `add_rela_targets` vs a raw inference loop", _targets),
    "trainer": ("(b) Trainer: the training step fed three ways", _trainer),
    "compile": ("(b') `torch.compile` on (iii)", _compile),
    "rela_vs_byol": ("(c) ReLA vs BYOL, same steps, full Fashion-MNIST", _rela_vs_byol),
}


def render_markdown(results: dict[str, Any]) -> str:
    """The human-readable page of ``results``."""
    env = results["environment"]
    libraries = ", ".join(f"{k} {v}" for k, v in env["libraries"].items() if v)
    lines = [f"# GPU check on {env['device_name']}", ""]
    if results["mode"] == "smoke":
        lines += [
            "**Smoke run on the CPU at toy sizes: these numbers say nothing about a GPU.**",
            "",
        ]
    lines += [
        (
            f"- Started {results['started_at']}, {results.get('elapsed_seconds', 0):.0f} s in all "
            f"(budget {results['profile']['budget_s']:.0f} s); command `{results['command']}`."
        ),
        (
            f"- torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env['cudnn']}, "
            f"Python {env['python']}, {env['cores']} cores (load {env['load_average']})."
        ),
        f"- {libraries}.",
        "",
    ]
    for name, part in results["parts"].items():
        title, render = _SECTIONS[name]
        lines += [f"## {title}", "", f"Status: {_status_line(part)}.", ""]
        if part.get("status") == "ok":
            lines += [*render(part), ""]
        elif name == "compile" and part.get("status") == "timed_out":
            lines += [
                (
                    "Compiling did not finish within the cap, so it cannot pay in a run this "
                    "short. `--parts trainer compile --cap compile=340` (the rest of the 480 s "
                    "budget) tells whether it pays in a long one."
                ),
                "",
            ]
    return "\n".join(lines)
