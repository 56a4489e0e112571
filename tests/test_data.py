"""Tests for rela_hf.data: load_image_dataset sources and errors, DataRatioSampler."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from rela_hf.data import DataRatioSampler, load_image_dataset

# ---- load_image_dataset: local sources ------------------------------------------------------


@pytest.fixture
def cifar_splits(cifar10_images) -> datasets.DatasetDict:
    """The 20 real CIFAR-10 images as a train (first 15) / test (last 5) DatasetDict."""
    return datasets.DatasetDict(
        {
            "train": cifar10_images.select(range(15)),
            "test": cifar10_images.select(range(15, 20)),
        }
    )


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return np.array_equal(np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB")))


def test_save_to_disk_dataset(cifar10_images, tmp_path):
    cifar10_images.save_to_disk(tmp_path / "cifar")
    dataset = load_image_dataset(str(tmp_path / "cifar"))
    assert dataset.num_rows == 20 and set(dataset.column_names) >= {"image", "label"}
    assert same_pixels(dataset[7]["image"], cifar10_images[7]["image"])


def test_save_to_disk_dataset_dict_picks_the_split(cifar_splits, tmp_path):
    cifar_splits.save_to_disk(tmp_path / "cifar")
    test = load_image_dataset(str(tmp_path / "cifar"), split="test")
    assert test.num_rows == 5
    assert same_pixels(test[0]["image"], cifar_splits["test"][0]["image"])
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['train', 'test'\]"):
        load_image_dataset(str(tmp_path / "cifar"), split="validation")


def test_save_to_disk_single_split_refuses_another_split(tmp_path):
    images = [Image.new("RGB", (8, 8), (i, 0, 0)) for i in range(3)]
    single = datasets.Dataset.from_dict(
        {"image": images}, features=datasets.Features({"image": datasets.Image()}), split="train"
    )
    single.save_to_disk(tmp_path / "single")
    assert load_image_dataset(str(tmp_path / "single")).num_rows == 3
    with pytest.raises(ValueError, match=r"no split 'test'.*\['train'\]"):
        load_image_dataset(str(tmp_path / "single"), split="test")


def test_save_to_disk_streaming(cifar10_images, tmp_path):
    cifar10_images.save_to_disk(tmp_path / "cifar")
    stream = load_image_dataset(str(tmp_path / "cifar"), streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    first = next(iter(stream))
    assert same_pixels(first["image"], cifar10_images[0]["image"])


def write_image_folder(root, cifar_splits) -> None:
    for split, dataset in cifar_splits.items():
        for index, example in enumerate(dataset):
            folder = root / split / f"class_{example['label']}"
            folder.mkdir(parents=True, exist_ok=True)
            example["image"].save(folder / f"{index:03d}.png")


def test_image_folder(cifar_splits, tmp_path):
    write_image_folder(tmp_path / "folder", cifar_splits)
    train = load_image_dataset(str(tmp_path / "folder"))
    test = load_image_dataset(str(tmp_path / "folder"), split="test")
    assert (train.num_rows, test.num_rows) == (15, 5)
    assert isinstance(train.features["label"], datasets.ClassLabel)  # from the class folders
    originals = {np.asarray(image).tobytes() for image in cifar_splits["test"]["image"]}
    assert {np.asarray(image.convert("RGB")).tobytes() for image in test["image"]} == originals
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['train', 'test'\]"):
        load_image_dataset(str(tmp_path / "folder"), split="validation")


def test_image_folder_without_split_folders_is_train(fashion_mnist_slice, tmp_path):
    for index, image in enumerate(fashion_mnist_slice["image"][:6]):
        (tmp_path / "shirts").mkdir(exist_ok=True)
        image.save(tmp_path / "shirts" / f"{index}.png")
    dataset = load_image_dataset(str(tmp_path))
    assert dataset.num_rows == 6 and dataset[0]["image"].mode == "L"


def test_missing_and_non_image_columns(cifar10_images, tmp_path):
    cifar10_images.save_to_disk(tmp_path / "cifar")
    with pytest.raises(ValueError, match=r"no image column 'img'.*\['image', 'label'\]"):
        load_image_dataset(str(tmp_path / "cifar"), image_column="img")
    with pytest.raises(ValueError, match=r"not images.*cast_column\('label', datasets.Image\(\)\)"):
        load_image_dataset(str(tmp_path / "cifar"), image_column="label")


def test_hub_options_on_a_local_folder_are_refused(cifar10_images, tmp_path):
    cifar10_images.save_to_disk(tmp_path / "cifar")
    with pytest.raises(ValueError, match="Hub datasets only"):
        load_image_dataset(str(tmp_path / "cifar"), revision="main")


def test_missing_local_paths_and_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="No dataset directory"):
        load_image_dataset(str(tmp_path / "missing"))
    (tmp_path / "data.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="is a file"):
        load_image_dataset(str(tmp_path / "data.csv"))


# ---- load_image_dataset: the Hub ------------------------------------------------------------


def test_hub_dataset_with_split_and_revision(hub, hub_namespace, cifar_splits):
    repo_id = f"{hub_namespace}/cifar-mini"
    commit = cifar_splits.push_to_hub(repo_id)
    test = load_image_dataset(repo_id, split="test", revision=commit.oid)
    assert test.num_rows == 5
    assert same_pixels(test[0]["image"], cifar_splits["test"][0]["image"])
    with pytest.raises(ValueError, match=r"no split 'validation'.*\['train', 'test'\]"):
        load_image_dataset(repo_id, split="validation")


def test_unreachable_hub_gives_an_offline_hint(tmp_path):
    """With the Hub out of reach (offline mode here), the error says what to do instead."""
    script = textwrap.dedent(
        """
        from rela_hf.data import load_image_dataset
        try:
            load_image_dataset("someone/not-cached-anywhere")
        except ConnectionError as error:
            print(error)
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "offline mode is on" in result.stdout and "save_to_disk folder" in result.stdout


# ---- DataRatioSampler -----------------------------------------------------------------------


def draw(sampler: DataRatioSampler, epoch: int) -> list[int]:
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize(
    ("num_samples", "ratio", "expected"),
    [
        (100, 0.1, 10),
        (100, 0.29, 29),  # 0.29 * 100 = 28.999999999999996 in floating point
        (50_000, 0.2, 10_000),
        (7, 0.5, 3),
        (10, 0.01, 1),  # at least one example
        (9, 1.0, 9),
    ],
)
def test_subset_size_and_no_repetition(num_samples, ratio, expected):
    sampler = DataRatioSampler(num_samples, ratio, seed=3)
    assert len(sampler) == expected
    for epoch in range(3):
        indices = draw(sampler, epoch)
        assert len(indices) == expected and len(set(indices)) == expected
        assert all(0 <= i < num_samples for i in indices)


def test_processes_draw_identical_subsets():
    """Two "processes" (sampler instances) with the same seed agree epoch by epoch."""
    rank0, rank1 = DataRatioSampler(1000, 0.3, seed=7), DataRatioSampler(1000, 0.3, seed=7)
    for epoch in (0, 1, 5):
        assert draw(rank0, epoch) == draw(rank1, epoch)


def test_epochs_and_seeds_give_different_subsets():
    sampler = DataRatioSampler(1000, 0.3, seed=7)
    subsets = [set(draw(sampler, epoch)) for epoch in range(4)]
    assert all(a != b for i, a in enumerate(subsets) for b in subsets[i + 1 :])
    other_seed = DataRatioSampler(1000, 0.3, seed=8)
    assert set(draw(other_seed, 0)) != subsets[0]
    # (seed, epoch) pairs do not alias: (0, 1) differs from (1, 0)
    seed0_epoch1 = draw(DataRatioSampler(100, 0.5, seed=0), 1)
    assert seed0_epoch1 != draw(DataRatioSampler(100, 0.5, seed=1), 0)


def test_subset_is_uniform():
    """Over many epochs every example is drawn about ratio * epochs times."""
    sampler = DataRatioSampler(50, 0.2, seed=0)
    counts = np.bincount(np.concatenate([draw(sampler, e) for e in range(1000)]), minlength=50)
    assert counts.sum() == 1000 * 10
    assert abs(counts.mean() - 200) < 1e-9 and counts.min() > 150 and counts.max() < 250


def test_full_ratio_is_a_permutation_and_unshuffled_is_sorted():
    assert sorted(draw(DataRatioSampler(20, 1.0, seed=1), 0)) == list(range(20))
    assert draw(DataRatioSampler(20, 1.0, shuffle=False), 4) == list(range(20))
    subset = draw(DataRatioSampler(100, 0.3, seed=2, shuffle=False), 1)
    assert subset == sorted(subset) and set(subset) == set(draw(DataRatioSampler(100, 0.3, 2), 1))


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.01])
def test_ratio_outside_the_unit_interval_is_refused(ratio):
    with pytest.raises(ValueError, match=r"ratio must be in \(0, 1\]"):
        DataRatioSampler(100, ratio)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="num_samples"):
        DataRatioSampler(0)
    with pytest.raises(ValueError, match="seed"):
        DataRatioSampler(10, seed=-1)
    with pytest.raises(ValueError, match="epoch"):
        DataRatioSampler(10).set_epoch(-1)


def test_state_dict_round_trip():
    sampler = DataRatioSampler(500, 0.4, seed=11)
    sampler.set_epoch(6)
    buffer = io.BytesIO()
    torch.save(sampler.state_dict(), buffer)
    buffer.seek(0)
    resumed = DataRatioSampler(500, 0.4, seed=11)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert resumed.epoch == 6 and list(resumed) == list(sampler)
    with pytest.raises(ValueError, match=r"ratio=0.4"):
        DataRatioSampler(500, 0.5, seed=11).load_state_dict(sampler.state_dict())
    with pytest.raises(ValueError, match="seed=11"):
        DataRatioSampler(500, 0.4, seed=12).load_state_dict(sampler.state_dict())


def test_with_a_dataloader_over_real_images(cifar10_images):
    dataset = cifar10_images.with_format("torch")
    sampler = DataRatioSampler(len(dataset), ratio=0.5, seed=0)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler)
    labels = torch.cat([batch["label"] for batch in loader])
    expected = torch.tensor(cifar10_images["label"])[list(sampler)]
    assert torch.equal(labels, expected) and len(labels) == 10


def test_accelerate_sets_the_epoch_of_the_sampler():
    """Accelerate's prepared DataLoader calls set_epoch at each epoch, so subsets change."""
    from accelerate import Accelerator

    accelerator = Accelerator(cpu=True)
    sampler = DataRatioSampler(40, ratio=0.25, seed=5)
    loader = accelerator.prepare(DataLoader(list(range(40)), batch_size=5, sampler=sampler))
    epochs = [torch.cat(list(loader)).tolist() for _ in range(3)]
    reference = DataRatioSampler(40, ratio=0.25, seed=5)
    assert epochs == [draw(reference, epoch) for epoch in range(3)]
    assert sampler.epoch == 2
