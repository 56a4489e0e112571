"""Tests of Prior.preprocess: the batched ToTensor + Normalize tail gives bitwise the pixels of the
per-image transform, on real grey and colour images, for the prior's own and the official
preprocessing; other transforms keep the per-image path."""

from __future__ import annotations

import pytest
import torch
from torchvision import transforms as T

from rela_hf.priors import load_prior


def per_image(prior, images) -> torch.Tensor:
    return torch.stack([prior.transform(image) for image in images])


@pytest.fixture(scope="module")
def mixed_images(cifar10_images, fashion_mnist_slice) -> list:
    """Real images in the modes datasets hand out: RGB, grey, RGBA, palette."""
    rgb = list(cifar10_images["image"][:6])
    return [*rgb, *fashion_mnist_slice["image"][:6], rgb[0].convert("RGBA"), rgb[1].convert("P")]


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("test_resnet", {"image_size": 37}),  # the prior's own: bicubic resize + crop at 37 px
        ("test_resnet", {"image_size": 32, "preprocessing": "official"}),
    ],
)
def test_batched_preprocess_is_bitwise_the_per_image_transform(
    name, kwargs, fashion_mnist_slice, cifar10_images, mixed_images
):
    prior = load_prior(name, pretrained=False, **kwargs)
    for images in (list(fashion_mnist_slice["image"]), list(cifar10_images["image"])):
        pixels = prior.preprocess(images)
        assert pixels.dtype == torch.float32 and pixels.shape[1:] == (
            3,
            *prior.preprocessing["input_size"][1:],
        )
        assert torch.equal(pixels, per_image(prior, images))
    # mixed modes: converted to RGB first by the transform, then batched
    assert torch.equal(prior.preprocess(mixed_images), per_image(prior, mixed_images))


def test_pretrained_prior_batched_preprocess(tmp_path, fashion_mnist_slice):
    """The PyPI EfficientNet-Lite0 (TF-Lite mean/std, bicubic, crop 0.875) at 64 px, grey images."""
    from rela_hf.convert import convert_efficientnet_lite0

    prior = load_prior(str(convert_efficientnet_lite0(tmp_path / "lite0")), image_size=64)
    images = list(fashion_mnist_slice["image"])
    assert torch.equal(prior.preprocess(images), per_image(prior, images))


class HalfNormalize(T.Normalize):
    """A Normalize subclass that does something else: must not be batched as if it were one."""

    def forward(self, tensor: torch.Tensor) -> torch.Tensor:
        return super().forward(tensor) / 2


def test_other_transforms_keep_the_per_image_path(cifar10_images):
    images = list(cifar10_images["image"][:5])
    prior = load_prior("test_resnet", pretrained=False, image_size=32)
    compose = prior.transform
    steps = compose.transforms
    prior.transform = T.Compose([*steps[:-1], HalfNormalize(steps[-1].mean, steps[-1].std)])
    halved = prior.preprocess(images)
    assert torch.equal(halved, per_image(prior, images))
    prior.transform = lambda image: compose(image)  # any callable: per image, as before
    assert torch.equal(prior.preprocess(images), per_image(prior, images))
    assert torch.equal(halved * 2, prior.preprocess(images))
    with pytest.raises(ValueError, match="got no images"):
        prior.preprocess([])
