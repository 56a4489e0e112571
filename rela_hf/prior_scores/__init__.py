"""Which prior to pick: rank candidate priors on the user's images before any training.

ReLA (arXiv:2405.14669) works with any prior; how much it helps depends on the prior. The scores
take minutes, not a training run:

- ``candidates.py``: :class:`PriorCandidate`, a prior to score written as one string
  (``[name=]prior[,image_size=64,random_init=true,seed=1]``), and :func:`load_candidate`;
- ``embeddings.py``: the sample of images, ReLA's views of them, a prior's (timed) embeddings;
- ``metrics.py``: the math: the label-free scores, the label score, Spearman's rank correlation;
- ``scoring.py``: :func:`score_priors` and :class:`PriorScore`.
"""

from rela_hf.prior_scores.candidates import PriorCandidate, load_candidate
from rela_hf.prior_scores.metrics import score_embeddings, spearman
from rela_hf.prior_scores.scoring import LABEL_FREE_SCORES, PRIMARY_SCORE, PriorScore, score_priors

__all__ = [
    "LABEL_FREE_SCORES",
    "PRIMARY_SCORE",
    "PriorCandidate",
    "PriorScore",
    "load_candidate",
    "score_embeddings",
    "score_priors",
    "spearman",
]
