"""YAML config files for the recipes: ``--config file.yaml`` (or a preset name) under the flags.

timm's two-stage configuration: the YAML file gives the defaults, command-line flags override
them. Keys are the option names; an unknown key (a typo) is an error that lists the valid ones,
before anything runs. A preset is a file of the recipe's ``configs/`` folder, named with or
without ``.yaml`` (``--config cifar10_resnet18``), so installed console commands find the presets
shipped in the wheel.

Examples:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "run.yaml"
    >>> _ = path.write_text("learning_rate: 0.01\\n")
    >>> read_config(str(path), known={"learning_rate", "seed"})
    {'learning_rate': 0.01}
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

__all__ = ["ConfigFileError", "config_argument", "find_config", "presets_dir", "read_config"]


class ConfigFileError(ValueError):
    """A config file that is missing, not a YAML mapping, or has unknown keys."""


def presets_dir() -> Path | None:
    """The folder of the shipped presets (``recipes/configs``; ``rela_hf/recipes/configs`` in a
    wheel), located without importing the recipes."""
    spec = importlib.util.find_spec("rela_hf.recipes")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    return Path(locations[0]) / "configs" if locations else None


def find_config(path_or_preset: str | os.PathLike, presets_dir: Path | None = None) -> Path:
    """The file a ``--config`` value names: a path, else a preset of ``presets_dir``."""
    path = Path(path_or_preset).expanduser()
    if path.is_file():
        return path
    if presets_dir is not None and presets_dir.is_dir():
        for candidate in (presets_dir / path.name, presets_dir / f"{path.name}.yaml"):
            if candidate.is_file() and path.parent == Path("."):
                return candidate
    presets = sorted(p.stem for p in presets_dir.glob("*.yaml")) if presets_dir and presets_dir.is_dir() else []
    raise ConfigFileError(
        f"--config {os.fspath(path_or_preset)!r}: no such file"
        + (f", nor a preset (presets: {presets})." if presets else ".")
    )


def read_config(
    path_or_preset: str | os.PathLike, *, known: Iterable[str], presets_dir: Path | None = None
) -> dict[str, Any]:
    """The option values of a YAML config file (``yaml.safe_load``; no Python objects)."""
    path = find_config(path_or_preset, presets_dir)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigFileError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise ConfigFileError(f"{path} must hold a mapping of option names to values, got {type(values).__name__}.")
    known = set(known)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigFileError(f"{path}: unknown options {unknown}; valid ones: {sorted(known)}.")
    return values


def config_argument(argv: list[str] | None) -> str | None:
    """The value of ``--config`` in ``argv`` (``sys.argv[1:]`` when None), before full parsing."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--config", type=str, default=None)
    return pre.parse_known_args(argv)[0].config
