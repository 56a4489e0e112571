"""The package's public surface: version, lazy exports, cheap import."""

from __future__ import annotations

import subprocess
import sys

import pytest
from packaging.version import Version

import rela_hf


def test_version_is_a_pep440_version():
    """A release (``0.2.0``) or a development version of the next one (``0.3.0.dev0``)."""
    version = Version(rela_hf.__version__)
    assert len(version.release) == 3 and str(version) == rela_hf.__version__


@pytest.mark.parametrize("name", [n for n in rela_hf.__all__ if n != "__version__"])
def test_every_public_name_resolves(name):
    assert getattr(rela_hf, name) is not None


def test_unknown_name_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        rela_hf.nope  # noqa: B018


def test_import_is_cheap():
    """`import rela_hf` loads no heavy library: the API is imported on first use."""
    code = "import sys, rela_hf; print(sorted(m for m in ('torch', 'timm', 'datasets') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
