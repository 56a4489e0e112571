"""Tests for rela_hf.licenses: reading licence names and the rule that derives a licence."""

from __future__ import annotations

import pytest

from rela_hf.licenses import (
    HUB_LICENSES,
    UNKNOWN_LICENSE,
    License,
    LicenseInput,
    derive_license,
    parse_license,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("apache-2.0", "apache-2.0"),
        ("Apache-2.0", "apache-2.0"),  # SPDX
        ("Apache License 2.0", "apache-2.0"),
        ("MIT License", "mit"),
        ("BSD-3-Clause", "bsd-3-clause"),
        ("CC BY-NC 4.0", "cc-by-nc-4.0"),
        ("Creative Commons Attribution-NonCommercial-ShareAlike 4.0 International", "cc-by-nc-sa-4.0"),
        ("cc-by-4", "cc-by-4.0"),
        ("CC0 1.0", "cc0-1.0"),
        ("GPL-3.0-only", "gpl-3.0"),
        ("llama2", "llama2"),
    ],
)
def test_parse_license_maps_spellings_to_hub_identifiers(text, expected):
    license = parse_license(text, source="somewhere")
    assert license.id == expected and license.id in HUB_LICENSES
    assert license.source == "somewhere"


def test_parse_license_unknown_and_other():
    assert parse_license(None) == UNKNOWN_LICENSE and parse_license("  ").id == "unknown"
    custom = parse_license("Research use only, see the paper")
    assert custom.id == "other" and custom.name and custom.metadata()["license"] == "other"
    assert custom.metadata()["license_name"] == custom.name
    url = parse_license("https://example.org/terms.html")
    assert url.id == "other" and url.link == "https://example.org/terms.html"
    named = parse_license("other", name="acme-license", link="LICENSE")
    assert named.metadata() == {"license": "other", "license_name": "acme-license", "license_link": "LICENSE"}
    assert named.label == "other (acme-license)"


def data(license_id: str | License) -> LicenseInput:
    license = license_id if isinstance(license_id, License) else parse_license(license_id)
    return LicenseInput("training data", "org/data", license)


def prior(license_id: str | License) -> LicenseInput:
    license = license_id if isinstance(license_id, License) else parse_license(license_id)
    return LicenseInput("prior", "org/prior", license)


@pytest.mark.parametrize(
    ("data_license", "prior_license", "expected"),
    [
        ("cc-by-nc-4.0", "apache-2.0", "cc-by-nc-4.0"),  # weights trained on NC data are NC
        ("apache-2.0", "cc-by-nc-4.0", "cc-by-nc-4.0"),  # a distilled NC prior too
        ("mit", "apache-2.0", "apache-2.0"),
        ("cc-by-4.0", "mit", "cc-by-4.0"),
        ("cc-by-sa-4.0", "apache-2.0", "cc-by-sa-4.0"),
        ("cc-by-nc-sa-4.0", "cc-by-nc-4.0", "cc-by-nc-sa-4.0"),
        ("mit", "bsd-3-clause", "mit"),  # a permissive tie: the training data's
        ("cc0-1.0", "cc0-1.0", "cc0-1.0"),
        ("llama2", "mit", "llama2"),  # a use-restricted licence is inherited
    ],
)
def test_derive_license_takes_the_most_restrictive_input(data_license, prior_license, expected):
    derived = derive_license([data(data_license), prior(prior_license)])
    assert derived.license.id == expected and derived.known and not derived.explicit
    assert derived.license.source is None  # derived, not read anywhere
    assert "`org/" in derived.reason


@pytest.mark.parametrize(
    ("data_license", "prior_license", "why"),
    [
        (None, "apache-2.0", "`org/data` (training data) is unknown"),
        (None, None, "licences of `org/data` (training data) and `org/prior` (prior) are unknown"),
        ("cc-by-nd-4.0", "mit", "allow no derivatives"),
        ("cc-by-sa-4.0", "gpl-3.0", "each require derived works under their own terms"),
        ("cc-by-nc-3.0", "cc-by-nc-4.0", "each require derived works under their own terms"),
        ("llama2", "gemma", "cannot be combined"),
        ("llama2", "cc-by-nc-4.0", "cannot be combined"),
    ],
)
def test_derive_license_never_guesses(data_license, prior_license, why):
    derived = derive_license([data(parse_license(data_license)), prior(parse_license(prior_license))])
    assert derived.license.id == "unknown" and not derived.known
    assert why in derived.reason


def test_derive_license_keeps_the_name_and_link_of_an_other_licence():
    custom = parse_license("other", name="acme-research", link="https://acme.example/terms")
    derived = derive_license([data("mit"), prior(custom)])
    assert derived.license.metadata() == {
        "license": "other",
        "license_name": "acme-research",
        "license_link": "https://acme.example/terms",
    }


def test_an_explicit_licence_wins_and_no_input_is_unknown():
    derived = derive_license([data("cc-by-nc-4.0")], explicit="MIT")
    assert derived.license.id == "mit" and derived.explicit
    assert derived.reason == "set by the uploader"
    assert derived.inputs[0].license.id == "cc-by-nc-4.0"  # still listed in the card
    nothing = derive_license([])
    assert nothing.license.id == "unknown" and "nothing records" in nothing.reason
