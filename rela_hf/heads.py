"""The two-layer MLP head that BYOL's projector and predictor and SimCLR's projector share.

``Linear -> BatchNorm1d -> ReLU -> Linear``, as lightly's ``BYOLProjectionHead`` and
``SimCLRProjectionHead`` (BYOL: Grill et al., arXiv:2006.07733; SimCLR: Chen et al.,
arXiv:2002.05709, with the batch norm of its later versions).

Examples:
    >>> import torch
    >>> ProjectionHead(512, 1024, 256)(torch.randn(4, 512)).shape
    torch.Size([4, 256])
"""

from __future__ import annotations

import torch  # noqa: F401  (the examples in the docstrings use it)
from torch import Tensor, nn

__all__ = ["ProjectionHead"]


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
