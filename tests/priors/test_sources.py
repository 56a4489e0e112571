"""Locating priors: bad names, folders, Hub repos and revisions fail with a clear message; Hub
priors load pinned to a commit."""

from __future__ import annotations

import json

import pytest
import timm
import torch
import transformers

from rela_hf.priors import (
    PriorNotFoundError,
    UnsupportedPriorError,
    load_prior,
)
from tests.priors import SHA, timm_pooled, tiny_vit_config


def test_invalid_arguments_are_rejected_with_the_allowed_values():
    with pytest.raises(ValueError, match=r"library='keras'.*'auto', 'timm', 'transformers'"):
        load_prior("test_resnet", library="keras")
    with pytest.raises(ValueError, match=r"preprocessing='imagenet'.*'prior', 'official'"):
        load_prior("test_resnet", preprocessing="imagenet")
    with pytest.raises(ValueError, match="image_size"):
        load_prior("test_resnet", pretrained=False, image_size=0)


def test_unknown_names_and_folders_raise_prior_not_found(tmp_path):
    with pytest.raises(PriorNotFoundError, match="'not_a_timm_model'"):
        load_prior("not_a_timm_model", library="timm")
    with pytest.raises(PriorNotFoundError, match="neither an existing folder nor a Hub repo id"):
        load_prior(str(tmp_path / "missing" / "prior"))
    with pytest.raises(PriorNotFoundError, match="no timm model folder"):
        load_prior(f"local-dir:{tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(PriorNotFoundError, match=r"has no config.json"):
        load_prior(str(tmp_path / "empty"))


def test_unknown_hub_repo_and_revision_name_the_id(hub, hub_namespace, timm_folder):
    repo_id = f"{hub_namespace}/does-not-exist"
    with pytest.raises(PriorNotFoundError, match=f"No model repository '{repo_id}'"):
        load_prior(repo_id)
    with pytest.raises(PriorNotFoundError, match=f"'{repo_id}'"):
        load_prior(f"hf-hub:{repo_id}")

    _, model = timm_folder
    timm.models.push_to_hf_hub(model, f"{hub_namespace}/prior", safe_serialization=True)
    with pytest.raises(PriorNotFoundError, match="has no revision 'no-such-branch'"):
        load_prior(f"{hub_namespace}/prior", revision="no-such-branch")


def test_a_text_model_is_not_an_image_prior(tmp_path):
    config = transformers.BertConfig(
        vocab_size=99,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
    )
    transformers.BertModel(config).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedPriorError, match=r"not an image model.*input_ids"):
        load_prior(str(tmp_path))


def test_custom_code_needs_trust_remote_code(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"model_type": "my_custom_encoder", "auto_map": {"AutoModel": "modeling.MyEncoder"}})
    )
    with pytest.raises(UnsupportedPriorError, match="trust_remote_code=True"):
        load_prior(str(tmp_path))


def test_conflicting_library_and_source_are_explained(timm_folder, tmp_path):
    folder, _ = timm_folder
    with pytest.raises(ValueError, match="timm source prefix"):
        load_prior(f"local-dir:{folder}", library="transformers")
    transformers.ViTModel(tiny_vit_config()).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedPriorError, match="library='transformers'"):
        load_prior(str(tmp_path), library="timm")
    with pytest.raises(ValueError, match=r"revision.*local folder"):
        load_prior(str(folder), revision="main")


def test_transformers_folder_without_image_processor_needs_official_preprocessing(tmp_path, images):
    transformers.ViTModel(tiny_vit_config()).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedPriorError, match="preprocessing='official'"):
        load_prior(str(tmp_path))
    prior = load_prior(str(tmp_path), preprocessing="official")  # size from the config: 32
    assert prior.preprocessing["input_size"] == [3, 32, 32]
    assert prior.embed(images[:2]).shape == (2, 32)


def test_timm_prior_pushed_to_the_hub_loads_pinned_to_a_commit(hub, hub_namespace, images):
    from huggingface_hub import HfApi

    repo_id = f"{hub_namespace}/test-resnet-prior"
    torch.manual_seed(2)
    first = timm.create_model("test_resnet").eval()
    timm.models.push_to_hf_hub(first, repo_id, safe_serialization=True)
    first_sha = HfApi().model_info(repo_id).sha

    prior = load_prior(f"hf-hub:{repo_id}")
    assert prior.library == "timm" and prior.name == f"hf-hub:{repo_id}"
    assert SHA.fullmatch(prior.revision) and prior.revision == first_sha
    pixels = prior.preprocess(images[:4])
    torch.testing.assert_close(prior.embed(pixels), timm_pooled(first, pixels))
    assert load_prior(repo_id).library == "timm"  # auto-detected from config.json

    # a new commit moves main; the old sha still loads the old weights
    torch.manual_seed(3)
    second = timm.create_model("test_resnet").eval()
    timm.models.push_to_hf_hub(second, repo_id, safe_serialization=True, commit_message="v2")
    latest = load_prior(f"hf-hub:{repo_id}")
    assert latest.revision != first_sha and latest.revision == HfApi().model_info(repo_id).sha
    torch.testing.assert_close(latest.embed(pixels), timm_pooled(second, pixels))
    pinned = load_prior(repo_id, revision=first_sha)
    assert pinned.revision == first_sha
    torch.testing.assert_close(pinned.embed(pixels), timm_pooled(first, pixels))
    # the architecture from the Hub, random weights: no commit to record
    assert load_prior(f"hf-hub:{repo_id}", pretrained=False).revision is None


def test_timm_registry_name_with_hub_weights_records_their_commit(hub, images):
    from huggingface_hub import HfApi

    torch.manual_seed(4)
    weights = timm.create_model("test_resnet").eval()
    hub_id = timm.models.get_pretrained_cfg("test_resnet").hf_hub_id  # timm/test_resnet.r160_in1k
    timm.models.push_to_hf_hub(weights, hub_id, safe_serialization=True)

    prior = load_prior("test_resnet")  # pretrained=True: timm fetches hf_hub_id
    assert prior.revision == HfApi().model_info(hub_id).sha
    pixels = prior.preprocess(images[:4])
    torch.testing.assert_close(prior.embed(pixels), timm_pooled(weights, pixels))


def test_transformers_prior_from_the_hub(hub, hub_namespace, images):
    from huggingface_hub import HfApi

    repo_id = f"{hub_namespace}/tiny-vit"
    torch.manual_seed(0)
    model = transformers.ViTModel(tiny_vit_config(), add_pooling_layer=False).eval()
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    model.push_to_hub(repo_id)
    processor.push_to_hub(repo_id)

    prior = load_prior(repo_id)
    assert prior.library == "transformers"
    assert prior.revision == HfApi().model_info(repo_id).sha
    pixels = processor(images=images[:3], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = model(pixel_values=pixels).last_hidden_state[:, 0]
    torch.testing.assert_close(prior.embed(images[:3]), expected)
