"""Supervised training (cross-entropy on the dataset's labels) as a method ReLA accelerates.

ReLA's framework (Sun, Jiang & Lin, arXiv:2405.14669, its Figure 1) covers supervised as well as
self-supervised learning: the student first regresses the prior's targets, then the switch hands
over to ordinary supervised training. Here that training is a linear classifier on the backbone's
pooled features, trained with the backbone by cross-entropy (optionally label-smoothed) on one
augmented view per image: RandomResizedCrop(``crop_scale``) and a horizontal flip, the standard
ImageNet recipe's augmentation (He et al., arXiv:1512.03385), with optional colour jitter.

The method needs labels (``requires_labels``): the trainer refuses a dataset without a label
column before any compute. The classifier is saved in the checkpoints with the backbone
(``method.classifier``); the exported encoder is the backbone, as for every method.

Examples:
    >>> import timm, torch
    >>> backbone = timm.create_model("test_resnet", num_classes=0)
    >>> method = Supervised(backbone, {"label_smoothing": 0.1}, num_classes=10)
    >>> views = [torch.randn(4, 3, 32, 32)]
    >>> batch = MethodBatch(features=[backbone(views[0])], views=views, labels=torch.arange(4))
    >>> method(batch).backward()
    >>> len(method.view_transforms(32))
    1
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from rela_hf.methods.base import Method, MethodBatch, ViewTransform
from rela_hf.methods.registry import register_method
from rela_hf.views import augmentation

__all__ = ["Supervised", "SupervisedOptions"]

NO_COLOR_JITTER = (0.0, 0.0, 0.0, 0.0)


@dataclass(frozen=True)
class SupervisedOptions:
    """Supervised training's hyperparameters."""

    label_smoothing: float = 0.0
    crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop's area range
    color_jitter: tuple[float, float, float, float] = NO_COLOR_JITTER  # brightness, contrast, saturation, hue
    color_jitter_p: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "crop_scale", tuple(self.crop_scale))
        object.__setattr__(self, "color_jitter", tuple(self.color_jitter))
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"supervised: label_smoothing must be in [0, 1), got {self.label_smoothing}.")
        low, high = self.crop_scale
        if not 0.0 < low <= high <= 1.0:
            raise ValueError(f"supervised: crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}.")
        if len(self.color_jitter) != 4 or not 0.0 <= self.color_jitter_p <= 1.0:
            raise ValueError("supervised: color_jitter needs 4 values and color_jitter_p must be in [0, 1].")


@register_method
class Supervised(Method):
    """A linear classifier on the backbone's features, trained by cross-entropy on the labels."""

    name = "supervised"
    title = "Supervised"
    paper = "arXiv:1512.03385"
    citation = """@inproceedings{he2016deep,
  title     = {Deep Residual Learning for Image Recognition},
  author    = {He, Kaiming and Zhang, Xiangyu and Ren, Shaoqing and Sun, Jian},
  booktitle = {Proceedings of the IEEE Conference on Computer Vision and Pattern Recognition (CVPR)},
  year      = {2016}
}"""
    loss_name = "supervised_loss"
    Options = SupervisedOptions
    requires_labels = True
    self_supervised = False

    def __init__(
        self, backbone: nn.Module, options: SupervisedOptions | dict | None = None, *, num_classes: int | None = None
    ) -> None:
        super().__init__(backbone, options, num_classes=num_classes)
        self.classifier = nn.Linear(self.feature_dim, int(num_classes or 0))

    def forward(self, batch: MethodBatch) -> Tensor:
        if batch.labels is None:
            raise ValueError("The supervised method needs the batch's labels (a dataset with a label column).")
        logits = self.classifier(batch.features[0])
        return F.cross_entropy(logits.float(), batch.labels, label_smoothing=self.options.label_smoothing)

    @classmethod
    def view_transforms(cls, image_size: int, options: SupervisedOptions | dict | None = None) -> list[ViewTransform]:
        opts = cls.options_from(options)
        return [
            augmentation(
                image_size,
                crop_scale=opts.crop_scale,
                color_jitter=opts.color_jitter,
                color_jitter_p=opts.color_jitter_p,
                grayscale_p=0.0,
            )
        ]
