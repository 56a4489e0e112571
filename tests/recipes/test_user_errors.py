"""User errors end a console command with one line on stderr and a non-zero exit, no traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.recipes import REPO

CASES = [
    (
        "byol_rela.py",
        ["--dataset_name", "x", "--data_ratio", "5"],
        "rela-hf-train: error: data_ratio must be in (0, 1]",
    ),
    ("byol_rela.py", ["--dataset_name", "x", "--method", "moco"], "rela-hf-train: error: method 'moco' is not one of"),
    ("make_targets.py", ["--dataset_name", "x/y", "--prior", "p"], "rela-hf-targets: error: nothing would be kept"),
    ("evaluate_encoder.py", ["--dataset_name", "x"], "rela-hf-evaluate: error: --model_name_or_path is required"),
    ("push_to_hub.py", ["--hub_model_id", "a/b"], "rela-hf-push: error: --folder_path is required"),
]


@pytest.mark.parametrize(("script", "argv", "message"), CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_a_user_error_is_one_line_and_exits_2(script, argv, message):
    result = subprocess.run(
        [sys.executable, str(REPO / "recipes" / script), *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert lines and lines[-1].startswith(message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_an_output_dir_that_is_a_file_is_one_line_too(tmp_path):
    (tmp_path / "file").write_text("x")
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "recipes" / "byol_rela.py"),
            "--dataset_name",
            "x",
            "--output_dir",
            str(tmp_path / "file"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "output_dir" in result.stderr.splitlines()[-1] and "is a file" in result.stderr.splitlines()[-1]
