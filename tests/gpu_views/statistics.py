"""Small statistics for the distribution tests of the batched views (no scipy here)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

KS_ALPHA_COEFFICIENT = 1.949
"""c(alpha) of the two-sample Kolmogorov-Smirnov test at alpha = 0.001."""


def ks_statistic(a: Tensor, b: Tensor) -> float:
    """Two-sample Kolmogorov-Smirnov statistic: the largest gap between the empirical CDFs."""
    a, b = a.double().flatten().sort().values, b.double().flatten().sort().values
    points = torch.cat([a, b])
    cdf_a = torch.searchsorted(a, points, right=True).double() / len(a)
    cdf_b = torch.searchsorted(b, points, right=True).double() / len(b)
    return float((cdf_a - cdf_b).abs().max())


def ks_critical(n: int, m: int) -> float:
    """The statistic above which two samples of sizes n and m differ at alpha = 0.001."""
    return KS_ALPHA_COEFFICIENT * math.sqrt((n + m) / (n * m))


def assert_same_distribution(a: Tensor, b: Tensor, what: str) -> None:
    statistic, critical = ks_statistic(a, b), ks_critical(a.numel(), b.numel())
    assert statistic < critical, f"{what}: KS statistic {statistic:.4f} >= {critical:.4f} (alpha 0.001)"


def assert_rate(hits: Tensor, p: float, what: str, sigmas: float = 4.5) -> None:
    """A Bernoulli rate within ``sigmas`` binomial standard errors of ``p``."""
    n = hits.numel()
    rate = float(hits.double().mean())
    tolerance = sigmas * math.sqrt(max(p * (1 - p), 1e-12) / n)
    assert abs(rate - p) <= tolerance, f"{what}: rate {rate:.4f}, expected {p} +- {tolerance:.4f} (n={n})"
