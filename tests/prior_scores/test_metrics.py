"""The math of the prior scores (rela_hf.prior_scores.metrics) against hand-computed values and
the properties each score must have; random matrices only where their content does not matter."""

from __future__ import annotations

import math

import pytest
import torch

from rela_hf.prior_scores.metrics import (
    cross_validated_knn_accuracy,
    effective_rank,
    knn_overlap,
    linear_cka,
    numerical_rank,
    rank_values,
    score_embeddings,
    spearman,
    target_invariance,
    view_alignment,
    view_retrieval,
)


def _random(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# --- Spearman ----------------------------------------------------------------------------------
def test_ranks_average_ties():
    assert rank_values(torch.tensor([3.0, 1.0, 3.0, 2.0])).tolist() == [3.5, 1.0, 3.5, 2.0]
    assert rank_values(torch.tensor([5.0, 5.0, 5.0])).tolist() == [2.0, 2.0, 2.0]


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [
        # no ties: 1 - 6 sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 4 / 120
        ([1, 2, 3, 4, 5], [2, 1, 4, 3, 5], 0.8),
        ([10, 20, 30, 40], [1, 2, 3, 4], 1.0),
        ([1, 2, 3, 4], [0.4, 0.3, 0.2, 0.1], -1.0),
        # ties in y (ranks 1, 2, 3.5, 5, 3.5): Pearson of the ranks = 8 / sqrt(10 * 9.5)
        ([1, 2, 3, 4, 5], [5, 6, 7, 8, 7], 8 / math.sqrt(95)),
        # monotone transforms do not matter
        ([0.1, 0.5, 0.2, 0.9], [math.exp(0.1), math.exp(0.5), math.exp(0.2), math.exp(0.9)], 1.0),
    ],
)
def test_spearman_matches_hand_computed_values(x, y, expected):
    assert spearman(torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)) == pytest.approx(
        expected
    )
    assert spearman(x, y) == pytest.approx(expected)  # plain lists too


def test_spearman_of_a_constant_is_nan_and_bad_lengths_are_refused():
    assert math.isnan(spearman([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="same length"):
        spearman([1.0, 2.0], [1.0, 2.0, 3.0])


# --- label-free scores -------------------------------------------------------------------------
def test_effective_rank_counts_the_directions_used():
    assert effective_rank(torch.eye(8) * 3) == pytest.approx(8.0, rel=1e-5)  # equal singular values
    line = torch.arange(1.0, 11.0).unsqueeze(1) * torch.ones(1, 6)  # rank one
    assert effective_rank(line) == pytest.approx(1.0, rel=1e-4)
    assert effective_rank(torch.zeros(5, 4)) == 0.0
    assert numerical_rank(_random(50, 6) @ _random(6, 20, seed=1)) == 6
    assert numerical_rank(torch.ones(10, 4)) == 0


def test_view_scores_are_perfect_for_unchanged_targets_and_low_for_unrelated_ones():
    targets = _random(200, 16)
    assert view_alignment(targets, targets) == pytest.approx(1.0)
    assert view_retrieval(targets, targets) == 1.0
    assert target_invariance(targets, targets) == pytest.approx(1.0)
    assert view_alignment(targets, -targets) == pytest.approx(-1.0)
    unrelated = _random(200, 16, seed=1)
    assert abs(view_alignment(targets, unrelated)) < 0.1
    assert view_retrieval(targets, unrelated) < 0.05
    assert target_invariance(targets, unrelated) == pytest.approx(0.0, abs=0.2)  # as far as another image
    noisy = targets + 0.5 * unrelated
    assert 0.5 < view_alignment(targets, noisy) < 1.0
    assert target_invariance(targets, noisy) == pytest.approx(1 - 0.25 / 2, abs=0.05)  # E|0.5 u|^2 / 2E|t|^2


def test_similarity_to_a_reference():
    x = _random(100, 12)
    rotation, _ = torch.linalg.qr(_random(12, 12, seed=2))
    assert linear_cka(x, 3 * x @ rotation) == pytest.approx(1.0)  # invariant to rotation and scale
    assert linear_cka(x, _random(100, 12, seed=3)) < 0.3
    assert knn_overlap(x, x, k=5) == 1.0
    assert knn_overlap(x, 2 * x, k=5) == 1.0  # cosine neighbours
    assert knn_overlap(x, _random(100, 12, seed=4), k=5) < 0.2


# --- the label score ---------------------------------------------------------------------------
def test_cross_validated_knn_accuracy_separates_clusters_and_not_noise():
    labels = torch.arange(120) % 3
    centres = 10 * torch.eye(8)[:3]
    clustered = centres[labels] + _random(120, 8).float()
    assert cross_validated_knn_accuracy(clustered, labels, k=20) == 1.0
    noise = _random(120, 8, seed=5)
    assert cross_validated_knn_accuracy(noise, labels, k=20) < 0.6
    assert cross_validated_knn_accuracy(noise, labels, k=20) == cross_validated_knn_accuracy(noise, labels, k=20)


# --- everything at once ------------------------------------------------------------------------
def test_score_embeddings_of_a_constant_prior_is_the_worst_and_does_not_fail():
    constant = torch.ones(40, 10)
    scores = score_embeddings(
        constant,
        constant.clone(),
        target_dim=8,
        pixels=_random(40, 30),
        labels=torch.arange(40) % 2,
    )
    assert scores["target_dim"] == 0 and scores["numerical_rank"] == 0
    assert scores["view_alignment"] == 0.0 and scores["target_invariance"] == 0.0
    varied = _random(40, 10)
    better = score_embeddings(varied, varied + 0.1 * _random(40, 10, seed=6), target_dim=8)
    assert better["target_dim"] == 8
    for name in ("view_alignment", "view_retrieval", "target_invariance", "effective_rank"):
        assert better[name] > scores[name], name
    assert better["knn_accuracy"] is None and better["pixel_cka"] is None  # nothing to compare with


def test_targets_are_capped_by_the_rank_and_the_sample():
    low_rank = _random(30, 3) @ _random(3, 20, seed=1)
    assert score_embeddings(low_rank, low_rank, target_dim=16)["target_dim"] == 3
    few = _random(6, 20)
    assert score_embeddings(few, few, target_dim=16)["target_dim"] == 5  # N - 1 directions around the mean
