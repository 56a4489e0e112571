"""Tests for rela_hf.backbones: timm backbones, the CIFAR stem, exports and their reload."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
import timm
import torch
from huggingface_hub import HfApi
from timm.models import save_for_hf
from torch import nn

from rela_hf.backbones import (
    CIFAR_RESNETS,
    create_backbone,
    register_cifar_resnet,
    to_cifar_stem,
)

SMALL_RESNET = {"channels": (8, 16, 32, 64)}  # a reduced ResNet-18, fast on CPU


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


# ---- architecture names ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kwargs", "width"),
    [("test_resnet", {}, 96), ("resnet18", SMALL_RESNET, 64), ("test_vit", {}, None)],
)
def test_backbone_returns_pooled_features(name, kwargs, width):
    model = create_backbone(name, **kwargs)
    assert model.num_classes == 0
    size = 160 if "vit" in name else 32  # test_vit has a fixed 160 px input
    out = features(model, torch.randn(2, 3, size, size))
    assert out.shape == (2, model.num_features)
    if width is not None:
        assert model.num_features == width


def test_resnet_widths_of_the_spec():
    # ResNet-18 -> 512, ResNet-50 -> 2048 (the official k of ReLA's targets); built on the meta
    # device so the full-size models cost nothing
    with torch.device("meta"):
        assert create_backbone("resnet18").num_features == 512
        assert create_backbone("resnet50", cifar_stem=True).num_features == 2048


def test_model_kwargs_reach_timm_and_its_model_args():
    model = create_backbone("resnet18", channels=(16, 32, 64, 128), stem_width=16)
    assert model.num_features == 128
    assert model.layer1[0].conv1.out_channels == 16


# ---- CIFAR stem -----------------------------------------------------------------------------


def test_cifar_stem_plain_resnet():
    model = create_backbone("resnet18", cifar_stem=True, **SMALL_RESNET)
    assert model.pretrained_cfg["architecture"] == "resnet18_cifar"
    conv1 = model.conv1
    assert (conv1.kernel_size, conv1.stride, conv1.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        maps = model.eval().forward_features(torch.randn(2, 3, 32, 32))
    assert maps.shape == (2, 64, 4, 4)  # 32 px keep 4x4 maps (1x1 with the ImageNet stem)
    standard = create_backbone("resnet18", **SMALL_RESNET).eval()
    with torch.no_grad():
        assert standard.forward_features(torch.randn(2, 3, 32, 32)).shape[-2:] == (1, 1)
    assert [info["reduction"] for info in model.feature_info] == [1, 1, 2, 4, 8]


def test_cifar_stem_deep_stem_resnet():
    model = create_backbone("test_resnet", cifar_stem=True)
    first = model.conv1[0]
    assert first.kernel_size == (3, 3) and first.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        assert model.eval().forward_features(torch.randn(1, 3, 32, 32)).shape[-2:] == (4, 4)


def test_cifar_variants_are_registered_with_timm():
    registered = set(timm.list_models("*_cifar"))
    assert {name + "_cifar" for name in CIFAR_RESNETS} <= registered
    cfg = timm.models.get_pretrained_cfg("resnet50_cifar")
    assert cfg.input_size == (3, 32, 32) and cfg.pool_size == (4, 4) and cfg.crop_pct == 1.0
    # no provenance inherited from timm's ImageNet weights: none exist for this stem
    assert not cfg.hf_hub_id and not cfg.url and cfg.license is None and cfg.paper_ids is None
    assert not cfg.has_weights


def test_register_cifar_resnet_on_demand_and_idempotent():
    assert register_cifar_resnet("resnet26") == "resnet26_cifar"
    assert register_cifar_resnet("resnet26_cifar") == "resnet26_cifar"  # no re-registration
    model = create_backbone("resnet26", cifar_stem=True, channels=(8, 16, 32, 64))
    assert isinstance(model.maxpool, nn.Identity) and model.num_features == 256


def test_to_cifar_stem_rejects_other_models():
    with pytest.raises(TypeError, match="timm ResNet"):
        to_cifar_stem(timm.create_model("test_vit"))
    with pytest.raises(TypeError, match="replace_stem_pool"):
        to_cifar_stem(timm.create_model("resnet18", replace_stem_pool=True, **SMALL_RESNET))


# ---- exports and their reload ---------------------------------------------------------------


def export(model: nn.Module, directory) -> None:
    save_for_hf(model, directory, safe_serialization=True)


def test_cifar_export_reloads_with_plain_timm_and_create_backbone(tmp_path):
    model = create_backbone("resnet18", cifar_stem=True, channels=(16, 32, 64, 128), stem_width=16)
    export(model, tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architecture"] == "resnet18_cifar"
    assert config["model_args"]["channels"] == [16, 32, 64, 128]
    assert config["pretrained_cfg"]["input_size"] == [3, 32, 32]
    x = torch.randn(2, 3, 32, 32)
    plain = timm.create_model(f"local-dir:{tmp_path}", pretrained=True)
    by_path, by_prefix = create_backbone(str(tmp_path)), create_backbone(f"local-dir:{tmp_path}")
    for reloaded in (plain, by_path, by_prefix):
        assert isinstance(reloaded.maxpool, nn.Identity)
        torch.testing.assert_close(features(reloaded, x), features(model, x))


def test_exports_reload_in_a_fresh_process(tmp_path):
    """Plain timm needs ``import rela_hf.backbones``; create_backbone registers any variant."""
    r18, r26 = tmp_path / "r18", tmp_path / "r26"
    export(create_backbone("resnet18", cifar_stem=True, **SMALL_RESNET), r18)
    export(create_backbone("resnet26", cifar_stem=True, channels=(8, 16, 32, 64)), r26)
    script = textwrap.dedent(
        f"""
        import timm
        try:
            timm.create_model("local-dir:{r18}", pretrained=True)
        except RuntimeError as error:
            print("without import:", error)
        import rela_hf.backbones
        reloaded = timm.create_model("local-dir:{r18}", pretrained=True)
        print("plain timm:", type(reloaded.maxpool).__name__)
        assert not timm.is_model("resnet26_cifar")
        print("create_backbone:", rela_hf.backbones.create_backbone("{r26}").num_features)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-c", script]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert "without import: Unknown model (resnet18_cifar)" in result.stdout
    assert "plain timm: Identity" in result.stdout
    assert "create_backbone: 256" in result.stdout


def test_hub_export_loads_by_hf_hub_name(hub, hub_namespace, tmp_path):
    model = create_backbone("test_resnet", cifar_stem=True)
    export(model, tmp_path)
    repo_id = f"{hub_namespace}/rela-test-resnet"
    api = HfApi()
    api.create_repo(repo_id)
    api.upload_folder(repo_id=repo_id, folder_path=tmp_path)
    reloaded = create_backbone(f"hf-hub:{repo_id}")
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(features(reloaded, x), features(model, x))


# ---- errors ---------------------------------------------------------------------------------


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match=r"'resnet181'.*Close matches: .*resnet18"):
        create_backbone("resnet181")


def test_cifar_stem_needs_a_resnet():
    with pytest.raises(ValueError, match="ResNets only"):
        create_backbone("test_vit", cifar_stem=True)


def test_cifar_stem_has_no_pretrained_weights():
    with pytest.raises(ValueError, match="No pretrained weights exist for the CIFAR stem"):
        create_backbone("resnet18", cifar_stem=True, pretrained=True)


def test_num_classes_is_always_zero():
    with pytest.raises(ValueError, match="num_classes=0"):
        create_backbone("test_resnet", num_classes=10)
    assert create_backbone("test_resnet", num_classes=0).num_classes == 0


def test_missing_paths_and_folders_without_config(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a timm architecture"):
        create_backbone(str(tmp_path / "missing" / "export"))
    with pytest.raises(FileNotFoundError, match=r"config.json"):
        create_backbone(str(tmp_path))


def test_cifar_stem_on_a_standard_checkpoint_is_refused(tmp_path):
    export(create_backbone("test_resnet"), tmp_path)
    with pytest.raises(ValueError, match="standard stem"):
        create_backbone(str(tmp_path), cifar_stem=True)
