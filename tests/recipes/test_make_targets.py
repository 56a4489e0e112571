"""End-to-end tests of recipes/make_targets.py (run in-process through its ``main(argv)``).

Inputs are real images in the three forms the recipe accepts (a ``save_to_disk`` folder, an
image folder, a Hub dataset on the test Hub) and the real ImageNet EfficientNet-Lite0 prior.
"""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard, HfApi

from rela_hf.errors import ConfigError
from rela_hf.targets import (
    INFO_FILENAME,
    WHITENING_FILENAME,
    attach_rela_targets,
    load_rela_targets_info,
)
from tests.recipes import load_recipe


@pytest.fixture(scope="module")
def make_targets():
    return load_recipe("make_targets")


@pytest.fixture(scope="module")
def prior_folder(tmp_path_factory) -> str:
    from rela_hf.convert import convert_efficientnet_lite0

    return str(convert_efficientnet_lite0(tmp_path_factory.mktemp("prior") / "efficientnet_lite0"))


def targets_of(dataset, column: str = "rela_target") -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")[column], dtype=np.float64)


def assert_whitened(targets: np.ndarray) -> None:
    np.testing.assert_allclose(targets.mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(np.cov(targets, rowvar=False, bias=True), np.eye(targets.shape[1]), atol=1e-4)


def test_save_to_disk_folder_in_output_dir_out(make_targets, prior_folder, fashion_mnist_slice, tmp_path):
    datasets.DatasetDict({"train": fashion_mnist_slice}).save_to_disk(str(tmp_path / "fashion_mnist"))
    result = make_targets.main(
        [
            "--dataset_name",
            str(tmp_path / "fashion_mnist"),
            "--prior",
            prior_folder,
            "--prior_image_size",
            "64",
            "--student_width",
            "24",
            "--prior_batch_size",
            "32",
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    assert result["k"] == 24 and result["num_rows"] == 64
    out = datasets.load_from_disk(str(tmp_path / "out"))
    assert out.column_names == ["image", "label", "rela_target"]
    assert_whitened(targets_of(out))
    record = json.loads((tmp_path / "out" / INFO_FILENAME).read_text())
    assert record["prior"]["name"] == prior_folder and record["prior"]["preprocessing"]["input_size"] == [3, 64, 64]
    assert record["source"]["id"] == "fashion_mnist" and record["source"]["split"] == "train"
    assert record["prior"]["pretrained"] is True
    assert "randomly initialised" not in (tmp_path / "out" / "README.md").read_text()
    assert (tmp_path / "out" / WHITENING_FILENAME).exists()
    assert DatasetCard.load(tmp_path / "out" / "README.md").data.rela_targets[0]["n_components"] == 24


def test_random_prior_is_seeded_and_recorded(make_targets, fashion_mnist_slice, tmp_path):
    """--prior_random_init with the same --seed gives the same prior, so the same targets."""
    datasets.DatasetDict({"train": fashion_mnist_slice}).save_to_disk(str(tmp_path / "fm"))

    def run(seed: int, out: str) -> np.ndarray:
        make_targets.main(
            [
                "--dataset_name",
                str(tmp_path / "fm"),
                "--prior",
                "test_resnet",
                "--prior_random_init",
                "--seed",
                str(seed),
                "--prior_image_size",
                "32",
                "--target_dim",
                "8",
                "--output_dir",
                str(tmp_path / out),
            ]
        )
        return targets_of(datasets.load_from_disk(str(tmp_path / out)))

    first, again, other = run(3, "a"), run(3, "b"), run(4, "c")
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 0.1
    assert load_rela_targets_info(tmp_path / "a").prior.pretrained is False
    assert "**randomly initialised** weights" in (tmp_path / "a" / "README.md").read_text()


def test_image_folder_targets_only(make_targets, prior_folder, cifar10_images, tmp_path):
    names = [
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ]
    for i, row in enumerate(cifar10_images):
        folder = tmp_path / "images" / names[row["label"]]
        folder.mkdir(parents=True, exist_ok=True)
        row["image"].save(folder / f"{i:02d}.png")
    make_targets.main(
        [
            "--dataset_name",
            str(tmp_path / "images"),
            "--prior",
            prior_folder,
            "--prior_image_size",
            "64",
            "--target_dim",
            "8",
            "--targets_only",
            "--output_dir",
            str(tmp_path / "targets"),
        ]
    )
    targets = datasets.load_from_disk(str(tmp_path / "targets"))
    assert targets.column_names == ["idx", "rela_target"] and len(targets) == 20
    assert_whitened(targets_of(targets))
    assert load_rela_targets_info(tmp_path / "targets").index_column == "idx"


def test_hub_dataset_in_targets_only_config_out(make_targets, prior_folder, cifar10_images, hub, hub_namespace):
    repo_id = f"{hub_namespace}/cifar10"
    cifar10_images.push_to_hub(repo_id, split="train")
    sha = HfApi().dataset_info(repo_id).sha
    result = make_targets.main(
        [
            "--dataset_name",
            repo_id,
            "--prior",
            prior_folder,
            "--prior_image_size",
            "64",
            "--target_dim",
            "16",
            "--hub_dataset_id",
            repo_id,
            "--targets_only",
        ]
    )
    assert result["config_name"] == "efficientnet_lite0_pca16"
    images = datasets.load_dataset(repo_id, split="train")
    targets = datasets.load_dataset(repo_id, "efficientnet_lite0_pca16", split="train")
    assert images.column_names == ["image", "label"] and targets.column_names == [
        "idx",
        "rela_target",
    ]
    assert_whitened(targets_of(attach_rela_targets(images, targets)))
    card = DatasetCard.load(repo_id, repo_type="dataset")
    entry = card.data.rela_targets[0]
    assert entry["source_dataset"] == repo_id and entry["source_revision"] == sha  # pinned commit
    assert entry["config_name"] == "efficientnet_lite0_pca16" and entry["n_components"] == 16
    files = set(HfApi().list_repo_files(repo_id, repo_type="dataset"))
    assert {
        f"efficientnet_lite0_pca16/{INFO_FILENAME}",
        f"efficientnet_lite0_pca16/{WHITENING_FILENAME}",
    } <= files


def test_hub_dataset_to_a_new_repo_with_images(make_targets, prior_folder, cifar10_images, hub, hub_namespace):
    source_id, out_id = f"{hub_namespace}/cifar10", f"{hub_namespace}/cifar10-rela"
    cifar10_images.push_to_hub(source_id, split="test")
    make_targets.main(
        [
            "--dataset_name",
            source_id,
            "--train_split",
            "test",
            "--max_train_samples",
            "12",
            "--prior",
            prior_folder,
            "--prior_image_size",
            "64",
            "--target_dim",
            "6",
            "--keep_embeddings",
            "--hub_dataset_id",
            out_id,
        ]
    )
    loaded = datasets.load_dataset(out_id, split="test")
    assert loaded.column_names == ["image", "label", "rela_target", "rela_embedding"] and len(loaded) == 12
    assert loaded[0]["image"].size == (32, 32)
    assert_whitened(targets_of(loaded))
    assert np.asarray(loaded.with_format("numpy")["rela_embedding"]).shape == (12, 1280)
    assert load_rela_targets_info(out_id).source.id == source_id


def test_bad_invocations(make_targets, prior_folder, tmp_path):
    with pytest.raises(ConfigError, match="--output_dir and/or --hub_dataset_id"):
        make_targets.main(["--dataset_name", "x/y", "--prior", prior_folder])  # no output at all
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("x")
    with pytest.raises(ConfigError, match="--overwrite_output_dir"):
        make_targets.main(["--dataset_name", "x/y", "--prior", prior_folder, "--output_dir", str(tmp_path / "full")])
    with pytest.raises(ConfigError, match="is not a folder"):
        make_targets.main(["--dataset_name", str(tmp_path / "missing"), "--prior", prior_folder, "--output_dir", "o"])
