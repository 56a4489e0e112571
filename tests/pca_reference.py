"""An independent numpy transcription of PCA whitening, shared by the whitening and targets tests."""

from __future__ import annotations

import numpy as np


def numpy_pca_whitening(embeddings: np.ndarray, k: int) -> np.ndarray:
    """An independent reference: float64 SVD of the centred data, population-std scaling."""
    x = np.asarray(embeddings, dtype=np.float64)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ vt[:k].T
    return projected / projected.std(axis=0)  # np.std is the population std (ddof=0)


def assert_equal_up_to_sign(actual: np.ndarray, expected: np.ndarray, atol: float) -> None:
    """Columns equal up to a per-component sign (PCA axes are defined up to sign)."""
    signs = np.sign(np.sum(actual * expected, axis=0))
    np.testing.assert_allclose(actual, expected * signs, atol=atol)


def assert_whitened(targets: np.ndarray, atol: float = 1e-4) -> None:
    """Mean 0, unit population variance and identity covariance on the fit set."""
    targets = np.asarray(targets, dtype=np.float64)
    np.testing.assert_allclose(targets.mean(axis=0), 0.0, atol=atol)
    np.testing.assert_allclose(np.cov(targets, rowvar=False, bias=True), np.eye(targets.shape[1]), atol=atol)
