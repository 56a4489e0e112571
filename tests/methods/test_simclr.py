"""SimCLR (arXiv:2002.05709): NT-Xent against a transcription of the paper's formula (values and
gradients), the projection head and the views."""

from __future__ import annotations

import math

import pytest
import torch

from rela_hf.backbones import create_backbone
from rela_hf.methods.simclr import SimCLR, nt_xent_loss, simclr_view_transform


def transcribed_nt_xent(z1: list[list[float]], z2: list[list[float]], t: float) -> float:
    """The paper's Algorithm 1, written out: the 2N samples ordered (z1[0], z2[0], z1[1], ...);
    l(i, j) = -log(exp(s_ij / t) / sum_{k != i} exp(s_ik / t)), s = cosine similarity;
    L = 1 / 2N sum_k [l(2k, 2k+1) + l(2k+1, 2k)]."""
    samples = [row for pair in zip(z1, z2, strict=True) for row in pair]

    def cos(u, v):
        return sum(a * b for a, b in zip(u, v, strict=True)) / math.sqrt(sum(a * a for a in u) * sum(b * b for b in v))

    def pair_loss(i, j):
        denominator = sum(math.exp(cos(samples[i], samples[k]) / t) for k in range(len(samples)) if k != i)
        return -math.log(math.exp(cos(samples[i], samples[j]) / t) / denominator)

    n = len(z1)
    return sum(pair_loss(2 * k, 2 * k + 1) + pair_loss(2 * k + 1, 2 * k) for k in range(n)) / (2 * n)


@pytest.mark.parametrize("temperature", [0.5, 0.1])
def test_nt_xent_matches_the_transcription_values_and_gradients(temperature):
    generator = torch.Generator().manual_seed(0)
    z1 = torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(5, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    loss = nt_xent_loss(z1, z2, temperature)
    expected = transcribed_nt_xent(z1.tolist(), z2.tolist(), temperature)
    assert loss.item() == pytest.approx(expected, rel=1e-6)  # nt_xent_loss computes in float32
    loss.backward()
    eps = 1e-6
    for tensor, which in ((z1, 0), (z2, 1)):
        for i, d in ((0, 0), (4, 2), (2, 1)):

            def at(delta, which=which, i=i, d=d):
                values = [z1.detach().tolist(), z2.detach().tolist()]
                values[which][i][d] += delta
                return transcribed_nt_xent(values[0], values[1], temperature)

            assert tensor.grad[i, d].item() == pytest.approx((at(eps) - at(-eps)) / (2 * eps), abs=1e-5)


def test_nt_xent_is_low_for_matching_views_and_checks_shapes():
    z = torch.eye(4)
    assert nt_xent_loss(z, z, 0.1).item() < nt_xent_loss(z, z.roll(1, dims=0), 0.1).item()
    with pytest.raises(ValueError, match=r"\(N, D\)"):
        nt_xent_loss(torch.zeros(3, 2), torch.zeros(4, 2))


def test_method_head_views_and_no_teacher(cifar10_images):
    backbone = create_backbone("test_resnet")
    simclr = SimCLR(backbone)
    assert simclr.projector.hidden_dim == backbone.num_features and simclr.projector.out_dim == 128
    assert not simclr.has_teacher and simclr.options.temperature == 0.5
    views = SimCLR.view_transforms(32)
    assert len(views) == 2 and views[0] is views[1]  # the same pipeline, drawn twice
    names = [type(t).__name__ for t in simclr_view_transform(64).transforms]
    assert "RandomGaussianBlur" in names and "RandomSolarize" not in names
    image = cifar10_images["image"][0]
    torch.manual_seed(0)
    assert not torch.equal(views[0](image), views[1](image))
