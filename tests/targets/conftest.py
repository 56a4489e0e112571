"""Fixtures of the targets tests: real priors (pretrained, random, transformers) and image vectors."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from rela_hf.priors import load_prior


@pytest.fixture(scope="session")
def pixel_vectors(fashion_mnist_slice) -> np.ndarray:
    """64 real Fashion-MNIST images as 196-d vectors (14x14 grey pixels), float32."""
    images = [image.resize((14, 14), PIL.Image.BILINEAR) for image in fashion_mnist_slice["image"]]
    return np.stack([np.asarray(image, dtype=np.float32).reshape(-1) / 255.0 for image in images])


@pytest.fixture(scope="session")
def random_prior():
    """A randomly initialised timm network at 32 px: a valid ReLA prior (the paper uses some)."""
    torch.manual_seed(0)
    return load_prior("test_resnet", pretrained=False, image_size=32)


@pytest.fixture(scope="session")
def efficientnet_lite0_prior(tmp_path_factory):
    """The ImageNet EfficientNet-Lite0 from PyPI, converted to a timm folder once, at 64 px."""
    from rela_hf.convert import convert_efficientnet_lite0

    folder = convert_efficientnet_lite0(tmp_path_factory.mktemp("efficientnet_lite0") / "efficientnet_lite0")
    return load_prior(str(folder), image_size=64)


@pytest.fixture(scope="session")
def vit_prior(tmp_path_factory):
    """A small transformers ViT built from a config (random weights), loaded from a folder."""
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    folder = tmp_path_factory.mktemp("tiny_vit")
    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        image_size=32,
        patch_size=8,
    )
    ViTModel(config, add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return load_prior(str(folder))
