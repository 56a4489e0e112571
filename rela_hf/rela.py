"""The ReLA objective: the transfer head ``W`` and the ReLA loss.

ReLA (Sun, Jiang & Lin, "Efficiency for Free: Ideal Data Are Transportable Representations",
NeurIPS 2024, arXiv:2405.14669) first trains the backbone ``f`` to map two views of an image onto a
fixed, PCA-whitened target ``y`` made by a prior model, through a linear *transfer head* ``W``:

    L_ReLA = 1/2 [ mean(1 - cos(W f(v1), y)) + mean(1 - cos(W f(v2), y)) ]

then hands over to the SSL method (:mod:`rela_hf.switch` decides when).

Examples:
    >>> import torch
    >>> head = TransferHead(512, 128)             # frozen random projection (official default)
    >>> features1, features2 = torch.randn(8, 512), torch.randn(8, 512)
    >>> loss = rela_loss(head(features1), head(features2), torch.randn(8, 128))
    >>> 0.0 <= loss.item() <= 2.0
    True
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from rela_hf._deprecation import Moved, moved_names

__all__ = ["TransferHead", "rela_loss"]


class TransferHead(nn.Linear):
    """The transfer head ``W``: backbone features ``(B, feature width)`` -> target space ``(B, k)``.

    In the official ReLA code ``W = nn.Linear(feature_dim, k)`` is never given to the optimizer:
    it stays a fixed random projection with PyTorch's default ``Linear`` initialisation, and the
    ReLA loss trains the backbone *through* it. That is the default here (``trainable=False``:
    ``requires_grad`` is off on weight and bias, yet gradients still reach the backbone). The
    paper's wording ("linear transport") suggests a learned map: ``trainable=True`` gives one.

    The weights are ordinary parameters, so they are saved in ``state_dict`` either way (a frozen
    head must be restored exactly on resume). Build optimizers from parameters with
    ``requires_grad`` so that a frozen head stays out of them, and do not call
    ``requires_grad_(True)`` on a whole model that contains a frozen head.

    Args:
        in_features: Backbone feature width.
        out_features: Target width ``k``.
        trainable: Whether ``W`` is learned (default False, as in the official code).

    Examples:
        >>> import torch
        >>> head = TransferHead(512, 128)
        >>> head.weight.requires_grad, head(torch.randn(2, 512)).shape
        (False, torch.Size([2, 128]))
    """

    def __init__(self, in_features: int, out_features: int, trainable: bool = False) -> None:
        super().__init__(in_features, out_features, bias=True)
        self.trainable = trainable
        self.requires_grad_(trainable)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, trainable={self.trainable}"


def rela_loss(pred1: Tensor, pred2: Tensor, target: Tensor) -> Tensor:
    """ReLA loss ``1/2 [mean(1 - cos(pred1, y)) + mean(1 - cos(pred2, y))]``.

    Both views of an image regress the *same* fixed target ``y`` (ReLA-D's whitened prior
    embedding). Computed in float32, so fp16 autocast cannot underflow the normalisation.

    Args:
        pred1: Transfer-head output for view 1, ``(B, k)``.
        pred2: Transfer-head output for view 2, ``(B, k)``.
        target: The targets ``y``, ``(B, k)``; treated as constants.

    Returns:
        A scalar tensor in ``[0, 2]`` (0 when both predictions point along their targets).

    Examples:
        >>> import torch
        >>> y = torch.tensor([[1.0, 0.0]])
        >>> rela_loss(torch.tensor([[3.0, 0.0]]), torch.tensor([[0.0, 1.0]]), y)
        tensor(0.5000)
    """
    for name, pred in (("pred1", pred1), ("pred2", pred2)):
        if pred.shape != target.shape:
            raise ValueError(
                f"rela_loss: {name} has shape {tuple(pred.shape)} but the targets have shape "
                f"{tuple(target.shape)}; the transfer head's out_features must equal the target "
                "width k."
            )
    y = target.detach().float()
    loss1 = (1.0 - F.cosine_similarity(pred1.float(), y, dim=-1)).mean()
    loss2 = (1.0 - F.cosine_similarity(pred2.float(), y, dim=-1)).mean()
    return 0.5 * (loss1 + loss2)


# Names that lived here in rela-hf 0.1: reading one warns (FutureWarning) and forwards to its
# new place until 0.4 (rela_hf/_deprecation.py; CHANGELOG.md lists them).
_SSL_PHASE_NOTE = (
    "the switch rules moved to rela_hf.switch; the phase after the switch is now 'ssl' "
    "(rela_hf.switch.PHASE_SSL), not 'byol', since any SSL method can follow ReLA."
)
__getattr__ = moved_names(
    __name__,
    {
        "AdaptiveSwitch": Moved("rela_hf.switch:AdaptiveSwitch", _SSL_PHASE_NOTE),
        "StaticSwitch": Moved("rela_hf.switch:StaticSwitch", _SSL_PHASE_NOTE),
        "build_switch": Moved("rela_hf.switch:build_switch", _SSL_PHASE_NOTE),
        "FAST_LOSS_DECAY": "rela_hf.switch:FAST_LOSS_DECAY",
        "FAST_LOSS_INIT": "rela_hf.switch:FAST_LOSS_INIT",
        "SLOW_LOSS_DECAY": "rela_hf.switch:SLOW_LOSS_DECAY",
        "SLOW_LOSS_INIT": "rela_hf.switch:SLOW_LOSS_INIT",
        "SWITCH_THRESHOLD": "rela_hf.switch:SWITCH_THRESHOLD",
        "PHASE_RELA": "rela_hf.switch:PHASE_RELA",
        "PHASE_BYOL": Moved("rela_hf.switch:PHASE_SSL", _SSL_PHASE_NOTE),
    },
)
