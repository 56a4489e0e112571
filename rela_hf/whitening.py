"""PCA whitening of prior embeddings: ReLA-D steps 3-4, the one place targets are whitened.

ReLA (Sun, Jiang & Lin, "Efficiency for Free: Ideal Data Are Transportable Representations",
NeurIPS 2024, arXiv:2405.14669) turns the pooled embeddings of a prior model into fixed targets by
PCA-reducing them to ``k = min(student width, prior width)`` components and standardising every
component. :class:`PCAWhitening` fits that in one streaming float64 pass (memory independent of
the number of images) and applies it; saving it next to a dataset is
:func:`rela_hf.targets.save_whitening`'s job.

Examples:
    >>> import torch
    >>> embeddings = torch.randn(200, 16, generator=torch.Generator().manual_seed(0))
    >>> whitening = PCAWhitening(n_components=4).fit(embeddings)
    >>> targets = whitening.transform(embeddings)
    >>> targets.shape, round(float(targets.std(dim=0, unbiased=False).mean()), 4)
    (torch.Size([200, 4]), 1.0)
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import torch

__all__ = ["PCAWhitening", "first_non_finite_row"]


def _as_float64_matrix(x: Any, *, what: str) -> torch.Tensor:
    """A 2-D float64 CPU tensor from a tensor, array or nested list (copying only when needed)."""
    if isinstance(x, torch.Tensor):
        tensor = x.detach()
    else:
        tensor = torch.from_numpy(np.array(x, dtype=np.float64))  # a writable float64 copy
    if tensor.ndim != 2:
        raise ValueError(f"{what} must be a 2-D [num_samples, dim] array, got shape {tuple(tensor.shape)}.")
    return tensor.to(device="cpu", dtype=torch.float64)


@contextlib.contextmanager
def _one_torch_thread():
    """Run a one-off LAPACK call single-threaded, then restore torch's thread count.

    Multi-threaded ``eigh`` (MKL syevd) degrades badly when the cores are shared: on a busy
    2-core machine a 1280 x 1280 float64 ``eigh`` took 12-15 s with 2 threads and 0.8-0.9 s with
    one. A single thread costs at most a few seconds even for 2048-d priors, once per dataset.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _moments(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and centred sum of outer products of a ``[B, dim]`` float64 batch."""
    mean = rows.mean(dim=0)
    centred = rows - mean
    return mean, centred.T @ centred


def first_non_finite_row(x: torch.Tensor) -> int | None:
    """Index of the first row of ``x`` holding a NaN or inf, or None."""
    bad = ~torch.isfinite(x).all(dim=1)
    return int(bad.nonzero()[0, 0]) if bool(bad.any()) else None


class PCAWhitening:
    """PCA whitening fitted in one streaming pass: ReLA-D steps 3-4 (arXiv:2405.14669, §4).

    ``fit``: centre the embeddings, covariance ``Yc^T Yc / (N - 1)``, eigenvectors of its
    ``n_components`` largest eigenvalues. ``transform``: project onto them, then divide each
    component by the *population* standard deviation of the projected training data, so that on
    the fit set every target dimension has mean 0, variance 1 and the covariance is the identity.

    The running statistics (count, mean, centred sum of outer products) are float64 and merged
    batch by batch with Chan et al.'s pairwise update, which stays accurate even when the mean is
    large compared with the spread (a plain running sum of outer products would cancel
    catastrophically). Memory is ``O(dim^2)``, independent of the number of images. With fewer
    images than dimensions the rows themselves (at most ``dim^2`` numbers too) are kept, and the
    small ``N x N`` Gram matrix is decomposed instead of the covariance.

    Args:
        n_components: ``k``, the number of kept components (``None``: all of them). ReLA uses
            ``min(student feature width, prior width)``, e.g. 512 for a ResNet-18 student.

    Attributes (after :meth:`finalize` or :meth:`load`), float64 CPU tensors:
        mean: ``[dim]`` mean of the fit embeddings.
        components: ``[k, dim]`` principal axes, largest variance first; each row's largest-|.|
            entry is positive, so the result does not depend on the eigensolver's signs.
        scale: ``[k]`` population standard deviation of each projected component.
        explained_variance: ``[k]`` sample variance (``N - 1``) of each component.
        explained_variance_ratio: ``[k]`` share of the total variance kept by each component.
        n_samples: number of embeddings the statistics were fitted on.
    """

    # Components whose variance is below this fraction of the largest one are numerical noise
    # (float32 embeddings carry ~7 significant digits, so ~1e-14 in variance): standardising them
    # would blow noise up to unit variance, so k must stay below the embeddings' numerical rank.
    RANK_RTOL = 1e-10

    def __init__(self, n_components: int | None = None) -> None:
        if n_components is not None and (not isinstance(n_components, int) or n_components < 1):
            raise ValueError(f"n_components must be a positive integer or None, got {n_components!r}.")
        self.n_components = n_components
        self.n_samples = 0
        self.n_features: int | None = None
        self._running_mean: torch.Tensor | None = None
        self._comoment: torch.Tensor | None = None  # sum over samples of (y - mean)(y - mean)^T
        self._rows: list[torch.Tensor] | None = []  # the embeddings, while N <= dim
        self.mean: torch.Tensor | None = None
        self.components: torch.Tensor | None = None
        self.scale: torch.Tensor | None = None
        self.explained_variance: torch.Tensor | None = None
        self.explained_variance_ratio: torch.Tensor | None = None
        self._projection: torch.Tensor | None = None  # components.T / scale, [dim, k]

    # -- fitting ---------------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.components is not None

    def update(self, embeddings: torch.Tensor | np.ndarray) -> PCAWhitening:
        """Add a batch ``[B, dim]`` of embeddings to the running statistics."""
        if self.is_fitted:
            raise RuntimeError("This PCAWhitening is already finalized; create a new one to refit.")
        x = _as_float64_matrix(embeddings, what="embeddings")
        if x.shape[0] == 0:
            return self
        if self.n_features is not None and x.shape[1] != self.n_features:
            raise ValueError(f"Embeddings have dim {x.shape[1]}, earlier batches had {self.n_features}.")
        if (row := first_non_finite_row(x)) is not None:
            raise ValueError(f"Row {row} of this batch of embeddings is not finite (NaN or inf).")
        self._add(x.shape[0], rows=[x])
        return self

    def merge(self, other: PCAWhitening) -> PCAWhitening:
        """Fold in the running statistics of another (unfinalized) instance, e.g. another shard."""
        if self.is_fitted or other.is_fitted:
            raise RuntimeError("Only running statistics can be merged: merge before finalize().")
        if other.n_samples:
            if self.n_features is not None and other.n_features != self.n_features:
                raise ValueError(f"Cannot merge dim {other.n_features} into dim {self.n_features}.")
            if other._rows is not None:
                self._add(other.n_samples, rows=other._rows)
            else:
                self._add(other.n_samples, moments=(other._running_mean, other._comoment))
        return self

    def _add(self, count: int, *, rows=None, moments=None) -> None:
        """Add ``count`` samples, given as rows or as their (mean, centred comoment)."""
        self.n_features = self.n_features or int((rows[0] if rows else moments[0]).shape[-1])
        if self._rows is not None and rows is not None and self.n_samples + count <= self.n_features:
            self._rows.extend(rows)  # still no more rows than dimensions: keep them
            self.n_samples += count
            return
        if self._rows is not None:  # from now on, only the running moments
            kept, kept_count, self._rows, self.n_samples = self._rows, self.n_samples, None, 0
            if kept:
                self._merge_moments(kept_count, *_moments(torch.cat(kept)))
        self._merge_moments(count, *(moments if moments is not None else _moments(torch.cat(rows))))

    def _merge_moments(self, count: int, mean: torch.Tensor, comoment: torch.Tensor) -> None:
        if self.n_samples == 0:
            self.n_samples, self._running_mean, self._comoment = (
                count,
                mean.clone(),
                comoment.clone(),
            )
            return
        # n_samples > 0 outside the row phase: the first merge above set both moments
        assert self._running_mean is not None and self._comoment is not None
        total = self.n_samples + count
        delta = mean - self._running_mean
        self._running_mean += delta * (count / total)
        self._comoment += comoment + torch.outer(delta, delta) * (self.n_samples * count / total)
        self.n_samples = total

    def finalize(self) -> PCAWhitening:
        """Eigendecompose the covariance and fix the whitening (call once, after all updates)."""
        if self.is_fitted:
            return self
        n, dim = self.n_samples, self.n_features
        if n < 2:
            raise ValueError(f"PCA whitening needs at least 2 embeddings, got {n}.")
        assert dim is not None  # set by the first non-empty update or merge
        k = dim if self.n_components is None else self.n_components
        if k > dim:
            raise ValueError(f"n_components={k} exceeds the embedding width {dim}.")
        if k > n - 1:
            raise ValueError(
                f"n_components={k} needs at least {k + 1} images (N - 1 >= k: N embeddings span at "
                f"most N - 1 directions around their mean), got N={n}. Use k <= {n - 1}."
            )
        with _one_torch_thread():
            mean, eigenvalues, eigenvectors = self._mean_and_covariance_eigenpairs()
        rank = int((eigenvalues > self.RANK_RTOL * eigenvalues[0]).sum()) if eigenvalues[0] > 0 else 0
        if k > rank:
            raise ValueError(
                f"The {n} embeddings vary along only {rank} independent directions (e.g. constant "
                f"or duplicated features), so {k} components cannot all be standardised to unit "
                f"variance. Use n_components <= {rank}."
            )
        components = eigenvectors[:, :k].T.contiguous()
        # Deterministic signs: the largest-magnitude entry of every axis is positive.
        pivots = components.abs().argmax(dim=1, keepdim=True)
        components *= torch.sign(components.gather(1, pivots))
        explained_variance = eigenvalues[:k].clone()
        self._set_parameters(
            mean=mean,
            components=components,
            explained_variance=explained_variance,
            explained_variance_ratio=explained_variance / eigenvalues.sum(),
            # Population variance of a projected component = eigenvalue * (N - 1) / N: ReLA step 4
            # standardises with the population std, as the official code's per-dimension z-score.
            scale=torch.sqrt(explained_variance * ((n - 1) / n)),
            n_samples=n,
        )
        self._running_mean = self._comoment = self._rows = None  # O(dim^2) memory, not needed
        return self

    def _mean_and_covariance_eigenpairs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The mean, and the eigenvalues (descending) and eigenvectors (columns) of
        ``Yc^T Yc / (N - 1)``."""
        n = self.n_samples
        if self._rows is None:
            # rows are dropped only once the running moments hold them
            assert self._comoment is not None and self._running_mean is not None
            covariance = self._comoment / (n - 1)
            values, vectors = torch.linalg.eigh((covariance + covariance.T) / 2)
            # eigh sorts ascending
            return self._running_mean, values.flip(0).clamp_min(0.0), vectors.flip(1)
        # N <= dim: Yc^T Yc has rank < N, so decompose the N x N Gram matrix Yc Yc^T instead
        # (the snapshot method): same non-zero eigenvalues, eigenvectors Yc^T u / sqrt(lambda).
        # 512 images of a 1280-d prior: fit in 0.17 s instead of 1.1 s. The null space (zero
        # eigenvalues) is never selected: k <= rank is checked.
        rows = torch.cat(self._rows)
        mean = rows.mean(dim=0)
        centred = rows - mean
        gram = centred @ centred.T
        values, vectors = torch.linalg.eigh((gram + gram.T) / 2)
        values, vectors = values.flip(0).clamp_min(0.0), vectors.flip(1)
        vectors = (centred.T @ vectors) / values.sqrt().clamp_min(torch.finfo(torch.float64).tiny)
        return mean, values / (n - 1), vectors

    def fit(self, embeddings: torch.Tensor | np.ndarray | Iterable[Any]) -> PCAWhitening:
        """Fit on one ``[N, dim]`` array or an iterable of ``[B, dim]`` batches, then finalize."""
        batches = [embeddings] if isinstance(embeddings, (torch.Tensor, np.ndarray)) else embeddings
        for batch in batches:
            self.update(batch)
        return self.finalize()

    def _set_parameters(
        self, *, mean, components, explained_variance, explained_variance_ratio, scale, n_samples
    ) -> None:
        def as_float64(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(torch.float64).contiguous()

        self.mean, self.components = as_float64(mean), as_float64(components)
        self.explained_variance = as_float64(explained_variance)
        self.explained_variance_ratio = as_float64(explained_variance_ratio)
        self.scale = as_float64(scale)
        self.n_samples, self.n_components = int(n_samples), int(self.components.shape[0])
        self.n_features = int(self.components.shape[1])
        self._projection = (self.components.T / self.scale).contiguous()

    # -- applying --------------------------------------------------------------------------------
    def transform(self, embeddings: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Whitened targets ``float32 [N, k]`` for embeddings ``[N, dim]`` (computed in float64)."""
        self._require_fitted()
        x = _as_float64_matrix(embeddings, what="embeddings")
        if x.shape[1] != self.n_features:
            raise ValueError(f"Embeddings have dim {x.shape[1]}; this whitening was fit on dim {self.n_features}.")
        if (row := first_non_finite_row(x)) is not None:
            raise ValueError(f"Row {row} of the embeddings is not finite (NaN or inf).")
        assert self.mean is not None and self._projection is not None  # _require_fitted
        return ((x - self.mean) @ self._projection).to(torch.float32)

    def _require_fitted(self) -> None:
        if not self.is_fitted:
            raise RuntimeError("PCAWhitening is not fitted: call update(...) then finalize(), or load().")

    @property
    def total_explained_variance_ratio(self) -> float:
        """Share of the embeddings' variance kept by the ``k`` components."""
        self._require_fitted()
        assert self.explained_variance_ratio is not None  # _require_fitted
        return float(self.explained_variance_ratio.sum())

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        """The fitted parameters as float64 tensors (``mean``, ``components``, ``scale``,
        ``explained_variance``, ``explained_variance_ratio``); files are written elsewhere
        (:func:`rela_hf.targets.save_whitening`)."""
        self._require_fitted()
        assert (  # _require_fitted: _set_parameters sets them all
            self.mean is not None
            and self.components is not None
            and self.explained_variance is not None
            and self.explained_variance_ratio is not None
            and self.scale is not None
        )
        return {
            "mean": self.mean,
            "components": self.components,
            "explained_variance": self.explained_variance,
            "explained_variance_ratio": self.explained_variance_ratio,
            "scale": self.scale,
        }

    @classmethod
    def from_state_dict(cls, tensors: Mapping[str, torch.Tensor], n_samples: int) -> PCAWhitening:
        """A fitted whitening from :meth:`state_dict` tensors and the fit's sample count."""
        whitening = cls(int(tensors["components"].shape[0]))
        whitening._set_parameters(**tensors, n_samples=int(n_samples))
        return whitening

    def sha256(self) -> str:
        """Digest of the parameters: two whitenings with the same digest give the same targets."""
        digest = hashlib.sha256(str(self.n_samples).encode())
        for name, tensor in sorted(self.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.numpy().tobytes())
        return digest.hexdigest()

    def __repr__(self) -> str:
        if not self.is_fitted:
            return f"PCAWhitening(n_components={self.n_components})"
        return (
            f"PCAWhitening(n_components={self.n_components}, n_features={self.n_features}, "
            f"n_samples={self.n_samples}, "
            f"explained_variance_ratio={self.total_explained_variance_ratio:.3f})"
        )
