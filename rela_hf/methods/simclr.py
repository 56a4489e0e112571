"""SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
arXiv:2002.05709) as a ReLA method: the contrastive representative.

- Projection head: two layers, ``Linear(feat, feat) -> BatchNorm1d -> ReLU -> Linear(feat, 128)``
  (the paper's hidden width equals the feature width; the batch norm is lightly's and
  solo-learn's).
- Loss: NT-Xent (:func:`nt_xent_loss`) with temperature 0.5: for the ``2N`` projections of ``N``
  images, ``l(i, j) = -log(exp(sim(z_i, z_j) / t) / sum_{k != i} exp(sim(z_i, z_k) / t))`` with
  cosine similarity, averaged over both orders of every positive pair. Under several processes
  the negatives come from every process (the paper's global batch), gathered with gradients.
- Views: the same pipeline twice: crop scale 0.08-1, flip, ColorJitter(0.8, 0.8, 0.8, 0.2) with
  p=0.8, grayscale 0.2, Gaussian blur p=0.5 (off at 32 px and below), no solarisation.
- No teacher.

Examples:
    >>> import torch
    >>> z1, z2 = torch.randn(8, 128), torch.randn(8, 128)
    >>> bool(nt_xent_loss(z1, z2) > 0)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rela_hf.distributed import gather_with_grad
from rela_hf.heads import ProjectionHead
from rela_hf.methods.base import Method, MethodBatch, ViewTransform
from rela_hf.methods.registry import register_method
from rela_hf.views import augmentation, blur_by_default

__all__ = ["SIMCLR_CITATION", "SimCLR", "SimCLROptions", "nt_xent_loss", "simclr_view_transform"]

SIMCLR_CITATION = """@inproceedings{chen2020simple,
  title     = {A Simple Framework for Contrastive Learning of Visual Representations},
  author    = {Chen, Ting and Kornblith, Simon and Norouzi, Mohammad and Hinton, Geoffrey},
  booktitle = {International Conference on Machine Learning (ICML)},
  year      = {2020},
  eprint    = {2002.05709},
  archivePrefix = {arXiv}
}"""

SIMCLR_CROP_SCALE = (0.08, 1.0)
SIMCLR_COLOR_JITTER = (0.8, 0.8, 0.8, 0.2)
SIMCLR_BLUR_P = 0.5


@dataclass(frozen=True)
class SimCLROptions:
    """SimCLR's hyperparameters."""

    temperature: float = 0.5
    projection_dim: int = 128
    hidden_dim: int | None = None  # default: the backbone's feature width
    gather_distributed: bool = True  # negatives from every process
    gaussian_blur: bool | None = None  # None: blur only above 32 px

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"SimCLR: temperature must be > 0, got {self.temperature}.")
        if self.projection_dim < 1 or (self.hidden_dim is not None and self.hidden_dim < 1):
            raise ValueError("SimCLR: projection_dim and hidden_dim must be >= 1.")


def nt_xent_loss(z1: Tensor, z2: Tensor, temperature: float = 0.5, *, gather_distributed: bool = False) -> Tensor:
    """NT-Xent of SimCLR for positive pairs ``(z1[i], z2[i])`` (see the module docstring).

    Args:
        z1, z2: projections of the two views, ``(N, D)``.
        temperature: ``t``.
        gather_distributed: take negatives from every process (all processes must call it).

    Returns:
        The scalar loss, averaged over the ``2N`` anchors of this process.
    """
    if z1.shape != z2.shape or z1.ndim != 2:
        raise ValueError(f"nt_xent_loss: z1 and z2 must both be (N, D), got {tuple(z1.shape)} and {tuple(z2.shape)}.")
    dtype = torch.promote_types(z1.dtype, torch.float32)  # fp16 -> float32, float64 stays
    a, b = F.normalize(z1.to(dtype), dim=1), F.normalize(z2.to(dtype), dim=1)
    if gather_distributed:
        all_a, offset = gather_with_grad(a)
        all_b, _ = gather_with_grad(b)
    else:
        all_a, all_b, offset = a, b, 0
    n = a.shape[0]
    positives = torch.arange(n, device=a.device) + offset
    self_pair = F.one_hot(positives, all_a.shape[0]).bool()
    # anchor a_i: positive b_i, negatives every other a and b; anchor b_i likewise
    logits_a = torch.cat([a @ all_b.T, (a @ all_a.T).masked_fill(self_pair, float("-inf"))], dim=1)
    logits_b = torch.cat([b @ all_a.T, (b @ all_b.T).masked_fill(self_pair, float("-inf"))], dim=1)
    return 0.5 * (
        F.cross_entropy(logits_a / temperature, positives) + F.cross_entropy(logits_b / temperature, positives)
    )


def simclr_view_transform(image_size: int, options: SimCLROptions | None = None) -> ViewTransform:
    """SimCLR's view pipeline (the same one for both views)."""
    options = options or SimCLROptions()
    blur = blur_by_default(image_size, options.gaussian_blur)
    return augmentation(
        image_size,
        crop_scale=SIMCLR_CROP_SCALE,
        color_jitter=SIMCLR_COLOR_JITTER,
        blur_p=SIMCLR_BLUR_P if blur else 0.0,
    )


@register_method
class SimCLR(Method):
    """SimCLR's projection head, NT-Xent loss and views; no teacher."""

    name = "simclr"
    title = "SimCLR"
    paper = "arXiv:2002.05709"
    citation = SIMCLR_CITATION
    loss_name = "simclr_loss"
    Options = SimCLROptions

    def __init__(
        self, backbone: nn.Module, options: SimCLROptions | dict | None = None, *, num_classes: int | None = None
    ) -> None:
        super().__init__(backbone, options, num_classes=num_classes)
        opts = self.options
        self.projector = ProjectionHead(self.feature_dim, opts.hidden_dim or self.feature_dim, opts.projection_dim)

    def forward(self, batch: MethodBatch) -> Tensor:
        features = batch.features
        z1, z2 = self.projector(features[0]), self.projector(features[1])
        return nt_xent_loss(z1, z2, self.options.temperature, gather_distributed=self.options.gather_distributed)

    @classmethod
    def view_transforms(cls, image_size: int, options: SimCLROptions | dict | None = None) -> list[ViewTransform]:
        view = simclr_view_transform(image_size, cls.options_from(options))
        return [view, view]
