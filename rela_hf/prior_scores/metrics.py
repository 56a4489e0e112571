"""The math of the prior scores: pure torch on embedding matrices, no file or network IO.

Every function takes ``[N, D]`` matrices of one prior's embeddings (rows = the same images in the
same order) and returns a float. Higher is better for every *score*; :func:`spearman` compares a
score with a measured gain.

Examples:
    >>> import torch
    >>> round(spearman(torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([10.0, 20.0, 40.0, 30.0])), 6)
    0.8
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from rela_hf.evaluation.knn import KNN_K, KNN_TEMPERATURE, knn_predict
from rela_hf.whitening import PCAWhitening

__all__ = [
    "cross_validated_knn_accuracy",
    "effective_rank",
    "knn_overlap",
    "linear_cka",
    "numerical_rank",
    "rank_values",
    "score_embeddings",
    "spearman",
    "target_invariance",
    "view_alignment",
    "view_retrieval",
    "whitened_targets",
]

#: Eigenvalues below this fraction of the largest are numerical noise (as PCAWhitening.RANK_RTOL).
RANK_RTOL = 1e-10


def _float64(matrix: Tensor, what: str) -> Tensor:
    if matrix.ndim != 2 or matrix.shape[0] < 2:
        raise ValueError(f"{what} must be an [N, D] matrix with N >= 2, got shape {tuple(matrix.shape)}.")
    return matrix.detach().to(device="cpu", dtype=torch.float64)


def _paired(a: Tensor, b: Tensor, what: str) -> tuple[Tensor, Tensor]:
    a, b = _float64(a, what), _float64(b, what)
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{what}: the two matrices must have one row per image each, got {a.shape[0]} and {b.shape[0]}."
        )
    return a, b


# ---------------------------------------------------------------------------------------------
# rank correlation
# ---------------------------------------------------------------------------------------------
def rank_values(values: Tensor) -> Tensor:
    """1-based ranks of ``values`` (ascending), ties given the mean of the ranks they span."""
    values = torch.as_tensor(values, dtype=torch.float64).reshape(-1)
    order = torch.argsort(values, stable=True)
    ranks = torch.empty_like(values)
    ranks[order] = torch.arange(1, len(values) + 1, dtype=torch.float64)
    for value in torch.unique(values):
        tied = values == value
        if int(tied.sum()) > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(x: Tensor, y: Tensor) -> float:
    """Spearman's rank correlation: Pearson's correlation of the (tie-averaged) ranks.

    Returns NaN when either side is constant (no order to compare).
    """
    x, y = torch.as_tensor(x).reshape(-1), torch.as_tensor(y).reshape(-1)
    if x.shape != y.shape or x.numel() < 2:
        raise ValueError(f"spearman needs two sequences of the same length >= 2, got {x.numel()} and {y.numel()}.")
    rx, ry = rank_values(x), rank_values(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = float(rx.norm() * ry.norm())
    return float(rx @ ry) / denominator if denominator > 0 else math.nan


# ---------------------------------------------------------------------------------------------
# label-free scores of one prior
# ---------------------------------------------------------------------------------------------
def numerical_rank(embeddings: Tensor, rtol: float = RANK_RTOL) -> int:
    """How many independent directions the centred embeddings span (what PCA whitening can keep)."""
    x = _float64(embeddings, "embeddings")
    x = x - x.mean(dim=0)
    singular = torch.linalg.svdvals(x)
    if singular.numel() == 0 or float(singular[0]) == 0.0:
        return 0
    return int((singular**2 > rtol * singular[0] ** 2).sum())


def effective_rank(embeddings: Tensor, eps: float = 1e-7) -> float:
    """RankMe (Garrido et al., arXiv:2210.02885): ``exp`` of the entropy of the normalised
    singular values of the embedding matrix; between 1 and ``min(N, D)``, 0 for all-zero rows."""
    singular = torch.linalg.svdvals(_float64(embeddings, "embeddings"))
    total = float(singular.sum())
    if total == 0.0:
        return 0.0
    p = singular / total + eps
    return float(torch.exp(-(p * p.log()).sum()))


def view_alignment(clean_targets: Tensor, view_targets: Tensor) -> float:
    """Mean cosine similarity between the target of an augmented view and the image's target.

    ReLA regresses augmented views onto the target of the clean image with ``1 - cos``; this is
    one minus the loss the prior itself would reach from the view: 1 for targets the
    augmentations leave unchanged, about 0 for targets they scramble.
    """
    clean, views = _paired(clean_targets, view_targets, "view_alignment")
    return float(F.cosine_similarity(clean, views, dim=1, eps=1e-12).mean())


def view_retrieval(clean_targets: Tensor, view_targets: Tensor) -> float:
    """Fraction of augmented views whose most cosine-similar clean target is their own image's."""
    clean, views = _paired(clean_targets, view_targets, "view_retrieval")
    similarity = F.normalize(views, dim=1) @ F.normalize(clean, dim=1).T
    return float((similarity.argmax(dim=1) == torch.arange(len(clean))).double().mean())


def target_invariance(clean_targets: Tensor, view_targets: Tensor) -> float:
    """``1 - E|t(view_i) - t(x_i)|^2 / E|t(x_i) - t(x_j)|^2``: the share of the targets' spread
    that survives augmentation (1: invariant; 0: a view is as far from its image as another image)."""
    clean, views = _paired(clean_targets, view_targets, "target_invariance")
    within = float(((views - clean) ** 2).sum(dim=1).mean())
    n = clean.shape[0]
    between = 2 * n / (n - 1) * float(((clean - clean.mean(dim=0)) ** 2).sum(dim=1).mean())
    return 1.0 - within / between if between > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# similarity to a reference representation
# ---------------------------------------------------------------------------------------------
def knn_overlap(a: Tensor, b: Tensor, k: int = 10) -> float:
    """Mean share of each image's ``k`` cosine nearest neighbours that two representations agree on."""
    a, b = _paired(a, b, "knn_overlap")
    k = min(k, a.shape[0] - 1)

    def neighbours(x: Tensor) -> Tensor:
        similarity = F.normalize(x, dim=1) @ F.normalize(x, dim=1).T
        similarity.fill_diagonal_(-math.inf)
        return similarity.topk(k, dim=1).indices

    ours, theirs = neighbours(a), neighbours(b)
    shared = (ours.unsqueeze(2) == theirs.unsqueeze(1)).any(dim=2).double().sum(dim=1)
    return float((shared / k).mean())


def linear_cka(a: Tensor, b: Tensor) -> float:
    """Linear centred kernel alignment (Kornblith et al., arXiv:1905.00414), in [0, 1]."""
    a, b = _paired(a, b, "linear_cka")
    a, b = a - a.mean(dim=0), b - b.mean(dim=0)
    cross = float(torch.linalg.matrix_norm(b.T @ a) ** 2)
    norms = float(torch.linalg.matrix_norm(a.T @ a) * torch.linalg.matrix_norm(b.T @ b))
    return cross / norms if norms > 0 else 0.0


# ---------------------------------------------------------------------------------------------
# the label score
# ---------------------------------------------------------------------------------------------
def cross_validated_knn_accuracy(
    features: Tensor,
    labels: Tensor,
    *,
    folds: int = 5,
    k: int = KNN_K,
    temperature: float = KNN_TEMPERATURE,
    seed: int = 0,
) -> float:
    """Weighted kNN accuracy (k=200, t=0.1, :func:`rela_hf.evaluation.knn_predict`) with every
    image queried once against the other folds' images (a fixed random split)."""
    features = _float64(features, "features").float()
    labels = torch.as_tensor(labels).long().reshape(-1)
    if labels.shape[0] != features.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {features.shape[0]} feature rows.")
    folds = max(2, min(folds, features.shape[0]))
    order = torch.randperm(features.shape[0], generator=torch.Generator().manual_seed(seed))
    num_classes = int(labels.max()) + 1
    correct = 0
    for fold in range(folds):
        queries = order[fold::folds]
        bank = torch.cat([order[other::folds] for other in range(folds) if other != fold])
        predictions = knn_predict(
            features[bank],
            labels[bank],
            features[queries],
            k=k,
            temperature=temperature,
            num_classes=num_classes,
        )
        correct += int((predictions == labels[queries]).sum())
    return correct / features.shape[0]


# ---------------------------------------------------------------------------------------------
# every score of one prior, from its embeddings
# ---------------------------------------------------------------------------------------------
def whitened_targets(clean: Tensor, views: Tensor, target_dim: int) -> tuple[Tensor, Tensor, int]:
    """ReLA's targets of the clean images and of the views: PCA whitening fitted on the clean
    embeddings (as ReLA-D does) with ``k = min(target_dim, rank, N - 1)`` components; all zeros
    when the embeddings do not vary at all (a constant prior gives nothing to learn)."""
    k = min(target_dim, numerical_rank(clean), clean.shape[0] - 1)
    if k < 1:
        return torch.zeros(clean.shape[0], 1), torch.zeros(views.shape[0], 1), 0
    whitening = PCAWhitening(n_components=k).fit(clean)
    return whitening.transform(clean), whitening.transform(views), k


def score_embeddings(
    clean: Tensor,
    views: Tensor,
    *,
    target_dim: int,
    pixels: Tensor | None = None,
    labels: Tensor | None = None,
    seed: int = 0,
) -> dict[str, float | int | None]:
    """Every score of one prior from its embeddings of ``N`` images: ``clean`` (what its targets
    are made of) and ``views`` (one ReLA view of each image), both ``[N, D]``.

    Returns the target width used and the numerical rank, then the label-free scores (higher is
    better): ``view_alignment``, ``view_retrieval``, ``target_invariance`` of the whitened
    targets, ``embedding_view_alignment`` (the same alignment before whitening),
    ``effective_rank`` (RankMe), ``pixel_cka`` and ``pixel_knn_overlap`` (similarity to the raw
    pixels, when given); and with ``labels`` the label score ``knn_accuracy`` of the whitened
    targets (k=200, t=0.1, cross-validated).
    """
    clean_targets, view_targets, k = whitened_targets(clean, views, target_dim)
    scores: dict[str, float | int | None] = {
        "target_dim": k,
        "numerical_rank": numerical_rank(clean),
        "view_alignment": view_alignment(clean_targets, view_targets),
        "view_retrieval": view_retrieval(clean_targets, view_targets),
        "target_invariance": target_invariance(clean_targets, view_targets),
        "embedding_view_alignment": view_alignment(clean - clean.mean(dim=0), views - clean.mean(dim=0)),
        "effective_rank": effective_rank(clean),
        "pixel_cka": linear_cka(clean, pixels) if pixels is not None else None,
        "pixel_knn_overlap": knn_overlap(clean, pixels) if pixels is not None else None,
        "knn_accuracy": None,
    }
    if labels is not None:
        scores["knn_accuracy"] = cross_validated_knn_accuracy(clean_targets, labels, seed=seed)
    return scores
