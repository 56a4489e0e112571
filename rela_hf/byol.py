"""BYOL building blocks: the projector and predictor heads and the BYOL loss.

BYOL (Grill et al., "Bootstrap Your Own Latent", arXiv:2006.07733) trains an *online* network
(backbone, projector, predictor) to predict the projection that a slowly moving *target* network
(an exponential moving average of the online backbone and projector) gives for another view of
the same image. This module holds the parts, configured as in the official ReLA code
(arXiv:2405.14669), which builds BYOL from lightly:

- projector ``Linear(feat, 2 feat) -> BatchNorm1d -> ReLU -> Linear(2 feat, 256)``, predictor
  ``Linear(256, hidden) -> BatchNorm1d -> ReLU -> Linear(hidden, 256)`` (the BYOL paper uses
  4096 hidden units for both);
- symmetric loss ``0.5 * [NCS(p1, sg(z2)) + NCS(p2, sg(z1))]``;
- EMA of the parameters with a constant momentum 0.99 (the BYOL paper: cosine 0.996 -> 1): the
  teacher's parts live in :mod:`rela_hf.momentum`, shared with every method that has a teacher.

It knows nothing of ReLA; the training loop composes both.

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

import torch  # noqa: F401  (the examples in the docstrings use it)
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "BYOL_OUT_DIM",
    "BYOL_PAPER_HIDDEN_DIM",
    "ProjectionHead",
    "byol_loss",
    "byol_predictor",
    "byol_projector",
    "negative_cosine_similarity",
]

BYOL_OUT_DIM = 256
"""Width of the projection/prediction space (BYOL paper, official ReLA code, lightly)."""

BYOL_PAPER_HIDDEN_DIM = 4096
"""Hidden width of the BYOL paper's projector and predictor (ImageNet, ResNet-50)."""


class ProjectionHead(nn.Module):
    """Two-layer MLP ``Linear -> BatchNorm1d -> ReLU -> Linear`` of BYOL's projector/predictor.

    The first linear layer has no bias: the BatchNorm that follows removes it anyway (as in
    lightly's ``BYOLProjectionHead``, used by the official ReLA code).

    Args:
        in_dim: Input width (backbone feature width for the projector, ``out_dim`` of the
            projector for the predictor).
        hidden_dim: Hidden width.
        out_dim: Output width.

    Examples:
        >>> head = ProjectionHead(512, 1024, 256)
        >>> head(torch.randn(4, 512)).shape
        torch.Size([4, 256])
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int) -> None:
        super().__init__()
        for name, value in (("in_dim", in_dim), ("hidden_dim", hidden_dim), ("out_dim", out_dim)):
            if value < 1:
                raise ValueError(f"ProjectionHead: {name} must be a positive width, got {value}.")
        self.in_dim, self.hidden_dim, self.out_dim = in_dim, hidden_dim, out_dim
        self.fc1 = nn.Linear(in_dim, hidden_dim, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden_dim)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        """Map ``(B, in_dim)`` features to ``(B, out_dim)``."""
        out: Tensor = self.fc2(self.act(self.bn1(self.fc1(x))))
        return out

    def extra_repr(self) -> str:
        return f"{self.in_dim} -> {self.hidden_dim} -> {self.out_dim}"


def byol_projector(
    feature_dim: int, hidden_dim: int | None = None, out_dim: int = BYOL_OUT_DIM
) -> ProjectionHead:
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


def byol_predictor(
    out_dim: int = BYOL_OUT_DIM, hidden_dim: int = BYOL_PAPER_HIDDEN_DIM
) -> ProjectionHead:
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
        raise ValueError(
            "negative_cosine_similarity: shapes differ, "
            f"p {tuple(p.shape)} vs z {tuple(z.shape)}."
        )
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
