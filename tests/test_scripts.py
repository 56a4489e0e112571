"""Every script of recipes/, benchmarks/ and scripts/ starts: ``--help`` exits 0 and prints usage.

A script that no longer imports (an API it used moved) fails here instead of on a user's machine.
Each Python script runs as its own interpreter, as a user would start it. Most of the time is the
import of torch and the Hugging Face libraries (~5-10 s of CPU per script), so all of them are
started at once by a module fixture, at most one per CPU core running, and each test waits for its
own; shell scripts are checked with ``bash -n`` (running one would start real work).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from tests.recipes import REPO

FOLDERS = ("recipes", "benchmarks", "scripts")
PYTHON_SCRIPTS = sorted(
    p.relative_to(REPO).as_posix()
    for folder in FOLDERS
    for p in (REPO / folder).glob("*.py")
    if p.name != "__init__.py"  # the package marker of recipes/, not a script
)
SHELL_SCRIPTS = sorted(p.relative_to(REPO).as_posix() for folder in FOLDERS for p in (REPO / folder).glob("*.sh"))
TIMEOUT_S = 300  # per script, generous for a loaded 2-core machine; normal is 5-20 s


def run_help(script: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, script, "--help"],
        check=False,
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )


@pytest.fixture(scope="module")
def help_runs() -> dict[str, Future]:
    """``--help`` of every Python script, started together (one per core at a time)."""
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 1)) as pool:
        yield {script: pool.submit(run_help, script) for script in PYTHON_SCRIPTS}


def test_the_scripts_are_found():
    assert {"recipes/byol_rela.py", "benchmarks/trainer_overhead.py"} <= set(PYTHON_SCRIPTS)
    assert "recipes/demo.sh" in SHELL_SCRIPTS


@pytest.mark.parametrize("script", PYTHON_SCRIPTS)
def test_python_script_starts(script, help_runs):
    result = help_runs[script].result()
    assert result.returncode == 0, f"{script} --help failed:\n{result.stderr[-3000:]}"
    assert "usage:" in result.stdout.lower(), f"{script} --help printed no usage:\n{result.stdout}"


@pytest.mark.parametrize("script", SHELL_SCRIPTS)
def test_shell_script_parses(script):
    bash = shutil.which("bash")
    assert bash is not None, "bash is needed to check the shell scripts"
    result = subprocess.run([bash, "-n", script], check=False, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"bash -n {script}:\n{result.stderr}"
