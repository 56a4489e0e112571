"""Tests of rela_hf.whitening: PCA whitening against an independent numpy transcription.

The embeddings are real images (64 Fashion-MNIST training images as pixel vectors).
"""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from rela_hf.whitening import PCAWhitening
from tests.pca_reference import assert_equal_up_to_sign, assert_whitened, numpy_pca_whitening


@pytest.fixture(scope="module")
def pixel_vectors(fashion_mnist_slice) -> np.ndarray:
    """64 real Fashion-MNIST images as 196-d vectors (14x14 grey pixels), float32."""
    images = [image.resize((14, 14), PIL.Image.BILINEAR) for image in fashion_mnist_slice["image"]]
    return np.stack([np.asarray(image, dtype=np.float32).reshape(-1) / 255.0 for image in images])


def test_whitening_matches_numpy_pca_and_whitens(pixel_vectors):
    whitening = PCAWhitening(16).fit(pixel_vectors)
    targets = whitening.transform(pixel_vectors)
    assert targets.dtype == torch.float32 and targets.shape == (64, 16)
    assert_whitened(targets.numpy(), atol=1e-5)
    assert_equal_up_to_sign(targets.numpy(), numpy_pca_whitening(pixel_vectors, 16), atol=1e-4)


def test_whitening_attributes(pixel_vectors):
    whitening = PCAWhitening(8).fit(pixel_vectors)
    x = pixel_vectors.astype(np.float64)
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False))[::-1]
    np.testing.assert_allclose(whitening.mean.numpy(), x.mean(axis=0), atol=1e-12)
    np.testing.assert_allclose(whitening.explained_variance.numpy(), eigenvalues[:8], rtol=1e-8)
    np.testing.assert_allclose(
        whitening.explained_variance_ratio.numpy(), eigenvalues[:8] / eigenvalues.sum(), rtol=1e-8
    )
    np.testing.assert_allclose(whitening.scale.numpy() ** 2, eigenvalues[:8] * 63 / 64, rtol=1e-8)
    components = whitening.components.numpy()
    np.testing.assert_allclose(components @ components.T, np.eye(8), atol=1e-10)
    pivots = np.abs(components).argmax(axis=1)
    assert (components[np.arange(8), pivots] > 0).all()  # the sign convention
    assert whitening.n_samples == 64 and whitening.n_features == 196 and whitening.n_components == 8
    assert 0 < whitening.total_explained_variance_ratio < 1


def test_streaming_fit_equals_batch_fit(pixel_vectors):
    full = PCAWhitening(12).fit(pixel_vectors)
    streamed = PCAWhitening(12)
    for start in range(0, 64, 7):  # uneven batches, a batch of 1 at the end
        streamed.update(torch.from_numpy(pixel_vectors[start : start + 7]))
    streamed.finalize()
    halves = PCAWhitening(12).update(pixel_vectors[:40])
    halves.merge(PCAWhitening(12).update(pixel_vectors[40:])).finalize()
    for other in (streamed, halves):
        np.testing.assert_allclose(other.components.numpy(), full.components.numpy(), atol=1e-9)
        np.testing.assert_allclose(other.transform(pixel_vectors), full.transform(pixel_vectors), atol=1e-5)
    # 40 dims: the stream switches from keeping rows to running moments after 35 images
    narrow = pixel_vectors[:, np.argsort(pixel_vectors.var(axis=0))[-40:]]
    full = PCAWhitening(12).fit(narrow)
    streamed = PCAWhitening(12).fit([narrow[start : start + 7] for start in range(0, 64, 7)])
    halves = PCAWhitening(12).update(narrow[:30])
    halves.merge(PCAWhitening(12).update(narrow[30:])).finalize()
    for other in (streamed, halves):
        np.testing.assert_allclose(other.components.numpy(), full.components.numpy(), atol=1e-9)
        np.testing.assert_allclose(other.transform(narrow), full.transform(narrow), atol=1e-5)


def test_gram_and_covariance_decompositions_agree(pixel_vectors):
    """64 images of 196 dims take the N x N Gram route; the D x D covariance gives the same."""
    gram = PCAWhitening(20).fit(np.array_split(pixel_vectors, 3))
    covariance = PCAWhitening(20)
    covariance._rows = None  # keep only the running moments, as with more images than dimensions
    covariance.update(pixel_vectors).finalize()
    for name in ("components", "explained_variance", "explained_variance_ratio", "scale", "mean"):
        np.testing.assert_allclose(getattr(gram, name).numpy(), getattr(covariance, name).numpy(), rtol=1e-7, atol=1e-9)


def test_whitening_is_accurate_far_from_the_origin(pixel_vectors):
    """Chan's pairwise update: a large common offset must not destroy the covariance."""
    reference = PCAWhitening(8).fit(pixel_vectors)
    shifted = pixel_vectors.astype(np.float64) + 1e6
    streamed = PCAWhitening(8).fit(np.array_split(shifted, 9))
    np.testing.assert_allclose(streamed.explained_variance.numpy(), reference.explained_variance.numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.abs(streamed.components.numpy()), np.abs(reference.components.numpy()), atol=1e-6)


def test_whitening_signs_do_not_depend_on_row_order(pixel_vectors):
    a = PCAWhitening(10).fit(pixel_vectors)
    b = PCAWhitening(10).fit(pixel_vectors[np.random.default_rng(1).permutation(64)])
    np.testing.assert_allclose(a.components.numpy(), b.components.numpy(), atol=1e-9)
    assert a.sha256() != b.sha256() or np.array_equal(a.components.numpy(), b.components.numpy())


def test_whitening_with_all_components(pixel_vectors):
    data = pixel_vectors[:, np.argsort(pixel_vectors.var(axis=0))[-40:]]  # 40 central pixels, 64 images
    targets = PCAWhitening().fit(data).transform(data).numpy()
    assert targets.shape == (64, 40)
    assert_whitened(targets, atol=1e-4)


@pytest.mark.parametrize(
    "k, data, message",
    [
        (200, "pixels", "exceeds the embedding width 196"),
        (64, "pixels", "needs at least 65 images"),
        (4, "one_row", "at least 2 embeddings"),
        (12, "rank_10", "only 10 independent directions"),
    ],
)
def test_whitening_refuses_impossible_k(pixel_vectors, k, data, message):
    x = {
        "pixels": pixel_vectors,
        "one_row": pixel_vectors[:1],
        "rank_10": pixel_vectors[:, :10] @ np.random.default_rng(0).normal(size=(10, 30)).astype(np.float32),
    }[data]
    with pytest.raises(ValueError, match=message):
        PCAWhitening(k).fit(x)


def test_whitening_input_errors(pixel_vectors):
    bad = pixel_vectors[:10].copy()
    bad[7, 3] = np.nan
    with pytest.raises(ValueError, match="Row 7"):
        PCAWhitening(4).update(bad)
    with pytest.raises(ValueError, match="positive integer"):
        PCAWhitening(0)
    with pytest.raises(RuntimeError, match="not fitted"):
        PCAWhitening(4).transform(pixel_vectors)
    fitted = PCAWhitening(4).fit(pixel_vectors)
    with pytest.raises(ValueError, match="dim 100"):
        fitted.transform(pixel_vectors[:, :100])
    with pytest.raises(ValueError, match="2-D"):
        fitted.transform(pixel_vectors[0])
    with pytest.raises(RuntimeError, match="already finalized"):
        fitted.update(pixel_vectors)
    whitening = PCAWhitening(4).update(pixel_vectors)
    with pytest.raises(ValueError, match="dim 100"):
        whitening.update(pixel_vectors[:, :100])


def test_state_dict_round_trip(pixel_vectors):
    whitening = PCAWhitening(16).fit(pixel_vectors)
    restored = PCAWhitening.from_state_dict(whitening.state_dict(), n_samples=whitening.n_samples)
    assert restored.sha256() == whitening.sha256()
    assert torch.equal(restored.transform(pixel_vectors), whitening.transform(pixel_vectors))
