"""Tests for rela_hf.image_checks: every kind of unreadable image found, in parallel as serially,
a clean check recorded per dataset version and not repeated, seeded samples, the error message,
and the trainer refusing such a dataset before any compute."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import warnings

import datasets
import numpy as np
import pytest
from PIL import ImageFile

import rela_hf.data
import rela_hf.image_checks
from rela_hf.assets import foolbox_image_files
from rela_hf.errors import ConfigError, DataError
from rela_hf.image_checks import (
    check_images,
    find_unreadable_images,
    sample_rows,
    unreadable_images_message,
    verified_images_dir,
)
from rela_hf.training import ReLATrainer, ReLATrainingArguments
from tests.recipes.trainer import args, one_thread, reset_accelerate, two_process_launch

IMAGE = datasets.Features({"image": datasets.Image()})
BAD_ROWS = {
    3: "empty",
    10: "truncated PNG",
    17: "truncated JPEG",
    25: "corrupt PNG",
    31: "text",
    47: "no image",
}


def png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def cells_with_bad_rows(fashion_mnist_slice) -> list[dict | None]:
    """48 real Fashion-MNIST PNGs (bytes) with one unreadable image of each kind at BAD_ROWS."""
    cells = [{"bytes": png(fashion_mnist_slice[i]["image"]), "path": None} for i in range(48)]
    good_png = cells[0]["bytes"]
    jpeg = foolbox_image_files("imagenet")[0][0].read_bytes()  # a real ImageNet-val photo
    cells[3] = {"bytes": b"", "path": "zero_bytes.png"}
    cells[10] = {"bytes": good_png[: len(good_png) // 2], "path": "truncated.png"}
    cells[17] = {"bytes": jpeg[: len(jpeg) // 2], "path": "truncated.jpg"}
    cells[25] = {"bytes": b"\x89PNG\r\n\x1a\n" + b"not really a png" * 4, "path": "corrupt.png"}
    cells[31] = {"bytes": b"a caption, not an image", "path": "notes.txt"}
    cells[47] = None
    return cells


@pytest.fixture
def bad_folder(fashion_mnist_slice, tmp_path):
    """The cells above as a save_to_disk folder."""
    folder = tmp_path / "bad"
    datasets.Dataset.from_dict({"image": cells_with_bad_rows(fashion_mnist_slice)}, features=IMAGE).save_to_disk(
        str(folder)
    )
    return folder


@pytest.fixture
def bad_data(bad_folder) -> datasets.Dataset:
    """Loaded back: memory-mapped, as the trainer reads a local dataset."""
    return datasets.load_from_disk(str(bad_folder))


@pytest.fixture
def good_folder(fashion_mnist_slice, tmp_path):
    folder = tmp_path / "good"
    fashion_mnist_slice.save_to_disk(str(folder))
    return folder


def test_every_kind_of_unreadable_image_is_found_with_its_reason(bad_data, tmp_path):
    result = check_images(bad_data, num_proc=1, record_dir=tmp_path / "records")
    assert [row for row, _ in result.bad_rows] == sorted(BAD_ROWS)
    reasons = dict(result.bad_rows)
    assert reasons[3] == "zero_bytes.png: empty (0 bytes)"
    assert reasons[10] == "truncated.png: OSError: image file is truncated"
    assert reasons[17].startswith("truncated.jpg: OSError: image file is truncated")
    assert reasons[25].startswith("corrupt.png: ")
    assert reasons[31] == "notes.txt: not an image format Pillow can read"
    assert reasons[47] == "embedded bytes: the cell holds no image (neither bytes nor a path)"
    assert not result.ok and result.rows_checked == result.decoded == 48 and result.record is None


def test_images_read_from_paths(fashion_mnist_slice, tmp_path):
    """Image folders keep paths, not bytes: a file that is empty or gone is named by its path."""
    fashion_mnist_slice[0]["image"].save(tmp_path / "good.png")
    (tmp_path / "empty.png").write_bytes(b"")
    paths = [str(tmp_path / name) for name in ("good.png", "empty.png", "deleted.png")]
    data = datasets.Dataset.from_dict({"image": [{"path": p, "bytes": None} for p in paths]}, features=IMAGE)
    assert find_unreadable_images(data, num_proc=1) == [
        (1, f"{paths[1]}: empty (0 bytes)"),
        (2, f"{paths[2]}: FileNotFoundError: [Errno 2] No such file or directory: '{paths[2]}'"),
    ]


def test_parallel_and_serial_find_the_same_rows(bad_data, tmp_path):
    serial = check_images(bad_data, num_proc=1, record_dir=tmp_path / "records")
    parallel = check_images(bad_data, num_proc=2, record_dir=tmp_path / "records")
    assert parallel.bad_rows == serial.bad_rows and parallel.decoded == 48
    assert find_unreadable_images(bad_data, num_proc=2, limit=3) == serial.bad_rows[:3]


def test_nothing_is_written_into_the_dataset_folder(bad_data, good_folder, tmp_path):
    before = sorted(os.listdir(good_folder))
    os.chmod(good_folder, 0o555)  # a read-only dataset (a shared mount) is checked all the same
    try:
        result = check_images(
            datasets.load_from_disk(str(good_folder)),
            num_proc=2,
            max_samples=40,
            record_dir=tmp_path / "records",
        )
    finally:
        os.chmod(good_folder, 0o755)
    assert result.ok and sorted(os.listdir(good_folder)) == before


def test_a_clean_check_is_recorded_and_not_repeated(good_folder, tmp_path):
    records = tmp_path / "records"
    first = check_images(datasets.load_from_disk(str(good_folder)), record_dir=records)
    assert first.ok and first.decoded == 64 and first.record.parent == records
    assert [p.name for p in records.iterdir()] == [first.record.name]
    # a new process reads the same folder (a resume): same fingerprint and files, no decode
    again = check_images(datasets.load_from_disk(str(good_folder)), record_dir=records)
    assert again.ok and again.decoded == 0 and again.rows_checked == 64 and again.record == first.record
    # max_train_samples makes another dataset version: its own check, its own record
    subset = check_images(datasets.load_from_disk(str(good_folder)).select(range(20)), record_dir=records)
    assert subset.decoded == 20 and subset.record != first.record
    # a record of every row also answers a sampled request
    sampled = check_images(datasets.load_from_disk(str(good_folder)), max_samples=8, record_dir=records)
    assert sampled.decoded == 0 and sampled.rows_checked == 64


def test_a_folder_saved_again_is_checked_again(fashion_mnist_slice, good_folder, tmp_path):
    records = tmp_path / "records"
    check_images(datasets.load_from_disk(str(good_folder)), record_dir=records)
    fashion_mnist_slice.save_to_disk(str(good_folder))  # same content and fingerprint, new files
    again = check_images(datasets.load_from_disk(str(good_folder)), record_dir=records)
    assert again.ok and again.decoded == 64 and len(list(records.iterdir())) == 2


def test_bad_results_in_memory_data_and_disabled_caching_are_not_recorded(
    bad_data, good_folder, fashion_mnist_slice, tmp_path
):
    records = tmp_path / "records"
    assert check_images(bad_data, record_dir=records).record is None  # fixed data must be checked again
    for _ in range(2):  # in memory: no Arrow files to tie a record to
        assert check_images(fashion_mnist_slice, record_dir=records).decoded == 64
    datasets.disable_caching()  # transforms get random fingerprints then: a record would never hit
    try:
        assert check_images(datasets.load_from_disk(str(good_folder)), record_dir=records).record is None
    finally:
        datasets.enable_caching()
    assert not records.exists()


def test_a_damaged_record_is_ignored_and_rewritten(good_folder, tmp_path):
    first = check_images(datasets.load_from_disk(str(good_folder)), record_dir=tmp_path)
    first.record.write_text('{"rows_che')
    again = check_images(datasets.load_from_disk(str(good_folder)), record_dir=tmp_path)
    assert again.decoded == 64 and again.record == first.record
    assert check_images(datasets.load_from_disk(str(good_folder)), record_dir=tmp_path).decoded == 0


def test_the_default_record_folder_is_in_the_datasets_cache():
    assert verified_images_dir().is_relative_to(datasets.config.HF_DATASETS_CACHE)


def test_sampling_decodes_the_chosen_rows(bad_data, tmp_path):
    rows = sample_rows(48, 12, seed=3)
    assert len(rows) == 12 and len(set(rows)) == 12 and list(rows) == sorted(rows)
    assert np.array_equal(rows, sample_rows(48, 12, seed=3)) and not np.array_equal(rows, sample_rows(48, 12, seed=4))
    for num_proc in (1, 2):
        result = check_images(bad_data, num_proc=num_proc, max_samples=12, seed=3, record_dir=tmp_path)
        assert result.decoded == result.rows_checked == 12 and result.sampled
        assert [row for row, _ in result.bad_rows] == sorted(set(rows) & set(BAD_ROWS))  # rows of bad_data


def test_sample_sizes(tmp_path, good_folder):
    assert sample_rows(10, None) is None and sample_rows(10, 10) is None and sample_rows(10, 50) is None
    with pytest.raises(ValueError, match="max_samples must be >= 1"):
        sample_rows(10, 0)
    result = check_images(datasets.load_from_disk(str(good_folder)), max_samples=16, record_dir=tmp_path)
    assert result.decoded == 16 and result.record is not None  # the sample's own record
    assert check_images(datasets.load_from_disk(str(good_folder)), max_samples=16, record_dir=tmp_path).decoded == 0
    assert (
        check_images(datasets.load_from_disk(str(good_folder)), max_samples=16, seed=1, record_dir=tmp_path).decoded
        == 16
    )


def test_truncated_images_are_refused_even_when_pillow_is_told_to_pad_them(bad_data, tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    result = check_images(bad_data.select([0, 10, 17]), num_proc=1, record_dir=tmp_path)
    assert [row for row, _ in result.bad_rows] == [1, 2]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def test_the_error_message_names_count_rows_reasons_and_the_remedy(bad_data, tmp_path):
    full = check_images(bad_data, record_dir=tmp_path)
    message = unreadable_images_message(full, "my/data (train)", limit=3)
    assert message.startswith("my/data (train): 6 images cannot be decoded (checked all 48 rows)")
    assert "never skips images silently" in message and "Fix or remove these rows" in message
    assert "row 3: zero_bytes.png: empty (0 bytes); row 10: truncated.png" in message
    assert "row 25" not in message and message.endswith("; and 3 more.")
    sampled = check_images(bad_data, max_samples=12, seed=3, record_dir=tmp_path)
    assert "checked a random sample of 12 of its 48 rows (verify_images_max_samples)" in (
        unreadable_images_message(sampled, "my/data (train)")
    )


def test_the_former_import_path_still_works_with_a_warning(bad_data):
    with pytest.warns(FutureWarning, match="moved to rela_hf.image_checks"):
        former = rela_hf.data.find_unreadable_images
    assert former is find_unreadable_images
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from rela_hf.data import load_image_dataset  # noqa: F401 - the other names do not warn


# ---- the trainer -------------------------------------------------------------------------------


def training_args(data, output_dir, **options) -> ReLATrainingArguments:
    return ReLATrainingArguments(
        dataset_name=str(data),
        output_dir=str(output_dir),
        backbone="test_resnet",
        cifar_stem=True,
        image_size=32,
        per_device_train_batch_size=8,
        max_train_steps=2,
        use_rela=False,
        label_column="none",
        dataloader_num_workers=0,
        report_to="none",
        **options,
    )


def test_the_trainer_refuses_unreadable_images_before_any_compute(bad_folder, tmp_path):
    output_dir = tmp_path / "run"
    for options in ({}, {"verify_images_num_proc": 2}):
        with (
            one_thread(),
            pytest.raises(
                DataError,
                match=(
                    r"6 images cannot be decoded \(checked all 48 rows\); rela-hf never skips "
                    r"images silently.*row 3: zero_bytes\.png: empty.*row 47"
                ),
            ),
        ):
            ReLATrainer(training_args(bad_folder, output_dir, **options)).train()
        reset_accelerate()
        assert not output_dir.exists()


def test_the_trainer_verifies_a_dataset_version_once(good_folder, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="rela_hf.image_checks")
    for run in ("a", "b"):  # a second run (or a resume) on the same data does not decode again
        with one_thread():
            summary = ReLATrainer(training_args(good_folder, tmp_path / run, verify_images_max_samples=40)).train()
        reset_accelerate()
        assert summary.steps == 2
    decoded = [r.message for r in caplog.records if r.message.startswith("Decoded")]
    assert decoded == ["Decoded 40 images in " + decoded[0].split(" in ")[1]] and "0 unreadable" in decoded[0]
    assert any("verified before (40 rows" in r.message for r in caplog.records)


def test_the_new_options_are_checked(good_folder, tmp_path):
    for name in ("verify_images_max_samples", "verify_images_num_proc"):
        with pytest.raises(ConfigError, match=f"{name} must be >= 1"):
            training_args(good_folder, tmp_path, **{name: 0})


@pytest.mark.slow
def test_two_processes_decode_once_and_both_refuse(bad_folder, tmp_path):
    """Only the main process decodes; the other waits for its verdict, and both stop."""
    command = two_process_launch(
        *args(bad_folder, tmp_path / "run", "--use_rela", "false", "--label_column", "none"),
    )
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, check=False, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode != 0
    assert result.stderr.count("Decoded 48 images") == 1, result.stderr[-4000:]
    assert result.stderr.count("6 images cannot be decoded") == 2  # each process names the rows
    assert not (tmp_path / "run").exists()
