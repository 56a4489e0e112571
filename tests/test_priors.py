"""Tests for rela_hf.priors: one Prior interface over timm, transformers and local folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import PIL.Image
import pytest
import timm
import torch
import transformers
from torchvision import transforms as T

from rela_hf.constants import IMAGENET_MEAN, IMAGENET_STD
from rela_hf.priors import (
    Prior,
    PriorNotFoundError,
    UnsupportedPriorError,
    load_prior,
    official_transform,
)

SHA = re.compile(r"[0-9a-f]{40}")


# ---- helpers -------------------------------------------------------------------------------------


def _timm_pooled(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """The hand-written reference of a timm prior's embedding."""
    with torch.no_grad():
        return model.eval().forward_head(model.forward_features(pixels), pre_logits=True)


def _save_timm_folder(model: torch.nn.Module, folder: Path) -> Path:
    """A timm Hub-format folder, with the transformers-compatibility fix of hf-conventions §2."""
    timm.models.save_for_hf(model, folder, safe_serialization=True)
    config = json.loads((folder / "config.json").read_text())
    config["model_args"].pop("num_classes", None)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _tiny_vit_config(**overrides) -> transformers.ViTConfig:
    kwargs = {
        "image_size": 32,
        "patch_size": 8,
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 37,
    }
    return transformers.ViTConfig(**{**kwargs, **overrides})


def _tiny_clip_config() -> transformers.CLIPConfig:
    tower = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
    }
    return transformers.CLIPConfig(
        text_config=dict(tower, vocab_size=99, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(tower, image_size=32, patch_size=8),
        projection_dim=16,
    )


@pytest.fixture(scope="module")
def images(cifar10_images) -> list[PIL.Image.Image]:
    return list(cifar10_images["image"])


@pytest.fixture(scope="module")
def timm_folder(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(1)
    model = timm.create_model("test_resnet").eval()
    return _save_timm_folder(model, tmp_path_factory.mktemp("timm") / "test_resnet"), model


# ---- timm ----------------------------------------------------------------------------------------


def test_random_timm_prior_embeds_real_images_like_a_hand_written_loop(images):
    prior = load_prior("test_resnet", pretrained=False, device="cpu")

    assert isinstance(prior, Prior)
    assert (prior.library, prior.revision, prior.name) == ("timm", None, "test_resnet")
    assert prior.embed_dim == prior.model.num_features == 96
    assert not prior.model.training
    assert not any(p.requires_grad for p in prior.model.parameters())
    # the prior's own preprocessing: test_resnet's pretrained_cfg (160 px, bilinear, crop 0.95)
    assert prior.preprocessing == {
        "mode": "prior",
        "input_size": [3, 160, 160],
        "interpolation": "bilinear",
        "crop_pct": 0.95,
        "crop_mode": "center",
        "mean": [0.5] * 3,
        "std": [0.5] * 3,
    }
    json.dumps(prior.preprocessing)  # JSON-able, e.g. for a dataset card

    embeddings = prior.embed(images)
    assert embeddings.shape == (20, 96) and embeddings.dtype == torch.float32
    assert embeddings.device.type == "cpu" and not embeddings.requires_grad
    assert torch.isfinite(embeddings).all()
    pixels = torch.stack([prior.transform(image) for image in images])
    assert pixels.shape == (20, 3, 160, 160)
    torch.testing.assert_close(embeddings, _timm_pooled(prior.model, pixels))
    # a preprocessed tensor batch takes the same path, and embeddings repeat exactly
    assert torch.equal(prior.embed(pixels), embeddings)
    # an ordinary tensor: it can be used in a later autograd computation
    student = torch.randn(20, 96, requires_grad=True)
    torch.nn.functional.cosine_similarity(student, prior.embed(images[:20])).sum().backward()


def test_image_size_overrides_the_input_size_of_cnns_and_vits(images):
    cnn = load_prior("test_resnet", pretrained=False, image_size=48)
    assert cnn.preprocessing["input_size"] == [3, 48, 48]
    assert cnn.transform(images[0]).shape == (3, 48, 48)
    assert cnn.embed(images[:4]).shape == (4, 96)

    # a ViT bakes its size into position embeddings: the model is rebuilt at the new size
    vit = load_prior("test_vit", pretrained=False, image_size=64)
    assert vit.model.patch_embed.img_size == (64, 64)
    assert vit.embed(images[:4]).shape == (4, vit.embed_dim)


def test_grayscale_rgba_and_palette_images_are_converted_to_rgb(images, fashion_mnist_slice):
    prior = load_prior("test_resnet", pretrained=False, image_size=32)
    grey = list(fashion_mnist_slice["image"][:4])
    assert {image.mode for image in grey} == {"L"}
    rgba = [image.convert("RGBA") for image in images[:4]]
    palette = [image.convert("P") for image in images[:4]]

    assert prior.transform(grey[0]).shape == (3, 32, 32)
    torch.testing.assert_close(prior.embed(grey), prior.embed([g.convert("RGB") for g in grey]))
    torch.testing.assert_close(prior.embed(rgba), prior.embed(images[:4]))
    torch.testing.assert_close(
        prior.embed(palette), prior.embed([p.convert("RGB") for p in palette])
    )


def test_official_preprocessing_is_resize_centre_crop_imagenet_normalisation(images):
    prior = load_prior("test_resnet", pretrained=False, preprocessing="official", image_size=32)
    assert prior.preprocessing["mode"] == "official"
    assert prior.preprocessing["input_size"] == [3, 32, 32]
    assert tuple(prior.preprocessing["mean"]) == IMAGENET_MEAN
    assert tuple(prior.preprocessing["std"]) == IMAGENET_STD

    reference = T.Compose(
        [T.Resize(32), T.CenterCrop(32), T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    )
    wide = images[0].resize((48, 32))  # not square: the shorter side is resized, then cropped
    for image in (images[0], wide):
        torch.testing.assert_close(prior.transform(image), reference(image))
    # without image_size the prior's own input size is used
    default = load_prior("test_resnet", pretrained=False, preprocessing="official")
    assert default.preprocessing["input_size"] == [3, 160, 160]
    assert isinstance(official_transform(64)(images[0]), torch.Tensor)


def test_local_timm_folder_loads_its_weights_by_path_and_by_local_dir(timm_folder, images):
    folder, original = timm_folder
    by_path = load_prior(str(folder))
    by_prefix = load_prior(f"local-dir:{folder}")
    assert by_path.library == by_prefix.library == "timm"
    assert by_path.revision is None and by_path.name == str(folder)

    pixels = by_path.preprocess(images[:8])
    expected = _timm_pooled(original, pixels)  # the saved weights, not a random init
    torch.testing.assert_close(by_path.embed(pixels), expected)
    torch.testing.assert_close(by_prefix.embed(pixels), expected)
    assert by_path.fingerprint == load_prior(str(folder)).fingerprint


def test_timm_folder_loaded_with_transformers_gives_the_same_embeddings(timm_folder, images):
    folder, _ = timm_folder
    timm_prior = load_prior(str(folder))
    hf_prior = load_prior(str(folder), library="transformers")
    assert hf_prior.library == "transformers"
    assert type(hf_prior.model).__name__ == "TimmWrapperModel"
    assert hf_prior.embed_dim == timm_prior.embed_dim
    pixels = timm_prior.preprocess(images[:4])
    torch.testing.assert_close(hf_prior.preprocess(images[:4]), pixels)
    torch.testing.assert_close(
        hf_prior.embed(pixels), timm_prior.embed(pixels), rtol=1e-5, atol=1e-5
    )


def test_fingerprint_tells_random_priors_apart():
    torch.manual_seed(0)
    first = load_prior("test_resnet", pretrained=False)
    torch.manual_seed(0)
    same = load_prior("test_resnet", pretrained=False)
    torch.manual_seed(1)
    other = load_prior("test_resnet", pretrained=False)
    assert first.fingerprint == same.fingerprint != other.fingerprint
    assert (
        first.fingerprint != load_prior("test_resnet", pretrained=False, image_size=32).fingerprint
    )


def test_to_moves_the_model_and_returns_the_prior(images):
    prior = load_prior("test_resnet", pretrained=False, channels_last=True, image_size=32)
    assert prior.to("cpu") is prior and prior.device == torch.device("cpu")
    reference = prior.embed(images[:4])
    # a prior cast to half precision (as on a GPU) still takes float32 input and gives float32
    prior.model.to(torch.bfloat16)
    half = prior.embed(images[:4])
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, reference, rtol=0.1, atol=0.1)


def test_priors_pickle_for_dataset_map_workers(timm_folder, tmp_path, images):
    import pickle

    transformers.ViTModel(_tiny_vit_config()).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    for prior in (load_prior(str(timm_folder[0])), load_prior(str(tmp_path))):
        clone = pickle.loads(pickle.dumps(prior))
        torch.testing.assert_close(clone.embed(images[:2]), prior.embed(images[:2]))


# ---- transformers --------------------------------------------------------------------------------


@pytest.mark.parametrize("with_pooler", [False, True])
def test_transformers_vit_folder(tmp_path, images, with_pooler):
    torch.manual_seed(0)
    model = transformers.ViTModel(_tiny_vit_config(), add_pooling_layer=with_pooler).eval()
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32})
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    prior = load_prior(str(tmp_path))
    assert (prior.library, prior.revision, prior.embed_dim) == ("transformers", None, 32)
    assert prior.preprocessing["input_size"] == [3, 32, 32]
    assert prior.preprocessing["image_processor"] == "ViTImageProcessor"
    json.dumps(prior.preprocessing)

    pixels = processor(images=images[:6], return_tensors="pt")["pixel_values"]
    torch.testing.assert_close(prior.preprocess(images[:6]), pixels)
    with torch.no_grad():
        out = model(pixel_values=pixels)
    # a checkpoint without pooler weights: the CLS token, never a freshly initialised pooler
    expected = out.pooler_output if with_pooler else out.last_hidden_state[:, 0]
    torch.testing.assert_close(prior.embed(images[:6]), expected)
    assert prior.embed_fn.pooling == ("pooler" if with_pooler else "cls")


def test_transformers_vit_at_another_image_size_interpolates_positions(tmp_path, images):
    transformers.ViTModel(_tiny_vit_config(), add_pooling_layer=False).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    prior = load_prior(str(tmp_path), image_size=48)
    assert prior.preprocessing["input_size"] == [3, 48, 48]
    assert dict(prior.embed_fn.forward_kwargs) == {"interpolate_pos_encoding": True}
    assert prior.embed(images[:2]).shape == (2, 32)


def test_half_precision_checkpoint_loads_as_float32(tmp_path, images):
    transformers.ViTModel(_tiny_vit_config()).half().save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    prior = load_prior(str(tmp_path))
    assert {p.dtype for p in prior.model.parameters()} == {torch.float32}
    assert prior.embed(images[:2]).dtype == torch.float32
    # unless asked otherwise
    half = load_prior(str(tmp_path), dtype=torch.bfloat16)
    assert {p.dtype for p in half.model.parameters()} == {torch.bfloat16}
    assert half.embed(images[:2]).dtype == torch.float32


def test_clip_prior_is_the_projected_image_embedding_of_the_vision_tower(tmp_path, images):
    torch.manual_seed(0)
    clip = transformers.CLIPModel(_tiny_clip_config()).eval()
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    clip.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    prior = load_prior(str(tmp_path))
    assert isinstance(prior.model, transformers.CLIPVisionModelWithProjection)  # no text tower
    assert prior.embed_dim == 16  # projection_dim, not the tower width (32) nor the default 512
    assert prior.preprocessing["resize"] == {"shortest_edge": 32}
    assert prior.preprocessing["crop_size"] == {"height": 32, "width": 32}

    pixels = processor(images=images[:5], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        features = clip.get_image_features(pixel_values=pixels)
    features = features if isinstance(features, torch.Tensor) else features.pooler_output
    torch.testing.assert_close(prior.embed(images[:5]), features)


def test_other_dual_encoders_use_get_image_features(tmp_path, images):
    tower = {
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    config = transformers.SiglipConfig(
        text_config=dict(tower, vocab_size=99, bos_token_id=0, eos_token_id=1, pad_token_id=1),
        vision_config=dict(tower, image_size=32, patch_size=8),
    )
    torch.manual_seed(0)
    siglip = transformers.SiglipModel(config).eval()
    processor = transformers.SiglipImageProcessor(size={"height": 32, "width": 32})
    siglip.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)

    prior = load_prior(str(tmp_path))  # SiglipModel's main input is input_ids: still a prior
    assert prior.embed_fn.pooling == "image_features"
    pixels = processor(images=images[:3], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        features = siglip.get_image_features(pixel_values=pixels)
    features = features if isinstance(features, torch.Tensor) else features.pooler_output
    torch.testing.assert_close(prior.embed(images[:3]), features)


# ---- bad input -----------------------------------------------------------------------------------


def test_invalid_arguments_are_rejected_with_the_allowed_values():
    with pytest.raises(ValueError, match="library='keras'.*'auto', 'timm', 'transformers'"):
        load_prior("test_resnet", library="keras")
    with pytest.raises(ValueError, match="preprocessing='imagenet'.*'prior', 'official'"):
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
    with pytest.raises(PriorNotFoundError, match="has no config.json"):
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
    with pytest.raises(UnsupportedPriorError, match="not an image model.*input_ids"):
        load_prior(str(tmp_path))


def test_custom_code_needs_trust_remote_code(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {"model_type": "my_custom_encoder", "auto_map": {"AutoModel": "modeling.MyEncoder"}}
        )
    )
    with pytest.raises(UnsupportedPriorError, match="trust_remote_code=True"):
        load_prior(str(tmp_path))


def test_conflicting_library_and_source_are_explained(timm_folder, tmp_path):
    folder, _ = timm_folder
    with pytest.raises(ValueError, match="timm source prefix"):
        load_prior(f"local-dir:{folder}", library="transformers")
    transformers.ViTModel(_tiny_vit_config()).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedPriorError, match="library='transformers'"):
        load_prior(str(tmp_path), library="timm")
    with pytest.raises(ValueError, match="revision.*local folder"):
        load_prior(str(folder), revision="main")


def test_transformers_folder_without_image_processor_needs_official_preprocessing(tmp_path, images):
    transformers.ViTModel(_tiny_vit_config()).save_pretrained(tmp_path)
    with pytest.raises(UnsupportedPriorError, match="preprocessing='official'"):
        load_prior(str(tmp_path))
    prior = load_prior(str(tmp_path), preprocessing="official")  # size from the config: 32
    assert prior.preprocessing["input_size"] == [3, 32, 32]
    assert prior.embed(images[:2]).shape == (2, 32)


# ---- Hub -----------------------------------------------------------------------------------------


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
    torch.testing.assert_close(prior.embed(pixels), _timm_pooled(first, pixels))
    assert load_prior(repo_id).library == "timm"  # auto-detected from config.json

    # a new commit moves main; the old sha still loads the old weights
    torch.manual_seed(3)
    second = timm.create_model("test_resnet").eval()
    timm.models.push_to_hf_hub(second, repo_id, safe_serialization=True, commit_message="v2")
    latest = load_prior(f"hf-hub:{repo_id}")
    assert latest.revision != first_sha and latest.revision == HfApi().model_info(repo_id).sha
    torch.testing.assert_close(latest.embed(pixels), _timm_pooled(second, pixels))
    pinned = load_prior(repo_id, revision=first_sha)
    assert pinned.revision == first_sha
    torch.testing.assert_close(pinned.embed(pixels), _timm_pooled(first, pixels))
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
    torch.testing.assert_close(prior.embed(pixels), _timm_pooled(weights, pixels))


def test_transformers_prior_from_the_hub(hub, hub_namespace, images):
    from huggingface_hub import HfApi

    repo_id = f"{hub_namespace}/tiny-vit"
    torch.manual_seed(0)
    model = transformers.ViTModel(_tiny_vit_config(), add_pooling_layer=False).eval()
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
