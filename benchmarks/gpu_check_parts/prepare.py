"""``--prepare``: what the GPU machine lacks, written where the device tool carries it from.

The GPU machine (Python 3.12, torch, timm, transformers, accelerate, huggingface_hub, pyarrow,
pandas... but no ``datasets`` and no network) gets, next to the working tree:

- ``.gpu_check/`` (``carry``): Fashion-MNIST's four idx files as Debian ships them (30.9 MB,
  read by ``rela_hf.assets`` through ``$FMNIST_DIR``), the foolbox wheel's 20 ImageNet-val photos
  (1.2 MB) and the ImageNet EfficientNet-Lite0 converted to a timm folder (18.8 MB);
- ``.whl/`` (``carry``): wheels for Python 3.12 of what rela_hf needs and the machine has not, or
  not at a version known to work: ``datasets`` and its needs ``dill`` and ``multiprocess``,
  ``fsspec`` (``datasets`` caps it), ``timm`` (the version tested here). The versions are the ones
  installed here, so the GPU runs what the tests ran.

Everything that travels (tracked and untracked-not-ignored files + these two folders) must stay
under the tool's 64 MiB; the check aims for 60 MiB. ``dry_run`` only adds up what would be written.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gpu_check_parts.assets import (
    FASHION_MNIST_SUBDIR,
    PHOTOS_SUBDIR,
    PREPARED_DIR,
    PRIOR_SUBDIR,
    REPO,
    WHEEL_DIR,
    imagenet_photos,
)
from rela_hf.assets import fashion_mnist_dir
from rela_hf.convert import convert_efficientnet_lite0, efficientnet_lite0_weights_path

__all__ = ["HARD_LIMIT_MIB", "TARGET_MIB", "WHEEL_PACKAGES", "prepare", "travelling_tree_bytes"]

#: The device tool refuses a working tree (with carried paths) above this.
HARD_LIMIT_MIB = 64
#: What the check aims for, leaving room for the repo to grow.
TARGET_MIB = 60
#: Wheels to carry, and why (versions: those installed here).
WHEEL_PACKAGES = {
    "datasets": "not installed there",
    "dill": "datasets needs it; not installed there",
    "multiprocess": "datasets needs it; not installed there",
    "fsspec": "datasets caps its version; the machine's is unknown",
    "timm": "the version the tests ran; the machine's is unknown",
}
#: Sizes of the pinned wheels (pip download, 2026), for a dry run before they are downloaded.
WHEEL_BYTES_ESTIMATE = {
    "datasets": 608_276,
    "dill": 120_019,
    "multiprocess": 150_281,
    "fsspec": 221_738,
    "timm": 2_798_714,
}
#: The device README's platform tags for manylinux x86-64 wheels.
_PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
_PRIOR_CONFIG_BYTES = 4_096  # config.json next to the safetensors, generously


@dataclass(frozen=True)
class Item:
    """One thing that travels: where it goes, its size, where it came from."""

    path: str  # relative to the repo
    bytes: int
    source: str


def pinned_wheels() -> dict[str, str]:
    """``{package: version}`` as installed here."""
    return {name: importlib.metadata.version(name) for name in WHEEL_PACKAGES}


def travelling_tree_bytes(repo: Path = REPO) -> int:
    """Bytes of the tracked and untracked-not-ignored files (what travels besides ``carry``)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    files = {repo / name.decode() for name in listed if name}
    return sum(path.stat().st_size for path in files if path.is_file() and not path.is_symlink())


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def data_plan() -> list[Item]:
    """Fashion-MNIST, the photos and the prior, at their source sizes."""
    items = [
        Item(f".gpu_check/{FASHION_MNIST_SUBDIR}/{path.name}", path.stat().st_size, str(path))
        for path in sorted(fashion_mnist_dir().glob("*-ubyte.gz"))
    ]
    items += [
        Item(f".gpu_check/{PHOTOS_SUBDIR}/{path.name}", path.stat().st_size, str(path))
        for path in imagenet_photos(prepared=Path("/nonexistent"))
    ]
    weights = efficientnet_lite0_weights_path()
    items.append(
        Item(
            f".gpu_check/{PRIOR_SUBDIR}/",
            weights.stat().st_size + _PRIOR_CONFIG_BYTES,
            f"{weights} (converted to a timm folder)",
        )
    )
    return items


def wheel_plan() -> list[Item]:
    """The wheels: their real size once downloaded, the recorded one before."""
    items = []
    for name, version in pinned_wheels().items():
        found = sorted(WHEEL_DIR.glob(f"{name}-{version}-*.whl"))
        size = found[0].stat().st_size if found else WHEEL_BYTES_ESTIMATE[name]
        path = f".whl/{found[0].name}" if found else f".whl/{name}-{version}-*.whl (estimate)"
        items.append(Item(path, size, f"PyPI {name}=={version}: {WHEEL_PACKAGES[name]}"))
    return items


def _copy(source: Path, destination: Path) -> None:
    """Copy unless an equal-sized copy is there; atomic (a temporary name, then a rename)."""
    if destination.is_file() and destination.stat().st_size == source.stat().st_size:
        return
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=destination.parent, delete=False, prefix=".tmp-") as handle:
        staging = Path(handle.name)
    shutil.copyfile(source, staging)
    staging.replace(destination)


def write_data() -> None:
    for path in fashion_mnist_dir().glob("*-ubyte.gz"):
        _copy(path, PREPARED_DIR / FASHION_MNIST_SUBDIR / path.name)
    for path in imagenet_photos(prepared=Path("/nonexistent")):
        _copy(path, PREPARED_DIR / PHOTOS_SUBDIR / path.name)
    convert_efficientnet_lite0(PREPARED_DIR / PRIOR_SUBDIR)


def download_wheels() -> None:
    """``pip download`` the pinned wheels for CPython 3.12 on manylinux x86-64 (the device README's
    command); older versions of the same packages are removed (two versions stop the install).

    Wheels already in ``.whl/`` at the pinned version are kept and not asked for again, so a
    second ``--prepare`` needs no registry at all.
    """
    pins = pinned_wheels()
    WHEEL_DIR.mkdir(exist_ok=True)
    for name, version in pins.items():
        for stale in WHEEL_DIR.glob(f"{name}-*.whl"):
            if not stale.name.startswith(f"{name}-{version}-"):
                stale.unlink()
    pins = {name: version for name, version in pins.items() if not any(WHEEL_DIR.glob(f"{name}-{version}-*.whl"))}
    if not pins:
        return
    platforms = [arg for platform in _PLATFORMS for arg in ("--platform", platform)]
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "--python-version",
        "3.12",
        "--implementation",
        "cp",
        *platforms,
        "-d",
        str(WHEEL_DIR),
        *(f"{name}=={version}" for name, version in pins.items()),
    ]
    subprocess.run(command, check=True)


def size_report(items: list[Item], tree_bytes: int) -> dict[str, Any]:
    total = tree_bytes + sum(item.bytes for item in items)
    mib = total / 2**20
    return {
        "items": [asdict(item) for item in items],
        "working_tree_bytes": tree_bytes,
        "total_bytes": total,
        "total_mib": round(mib, 2),
        "target_mib": TARGET_MIB,
        "hard_limit_mib": HARD_LIMIT_MIB,
        "fits": mib <= HARD_LIMIT_MIB,
        "within_target": mib <= TARGET_MIB,
        "carry": [".gpu_check", ".whl"],
        "extra_wheels": sorted(
            p.name
            for p in WHEEL_DIR.glob("*.whl")
            if p.name.split("-")[0].replace("_", "-").lower() not in WHEEL_PACKAGES
        ),
    }


def prepare(dry_run: bool = False) -> dict[str, Any]:
    """Write (with ``dry_run``: only add up) ``.gpu_check/`` and ``.whl/``; return the size report.

    After writing, the sizes are those of the written folders; ``extra_wheels`` lists other wheels
    found in ``.whl/``, which the device command would install and carry too.
    """
    if dry_run:
        return size_report(data_plan() + wheel_plan(), travelling_tree_bytes())
    write_data()
    download_wheels()
    written = [
        Item(".gpu_check/", folder_bytes(PREPARED_DIR), "written"),
        Item(".whl/", folder_bytes(WHEEL_DIR), "written"),
    ]
    return size_report(written, travelling_tree_bytes())
