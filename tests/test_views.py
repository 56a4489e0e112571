"""Tests for rela_hf.views: pipeline parameters, outputs on real images, determinism."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import v2

from rela_hf.preprocessing import IMAGENET_MEAN, IMAGENET_STD, eval_transform
from rela_hf.views import (
    RandomGaussianBlur,
    TwoViews,
    byol_view_transforms,
    rela_view_transform,
)


def steps(pipeline: v2.Compose) -> list[tuple[object, float]]:
    """Flatten a pipeline into ``(transform, probability it is applied)`` pairs."""
    flat = []
    for transform in pipeline.transforms:
        if isinstance(transform, v2.RandomApply):
            flat += [(inner, transform.p) for inner in transform.transforms]
        else:
            flat.append((transform, getattr(transform, "p", 1.0)))
    return flat


def find(pipeline: v2.Compose, kind: type) -> list[tuple[object, float]]:
    return [(t, p) for t, p in steps(pipeline) if isinstance(t, kind)]


def only(pipeline: v2.Compose, kind: type) -> tuple[object, float]:
    found = find(pipeline, kind)
    assert len(found) == 1, f"expected one {kind.__name__}, found {len(found)}"
    return found[0]


def assert_jitter(jitter, brightness, contrast, saturation, hue):
    assert jitter.brightness == pytest.approx((1 - brightness, 1 + brightness))
    assert jitter.contrast == pytest.approx((1 - contrast, 1 + contrast))
    assert jitter.saturation == pytest.approx((1 - saturation, 1 + saturation))
    assert jitter.hue == pytest.approx((-hue, hue))


def assert_normalize(pipeline, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    normalize, _ = only(pipeline, v2.Normalize)
    assert normalize.mean == pytest.approx(list(mean)) and normalize.std == pytest.approx(list(std))
    assert isinstance(pipeline.transforms[-1], v2.Normalize)


# ---- pipeline parameters --------------------------------------------------------------------


def test_rela_view_parameters():
    pipeline = rela_view_transform(64)
    crop, _ = only(pipeline, v2.RandomResizedCrop)
    assert crop.size == (64, 64) and crop.scale == (0.5, 1.0)
    assert only(pipeline, v2.RandomHorizontalFlip)[1] == 0.5
    jitter, p_jitter = only(pipeline, v2.ColorJitter)
    assert p_jitter == 0.8
    assert_jitter(jitter, 0.8, 0.8, 0.8, 0.2)
    assert only(pipeline, v2.RandomGrayscale)[1] == 0.2
    assert find(pipeline, RandomGaussianBlur) == [] and find(pipeline, v2.RandomSolarize) == []
    assert_normalize(pipeline)


@pytest.mark.parametrize("image_size", [96, 224])
def test_byol_view_parameters(image_size):
    view1, view2 = byol_view_transforms(image_size)
    for view in (view1, view2):
        crop, _ = only(view, v2.RandomResizedCrop)
        assert crop.size == (image_size, image_size) and crop.scale == (0.08, 1.0)
        assert only(view, v2.RandomHorizontalFlip)[1] == 0.5
        jitter, p_jitter = only(view, v2.ColorJitter)
        assert p_jitter == 0.8
        assert_jitter(jitter, 0.4, 0.4, 0.2, 0.1)
        assert only(view, v2.RandomGrayscale)[1] == 0.2
        assert_normalize(view)
    blur1, p_blur1 = only(view1, RandomGaussianBlur)
    blur2, p_blur2 = only(view2, RandomGaussianBlur)
    assert (p_blur1, p_blur2) == (1.0, 0.1)
    assert blur1.sigma == blur2.sigma == (0.1, 2.0)
    assert find(view1, v2.RandomSolarize) == []
    solarize, p_solarize = only(view2, v2.RandomSolarize)
    assert p_solarize == 0.2 and solarize.threshold == 128


@pytest.mark.parametrize(
    ("image_size", "gaussian_blur", "expect_blur"),
    [(32, None, False), (28, None, False), (33, None, True), (32, True, True), (224, False, False)],
)
def test_byol_blur_switch(image_size, gaussian_blur, expect_blur):
    view1, view2 = byol_view_transforms(image_size, gaussian_blur=gaussian_blur)
    assert bool(find(view1, RandomGaussianBlur)) is expect_blur
    assert bool(find(view2, RandomGaussianBlur)) is expect_blur
    assert only(view2, v2.RandomSolarize)[1] == 0.2  # solarisation does not depend on blur


def test_gaussian_blur_matches_a_sigma_gaussian(cifar10_images):
    """PIL's blur with the drawn sigma agrees with BYOL's 23 px Gaussian kernel at 224 px."""
    image = cifar10_images["image"][4].resize((224, 224))
    torch.manual_seed(0)
    blurred = RandomGaussianBlur(sigma=(1.5, 1.5), p=1.0)(image)
    reference = v2.GaussianBlur(23, sigma=1.5)(image)  # the paper's kernel, torchvision
    difference = np.abs(np.asarray(blurred, float) - np.asarray(reference, float))
    assert difference.mean() < 1.0 and np.percentile(difference, 99) <= 3  # in 8-bit levels
    assert not np.array_equal(np.asarray(blurred), np.asarray(image))


def test_gaussian_blur_probability_and_sigma_range():
    image = Image.fromarray(np.tile(np.arange(32, dtype=np.uint8) * 8, (32, 1)))
    never, always = RandomGaussianBlur(p=0.0), RandomGaussianBlur(p=1.0)
    assert never(image) is image and always(image) is not image
    sometimes = RandomGaussianBlur(p=0.1)
    blurred = sum(sometimes(image) is not image for _ in range(2000))
    assert 140 < blurred < 260  # ~ 200 of 2000
    with pytest.raises(ValueError, match="sigma"):
        RandomGaussianBlur(sigma=(2.0, 0.1))
    with pytest.raises(ValueError, match="p must be"):
        RandomGaussianBlur(p=1.5)


def test_custom_normalisation_is_used():
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    assert_normalize(rela_view_transform(32, mean, std), mean, std)
    for view in byol_view_transforms(32, mean, std):
        assert_normalize(view, mean, std)


# ---- outputs on real images -----------------------------------------------------------------


def all_pipelines(image_size):
    return {
        "rela": rela_view_transform(image_size),
        "byol1": byol_view_transforms(image_size)[0],
        "byol2": byol_view_transforms(image_size)[1],
    }


@pytest.mark.parametrize("image_size", [32, 48])
def test_outputs_on_cifar10(cifar10_images, image_size):
    for name, pipeline in all_pipelines(image_size).items():
        for image in cifar10_images["image"][:5]:
            out = pipeline(image)
            assert out.shape == (3, image_size, image_size), name
            assert out.dtype == torch.float32, name
            assert torch.isfinite(out).all(), name


def test_grey_and_rgba_inputs_become_rgb(fashion_mnist_slice, cifar10_images):
    grey = fashion_mnist_slice["image"][0]
    assert grey.mode == "L"
    rgba = cifar10_images["image"][0].convert("RGBA")
    for name, pipeline in all_pipelines(28).items():
        for image in (grey, rgba):
            assert pipeline(image).shape == (3, 28, 28), name


# ---- randomness -----------------------------------------------------------------------------


def test_views_repeat_under_a_fixed_seed(cifar10_images):
    image = cifar10_images["image"][0]
    for name, pipeline in all_pipelines(32).items():
        torch.manual_seed(123)
        first = pipeline(image)
        torch.manual_seed(123)
        again = pipeline(image)
        assert torch.equal(first, again), name


def test_random_views_differ_and_eval_does_not(cifar10_images):
    image = cifar10_images["image"][1]
    two_views = TwoViews(rela_view_transform(32), rela_view_transform(32))
    v_a, v_b = two_views(image)
    assert isinstance(v_a, torch.Tensor) and not torch.equal(v_a, v_b)
    evaluation = eval_transform(32)
    assert torch.equal(evaluation(image), evaluation(image))


def test_two_views_applies_each_pipeline():
    image = Image.new("RGB", (40, 40), (10, 200, 30))
    view1, view2 = byol_view_transforms(24)
    out1, out2 = TwoViews(view1, view2)(image)
    assert out1.shape == out2.shape == (3, 24, 24)
    out_eval, out_small = TwoViews(eval_transform(24), eval_transform(12))(image)
    assert out_eval.shape == (3, 24, 24) and out_small.shape == (3, 12, 12)
    assert "view1=" in repr(TwoViews(view1, view2))


def test_solarisation_inverts_bright_pixels():
    """View 2's solarisation really inverts pixels >= 128 of the 8-bit image."""
    image = Image.fromarray(np.full((16, 16, 3), 200, dtype=np.uint8))
    solarize, _ = only(byol_view_transforms(16)[1], v2.RandomSolarize)
    always = v2.RandomSolarize(threshold=solarize.threshold, p=1.0)
    assert np.asarray(always(image))[0, 0, 0] == 255 - 200


def test_pipelines_pickle_for_dataloader_workers(cifar10_images):
    image = cifar10_images["image"][2]
    pipeline = pickle.loads(pickle.dumps(TwoViews(*byol_view_transforms(32))))
    assert pipeline(image)[0].shape == (3, 32, 32)


# ---- errors ---------------------------------------------------------------------------------


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="image_size"):
        rela_view_transform(0)
    with pytest.raises(TypeError, match="PIL images"):
        rela_view_transform(32)(torch.zeros(3, 32, 32))
