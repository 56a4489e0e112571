"""Tests for rela_hf.targets.card: the dataset card of efficient data."""

from __future__ import annotations

import dataclasses

import pytest
from huggingface_hub import DatasetCard, HfApi

from rela_hf.targets import (
    add_rela_targets,
    push_rela_dataset,
    rela_targets_info,
    render_dataset_card,
    save_rela_dataset,
)
from rela_hf.targets.card import DATASET_TAGS


@pytest.fixture(scope="module")
def cifar_with_targets(random_prior, cifar10_images):
    return add_rela_targets(
        cifar10_images, random_prior, k=8, source={"id": "uoft-cs/cifar10", "split": "test", "revision": "0" * 40}
    )


def with_names(
    info, *, source: str | None = None, prior: str | None = None, pretrained: bool = True, fit_source: str | None = None
):
    """The record with other source / prior names (what a card is rendered from)."""
    changes = {
        "prior": dataclasses.replace(info.prior, name=prior or info.prior.name, pretrained=pretrained, revision=None)
    }
    if source is not None:
        changes["source"] = dataclasses.replace(info.source, id=source, revision=None)
    if fit_source is not None:
        changes["whitening_source"] = dataclasses.replace(info.source, id=fit_source, split="train")
    return dataclasses.replace(info, **changes)


def push_card(repo_id: str, repo_type: str, license_yaml: str) -> None:
    api = HfApi()
    api.create_repo(repo_id, repo_type=repo_type, exist_ok=True)
    api.upload_file(
        path_or_fileobj=f"---\n{license_yaml}\n---\n# x\n".encode(),
        path_in_repo="README.md",
        repo_id=repo_id,
        repo_type=repo_type,
    )


def test_no_local_path_appears_anywhere_in_the_card(cifar_with_targets, tmp_path):
    private = tmp_path / "bob-secret-work"
    info = with_names(
        rela_targets_info(cifar_with_targets),
        source=str(private / "data" / "cifar10"),
        prior=str(private / "priors" / "efficientnet_lite0"),
        fit_source=str(private / "data" / "cifar10_train"),
    )
    out = save_rela_dataset(cifar_with_targets, tmp_path / "saved", info=info)
    targets_only = render_dataset_card(
        {"lite0_pca8": dataclasses.replace(info, index_column="idx")}, repo_id="org/targets"
    )
    for rendered in ((out / "README.md").read_text(), str(targets_only)):
        machine_parts = [part for part in private.parts if part not in ("/", "tmp")]
        assert all(part not in rendered for part in machine_parts), machine_parts
        assert "/tmp/" not in rendered
    card = DatasetCard.load(out / "README.md")
    entry = card.data.rela_targets[0]
    assert entry["source_dataset"] == "cifar10" and entry["source_local"] is True
    assert entry["prior"] == "efficientnet_lite0" and entry["prior_local"] is True
    assert "`cifar10` (a local folder)" in card.text
    assert "`efficientnet_lite0` (timm), a local folder, not a Hub revision" in card.text
    assert 'load_prior("<path to efficientnet_lite0>"' in card.text
    assert 'load_dataset("<path to cifar10>"' in str(targets_only)
    assert card.data.source_datasets is None  # a local folder is no Hub source


def test_licence_and_source_datasets_come_from_the_source_and_prior_through_a_push(
    hub, hub_namespace, cifar_with_targets
):
    source, prior = f"{hub_namespace}/images", f"{hub_namespace}/prior"
    push_card(source, "dataset", "license: cc-by-sa-4.0")
    push_card(prior, "model", "license: apache-2.0")
    info = with_names(rela_targets_info(cifar_with_targets), source=source, prior=prior)
    repo_id = f"{hub_namespace}/images-rela"
    push_rela_dataset(cifar_with_targets, repo_id, info=info, split="test")
    card = DatasetCard.load(repo_id, repo_type="dataset")
    assert card.data.license == "cc-by-sa-4.0"  # share-alike data: the dataset shares alike
    assert card.data.source_datasets == [f"extended|{source}"]
    entry = card.data.rela_targets[0]
    assert entry["source_license"] == "cc-by-sa-4.0" and entry["prior_license"] == "apache-2.0"
    assert f"| `{source}` | source images (config `default`) | cc-by-sa-4.0 |" in card.text
    assert f"| `{prior}` | prior (config `default`) | apache-2.0 |" in card.text
    assert "the most restrictive of the inputs" in card.text


def test_unknown_and_random_prior_licences(cifar_with_targets, tmp_path):
    info = rela_targets_info(cifar_with_targets)  # uoft-cs/cifar10 is not on the test Hub
    card = render_dataset_card({"default": info}, repo_id=None)
    assert card.data.license == "unknown" and "rela-hf does not guess a licence" in card.text
    assert "`uoft-cs/cifar10` (source images) is unknown" in card.text
    assert [e for e in card.data.rela_targets if "prior_license" in e] == []  # random: no weights
    chosen = render_dataset_card({"default": info}, repo_id=None, license="mit")
    assert chosen.data.license == "mit" and "set by the uploader" in chosen.text


def test_licences_recorded_by_the_repo_stand_in_for_unreadable_ones(cifar_with_targets, caplog):
    info = with_names(rela_targets_info(cifar_with_targets), source="/gone/folder/cifar10", pretrained=False)
    existing = {
        "license": "mit",
        "rela_targets": [{"config_name": "default", "source_dataset": "cifar10", "source_license": "mit"}],
    }
    card = render_dataset_card({"default": info}, repo_id="org/x", existing_metadata=existing)
    assert card.data.license == "mit" and "this repo's card" in card.text
    caplog.set_level("WARNING")
    unreadable = render_dataset_card({"default": info}, repo_id="org/x", existing_metadata={"license": "mit"})
    assert unreadable.data.license == "unknown"
    assert "declared license 'mit'; rela-hf derives 'unknown'" in caplog.text


def test_wording_and_tags_fit_any_method(cifar_with_targets):
    card = render_dataset_card({"default": rela_targets_info(cifar_with_targets)}, repo_id="org/x")
    assert card.data.tags == DATASET_TAGS and "byol" not in card.data.tags
    assert "ordinary BYOL" not in card.text and "switches to its own training method" in card.text
    assert "the same data serves any of them" in card.text
    assert "the rela-hf benchmark (`benchmarks/results/README.md`" in card.text


def test_variance_fractions_agree_in_metadata_and_text(cifar_with_targets):
    card = render_dataset_card({"default": rela_targets_info(cifar_with_targets)}, repo_id="org/x")
    stored = card.data.rela_targets[0]["explained_variance_ratio"]
    assert 0 < stored <= 1 and f"keeps a fraction **{stored:.4f}** of the variance" in card.text
    assert "%" not in card.text.split("## Config")[1].split("## How the targets")[0]


def test_uses_and_limitations(cifar_with_targets):
    card = render_dataset_card({"default": rela_targets_info(cifar_with_targets)}, repo_id="org/x")
    uses = card.text.split("## Uses")[1].split("## Limitations")[0]
    limits = card.text.split("## Limitations and biases")[1].split("## Licence")[0]
    assert "**For**" in uses and "**Not for**" in uses and "no human meaning" in uses
    assert "a randomly initialised prior made the targets" in limits
    assert "the source dataset's" in limits and "fit on the images named above" in limits
