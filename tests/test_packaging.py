"""The wheel, as a user gets it: ``pip install`` (not editable) into a fresh virtual environment,
then the console commands run the demo's pipeline end to end on real images, offline.

The venv sees the running environment's site-packages after its own (torch, timm, datasets... are
not reinstalled); rela-hf itself comes from the wheel only, and the commands run outside the
repository."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.recipes import REPO

COMMANDS = ("rela-hf-assets", "rela-hf-targets", "rela-hf-train", "rela-hf-evaluate", "rela-hf-push")


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: int = 600) -> str:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, f"{' '.join(command[:3])} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
    return result.stdout


def venv_seeing_this_environment(venv: Path, env: dict[str, str]) -> Path:
    """A fresh venv whose own site-packages comes first, then this interpreter's site directories.

    ``python -m venv --system-site-packages`` run from inside a venv gives the *base* interpreter's
    packages, not the running venv's (and Debian's base has none of the stack). A ``.pth`` line that
    calls ``site.addsitedir`` on this environment's site directories works from any interpreter and
    follows their own ``.pth`` files (chained environments, editable installs); pip comes from there
    too, so the venv needs no ensurepip. Returns the venv's ``bin`` folder.
    """
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=venv.parent, env=env)
    bin_dir = venv / "bin"
    own = run(
        [str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        cwd=venv.parent,
        env=env,
    ).strip()
    ours = [path for path in site.getsitepackages() if Path(path).is_dir()]
    calls = "; ".join(f"site.addsitedir({path!r})" for path in ours)
    (Path(own) / "running_environment.pth").write_text(f"import site; {calls}\n")
    return bin_dir


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """A fresh venv with the rela-hf wheel installed; returns (bin folder, wheel path, env)."""
    root = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(root / "dist"),
        ],
        cwd=root,
        env=env,
    )
    wheel = next((root / "dist").glob("rela_hf-*.whl"))
    bin_dir = venv_seeing_this_environment(root / "venv", env)
    # --ignore-installed: the checkout's editable rela-hf, seen through the .pth, stays where it is
    run(
        [str(bin_dir / "python"), "-m", "pip", "install", "--no-deps", "--ignore-installed", "-q", str(wheel)],
        cwd=root,
        env=env,
    )
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    return bin_dir, wheel, env


@pytest.mark.slow
def test_the_wheel_ships_the_recipes_presets_and_templates(installed_wheel):
    bin_dir, wheel, env = installed_wheel
    names = zipfile.ZipFile(wheel).namelist()
    for expected in (
        "rela_hf/recipes/byol_rela.py",
        "rela_hf/recipes/configs/demo.yaml",
        "rela_hf/recipes/configs/cifar10_resnet18_dino.yaml",
        "rela_hf/model_cards/encoder.md",
        "rela_hf/methods/dino.py",
        "rela_hf/priors/timm_loader.py",
        "rela_hf/py.typed",
    ):
        assert expected in names, expected
    assert any(n.endswith(".dist-info/LICENSE") or "/licenses/LICENSE" in n for n in names), names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    declared = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert all(f"{command} = rela_hf.recipes." in declared for command in COMMANDS)
    where = run([str(bin_dir / "python"), "-c", "import rela_hf; print(rela_hf.__file__)"], cwd=bin_dir, env=env)
    assert where.strip().startswith(str(bin_dir.parent)), where  # the wheel's copy, not the checkout's


@pytest.mark.slow
def test_console_commands_run_the_demo_pipeline(installed_wheel, tmp_path):
    bin_dir, _, env = installed_wheel
    work = tmp_path / "user"  # anywhere but the repository
    work.mkdir()
    run(
        ["rela-hf-assets", "--output_dir", "offline", "--max_train_samples", "200", "--max_eval_samples", "60"],
        work,
        env,
    )
    run(
        [
            "rela-hf-targets",
            "--dataset_name",
            "offline/fashion_mnist",
            "--prior",
            "offline/efficientnet_lite0",
            "--prior_image_size",
            "32",
            "--target_dim",
            "16",
            "--output_dir",
            "rela_data",
        ],
        work,
        env,
    )
    # the README's form, `accelerate launch -m rela_hf.recipes.byol_rela`, run by the venv's Python so
    # that the launched trainer imports the wheel's copy (a pyenv shim cannot be launched by path)
    run(
        [
            str(bin_dir / "python"),
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            "1",
            "--num_machines",
            "1",
            "--mixed_precision",
            "no",
            "--dynamo_backend",
            "no",
            "--cpu",
            "-m",
            "rela_hf.recipes.byol_rela",
            "--config",
            "demo",
            "--dataset_name",
            "rela_data",
            "--output_dir",
            "run",
            "--backbone",
            "test_resnet",
            "--backbone_kwargs",
            "{}",
            "--max_train_steps",
            "4",
            "--per_device_train_batch_size",
            "16",
            "--switch_fraction",
            "0.5",
            "--checkpointing_steps",
            "2",
            "--logging_steps",
            "1",
            "--dataloader_num_workers",
            "0",
            "--report_to",
            "none",
            "--eval_dataset_name",
            "offline/fashion_mnist",
            "--eval_steps",
            "2",
            "--max_eval_samples",
            "30",
            "--eval_bank_max_samples",
            "60",
        ],
        work,
        env,
    )
    summary = json.loads((work / "run" / "training_summary.json").read_text())
    assert summary["steps"] == 4 and summary["switch_step"] == 2 and summary["method"] == "byol"
    run(
        [
            "rela-hf-evaluate",
            "--model_name_or_path",
            "run",
            "--dataset_name",
            "offline/fashion_mnist",
            "--max_train_samples",
            "60",
            "--max_eval_samples",
            "30",
            "--probe_epochs",
            "3",
        ],
        work,
        env,
    )
    assert (work / "run" / "eval_results.json").is_file()
    run(["rela-hf-push", "--folder_path", "run", "--hub_model_id", "org/demo", "--dry_run", "hub_repo"], work, env)
    card = (work / "hub_repo" / "README.md").read_text()
    assert "ReLA-accelerated BYOL" in card and "online kNN accuracy" in card
    assert (work / "hub_repo" / "model.safetensors").is_file()
    # and the console command itself
    help_text = run(["rela-hf-train", "--help"], work, env)
    assert "--method" in help_text and "--use_rela" in help_text
