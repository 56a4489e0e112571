"""BYOL (Grill et al., "Bootstrap Your Own Latent", arXiv:2006.07733) as a ReLA method.

An *online* network (backbone, projector, predictor) predicts the projection that a slowly moving
*target* network (an EMA of the online backbone and projector) gives for another view of the same
image. Configured as in the official ReLA code (arXiv:2405.14669), which builds BYOL from lightly:

- projector ``Linear(feat, 2 feat) -> BatchNorm1d -> ReLU -> Linear(2 feat, 256)``, predictor
  ``Linear(256, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, 256)`` (the BYOL paper uses
  4096 hidden units for both);
- symmetric loss ``0.5 * [NCS(p1, sg(z2)) + NCS(p2, sg(z1))]``;
- EMA of the parameters, momentum 0.99 (the BYOL paper: cosine 0.996 -> 1);
- two asymmetric views (:func:`rela_hf.views.byol_view_transforms`).

Examples:
    >>> import torch
    >>> from rela_hf.momentum import make_target_network, update_momentum
    >>> projector = byol_projector(feature_dim=512)           # 512 -> 1024 -> 256
    >>> predictor = byol_predictor(hidden_dim=1024)           # 256 -> 1024 -> 256
    >>> target_projector = make_target_network(projector)
    >>> h1, h2 = torch.randn(8, 512), torch.randn(8, 512)     # backbone features of two views
    >>> p1, p2 = predictor(projector(h1)), predictor(projector(h2))
    >>> with torch.no_grad():
    ...     z1, z2 = target_projector(h1), target_projector(h2)
    >>> loss = byol_loss(p1, p2, z1, z2)
    >>> loss.backward()
    >>> update_momentum(projector, target_projector, momentum=0.99)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rela_hf.heads import ProjectionHead
from rela_hf.methods.base import Method, MethodBatch, ViewTransform
from rela_hf.methods.registry import register_method
from rela_hf.momentum import make_target_network, update_momentum
from rela_hf.views import byol_view_transforms

__all__ = [
    "BYOL",
    "BYOL_CITATION",
    "BYOL_OUT_DIM",
    "BYOL_PAPER_HIDDEN_DIM",
    "BYOLOptions",
    "byol_loss",
    "byol_predictor",
    "byol_projector",
    "negative_cosine_similarity",
]

BYOL_CITATION = """@inproceedings{grill2020bootstrap,
  title     = {Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning},
  author    = {Grill, Jean-Bastien and Strub, Florian and Altch{\\'e}, Florent and Tallec, Corentin and Richemond, Pierre H. and Buchatskaya, Elena and Doersch, Carl and Pires, Bernardo Avila and Guo, Zhaohan Daniel and Azar, Mohammad Gheshlaghi and Piot, Bilal and Kavukcuoglu, Koray and Munos, R{\\'e}mi and Valko, Michal},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2020},
  eprint    = {2006.07733},
  archivePrefix = {arXiv}
}"""

BYOL_OUT_DIM = 256
"""Width of the projection/prediction space (BYOL paper, official ReLA code, lightly)."""

BYOL_PAPER_HIDDEN_DIM = 4096
"""Hidden width of the BYOL paper's projector and predictor (ImageNet, ResNet-50)."""


def byol_projector(feature_dim: int, hidden_dim: int | None = None, out_dim: int = BYOL_OUT_DIM) -> ProjectionHead:
    """BYOL projector ``feature_dim -> hidden_dim -> out_dim``.

    Args:
        feature_dim: Backbone feature width (512 for ResNet-18, 2048 for ResNet-50).
        hidden_dim: Hidden width. Default ``2 * feature_dim`` as in the official ReLA code;
            the BYOL paper uses 4096 (:data:`BYOL_PAPER_HIDDEN_DIM`).
        out_dim: Projection width, 256 in BYOL.

    Returns:
        A freshly initialised :class:`ProjectionHead`.

    Examples:
        >>> projector = byol_projector(512)
        >>> projector.hidden_dim, projector(torch.randn(4, 512)).shape
        (1024, torch.Size([4, 256]))
    """
    hidden = 2 * feature_dim if hidden_dim is None else hidden_dim
    return ProjectionHead(feature_dim, hidden, out_dim)


def byol_predictor(out_dim: int = BYOL_OUT_DIM, hidden_dim: int = BYOL_PAPER_HIDDEN_DIM) -> ProjectionHead:
    """BYOL predictor ``out_dim -> hidden_dim -> out_dim`` (it maps projections to projections).

    Args:
        out_dim: Projection width (input and output), 256 in BYOL.
        hidden_dim: Hidden width. Default 4096 as in the BYOL paper; the official ReLA code
            uses ``2 * feature_dim`` (the same hidden width as its projector), so pass
            ``hidden_dim=2 * feature_dim`` to reproduce it.

    Returns:
        A freshly initialised :class:`ProjectionHead`.

    Examples:
        >>> byol_predictor(hidden_dim=1024)(torch.randn(4, 256)).shape
        torch.Size([4, 256])
    """
    return ProjectionHead(out_dim, hidden_dim, out_dim)


def negative_cosine_similarity(p: Tensor, z: Tensor) -> Tensor:
    """Mean over the batch of ``-cos(p_i, z_i)``, the BYOL regression loss up to ``2 + 2 x``.

    The BYOL paper writes the loss as ``2 - 2 cos``; it has the same gradients up to a factor
    2 and the same minimiser. Computed in float32 so that fp16 autocast cannot underflow the
    normalisation.

    Args:
        p: Predictions ``(B, D)``.
        z: Targets ``(B, D)``; the caller decides about stop-gradient (see :func:`byol_loss`).

    Returns:
        A scalar tensor in ``[-1, 1]``.

    Examples:
        >>> negative_cosine_similarity(torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]))
        tensor(-1.)
    """
    if p.shape != z.shape:
        raise ValueError(f"negative_cosine_similarity: shapes differ, p {tuple(p.shape)} vs z {tuple(z.shape)}.")
    return -F.cosine_similarity(p.float(), z.float(), dim=-1).mean()


def byol_loss(p1: Tensor, p2: Tensor, z1: Tensor, z2: Tensor) -> Tensor:
    """Symmetrised BYOL loss ``0.5 * [NCS(p1, sg(z2)) + NCS(p2, sg(z1))]``.

    The one place where the BYOL objective is defined. ``p_i`` is the online prediction for
    view ``i``, ``z_i`` the target network's projection of view ``i``; each prediction regresses
    the *other* view's target, and the targets are detached (stop-gradient, BYOL eq. 2).
    The 0.5 average is the official ReLA code's (and lightly's CIFAR benchmark's) scaling.

    Args:
        p1: Online predictions of view 1, ``(B, D)``.
        p2: Online predictions of view 2, ``(B, D)``.
        z1: Target projections of view 1, ``(B, D)``.
        z2: Target projections of view 2, ``(B, D)``.

    Returns:
        A scalar tensor in ``[-1, 1]`` (``-1`` when every prediction matches its target).

    Examples:
        >>> p = torch.randn(4, 256, requires_grad=True)
        >>> round(byol_loss(p, p, p, p).item(), 4)
        -1.0
    """
    loss_12 = negative_cosine_similarity(p1, z2.detach())
    loss_21 = negative_cosine_similarity(p2, z1.detach())
    return 0.5 * (loss_12 + loss_21)


@dataclass(frozen=True)
class BYOLOptions:
    """BYOL's hyperparameters (the official ReLA code's by default)."""

    projection_dim: int = BYOL_OUT_DIM  # width of the projection/prediction space
    projector_hidden_dim: int | None = None  # default 2 x the backbone's feature width
    predictor_hidden_dim: int | None = None  # default the projector's hidden width


@register_method
class BYOL(Method):
    """BYOL's heads, loss, EMA target network and views (see the module docstring).

    Attributes:
        projector, predictor: the online heads.
        target_backbone, target_projector: their momentum copies (no gradients), built from the
            student's backbone and the projector *after* the online heads, so they start equal.
    """

    name = "byol"
    title = "BYOL"
    paper = "arXiv:2006.07733"
    citation = BYOL_CITATION
    loss_name = "byol_loss"
    Options = BYOLOptions
    has_teacher = True

    def __init__(
        self, backbone: nn.Module, options: BYOLOptions | dict | None = None, *, num_classes: int | None = None
    ) -> None:
        super().__init__(backbone, options, num_classes=num_classes)
        opts = self.options
        self.projector = byol_projector(self.feature_dim, opts.projector_hidden_dim, opts.projection_dim)
        self.predictor = byol_predictor(opts.projection_dim, opts.predictor_hidden_dim or self.projector.hidden_dim)
        self.target_backbone = make_target_network(backbone)
        self.target_projector = make_target_network(self.projector)

    def forward(self, batch: MethodBatch) -> Tensor:
        features, views = batch.features, batch.views
        prediction1 = self.predictor(self.projector(features[0]))
        prediction2 = self.predictor(self.projector(features[1]))
        with torch.no_grad():
            target1 = self.target_projector(self.target_backbone(views[0]))
            target2 = self.target_projector(self.target_backbone(views[1]))
        return byol_loss(prediction1, prediction2, target1, target2)

    @torch.no_grad()
    def update_teacher(self, backbone: nn.Module, momentum: float) -> None:
        update_momentum(backbone, self.target_backbone, momentum)
        update_momentum(self.projector, self.target_projector, momentum)

    @classmethod
    def view_transforms(cls, image_size: int, options: BYOLOptions | dict | None = None) -> list[ViewTransform]:
        return list(byol_view_transforms(image_size))
