"""Constants shared across rela_hf modules (one place, so they never drift apart)."""

from __future__ import annotations

# ImageNet channel statistics (RGB, for inputs scaled to [0, 1]). The official ReLA code
# normalises every prior's input and every student view with these (LINs-lab/ReLA,
# arXiv:2405.14669); they are also timm's and torchvision's ``IMAGENET_DEFAULT_MEAN/STD``.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
