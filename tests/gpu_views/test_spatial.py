"""rela_hf.gpu_views.spatial: crops, flips and blurs against torchvision and PIL."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter
from torchvision.transforms.v2 import functional as TF

from rela_hf.gpu_views.spatial import gaussian_blur, horizontal_flip, resized_crop


def to_float(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).float() / 255


@pytest.fixture(scope="module")
def photos(cifar10_images):
    pil = [cifar10_images["image"][i] for i in (1, 4, 7, 12)]
    return pil, torch.stack([to_float(image) for image in pil])


def test_enlarging_crops_are_bilinear_resizes(photos):
    """Enlarging a box equals torchvision's antialiased bilinear resized_crop of the same box."""
    _, batch = photos
    boxes = torch.tensor(
        [
            [0.0, 0.0, 32.0, 32.0],
            [3.0, 5.0, 27.0, 30.0],
            [10.0, 2.0, 22.0, 31.0],
            [0.0, 16.0, 16.0, 32.0],
        ]
    )
    ours = resized_crop(batch, boxes, (40, 40))
    for i, (left, top, right, bottom) in enumerate(boxes.int().tolist()):
        reference = TF.resized_crop(batch[i], top, left, bottom - top, right - left, [40, 40], antialias=True)
        assert (ours[i] - reference).abs().max() < 1e-5, i


@pytest.mark.parametrize(
    "box",
    [
        (0, 0, 512, 512),
        (10, 20, 400, 300),
        (50, 60, 250, 300),
        (100, 100, 160, 150),
        (7, 3, 500, 12),
    ],
)
def test_crops_are_pils_antialiased_bilinear_resize(imagenet_photo, box):
    """Shrinking (BYOL's 224 px views of a 512 px photo) and enlarging both give PIL's resize of
    the crop: within 8-bit rounding of PIL, and torchvision's antialiased resize to float error."""
    image = to_float(imagenet_photo)
    left, top, right, bottom = box
    ours = resized_crop(image[None], torch.tensor([box], dtype=torch.float32), (224, 224))[0]
    pil = to_float(TF.resized_crop(imagenet_photo, top, left, bottom - top, right - left, [224, 224]))
    levels = (ours - pil).abs() * 255
    assert levels.mean() < 0.5 and torch.quantile(levels.flatten(), 0.99) < 1.5
    tensor = TF.resized_crop(image, top, left, bottom - top, right - left, [224, 224], antialias=True)
    assert (ours - tensor).abs().max() < 1e-4


def test_padding_outside_the_box_is_never_read(photos):
    """A box in a replicate-padded canvas gives the crop of the image alone."""
    _, batch = photos
    canvas = torch.nn.functional.pad(batch, (0, 20, 0, 9), mode="replicate")
    boxes = torch.tensor(
        [
            [0.0, 0.0, 32.0, 32.0],
            [8.0, 8.0, 32.0, 32.0],
            [30.0, 0.0, 32.0, 32.0],
            [0.0, 31.0, 32.0, 32.0],
        ]
    )
    assert torch.allclose(resized_crop(canvas, boxes, (24, 24)), resized_crop(batch, boxes, (24, 24)), atol=1e-6)


def test_flip_only_where_asked(photos):
    _, batch = photos
    flipped = horizontal_flip(batch, torch.tensor([True, False, False, True]))
    assert torch.equal(flipped[0], batch[0].flip(-1)) and torch.equal(flipped[1], batch[1])
    assert torch.equal(flipped[3], batch[3].flip(-1))


def test_blur_matches_pil_gaussian_blur(imagenet_photo):
    """Per-image sigmas agree with PIL's GaussianBlur(radius=sigma), the PIL views' blur."""
    photo = imagenet_photo.resize((96, 96))
    sigmas = [0.1, 0.7, 1.3, 2.0]
    batch = to_float(photo)[None].repeat(4, 1, 1, 1)
    ours = gaussian_blur(batch, torch.tensor(sigmas), max_sigma=2.0)
    for i, sigma in enumerate(sigmas):
        reference = to_float(photo.filter(ImageFilter.GaussianBlur(radius=sigma)))
        levels = (ours[i] - reference).abs() * 255
        assert levels.mean() < 1.0 and torch.quantile(levels.flatten(), 0.99) < 4.0, sigma


def test_blur_sigma_zero_is_the_identity_and_flat_stays_flat(photos):
    _, batch = photos
    out = gaussian_blur(batch, torch.tensor([0.0, 1.5, 0.0, 2.0]), max_sigma=2.0)
    assert torch.equal(out[0], batch[0]) and torch.equal(out[2], batch[2])
    assert not torch.allclose(out[1], batch[1])
    flat = torch.full((2, 3, 12, 12), 0.3)
    assert torch.allclose(gaussian_blur(flat, torch.tensor([0.5, 2.0]), 2.0), flat, atol=1e-6)
    # larger sigma, smoother image: less high-frequency energy
    energy = (out[:, :, :, 1:] - out[:, :, :, :-1]).abs().mean(dim=(1, 2, 3))
    assert energy[3] < energy[1] < energy[0]


def test_box_shape_is_checked(photos):
    _, batch = photos
    with pytest.raises(ValueError, match="boxes of shape"):
        resized_crop(batch, torch.zeros(3, 4), (8, 8))
