"""Deprecated module (rela-hf 0.1): BYOL's pieces moved in 0.2 when DINO and SimCLR joined.

- the projector/predictor MLP ``ProjectionHead`` -> :mod:`rela_hf.heads` (BYOL and SimCLR share it);
- the EMA teacher (``make_target_network``, ``update_momentum``, ``cosine_momentum``) ->
  :mod:`rela_hf.momentum` (every method with a teacher uses it);
- the BYOL loss, heads and constants -> :mod:`rela_hf.methods.byol`.

Reading a name here warns (``FutureWarning``) and returns the object from its new place; the
functions are unchanged. This shim goes away in rela-hf 0.4.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rela_hf._deprecation import moved_names, warn_moved_module

if TYPE_CHECKING:  # the old names, visible to type checkers and IDEs; at run time __getattr__ warns
    from rela_hf.heads import ProjectionHead  # noqa: F401
    from rela_hf.methods.byol import (  # noqa: F401
        BYOL_OUT_DIM,
        BYOL_PAPER_HIDDEN_DIM,
        byol_loss,
        byol_predictor,
        byol_projector,
        negative_cosine_similarity,
    )
    from rela_hf.momentum import cosine_momentum, make_target_network, update_momentum  # noqa: F401

warn_moved_module(__name__, "rela_hf.methods.byol, rela_hf.heads and rela_hf.momentum")

__getattr__ = moved_names(
    __name__,
    {
        "BYOL_OUT_DIM": "rela_hf.methods.byol:BYOL_OUT_DIM",
        "BYOL_PAPER_HIDDEN_DIM": "rela_hf.methods.byol:BYOL_PAPER_HIDDEN_DIM",
        "ProjectionHead": "rela_hf.heads:ProjectionHead",
        "byol_loss": "rela_hf.methods.byol:byol_loss",
        "byol_predictor": "rela_hf.methods.byol:byol_predictor",
        "byol_projector": "rela_hf.methods.byol:byol_projector",
        "cosine_momentum": "rela_hf.momentum:cosine_momentum",
        "make_target_network": "rela_hf.momentum:make_target_network",
        "negative_cosine_similarity": "rela_hf.methods.byol:negative_cosine_similarity",
        "update_momentum": "rela_hf.momentum:update_momentum",
    },
)
