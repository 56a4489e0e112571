"""Weighted kNN on frozen features (InstDisc, Wu et al. 2018, arXiv:1805.01978).

Features are L2-normalised; each query takes its ``k`` most cosine-similar training samples, each
votes for its class with weight ``exp(similarity / temperature)``; k=200 and t=0.1 as in the
protocol that BYOL (arXiv:2006.07733) reproductions such as lightly and solo-learn report.

Examples:
    >>> import torch
    >>> bank = torch.tensor([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0]])
    >>> queries = torch.tensor([[2.0, 0.1], [0.1, 3.0]])
    >>> knn_predict(bank, torch.tensor([0, 0, 1]), queries, k=1).tolist()
    [0, 1]
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rela_hf.evaluation.checks import check_split, num_classes_of

__all__ = ["KNN_K", "KNN_TEMPERATURE", "knn_accuracy", "knn_predict"]

KNN_K = 200
KNN_TEMPERATURE = 0.1
# Elements of one similarity block in the chunked kNN (~64 MiB of float32).
_KNN_BLOCK_ELEMENTS = 1 << 24


@torch.no_grad()
def knn_predict(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> Tensor:
    """Weighted kNN predictions (InstDisc, arXiv:1805.01978) for each test feature.

    Features are L2-normalised; each test sample takes its ``k`` most cosine-similar training
    samples, each votes for its class with weight ``exp(similarity / temperature)``, and the
    class with the largest total wins. Test samples are processed in chunks so the similarity
    matrix never exceeds about 64 MiB (or ``chunk_size`` rows).

    Returns:
        int64 predictions ``(N_test,)`` on the features' device.
    """
    check_split(train_features, train_labels, "train")
    if test_features.ndim != 2 or test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"test_features must be (N, {train_features.shape[1]}) like train_features, got "
            f"{tuple(test_features.shape)}."
        )
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}.")
    num_classes = num_classes_of(num_classes, train_labels)
    device = train_features.device
    train = nn.functional.normalize(train_features.float(), dim=1)
    test = nn.functional.normalize(test_features.float().to(device), dim=1)
    train_labels = train_labels.to(device).long()
    k = min(k, train.shape[0])
    rows = chunk_size or max(1, _KNN_BLOCK_ELEMENTS // train.shape[0])
    predictions = []
    for start in range(0, test.shape[0], rows):
        similarity = test[start : start + rows] @ train.T  # (rows, N_train)
        top_similarity, top_index = similarity.topk(k, dim=1)
        weights = (top_similarity / temperature).exp()
        votes = torch.zeros(top_index.shape[0], num_classes, device=device)
        votes.scatter_add_(1, train_labels[top_index], weights)
        predictions.append(votes.argmax(dim=1))
    return torch.cat(predictions)


def knn_accuracy(
    train_features: Tensor,
    train_labels: Tensor,
    test_features: Tensor,
    test_labels: Tensor,
    *,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    num_classes: int | None = None,
    chunk_size: int | None = None,
) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of the weighted kNN classifier of :func:`knn_predict`.

    Args:
        train_features, train_labels: the memory bank, ``(N, D)`` and ``(N,)``.
        test_features, test_labels: the queries, ``(M, D)`` and ``(M,)``.
        k: neighbours per query (200 in the protocol; capped at ``N``).
        temperature: vote weight ``exp(cos / temperature)`` (0.1 in the protocol).
        num_classes: default ``max(label) + 1``.
        chunk_size: queries per similarity block (default: about 64 MiB per block).

    Examples:
        >>> bank = torch.tensor([[1.0, 0.0], [0.9, 0.2], [0.0, 1.0]])
        >>> bank_labels = torch.tensor([0, 0, 1])
        >>> queries, query_labels = torch.tensor([[2.0, 0.1], [0.1, 3.0]]), torch.tensor([0, 1])
        >>> knn_accuracy(bank, bank_labels, queries, query_labels, k=1)
        1.0
    """
    check_split(test_features, test_labels, "test")
    num_classes = num_classes_of(num_classes, train_labels, test_labels)
    predictions = knn_predict(
        train_features,
        train_labels,
        test_features,
        k=k,
        temperature=temperature,
        num_classes=num_classes,
        chunk_size=chunk_size,
    )
    return (predictions.cpu() == test_labels.cpu().long()).float().mean().item()
