"""The parts of ``benchmarks/gpu_check.py``, the one prepared GPU check (one H100/H200, ~8 min).

| module | holds |
|---|---|
| ``profiles.py`` | the sizes and time caps of the GPU run and of the CPU ``--smoke`` run |
| ``assets.py`` | the offline data and prior (``.gpu_check/`` or local installs), photo crops |
| ``prepare.py`` | ``--prepare``: what the GPU machine lacks (``.gpu_check/``, ``.whl/``), size |
| ``measure.py`` | the environment record, time caps, the timed training-step loop |
| ``targets_part.py`` | (a) ``add_rela_targets`` against a raw timm inference loop |
| ``trainer_part.py`` | (b) the step fed by PIL workers, GPU data path, resident views; compile |
| ``rela_vs_byol_part.py`` | (c) ReLA vs BYOL through ``ReLATrainer``, kNN of each export |
| ``report.py`` | ``results.json`` and ``results.md`` |

Not a package of the library: the script puts ``benchmarks/`` on ``sys.path`` by being run from it.
"""
