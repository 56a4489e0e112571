"""The README's Hub quickstart, step 1 then step 2, through the test Hub: targets published as a
targets-only config feed training, and the prior is never loaded in step 2."""

from __future__ import annotations

import pytest

from rela_hf.errors import DataError
from rela_hf.training import targets as training_targets
from tests.recipes import load_recipe
from tests.recipes.trainer import K, args, recipe

make_targets = load_recipe("make_targets")


def _never_load_prior(*_args, **_kwargs):
    raise AssertionError("step 2 loaded the prior: the published targets should have been used")


@pytest.fixture
def published(hub, hub_namespace, fashion_mnist_slice, random_prior):
    """Step 1: the images on the Hub, then their targets pushed as a targets-only config."""
    images, targets = f"{hub_namespace}/fashion-mnist", f"{hub_namespace}/fashion-mnist-rela"
    fashion_mnist_slice.push_to_hub(images, split="train")
    result = make_targets.main(
        [
            "--dataset_name",
            images,
            "--train_split",
            "train",
            "--prior",
            str(random_prior),
            "--prior_image_size",
            "32",
            "--target_dim",
            str(K),
            "--hub_dataset_id",
            targets,
            "--targets_only",
        ]
    )
    return images, targets, result["config_name"]


def test_published_targets_feed_training_without_the_prior(published, tmp_path, monkeypatch, random_prior):
    images, targets, config_name = published
    monkeypatch.setattr(training_targets, "load_prior", _never_load_prior)
    summary = recipe.main(
        args(
            images,
            tmp_path / "run",
            "--targets_dataset_name",
            targets,
            "--targets_config_name",
            config_name,
            "--max_train_steps",
            "4",
        )
    )
    assert summary.steps == 4 and summary.target_dim == K and summary.switch_step == 1
    assert summary.prior == str(random_prior)  # the provenance comes from the published record
    assert not (tmp_path / "run" / "rela_targets").exists()  # nothing computed, nothing cached


def test_targets_of_other_rows_are_refused(published, hub, hub_namespace, fashion_mnist_slice, tmp_path):
    _, targets, config_name = published
    other = f"{hub_namespace}/fewer-images"
    fashion_mnist_slice.select(range(48)).push_to_hub(other, split="train")
    with pytest.raises(DataError, match=r"made from other images.*64 rows"):
        recipe.main(
            args(other, tmp_path / "run", "--targets_dataset_name", targets, "--targets_config_name", config_name)
        )
    assert not (tmp_path / "run" / "config.yaml").exists()
