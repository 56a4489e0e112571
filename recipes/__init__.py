"""rela-hf's runnable recipes, one readable script per job (shipped as ``rela_hf.recipes``).

| script | console command | job |
|---|---|---|
| ``prepare_offline_assets.py`` | ``rela-hf-assets`` | real images and a real prior, offline |
| ``make_targets.py`` | ``rela-hf-targets`` | ReLA-D: a prior's whitened targets as a dataset column |
| ``byol_rela.py`` | ``rela-hf-train`` | ReLA-F: ReLA, then BYOL / DINO / SimCLR (Accelerate) |
| ``evaluate_encoder.py`` | ``rela-hf-evaluate`` | kNN and linear probe on frozen features |
| ``push_to_hub.py`` | ``rela-hf-push`` | the encoder, its card and curves, on the Hub |

From a checkout: ``python recipes/<script>.py`` or ``accelerate launch recipes/byol_rela.py``.
Installed: the console commands, or ``accelerate launch -m rela_hf.recipes.byol_rela`` for
several processes (``accelerate launch $(which rela-hf-train)`` also works, except behind pyenv or
asdf, where that path is a shell shim that Python cannot run); ``--config <preset>`` finds the
presets of ``configs/`` shipped with them.
"""
