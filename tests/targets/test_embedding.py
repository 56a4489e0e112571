"""Tests of rela_hf.targets.embedding: the choice of k."""

from __future__ import annotations

import pytest

from rela_hf.targets import resolve_n_components


def test_resolve_n_components():
    assert resolve_n_components(None, 512, 1280) == 512  # ReLA: min(student width, prior width)
    assert resolve_n_components(None, 2048, 1280) == 1280
    assert resolve_n_components(None, None, 96) == 96
    with pytest.raises(ValueError, match="exceeds the prior's embedding width 96"):
        resolve_n_components(128, None, 96)
    with pytest.raises(ValueError, match="positive integer"):
        resolve_n_components(0, None, 96)
