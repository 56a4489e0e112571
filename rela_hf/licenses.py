"""The licence of what rela-hf publishes, derived from the licences of what went into it.

An encoder trained on a dataset, and (with ReLA) on targets distilled from a prior model, is
built from other people's work; so is an efficient dataset (the source images plus the prior's
targets). rela-hf never stamps a default licence on either. :func:`derive_license` applies one
documented rule to the licences of the inputs (read by :mod:`rela_hf.license_lookup`):

1. A licence the uploader sets (``rela-hf-push --license``) is used as given.
2. An input whose licence is unknown makes the result ``unknown``: the card says so and the push
   command warns, rather than guessing.
3. An input that forbids derivatives (``cc-by-nd-*``, ``cc-by-nc-nd-*``) makes the result
   ``unknown`` too: whether the weights may be published at all is for the uploader to check.
4. Otherwise the most restrictive input wins, by tier: public domain (``cc0-1.0``...) <
   permissive notice (``mit``, ``bsd-*``...) < permissive with conditions (``apache-2.0``...) <
   attribution data licences (``cc-by-*``, ``odc-by``...) < share-alike / copyleft
   (``cc-by-sa-*``, ``odbl``, ``gpl-*``...) < non-commercial (``cc-by-nc-*``) < non-commercial
   share-alike (``cc-by-nc-sa-*``). Weights trained on ``cc-by-nc-4.0`` data are ``cc-by-nc-4.0``.
5. Two different licences in one permissive tier: the first input's (the training data's; the
   weights are fitted to it, the prior's notice stays in the card). Two different share-alike or
   non-commercial licences: ``unknown`` (they each require their own terms).
6. A use-restricted or custom licence (OpenRAIL, Llama, Gemma, ``other``...) is inherited when
   every other input is permissive; two different ones give ``unknown``.

This is a conservative default for the card, not legal advice: the card lists every input with
its licence, and the uploader can set another one.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "HUB_LICENSES",
    "UNKNOWN_LICENSE",
    "DerivedLicense",
    "License",
    "LicenseInput",
    "derive_license",
    "parse_license",
]

# tier -> licences (Hub identifiers); higher is more restrictive
_TIERS: dict[int, tuple[str, ...]] = {
    0: ("cc0-1.0", "unlicense", "pddl", "wtfpl"),
    1: (
        "mit",
        "bsd",
        "bsd-2-clause",
        "bsd-3-clause",
        "bsd-3-clause-clear",
        "isc",
        "zlib",
        "postgresql",
        "ncsa",
        "bsl-1.0",
    ),
    2: ("apache-2.0", "afl-3.0", "ecl-2.0", "ms-pl", "artistic-2.0"),
    3: (
        "cc-by-2.0",
        "cc-by-2.5",
        "cc-by-3.0",
        "cc-by-4.0",
        "odc-by",
        "cdla-permissive-1.0",
        "cdla-permissive-2.0",
        "etalab-2.0",
    ),
    4: (
        "cc-by-sa-3.0",
        "cc-by-sa-4.0",
        "odbl",
        "cdla-sharing-1.0",
        "gpl",
        "gpl-2.0",
        "gpl-3.0",
        "lgpl",
        "lgpl-2.1",
        "lgpl-3.0",
        "lgpl-lr",
        "agpl-3.0",
        "mpl-2.0",
        "epl-1.0",
        "epl-2.0",
        "eupl-1.1",
        "osl-3.0",
        "gfdl",
        "lppl-1.3c",
        "ofl-1.1",
    ),
    5: ("cc-by-nc-2.0", "cc-by-nc-3.0", "cc-by-nc-4.0"),
    6: ("cc-by-nc-sa-2.0", "cc-by-nc-sa-3.0", "cc-by-nc-sa-4.0"),
}
_TIER = {license_id: tier for tier, ids in _TIERS.items() for license_id in ids}
_PERMISSIVE_TIERS = (0, 1, 2, 3)
_NO_DERIVATIVES = ("cc-by-nd-4.0", "cc-by-nc-nd-3.0", "cc-by-nc-nd-4.0")
#: use-restricted or custom licences: rela-hf cannot rank them against others
_CUSTOM = (
    "openrail",
    "bigscience-openrail-m",
    "creativeml-openrail-m",
    "bigscience-bloom-rail-1.0",
    "bigcode-openrail-m",
    "openrail++",
    "c-uda",
    "cc",
    "deepfloyd-if-license",
    "llama2",
    "llama3",
    "llama3.1",
    "llama3.2",
    "llama3.3",
    "gemma",
    "other",
)
#: the licence identifiers the Hub accepts in a card's ``license:`` field
HUB_LICENSES = frozenset([*_TIER, *_NO_DERIVATIVES, *_CUSTOM, "unknown"])

# free-text spellings (DatasetInfo.license, SPDX ids) -> the Hub's words
_WORDS = (
    (r"creative\s*commons", "cc"),
    (r"attribution", "by"),
    (r"non[-\s]?commercial", "nc"),
    (r"share[-\s]?alike", "sa"),
    (r"no[-\s]?deriv(ative)?s?", "nd"),
    (r"\bzero\b", "0"),
    (r"\b(the|license|licence|international|generic|unported|version|only|or-later)\b", " "),
)


@dataclasses.dataclass(frozen=True)
class License:
    """A licence as a Hub card names it.

    Attributes:
        id: a Hub licence identifier (``apache-2.0``, ``cc-by-nc-4.0``, ``other``, ``unknown``).
        name: ``license_name`` of an ``other`` licence.
        link: ``license_link`` (where its text is).
        source: where it was read, for the card ("its Hub dataset card", ...).
    """

    id: str
    name: str | None = None
    link: str | None = None
    source: str | None = None

    @property
    def known(self) -> bool:
        return self.id != "unknown"

    @property
    def label(self) -> str:
        """How the card names it: ``cc-by-nc-4.0``, ``other (llama-license)``, ``unknown``."""
        return f"{self.id} ({self.name})" if self.id == "other" and self.name else self.id

    def metadata(self) -> dict[str, Any]:
        """The card's YAML keys: ``license`` (+ ``license_name``, ``license_link``)."""
        keys = {"license": self.id, "license_name": self.name, "license_link": self.link}
        return {key: value for key, value in keys.items() if value}

    def same_terms(self, other: License) -> bool:
        return (self.id, self.name, self.link) == (other.id, other.name, other.link)


UNKNOWN_LICENSE = License("unknown")


def parse_license(
    text: str | None, *, name: str | None = None, link: str | None = None, source: str | None = None
) -> License:
    """A :class:`License` from a card's ``license`` value or a free-text licence.

    Hub identifiers and SPDX ids map to themselves (``Apache-2.0`` -> ``apache-2.0``), common
    spellings to the Hub's ("Creative Commons Attribution 4.0" -> ``cc-by-4.0``); anything else
    is ``other`` named by its text; empty is ``unknown``.
    """
    if text is None or not str(text).strip():
        return dataclasses.replace(UNKNOWN_LICENSE, source=source)
    raw = str(text).strip()
    if re.match(r"^https?://", raw):
        return License("other", name=name, link=link or raw, source=source)
    words = raw.lower()
    for pattern, replacement in _WORDS:
        words = re.sub(pattern, replacement, words)
    slug = re.sub(r"-+", "-", re.sub(r"[\s_/,]+", "-", words)).strip("-")
    slug = re.sub(r"-v(?=\d)", "-", slug)
    for candidate in (slug, re.sub(r"(\d)$", r"\1.0", slug)):  # "cc-by-4" -> "cc-by-4.0"
        if candidate in HUB_LICENSES:
            if candidate == "other":
                return License("other", name=name, link=link, source=source)
            return License(candidate, link=link, source=source)
    return License("other", name=name or slug or raw, link=link, source=source)


@dataclasses.dataclass(frozen=True)
class LicenseInput:
    """One thing the published artefact was made from, with its licence.

    Attributes:
        role: what it was ("training data", "prior", "source images"...).
        name: how the card names it (a Hub id or a local folder's neutral name).
        license: its licence (``unknown`` when it could not be read).
    """

    role: str
    name: str
    license: License


@dataclasses.dataclass(frozen=True)
class DerivedLicense:
    """The licence of a published artefact and why.

    Attributes:
        license: the licence the card declares.
        reason: one sentence for the card (which rule gave it).
        inputs: what it was derived from.
        explicit: the uploader set it.
    """

    license: License
    reason: str
    inputs: tuple[LicenseInput, ...] = ()
    explicit: bool = False

    @property
    def known(self) -> bool:
        return self.license.known


def _describe(item: LicenseInput) -> str:
    return f"`{item.name}` ({item.role}, {item.license.label})"


def _most_restrictive(ranked: list[LicenseInput]) -> tuple[License | None, str]:
    """Rule 4-5 over inputs that all have a tier: the winner, or None with why not."""
    top = max(_TIER[item.license.id] for item in ranked)
    winners = [item for item in ranked if _TIER[item.license.id] == top]
    distinct = {item.license.id for item in winners}
    if len(distinct) > 1 and top not in _PERMISSIVE_TIERS:
        return None, (
            " and ".join(_describe(item) for item in winners) + " each require derived works under their own terms"
        )
    winner = winners[0]
    if len(ranked) == 1:
        return winner.license, f"inherited from {_describe(winner)}"
    return winner.license, f"the most restrictive of the inputs: {_describe(winner)}"


def derive_license(
    inputs: Iterable[LicenseInput],
    *,
    explicit: str | License | None = None,
) -> DerivedLicense:
    """The licence of an artefact made from ``inputs`` (rules in the module docstring).

    Args:
        inputs: the training data first, then the prior (the order breaks permissive ties).
        explicit: a licence the uploader set; used as given (rule 1).
    """
    inputs = tuple(inputs)
    if explicit is not None:
        chosen = explicit if isinstance(explicit, License) else parse_license(explicit)
        return DerivedLicense(
            dataclasses.replace(chosen, source="set by the uploader"), "set by the uploader", inputs, explicit=True
        )
    if not inputs:
        return DerivedLicense(UNKNOWN_LICENSE, "nothing records what it was made from")
    unknown = [item for item in inputs if not item.license.known]
    if unknown:
        names = " and ".join(f"`{item.name}` ({item.role})" for item in unknown)
        what = "licence of" if len(unknown) == 1 else "licences of"
        verb = "is" if len(unknown) == 1 else "are"
        return DerivedLicense(UNKNOWN_LICENSE, f"the {what} {names} {verb} unknown", inputs)
    no_derivatives = [item for item in inputs if item.license.id in _NO_DERIVATIVES]
    if no_derivatives:
        return DerivedLicense(
            UNKNOWN_LICENSE, " and ".join(map(_describe, no_derivatives)) + " allow no derivatives", inputs
        )
    custom = _distinct([item for item in inputs if item.license.id not in _TIER])
    ranked = [item for item in inputs if item.license.id in _TIER]
    if custom:
        restrictive = [item for item in ranked if _TIER[item.license.id] not in _PERMISSIVE_TIERS]
        if len(custom) > 1 or restrictive:
            clash = [*custom, *restrictive]
            return DerivedLicense(
                UNKNOWN_LICENSE, " and ".join(map(_describe, clash)) + " cannot be combined by rela-hf's rule", inputs
            )
        return DerivedLicense(_as_derived(custom[0].license), f"inherited from {_describe(custom[0])}", inputs)
    license, reason = _most_restrictive(ranked)
    return DerivedLicense(_as_derived(license), reason, inputs)


def _as_derived(license: License | None) -> License:
    """The input's terms without where they were read (the result was derived, not read)."""
    return UNKNOWN_LICENSE if license is None else dataclasses.replace(license, source=None)


def _distinct(items: Sequence[LicenseInput]) -> list[LicenseInput]:
    """One input per distinct licence terms, first kept."""
    kept: list[LicenseInput] = []
    for item in items:
        if not any(item.license.same_terms(other.license) for other in kept):
            kept.append(item)
    return kept
