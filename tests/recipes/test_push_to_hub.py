"""Tests of recipes/push_to_hub.py against the test Hub."""

from __future__ import annotations

import timm

from rela_hf.hub import (
    export_backbone,
)
from tests.recipes import load_recipe


def test_push_to_hub_recipe_dry_run_then_push(hub, hub_namespace, training_run, tmp_path, capsys):
    recipe = load_recipe("push_to_hub")
    repo_id = f"{hub_namespace}/from-recipe"

    recipe.main(["--folder_path", str(training_run), "--hub_model_id", repo_id, "--dry_run", str(tmp_path / "preview")])
    assert (tmp_path / "preview" / "README.md").is_file()
    from huggingface_hub import HfApi

    assert not HfApi().repo_exists(repo_id)  # a dry run pushes nothing

    commit = recipe.main(["--folder_path", str(training_run), "--hub_model_id", repo_id, "--include_training_state"])
    assert hub.commits(repo_id)[0].oid == commit.oid
    assert "last-checkpoint/run_state.json" in hub.files(repo_id)
    assert repo_id in capsys.readouterr().out

    bare = export_backbone(timm.create_model("test_resnet", num_classes=0), tmp_path / "bare")
    recipe.main(["--folder_path", str(bare), "--hub_model_id", f"{hub_namespace}/bare"])
    assert b"No evaluation results" in hub.files(f"{hub_namespace}/bare")["README.md"]


def test_push_warns_when_the_licence_is_unknown(hub, hub_namespace, training_run, tmp_path, caplog):
    recipe = load_recipe("push_to_hub")
    caplog.set_level("WARNING")
    recipe.main(
        [
            "--folder_path",
            str(training_run),
            "--hub_model_id",
            f"{hub_namespace}/x",
            "--dry_run",
            str(tmp_path / "unknown"),
        ]
    )
    assert "The licence of these weights is unknown" in caplog.text
    assert "--license" in caplog.text and "zalando-datasets/fashion_mnist" in caplog.text
    caplog.clear()
    recipe.main(
        [
            "--folder_path",
            str(training_run),
            "--hub_model_id",
            f"{hub_namespace}/x",
            "--dry_run",
            str(tmp_path / "chosen"),
            "--license",
            "cc-by-nc-4.0",
        ]
    )
    assert "licence" not in caplog.text
    assert "license: cc-by-nc-4.0" in (tmp_path / "chosen" / "README.md").read_text()
