"""Tests for rela_hf.license_lookup: licences from Hub cards (the test Hub), timm and folders."""

from __future__ import annotations

import datasets
import timm
from huggingface_hub import HfApi

from rela_hf.hub import export_backbone
from rela_hf.license_lookup import dataset_license, model_license


def card(license_yaml: str) -> bytes:
    return f"---\n{license_yaml}\n---\n\n# A card\n".encode()


def push_card(repo_id: str, repo_type: str, content: bytes) -> str:
    api = HfApi()
    api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
    return api.upload_file(path_or_fileobj=content, path_in_repo="README.md", repo_id=repo_id, repo_type=repo_type).oid


def test_hub_dataset_licence_at_the_pinned_revision(hub, hub_namespace):
    repo_id = f"{hub_namespace}/images"
    first = push_card(repo_id, "dataset", card("license: mit"))
    push_card(repo_id, "dataset", card("license: cc-by-nc-4.0"))
    latest = dataset_license(repo_id)
    assert latest.id == "cc-by-nc-4.0" and f"`{repo_id}`" in latest.source
    assert dataset_license(repo_id, revision=first).id == "mit"  # what the run actually read


def test_hub_dataset_without_a_licence_or_repo_is_unknown_with_the_reason(hub, hub_namespace):
    repo_id = f"{hub_namespace}/no-licence"
    push_card(repo_id, "dataset", card("pretty_name: x"))
    silent = dataset_license(repo_id)
    assert silent.id == "unknown" and "names no licence" in silent.source
    missing = dataset_license(f"{hub_namespace}/missing")
    assert missing.id == "unknown" and "could be read" in missing.source
    assert dataset_license(None).id == "unknown"
    assert "not a Hub dataset id" in dataset_license("fashion_mnist").source


def test_mixed_licences_of_one_dataset_are_combined(hub, hub_namespace):
    repo_id = f"{hub_namespace}/mixed"
    push_card(repo_id, "dataset", card("license:\n- mit\n- cc-by-nc-4.0"))
    assert dataset_license(repo_id).id == "cc-by-nc-4.0"


def test_local_dataset_folders(tmp_path, fashion_mnist_slice):
    info = datasets.DatasetInfo(license="MIT License")
    images = datasets.Dataset.from_dict({"label": [0, 1]}, info=info)
    images.save_to_disk(str(tmp_path / "plain"))
    found = dataset_license(str(tmp_path / "plain"))
    assert found.id == "mit" and "DatasetInfo of the local folder `plain`" in found.source
    datasets.DatasetDict(train=images).save_to_disk(str(tmp_path / "splits"))
    assert dataset_license(str(tmp_path / "splits")).id == "mit"
    fashion_mnist_slice.save_to_disk(str(tmp_path / "no_info"))  # built in memory: no licence
    silent = dataset_license(str(tmp_path / "no_info"))
    assert silent.source == "the local folder `no_info` records no licence"
    (tmp_path / "carded").mkdir()
    (tmp_path / "carded" / "README.md").write_bytes(card("license: cc-by-sa-4.0"))
    assert dataset_license(str(tmp_path / "carded")).id == "cc-by-sa-4.0"
    (tmp_path / "undecided").mkdir()  # e.g. efficient data whose own sources were unknown
    (tmp_path / "undecided" / "README.md").write_bytes(card("license: unknown"))
    undecided = dataset_license(str(tmp_path / "undecided"))
    assert undecided.id == "unknown"
    assert "local folder `undecided` says `unknown`" in undecided.source
    gone = dataset_license(str(tmp_path / "moved" / "fmnist"))
    assert gone.id == "unknown" and str(tmp_path) not in gone.source


def test_model_licences_from_timm_the_hub_and_folders(hub, hub_namespace, tmp_path):
    registry = model_license("resnet18.a1_in1k")  # timm's own metadata, no download
    assert registry.id == "apache-2.0" and "timm's pretrained_cfg" in registry.source
    assert model_license("no_such_architecture").id == "unknown"

    carded = f"{hub_namespace}/carded-prior"
    push_card(carded, "model", card("license: cc-by-nc-4.0"))
    assert model_license(carded).id == "cc-by-nc-4.0"
    assert model_license(f"hf-hub:{carded}").id == "cc-by-nc-4.0"

    backbone = timm.create_model("test_resnet", num_classes=0)
    export = export_backbone(backbone, tmp_path / "prior", pretrained_cfg={"license": "bsd-3-clause"})
    local = model_license(str(export))
    assert local.id == "bsd-3-clause" and "local folder `prior`" in local.source
    assert model_license(f"local-dir:{export}").id == "bsd-3-clause"

    timm_repo = f"{hub_namespace}/timm-prior"  # a timm repo whose card has no licence
    HfApi().create_repo(timm_repo)
    HfApi().upload_folder(folder_path=str(export), repo_id=timm_repo)
    assert model_license(timm_repo).id == "bsd-3-clause"
