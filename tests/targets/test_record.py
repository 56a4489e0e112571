"""Tests of rela_hf.targets.record: the whitening file and the targets' record on disk."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from rela_hf.targets import WHITENING_FILENAME, load_whitening, save_whitening
from rela_hf.whitening import PCAWhitening


def test_whitening_save_load_round_trip(pixel_vectors, tmp_path):
    whitening = PCAWhitening(16).fit(pixel_vectors)
    path = save_whitening(whitening, tmp_path / WHITENING_FILENAME)

    with safe_open(str(path), framework="pt") as f:  # plain safetensors: no pickle involved
        assert set(f.keys()) == {
            "mean",
            "components",
            "scale",
            "explained_variance",
            "explained_variance_ratio",
        }
        assert f.metadata()["n_samples"] == "64"
    loaded = load_whitening(path)
    assert loaded.sha256() == whitening.sha256()
    assert torch.equal(loaded.transform(pixel_vectors), whitening.transform(pixel_vectors))
    for name in ("mean", "components", "scale", "explained_variance", "explained_variance_ratio"):
        assert torch.equal(getattr(loaded, name), getattr(whitening, name))
    assert loaded.n_samples == 64 and loaded.n_components == 16
    assert list(tmp_path.iterdir()) == [path]  # the atomic write left no temporary file


def test_load_refuses_other_safetensors(tmp_path):
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(ValueError, match="not a rela_hf PCA whitening file"):
        load_whitening(tmp_path / "model.safetensors")
