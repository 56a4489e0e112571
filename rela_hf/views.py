"""View pipelines: the ReLA views and BYOL's two asymmetric views.

Each pipeline takes one PIL image (any mode: grey and RGBA inputs are converted to RGB first)
and returns a normalised ``float32`` tensor ``(3, image_size, image_size)``. They are built from
torchvision's ``transforms.v2`` and operate on PIL images like the official ReLA code; the
parameters are module constants with their sources, and every step is a plain torchvision
transform, so the pipelines can be inspected and printed.

- ReLA views (arXiv:2405.14669, official code ``TransformReLA``): RandomResizedCrop(scale 0.5-1),
  flip, strong colour jitter, grayscale; no blur, no solarisation.
- BYOL views (arXiv:2006.07733, Table 6; lightly's ``BYOLTransform`` defaults, used by the
  official ReLA code): RandomResizedCrop(scale 0.08-1), flip, colour jitter, grayscale, Gaussian
  blur (view 1 always, view 2 with p=0.1) and solarisation (view 2 only, p=0.2). Blur is off for
  inputs of 32 px or less (lightly's and solo-learn's CIFAR setting). The blur is PIL's, as in
  lightly (hence the official code), MoCo and VISSL: about 20x faster than torchvision's
  ``GaussianBlur`` with BYOL's 23 px kernel at 224 px, which dominated the whole pipeline.

Examples:
    >>> from PIL import Image
    >>> image = Image.new("L", (40, 30))
    >>> two_views = TwoViews(*byol_view_transforms(32))
    >>> v1, v2 = two_views(image)
    >>> v1.shape, v1.dtype
    (torch.Size([3, 32, 32]), torch.float32)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image, ImageFilter
from torch import Tensor
from torchvision.transforms import v2

from rela_hf._deprecation import Moved, moved_names
from rela_hf.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ConvertImageMode

__all__ = [
    "BLUR_MAX_IMAGE_SIZE",
    "MultiView",
    "RandomGaussianBlur",
    "TwoViews",
    "augmentation",
    "blur_by_default",
    "byol_view_transforms",
    "rela_view_transform",
]

ViewTransform = Callable[[Image.Image], Tensor]

# ReLA views (official code, TransformReLA): SimCLR-strength jitter, milder crops.
RELA_CROP_SCALE = (0.5, 1.0)
RELA_COLOR_JITTER = (0.8, 0.8, 0.8, 0.2)  # brightness, contrast, saturation, hue
RELA_COLOR_JITTER_P = 0.8
RELA_GRAYSCALE_P = 0.2

# BYOL views (BYOL paper Table 6 = lightly BYOLView1Transform / BYOLView2Transform defaults).
BYOL_CROP_SCALE = (0.08, 1.0)
BYOL_COLOR_JITTER = (0.4, 0.4, 0.2, 0.1)
BYOL_COLOR_JITTER_P = 0.8
BYOL_GRAYSCALE_P = 0.2
BYOL_BLUR_P = (1.0, 0.1)  # view 1, view 2
BYOL_SOLARIZE_P = (0.0, 0.2)  # view 1, view 2
BLUR_SIGMA = (0.1, 2.0)  # in pixels, drawn uniformly per image
SOLARIZE_THRESHOLD = 128  # on 8-bit PIL images: invert pixels >= 128 (0.5 of the range)
HORIZONTAL_FLIP_P = 0.5

BLUR_MAX_IMAGE_SIZE = 32
"""With ``gaussian_blur=None``, blur is off for ``image_size <= 32`` (CIFAR-sized inputs)."""


class RandomGaussianBlur:
    """Gaussian blur with ``sigma ~ U(sigma_min, sigma_max)`` pixels, applied with probability p.

    BYOL (arXiv:2006.07733, Table 6) blurs with a 23x23 kernel at 224 px (about 10% of the
    image) and ``sigma`` uniform in [0.1, 2]. This uses PIL's ``ImageFilter.GaussianBlur``
    (its ``radius`` is the standard deviation), like lightly's ``GaussianBlur`` used by the
    official ReLA code: no kernel cutoff, which at 224 px changes nothing (a Gaussian of
    ``sigma <= 2`` lies within +-6 px, inside BYOL's +-11 px kernel), and a fraction of the cost
    of a dense 23x23 convolution. Randomness comes from torch's generator, so
    ``torch.manual_seed`` and DataLoader worker seeding make it repeatable.

    Args:
        sigma: ``(min, max)`` standard deviation in pixels.
        p: Probability of blurring an image.

    Examples:
        >>> from PIL import Image
        >>> RandomGaussianBlur(p=1.0)(Image.new("RGB", (8, 8))).size
        (8, 8)
    """

    def __init__(self, sigma: tuple[float, float] = BLUR_SIGMA, p: float = 0.5) -> None:
        if not 0.0 < sigma[0] <= sigma[1]:
            raise ValueError(f"RandomGaussianBlur: need 0 < sigma_min <= sigma_max, got {sigma}.")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"RandomGaussianBlur: p must be in [0, 1], got {p}.")
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.p = float(p)

    def __call__(self, image: Image.Image) -> Image.Image:
        if self.p < 1.0 and float(torch.rand(())) >= self.p:
            return image
        sigma = float(torch.empty(()).uniform_(*self.sigma))
        return image.filter(ImageFilter.GaussianBlur(radius=sigma))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(sigma={self.sigma}, p={self.p})"


def _check_image_size(image_size: int) -> None:
    if image_size < 1:
        raise ValueError(f"image_size must be a positive number of pixels, got {image_size}.")


def _to_normalized_tensor(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    # ToImage + ToDtype(scale=True) is v2's equivalent of ToTensor: uint8 [0, 255] -> float [0, 1]
    to_float = v2.ToDtype(torch.float32, scale=True)
    return [v2.ToImage(), to_float, v2.Normalize(list(mean), list(std))]


def rela_view_transform(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """The ReLA view: one random view of an image, used for both views during the ReLA phase.

    RandomResizedCrop(``image_size``, scale 0.5-1), horizontal flip p=0.5, ColorJitter(0.8, 0.8,
    0.8, 0.2) with p=0.8, grayscale p=0.2, to tensor, normalise. No blur, no solarisation.

    Args:
        image_size: Side of the square output (the student's input size).
        mean: Per-channel normalisation mean (ImageNet's, as in the official code).
        std: Per-channel normalisation std.

    Returns:
        A transform from a PIL image to a ``float32`` tensor ``(3, image_size, image_size)``.

    Examples:
        >>> from PIL import Image
        >>> rela_view_transform(32)(Image.new("RGB", (64, 48))).shape
        torch.Size([3, 32, 32])
    """
    _check_image_size(image_size)
    return v2.Compose(
        [
            ConvertImageMode("RGB"),
            v2.RandomResizedCrop(image_size, scale=RELA_CROP_SCALE),
            v2.RandomHorizontalFlip(p=HORIZONTAL_FLIP_P),
            v2.RandomApply([v2.ColorJitter(*RELA_COLOR_JITTER)], p=RELA_COLOR_JITTER_P),
            v2.RandomGrayscale(p=RELA_GRAYSCALE_P),
            *_to_normalized_tensor(mean, std),
        ]
    )


def augmentation(
    image_size: int,
    *,
    crop_scale: tuple[float, float],
    color_jitter: tuple[float, float, float, float],
    color_jitter_p: float = 0.8,
    grayscale_p: float = 0.2,
    blur_p: float = 0.0,
    solarize_p: float = 0.0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """The SimCLR-family augmentation every SSL method here builds its views from.

    RandomResizedCrop(``image_size``, ``crop_scale``), horizontal flip p=0.5,
    ColorJitter(``color_jitter``) with ``color_jitter_p``, grayscale, then PIL Gaussian blur
    (sigma in [0.1, 2] px) and solarisation when their probabilities are above 0, to tensor,
    normalise. BYOL's, SimCLR's and DINO's views differ only in these numbers.

    Examples:
        >>> view = augmentation(32, crop_scale=(0.08, 1.0), color_jitter=(0.4, 0.4, 0.2, 0.1))
        >>> [type(t).__name__ for t in view.transforms][1:3]
        ['RandomResizedCrop', 'RandomHorizontalFlip']
    """
    _check_image_size(image_size)
    steps: list[Callable[..., object]] = [
        ConvertImageMode("RGB"),
        v2.RandomResizedCrop(image_size, scale=crop_scale),
        v2.RandomHorizontalFlip(p=HORIZONTAL_FLIP_P),
        v2.RandomApply([v2.ColorJitter(*color_jitter)], p=color_jitter_p),
        v2.RandomGrayscale(p=grayscale_p),
    ]
    if blur_p > 0:
        steps.append(RandomGaussianBlur(sigma=BLUR_SIGMA, p=blur_p))
    if solarize_p > 0:
        steps.append(v2.RandomSolarize(threshold=SOLARIZE_THRESHOLD, p=solarize_p))
    return v2.Compose([*steps, *_to_normalized_tensor(mean, std)])


def blur_by_default(image_size: int, gaussian_blur: bool | None) -> bool:
    """``gaussian_blur``, or (``None``) blur only above 32 px, as lightly and solo-learn do for CIFAR."""
    return image_size > BLUR_MAX_IMAGE_SIZE if gaussian_blur is None else gaussian_blur


def byol_view_transforms(
    image_size: int,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    gaussian_blur: bool | None = None,
) -> tuple[v2.Compose, v2.Compose]:
    """BYOL's two asymmetric view pipelines (BYOL Table 6, lightly ``BYOLTransform`` defaults).

    Both: RandomResizedCrop(``image_size``, scale 0.08-1), horizontal flip p=0.5,
    ColorJitter(0.4, 0.4, 0.2, 0.1) with p=0.8, grayscale p=0.2, to tensor, normalise. View 1
    adds Gaussian blur with p=1.0 and no solarisation; view 2 blur with p=0.1 and solarisation
    with p=0.2. Blur sigma uniform in [0.1, 2] px (:class:`RandomGaussianBlur`).

    Args:
        image_size: Side of the square output.
        mean: Per-channel normalisation mean.
        std: Per-channel normalisation std.
        gaussian_blur: Whether the views blur at all. ``None`` (default) turns blur off for
            ``image_size <= 32``, as lightly and solo-learn do for CIFAR.

    Returns:
        ``(view1, view2)``, each from a PIL image to a ``float32`` tensor ``(3, S, S)``.

    Examples:
        >>> view1, view2 = byol_view_transforms(224)
        >>> [type(t).__name__ for t in view2.transforms][-5:-3]
        ['RandomGaussianBlur', 'RandomSolarize']
    """
    blur_p1, blur_p2 = BYOL_BLUR_P if blur_by_default(image_size, gaussian_blur) else (0.0, 0.0)
    common: dict[str, Any] = {
        "crop_scale": BYOL_CROP_SCALE,
        "color_jitter": BYOL_COLOR_JITTER,
        "color_jitter_p": BYOL_COLOR_JITTER_P,
        "grayscale_p": BYOL_GRAYSCALE_P,
        "mean": mean,
        "std": std,
    }
    view1 = augmentation(image_size, blur_p=blur_p1, solarize_p=BYOL_SOLARIZE_P[0], **common)
    view2 = augmentation(image_size, blur_p=blur_p2, solarize_p=BYOL_SOLARIZE_P[1], **common)
    return view1, view2


class MultiView:
    """Apply several view pipelines to the same image: ``image -> [t(image) for t in transforms]``.

    Args:
        transforms: one pipeline per view (e.g. a method's ``view_transforms(image_size)``).

    Examples:
        >>> from PIL import Image
        >>> views = MultiView(byol_view_transforms(16))(Image.new("RGB", (20, 20)))
        >>> len(views), views[0].shape
        (2, torch.Size([3, 16, 16]))
    """

    def __init__(self, transforms: Sequence[ViewTransform]) -> None:
        if not transforms:
            raise ValueError("MultiView needs at least one view pipeline.")
        self.transforms = list(transforms)

    def __call__(self, image: Image.Image) -> Sequence[Tensor]:
        """One tensor per view pipeline, in order (a list; :class:`TwoViews` gives a pair)."""
        return [transform(image) for transform in self.transforms]

    def __repr__(self) -> str:
        inner = ",\n".join(f"view{i + 1}={t}" for i, t in enumerate(self.transforms))
        return f"{type(self).__name__}(\n{inner}\n)"


class TwoViews(MultiView):
    """Two view pipelines on the same image: ``image -> (view1(image), view2(image))``.

    Use ``TwoViews(rela, rela)`` for the ReLA phase (the same random pipeline drawn twice) and
    ``TwoViews(*byol_view_transforms(size))`` for BYOL.

    Examples:
        >>> from PIL import Image
        >>> rela = rela_view_transform(16)
        >>> v1, v2 = TwoViews(rela, rela)(Image.new("RGB", (20, 20)))
        >>> v1.shape == v2.shape
        True
    """

    def __init__(self, view1: ViewTransform, view2: ViewTransform) -> None:
        super().__init__([view1, view2])

    def __call__(self, image: Image.Image) -> tuple[Tensor, Tensor]:
        view1, view2 = super().__call__(image)
        return view1, view2


# Names that lived here in rela-hf 0.1: reading one warns (FutureWarning) and forwards to its
# new place until 0.4 (rela_hf/_deprecation.py; CHANGELOG.md lists them).
__getattr__ = moved_names(
    __name__,
    {
        "ConvertRGB": Moved(
            "rela_hf.preprocessing:ConvertImageMode",
            "ConvertImageMode() converts to RGB like ConvertRGB() did; ConvertImageMode('L') gives grey images.",
        ),
        "eval_transform": Moved(
            "rela_hf.preprocessing:eval_transform",
            "it takes an image size or a timm data config; pass mean=, std= and crop_pct= "
            "as keywords (they were positional).",
        ),
    },
)
