"""Tests for rela_hf.model_names: the one parser of Hub ids, folders and timm registry names."""

from __future__ import annotations

import pytest

from rela_hf.backbones import create_backbone
from rela_hf.model_names import ModelName, ModelNameError, parse_model_name, safe_model_name


@pytest.mark.parametrize(
    ("name", "revision", "expected"),
    [
        ("resnet18", None, ModelName("registry", "resnet18")),
        ("resnet50.a1_in1k", None, ModelName("registry", "resnet50.a1_in1k")),
        ("timm/resnet18.a1_in1k", None, ModelName("hub", "timm/resnet18.a1_in1k")),
        ("org/name@v1", None, ModelName("hub", "org/name", "v1")),
        ("org/name", "main", ModelName("hub", "org/name", "main")),
        ("hf-hub:timm/resnet18.a1_in1k", None, ModelName("hub", "timm/resnet18.a1_in1k", None, True)),
        ("hf_hub:org/name@abc", "abc", ModelName("hub", "org/name", "abc", True)),
    ],
)
def test_names_and_hub_ids(name, revision, expected):
    assert parse_model_name(name, revision=revision) == expected


def test_folders_win_over_names_and_get_timm_names(tmp_path, monkeypatch):
    (tmp_path / "resnet18").mkdir()
    monkeypatch.chdir(tmp_path)
    parsed = parse_model_name("resnet18")  # an existing folder of that name wins, as in from_pretrained
    assert parsed.kind == "folder" and parsed.timm_name == f"local-dir:{tmp_path / 'resnet18'}"
    prefixed = parse_model_name(f"local-dir:{tmp_path / 'missing'}")  # prefixed: no existence check
    assert prefixed.kind == "folder" and prefixed.timm_prefixed
    assert parse_model_name("org/name@v1").timm_name == "hf-hub:org/name@v1"
    assert parse_model_name("resnet18.a1_in1k", revision=None).timm_name == "resnet18.a1_in1k"


@pytest.mark.parametrize(
    ("name", "revision", "message"),
    [
        ("", None, "non-empty"),
        ("nope:thing", None, "Unknown model source"),
        ("./missing/folder", None, "neither an existing folder nor a Hub repo id"),
        ("a/b/c", None, "neither an existing folder nor a Hub repo id"),
        ("hf-hub:org/name@v1", "v2", "Two revisions"),
        ("local-dir:/tmp/x", "main", "revision='main' applies to Hub models"),
    ],
)
def test_malformed_names_are_refused(name, revision, message):
    with pytest.raises(ModelNameError, match=message):
        parse_model_name(name, revision=revision)


def test_folder_revision_is_refused(tmp_path):
    with pytest.raises(ModelNameError, match="local folder"):
        parse_model_name(str(tmp_path), revision="main")


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("hf-hub:timm/resnet18.a1_in1k", "resnet18_a1_in1k"),
        ("openai/clip-vit-base-patch16", "clip_vit_base_patch16"),
        ("/data/priors/EfficientNet--Lite0/", "efficientnet_lite0"),
        ("local-dir:/x/y/my prior", "my_prior"),
        ("///", "model"),
    ],
)
def test_safe_model_name(name, slug):
    assert safe_model_name(name) == slug


def test_backbones_accept_tagged_registry_names():
    """A tag (``arch.tag``) names pretrained weights of a registry architecture, not a path."""
    assert create_backbone("test_resnet.r160_in1k").num_features == 96
