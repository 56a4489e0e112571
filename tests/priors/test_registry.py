"""The prior loader registry: a new prior source is one loader function plus one entry.

A torchvision loader is registered here, exactly as a new ``rela_hf/priors/<library>_loader.py``
would register itself, and loaded through the ordinary ``load_prior``.
"""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from rela_hf.preprocessing import official_data_config
from rela_hf.priors import load_prior, prior_libraries, register_prior_loader
from rela_hf.priors.prior import (
    LoadedPrior,
    PriorRequest,
    official_preprocessing,
    official_transform,
)
from rela_hf.priors.registry import _LOADERS


def _torchvision_pooled(model: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    return model(pixels)


@pytest.fixture
def torchvision_loader():
    @register_prior_loader("torchvision", claims=lambda config: config.get("library") == "torchvision")
    def load_torchvision_prior(request: PriorRequest) -> LoadedPrior:
        config = request.source.config
        model = getattr(torchvision.models, config["architecture"])(num_classes=config["width"])
        size = request.image_size or 32
        return LoadedPrior(model, None, official_preprocessing(size), official_transform(size), _torchvision_pooled)

    yield load_torchvision_prior
    del _LOADERS["torchvision"]


def test_a_registered_loader_is_found_by_config_and_by_name(torchvision_loader, tmp_path, cifar10_images):
    (tmp_path / "config.json").write_text(
        json.dumps({"library": "torchvision", "architecture": "resnet18", "width": 24})
    )
    assert prior_libraries()[-1] == "torchvision"
    torch.manual_seed(0)
    prior = load_prior(str(tmp_path), image_size=32)  # library="auto": the loader claims the config
    assert prior.library == "torchvision" and prior.embed_dim == 24
    embeddings = prior.embed(list(cifar10_images["image"][:4]))
    assert embeddings.shape == (4, 24) and torch.isfinite(embeddings).all()
    # the same pixels as the official pipeline, through the model the loader built
    pixels = torch.stack([official_transform(32)(image) for image in cifar10_images["image"][:4]])
    with torch.no_grad():
        assert torch.allclose(embeddings, prior.model(pixels), atol=1e-6)
    assert prior.preprocessing["input_size"] == list(official_data_config(32)["input_size"])
    assert load_prior(str(tmp_path), library="torchvision", image_size=32).library == "torchvision"


def test_unknown_library_names_the_registered_ones():
    with pytest.raises(ValueError, match="'auto', 'timm', 'transformers'"):
        load_prior("test_resnet", library="open_clip")
