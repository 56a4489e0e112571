"""``score_priors``: rank candidate priors on the user's images before any training.

ReLA (Sun, Jiang & Lin, arXiv:2405.14669) accelerates training with any prior, but how much
depends on the prior (the paper's Figure 4), and finding out by making the targets and training
costs as much as the training it is meant to save. This embeds a few hundred of the user's images
(clean, and one ReLA view of each) with each candidate, and scores each one without labels
(:data:`PRIMARY_SCORE`, chosen by ``benchmarks/prior_scores.py``; the other label-free scores are
reported too) and, when labels are given, with the kNN accuracy of its whitened targets. It also
projects the one-off cost of each prior's targets for the whole dataset from the measured time per
image.

Usage (the offline assets installed; not a doctest)::

    from rela_hf.assets import fashion_mnist_dataset

    ranked = score_priors(fashion_mnist_dataset(), ["test_resnet,random_init=true", "./efficientnet_lite0,image_size=64"])
    ranked[0].name, ranked[0].score
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import datasets
import torch

from rela_hf.prior_scores.candidates import PriorCandidate, load_candidate
from rela_hf.prior_scores.embeddings import ImageSample, embed_prior, pixel_features, sample_images
from rela_hf.prior_scores.metrics import score_embeddings
from rela_hf.priors import Prior

__all__ = ["LABEL_FREE_SCORES", "PRIMARY_SCORE", "PriorScore", "score_priors"]

logger = logging.getLogger(__name__)

#: The label-free scores, every one higher-is-better (``rela_hf.prior_scores.metrics``).
LABEL_FREE_SCORES = (
    "view_alignment",
    "view_retrieval",
    "target_invariance",
    "embedding_view_alignment",
    "effective_rank",
    "pixel_cka",
    "pixel_knn_overlap",
)
#: The label-free score priors are ranked by: the most stable ranker of the validation study's
#: measured gains over three sample sizes (Spearman 0.63-0.64 with the kNN gain, 9 priors).
PRIMARY_SCORE = "view_alignment"

CandidateLike = str | Mapping[str, Any] | PriorCandidate | Prior


@dataclass
class PriorScore:
    """One prior's scores on the user's images and the cost of its targets.

    Attributes:
        name: The candidate's name.
        prior: What was loaded (name, Hub id or folder).
        embed_dim: The prior's embedding width.
        target_dim: The width k of its whitened targets here (smaller than asked when the
            embeddings span fewer directions; 0 for a constant prior).
        numerical_rank: How many independent directions its embeddings of the sample span.
        num_images: Images scored.
        scores: The label-free scores (:data:`LABEL_FREE_SCORES`, higher is better).
        knn_accuracy: The label score: kNN accuracy (k=200, t=0.1, cross-validated on the sample)
            of its whitened targets; None without labels.
        seconds_per_image: Decoding, preprocessing and the forward pass of one image (the targets
            pass), wall-clock.
        cpu_seconds_per_image: The same in CPU seconds (all threads; steady under a shared machine's load).
        dataset_size: Images in the dataset the targets would be made for.
        projected_targets_seconds: ``seconds_per_image * dataset_size``: the one-off targets cost.
        scoring_seconds: What scoring this prior took (loading, embedding, scores), wall-clock.
        scoring_cpu_seconds: The same in CPU seconds of this process (all its threads): on a
            shared machine the wall-clock grows with the load, the CPU seconds barely move.
    """

    name: str
    prior: str
    embed_dim: int
    target_dim: int
    numerical_rank: int
    num_images: int
    scores: dict[str, float | None]
    knn_accuracy: float | None
    seconds_per_image: float
    cpu_seconds_per_image: float
    dataset_size: int
    projected_targets_seconds: float
    scoring_seconds: float
    scoring_cpu_seconds: float

    @property
    def score(self) -> float:
        """The label-free score priors are ranked by (:data:`PRIMARY_SCORE`)."""
        value = self.scores[PRIMARY_SCORE]
        assert value is not None, f"{PRIMARY_SCORE} is always computed"
        return float(value)

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "score": self.score, "primary_score": PRIMARY_SCORE}


def _target_width(embed_dim: int, target_dim: int | None, student_width: int | None) -> int:
    """ReLA's k, capped by each prior's width: ``target_dim``, else ``min(student width, prior width)``."""
    return min(target_dim or student_width or embed_dim, embed_dim)


def _score_one(
    candidate: CandidateLike, sample: ImageSample, pixels: torch.Tensor, options: dict[str, Any]
) -> PriorScore:
    start, cpu_start = time.perf_counter(), time.process_time()
    if isinstance(candidate, Prior):
        prior, name = candidate, candidate.name
    else:
        spec = PriorCandidate.parse(candidate, image_size=options["image_size"])
        prior, name = (
            load_candidate(spec, device=options["device"], trust_remote_code=options["trust_remote_code"]),
            spec.name,
        )
    embeddings = embed_prior(prior, sample.images, batch_size=options["batch_size"], seed=options["seed"])
    values = score_embeddings(
        embeddings.clean,
        embeddings.views,
        pixels=pixels,
        labels=sample.labels,
        seed=options["seed"],
        target_dim=_target_width(prior.embed_dim, options["target_dim"], options["student_width"]),
    )
    per_image = sample.decode_seconds_per_image + embeddings.embed_seconds_per_image
    cpu_per_image = sample.decode_cpu_seconds_per_image + embeddings.embed_cpu_seconds_per_image
    dataset_size = options["dataset_size"] or sample.dataset_size
    target_dim, numerical_rank = values["target_dim"], values["numerical_rank"]
    assert target_dim is not None and numerical_rank is not None, "score_embeddings always sets both"
    return PriorScore(
        name=name,
        prior=prior.name,
        embed_dim=prior.embed_dim,
        target_dim=int(target_dim),
        numerical_rank=int(numerical_rank),
        num_images=len(sample.images),
        scores={key: values[key] for key in LABEL_FREE_SCORES},
        knn_accuracy=values["knn_accuracy"],
        seconds_per_image=per_image,
        cpu_seconds_per_image=cpu_per_image,
        dataset_size=dataset_size,
        projected_targets_seconds=per_image * dataset_size,
        scoring_seconds=time.perf_counter() - start,
        scoring_cpu_seconds=time.process_time() - cpu_start,
    )


def score_priors(
    dataset: datasets.Dataset,
    priors: Sequence[CandidateLike],
    *,
    image_column: str = "image",
    label_column: str | None = None,
    max_samples: int | None = 512,
    target_dim: int | None = None,
    student_width: int | None = None,
    image_size: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    dataset_size: int | None = None,
) -> list[PriorScore]:
    """Score candidate priors on ``max_samples`` images of ``dataset``, best first.

    Args:
        dataset: The user's training images (one split).
        priors: Candidates: ``[name=]prior[,option=value...]`` strings, mappings or
            :class:`PriorCandidate` (loaded one at a time), or loaded :class:`~rela_hf.priors.Prior`.
        image_column: The column of images.
        label_column: A column of class labels for the label score (None: label-free only).
        max_samples: Images scored, a fixed random sample (``seed``); None: all.
        target_dim: The targets' width k (capped by each prior's width); default
            ``min(student_width, prior width)``, or the prior's width.
        student_width: The student's feature width (ReLA's k rule).
        image_size: The input size of candidates that set none (default: each prior's own).
        batch_size: Images per forward pass.
        seed: Seed of the sample, the views and the label score's folds.
        device: Where the priors run (default: CUDA when available).
        trust_remote_code: Let transformers run code from the priors' repositories.
        dataset_size: Images the targets would be made for (default: ``len(dataset)``).

    Returns:
        One :class:`PriorScore` per candidate, ranked by :attr:`PriorScore.score` (best first).

    Raises:
        ValueError: no candidates, a malformed candidate, a missing column, too few images.
        rela_hf.priors.PriorError: a candidate cannot be loaded (named in the message).
    """
    if not priors:
        raise ValueError("score_priors needs at least one candidate prior.")
    candidates = [c if isinstance(c, Prior) else PriorCandidate.parse(c, image_size=image_size) for c in priors]
    names = [c.name for c in candidates]
    if len(set(names)) != len(names):
        raise ValueError(f"Two candidates share a name ({names}); name them: name=prior,...")
    sample = sample_images(
        dataset,
        image_column=image_column,
        label_column=label_column,
        max_samples=max_samples,
        seed=seed,
    )
    pixels = pixel_features(sample.images)
    options = {
        "image_size": image_size,
        "device": device,
        "trust_remote_code": trust_remote_code,
        "batch_size": batch_size,
        "seed": seed,
        "target_dim": target_dim,
        "student_width": student_width,
        "dataset_size": dataset_size,
    }
    results = []
    for candidate in candidates:
        result = _score_one(candidate, sample, pixels, options)
        logger.info(
            "prior %s: %s %.3f (%.1f s)",
            result.name,
            PRIMARY_SCORE,
            result.score,
            result.scoring_seconds,
        )
        results.append(result)
    return sorted(results, key=lambda result: result.score, reverse=True)
