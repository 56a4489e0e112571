"""(a) ReLA-D throughput: ``add_rela_targets`` against a raw timm inference loop, same images.

ReLA (arXiv:2405.14669) computes each training image's target once with a prior; the paper's
ImageNet-1k conversion took about 15 minutes on one RTX 4090. Here a ResNet-50 prior (randomly
initialised: no ImageNet weights reach the GPU machine; the cost is the same) at 224 px embeds
distinct crops of real ImageNet-val photos, three ways, interleaved:

- ``add_rela_targets``: the library, from JPEG bytes in a ``datasets.Dataset`` (decoding, the
  prior's preprocessing, the forward pass, the embeddings column, the whitening fit and pass);
- the raw loop: timm's eval transform + ``forward_features``/``forward_head`` over the same images
  already decoded, written here: the floor any pipeline pays on one process;
- forward only: preprocessed batches already on the device, cycled: the device's ceiling.

The projection for ImageNet-1k's 1,281,167 images is the library's rate, linear (the whitening's
eigendecomposition is a fixed cost of seconds, counted per image here).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import datasets
import PIL.Image
import timm.data
import torch
from torch import nn

from gpu_check_parts.assets import imagenet_photos, photo_crops
from gpu_check_parts.measure import synchronize
from gpu_check_parts.profiles import IMAGENET_TRAIN_IMAGES, TargetsSizes
from rela_hf.priors import Prior, load_prior
from rela_hf.targets import add_rela_targets

__all__ = ["run_targets"]


def decoded_images(dataset: datasets.Dataset) -> list[PIL.Image.Image]:
    """Every image decoded now, outside any timing (the raw loop's input)."""
    images = list(dataset["image"])
    for image in images:
        image.load()
    return images


def raw_timm_loop(
    model: nn.Module,
    transform: Callable,
    images: list[PIL.Image.Image],
    *,
    batch_size: int,
    device: torch.device,
    channels_last: bool,
) -> torch.Tensor:
    """Pooled pre-logits of every image: timm's eval transform, then the forward pass."""
    dtype = next(model.parameters()).dtype
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            pixels = torch.stack([transform(image) for image in images[start : start + batch_size]])
            pixels = pixels.to(device, dtype=dtype, non_blocking=True)
            if channels_last:
                pixels = pixels.contiguous(memory_format=torch.channels_last)
            features = model.forward_head(model.forward_features(pixels), pre_logits=True)
            outputs.append(features.float().cpu())
    return torch.cat(outputs)


def forward_only(model: nn.Module, batches: list[torch.Tensor], num_images: int) -> None:
    """Forward passes over ``num_images`` images, cycling a few batches already on the device
    (preprocessing every image again would only repeat the raw loop's CPU work)."""
    done, index = 0, 0
    with torch.inference_mode():
        while done < num_images:
            pixels = batches[index % len(batches)][: num_images - done]
            model.forward_head(model.forward_features(pixels), pre_logits=True)
            done, index = done + len(pixels), index + 1


def _timed(fn: Callable[[], Any], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def _variants(
    prior: Prior, dataset: datasets.Dataset, sizes: TargetsSizes, device: torch.device
) -> tuple[dict[str, Callable[[], Any]], float]:
    """The three ways to embed the images, and how far the raw loop and the prior agree."""
    model = prior.model
    data_config = timm.data.resolve_model_data_config(model)
    data_config["input_size"] = (3, sizes.image_size, sizes.image_size)
    transform = timm.data.create_transform(**data_config, is_training=False)
    images = decoded_images(dataset)
    first = images[: sizes.batch_size]
    raw_first = raw_timm_loop(
        model,
        transform,
        first,
        batch_size=sizes.batch_size,
        device=device,
        channels_last=prior.channels_last,
    )
    agreement = float((raw_first - prior.embed(first)).abs().max())
    dtype = next(model.parameters()).dtype
    memory = torch.channels_last if prior.channels_last else torch.contiguous_format
    batches = [
        prior.preprocess(images[start : start + sizes.batch_size])
        .to(device, dtype=dtype)
        .contiguous(memory_format=memory)
        for start in range(0, min(len(images), 2 * sizes.batch_size), sizes.batch_size)
    ]
    variants = {
        "add_rela_targets": lambda: add_rela_targets(dataset, prior, k=sizes.k, batch_size=sizes.batch_size),
        "raw_timm_loop": lambda: raw_timm_loop(
            model,
            transform,
            images,
            batch_size=sizes.batch_size,
            device=device,
            channels_last=prior.channels_last,
        ),
        "forward_only": lambda: forward_only(model, batches, len(images)),
    }
    return variants, agreement


def run_targets(sizes: TargetsSizes, device: torch.device, deadline: float) -> dict[str, Any]:
    """Images/s of the three ways (median of interleaved repeats), the ratio, the projection."""
    datasets.disable_progress_bars()
    dataset = photo_crops(imagenet_photos(), sizes.num_images, sizes.crop_sides, seed=0)
    prior = load_prior(
        sizes.prior,
        pretrained=False,
        image_size=sizes.image_size,
        device=device,
        channels_last=True,
    )
    variants, agreement = _variants(prior, dataset, sizes, device)
    names = list(variants)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for repeat in range(sizes.repeats):
        order = names if repeat % 2 == 0 else names[::-1]  # who goes first alternates
        for name in order:
            if seconds[name] and time.perf_counter() + 1.2 * seconds[name][-1] > deadline:
                continue  # keep the repeats that fit before the deadline
            seconds[name].append(_timed(variants[name], device))
    rates = {name: sizes.num_images / statistics.median(times) for name, times in seconds.items()}
    library, raw = rates["add_rela_targets"], rates["raw_timm_loop"]
    return {
        "prior": f"{sizes.prior} (random init)",
        "image_size": sizes.image_size,
        "preprocessing": prior.preprocessing,
        "num_images": sizes.num_images,
        "k": sizes.k,
        "batch_size": sizes.batch_size,
        "repeats": {name: len(times) for name, times in seconds.items()},
        "images_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "seconds": {name: [round(t, 3) for t in times] for name, times in seconds.items()},
        "ratio_to_raw_loop": round(library / raw, 3),
        "forward_only_to_raw_loop": round(rates["forward_only"] / raw, 2),
        "raw_loop_vs_prior_max_abs_diff": agreement,
        "projected_imagenet_seconds": {name: round(IMAGENET_TRAIN_IMAGES / rate, 1) for name, rate in rates.items()},
        "projected_for_images": IMAGENET_TRAIN_IMAGES,
    }
