"""The transformers prior loader: ViT (with and without pooler), position interpolation, dtype,
CLIP's projected image embedding, other dual encoders."""

from __future__ import annotations

import json

import pytest
import torch
import transformers

from rela_hf.priors import (
    load_prior,
)
from tests.priors import tiny_clip_config, tiny_vit_config


@pytest.mark.parametrize("with_pooler", [False, True])
def test_transformers_vit_folder(tmp_path, images, with_pooler):
    torch.manual_seed(0)
    model = transformers.ViTModel(tiny_vit_config(), add_pooling_layer=with_pooler).eval()
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
    transformers.ViTModel(tiny_vit_config(), add_pooling_layer=False).save_pretrained(tmp_path)
    transformers.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(tmp_path)
    prior = load_prior(str(tmp_path), image_size=48)
    assert prior.preprocessing["input_size"] == [3, 48, 48]
    assert dict(prior.embed_fn.forward_kwargs) == {"interpolate_pos_encoding": True}
    assert prior.embed(images[:2]).shape == (2, 32)


def test_half_precision_checkpoint_loads_as_float32(tmp_path, images):
    transformers.ViTModel(tiny_vit_config()).half().save_pretrained(tmp_path)
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
    clip = transformers.CLIPModel(tiny_clip_config()).eval()
    processor = transformers.CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
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
