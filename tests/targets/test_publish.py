"""Saving and pushing efficient data: the targets, their whitening and a card travel together."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard

from rela_hf.targets import (
    INFO_FILENAME,
    WHITENING_FILENAME,
    add_rela_targets,
    attach_rela_targets,
    find_rela_targets_info,
    load_rela_targets_info,
    push_rela_dataset,
    rela_targets_info,
    save_rela_dataset,
    whiten_new_images,
)


def column(dataset, name: str) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")[name])


def embed_all(prior, images) -> np.ndarray:
    return prior.embed(list(images)).numpy()


@pytest.fixture(scope="module")
def cifar_with_targets(random_prior, cifar10_images):
    return add_rela_targets(
        cifar10_images,
        random_prior,
        k=8,
        source={"id": "uoft-cs/cifar10", "split": "test", "revision": "0" * 40},
    )


def test_save_rela_dataset_round_trip(cifar_with_targets, random_prior, tmp_path):
    out = save_rela_dataset(cifar_with_targets, tmp_path / "efficient")
    assert {INFO_FILENAME, WHITENING_FILENAME, "README.md", "dataset_info.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # staging folder gone
    loaded = datasets.load_from_disk(str(out))
    np.testing.assert_array_equal(column(loaded, "rela_target"), column(cifar_with_targets, "rela_target"))
    info = load_rela_targets_info(out)
    assert info.whitening.sha256() == rela_targets_info(cifar_with_targets).whitening.sha256()
    assert info.source.id == "uoft-cs/cifar10" and info.prior.name == "test_resnet"
    assert info.prior.pretrained is False  # a random prior never reads as a pretrained one
    record = json.loads((out / INFO_FILENAME).read_text())
    assert record["n_components"] == 8 and record["paper"] == "arXiv:2405.14669"
    new = whiten_new_images(loaded["image"][:3], random_prior, info)
    np.testing.assert_allclose(new.numpy(), column(loaded, "rela_target")[:3], atol=1e-5)
    card = DatasetCard.load(out / "README.md")
    assert card.data.rela_targets[0]["n_components"] == 8
    assert "arXiv" in card.text and "uoft-cs/cifar10" in card.text
    assert "**randomly initialised** weights" in card.text and "pretrained=False" in card.text
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_rela_dataset(cifar_with_targets, out)
    assert find_rela_targets_info(out).whitening.sha256() == info.whitening.sha256()
    assert find_rela_targets_info(tmp_path) is None  # a folder without a record
    assert find_rela_targets_info(tmp_path / "missing") is None


def test_push_and_load_dataset_round_trip(hub, hub_namespace, cifar_with_targets):
    repo_id = f"{hub_namespace}/cifar10-rela"
    push_rela_dataset(cifar_with_targets, repo_id, split="train")
    loaded = datasets.load_dataset(repo_id, split="train")
    assert loaded.features["rela_target"].length == 8  # List(Value("float32"), length=k)
    assert loaded.features["rela_target"].feature.dtype == "float32"
    np.testing.assert_array_equal(column(loaded, "rela_target"), column(cifar_with_targets, "rela_target"))
    assert np.array_equal(np.asarray(loaded[3]["image"]), np.asarray(cifar_with_targets[3]["image"]))
    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert card.data.configs[0]["config_name"] == "default"  # push_to_hub's metadata survived
    assert card.data.rela_targets[0]["prior"] == "test_resnet"
    assert card.data.rela_targets[0]["source_revision"] == "0" * 40
    assert "rela" in card.data.tags and f'load_dataset("{repo_id}"' in card.text
    info = load_rela_targets_info(repo_id)
    assert info.whitening.sha256() == rela_targets_info(cifar_with_targets).whitening.sha256()


def test_streaming_from_the_hub_with_a_pushed_whitening(
    hub, hub_namespace, cifar10_images, cifar_with_targets, random_prior
):
    """Targets for a streamed Hub split, computed with the whitening read back from the Hub."""
    repo_id = f"{hub_namespace}/cifar10"
    cifar10_images.push_to_hub(repo_id, split="test")
    stream = datasets.load_dataset(repo_id, split="test", streaming=True)
    info = rela_targets_info(cifar_with_targets)
    pushed = f"{hub_namespace}/cifar10-rela"
    push_rela_dataset(cifar_with_targets, pushed, split="test", card=False)
    streamed = add_rela_targets(stream, random_prior, whitening=load_rela_targets_info(pushed))
    targets = np.stack([row["rela_target"] for row in streamed])
    np.testing.assert_allclose(targets, column(cifar_with_targets, "rela_target"), atol=1e-5)
    assert rela_targets_info(streamed).whitening.sha256() == info.whitening.sha256()


def test_push_targets_only_config(hub, hub_namespace, efficientnet_lite0_prior, random_prior, cifar10_images):
    repo_id = f"{hub_namespace}/cifar10"
    cifar10_images.push_to_hub(repo_id, split="test")  # the source dataset, images only
    with_targets = add_rela_targets(
        datasets.load_dataset(repo_id, split="test"),
        efficientnet_lite0_prior,
        k=16,
        source={"id": repo_id, "split": "test"},
    )
    config = rela_targets_info(with_targets).config_name
    assert config == "efficientnet_lite0_pca16"
    push_rela_dataset(with_targets, repo_id, targets_only=True, split="test")

    targets = datasets.load_dataset(repo_id, config, split="test")
    assert targets.column_names == ["idx", "rela_target"]  # no images uploaded again
    images = datasets.load_dataset(repo_id, split="test")
    assert images.column_names == ["image", "label"]
    joined = attach_rela_targets(images, targets.shuffle(seed=0))
    np.testing.assert_array_equal(column(joined, "rela_target"), column(with_targets, "rela_target"))
    info = load_rela_targets_info(repo_id, config_name=config)
    assert info.index_column == "idx" and info.prior.embed_dim == 1280
    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert {c["config_name"] for c in card.data.configs} == {"default", config}
    assert [entry["config_name"] for entry in card.data.rela_targets] == [config]
    assert "attach_rela_targets" in card.text

    # a second whitening for the same config would make its splits incomparable: refused up front
    other = add_rela_targets(images, random_prior, k=16)
    with pytest.raises(ValueError, match="another whitening"):
        push_rela_dataset(other, repo_id, targets_only=True, config_name=config, split="train")
    assert "train" not in datasets.get_dataset_split_names(repo_id, config)


def test_attach_rela_targets_checks_the_index(cifar10_images):
    targets = datasets.Dataset.from_dict({"idx": [0, 1, 1], "t": [[0.0], [1.0], [2.0]]})
    with pytest.raises(ValueError, match="3 target rows for 20 images"):
        attach_rela_targets(cifar10_images, targets)
    with pytest.raises(ValueError, match="no 'idx' column"):
        attach_rela_targets(cifar10_images, targets.remove_columns("idx"))
    with pytest.raises(ValueError, match="not a permutation"):
        attach_rela_targets(cifar10_images.select(range(3)), targets)
