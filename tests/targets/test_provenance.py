"""The targets' record in the dataset's own features: what keeps it, what drops it, round trips.

Every test starts from real CIFAR-10 images with targets of a small random prior (k=4).
"""

from __future__ import annotations

import datasets
import numpy as np
import pytest
from huggingface_hub import DatasetCard

from rela_hf.targets import (
    add_rela_targets,
    attach_rela_targets,
    load_rela_targets_info,
    provenance,
    push_rela_dataset,
    rela_targets_info,
    save_rela_dataset,
    with_rela_targets_info,
)

SOURCE = {"id": "uoft-cs/cifar10", "split": "test", "revision": "0" * 40}


@pytest.fixture(scope="module")
def with_targets(random_prior, cifar10_images):
    return add_rela_targets(cifar10_images, random_prior, k=4, source=SOURCE)


@pytest.fixture
def forget_whitenings(monkeypatch):
    """Call it to be as a fresh Python process: no whitening fitted or loaded yet (undone after)."""
    return lambda: monkeypatch.setattr(provenance, "_KNOWN_WHITENINGS", {})


def targets(dataset) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")["rela_target"])


def assert_same_record(dataset, original) -> None:
    """``original``: the dataset ``add_rela_targets`` returned, or its record as a dict."""
    expected = original if isinstance(original, dict) else rela_targets_info(original).to_dict()
    assert rela_targets_info(dataset).to_dict() == expected


KEEPING_OPERATIONS = {
    "select": lambda ds: ds.select([3, 1, 4]),
    "shuffle": lambda ds: ds.shuffle(seed=0),
    "filter": lambda ds: ds.filter(lambda row: row["label"] < 5),
    "map": lambda ds: ds.map(lambda row: {"half": row["label"] / 2}),
    "map_batched": lambda ds: ds.map(lambda b: {"half": [x / 2 for x in b["label"]]}, batched=True),
    "map_remove_other": lambda ds: ds.map(lambda row: {"n": 1}, remove_columns=["label"]),
    "map_batched_remove_other": lambda ds: ds.map(
        lambda b: {"n": [1] * len(b["label"])}, batched=True, remove_columns=["image", "label"]
    ),
    "train_test_split_train": lambda ds: ds.train_test_split(test_size=0.25, seed=0)["train"],
    "train_test_split_test": lambda ds: ds.train_test_split(test_size=0.25, seed=0)["test"],
    "sort": lambda ds: ds.sort("label"),
    "cast_other_column": lambda ds: ds.cast_column("label", datasets.Value("int32")),
    "flatten_indices": lambda ds: ds.shuffle(seed=0).flatten_indices(),
    "concatenate_with_itself": lambda ds: datasets.concatenate_datasets([ds, ds]),
    "with_format": lambda ds: ds.with_format("torch"),
    "select_columns": lambda ds: ds.select_columns(["rela_target"]),
    "datasetdict_map": lambda ds: datasets.DatasetDict(train=ds).map(lambda r: {"n": 1})["train"],
    "datasetdict_shuffle": lambda ds: datasets.DatasetDict(train=ds).shuffle(seed=0)["train"],
    "to_iterable_dataset": lambda ds: ds.to_iterable_dataset(),
    "iterable_shuffle_filter": lambda ds: ds.to_iterable_dataset().shuffle(seed=0).filter(lambda row: row["label"] < 5),
}


@pytest.mark.parametrize("operation", list(KEEPING_OPERATIONS))
def test_the_record_survives(operation, with_targets):
    derived = KEEPING_OPERATIONS[operation](with_targets)
    assert_same_record(derived, with_targets)


def test_a_renamed_target_column_is_reported_under_its_name(with_targets):
    info = rela_targets_info(with_targets.rename_column("rela_target", "target"))
    assert info.target_column == "target"
    assert info.whitening.sha256() == rela_targets_info(with_targets).whitening.sha256()


DROPPING_OPERATIONS = {
    "remove_target_column": lambda ds: ds.remove_columns("rela_target"),
    "cast_target_column": lambda ds: ds.cast_column("rela_target", datasets.List(datasets.Value("float64"), length=4)),
    "map_declaring_plain_features": lambda ds: ds.map(
        lambda row: {"rela_target": [0.0] * 4},
        features=datasets.Features({**ds.features, "rela_target": datasets.List(datasets.Value("float32"), length=4)}),
    ),
    "iterable_map_without_features": lambda ds: ds.to_iterable_dataset().map(lambda r: r),
}


@pytest.mark.parametrize("operation", list(DROPPING_OPERATIONS))
def test_the_record_goes_with_the_column_or_its_type(operation, with_targets):
    with pytest.raises(LookupError, match="No ReLA targets are recorded"):
        rela_targets_info(DROPPING_OPERATIONS[operation](with_targets))


def test_a_same_type_rewrite_of_the_targets_is_not_detected(with_targets):
    """datasets keeps the feature of a column whose type is unchanged, so the record stays."""
    rewritten = with_targets.map(lambda row: {"rela_target": [0.0] * 4})
    assert np.all(targets(rewritten) == 0)
    assert rela_targets_info(rewritten).n_components == 4


def test_a_removed_embedding_column_leaves_the_record(random_prior, cifar10_images):
    out = add_rela_targets(cifar10_images, random_prior, k=4, keep_embeddings=True)
    assert rela_targets_info(out).embedding_column == "rela_embedding"
    assert rela_targets_info(out.remove_columns("rela_embedding")).embedding_column is None


def test_targets_of_two_whitenings_do_not_concatenate(with_targets, random_prior, cifar10_images):
    other = add_rela_targets(cifar10_images, random_prior, k=4, source={"split": "train"})
    with pytest.raises(ValueError, match="can't be aligned"):
        datasets.concatenate_datasets([with_targets, other])


def test_two_target_columns_need_target_column(with_targets, vit_prior):
    both = add_rela_targets(with_targets, vit_prior, k=4, target_column="vit_target")
    with pytest.raises(LookupError, match="pass target_column="):
        rela_targets_info(both)
    assert rela_targets_info(both, target_column="vit_target").prior.library == "transformers"
    assert rela_targets_info(both, target_column="rela_target").prior.name == "test_resnet"


def test_save_to_disk_and_load_from_disk(with_targets, tmp_path):
    with_targets.save_to_disk(str(tmp_path / "plain"))
    assert_same_record(datasets.load_from_disk(str(tmp_path / "plain")), with_targets)
    datasets.DatasetDict(test=with_targets).save_to_disk(str(tmp_path / "dict"))
    assert_same_record(datasets.load_from_disk(str(tmp_path / "dict"))["test"], with_targets)


def test_a_saved_folder_gives_the_whitening_to_a_new_process(with_targets, tmp_path, forget_whitenings):
    expected = rela_targets_info(with_targets).to_dict()
    folder = save_rela_dataset(with_targets, tmp_path / "efficient")
    forget_whitenings()
    loaded = datasets.load_from_disk(str(folder))
    derived = loaded.shuffle(seed=0).map(lambda row: {"n": 1})  # a cache file in the folder
    assert_same_record(derived, expected)

    forget_whitenings()
    in_memory = datasets.load_from_disk(str(folder), keep_in_memory=True)  # no files to look at
    with pytest.raises(LookupError, match="load_rela_targets_info"):
        rela_targets_info(in_memory)
    load_rela_targets_info(folder)
    assert_same_record(in_memory, expected)


def test_push_to_hub_and_load_dataset(hub, hub_namespace, with_targets, forget_whitenings):
    expected = rela_targets_info(with_targets).to_dict()
    repo_id = f"{hub_namespace}/cifar10-rela"
    push_rela_dataset(with_targets, repo_id, split="test")
    forget_whitenings()
    loaded = datasets.load_dataset(repo_id, split="test")
    np.testing.assert_array_equal(targets(loaded), targets(with_targets))
    assert_same_record(loaded.shuffle(seed=0).select(range(5)), expected)  # whitening: the Hub
    stream = datasets.load_dataset(repo_id, split="test", streaming=True)
    assert_same_record(stream, expected)

    plain = f"{hub_namespace}/plain"  # datasets' own push: the record travels, the files do not
    datasets.DatasetDict(test=with_targets).push_to_hub(plain)
    forget_whitenings()
    loaded = datasets.load_dataset(plain)["test"]
    with pytest.raises(LookupError, match="whitening parameters were not found"):
        rela_targets_info(loaded)
    load_rela_targets_info(repo_id)  # the same whitening, published with the first push
    assert_same_record(loaded, expected)


def test_the_card_of_a_transformed_dataset_keeps_its_provenance(with_targets, tmp_path):
    subset = with_targets.shuffle(seed=0).select(range(10))
    card = DatasetCard.load(save_rela_dataset(subset, tmp_path / "subset") / "README.md")
    assert card.data.rela_targets[0]["prior"] == "test_resnet"
    assert card.data.rela_targets[0]["source_revision"] == "0" * 40
    assert "uoft-cs/cifar10" in card.text


def test_targets_only_layout_and_attach(with_targets, cifar10_images, tmp_path):
    folder = save_rela_dataset(with_targets, tmp_path / "targets", targets_only=True)
    loaded = datasets.load_from_disk(str(folder))
    assert rela_targets_info(loaded).index_column == "idx"
    joined = attach_rela_targets(cifar10_images, loaded.shuffle(seed=0))
    np.testing.assert_array_equal(targets(joined), targets(with_targets))
    info = rela_targets_info(joined)
    assert info.index_column is None and info.source.id == SOURCE["id"]


def test_with_rela_targets_info_puts_a_record_back(with_targets):
    info = rela_targets_info(with_targets)
    plain = with_targets.cast_column("rela_target", datasets.List(datasets.Value("float32"), length=4))
    assert_same_record(with_rela_targets_info(plain, info), with_targets)
    assert with_rela_targets_info(with_targets, info) is with_targets  # already there


def test_with_rela_targets_info_checks_the_column(with_targets, cifar10_images):
    info = rela_targets_info(with_targets)
    with pytest.raises(ValueError, match="has no column 'rela_target'"):
        with_rela_targets_info(cifar10_images, info)
    as_label = cifar10_images.rename_column("label", "rela_target")
    with pytest.raises(ValueError, match="not a list of floats"):
        with_rela_targets_info(as_label, info)
    wider = with_targets.remove_columns("rela_target").add_column("rela_target", [[0.0] * 5] * len(with_targets))
    with pytest.raises(ValueError, match=r"5-d vectors.*k=4"):
        with_rela_targets_info(
            wider.cast_column("rela_target", datasets.List(datasets.Value("float32"), length=5)),
            info,
        )
    with pytest.raises(TypeError, match="takes one split"):
        rela_targets_info(datasets.DatasetDict(test=with_targets))


def test_a_stream_without_features(random_prior, cifar10_images, tmp_path):
    """Paths: features inferred from the first rows. PIL objects: refused before any work."""
    paths = []
    for i, image in enumerate(cifar10_images["image"]):
        image.save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    stream = datasets.IterableDataset.from_generator(lambda: ({"image": p} for p in paths))
    assert stream.features is None
    streamed = add_rela_targets(stream, random_prior, k=4, batch_size=8)
    assert rela_targets_info(streamed).whitening.n_samples == 20

    images = cifar10_images["image"]
    untyped = datasets.IterableDataset.from_generator(lambda: ({"image": im} for im in images))
    with pytest.raises(ValueError, match="features are unknown and cannot be inferred"):
        add_rela_targets(untyped, random_prior, k=4)
