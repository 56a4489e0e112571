"""Batched views on the training device: the twins of the PIL views, per-sample random.

The PIL views (:mod:`rela_hf.views`) augment one image at a time in DataLoader workers; on a GPU
that CPU work, not the model, bounds the step. Here the workers only decode and stack 8-bit
images, and the device makes every view of the batch at once with per-image random parameters
drawn from the same distributions as the PIL pipelines (torchvision's RandomResizedCrop with its
10 tries, flip, ColorJitter in a per-image random order, grayscale, Gaussian blur, solarisation,
normalisation). Pure torch and torchvision, so it runs (and is tested) on the CPU too.

- ``recipe.py``: :class:`ViewRecipe`, read from any method's PIL pipeline
  (:func:`method_view_recipes`, :func:`rela_view_recipes`, :func:`recipe_from_pipeline`);
- ``sampling.py``: per-row seeded uniforms -> per-image parameters;
- ``color.py``, ``spatial.py``: the batched transforms;
- ``pipeline.py``: :func:`make_views` and :func:`views_for_batch`, the device part;
- ``batching.py``: the host part, :class:`ImageRowsDataset` + :class:`ImageCollator`;
- ``decode.py``: :func:`decode_batch`, decoding on the device (nvJPEG) from undecoded columns.

A training loop uses it in three places::

    recipes = {"rela": rela_view_recipes(size), "ssl": method_view_recipes(method, size, options)}
    data = ImageRowsDataset(train, target_column=..., label_column=..., seed=seed)
    loader = DataLoader(data, batch_size=..., sampler=..., collate_fn=ImageCollator(),
                        pin_memory=True)
    ...
    data.set_epoch(epoch)                        # where ViewDataset.set_epoch was called
    for batch in loader:
        batch = views_for_batch(batch, recipes[phase], accelerator.device, channels_last=...)
        training_step(..., batch, ...)           # batch["views"] as before

Each row's views depend only on ``sample_seed(seed, epoch, row)``, as with ``ViewDataset``, so a
resumed run repeats them whatever the process count or batch split (the numbers differ from the
PIL views': the same distributions, not the same draws).

Examples:
    >>> import torch
    >>> recipes = method_view_recipes("simclr", 32)
    >>> batch = {"images": torch.zeros(2, 3, 40, 40, dtype=torch.uint8),
    ...          "image_sizes": torch.tensor([[40, 40], [30, 40]]),
    ...          "row_seeds": torch.tensor([7, 8])}
    >>> [view.shape for view in views_for_batch(batch, recipes)["views"]]
    [torch.Size([2, 3, 32, 32]), torch.Size([2, 3, 32, 32])]
"""

from rela_hf.gpu_views.batching import (
    ImageCollator,
    ImageRowsDataset,
    encoded_bytes,
    image_to_uint8,
    lossless_short_side,
    stack_images,
)
from rela_hf.gpu_views.decode import decode_batch, decode_images
from rela_hf.gpu_views.pipeline import apply_recipe, make_views, views_for_batch
from rela_hf.gpu_views.recipe import (
    ViewRecipe,
    method_view_recipes,
    recipe_from_pipeline,
    rela_view_recipes,
)
from rela_hf.gpu_views.sampling import (
    UNIFORMS_PER_VIEW,
    ViewParams,
    row_uniforms,
    sample_view_params,
)

__all__ = [
    "UNIFORMS_PER_VIEW",
    "ImageCollator",
    "ImageRowsDataset",
    "ViewParams",
    "ViewRecipe",
    "apply_recipe",
    "decode_batch",
    "decode_images",
    "encoded_bytes",
    "image_to_uint8",
    "lossless_short_side",
    "make_views",
    "method_view_recipes",
    "recipe_from_pipeline",
    "rela_view_recipes",
    "row_uniforms",
    "sample_view_params",
    "stack_images",
    "views_for_batch",
]
