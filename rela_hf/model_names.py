"""One parser for the names of models: Hub ids, local folders, timm registry names.

Priors, student backbones and encoders to evaluate are all named the same ways, and each name is
parsed here, on top of timm's own parser (``timm.models.parse_model_name``):

- ``hf-hub:<org>/<name>[@revision]`` and ``local-dir:<folder>``: timm's source prefixes;
- an existing folder: a local model (it wins over a registry name or Hub id spelt the same, as in
  ``from_pretrained``);
- a bare name without ``/`` (``resnet18``, ``resnet50.a1_in1k``): a timm registry name;
- ``<org>/<name>``: a Hub repository.

What each kind means (which library loads it, whether a folder must hold an export) is the
caller's business; this module only says what the name *is*.

Examples:
    >>> parse_model_name("hf-hub:timm/resnet18.a1_in1k@main")
    ModelName(kind='hub', id='timm/resnet18.a1_in1k', revision='main', timm_prefixed=True)
    >>> parse_model_name("resnet50.a1_in1k").kind
    'registry'
    >>> safe_model_name("hf-hub:timm/resnet18.a1_in1k")
    'resnet18_a1_in1k'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from timm.models import parse_model_name as timm_parse_model_name

__all__ = ["ModelName", "ModelNameError", "parse_model_name", "safe_model_name"]

Kind = Literal["hub", "folder", "registry"]


class ModelNameError(ValueError):
    """A name that is none of the accepted forms, or two revisions that disagree."""


@dataclass(frozen=True)
class ModelName:
    """A parsed model name.

    Attributes:
        kind: ``"hub"`` (a Hub repository), ``"folder"`` (a local directory) or ``"registry"``
            (a timm architecture name, optionally with a pretrained tag).
        id: The repo id, the folder path (``~`` expanded, as given otherwise) or the timm name.
        revision: Branch, tag or commit of a Hub repository (``@rev`` or ``revision=``).
        timm_prefixed: The name used timm's ``hf-hub:``/``local-dir:`` prefix, which asks for
            timm explicitly.
    """

    kind: Kind
    id: str
    revision: str | None = None
    timm_prefixed: bool = False

    @property
    def path(self) -> Path:
        """The folder of a ``"folder"`` name."""
        if self.kind != "folder":
            raise ValueError(f"{self.id!r} is a {self.kind} name, not a folder.")
        return Path(self.id)

    @property
    def timm_name(self) -> str:
        """The name for ``timm.create_model``: ``hf-hub:id[@rev]``, ``local-dir:abs`` or ``id``."""
        if self.kind == "hub":
            return f"hf-hub:{self.id}" + (f"@{self.revision}" if self.revision else "")
        if self.kind == "folder":
            return f"local-dir:{Path(self.id).resolve()}"
        return self.id


def _join_revisions(name: str, in_name: str | None, given: str | None) -> str | None:
    if in_name and given and in_name != given:
        raise ModelNameError(f"Two revisions given: {in_name!r} in {name!r} and revision={given!r}.")
    return in_name or given


def parse_model_name(name: str, *, revision: str | None = None) -> ModelName:
    """What ``name`` is (see the module docstring); ``revision`` applies to Hub names only.

    Raises:
        ModelNameError: an empty name, an unknown ``prefix:``, a path-like name that is not an
            existing folder (``./x``, ``a/b/c``), ``revision=`` for a folder or registry name,
            or two disagreeing revisions.
    """
    if not isinstance(name, str) or not name:
        raise ModelNameError(f"A model name must be a non-empty string, got {name!r}.")
    if re.match(r"^[A-Za-z][\w-]*:", name) and not re.match(r"^[A-Za-z]:[\\/]", name):
        try:
            source, model_id = timm_parse_model_name(name)
        except ValueError as error:
            raise ModelNameError(str(error)) from error
        if source == "hf-hub":
            repo_id, _, in_name = model_id.partition("@")
            return ModelName("hub", repo_id, _join_revisions(name, in_name or None, revision), True)
        if revision is not None:
            raise ModelNameError(f"revision={revision!r} applies to Hub models, not to the local folder {name!r}.")
        return ModelName("folder", str(Path(model_id).expanduser()), None, True)
    folder = Path(name).expanduser()
    if folder.is_dir():
        if revision is not None:
            raise ModelNameError(f"revision={revision!r} applies to Hub models, not to the local folder {folder}.")
        return ModelName("folder", str(folder))
    if "/" not in name and "\\" not in name and not name.startswith((".", "~")):
        return ModelName("registry", name, revision)
    repo_id, _, in_name = name.partition("@")
    if repo_id.count("/") != 1 or repo_id.startswith(("/", ".", "~")) or repo_id.endswith("/"):
        raise ModelNameError(f"{name!r} is neither an existing folder nor a Hub repo id of the form '<org>/<name>'.")
    return ModelName("hub", repo_id, _join_revisions(name, in_name or None, revision))


def safe_model_name(name: str, default: str = "model") -> str:
    """A file- and config-name-safe slug of a model name: its last path part, ``[a-z0-9_]``.

    timm's ``safe_model_name`` rule (source prefix dropped, every other character than letters and
    digits becomes ``_``), on the last part of a path or repo id, lower case, ASCII only, runs of
    ``_`` collapsed; ``default`` when nothing is left.

    Examples:
        >>> safe_model_name("hf-hub:timm/resnet18.a1_in1k")
        'resnet18_a1_in1k'
        >>> safe_model_name("/data/priors/EfficientNet--Lite0/")
        'efficientnet_lite0'
    """
    name = re.sub(r"^(hf[-_]hub|local[-_]dir|timm):", "", name.rstrip("/\\"))
    last = re.split(r"[/\\]", name)[-1]
    return re.sub(r"[^0-9a-zA-Z]+", "_", last).strip("_").lower() or default
