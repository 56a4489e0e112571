"""Tests for rela_hf.evaluation.knn: the weighted kNN against a brute-force transcription."""

from __future__ import annotations

import pytest
import torch

from rela_hf.evaluation import (
    knn_accuracy,
    knn_predict,
)


def _brute_force_knn(train_x, train_y, test_x, k, temperature, num_classes):
    """The InstDisc rule written out one query at a time, as plainly as possible."""
    predictions = []
    for query in test_x:
        similarities = [torch.dot(query / query.norm(), row / row.norm()).item() for row in train_x]
        nearest = sorted(range(len(train_x)), key=lambda i: -similarities[i])[:k]
        votes = [0.0] * num_classes
        for i in nearest:
            votes[int(train_y[i])] += float(torch.exp(torch.tensor(similarities[i] / temperature)))
        predictions.append(max(range(num_classes), key=lambda c: votes[c]))
    return torch.tensor(predictions)


@pytest.mark.parametrize(
    ("k", "temperature", "chunk_size"),
    [(1, 0.1, None), (5, 0.1, 3), (20, 0.5, 7), (200, 0.1, None)],  # k=200 > 40: capped at N
)
def test_knn_matches_brute_force_reference(k, temperature, chunk_size):
    # Random features are fine here: the test is about the voting arithmetic, not content.
    generator = torch.Generator().manual_seed(k)
    train_x, test_x = torch.randn(40, 8, generator=generator), torch.randn(23, 8, generator=generator)
    train_y = torch.randint(0, 4, (40,), generator=generator)
    test_y = torch.randint(0, 4, (23,), generator=generator)
    expected = _brute_force_knn(train_x, train_y, test_x, min(k, 40), temperature, 4)
    got = knn_predict(train_x, train_y, test_x, k=k, temperature=temperature, chunk_size=chunk_size)
    assert torch.equal(got, expected)
    accuracy = knn_accuracy(train_x, train_y, test_x, test_y, k=k, temperature=temperature, chunk_size=chunk_size)
    assert accuracy == pytest.approx((expected == test_y).float().mean().item())


def test_knn_is_scale_invariant_and_counts_classes_without_test_samples():
    train_x = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    train_y = torch.tensor([0, 0, 5, 5])
    test_x = torch.tensor([[10.0, 1.0], [0.2, 3.0]])  # norms differ: cosine ignores them
    assert knn_accuracy(train_x, train_y, test_x, torch.tensor([0, 5]), k=2) == 1.0


def test_knn_rejects_bad_inputs():
    x, y = torch.randn(4, 3), torch.tensor([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        knn_predict(x, y, torch.randn(2, 5))
    with pytest.raises(ValueError, match="train_labels"):
        knn_predict(x, y[:3], x)
    with pytest.raises(TypeError, match="integer class indices"):
        knn_predict(x, y.float(), x)
    with pytest.raises(ValueError, match="num_classes=1"):
        knn_accuracy(x, y, x, y, num_classes=1)
