"""rela_hf.gpu_views.color: per-image colour adjustments against torchvision and PIL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision.transforms.v2 import functional as TF

from rela_hf.gpu_views.color import (
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    color_jitter,
    random_grayscale,
    solarize,
)

ADJUSTMENTS = {
    "brightness": (adjust_brightness, [0.2, 0.9, 1.3, 1.8]),
    "contrast": (adjust_contrast, [0.2, 0.9, 1.3, 1.8]),
    "saturation": (adjust_saturation, [0.0, 0.6, 1.2, 1.8]),
    "hue": (adjust_hue, [-0.2, -0.05, 0.1, 0.5]),
}


def to_float(image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def photos(cifar10_images):
    """Four real CIFAR-10 photos, PIL and as a float batch."""
    pil = [cifar10_images["image"][i] for i in (0, 3, 6, 9)]
    return pil, torch.stack([to_float(image) for image in pil])


@pytest.mark.parametrize("name", sorted(ADJUSTMENTS))
def test_matches_torchvision_image_by_image(photos, name):
    """One call with four factors = four torchvision calls (tensor kernels, float images)."""
    _, batch = photos
    ours_fn, factors = ADJUSTMENTS[name]
    ours = ours_fn(batch, torch.tensor(factors))
    reference = torch.stack([getattr(TF, f"adjust_{name}")(batch[i], f) for i, f in enumerate(factors)])
    # torchvision's grey weights are 0.2989/0.587/0.114, PIL's (ours) 0.299/0.587/0.114
    assert (ours - reference).abs().max() < 2e-4


@pytest.mark.parametrize("name", sorted(ADJUSTMENTS))
def test_close_to_the_pil_views(photos, name):
    """The PIL views adjust 8-bit images; the float results agree to about one 8-bit level."""
    pil, batch = photos
    ours_fn, factors = ADJUSTMENTS[name]
    ours = ours_fn(batch, torch.tensor(factors))
    reference = torch.stack([to_float(getattr(TF, f"adjust_{name}")(pil[i], f)) for i, f in enumerate(factors)])
    levels = (ours - reference).abs() * 255
    assert levels.mean() < 1.0, name
    assert torch.quantile(levels.flatten(), 0.99) < (6.0 if name == "hue" else 1.5), name


def test_identity_factors_leave_images_unchanged(photos):
    _, batch = photos
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert torch.equal(adjust_brightness(batch, ones), batch)
    assert torch.allclose(adjust_contrast(batch, ones), batch, atol=1e-7)
    assert torch.allclose(adjust_saturation(batch, ones), batch, atol=1e-7)
    assert torch.allclose(adjust_hue(batch, zeros), batch, atol=1e-6)


def test_jitter_follows_each_images_order(photos):
    """Each image gets its own order of the four adjustments, as ColorJitter's randperm(4)."""
    _, batch = photos
    orders = torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]])
    factors = torch.tensor([[1.6, 0.5, 1.5, 0.1], [0.4, 1.7, 0.3, -0.2], [1.2, 0.3, 1.8, 0.15], [0.7, 1.4, 0.2, -0.1]])
    ours = color_jitter(batch, orders, factors)
    names = ["brightness", "contrast", "saturation", "hue"]
    for i in range(4):
        expected = batch[i]
        for index in orders[i].tolist():
            expected = getattr(TF, f"adjust_{names[index]}")(expected, float(factors[i, index]))
        assert (ours[i] - expected).abs().max() < 5e-4, i
    # the order matters: brightness-then-contrast differs from contrast-then-brightness
    swapped = color_jitter(batch, orders.flip(1), factors)
    assert (swapped - ours).abs().max() > 0.05


def test_constant_images_reveal_the_factors():
    """On a flat grey image brightness scales the level, contrast and saturation keep it."""
    flat = torch.full((3, 3, 4, 4), 0.4)
    factor = torch.tensor([0.5, 1.0, 2.0])
    assert torch.allclose(adjust_brightness(flat, factor)[:, 0, 0, 0], torch.tensor([0.2, 0.4, 0.8]))
    assert torch.allclose(adjust_contrast(flat, factor), flat)
    assert torch.allclose(adjust_saturation(flat, factor), flat)
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    green = adjust_hue(red, torch.tensor([1 / 3]))
    assert torch.allclose(green[0, :, 0, 0], torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


def test_grayscale_and_solarize_only_where_asked(photos):
    _, batch = photos
    apply = torch.tensor([True, False, True, False])
    grey = random_grayscale(batch, apply)
    assert torch.allclose(grey[0], TF.rgb_to_grayscale(batch[0], num_output_channels=3), atol=2e-4)
    assert torch.equal(grey[1], batch[1]) and torch.equal(grey[3], batch[3])
    out = solarize(batch, apply, threshold=128 / 255)
    assert torch.equal(out[1], batch[1])
    bright = batch[0] >= 128 / 255
    assert torch.equal(out[0][bright], 1 - batch[0][bright]) and torch.equal(out[0][~bright], batch[0][~bright])
