"""Card templates and the ReLA citation: what every rendered card (model or dataset) shares.

Each SSL method carries its own citation (``rela_hf.methods.<name>``).

The Jinja templates live at the top of a source checkout (``model_cards/``) and ship inside the
wheel as ``rela_hf/model_cards``; :data:`TEMPLATE_DIR` finds them in either place.
"""

from __future__ import annotations

from pathlib import Path

from rela_hf._deprecation import Moved, moved_names

__all__ = ["RELA_CITATION", "TEMPLATE_DIR", "template_path"]

# model_cards/ at the top of a source checkout; rela_hf/model_cards inside an installed wheel
_PACKAGED_TEMPLATES = Path(__file__).resolve().parent / "model_cards"
TEMPLATE_DIR = (
    _PACKAGED_TEMPLATES
    if _PACKAGED_TEMPLATES.is_dir()
    else Path(__file__).resolve().parent.parent / "model_cards"
)


def template_path(name: str) -> Path:
    """The path of a card template (``encoder.md``, ``efficient_dataset.md``)."""
    return TEMPLATE_DIR / name


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
