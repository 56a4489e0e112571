"""How published cards name a dataset or a model: Hub ids as they are, local folders neutrally.

A card is public; the folder a run read its data or prior from is not (``/home/alice/...``
names a user, a machine, a project). Cards name a local folder by its last path component, or,
for a copy in the Hugging Face cache (``.../datasets--org--name/snapshots/<sha>``), by the Hub id
and commit it came from, and say that it was a local folder. :func:`public_config` does the same
to every path in a run's configuration before the card prints it.

Examples:
    >>> public_name("/home/alice/data/fashion_mnist")
    PublicName(name='fashion_mnist', local=True, hub_id=None, revision=None)
    >>> public_name("zalando-datasets/fashion_mnist").local
    False
    >>> public_config({"dataset_name": "/home/alice/data/fmnist", "learning_rate": 0.001})
    {'dataset_name': '<local path fmnist>', 'learning_rate': 0.001}
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

__all__ = ["PublicName", "is_local_path", "public_config", "public_name"]

# prefixes that always name something on this machine
_LOCAL_PREFIXES = ("/", "~", "./", "../", ".\\", "..\\", "local-dir:", "file:", "offline:")
_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:[\\/]")
_CACHE_REPO = re.compile(r"^(models|datasets|spaces)--(.+)$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclasses.dataclass(frozen=True)
class PublicName:
    """What a card may say about a dataset or model name.

    Attributes:
        name: the Hub id, or a local folder's neutral name.
        local: it was a folder on the machine that made the card.
        hub_id: the Hub repo it is, or (a Hugging Face cache copy) the one it came from.
        revision: the commit of a cache copy (from its ``snapshots/<sha>`` folder).
    """

    name: str
    local: bool
    hub_id: str | None = None
    revision: str | None = None


def _has_path_form(name: str) -> bool:
    """Absolute, home-relative, ``./``-relative or prefixed: a path whatever exists."""
    return name.startswith(_LOCAL_PREFIXES) or bool(_WINDOWS_DRIVE.match(name))


def is_local_path(name: str) -> bool:
    """Whether ``name`` is a folder or file on this machine rather than a Hub id or timm name.

    Path forms (``/``, ``~``, ``./``, ``local-dir:``, ``C:\\``...) always are; other names are
    when they exist on disk (``outputs/run`` from the working directory). A Hub id
    ``org/name`` that does not exist as a folder is not.
    """
    if _has_path_form(name):
        return True
    try:
        return Path(name).exists()
    except OSError:  # a name too long or otherwise invalid for the file system
        return False


def _strip_prefix(name: str) -> str:
    for prefix in ("local-dir:", "file://", "file:", "offline:"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def _parts(path: str) -> tuple[str, ...]:
    windows = "\\" in path or _WINDOWS_DRIVE.match(path)
    pure = PureWindowsPath(path) if windows else PurePosixPath(path)
    return tuple(
        part for part in pure.parts if part not in ("/", "\\", ".", "..", "~") and not _WINDOWS_DRIVE.match(part + "\\")
    )


def public_name(name: str) -> PublicName:
    """The :class:`PublicName` of a dataset or model name (see the module docstring)."""
    if not is_local_path(name):
        bare, _, revision = name.removeprefix("hf-hub:").partition("@")
        if bare.count("/") == 1:  # a Hub repo: its id, the revision apart
            return PublicName(bare, local=False, hub_id=bare, revision=revision or None)
        return PublicName(name, local=False)
    parts = _parts(_strip_prefix(name).rstrip("/\\"))
    for index, part in enumerate(parts):
        cached = _CACHE_REPO.match(part)
        rest = parts[index + 1 :]
        if cached and len(rest) >= 2 and rest[0] == "snapshots" and _COMMIT.match(rest[1]):
            hub_id = cached.group(2).replace("--", "/", 1)
            return PublicName(hub_id, local=True, hub_id=hub_id, revision=rest[1])
    return PublicName(parts[-1] if parts else "local folder", local=True)


def _public_value(value: Any) -> Any:
    if isinstance(value, str) and (_has_path_form(value) or (("/" in value or "\\" in value) and is_local_path(value))):
        public = public_name(value)
        if public.hub_id:
            return f"<local copy of {public.hub_id}>"
        return f"<local path {public.name}>"
    if isinstance(value, Mapping):
        return {key: _public_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_public_value(item) for item in value]
    return value


def public_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with every local path replaced by ``<local path NAME>`` (nested too)."""
    return {key: _public_value(value) for key, value in config.items()}
