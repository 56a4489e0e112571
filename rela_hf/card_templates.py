"""Card templates, the ReLA citation, the benchmark link: what every card (model or dataset) shares.

Each method carries its own citation (``rela_hf.methods.<name>``). Cards point to rela-hf's
benchmark instead of quoting numbers of other runs: :func:`benchmark_reference` links it in the
project's repository when the installed package names its home page (``url`` in setup.cfg), and
names the file otherwise.

The Jinja templates live at the top of a source checkout (``model_cards/``) and ship inside the
wheel as ``rela_hf/model_cards``; :data:`TEMPLATE_DIR` finds them in either place.
"""

from __future__ import annotations

from email.message import Message
from importlib import metadata
from pathlib import Path
from typing import cast

from rela_hf._deprecation import Moved, moved_names

__all__ = ["BENCHMARK_FILE", "RELA_CITATION", "TEMPLATE_DIR", "benchmark_reference", "project_url", "template_path"]

#: the benchmark's results page, relative to the repository root
BENCHMARK_FILE = "benchmarks/results/README.md"

# model_cards/ at the top of a source checkout; rela_hf/model_cards inside an installed wheel
_PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "model_cards"
TEMPLATE_DIR = (
    _PACKAGED_TEMPLATES if _PACKAGED_TEMPLATES.is_dir() else Path(__file__).resolve().parent.parent / "model_cards"
)


def template_path(name: str) -> Path:
    """The path of a card template (``encoder.md``, ``efficient_dataset.md``)."""
    return TEMPLATE_DIR / name


def project_url() -> str | None:
    """The project's home page as the installed package declares it, if it does."""
    try:
        # an email Message at runtime; the PackageMetadata protocol lacks its .get
        package = cast(Message, metadata.metadata("rela-hf"))
    except metadata.PackageNotFoundError:
        return None
    urls = [package.get("Home-page")] + [
        entry.split(",", 1)[-1].strip() for entry in package.get_all("Project-URL") or []
    ]
    return next((url.rstrip("/") for url in urls if url and url.startswith("https://")), None)


def benchmark_reference(url: str | None = None) -> str:
    """Markdown that points to rela-hf's benchmark (its repository page when ``url`` is known).

    Args:
        url: the repository's URL; default :func:`project_url`.
    """
    url = url if url is not None else project_url()
    if url and url.startswith("https://github.com/"):
        return f"[the rela-hf benchmark]({url}/blob/main/{BENCHMARK_FILE})"
    if url:
        return f"[the rela-hf benchmark]({url}) (`{BENCHMARK_FILE}`)"
    return f"the rela-hf benchmark (`{BENCHMARK_FILE}` in the rela-hf source)"


RELA_CITATION = """@inproceedings{sun2024efficiency,
  title     = {Efficiency for Free: Ideal Data Are Transportable Representations},
  author    = {Sun, Peng and Jiang, Yi and Lin, Tao},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2024},
  eprint    = {2405.14669},
  archivePrefix = {arXiv}
}"""


# Names that lived here in rela-hf 0.1: reading one warns (FutureWarning) and forwards to its
# new place until 0.4 (rela_hf/_deprecation.py; CHANGELOG.md lists them).
__getattr__ = moved_names(
    __name__,
    {
        "BYOL_CITATION": Moved(
            "rela_hf.methods.byol:BYOL_CITATION",
            "every method carries its own: rela_hf.methods.method_class(name).citation.",
        ),
    },
)
