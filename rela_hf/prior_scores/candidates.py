"""A candidate prior: where it comes from and how it runs, written as one short string.

A command line lists candidates as ``[name=]prior[,option=value...]``, e.g.

    ./efficientnet_lite0,image_size=64                       # name: efficientnet_lite0@64
    in1k_128=hf-hub:timm/resnet18.a1_in1k,image_size=128
    random=./efficientnet_lite0,random_init=true,seed=1

(options: ``image_size``, ``random_init``, ``seed``, ``revision``, ``library``,
``preprocessing``); a YAML config may give mappings with the same keys instead.

Examples:
    >>> PriorCandidate.parse("rand=test_resnet,random_init=true,seed=3,image_size=32")
    PriorCandidate(name='rand', prior='test_resnet', image_size=32, random_init=True, seed=3, revision=None, library='auto', preprocessing='prior')
    >>> PriorCandidate.parse("test_resnet,image_size=32").spec()
    'test_resnet@32=test_resnet,image_size=32'
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

import torch

from rela_hf.priors import Prior, load_prior

__all__ = ["PriorCandidate", "load_candidate"]

_NAME = re.compile(r"^[A-Za-z0-9_.@-]+$")
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


@dataclass(frozen=True)
class PriorCandidate:
    """One prior to score.

    Attributes:
        name: How tables and results call it (default: the prior's last path part, ``@size``,
            ``random`` when randomly initialised).
        prior: What :func:`rela_hf.priors.load_prior` loads: a timm name, ``hf-hub:``/``local-dir:``,
            a Hub repo id or a local folder.
        image_size: The prior's input size (default: the prior's own).
        random_init: The architecture with random weights (seeded by ``seed``).
        seed: The seed of the random weights.
        revision, library, preprocessing: As :func:`~rela_hf.priors.load_prior`'s arguments.
    """

    name: str
    prior: str
    image_size: int | None = None
    random_init: bool = False
    seed: int = 0
    revision: str | None = None
    library: str = "auto"
    preprocessing: str = "prior"

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | PriorCandidate, *, image_size: int | None = None) -> PriorCandidate:
        """A candidate from ``[name=]prior[,option=value...]`` or a mapping of the same keys;
        ``image_size`` is the default input size of candidates that set none."""
        if isinstance(value, PriorCandidate):
            return value
        options = dict(value) if isinstance(value, Mapping) else _split(value)
        if not options.get("prior"):
            raise ValueError(f"prior candidate {value!r}: no prior given (expected [name=]prior[,option=value...]).")
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := set(options) - known:
            raise ValueError(
                f"prior candidate {value!r}: unknown option(s) {sorted(unknown)}; "
                f"expected {sorted(known - {'name', 'prior'})}."
            )
        try:
            typed = {key: _typed(key, raw) for key, raw in options.items()}
        except ValueError as error:
            raise ValueError(f"prior candidate {value!r}: {error}") from error
        typed.setdefault("image_size", image_size)
        typed.setdefault("name", _default_name(typed))
        return cls(**typed)

    def spec(self) -> str:
        """The one-string form :meth:`parse` reads back (options that differ from the defaults)."""
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        options = [
            f"{key}={str(getattr(self, key)).lower() if isinstance(getattr(self, key), bool) else getattr(self, key)}"
            for key in ("image_size", "random_init", "seed", "revision", "library", "preprocessing")
            if getattr(self, key) != defaults[key]
        ]
        return ",".join([f"{self.name}={self.prior}", *options])


def _split(text: str) -> dict[str, str]:
    head, *rest = [part.strip() for part in text.split(",")]
    options: dict[str, str] = {}
    name, sep, prior = head.partition("=")
    if sep and _NAME.match(name) and prior:
        options["name"] = name
    else:
        prior = head
    options["prior"] = prior
    for part in rest:
        key, sep, raw = part.partition("=")
        if not sep:
            raise ValueError(f"prior candidate {text!r}: {part!r} is not option=value.")
        options[key.strip()] = raw.strip()
    return options


def _typed(key: str, raw: Any) -> Any:
    if not isinstance(raw, str) or key in ("name", "prior", "library", "preprocessing"):
        return raw
    if key in ("image_size", "seed"):
        if not raw.isdigit():
            raise ValueError(f"{key} must be a non-negative integer, got {raw!r}.")
        return int(raw)
    if key == "random_init":
        if raw.lower() not in _TRUE | _FALSE:
            raise ValueError(f"random_init must be true or false, got {raw!r}.")
        return raw.lower() in _TRUE
    return None if raw.lower() == "none" else raw  # revision


def _default_name(options: Mapping[str, Any]) -> str:
    prior = str(options["prior"]).removeprefix("local-dir:").removeprefix("hf-hub:").rstrip("/")
    name = PurePath(prior).name or prior
    if options.get("random_init"):
        name += f"_random{options.get('seed', 0)}"
    if options.get("image_size"):
        name += f"@{options['image_size']}"
    return name


def load_candidate(
    candidate: PriorCandidate,
    *,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
) -> Prior:
    """The candidate as a :class:`~rela_hf.priors.Prior` (random weights seeded, so repeatable)."""
    with torch.random.fork_rng(devices=[]):  # the caller's random state is left as it was
        if candidate.random_init:
            torch.manual_seed(candidate.seed)  # as rela-hf-targets --prior_random_init --seed does
        return load_prior(
            candidate.prior,
            revision=candidate.revision,
            library=candidate.library,
            preprocessing=candidate.preprocessing,
            image_size=candidate.image_size,
            pretrained=not candidate.random_init,
            device=device,
            trust_remote_code=trust_remote_code,
        )
