"""The prior contract: a frozen image encoder with its preprocessing (ReLA-D).

ReLA (Sun, Jiang & Lin, NeurIPS 2024, arXiv:2405.14669) pairs every training image with a fixed
target made by a *prior model*: "any publicly available pretrained encoder" (a CIFAR-10 ResNet-18,
a CLIP image tower, even a randomly initialised network). Whatever library it comes from, a prior
is a :class:`Prior`: the model in eval mode, its deterministic preprocessing (a PIL transform and
a JSON description of it) and ``embed``, one pooled embedding per image. The loaders that build
it live next to this file, one per library (:mod:`rela_hf.priors.registry`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import PIL.Image
import torch
from timm.data.transforms import MaybeToTensor
from torch import nn
from torchvision import transforms as T

from rela_hf.preprocessing import IMAGENET_MEAN, IMAGENET_STD, eval_transform, official_data_config

__all__ = [
    "LoadedPrior",
    "Prior",
    "PriorError",
    "PriorNotFoundError",
    "PriorRequest",
    "PriorSource",
    "UnsupportedPriorError",
    "official_preprocessing",
    "official_transform",
]


class PriorError(Exception):
    """Base class of the errors raised while loading a prior."""


class PriorNotFoundError(PriorError, FileNotFoundError):
    """The prior (folder, Hub repository, revision or weights) could not be found or reached."""


class UnsupportedPriorError(PriorError, ValueError):
    """The model exists but cannot serve as an image prior (text model, remote code, ...)."""


def official_transform(image_size: int) -> Callable[[PIL.Image.Image], torch.Tensor]:
    """The official ReLA code's input for every prior (``boostor/rela.py::add_reladata``).

    Shorter side resized to ``image_size`` (bilinear), centre crop, ImageNet mean/std:
    :func:`rela_hf.preprocessing.official_data_config` through timm's ``create_transform``.
    """
    return eval_transform(official_data_config(image_size))


def official_preprocessing(image_size: int) -> dict[str, Any]:
    """The JSON description of :func:`official_transform` that a :class:`Prior` records."""
    return {
        "mode": "official",
        "input_size": [3, image_size, image_size],
        "resize": image_size,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
    }


@dataclass(eq=False)
class Prior:
    """A frozen image encoder with its preprocessing: the ReLA-D prior (arXiv:2405.14669, §ReLA-D).

    Attributes:
        model: the network, in eval mode with ``requires_grad`` off.
        name: the id or path as given to :func:`load_prior`.
        revision: the resolved 40-hex commit sha when the weights came from the Hub, else ``None``
            (local folders, timm weights from plain URLs, ``pretrained=False``).
        library: ``"timm"`` or ``"transformers"``.
        embed_dim: width of the embedding returned by :meth:`embed`.
        preprocessing: JSON-able description of :attr:`transform` (``mode``, ``input_size``,
            ``interpolation``, ``mean``, ``std``, and crop/resize settings).
        transform: one PIL image (any mode) -> normalised CHW float tensor.
        device: where :attr:`model` lives and batches are sent.
        embed_fn: ``(model, batch) -> [B, D]``; the pooling rule of the library.
        channels_last: run the forward pass in channels-last memory format (faster for CNNs on
            GPU and on recent CPUs).
        pretrained: ``False`` for randomly initialised weights (``load_prior(...,
            pretrained=False)``), which the targets' record and cards then say.
    """

    model: nn.Module = field(repr=False)
    name: str
    revision: str | None
    library: str
    embed_dim: int
    preprocessing: dict[str, Any]
    transform: Callable[[PIL.Image.Image], torch.Tensor] = field(repr=False)
    device: torch.device
    embed_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] = field(repr=False)
    channels_last: bool = False
    pretrained: bool = True
    _fingerprint: str | None = field(default=None, init=False, repr=False)

    def preprocess(self, images: Sequence[PIL.Image.Image]) -> torch.Tensor:
        """Apply :attr:`transform` to each image and stack: ``[B, 3, H, W]`` float32 on CPU.

        A ``Compose`` that ends in ``ToTensor, Normalize`` (every timm transform, so every
        ``"prior"`` and ``"official"`` preprocessing of a timm prior) runs its PIL steps per image
        and the last two once for the whole batch: the same element-wise float operations, so the
        same bits, without a dozen small tensor operations per image.
        """
        if len(images) == 0:
            raise ValueError("Prior.preprocess got no images; pass a non-empty sequence of PIL images.")
        split = _split_tensor_steps(self.transform)
        if split is None:
            return torch.stack([self.transform(image) for image in images])
        pil_steps, to_tensor, normalize = split
        prepared = []
        for image in images:
            for step in pil_steps:
                image = step(image)
            prepared.append(image)
        return _to_normalized_batch(prepared, to_tensor, normalize)

    def embed(self, images: Sequence[PIL.Image.Image] | torch.Tensor) -> torch.Tensor:
        """Embed a batch in one forward pass (eval mode, no gradients).

        Args:
            images: PIL images (any mode; converted to RGB and preprocessed by :attr:`transform`)
                or an already preprocessed ``[B, 3, H, W]`` tensor.

        Returns:
            ``[B, embed_dim]`` float32 tensor on the CPU (an ordinary tensor, usable in autograd).
        """
        if isinstance(images, torch.Tensor):
            if images.ndim != 4:
                raise ValueError(
                    f"Prior.embed expects a preprocessed batch [B, C, H, W]; got shape "
                    f"{tuple(images.shape)}. Pass PIL images to have them preprocessed."
                )
            batch = images
        else:
            batch = self.preprocess(images)
        batch = batch.to(self.device, dtype=self._input_dtype(), non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            embeddings = self.embed_fn(self.model, batch).float().cpu()
        # clone outside inference mode: inference tensors cannot be saved for a later backward
        return embeddings.clone()

    def _input_dtype(self) -> torch.dtype:
        """The model's floating dtype: float32 unless it was cast (e.g. bf16 on a GPU)."""
        for parameter in self.model.parameters():
            if parameter.is_floating_point():
                return parameter.dtype
        return torch.float32

    def to(self, device: str | torch.device) -> Prior:
        """Move the model to ``device`` (in place) and return ``self``."""
        self.device = torch.device(device)
        self.model.to(self.device)
        return self

    @property
    def fingerprint(self) -> str:
        """A stable hash identifying the targets this prior produces (for ``Dataset.map``'s
        ``new_fingerprint``): name, revision, library, preprocessing and width, plus a hash of
        the weights when no Hub revision pins them (local folders, random initialisation)."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            identity = {
                "name": self.name,
                "revision": self.revision,
                "library": self.library,
                "embed_dim": self.embed_dim,
                "preprocessing": self.preprocessing,
                "embed_fn": repr(self.embed_fn),
            }
            digest.update(json.dumps(identity, sort_keys=True, default=str).encode())
            if self.revision is None:
                for key, tensor in self.model.state_dict().items():
                    digest.update(key.encode())
                    flat = tensor.detach().reshape(-1).contiguous().cpu()
                    digest.update(flat.view(torch.uint8).numpy().tobytes())
            self._fingerprint = digest.hexdigest()[:32]
        return self._fingerprint


def _split_tensor_steps(
    transform: Callable[[PIL.Image.Image], torch.Tensor],
) -> tuple[list[Callable[[Any], Any]], Callable[[Any], torch.Tensor], T.Normalize] | None:
    """``(PIL steps, to-tensor step, Normalize)`` of a ``Compose([..., ToTensor, Normalize])``.

    Exact types only (torchvision's ``ToTensor`` or timm's ``MaybeToTensor``, torchvision's
    ``Normalize``): a subclass may do something else, and then every image goes through
    ``transform`` whole.
    """
    steps = getattr(transform, "transforms", None)
    if type(transform) is not T.Compose or not isinstance(steps, list) or len(steps) < 2:
        return None
    to_tensor, normalize = steps[-2], steps[-1]
    if type(to_tensor) not in (T.ToTensor, MaybeToTensor) or type(normalize) is not T.Normalize:
        return None
    return steps[:-2], to_tensor, normalize


def _to_normalized_batch(
    images: list[Any], to_tensor: Callable[[Any], torch.Tensor], normalize: T.Normalize
) -> torch.Tensor:
    """``normalize(stack(to_tensor(image)))`` computed once for the batch.

    ``to_tensor`` turns 8-bit ``L``/``RGB`` pixels ``p`` into ``float(p) / 255`` (channels first)
    and ``Normalize`` computes ``(x - mean[c]) / std[c]``: element-wise, exactly rounded float
    operations, so doing them on the stacked ``[B, H, W, C]`` pixels gives the bits of doing them
    image by image. Anything else (other modes, tensors, unequal sizes) takes the per-image path.
    """
    batchable = (
        all(isinstance(image, PIL.Image.Image) and image.mode in ("L", "RGB") for image in images)
        and len({(image.mode, image.size) for image in images}) == 1
    )
    if not batchable:
        return normalize(torch.stack([to_tensor(image) for image in images]))
    pixels = torch.from_numpy(np.stack([np.asarray(image) for image in images]))
    if pixels.ndim == 3:  # mode L: [B, H, W] -> [B, H, W, 1]
        pixels = pixels.unsqueeze(-1)
    batch = pixels.permute(0, 3, 1, 2).contiguous().to(torch.get_default_dtype()).div(255)
    return normalize(batch)


# ---------------------------------------------------------------------------------------------
# what a loader is given and returns (rela_hf.priors.registry)
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PriorSource:
    """Where a prior comes from, once located (:func:`rela_hf.priors.sources.locate_prior`).

    Attributes:
        library: the loader that reads it (``"timm"``, ``"transformers"``, ...).
        location: what that library's loader receives (a timm name, a folder, a repo id).
        revision: the resolved Hub commit sha, when the prior lives on the Hub.
        config: the parsed ``config.json``, when there is one.
    """

    library: str
    location: str
    revision: str | None
    config: dict[str, Any] | None


@dataclass(frozen=True)
class PriorRequest:
    """The options of :func:`rela_hf.priors.load_prior` that a loader acts on."""

    source: PriorSource
    preprocessing: str  # "prior" | "official"
    image_size: int | None
    pretrained: bool
    device: torch.device
    trust_remote_code: bool
    model_kwargs: dict[str, Any]


@dataclass(frozen=True)
class LoadedPrior:
    """What a loader returns; :func:`rela_hf.priors.load_prior` makes the :class:`Prior` of it."""

    model: nn.Module
    revision: str | None
    preprocessing: dict[str, Any]
    transform: Callable[[PIL.Image.Image], torch.Tensor]
    embed_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor]
