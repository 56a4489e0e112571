"""Fixtures of the recipe tests: real images with and without ReLA targets, a random prior."""

from __future__ import annotations

import pytest
import timm
import torch

from tests.recipes.trainer import K, one_thread, reset_accelerate


@pytest.fixture(autouse=True)
def _one_thread_fresh_accelerate():
    with one_thread():
        yield
    reset_accelerate()


@pytest.fixture(scope="module")
def random_prior(tmp_path_factory):
    """A randomly initialised tiny timm encoder saved as a local timm folder (a valid prior)."""
    folder = tmp_path_factory.mktemp("prior") / "test_resnet_random"
    torch.manual_seed(0)
    timm.models.save_for_hf(timm.create_model("test_resnet", num_classes=0), folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def plain_data(tmp_path_factory, fashion_mnist_slice):
    """64 real Fashion-MNIST images (image, label), saved with save_to_disk."""
    folder = tmp_path_factory.mktemp("data") / "fashion_mnist_64"
    fashion_mnist_slice.save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def rela_data(tmp_path_factory, fashion_mnist_slice, random_prior):
    """The same images with a 16-d ``rela_target`` column made by add_rela_targets, saved with
    their provenance record (as make_targets.py saves them)."""
    from rela_hf.priors import load_prior
    from rela_hf.targets import add_rela_targets, save_rela_dataset

    prior = load_prior(str(random_prior), image_size=32, device="cpu")
    data = add_rela_targets(fashion_mnist_slice, prior, k=K)
    folder = tmp_path_factory.mktemp("data") / "fashion_mnist_64_rela"
    save_rela_dataset(data, folder)
    return folder
