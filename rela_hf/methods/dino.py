"""DINO (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers",
arXiv:2104.14294) as a ReLA method, configured as in the official ReLA code's ``methods/dino.py``.

- Head: ``Linear(feat, 2048) -> BatchNorm1d -> GELU -> Linear(2048, 256)`` (the official code's
  two-layer MLP "for cifar10"), the bottleneck L2-normalised, then a weight-normalised
  ``Linear(256, 2048, bias=False)`` whose norm is fixed at 1 (:class:`DINOHead`).
- Teacher: an EMA copy of the backbone and a *freshly initialised* head (the official code builds
  the teacher head anew rather than copying the student's), momentum 0.99.
- Loss (:class:`DINOLoss`): for every pair of a teacher global view ``t`` and a *different* student
  view ``s``, the cross-entropy ``-sum_k P_t[k] log P_s[k]`` between the teacher's centred,
  sharpened distribution ``P_t = softmax((g_t - c) / tau_t)`` and the student's
  ``P_s = softmax(g_s / tau_s)``, averaged over pairs and images; then the center moves,
  ``c <- m c + (1 - m) mean(g_t)`` over the batch (and the processes). Temperatures: student 0.1;
  teacher linearly warmed up from ``warmup_teacher_temp`` to ``teacher_temp`` over
  ``warmup_teacher_temp_steps`` optimizer steps (the paper: 0.04 -> 0.07 over 30 epochs; the
  official ReLA code: 0.04 throughout, the default here); center momentum 0.9.
- Views: two global crops (scale 0.4-1; blur 1.0 / 0.1, solarisation 0 / 0.2, as lightly's
  ``DINOTransform``) and ``local_crops`` local crops (scale 0.05-0.4, 96/224 of the image size,
  blur 0.5). The official code uses no local crops and, at 32 px, no blur.
- ``freeze_last_layer_steps``: the last layer gets no update during the first N optimizer steps
  of the run (DINO's ``freeze_last_layer``, which the paper uses for one epoch to stabilise the
  start; 0 here, as the official ReLA code), through :meth:`DINO.before_optimizer_step`.

Examples:
    >>> import torch, timm
    >>> backbone = timm.create_model("test_resnet", num_classes=0)
    >>> dino = DINO(backbone, {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16})
    >>> views = [torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)]
    >>> loss = dino(MethodBatch(features=[backbone(v) for v in views], views=views, step=0))
    >>> loss.backward()
    >>> dino.update_teacher(backbone, momentum=0.99)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from rela_hf.distributed import all_reduce_mean_
from rela_hf.methods.base import Method, MethodBatch, ViewTransform
from rela_hf.methods.registry import register_method
from rela_hf.momentum import make_target_network, update_momentum
from rela_hf.views import BYOL_COLOR_JITTER, augmentation, blur_by_default

__all__ = ["DINO", "DINO_CITATION", "DINOHead", "DINOLoss", "DINOOptions", "dino_view_transforms"]

DINO_CITATION = """@inproceedings{caron2021emerging,
  title     = {Emerging Properties in Self-Supervised Vision Transformers},
  author    = {Caron, Mathilde and Touvron, Hugo and Misra, Ishan and J{\\'e}gou, Herv{\\'e} and Mairal, Julien and Bojanowski, Piotr and Joulin, Armand},
  booktitle = {International Conference on Computer Vision (ICCV)},
  year      = {2021},
  eprint    = {2104.14294},
  archivePrefix = {arXiv}
}"""

GLOBAL_CROP_SCALE = (0.4, 1.0)
LOCAL_CROP_SCALE = (0.05, 0.4)
LOCAL_TO_GLOBAL_SIZE = 96 / 224  # DINO's local crops: 96 px next to 224 px global crops
GLOBAL_BLUR_P = (1.0, 0.1)
GLOBAL_SOLARIZE_P = (0.0, 0.2)
LOCAL_BLUR_P = 0.5
NUM_GLOBAL_VIEWS = 2


@dataclass(frozen=True)
class DINOOptions:
    """DINO's hyperparameters (the official ReLA code's by default)."""

    hidden_dim: int = 2048
    bottleneck_dim: int = 256
    out_dim: int = 2048
    teacher_temp: float = 0.04
    warmup_teacher_temp: float = 0.04
    warmup_teacher_temp_steps: int = 0
    student_temp: float = 0.1
    center_momentum: float = 0.9
    local_crops: int = 0
    local_crop_size: int | None = None  # default round(96/224 x image size)
    gaussian_blur: bool | None = None  # None: blur only above 32 px (the official CIFAR setting)
    freeze_last_layer_steps: int = 0  # the last layer stays fixed for the first N optimizer steps

    def __post_init__(self) -> None:
        for name in ("hidden_dim", "bottleneck_dim", "out_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"DINO: {name} must be >= 1, got {getattr(self, name)}.")
        for name in ("teacher_temp", "warmup_teacher_temp", "student_temp"):
            if getattr(self, name) <= 0:
                raise ValueError(f"DINO: {name} must be > 0, got {getattr(self, name)}.")
        if not 0.0 <= self.center_momentum <= 1.0:
            raise ValueError(f"DINO: center_momentum must be in [0, 1], got {self.center_momentum}.")
        if min(self.local_crops, self.warmup_teacher_temp_steps, self.freeze_last_layer_steps) < 0:
            raise ValueError("DINO: local_crops, warmup_teacher_temp_steps and freeze_last_layer_steps must be >= 0.")


class DINOHead(nn.Module):
    """MLP -> L2 normalisation -> weight-normalised linear layer of fixed norm 1.

    Args:
        in_dim: backbone feature width.
        hidden_dim, bottleneck_dim, out_dim: 2048, 256, 2048 in the official ReLA code.
    """

    def __init__(self, in_dim: int, hidden_dim: int = 2048, bottleneck_dim: int = 256, out_dim: int = 2048) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim, bias=False),  # the batch norm makes a bias redundant
            nn.BatchNorm1d(hidden_dim),
            nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.last_layer = weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        norm = self.last_layer.parametrizations.weight.original0
        norm.data.fill_(1.0)
        norm.requires_grad_(False)  # DINO's norm_last_layer: only the directions are learned

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_dim)`` features -> ``(B, out_dim)`` logits."""
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


class DINOLoss(nn.Module):
    """DINO's cross-entropy between teacher and student distributions, with centering.

    The center is a buffer, so a checkpoint of the model restores it exactly. It moves on every
    call (every micro-batch), by the batch mean of the teacher outputs averaged over processes.
    """

    center: Tensor

    def __init__(
        self,
        out_dim: int,
        *,
        teacher_temp: float = 0.04,
        warmup_teacher_temp: float = 0.04,
        warmup_teacher_temp_steps: int = 0,
        student_temp: float = 0.1,
        center_momentum: float = 0.9,
    ) -> None:
        super().__init__()
        self.teacher_temp, self.warmup_teacher_temp = teacher_temp, warmup_teacher_temp
        self.warmup_teacher_temp_steps = warmup_teacher_temp_steps
        self.student_temp, self.center_momentum = student_temp, center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def teacher_temperature(self, step: int) -> float:
        """``warmup + (final - warmup) * step / warmup_steps`` during the warm-up, then ``final``."""
        if step >= self.warmup_teacher_temp_steps:
            return self.teacher_temp
        progress = step / self.warmup_teacher_temp_steps
        return self.warmup_teacher_temp + (self.teacher_temp - self.warmup_teacher_temp) * progress

    def forward(self, teacher_out: Sequence[Tensor], student_out: Sequence[Tensor], *, step: int = 0) -> Tensor:
        """Loss over all (teacher view ``t``, student view ``s``) pairs with ``s != t``.

        Args:
            teacher_out: teacher logits of the global views, ``(B, out_dim)`` each.
            student_out: student logits of every view (globals first), ``(B, out_dim)`` each.
            step: the optimizer step (teacher temperature warm-up).
        """
        # at least float32 (fp16 autocast cannot underflow the softmaxes), float64 stays float64
        dtype = torch.promote_types(student_out[0].dtype, torch.float32)
        teacher = torch.stack(list(teacher_out)).to(dtype)  # (T, B, D)
        student = torch.stack(list(student_out)).to(dtype)  # (S, B, D)
        center = self.center.to(dtype)
        teacher_probs = F.softmax((teacher - center) / self.teacher_temperature(step), dim=-1)
        student_log_probs = F.log_softmax(student / self.student_temp, dim=-1)
        cross_entropy = -torch.einsum("tbd,sbd->ts", teacher_probs, student_log_probs)  # summed over b
        same_view = torch.eye(*cross_entropy.shape, dtype=torch.bool, device=cross_entropy.device)
        pairs = cross_entropy.numel() - int(same_view.sum())
        loss = cross_entropy.masked_fill(same_view, 0.0).sum() / (pairs * teacher.shape[1])
        self._update_center(teacher)
        return loss

    @torch.no_grad()
    def _update_center(self, teacher: Tensor) -> None:
        batch_center = teacher.mean(dim=(0, 1)).unsqueeze(0).to(self.center.dtype)
        all_reduce_mean_(batch_center)  # every process moves its center identically
        self.center.mul_(self.center_momentum).add_(batch_center, alpha=1.0 - self.center_momentum)


def dino_view_transforms(image_size: int, options: DINOOptions | None = None) -> list[ViewTransform]:
    """Two global crops, then ``options.local_crops`` local crops (see the module docstring)."""
    options = options or DINOOptions()
    blur = blur_by_default(image_size, options.gaussian_blur)
    views = [
        augmentation(
            image_size,
            crop_scale=GLOBAL_CROP_SCALE,
            color_jitter=BYOL_COLOR_JITTER,
            blur_p=GLOBAL_BLUR_P[i] if blur else 0.0,
            solarize_p=GLOBAL_SOLARIZE_P[i],
        )
        for i in range(NUM_GLOBAL_VIEWS)
    ]
    local_size = options.local_crop_size or max(1, round(image_size * LOCAL_TO_GLOBAL_SIZE))
    views += [
        augmentation(
            local_size,
            crop_scale=LOCAL_CROP_SCALE,
            color_jitter=BYOL_COLOR_JITTER,
            blur_p=LOCAL_BLUR_P if blur else 0.0,
        )
        for _ in range(options.local_crops)
    ]
    return views


@register_method
class DINO(Method):
    """DINO's student head, teacher (EMA backbone + fresh head), loss and views."""

    name = "dino"
    title = "DINO"
    paper = "arXiv:2104.14294"
    citation = DINO_CITATION
    loss_name = "dino_loss"
    Options = DINOOptions
    has_teacher = True

    def __init__(
        self, backbone: nn.Module, options: DINOOptions | dict | None = None, *, num_classes: int | None = None
    ) -> None:
        super().__init__(backbone, options, num_classes=num_classes)
        opts = self.options
        self.head = DINOHead(self.feature_dim, opts.hidden_dim, opts.bottleneck_dim, opts.out_dim)
        self.teacher_backbone = make_target_network(backbone)
        self.teacher_head = DINOHead(self.feature_dim, opts.hidden_dim, opts.bottleneck_dim, opts.out_dim)
        self.teacher_head.requires_grad_(False)
        self.criterion = DINOLoss(
            opts.out_dim,
            teacher_temp=opts.teacher_temp,
            warmup_teacher_temp=opts.warmup_teacher_temp,
            warmup_teacher_temp_steps=opts.warmup_teacher_temp_steps,
            student_temp=opts.student_temp,
            center_momentum=opts.center_momentum,
        )

    def forward(self, batch: MethodBatch) -> Tensor:
        features, views = batch.features, batch.views
        student = [self.head(feature) for feature in features]
        with torch.no_grad():
            teacher = [self.teacher_head(self.teacher_backbone(view)) for view in views[:NUM_GLOBAL_VIEWS]]
        return self.criterion(teacher, student, step=batch.step)

    def before_optimizer_step(self, step: int) -> None:
        """DINO's ``freeze_last_layer``: no update of the last layer during the first steps."""
        if step < self.options.freeze_last_layer_steps:
            for parameter in self.head.last_layer.parameters():
                parameter.grad = None  # AdamW skips parameters without a gradient

    @torch.no_grad()
    def update_teacher(self, backbone: nn.Module, momentum: float) -> None:
        update_momentum(backbone, self.teacher_backbone, momentum)
        update_momentum(self.head, self.teacher_head, momentum)

    @classmethod
    def view_transforms(cls, image_size: int, options: DINOOptions | dict | None = None) -> list[ViewTransform]:
        return dino_view_transforms(image_size, cls.options_from(options))
