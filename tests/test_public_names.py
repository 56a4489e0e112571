"""Tests for rela_hf.public_names: what a public card may call a dataset or a model."""

from __future__ import annotations

import pytest

from rela_hf.public_names import PublicName, is_local_path, public_config, public_name


def test_a_local_folder_is_named_by_its_last_component(tmp_path):
    folder = tmp_path / "secret-project" / "fashion_mnist"
    for spelling in (
        str(folder),
        f"local-dir:{folder}",
        str(folder) + "/",
        "~/data/fashion_mnist",
        "./fashion_mnist",
        "offline:fashion_mnist",
    ):
        assert public_name(spelling) == PublicName("fashion_mnist", local=True), spelling
    assert public_name(r"C:\Users\alice\data\fashion_mnist").name == "fashion_mnist"


def test_a_relative_path_is_local_only_when_it_exists(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert not is_local_path("outputs/rela")  # could be a Hub id
    (tmp_path / "outputs" / "rela").mkdir(parents=True)
    assert is_local_path("outputs/rela") and public_name("outputs/rela").name == "rela"


@pytest.mark.parametrize(
    "name", ["zalando-datasets/fashion_mnist", "hf-hub:timm/resnet18.a1_in1k", "timm/resnet18.a1_in1k@main"]
)
def test_hub_ids_are_kept(name):
    public = public_name(name)
    repo_id = name.removeprefix("hf-hub:").split("@")[0]
    assert not public.local and public.name == public.hub_id == repo_id
    assert public.revision == ("main" if "@" in name else None)
    assert public_name("resnet18") == PublicName("resnet18", local=False)  # a timm registry name


def test_a_hugging_face_cache_copy_names_the_repo_and_commit(tmp_path):
    sha = "0123456789abcdef0123456789abcdef01234567"
    copy = tmp_path / "hub" / "datasets--uoft-cs--cifar10" / "snapshots" / sha
    public = public_name(str(copy))
    expected = PublicName("uoft-cs/cifar10", local=True, hub_id="uoft-cs/cifar10", revision=sha)
    assert public == expected
    model = public_name(str(tmp_path / "models--timm--resnet18.a1_in1k" / "snapshots" / sha / "x"))
    assert model.hub_id == "timm/resnet18.a1_in1k" and model.revision == sha


def test_public_config_replaces_every_path_nested_too(tmp_path):
    config = {
        "dataset_name": str(tmp_path / "data" / "fmnist"),
        "prior": f"local-dir:{tmp_path / 'priors' / 'lite0'}",
        "eval_results": [str(tmp_path / "a" / "eval_results.json")],
        "nested": {"logging_dir": "~/runs/tb"},
        "hub_model_id": "org/model",
        "learning_rate": 0.001,
        "report_to": "tensorboard",
    }
    public = public_config(config)
    assert public == {
        "dataset_name": "<local path fmnist>",
        "prior": "<local path lite0>",
        "eval_results": ["<local path eval_results.json>"],
        "nested": {"logging_dir": "<local path tb>"},
        "hub_model_id": "org/model",
        "learning_rate": 0.001,
        "report_to": "tensorboard",
    }
    assert str(tmp_path) not in repr(public)
