"""Image verification: every image of a dataset decoded once, in parallel, remembered per version.

rela-hf never skips an image silently: before it spends any compute, the trainer decodes the
training images (``verify_images``) and refuses a dataset whose rows do not decode (zero-byte,
truncated, corrupt or non-image files), naming the rows and the reason. For ImageNet that is
1.28 M JPEG decodes, so :func:`check_images`

- decodes as a ``datasets`` ``map`` over ``num_proc`` processes, with datasets' progress bar;
- remembers a clean result in a small JSON record in the datasets cache (``record_dir``), so a
  resumed or repeated run on the same data does not decode again;
- can sample: ``max_samples`` decodes a seeded random subset of the rows (a quick check of a
  huge, trusted dataset; ``verify_images false`` skips the check altogether).

What the record is keyed by, and why that identifies the data: a dataset's ``_fingerprint``. For a
Hub dataset it hashes the repository, the resolved revision (a commit) and the data files; for a
local image folder it hashes the files' modification times; for a ``save_to_disk`` folder it is
the fingerprint saved with it (the lineage of transforms that produced it, whose images are
embedded); transforms such as ``select`` derive a new one deterministically. The key adds the
image column, the sample, Pillow's version and the size and modification time of every Arrow
file behind the dataset, so a folder saved again in place is checked again even when its
fingerprint repeats. A dataset held only in memory (no Arrow files; its fingerprint may be
random) and any dataset while datasets' caching is off are checked every time, never recorded.
Only clean results are recorded: a dataset with bad rows is decoded again after it is fixed.

Examples:
    >>> import datasets
    >>> from PIL import Image
    >>> data = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))] * 3},
    ...                                   features=datasets.Features({"image": datasets.Image()}))
    >>> result = check_images(data)
    >>> result.ok, result.rows_checked, result.decoded
    (True, 3, 3)
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import PIL
from PIL import Image, ImageFile, UnidentifiedImageError

__all__ = [
    "ImageCheckResult",
    "check_images",
    "default_num_proc",
    "find_unreadable_images",
    "sample_rows",
    "unreadable_images_message",
    "verified_images_dir",
]

logger = logging.getLogger(__name__)

#: Bump when what counts as a readable image changes: older records are then ignored.
RECORD_VERSION = 1
#: Fewest rows worth another process (starting one and handing it the dataset costs ~0.1-0.3 s).
ROWS_PER_PROCESS = 2000
_BATCH_SIZE = 500  # rows per map batch: a progress-bar step (~1-2 s of ImageNet JPEGs per core)
_FOUND = datasets.Features({"row": datasets.Value("int64"), "reason": datasets.Value("string")})


@dataclasses.dataclass(frozen=True)
class ImageCheckResult:
    """What :func:`check_images` found.

    Attributes:
        num_rows: rows of the dataset.
        rows_checked: rows whose image was decoded, now or by the recorded check
            (``num_rows`` unless sampled).
        bad_rows: every row found that does not decode, ascending: ``(row, "where: Error: why")``,
            ``where`` being the file's path or ``embedded bytes``.
        decoded: images decoded by this call (0 when a record answered).
        record: the record that answered or was written (``None``: not recordable).
    """

    num_rows: int
    rows_checked: int
    bad_rows: list[tuple[int, str]]
    decoded: int
    record: Path | None

    @property
    def ok(self) -> bool:
        """Every checked image decodes."""
        return not self.bad_rows

    @property
    def sampled(self) -> bool:
        """Only a random subset of the rows was checked."""
        return self.rows_checked < self.num_rows


def verified_images_dir() -> Path:
    """Where the records of clean checks live: ``<HF_DATASETS_CACHE>/rela_hf/verified_images``."""
    return Path(datasets.config.HF_DATASETS_CACHE) / "rela_hf" / "verified_images"


def default_num_proc(num_rows: int) -> int:
    """One process per available CPU core, but at least :data:`ROWS_PER_PROCESS` rows each."""
    try:
        cores = len(os.sched_getaffinity(0))  # the cores this process may use (containers, SLURM)
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, num_rows // ROWS_PER_PROCESS))


def sample_rows(num_rows: int, max_samples: int | None, seed: int = 0) -> np.ndarray | None:
    """The rows a sampled check decodes: ``max_samples`` distinct rows drawn with ``seed``, sorted.

    Returns:
        ``None`` when every row is checked (``max_samples`` is ``None`` or not below ``num_rows``).
    """
    if max_samples is None or max_samples >= num_rows:
        return None
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1 (or None: every row), got {max_samples}.")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(num_rows, size=max_samples, replace=False))


@contextmanager
def _truncated_images_refused() -> Iterator[None]:
    # Pillow pads a truncated file with grey when LOAD_TRUNCATED_IMAGES is on (some code turns it
    # on globally); the check must still refuse it, as the training would read a damaged image.
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = previous


def _decode_error(value: dict[str, Any] | None) -> str | None:
    """Why one undecoded ``Image`` cell cannot be decoded, or ``None`` when it decodes fully."""
    if not value or (value.get("bytes") is None and not value.get("path")):
        return "embedded bytes: the cell holds no image (neither bytes nor a path)"
    where = value.get("path") or "embedded bytes"
    try:
        source = io.BytesIO(value["bytes"]) if value.get("bytes") is not None else value["path"]
        with Image.open(source) as image:
            image.load()  # the full decode: a header alone does not reveal a truncated file
    except UnidentifiedImageError:  # its message names a memory address; say what it means
        empty = value.get("bytes") == b"" or (value.get("bytes") is None and _is_empty_file(value["path"]))
        return f"{where}: " + ("empty (0 bytes)" if empty else "not an image format Pillow can read")
    except Exception as error:  # noqa: BLE001 - whatever the decoder raises, the row is unreadable
        return f"{where}: {type(error).__name__}: {error}"
    return None


def _is_empty_file(path: str) -> bool:
    try:
        return os.path.getsize(path) == 0
    except OSError:
        return False


def _decode_batch(images: list[dict[str, Any] | None], indices: list[int]) -> dict[str, list[Any]]:
    """A ``map`` batch: the positions (and reasons) of the images that do not decode."""
    rows, reasons = [], []
    with _truncated_images_refused():
        for index, value in zip(indices, images, strict=True):
            reason = _decode_error(value)
            if reason is not None:
                rows.append(index)
                reasons.append(reason)
    return {"row": rows, "reason": reasons}


def _decode_all(view: datasets.Dataset, image_column: str, num_proc: int) -> list[tuple[int, str]]:
    """Decode every image of ``view`` (positions in ``view``); nothing is written to disk."""
    found = view.map(
        _decode_batch,
        with_indices=True,
        input_columns=[image_column],
        batched=True,
        batch_size=_BATCH_SIZE,
        remove_columns=view.column_names,
        features=_FOUND,
        keep_in_memory=True,
        load_from_cache_file=False,
        num_proc=num_proc if num_proc > 1 else None,
        new_fingerprint=uuid.uuid4().hex,
        desc="Verifying images",
    )
    return sorted(zip(found["row"], found["reason"], strict=True))


def _record_key(dataset: datasets.Dataset, image_column: str, sample: dict[str, int] | None) -> str | None:
    """The record's name for this dataset version, column and sample (``None``: not recordable)."""
    if not dataset.cache_files or not datasets.is_caching_enabled():
        return None
    files = []
    for cache_file in dataset.cache_files:
        stat = os.stat(cache_file["filename"])
        files.append([Path(cache_file["filename"]).name, stat.st_size, stat.st_mtime_ns])
    identity = {
        "version": RECORD_VERSION,
        "pillow": PIL.__version__,
        "fingerprint": dataset._fingerprint,
        "image_column": image_column,
        "num_rows": len(dataset),
        "sample": sample,
        "files": files,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):  # absent, or damaged (then it is simply written again)
        return None
    return record if isinstance(record, dict) and "rows_checked" in record else None


def _write_record(path: Path, content: dict[str, Any]) -> Path | None:
    """Write atomically (a reader never sees half a record); a cache we cannot write is no error."""
    temporary = path.with_name(f"{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(json.dumps(content, indent=1))
        os.replace(temporary, path)
    except OSError as error:
        logger.warning(f"Could not record the image check in {path} ({error}); the next run checks again.")
        temporary.unlink(missing_ok=True)
        return None
    return path


def _recorded(dataset: datasets.Dataset, keys: list[str | None], record_dir: Path) -> ImageCheckResult | None:
    """A clean earlier check of this dataset version that covers the request, if recorded."""
    for key in filter(None, keys):
        path = record_dir / f"{key}.json"
        if (record := _read_record(path)) is not None:
            logger.info(
                f"The images of this dataset version were verified before "
                f"({record['rows_checked']} rows, record {path}): not decoding them again."
            )
            return ImageCheckResult(len(dataset), int(record["rows_checked"]), [], decoded=0, record=path)
    return None


def check_images(
    dataset: datasets.Dataset,
    image_column: str = "image",
    *,
    num_proc: int | None = None,
    max_samples: int | None = None,
    seed: int = 0,
    record_dir: str | os.PathLike[str] | None = None,
) -> ImageCheckResult:
    """Decode the images of ``dataset`` (all, or a seeded sample) and list the rows that fail.

    Each image is fully decoded once with Pillow (``Image.open(...).load()``) from its bytes or
    path and not kept; truncated files count as unreadable even if ``LOAD_TRUNCATED_IMAGES``
    is on. A clean result is recorded and answers the next call on the same dataset version
    (see the module docstring); a record of the full dataset also answers a sampled request.

    Args:
        dataset: a map-style dataset whose ``image_column`` is a ``datasets.Image`` feature.
        image_column: the column of images.
        num_proc: decoding processes (default :func:`default_num_proc`; 1 decodes here).
        max_samples: decode only this many rows, drawn with ``seed`` (:func:`sample_rows`).
        seed: the seed of the sample.
        record_dir: where records live (default :func:`verified_images_dir`).

    Returns:
        The rows checked and every bad row found (row numbers of ``dataset``).
    """
    rows = sample_rows(len(dataset), max_samples, seed)
    sample = None if rows is None else {"max_samples": len(rows), "seed": seed}
    record_dir = Path(record_dir) if record_dir is not None else verified_images_dir()
    keys = [_record_key(dataset, image_column, None)]
    if sample is not None:
        keys.append(_record_key(dataset, image_column, sample))
    if (recorded := _recorded(dataset, keys, record_dir)) is not None:
        return recorded
    view = dataset.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
    if rows is not None:  # in memory: no indices file is written into the data folder
        view = view.select(rows, keep_in_memory=True)
    num_proc = num_proc or default_num_proc(len(view))
    started = time.perf_counter()
    bad = _decode_all(view, image_column, num_proc)
    seconds = time.perf_counter() - started
    if rows is not None:
        bad = [(int(rows[position]), reason) for position, reason in bad]
    logger.info(f"Decoded {len(view)} images in {seconds:.1f} s ({num_proc} processes): {len(bad)} unreadable.")
    record = None
    if not bad and keys[-1] is not None:
        record = _write_record(
            record_dir / f"{keys[-1]}.json",
            {
                "fingerprint": dataset._fingerprint,
                "image_column": image_column,
                "num_rows": len(dataset),
                "rows_checked": len(view),
                "sample": sample,
                "num_proc": num_proc,
                "seconds": round(seconds, 3),
                "pillow": PIL.__version__,
                "record_version": RECORD_VERSION,
                # timezone.utc, not datetime.UTC: that needs Python 3.11
                "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
        )
    return ImageCheckResult(len(dataset), len(view), bad, decoded=len(view), record=record)


def find_unreadable_images(
    dataset: datasets.Dataset, image_column: str = "image", *, limit: int = 10, **options: Any
) -> list[tuple[int, str]]:
    """The first ``limit`` rows whose image cannot be decoded, with the reason (empty: all decode).

    A shortcut of :func:`check_images` (``options`` are its keyword arguments).
    """
    return check_images(dataset, image_column, **options).bad_rows[:limit]


def unreadable_images_message(result: ImageCheckResult, dataset_label: str, *, limit: int = 10) -> str:
    """The error that refuses a dataset with unreadable images: how many, which, why, what to do."""
    checked = (
        f"a random sample of {result.rows_checked} of its {result.num_rows} rows (verify_images_max_samples)"
        if result.sampled
        else f"all {result.num_rows} rows"
    )
    listed = "; ".join(f"row {row}: {reason}" for row, reason in result.bad_rows[:limit])
    more = len(result.bad_rows) - limit
    return (
        f"{dataset_label}: {len(result.bad_rows)} images cannot be decoded (checked {checked}); "
        "rela-hf never skips images silently. Fix or remove these rows (e.g. dataset.filter), then "
        "run again. "
        f"{listed}" + (f"; and {more} more." if more > 0 else ".")
    )
