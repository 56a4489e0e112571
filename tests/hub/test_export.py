"""Tests for rela_hf.hub.export: the timm Hub-format export, round trips through timm and
transformers on real images."""

from __future__ import annotations

import json

import pytest
import timm
import torch

from rela_hf.hub import (
    ExportError,
    export_backbone,
    read_export_config,
)
from rela_hf.preprocessing import official_data_config
from tests.hub import timm_pixels


def test_export_writes_timm_format_with_our_provenance(tiny_backbone, tmp_path):
    out = export_backbone(
        tiny_backbone,
        tmp_path / "backbone",
        data_config=official_data_config(32),
        pretrained_cfg={"tag": "rela_byol_cifar10"},
    )
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = read_export_config(out)
    assert config["architecture"] == "test_resnet"
    assert config["num_classes"] == 0
    assert "num_classes" not in config["model_args"]  # the TimmWrapper fix
    cfg = config["pretrained_cfg"]
    assert cfg["tag"] == "rela_byol_cifar10"
    assert cfg["paper_ids"] == "arXiv:2405.14669"
    assert cfg["license"] == "apache-2.0"
    # The architecture's default ImageNet provenance (r160_in1k, 160 px) must not leak in.
    assert "r160_in1k" not in json.dumps(config)
    assert "origin_url" not in cfg and "hf_hub_id" not in cfg
    assert cfg["input_size"] == [3, 32, 32]
    assert cfg["mean"] == [0.485, 0.456, 0.406] and cfg["std"] == [0.229, 0.224, 0.225]
    assert cfg["crop_pct"] == 1.0
    # no leftover temporary folders next to the export
    assert [p.name for p in tmp_path.iterdir()] == ["backbone"]


def test_export_round_trip_timm_and_transformers_on_real_images(tiny_backbone, tmp_path, cifar10_images):
    from transformers import AutoImageProcessor, AutoModel

    out = export_backbone(tiny_backbone, tmp_path / "bb", data_config=official_data_config(32))
    images = list(cifar10_images["image"])
    pixels = timm_pixels(images, official_data_config(32))

    timm_model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    hf_model = AutoModel.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    hf_pixels = processor(images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = tiny_backbone(pixels)
        assert torch.equal(timm_model(pixels), expected)
        assert torch.allclose(hf_model(pixel_values=pixels).pooler_output, expected, atol=1e-6)
        # the processor rebuilt from pretrained_cfg preprocesses like timm's transform
        assert hf_pixels.shape == pixels.shape
        assert torch.allclose(hf_pixels, pixels, atol=1e-5)
        assert torch.allclose(hf_model(pixel_values=hf_pixels).pooler_output, expected, atol=1e-5)


def test_export_replaces_a_previous_export_but_not_other_folders(tiny_backbone, tmp_path):
    out = export_backbone(tiny_backbone, tmp_path / "bb")
    export_backbone(tiny_backbone, out, pretrained_cfg={"tag": "second"})
    assert read_export_config(out)["pretrained_cfg"]["tag"] == "second"

    precious = tmp_path / "run"
    precious.mkdir()
    (precious / "checkpoint.pt").write_bytes(b"do not delete")
    with pytest.raises(FileExistsError, match="not part of an export"):
        export_backbone(tiny_backbone, precious)
    assert (precious / "checkpoint.pt").read_bytes() == b"do not delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb", "run"]


def test_export_rejects_a_classifier_or_a_non_timm_module(tmp_path):
    with pytest.raises(ValueError, match="num_classes=0"):
        export_backbone(timm.create_model("test_resnet", num_classes=10), tmp_path / "a")
    with pytest.raises(TypeError, match="timm model"):
        export_backbone(torch.nn.Linear(2, 2), tmp_path / "b")
    with pytest.raises(ValueError, match="input_size"):
        export_backbone(
            timm.create_model("test_resnet", num_classes=0),
            tmp_path / "c",
            data_config={"input_size": (1, 32, 32)},
        )
    assert not any(tmp_path.iterdir())


def test_export_of_a_hand_modified_backbone_fails_before_writing(tmp_path):
    model = timm.create_model("test_resnet", num_classes=0)
    # a stem swapped by hand cannot be rebuilt from architecture + model_args
    model.conv1[0] = torch.nn.Conv2d(3, 16, 3, padding=1, bias=False)
    with pytest.raises(ExportError, match=r"modified after timm.create_model"):
        export_backbone(model, tmp_path / "bb")
    assert not any(tmp_path.iterdir())


def test_export_of_diverged_weights_names_the_divergence_and_writes_nothing(tmp_path):
    """Weights that are finite but far too large (one step at lr 1e6) give NaN/inf features:
    the export says so instead of blaming the reload."""
    model = timm.create_model("test_resnet", num_classes=0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1e30)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with pytest.raises(ExportError, match=r"non-finite features .* diverged"):
        export_backbone(model, tmp_path / "bb")
    assert not any(tmp_path.iterdir())
