"""rela_hf.gpu_views.sampling: per-row uniforms and the parameter distributions.

Distributions are compared with torchvision's own transforms sampled as often (two-sample
Kolmogorov-Smirnov at alpha = 0.001) or with the exact Bernoulli/uniform laws (tolerances from the
sample size); every sample comes from fixed seeds, so the tests are deterministic.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torchvision.transforms import v2

from rela_hf.gpu_views.recipe import ViewRecipe
from rela_hf.gpu_views.sampling import (
    UNIFORMS_PER_VIEW,
    crop_boxes,
    row_uniforms,
    sample_view_params,
)
from tests.gpu_views.statistics import assert_rate, assert_same_distribution

BYOL_LIKE = ViewRecipe(
    (32, 32),
    (0.08, 1.0),
    flip_p=0.5,
    color_jitter_p=0.8,
    brightness=(0.6, 1.4),
    contrast=(0.6, 1.4),
    saturation=(0.8, 1.2),
    hue=(-0.1, 0.1),
    grayscale_p=0.2,
    blur_p=0.1,
    solarize_p=0.2,
)


def uniforms(n: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(n, UNIFORMS_PER_VIEW, generator=generator, dtype=torch.float64)


def box_statistics(boxes: torch.Tensor, height: int, width: int) -> dict[str, torch.Tensor]:
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return {
        "area fraction": w * h / (height * width),
        "log aspect ratio": torch.log(w / h),
        "centre x": (boxes[:, 0] + boxes[:, 2]) / 2,
        "centre y": (boxes[:, 1] + boxes[:, 3]) / 2,
    }


def torchvision_boxes(n: int, height: int, width: int, scale: tuple[float, float]) -> torch.Tensor:
    crop = v2.RandomResizedCrop(32, scale=scale)
    image = torch.zeros(1, height, width)
    torch.manual_seed(0)
    params = [crop.make_params([image]) for _ in range(n)]
    return torch.tensor([[p["left"], p["top"], p["left"] + p["width"], p["top"] + p["height"]] for p in params])


@pytest.mark.parametrize(
    ("height", "width", "scale", "n"),
    [
        (28, 28, (0.08, 1.0), 4000),  # Fashion-MNIST, BYOL's scale
        (32, 32, (0.5, 1.0), 4000),  # CIFAR, ReLA's scale
        (375, 500, (0.08, 1.0), 4000),  # an ImageNet-sized photo
        (8, 100, (0.08, 1.0), 1500),  # a strip: many tries fail, some fall back
        (30, 80, (0.5, 1.0), 1000),  # wider than the ratio range allows: the central fallback
    ],
)
def test_crop_boxes_follow_torchvision(height, width, scale, n):
    recipe = ViewRecipe((32, 32), scale)
    boxes = crop_boxes(uniforms(n), torch.tensor([[height, width]] * n), recipe)
    reference = torchvision_boxes(n, height, width, scale)
    assert torch.equal(boxes, boxes.round()), "corners are whole pixels"
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    ours, theirs = (
        box_statistics(boxes.double(), height, width),
        box_statistics(reference.double(), height, width),
    )
    for name in ours:
        assert_same_distribution(ours[name], theirs[name], f"{name} at {height}x{width}")


def test_crop_box_area_and_ratio_stay_in_range_on_a_large_image():
    """Where whole-pixel rounding is negligible, the area fraction stays in the scale range and
    the log aspect ratio is uniform in the log ratio range (torchvision's law before fitting)."""
    n, side = 20000, 2000
    boxes = crop_boxes(uniforms(n, seed=3), torch.tensor([[side, side]] * n), ViewRecipe((32, 32), (0.08, 1.0)))
    stats = box_statistics(boxes.double(), side, side)
    rounding = 2 / math.sqrt(0.08 * side * side)  # one pixel on the smallest box's sides
    assert stats["area fraction"].min() >= 0.08 - rounding and stats["area fraction"].max() <= 1.0
    assert stats["log aspect ratio"].abs().max() <= math.log(4 / 3) + rounding
    # boxes whose first try did not fit (area > image) retry: only the ones well inside are U(log r)
    small = stats["area fraction"] < 0.5
    log_ratio = torch.empty(8000).uniform_(math.log(3 / 4), math.log(4 / 3))
    assert_same_distribution(stats["log aspect ratio"][small], log_ratio, "log ratio")
    assert_same_distribution(stats["area fraction"][small], torch.empty(8000).uniform_(0.08, 0.5), "area")


def test_flip_grayscale_solarize_and_blur_rates():
    n = 20000
    params = sample_view_params(uniforms(n), torch.tensor([[28, 28]] * n), BYOL_LIKE)
    assert_rate(params.flip, 0.5, "flip")
    assert_rate(params.grayscale, 0.2, "grayscale")
    assert_rate(params.solarize, 0.2, "solarize")
    blurred = params.blur_sigma > 0
    assert_rate(blurred, 0.1, "blur")
    sigma = params.blur_sigma[blurred]
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0
    assert_same_distribution(sigma, torch.empty(4000).uniform_(0.1, 2.0), "blur sigma")


def test_jitter_rate_factor_ranges_and_order():
    n = 24000
    params = sample_view_params(uniforms(n, seed=5), torch.tensor([[28, 28]] * n), BYOL_LIKE)
    factors = params.jitter_factors
    applied = (factors != torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=factors.dtype)).any(dim=1)
    assert_rate(applied, 0.8, "jitter applied")
    for column, (low, high) in enumerate([(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]):
        values = factors[applied, column]
        assert values.min() >= low and values.max() <= high
        assert_same_distribution(values, torch.empty(4000).uniform_(low, high), f"factor {column}")
    # every one of the 24 orders, uniformly (ColorJitter's randperm(4)), 5 sigma per count
    counts = dict.fromkeys(itertools.permutations(range(4)), 0)
    for order in params.jitter_order.tolist():
        counts[tuple(order)] += 1
    expected = n / 24
    assert all(abs(c - expected) < 5 * math.sqrt(expected) for c in counts.values()), counts


def test_off_steps_and_adjustments_give_identity():
    n = 2000
    recipe = ViewRecipe((16, 16), (0.5, 1.0), color_jitter_p=1.0, brightness=(0.2, 1.8))
    params = sample_view_params(uniforms(n), torch.tensor([[20, 20]] * n), recipe)
    assert not params.flip.any() and not params.grayscale.any() and not params.solarize.any()
    assert (params.blur_sigma == 0).all()
    assert (params.jitter_factors[:, 0] != 1).all()
    assert (params.jitter_factors[:, 1:] == torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64)).all()


def test_row_uniforms_depend_on_the_seed_only():
    first = row_uniforms(torch.tensor([11, 22, 33]), num_views=2)
    again = row_uniforms([33, 11], num_views=3)
    assert first.shape == (3, 2, UNIFORMS_PER_VIEW) and first.dtype == torch.float64
    assert torch.equal(first[2], again[0, :2]) and torch.equal(first[0], again[1, :2])
    assert not torch.equal(first[0], first[1])
    assert float(first.min()) >= 0.0 and float(first.max()) < 1.0


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="num_views"):
        row_uniforms([1], num_views=0)
    with pytest.raises(ValueError, match=r"\(B, 36\)"):
        sample_view_params(torch.rand(2, 5), torch.tensor([[4, 4]] * 2), BYOL_LIKE)
