"""Candidate priors written as one string (rela_hf.prior_scores.candidates)."""

from __future__ import annotations

import pytest
import torch

from rela_hf.prior_scores import PriorCandidate, load_candidate


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("test_resnet", PriorCandidate(name="test_resnet", prior="test_resnet")),
        (
            "test_resnet,image_size=32",
            PriorCandidate(name="test_resnet@32", prior="test_resnet", image_size=32),
        ),
        (
            "r=test_resnet,random_init=true,seed=3",
            PriorCandidate(name="r", prior="test_resnet", random_init=True, seed=3),
        ),
        (
            "in1k=hf-hub:timm/resnet18.a1_in1k,revision=abc,image_size=128",
            PriorCandidate(name="in1k", prior="hf-hub:timm/resnet18.a1_in1k", image_size=128, revision="abc"),
        ),
        (
            "/data/priors/effnet/,random_init=true",
            PriorCandidate(name="effnet_random0", prior="/data/priors/effnet/", random_init=True),
        ),
        (
            "local-dir:/x/student,preprocessing=official,library=timm",
            PriorCandidate(
                name="student",
                prior="local-dir:/x/student",
                preprocessing="official",
                library="timm",
            ),
        ),
    ],
)
def test_parse_the_one_string_form(text, expected):
    candidate = PriorCandidate.parse(text)
    assert candidate == expected
    assert PriorCandidate.parse(candidate.spec()) == candidate  # spec() reads back


def test_mappings_and_a_default_input_size():
    assert PriorCandidate.parse({"prior": "test_vit", "random_init": True}, image_size=64) == PriorCandidate(
        name="test_vit_random0@64", prior="test_vit", image_size=64, random_init=True
    )
    assert PriorCandidate.parse("test_vit,image_size=32", image_size=64).image_size == 32  # its own wins


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("test_resnet,size=32", r"unknown option\(s\) \['size'\]"),
        ("test_resnet,image_size=big", "image_size must be a non-negative integer"),
        ("test_resnet,random_init=maybe", "random_init must be true or false"),
        ("test_resnet,image_size", "is not option=value"),
        ({"image_size": 32}, "no prior given"),
    ],
)
def test_malformed_candidates_are_refused_with_the_reason(text, message):
    with pytest.raises(ValueError, match=message):
        PriorCandidate.parse(text)


def test_random_priors_repeat_by_seed_and_leave_the_callers_random_state_alone():
    state = torch.random.get_rng_state()
    first = load_candidate(PriorCandidate.parse("test_resnet,random_init=true,seed=1,image_size=32"), device="cpu")
    assert torch.equal(torch.random.get_rng_state(), state)
    again = load_candidate(PriorCandidate.parse("test_resnet,random_init=true,seed=1,image_size=32"), device="cpu")
    other = load_candidate(PriorCandidate.parse("test_resnet,random_init=true,seed=2,image_size=32"), device="cpu")
    assert first.fingerprint == again.fingerprint != other.fingerprint
    assert not first.pretrained and first.preprocessing["input_size"] == [3, 32, 32]


def test_the_random_prior_is_the_one_rela_hf_targets_makes():
    """rela-hf-targets --prior_random_init --seed S seeds torch, then loads: the same weights."""
    from rela_hf.priors import load_prior

    torch.manual_seed(5)
    targets_prior = load_prior("test_resnet", pretrained=False, image_size=32, device="cpu")
    scored = load_candidate(PriorCandidate.parse("test_resnet,random_init=true,seed=5,image_size=32"), device="cpu")
    assert scored.fingerprint == targets_prior.fingerprint
