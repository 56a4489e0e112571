"""rela_hf.gpu_views.recipe: every method's views read into recipes, with their own numbers."""

from __future__ import annotations

import pytest
from torchvision.transforms import v2

from rela_hf.gpu_views.recipe import (
    ViewRecipe,
    method_view_recipes,
    recipe_from_pipeline,
    rela_view_recipes,
)
from rela_hf.methods import method_names
from rela_hf.views import augmentation, byol_view_transforms


def test_rela_views():
    first, second = rela_view_recipes(32)
    assert first == second
    assert (
        first.size == (32, 32) and first.crop_scale == (0.5, 1.0) and first.crop_ratio == pytest.approx((3 / 4, 4 / 3))
    )
    assert first.flip_p == 0.5 and first.color_jitter_p == 0.8 and first.grayscale_p == 0.2
    assert first.brightness == pytest.approx((0.2, 1.8)) and first.contrast == pytest.approx((0.2, 1.8))
    assert first.saturation == pytest.approx((0.2, 1.8)) and first.hue == pytest.approx((-0.2, 0.2))
    assert first.blur_p == 0.0 and first.solarize_p == 0.0
    assert first.mean == pytest.approx((0.485, 0.456, 0.406)) and first.std == pytest.approx((0.229, 0.224, 0.225))


@pytest.mark.parametrize(("image_size", "blur"), [(32, (0.0, 0.0)), (96, (1.0, 0.1))])
def test_byol_views(image_size, blur):
    view1, view2 = method_view_recipes("byol", image_size)
    for view in (view1, view2):
        assert view.crop_scale == (0.08, 1.0) and view.color_jitter_p == 0.8 and view.grayscale_p == 0.2
        assert view.brightness == pytest.approx((0.6, 1.4)) and view.saturation == pytest.approx((0.8, 1.2))
        assert view.hue == pytest.approx((-0.1, 0.1)) and view.blur_sigma == (0.1, 2.0)
    assert (view1.blur_p, view2.blur_p) == blur
    assert (view1.solarize_p, view2.solarize_p) == (0.0, 0.2)
    assert view2.solarize_threshold == pytest.approx(128 / 255)


def test_dino_global_and_local_views():
    recipes = method_view_recipes("dino", 224, {"local_crops": 3})
    assert [r.size for r in recipes] == [(224, 224)] * 2 + [(96, 96)] * 3
    assert [r.crop_scale for r in recipes] == [(0.4, 1.0)] * 2 + [(0.05, 0.4)] * 3
    assert [r.blur_p for r in recipes] == [1.0, 0.1, 0.5, 0.5, 0.5]
    assert [r.solarize_p for r in recipes] == [0.0, 0.2, 0.0, 0.0, 0.0]


def test_simclr_views():
    first, second = method_view_recipes("simclr", 64)
    assert first == second and first.crop_scale == (0.08, 1.0) and first.blur_p == 0.5
    assert first.brightness == pytest.approx((0.2, 1.8)) and first.hue == pytest.approx((-0.2, 0.2))


@pytest.mark.parametrize("method", method_names())
def test_every_registered_method_has_a_twin(method):
    assert method_view_recipes(method, 48)


def test_a_pipeline_without_a_twin_is_named():
    pipeline = v2.Compose([v2.RandomResizedCrop(8), v2.RandomRotation(10)])
    with pytest.raises(ValueError, match="no twin for RandomRotation"):
        recipe_from_pipeline(pipeline)
    with pytest.raises(ValueError, match="bilinear"):
        recipe_from_pipeline(v2.Compose([v2.RandomResizedCrop(8, interpolation=v2.InterpolationMode.NEAREST)]))
    with pytest.raises(ValueError, match="no RandomResizedCrop"):
        recipe_from_pipeline(v2.Compose([v2.RandomHorizontalFlip()]))
    with pytest.raises(TypeError, match="Compose"):
        recipe_from_pipeline(byol_view_transforms(8))


def test_a_step_out_of_order_is_refused():
    pipeline = v2.Compose([v2.RandomResizedCrop(8), v2.RandomGrayscale(0.2), v2.RandomHorizontalFlip()])
    with pytest.raises(ValueError, match="after a later step"):
        recipe_from_pipeline(pipeline)


def test_augmentation_numbers_round_trip():
    pipeline = augmentation(
        40,
        crop_scale=(0.3, 0.9),
        color_jitter=(0.1, 0.2, 0.3, 0.05),
        color_jitter_p=0.6,
        grayscale_p=0.4,
        blur_p=0.7,
        solarize_p=0.3,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
    )
    recipe = recipe_from_pipeline(pipeline)
    assert recipe.crop_scale == (0.3, 0.9) and recipe.color_jitter_p == 0.6 and recipe.grayscale_p == 0.4
    assert recipe.contrast == pytest.approx((0.8, 1.2)) and recipe.hue == pytest.approx((-0.05, 0.05))
    assert recipe.blur_p == 0.7 and recipe.solarize_p == 0.3 and recipe.mean == (0.5,) * 3


def test_bad_recipes_are_refused():
    with pytest.raises(ValueError, match="scale"):
        ViewRecipe((8, 8), (0.9, 0.1))
    with pytest.raises(ValueError, match="flip_p"):
        ViewRecipe((8, 8), (0.5, 1.0), flip_p=1.5)
    with pytest.raises(ValueError, match="size"):
        ViewRecipe((0, 8), (0.5, 1.0))
