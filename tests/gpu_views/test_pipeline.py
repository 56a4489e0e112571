"""rela_hf.gpu_views.pipeline: whole views, against the PIL views and on images of known content."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision.transforms.v2 import functional as TF

from rela_hf.gpu_views.batching import image_to_uint8, stack_images
from rela_hf.gpu_views.pipeline import apply_recipe, make_views, views_for_batch
from rela_hf.gpu_views.recipe import (
    ViewRecipe,
    method_view_recipes,
    recipe_from_pipeline,
    rela_view_recipes,
)
from rela_hf.gpu_views.sampling import row_uniforms, sample_view_params
from rela_hf.preprocessing import IMAGENET_MEAN, IMAGENET_STD
from rela_hf.views import byol_view_transforms, rela_view_transform
from tests.gpu_views.statistics import assert_rate, assert_same_distribution

DRAWS_PER_IMAGE = 30  # x 20 CIFAR-10 images = 600 views per pipeline


def unnormalise(views: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return views * std + mean


def view_statistics(views: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-view numbers that each step moves: colour, contrast, colourfulness, sharpness."""
    pixels = unnormalise(views)
    stats = {f"mean {c}": pixels[:, i].mean(dim=(1, 2)) for i, c in enumerate("RGB")}
    stats["spread"] = pixels.std(dim=(1, 2, 3))
    stats["colourfulness"] = (pixels.max(dim=1).values - pixels.min(dim=1).values).mean(dim=(1, 2))
    stats["sharpness"] = (pixels[..., 1:] - pixels[..., :-1]).abs().mean(dim=(1, 2, 3))
    stats["left-right"] = pixels[..., : pixels.shape[-1] // 2].mean(dim=(1, 2, 3)) - pixels[
        ..., pixels.shape[-1] // 2 :
    ].mean(dim=(1, 2, 3))
    return stats


def pil_views(pipeline, images) -> torch.Tensor:
    """The PIL views, each seeded like ViewDataset seeds a row."""
    views = []
    for draw in range(DRAWS_PER_IMAGE):
        for index, image in enumerate(images):
            torch.manual_seed(1000 * draw + index)
            views.append(pipeline(image))
    return torch.stack(views)


def batched_views(recipe: ViewRecipe, images) -> torch.Tensor:
    canvas, sizes = stack_images([image_to_uint8(image) for image in images] * DRAWS_PER_IMAGE)
    seeds = torch.arange(len(sizes)) + 10**6
    return make_views(canvas, sizes, seeds, [recipe])[0]


PIPELINES = {
    "rela, 32 px": lambda: rela_view_transform(32),
    "byol view 1, 40 px (blur 1.0)": lambda: byol_view_transforms(40)[0],
    "byol view 2, 40 px (blur 0.1, solarise 0.2)": lambda: byol_view_transforms(40)[1],
}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_same_view_distribution_as_the_pil_views(cifar10_images, name):
    """Every per-view statistic has the PIL views' distribution (KS, alpha 0.001)."""
    images = list(cifar10_images["image"])
    pipeline = PIPELINES[name]()
    reference = view_statistics(pil_views(pipeline, images))
    ours = view_statistics(batched_views(recipe_from_pipeline(pipeline), images))
    for statistic in reference:
        assert_same_distribution(ours[statistic], reference[statistic], f"{name}: {statistic}")


def pil_view_with(image: Image.Image, params, i: int, recipe: ViewRecipe) -> torch.Tensor:
    """The PIL views' steps (torchvision on PIL, PIL's blur and solarise) with given parameters."""
    image = image.convert("RGB")
    left, top, right, bottom = params.boxes[i].int().tolist()
    image = TF.resized_crop(image, top, left, bottom - top, right - left, list(recipe.size))
    image = TF.hflip(image) if params.flip[i] else image
    names, identity = ("brightness", "contrast", "saturation", "hue"), (1.0, 1.0, 1.0, 0.0)
    for index in params.jitter_order[i].tolist():
        factor = float(params.jitter_factors[i, index])
        if factor != identity[index]:  # PIL's ops round even an identity factor to 8 bits
            image = getattr(TF, f"adjust_{names[index]}")(image, factor)
    image = TF.rgb_to_grayscale(image, 3) if params.grayscale[i] else image
    sigma = float(params.blur_sigma[i])
    image = image.filter(ImageFilter.GaussianBlur(radius=sigma)) if sigma > 0 else image
    image = ImageOps.solarize(image, 128) if params.solarize[i] else image
    return torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize("images_name", ["cifar10_images", "fashion_mnist_slice"])
def test_same_parameters_give_the_pil_views(images_name, request):
    """Paired: each image's drawn parameters, applied by the PIL ops one after the other, give
    the batched view to within PIL's 8-bit rounding (its blends truncate: ~0.5 level per op)."""
    images = list(request.getfixturevalue(images_name)["image"][:20])
    canvas, sizes = stack_images([image_to_uint8(image) for image in images])
    for view, recipe in enumerate(method_view_recipes("byol", 40)):
        uniforms = row_uniforms(torch.arange(20) + 77, num_views=2)[:, view]
        ours = unnormalise(apply_recipe(canvas.float() / 255, sizes, uniforms, recipe))
        params = sample_view_params(uniforms, sizes, recipe)
        pil = [pil_view_with(image, params, i, recipe) for i, image in enumerate(images)]
        reference = torch.stack(pil)
        levels = ((ours - reference).abs() * 255).mean(dim=(1, 2, 3))
        assert levels.mean() < 1.5 and levels.max() < 2.5, (view, levels)


def flat(rgb: tuple[int, int, int], n: int, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.tensor(rgb, dtype=torch.uint8).view(1, 3, 1, 1).expand(n, 3, size, size).contiguous()
    return images, torch.tensor([[size, size]] * n)


def test_brightness_factors_measured_on_a_flat_image():
    """A flat grey image keeps its shape through crops; its level reveals each brightness factor."""
    n = 6000
    recipe = ViewRecipe((8, 8), (0.5, 1.0), color_jitter_p=0.8, brightness=(0.2, 1.8))
    images, sizes = flat((100, 100, 100), n)
    views = unnormalise(make_views(images, sizes, torch.arange(n), [recipe])[0])
    factor = views[:, 0, 0, 0].double() / (100 / 255)
    jittered = (factor - 1).abs() > 1e-5
    assert_rate(jittered, 0.8, "jitter applied")
    assert_same_distribution(factor[jittered], torch.empty(4000, dtype=torch.float64).uniform_(0.2, 1.8), "brightness")
    assert torch.allclose(views, views[:, :, :1, :1].expand_as(views), atol=1e-5)  # still flat


@pytest.mark.parametrize(
    ("field", "p", "rgb", "changed"),
    [
        (
            "grayscale_p",
            0.2,
            (200, 40, 10),
            lambda v: (v[:, 0] - v[:, 1]).abs().amax(dim=(1, 2)) < 1e-5,
        ),
        ("solarize_p", 0.2, (200, 200, 200), lambda v: (v[:, 0, 0, 0] - 55 / 255).abs() < 1e-5),
        ("flip_p", 0.5, None, lambda v: v[:, 0, 0, 0] > v[:, 0, 0, -1]),
        (
            "blur_p",
            0.3,
            None,
            lambda v: (v[:, 0, 4, 1:] - v[:, 0, 4, :-1]).abs().max(dim=1).values < 0.99,
        ),
    ],
)
def test_step_rates_measured_on_known_images(field, p, rgb, changed):
    """How often a step changes an image it visibly changes: flat colours for grey and solarise,
    a left-to-right ramp for flips, a black/white edge for blur."""
    n = 6000
    # sigma >= 0.5 px, so every blur visibly softens the edge (0.1 px changes no 8-bit level)
    recipe = ViewRecipe((8, 8), (1.0, 1.0), crop_ratio=(1.0, 1.0), blur_sigma=(0.5, 2.0), **{field: p})
    if rgb is not None:
        images, sizes = flat(rgb, n, size=8)
    elif field == "flip_p":
        ramp = torch.arange(8, dtype=torch.uint8).mul(30).view(1, 1, 1, 8)
        images, sizes = ramp.expand(n, 3, 8, 8).contiguous(), torch.tensor([[8, 8]] * n)
    else:
        edge = torch.zeros(1, 3, 8, 8, dtype=torch.uint8)
        edge[..., 4:] = 255
        images, sizes = edge.expand(n, 3, 8, 8).contiguous(), torch.tensor([[8, 8]] * n)
    views = unnormalise(make_views(images, sizes, torch.arange(n), [recipe])[0])
    assert_rate(changed(views), p, field)


def test_a_fixed_seed_gives_identical_views_whatever_the_batch(cifar10_images):
    images = [image_to_uint8(image) for image in cifar10_images["image"][:6]]
    recipes = method_view_recipes("byol", 48)
    canvas, sizes = stack_images(images)
    seeds = torch.tensor([5, 6, 7, 8, 9, 10])
    first, again = (
        make_views(canvas, sizes, seeds, recipes),
        make_views(canvas, sizes, seeds, recipes),
    )
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    # the same row in another batch, at another position, with other neighbours
    others, other_sizes = stack_images([images[4], images[2]])
    moved = make_views(others, other_sizes, torch.tensor([9, 7]), recipes)
    for view, moved_view in zip(first, moved, strict=True):
        assert torch.allclose(view[4], moved_view[0], atol=1e-5) and torch.allclose(view[2], moved_view[1], atol=1e-5)
    # another epoch (other seeds): other views; two views of a row differ
    assert not torch.allclose(make_views(canvas, sizes, seeds + 100, recipes)[0], first[0])
    assert not torch.allclose(first[0], first[1])


def test_grey_batches_match_their_rgb_copies(fashion_mnist_slice):
    grey = [image_to_uint8(image) for image in fashion_mnist_slice["image"][:8]]
    assert grey[0].shape == (1, 28, 28)
    canvas, sizes = stack_images(grey)
    recipes = rela_view_recipes(32)
    from_grey = make_views(canvas, sizes, torch.arange(8), recipes)
    from_rgb = make_views(canvas.expand(-1, 3, -1, -1).contiguous(), sizes, torch.arange(8), recipes)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(from_grey, from_rgb, strict=True))
    assert from_grey[0].shape == (8, 3, 32, 32) and torch.isfinite(from_grey[0]).all()


def test_views_for_batch_replaces_the_images_and_moves_the_rest():
    batch = {
        "images": torch.zeros(2, 3, 10, 12, dtype=torch.uint8),
        "image_sizes": torch.tensor([[10, 12], [9, 7]]),
        "row_seeds": torch.tensor([1, 2]),
        "labels": torch.tensor([3, 4]),
        "targets": torch.ones(2, 5),
    }
    out = views_for_batch(batch, method_view_recipes("dino", 32, {"local_crops": 2}), "cpu", channels_last=True)
    assert sorted(out) == ["labels", "targets", "views"]
    assert [tuple(v.shape) for v in out["views"]] == [(2, 3, 32, 32)] * 2 + [(2, 3, 14, 14)] * 2
    assert out["views"][0].is_contiguous(memory_format=torch.channels_last)
    with pytest.raises(KeyError, match="row_seeds"):
        views_for_batch({"images": batch["images"], "image_sizes": batch["image_sizes"]}, rela_view_recipes(8))


def test_bad_batches_get_clear_errors():
    sizes, seeds, recipes = torch.tensor([[4, 4]]), torch.tensor([0]), rela_view_recipes(8)
    with pytest.raises(ValueError, match="uint8 batch"):
        make_views(torch.zeros(1, 3, 4, 4), sizes, seeds, recipes)
    with pytest.raises(ValueError, match="image_sizes"):
        make_views(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), torch.tensor([4, 4]), seeds, recipes)
    with pytest.raises(ValueError, match="at least one"):
        make_views(torch.zeros(1, 3, 4, 4, dtype=torch.uint8), sizes, seeds, [])
