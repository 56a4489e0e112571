"""recipes/byol_rela.py on bad input and faults: a clear error that says what to do, before any
compute where the input is at fault, and nothing written (no half checkpoint, export or summary).

Inputs already covered elsewhere (tests/recipes/test_byol_rela.py: data_ratio <= 0 or > 1, a
batch larger than the data, a typo'd YAML key, targets of the wrong width, the output folder of
another run; tests/targets/test_bad_input.py: the targets' own) are not repeated here.
"""

from __future__ import annotations

import io
import json

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from rela_hf.checkpoint import CheckpointError
from rela_hf.errors import ConfigError, DataError
from rela_hf.training import TrainingDiverged
from tests.recipes.trainer import args, one_thread, recipe, reset_accelerate


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_folder_with(tmp_path, fashion_mnist_slice, bad: dict[str, bytes]):
    """An image folder (class sub-folders) of 24 real images plus the given bad files."""
    root = tmp_path / "images"
    for i, row in enumerate(fashion_mnist_slice.select(range(24))):
        folder = root / "train" / str(row["label"])
        folder.mkdir(parents=True, exist_ok=True)
        row["image"].save(folder / f"{i}.png")
    for name, content in bad.items():
        (root / "train" / "0").mkdir(parents=True, exist_ok=True)
        (root / "train" / "0" / name).write_bytes(content)
    return root


@pytest.mark.parametrize(
    "bad",
    [
        {"zero_bytes.png": b""},
        {"corrupt.png": b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4},
    ],
)
def test_unreadable_images_are_refused_before_training(bad, fashion_mnist_slice, tmp_path):
    good = png(fashion_mnist_slice[0]["image"])
    truncated = {"truncated.png": good[: len(good) // 2]}
    data = image_folder_with(tmp_path, fashion_mnist_slice, {**bad, **truncated})
    output_dir = tmp_path / "out"
    with one_thread(), pytest.raises(DataError, match=r"cannot be decoded.*never skips.*(zero_bytes|corrupt)\.png"):
        recipe.main(args(data, output_dir, "--use_rela", "false", "--label_column", "none"))
    reset_accelerate()
    assert not output_dir.exists()


def test_a_text_column_as_the_image_column_is_refused(fashion_mnist_slice, tmp_path):
    data = tmp_path / "data"
    fashion_mnist_slice.add_column("caption", ["a shirt"] * len(fashion_mnist_slice)).save_to_disk(str(data))
    with pytest.raises(ValueError, match=r"caption.*not an image|Image"):
        recipe.main(args(data, tmp_path / "out", "--use_rela", "false", "--image_column", "caption"))
    reset_accelerate()
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("rows", [0, 1])
def test_zero_or_one_row_is_refused(rows, fashion_mnist_slice, tmp_path):
    data = tmp_path / "data"
    fashion_mnist_slice.select(range(rows)).save_to_disk(str(data))
    with pytest.raises((ConfigError, ValueError), match=r"No full batch: [01] images|empty"):
        recipe.main(args(data, tmp_path / "out", "--use_rela", "false"))
    reset_accelerate()
    assert not list((tmp_path / "out").glob("checkpoint-*"))


def test_a_truncated_checkpoint_is_refused_naming_the_file(rela_data, tmp_path):
    output_dir = tmp_path / "run"
    with one_thread():
        recipe.main(args(rela_data, output_dir, "--max_train_steps", "10"))
    reset_accelerate()
    weights = output_dir / "checkpoint-10" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    before = sorted(p.name for p in output_dir.iterdir())
    with pytest.raises(CheckpointError, match=r"checkpoint-10/model.safetensors is damaged.*earlier checkpoint"):
        recipe.main(args(rela_data, output_dir, "--max_train_steps", "10", "--resume_from_checkpoint", "latest"))
    reset_accelerate()
    assert sorted(p.name for p in output_dir.iterdir()) == before  # nothing written, nothing removed
    optimizer = output_dir / "checkpoint-10" / "optimizer.bin"
    weights.write_bytes(data)
    optimizer.write_bytes(optimizer.read_bytes()[:-100])
    with pytest.raises(CheckpointError, match=r"optimizer.bin is damaged"):
        recipe.main(
            args(
                rela_data,
                output_dir,
                "--max_train_steps",
                "10",
                "--resume_from_checkpoint",
                str(output_dir / "checkpoint-10"),
            )
        )
    reset_accelerate()


def test_a_checkpoint_of_another_run_is_refused(rela_data, tmp_path):
    with one_thread():
        recipe.main(args(rela_data, tmp_path / "a", "--max_train_steps", "5"))
    reset_accelerate()
    with pytest.raises(CheckpointError, match=r"another config.*learning_rate"):
        recipe.main(
            args(
                rela_data,
                tmp_path / "b",
                "--learning_rate",
                "0.5",
                "--resume_from_checkpoint",
                str(tmp_path / "a" / "checkpoint-5"),
            )
        )
    reset_accelerate()
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("use_rela", ["true", "false"])
def test_divergence_stops_the_run_and_keeps_the_last_good_checkpoint(use_rela, rela_data, tmp_path):
    """lr 1e6: the weights blow up; the run stops with a clear message, every checkpoint on disk
    holds finite weights, and nothing is exported (or pushed, which comes after the export)."""
    output_dir = tmp_path / "run"
    with one_thread(), pytest.raises(TrainingDiverged, match=r"diverged|no longer finite"):
        recipe.main(
            args(
                rela_data,
                output_dir,
                "--use_rela",
                use_rela,
                "--learning_rate",
                "1e6",
                "--max_train_steps",
                "40",
                "--checkpointing_steps",
                "1",
                "--logging_steps",
                "1",
                "--checkpoints_total_limit",
                "50",
            )
        )
    reset_accelerate()
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert checkpoints and not list(output_dir.glob("*.tmp"))
    for checkpoint in checkpoints:
        assert all(torch.isfinite(t).all() for t in load_file(checkpoint / "model.safetensors").values())
    assert not (output_dir / "backbone").exists() and not (output_dir / "training_summary.json").exists()
    history = [json.loads(line) for line in (output_dir / "history.jsonl").read_text().splitlines()]
    assert all(np.isfinite(v) for record in history for k, v in record.items() if "loss" in k)


def test_unreadable_images_can_be_checked_off_for_known_good_data(fashion_mnist_slice, tmp_path):
    """--verify_images false skips the upfront decode (huge known-good datasets); the policy
    stays no silent skip: a bad image then stops the run where it is read, naming its row."""
    data = tmp_path / "data"
    datasets.Dataset.from_dict(
        {"image": [fashion_mnist_slice[i]["image"] for i in range(16)]},
        features=datasets.Features({"image": datasets.Image()}),
    ).save_to_disk(str(data))
    with one_thread():
        summary = recipe.main(
            args(
                data,
                tmp_path / "out",
                "--use_rela",
                "false",
                "--max_train_steps",
                "2",
                "--verify_images",
                "false",
                "--label_column",
                "none",
            )
        )
    reset_accelerate()
    assert summary.steps == 2
    bad = tmp_path / "bad"
    images = [{"bytes": png(fashion_mnist_slice[i]["image"]), "path": None} for i in range(16)]
    images[5] = {"bytes": b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4, "path": None}
    datasets.Dataset.from_dict({"image": images}, features=datasets.Features({"image": datasets.Image()})).save_to_disk(
        str(bad)
    )
    with (
        one_thread(),
        pytest.raises(ValueError, match=r"Row 5 of the training data.*cannot be decoded.*--verify_images true"),
    ):
        recipe.main(
            args(
                bad,
                tmp_path / "out_bad",
                "--use_rela",
                "false",
                "--max_train_steps",
                "2",
                "--verify_images",
                "false",
                "--label_column",
                "none",
                "--per_device_train_batch_size",
                "16",
            )
        )
    reset_accelerate()


def test_non_finite_target_rows_are_refused_before_training(rela_data, tmp_path):
    """A NaN target would train until the loss diverges and blame the learning rate."""
    data = datasets.load_from_disk(str(rela_data))

    def spoil(row, index):
        if index in (5, 9):
            row["rela_target"] = [float("nan"), *row["rela_target"][1:]]
        return row

    bad = tmp_path / "nan_targets"
    data.map(spoil, with_indices=True, features=data.features).save_to_disk(str(bad))
    with one_thread(), pytest.raises(DataError, match=r"non-finite values \(NaN or inf\) in rows \[5, 9\]"):
        recipe.main(args(bad, tmp_path / "out"))
    reset_accelerate()
    assert not (tmp_path / "out" / "config.yaml").exists()


def test_an_output_dir_that_is_a_file_is_refused(rela_data, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"output_dir .* is a file"):
        recipe.main(args(rela_data, tmp_path / "file"))
