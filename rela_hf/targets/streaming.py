"""ReLA-D on a streaming ``IterableDataset``: targets computed lazily, batch by batch.

The stream is read once to fit the whitening (the prior embeds every image, the statistics are
accumulated in float64); the returned ``IterableDataset`` then embeds and whitens each batch as it
is iterated, so the prior runs a second time.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import datasets
from datasets.utils.tqdm import tqdm

from rela_hf.targets.embedding import (
    TargetsPlan,
    check_columns,
    embed_encoded,
    full_decoder_feature,
    target_feature,
)
from rela_hf.whitening import PCAWhitening

__all__ = ["add_targets_streaming"]


@dataclasses.dataclass
class _EmbedAndWhitenBatch:
    """Streaming: embed and whiten lazily, batch by batch, as the dataset is iterated."""

    prior: Any
    whitening: PCAWhitening
    feature: Any
    image_column: str
    target_column: str
    embedding_column: str | None
    token_per_repo_id: Any = None

    def __call__(self, batch: dict, indices: list[int]) -> dict:
        embeddings = embed_encoded(self.prior, batch[self.image_column], indices, self.feature, self.token_per_repo_id)
        batch[self.target_column] = self.whitening.transform(embeddings).numpy()
        if self.embedding_column:
            batch[self.embedding_column] = embeddings.numpy()
        return batch


def add_targets_streaming(
    dataset: datasets.IterableDataset,
    plan: TargetsPlan,
) -> tuple[Any, PCAWhitening]:
    """Fit the whitening in one read of the stream; return the stream with a lazy target column."""
    whitening = plan.whitening
    features = dataset.features
    column_names = dataset.column_names
    if column_names is not None:
        check_columns(features, column_names, plan.image_column, plan.new_columns)
    feature = full_decoder_feature(features[plan.image_column] if features and plan.image_column in features else None)
    token = getattr(dataset, "_token_per_repo_id", None)
    if whitening is None:
        whitening = _fit_whitening_streaming(
            dataset,
            plan.prior,
            feature,
            plan.image_column,
            plan.n_components,
            plan.batch_size,
            plan.desc,
            token,
        )
    new_features = None
    if features is not None:
        new_features = features.copy()
        assert whitening.n_components is not None  # fitted: given fitted, or fitted just above
        new_features[plan.target_column] = target_feature(whitening.n_components)
        if plan.keep_embeddings:
            new_features[plan.embedding_column] = target_feature(plan.identity.embed_dim)
    result = dataset.map(
        _EmbedAndWhitenBatch(
            plan.prior,
            whitening,
            feature,
            plan.image_column,
            plan.target_column,
            plan.embedding_column if plan.keep_embeddings else None,
            token,
        ),
        with_indices=True,
        batched=True,
        batch_size=plan.batch_size,
        features=new_features,
    )
    return result, whitening


def _fit_whitening_streaming(dataset, prior, feature, image_column, n_components, batch_size, desc, token):
    images = dataset.select_columns([image_column])
    if dataset.features is not None and image_column in dataset.features:
        images = images.cast_column(image_column, datasets.Image(decode=False))
    whitening = PCAWhitening(n_components)
    seen = 0
    with tqdm(desc=f"{desc}: embedding + fitting whitening (stream)", unit=" examples") as bar:
        for batch in images.iter(batch_size=batch_size):
            values = batch[image_column]
            indices = range(seen, seen + len(values))
            whitening.update(embed_encoded(prior, values, indices, feature, token))
            seen += len(values)
            bar.update(len(values))
    if seen == 0:
        raise ValueError("The dataset is empty: there are no images to compute ReLA targets for.")
    if n_components > seen - 1:
        raise ValueError(
            f"k={n_components} components need at least {n_components + 1} images (N - 1 >= k), "
            f"the stream had {seen}. Pass a smaller k."
        )
    return whitening.finalize()
