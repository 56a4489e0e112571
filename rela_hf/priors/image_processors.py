"""A transformers image processor as a prior's preprocessing (the ``"prior"`` mode).

The processor is the prior's own evaluation preprocessing (resize, crop, rescale, normalise);
``image_size`` resizes it keeping its resize-to-crop ratio, and the :class:`~rela_hf.priors.Prior`
records a JSON description of what it does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import PIL.Image
import torch
from transformers import AutoImageProcessor

from rela_hf.preprocessing import ConvertImageMode
from rela_hf.priors.prior import (
    PriorSource,
    UnsupportedPriorError,
    official_preprocessing,
    official_transform,
)

__all__ = ["ImageProcessorTransform", "transformers_preprocessing"]


class ImageProcessorTransform:
    """One PIL image -> normalised CHW tensor through a transformers image processor."""

    def __init__(self, processor: Any) -> None:
        self.processor = processor

    def __call__(self, image: PIL.Image.Image) -> torch.Tensor:
        pixel_values = self.processor(images=ConvertImageMode("RGB")(image), return_tensors="pt")["pixel_values"]
        return pixel_values[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({type(self.processor).__name__})"


def _size_dict(value: Any) -> dict[str, Any]:
    """A processor's ``size``/``crop_size`` (a dict, or transformers 5's ``SizeDict``) as a dict."""
    return dict(value) if value else {}


def _processor_input_size(processor: Any) -> tuple[int, int]:
    """(height, width) that a transformers image processor produces."""
    size, crop = (
        _size_dict(getattr(processor, "size", None)),
        _size_dict(getattr(processor, "crop_size", None)),
    )
    if getattr(processor, "do_center_crop", False) and "height" in crop:
        return int(crop["height"]), int(crop["width"])
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    if "shortest_edge" in size:
        return int(size["shortest_edge"]), int(size["shortest_edge"])
    data_config = getattr(processor, "data_config", None)  # TimmWrapperImageProcessor
    if data_config:
        return int(data_config["input_size"][1]), int(data_config["input_size"][2])
    raise UnsupportedPriorError(
        f"Cannot tell the output size of {type(processor).__name__} (size={size!r}); "
        "use preprocessing='official' with an explicit image_size."
    )


def _resize_processor(processor: Any, image_size: int) -> None:
    """Make a transformers image processor produce ``image_size`` squares, keeping its
    resize-to-crop ratio (e.g. DINOv2's 256 -> 224 becomes 73 -> 64 at 64 px)."""
    size, crop = (
        _size_dict(getattr(processor, "size", None)),
        _size_dict(getattr(processor, "crop_size", None)),
    )
    cropping = bool(getattr(processor, "do_center_crop", False)) and "height" in crop
    if cropping and "shortest_edge" in size:
        ratio = size["shortest_edge"] / crop["height"]
        processor.size = {"shortest_edge": round(image_size * ratio)}
        processor.crop_size = {"height": image_size, "width": image_size}
    elif cropping and "height" in size and "width" in size:
        ratio_h, ratio_w = size["height"] / crop["height"], size["width"] / crop["width"]
        processor.size = {
            "height": round(image_size * ratio_h),
            "width": round(image_size * ratio_w),
        }
        processor.crop_size = {"height": image_size, "width": image_size}
    elif "shortest_edge" in size:  # e.g. ConvNeXt: resize to shortest_edge / crop_pct, then crop
        processor.size = {"shortest_edge": image_size}
    elif "height" in size and "width" in size:
        processor.size = {"height": image_size, "width": image_size}
    else:
        raise UnsupportedPriorError(
            f"image_size cannot be applied to {type(processor).__name__} (size={size!r}); use "
            "preprocessing='official', or no image_size to keep the prior's own size."
        )


def transformers_preprocessing(
    source: PriorSource,
    config: Any,
    preprocessing: str,
    image_size: int | None,
    trust_remote_code: bool,
) -> tuple[dict[str, Any], Callable[[PIL.Image.Image], torch.Tensor]]:
    try:
        processor = AutoImageProcessor.from_pretrained(
            source.location, revision=source.revision, trust_remote_code=trust_remote_code
        )
    except (OSError, ValueError) as err:
        if preprocessing == "official" and image_size:
            processor = None
        elif preprocessing == "official":
            size = getattr(config, "image_size", None)
            if not isinstance(size, int):
                raise UnsupportedPriorError(
                    f"{source.location!r} has no image processor and no int image_size in its "
                    "config: pass image_size=..."
                ) from err
            return official_preprocessing(size), official_transform(size)
        else:
            raise UnsupportedPriorError(
                f"{source.location!r} has no image processor (preprocessor_config.json), so "
                "its own preprocessing is unknown. Save one with the model "
                "(processor.save_pretrained), or use preprocessing='official' (ImageNet "
                "mean/std, resize + centre crop)."
            ) from err
    if preprocessing == "official":
        size = image_size or _processor_input_size(processor)[0]
        return official_preprocessing(size), official_transform(size)
    if image_size:
        _resize_processor(processor, image_size)
    height, width = _processor_input_size(processor)
    resample = getattr(processor, "resample", None)
    description = {
        "mode": "prior",
        "input_size": [3, height, width],
        "interpolation": (PIL.Image.Resampling(resample).name.lower() if isinstance(resample, int) else str(resample)),
        "resize": _size_dict(getattr(processor, "size", None)),
        "crop_size": (
            _size_dict(getattr(processor, "crop_size", None)) if getattr(processor, "do_center_crop", False) else None
        ),
        "crop_pct": getattr(processor, "crop_pct", None),
        "rescale_factor": getattr(processor, "rescale_factor", None),
        "mean": _jsonable(getattr(processor, "image_mean", None)),
        "std": _jsonable(getattr(processor, "image_std", None)),
        "image_processor": type(processor).__name__,
    }
    data_config = getattr(processor, "data_config", None)  # TimmWrapperImageProcessor
    if data_config:
        description.update(
            interpolation=data_config.get("interpolation"),
            crop_pct=data_config.get("crop_pct"),
            mean=_jsonable(data_config.get("mean")),
            std=_jsonable(data_config.get("std")),
        )
    return description, ImageProcessorTransform(processor)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
