"""Tests of rela_hf.prior_scores: the prior scorer."""
