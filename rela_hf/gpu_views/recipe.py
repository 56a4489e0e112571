"""A view pipeline's numbers as data: the recipe the batched (GPU) views apply.

Every view in rela-hf is a ``transforms.v2.Compose`` built by :mod:`rela_hf.views` (the ReLA view,
BYOL's asymmetric pair, DINO's global and local crops, SimCLR's views). :func:`recipe_from_pipeline`
reads such a pipeline into a :class:`ViewRecipe` (crop size and scale, flip, jitter, grayscale,
blur, solarisation, normalisation), so every method's views get a batched twin without a second
copy of their parameters: a method that changes its pipeline changes its twin, and a transform
that has no twin is an error that names it.

Examples:
    >>> from rela_hf.views import rela_view_transform
    >>> recipe = recipe_from_pipeline(rela_view_transform(32))
    >>> recipe.size, recipe.crop_scale, recipe.color_jitter_p, recipe.blur_p
    ((32, 32), (0.5, 1.0), 0.8, 0.0)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torchvision.transforms import v2

from rela_hf.methods import method_class
from rela_hf.preprocessing import IMAGENET_MEAN, IMAGENET_STD, ConvertImageMode
from rela_hf.views import BLUR_SIGMA, RandomGaussianBlur, rela_view_transform

__all__ = ["ViewRecipe", "method_view_recipes", "recipe_from_pipeline", "rela_view_recipes"]

#: The twin applies its steps in this order (the order of rela_hf.views.augmentation).
STAGES = ("crop", "flip", "color_jitter", "grayscale", "blur", "solarize", "normalize")
_UINT8_MAX = 255.0


@dataclass(frozen=True)
class ViewRecipe:
    """The parameters of one augmentation pipeline (one view), in the units of float images.

    Factor ranges are those torchvision's ``ColorJitter`` stores (``(1 - b, 1 + b)`` for a
    strength ``b``, ``(-h, h)`` for hue); ``None`` leaves that adjustment out.
    ``solarize_threshold`` is a fraction of the value range: the PIL pipelines invert 8-bit
    pixels ``>= 128``, i.e. ``128 / 255`` here.
    """

    size: tuple[int, int]
    crop_scale: tuple[float, float]
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.0
    color_jitter_p: float = 0.0
    brightness: tuple[float, float] | None = None
    contrast: tuple[float, float] | None = None
    saturation: tuple[float, float] | None = None
    hue: tuple[float, float] | None = None
    grayscale_p: float = 0.0
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = BLUR_SIGMA
    solarize_p: float = 0.0
    solarize_threshold: float = 128 / _UINT8_MAX
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        if min(self.size) < 1:
            raise ValueError(f"ViewRecipe: size must be positive, got {self.size}.")
        if not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ValueError(f"ViewRecipe: need 0 < scale_min <= scale_max <= 1, got {self.crop_scale}.")
        if not 0.0 < self.crop_ratio[0] <= self.crop_ratio[1]:
            raise ValueError(f"ViewRecipe: need 0 < ratio_min <= ratio_max, got {self.crop_ratio}.")
        for name in ("flip_p", "color_jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"ViewRecipe: {name} must be in [0, 1], got {getattr(self, name)}.")
        if not 0.0 < self.blur_sigma[0] <= self.blur_sigma[1]:
            raise ValueError(f"ViewRecipe: need 0 < sigma_min <= sigma_max, got {self.blur_sigma}.")
        if len(self.mean) != len(self.std) or min(self.std) <= 0:
            raise ValueError(f"ViewRecipe: mean {self.mean} and std {self.std} must match, std > 0.")

    @property
    def jitters(self) -> bool:
        """Whether any colour adjustment can happen."""
        adjustments = (self.brightness, self.contrast, self.saturation, self.hue)
        return self.color_jitter_p > 0 and any(a is not None for a in adjustments)


def _stage_fields(transform: Any, p: float) -> tuple[str, dict[str, Any]]:
    """The stage a torchvision step belongs to and the recipe fields it sets."""
    if isinstance(transform, v2.RandomResizedCrop):
        if transform.interpolation not in ("bilinear", v2.InterpolationMode.BILINEAR):
            raise ValueError(
                f"The batched views resample bilinearly; {transform} uses "
                f"{transform.interpolation}. Build the pipeline with bilinear interpolation."
            )
        ratio = (float(transform.ratio[0]), float(transform.ratio[1]))
        scale = (float(transform.scale[0]), float(transform.scale[1]))
        return "crop", {"size": tuple(transform.size), "crop_scale": scale, "crop_ratio": ratio}
    if isinstance(transform, v2.RandomHorizontalFlip):
        return "flip", {"flip_p": p * transform.p}
    if isinstance(transform, v2.ColorJitter):
        fields = {name: getattr(transform, name) for name in ("brightness", "contrast", "saturation", "hue")}
        return "color_jitter", {"color_jitter_p": p, **fields}
    if isinstance(transform, v2.RandomGrayscale):
        return "grayscale", {"grayscale_p": p * transform.p}
    if isinstance(transform, RandomGaussianBlur):
        return "blur", {"blur_p": p * transform.p, "blur_sigma": transform.sigma}
    if isinstance(transform, v2.RandomSolarize):
        # the PIL pipelines solarise 8-bit images: a threshold above 1 is in 8-bit levels
        threshold = float(transform.threshold)
        threshold = threshold / _UINT8_MAX if threshold > 1 else threshold
        return "solarize", {"solarize_p": p * transform.p, "solarize_threshold": threshold}
    if isinstance(transform, v2.Normalize):
        return "normalize", {"mean": tuple(transform.mean), "std": tuple(transform.std)}
    raise ValueError(
        f"The batched views have no twin for {type(transform).__name__} ({transform}); they "
        f"implement {', '.join(STAGES)}. Use the PIL views for this pipeline."
    )


def _flat_steps(pipeline: v2.Compose) -> list[tuple[Any, float]]:
    """``(transform, probability)`` pairs, ``RandomApply`` unpacked, format steps dropped."""
    steps: list[tuple[Any, float]] = []
    for transform in pipeline.transforms:
        if isinstance(transform, v2.RandomApply):
            steps += [(inner, float(transform.p)) for inner in transform.transforms]
        elif not isinstance(transform, (ConvertImageMode, v2.ToImage, v2.ToDtype)):
            steps.append((transform, 1.0))
    return steps


def recipe_from_pipeline(pipeline: v2.Compose) -> ViewRecipe:
    """The :class:`ViewRecipe` of a view pipeline built by :mod:`rela_hf.views`.

    Args:
        pipeline: ``Compose([ConvertImageMode, RandomResizedCrop, ...flip, jitter, grayscale,
            blur, solarize..., ToImage, ToDtype, Normalize])`` as ``augmentation`` builds it.

    Raises:
        ValueError: a step without a batched twin, a step out of the twin's order, a step
            twice, or no ``RandomResizedCrop`` (the twin needs the output size).
    """
    if not isinstance(pipeline, v2.Compose):
        raise TypeError(f"recipe_from_pipeline takes a transforms.v2.Compose, got {type(pipeline).__name__}.")
    fields: dict[str, Any] = {}
    last_stage = -1
    for transform, p in _flat_steps(pipeline):
        stage, values = _stage_fields(transform, p)
        position = STAGES.index(stage)
        if position <= last_stage:
            raise ValueError(
                f"{type(transform).__name__} comes after a later step (or twice) in {pipeline}; "
                f"the batched views apply {' -> '.join(STAGES)} once each."
            )
        last_stage = position
        fields.update(values)
    if "size" not in fields:
        raise ValueError(f"The pipeline has no RandomResizedCrop, so no output size: {pipeline}.")
    return ViewRecipe(**fields)


def rela_view_recipes(image_size: int) -> list[ViewRecipe]:
    """The two ReLA views (the same pipeline drawn twice, as ``TwoViews(rela, rela)``)."""
    recipe = recipe_from_pipeline(rela_view_transform(image_size))
    return [recipe, recipe]


def method_view_recipes(method: str, image_size: int, options: Any = None) -> list[ViewRecipe]:
    """One recipe per view of a registered SSL method (``method.view_transforms``, in order)."""
    pipelines: Sequence[Any] = method_class(method).view_transforms(image_size, options)
    return [recipe_from_pipeline(pipeline) for pipeline in pipelines]
