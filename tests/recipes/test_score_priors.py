"""recipes/score_priors.py (rela-hf-score-priors) end to end on real images: the printed ranking,
prior_scores.json, and bad input refused before any prior runs."""

from __future__ import annotations

import json
import sys

import pytest

from rela_hf.errors import ConfigError
from tests.recipes import load_recipe


@pytest.fixture(scope="module")
def score_priors():
    return load_recipe("score_priors")


def _argv(data, output_dir, *extra):
    return [
        "--dataset_name",
        str(data),
        "--max_train_samples",
        "40",
        "--student_width",
        "16",
        "--device",
        "cpu",
        "--output_dir",
        str(output_dir),
        *extra,
    ]


def test_ranks_the_candidates_and_writes_every_score(score_priors, plain_data, random_prior, tmp_path, capsys):
    results = score_priors.main(
        _argv(
            plain_data,
            tmp_path / "scores",
            "--label_column",
            "label",
            "--priors",
            f"folder={random_prior},image_size=32",
            "vit=test_vit,random_init=true,image_size=32",
        )
    )
    printed = capsys.readouterr().out
    assert (
        "Priors ranked by view_alignment" in printed and "40 images of fashion_mnist_64 (train, 64 images)" in printed
    )
    assert "kNN acc. of targets" in printed
    rows = [line for line in printed.splitlines() if line.startswith(("| 1 ", "| 2 "))]
    assert [row.split("|")[2].strip() for row in rows] == [p["name"] for p in results["priors"]]

    written = json.loads((tmp_path / "scores" / "prior_scores.json").read_text())
    assert results.pop("output_file") == str(tmp_path / "scores" / "prior_scores.json")
    assert written == json.loads(json.dumps(results))  # the file is what main returned
    assert written["dataset"] == {
        "name": "fashion_mnist_64",
        "config": None,
        "split": "train",
        "revision": None,
        "num_rows": 64,
    }
    assert written["command"].startswith("rela-hf-score-priors --dataset_name")
    scores = [p["score"] for p in written["priors"]]
    assert scores == sorted(scores, reverse=True)
    by_name = {p["name"]: p for p in written["priors"]}
    assert by_name["folder"]["embed_dim"] == 96 and by_name["vit"]["embed_dim"] == 64
    assert all(
        p["target_dim"] == 16 and 0 <= p["knn_accuracy"] <= 1 and p["dataset_size"] == 64 for p in written["priors"]
    )


def test_an_existing_result_is_kept_unless_overwritten(score_priors, plain_data, tmp_path):
    argv = _argv(plain_data, tmp_path, "--priors", "test_resnet,random_init=true,image_size=32")
    score_priors.main(argv)
    before = (tmp_path / "prior_scores.json").read_text()
    with pytest.raises(ConfigError, match="exists: pass --overwrite_output_dir"):
        score_priors.main(argv)
    assert (tmp_path / "prior_scores.json").read_text() == before
    score_priors.main([*argv, "--overwrite_output_dir", "--seed", "1"])
    assert (tmp_path / "prior_scores.json").read_text() != before


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "--priors is required"),
        (["--priors", "test_resnet,size=3"], r"--priors: .*unknown option\(s\) \['size'\]"),
        (["--priors", "a=test_resnet", "a=test_vit"], "two candidates share a name"),
        (
            ["--priors", "test_resnet", "--max_train_samples", "2"],
            "--max_train_samples 2: must be at least 3",
        ),
    ],
)
def test_bad_options_are_refused_before_anything_runs(score_priors, plain_data, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        score_priors.main(["--dataset_name", str(plain_data), "--output_dir", str(tmp_path), *extra])
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--priors", "no_such_architecture_xyz"], "--priors: "),
        (["--priors", "test_resnet", "--label_column", "class"], "no label column 'class'"),
    ],
)
def test_bad_priors_and_columns_are_named(score_priors, plain_data, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        score_priors.main(["--dataset_name", str(plain_data), "--output_dir", str(tmp_path), *extra])
    assert not (tmp_path / "prior_scores.json").exists()


def test_the_command_starts_and_reports_errors_on_one_line(score_priors, plain_data, monkeypatch, capsys):
    with pytest.raises(SystemExit) as help_exit:
        score_priors.parse_args(["--help"])
    assert help_exit.value.code == 0 and "--priors" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["rela-hf-score-priors", "--dataset_name", str(plain_data)])
    with pytest.raises(SystemExit) as failed:
        score_priors.cli()
    assert failed.value.code == 2
    assert capsys.readouterr().err.strip() == (
        "rela-hf-score-priors: error: --priors is required: one or more candidates, each [name=]prior[,option=value...]."
    )
