"""``benchmarks/gpu_check.py``: the prepared GPU check runs end to end (``--smoke``, on the CPU at
toy sizes, the GPU run's code paths) and what it carries to the GPU machine fits the device tool.

Both run as their own interpreter, as on the GPU machine. The smoke run trains a few steps on real
images (crops of the foolbox ImageNet photos, Fashion-MNIST); its numbers are not checked for
speed, only for being the figures the results promise and for agreeing with each other.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tests.recipes import REPO

SCRIPT = REPO / "benchmarks" / "gpu_check.py"
PARTS = ("targets", "trainer", "rela_vs_byol", "compile")
IMAGENET_TRAIN_IMAGES = 1_281_167
TIMEOUT_S = 900  # a loaded 2-core machine; about 40 s when it is free


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> tuple[dict, str]:
    """One ``--smoke`` run: its results.json (parsed) and results.md."""
    root = tmp_path_factory.mktemp("gpu_check")
    result = run_script("--smoke", "--output_dir", str(root / "results"), "--work_dir", str(root / "work"))
    assert result.returncode == 0, f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    return json.loads((root / "results" / "results.json").read_text()), (root / "results" / "results.md").read_text()


@pytest.mark.slow
def test_the_smoke_run_does_every_part_and_records_the_machine(smoke):
    results, _ = smoke
    assert results["mode"] == "smoke" and list(results["parts"]) == list(PARTS)
    assert {name: part["status"] for name, part in results["parts"].items()} == dict.fromkeys(PARTS, "ok")
    environment = results["environment"]
    assert environment["device"] == "cpu" and environment["torch"] and environment["device_name"]
    assert environment["libraries"]["datasets"] and environment["libraries"]["timm"]
    assert all(part["seconds"] <= part["cap_s"] for part in results["parts"].values())


@pytest.mark.slow
def test_targets_compare_the_library_with_a_raw_loop_over_the_same_images(smoke):
    targets = smoke[0]["parts"]["targets"]
    rates = targets["images_per_s"]
    assert set(rates) == {"add_rela_targets", "raw_timm_loop", "forward_only"}
    assert all(rate > 0 for rate in rates.values())
    assert targets["ratio_to_raw_loop"] == pytest.approx(rates["add_rela_targets"] / rates["raw_timm_loop"], rel=0.01)
    projected = targets["projected_imagenet_seconds"]["add_rela_targets"]
    assert projected == pytest.approx(IMAGENET_TRAIN_IMAGES / rates["add_rela_targets"], rel=0.01)
    # the raw loop computes exactly what the prior computes: the ratio compares equal work
    assert targets["raw_loop_vs_prior_max_abs_diff"] < 1e-4


@pytest.mark.slow
def test_the_trainer_is_fed_three_ways_and_compared_to_resident_views(smoke):
    trainer = smoke[0]["parts"]["trainer"]
    feeds = trainer["feeds"]
    assert set(feeds) == {"pil_workers", "gpu_data_path", "resident"}
    for feed in feeds.values():
        assert feed["timed_steps"] == 2 and feed["images_per_s"] > 0  # the smoke profile's steps
    assert feeds["pil_workers"]["warmup_steps"] == trainer["num_workers"] + 2  # the workers' burst
    limit = feeds["resident"]["images_per_s"]
    assert trainer["ratio_pil_workers_to_resident"] == pytest.approx(
        feeds["pil_workers"]["images_per_s"] / limit, rel=0.01
    )
    assert trainer["ratio_gpu_data_path_to_resident"] == pytest.approx(
        feeds["gpu_data_path"]["images_per_s"] / limit, rel=0.01
    )
    compiled = smoke[0]["parts"]["compile"]
    assert compiled["backend"] == "eager" and compiled["eager_images_per_s"] == limit
    assert compiled["speedup"] == pytest.approx(compiled["compiled"]["images_per_s"] / limit, rel=0.01)


@pytest.mark.slow
def test_rela_and_byol_train_the_same_steps_and_are_scored_by_knn(smoke):
    part = smoke[0]["parts"]["rela_vs_byol"]
    byol, rela = part["runs"]["byol"], part["runs"]["rela"]
    assert byol["steps"] == rela["steps"] == part["setup"]["steps"] == 2
    assert byol["target_dim"] is None and rela["target_dim"] == 16  # only ReLA has targets
    assert "rela_loss" in rela["final_metrics"] and "byol_loss" in byol["final_metrics"]
    for value in (byol["knn_percent"], rela["knn_percent"], *part["floors_knn_percent"].values()):
        assert 0.0 <= value <= 100.0 and math.isfinite(value)
    assert set(part["floors_knn_percent"]) == {"raw_pixels", "random_student", "prior_features"}


@pytest.mark.slow
def test_the_markdown_says_it_is_a_smoke_run_and_shows_every_part(smoke):
    results, markdown = smoke
    assert "Smoke run on the CPU" in markdown
    assert f"torch {results['environment']['torch']}" in markdown
    for heading in (
        "## (a) Targets",
        "## (b) Trainer",
        "## (b') `torch.compile`",
        "## (c) ReLA vs BYOL",
    ):
        assert heading in markdown
    assert "(iii) views already on the device (the limit)" in markdown


def test_what_travels_to_the_gpu_machine_fits_the_device_tool():
    result = run_script("--prepare", "--dry_run")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["fits"] and report["total_mib"] <= report["hard_limit_mib"] == 64
    paths = [item["path"] for item in report["items"]]
    assert sum(p.startswith(".gpu_check/fashion-mnist/") for p in paths) == 4
    assert sum(p.startswith(".gpu_check/imagenet_photos/") for p in paths) == 20
    assert any(p.startswith(".gpu_check/priors/efficientnet_lite0") for p in paths)
    assert {p.split("/")[1].split("-")[0] for p in paths if p.startswith(".whl/")} == {
        "datasets",
        "dill",
        "multiprocess",
        "fsspec",
        "timm",
    }
    assert report["total_bytes"] == report["working_tree_bytes"] + sum(i["bytes"] for i in report["items"])
