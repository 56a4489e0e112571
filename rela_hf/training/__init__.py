"""The ReLA training loop as a library: ``ReLATrainer`` and the parts it is made of.

ReLA (arXiv:2405.14669) first regresses the prior's targets, then switches for good to the method
it accelerates (BYOL, DINO, SimCLR, supervised). ``recipes/byol_rela.py`` is a thin script over
this package; a notebook, a sweep or a test trains the same way::

    from rela_hf.training import ReLATrainer, ReLATrainingArguments
    args = ReLATrainingArguments.from_config("demo", dataset_name="outputs/demo/fashion_mnist_rela",
                                             output_dir="outputs/notebook")
    summary = ReLATrainer(args).train()      # a rela_hf.TrainingSummary

| module | holds |
|---|---|
| ``arguments.py`` | ``ReLATrainingArguments`` (every option, checked when built) |
| ``trainer.py`` | ``ReLATrainer``: setup, one epoch, after each optimizer step, finish; ``train(args)`` |
| ``state.py`` | ``RunState``: the run's position and progress, saved with every checkpoint |
| ``data.py``, ``targets.py`` | the data stage (split, checks, sampler, monitor); where the targets come from |
| ``student.py``, ``optimization.py`` | the student and its views' DataLoader; budget, AdamW, schedules, switch |
| ``step.py`` | ``training_step`` (one micro-batch, the method's hooks, the EMA), ``MetricMeans`` |
| ``checkpointing.py``, ``publishing.py``, ``run_log.py`` | save/restore; export, summary, pushes; trackers + history |
| ``views_dataset.py``, ``divergence.py`` | seeded per-sample views; stopping before non-finite weights are saved |
"""

from rela_hf._deprecation import Moved, moved_names
from rela_hf.training.arguments import RESUMABLE_OPTIONS, ReLATrainingArguments
from rela_hf.training.divergence import TrainingDiverged, check_finite_loss, check_finite_weights
from rela_hf.training.state import RunState
from rela_hf.training.step import MetricMeans, training_step
from rela_hf.training.trainer import ReLATrainer, make_accelerator, train
from rela_hf.training.views_dataset import ViewCollator, ViewDataset, forward_seed, sample_seed

__all__ = [
    "RESUMABLE_OPTIONS",
    "MetricMeans",
    "ReLATrainer",
    "ReLATrainingArguments",
    "RunState",
    "TrainingDiverged",
    "ViewCollator",
    "ViewDataset",
    "check_finite_loss",
    "check_finite_weights",
    "forward_seed",
    "make_accelerator",
    "sample_seed",
    "train",
    "training_step",
]

__getattr__ = moved_names(
    __name__,
    {
        "ViewPairDataset": Moved(
            "rela_hf.training:ViewDataset",
            "it takes ssl_views=[view1, view2] instead of byol_views=(view1, view2); its phases are 'rela' and "
            "'ssl' (was 'byol'); items hold 'views': [v1, v2] instead of 'view1'/'view2'.",
        ),
        "ViewPairCollator": Moved(
            "rela_hf.training:ViewCollator", "batches hold 'views': [v1, v2] instead of 'view1'/'view2'."
        ),
    },
)
