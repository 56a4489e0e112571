"""``ReLATrainingArguments``: every option of a training run, as one typed object.

The same object drives ``accelerate launch recipes/byol_rela.py`` (parsed from the command line
and ``--config``) and a notebook::

    from rela_hf.training import ReLATrainer, ReLATrainingArguments
    args = ReLATrainingArguments(dataset_name="outputs/demo/fashion_mnist_rela",
                                 output_dir="outputs/nb", max_train_steps=300)
    summary = ReLATrainer(args).train()

Options are grouped by subject (the groups are its dataclass bases, which ``--help`` lists);
every name comes from the one vocabulary of the five commands (:mod:`rela_hf.arguments`). Values
are checked when the object is built, before anything is loaded (:class:`~rela_hf.errors.ConfigError`).
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

from rela_hf.arguments import (
    DatasetArguments,
    PriorArguments,
    Rename,
    arg,
    mapping_option,
    pop_renamed,
    values_from_config,
)
from rela_hf.config import presets_dir as shipped_presets_dir
from rela_hf.errors import ConfigError
from rela_hf.handover import Handover
from rela_hf.methods import method_class, method_names
from rela_hf.methods.byol import BYOLOptions

__all__ = ["ADDED_OPTIONS", "RENAMED_OPTIONS", "RESUMABLE_OPTIONS", "ReLATrainingArguments"]

#: Options that may change when a run is resumed; all others are the run's identity (its
#: fingerprint), and a checkpoint made with another value refuses to load.
RESUMABLE_OPTIONS = frozenset(
    {
        "output_dir",
        "overwrite_output_dir",
        "resume_from_checkpoint",
        "report_to",
        "logging_steps",
        "checkpointing_steps",
        "checkpoints_total_limit",
        "dataloader_num_workers",
        "prior_batch_size",
        "torch_compile",
        "channels_last",
        "ddp_timeout",
        "push_to_hub",
        "hub_model_id",
        "hub_private_repo",
        "hub_strategy",
        "hub_always_push",
        "verify_images",
        "eval_dataset_name",
        "eval_split",
        "eval_steps",
        "max_eval_samples",
        "eval_bank_max_samples",
        "trust_remote_code",
        "verify_images_max_samples",
        "verify_images_num_proc",
    }
)

#: Options renamed in rela-hf 0.3 (the former names work, with a FutureWarning, until 0.4).
RENAMED_OPTIONS = (
    Rename("rela_dim", "target_dim"),
    Rename("hub_private", "hub_private_repo"),
    Rename("eval_max_samples", "max_eval_samples"),
    Rename("ssl_method", "method"),  # with the former --method rela|baseline: see _translate_method
)
_REPORT_TO = ("tensorboard", "wandb", "trackio", "all", "none")
_FORMER_METHODS = ("rela", "baseline")


@dataclass
class TrainingDataArguments(DatasetArguments):
    """The training images, their labels and targets, and how they are read."""

    _argument_group_name = "data"

    label_column: str | None = arg("label_column")
    target_column: str = arg("target_column")
    targets_dataset_name: str | None = arg("targets_dataset_name")
    targets_config_name: str | None = arg("targets_config_name")
    targets_revision: str | None = arg("targets_revision")
    max_train_samples: int | None = arg("max_train_samples")
    image_size: int = arg("image_size")
    data_ratio: float = arg("data_ratio")
    dataloader_num_workers: int = arg("dataloader_num_workers")
    view_pipeline: Literal["pil", "batched"] = arg("view_pipeline")
    verify_images: bool = arg("verify_images")
    verify_images_max_samples: int | None = arg("verify_images_max_samples")
    verify_images_num_proc: int | None = arg("verify_images_num_proc")


@dataclass
class StudentArguments:
    """The student network and ReLA's transfer head."""

    _argument_group_name = "student"

    backbone: str = arg("backbone")
    backbone_kwargs: str | None = arg("backbone_kwargs")
    cifar_stem: bool = arg("cifar_stem")
    projection_dim: int = arg("projection_dim")
    projector_hidden_dim: int | None = arg("projector_hidden_dim")
    predictor_hidden_dim: int | None = arg("predictor_hidden_dim")
    target_dim: int | None = arg("target_dim")
    trainable_transfer_head: bool = arg("trainable_transfer_head")


@dataclass
class MethodArguments:
    """The method ReLA accelerates, and when ReLA hands over to it."""

    _argument_group_name = "method"

    method: str = arg("method")
    use_rela: bool = arg("use_rela")
    method_options: str | None = arg("method_options")
    switch_rule: Literal["adaptive", "static"] = arg("switch_rule")
    switch_fraction: float | None = arg("switch_fraction")
    handover: Literal["hard", "fade", "regularize"] = arg("handover")
    handover_steps: int = arg("handover_steps")
    handover_weight: float = arg("handover_weight")


@dataclass
class OptimizationArguments:
    """The budget, the optimizer, the teacher's EMA and the seed."""

    _argument_group_name = "optimization"

    num_train_epochs: int = arg("num_train_epochs")
    max_train_steps: int | None = arg("max_train_steps")
    per_device_train_batch_size: int = arg("per_device_train_batch_size")
    gradient_accumulation_steps: int = arg("gradient_accumulation_steps")
    learning_rate: float = arg("learning_rate")
    weight_decay: float = arg("weight_decay")
    lr_scheduler_type: str = arg("lr_scheduler_type")
    warmup_steps: int = arg("warmup_steps")
    max_grad_norm: float | None = arg("max_grad_norm")
    momentum: float = arg("momentum")
    momentum_schedule: Literal["constant", "cosine"] = arg("momentum_schedule")
    seed: int = arg("seed")


@dataclass
class RuntimeArguments:
    """Devices, precision and distributed settings."""

    _argument_group_name = "runtime"

    mixed_precision: str | None = arg("mixed_precision")
    sync_batchnorm: bool = arg("sync_batchnorm")
    torch_compile: bool = arg("torch_compile")
    channels_last: bool = arg("channels_last")
    ddp_timeout: int = arg("ddp_timeout")


@dataclass
class OutputArguments:
    """The run folder, logging and checkpoints."""

    _argument_group_name = "outputs"

    output_dir: str = arg("output_dir", default="outputs/rela")
    overwrite_output_dir: bool = arg("overwrite_output_dir")
    resume_from_checkpoint: str | None = arg("resume_from_checkpoint")
    report_to: str = arg("report_to")
    logging_steps: int = arg("logging_steps")
    checkpointing_steps: int | None = arg("checkpointing_steps")
    checkpoints_total_limit: int | None = arg("checkpoints_total_limit")


@dataclass
class HubArguments:
    """Publishing the encoder on the Hub during and after training."""

    _argument_group_name = "hub"

    push_to_hub: bool = arg("push_to_hub")
    hub_model_id: str | None = arg("hub_model_id")
    hub_private_repo: bool | None = arg("hub_private_repo")
    hub_strategy: Literal["end", "every_save", "checkpoint"] = arg("hub_strategy")
    hub_always_push: bool = arg("hub_always_push")


@dataclass
class BestModelArguments:
    """Keeping the best model (on a validation split carved from the training data)."""

    _argument_group_name = "best model"

    load_best_model_at_end: bool = arg("load_best_model_at_end")
    metric_for_best_model: Literal["knn_accuracy", "linear_probe_accuracy"] = arg("metric_for_best_model")
    greater_is_better: bool | None = arg("greater_is_better")
    train_val_split: float = arg("train_val_split")


@dataclass
class MonitorArguments:
    """The online kNN monitor on a held-out split."""

    _argument_group_name = "monitor"

    eval_dataset_name: str | None = arg("eval_dataset_name")
    eval_split: str | None = arg("eval_split")
    eval_steps: int | None = arg("eval_steps")
    max_eval_samples: int | None = arg("max_eval_samples", default=1000)
    eval_bank_max_samples: int = arg("eval_bank_max_samples")


@dataclass
class ReLATrainingArguments(
    TrainingDataArguments,
    PriorArguments,
    StudentArguments,
    MethodArguments,
    OptimizationArguments,
    RuntimeArguments,
    OutputArguments,
    HubArguments,
    BestModelArguments,
    MonitorArguments,
):
    """Every option of a ReLA training run (see the module docstring); checked when built.

    Raises:
        ConfigError: an option value is wrong (the message names it and the fix).
    """

    renamed: ClassVar[tuple[Rename, ...]] = RENAMED_OPTIONS

    def __post_init__(self) -> None:
        self._check_method()
        self._check_data()
        self._check_optimization()
        self._check_outputs()
        self.method_options_object()  # parses and checks, or a clear error
        self.backbone_kwargs_dict()

    @classmethod
    def from_config(
        cls, path_or_preset: str, presets_dir: Path | None = None, **overrides: Any
    ) -> ReLATrainingArguments:
        """Arguments from a YAML config file or a shipped preset, with ``overrides`` on top."""
        presets_dir = presets_dir or shipped_presets_dir()
        values = values_from_config(
            cls, path_or_preset, renames=cls.renamed, presets_dir=presets_dir, translate=translate_former_values
        )
        return cls(**{**values, **overrides})

    # --- derived values -----------------------------------------------------------------------
    def handover_rule(self) -> Handover:
        """How ReLA hands over at the switch (:mod:`rela_hf.handover`)."""
        return Handover(self.handover, steps=self.handover_steps, weight=self.handover_weight)

    @property
    def monitor_enabled(self) -> bool:
        """Whether the online kNN monitor runs (``eval_steps`` of 0 or none turns it off)."""
        return bool(self.eval_steps)

    @property
    def labels(self) -> str | None:
        """The label column, ``None`` when turned off with ``none``."""
        return None if self.label_column in (None, "none") else self.label_column

    def to_dict(self) -> dict[str, Any]:
        """All options as one flat dict (the format of ``--config`` files)."""
        return dataclasses.asdict(self)

    def run_config(self) -> dict[str, Any]:
        """The options that define the run (its fingerprint): all but :data:`RESUMABLE_OPTIONS`."""
        return {k: v for k, v in self.to_dict().items() if k not in RESUMABLE_OPTIONS}

    def method_options_object(self) -> Any:
        """The method's ``Options``: ``method_options`` (+ the BYOL flags, for BYOL)."""
        values = mapping_option(self.method_options, "method_options")
        byol_flags = {
            "projection_dim": self.projection_dim,
            "projector_hidden_dim": self.projector_hidden_dim,
            "predictor_hidden_dim": self.predictor_hidden_dim,
        }
        if self.method == "byol":
            values = {**byol_flags, **values}
        elif any(value != getattr(BYOLOptions(), key) for key, value in byol_flags.items()):
            raise ConfigError(
                f"projection_dim / projector_hidden_dim / predictor_hidden_dim are BYOL's; for the "
                f"{self.method} method pass its options in method_options."
            )
        try:
            return method_class(self.method).options_from(values)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"method_options for {self.method}: {error}") from error

    def backbone_kwargs_dict(self) -> dict[str, Any]:
        """``backbone_kwargs`` as a dict (a JSON string on the command line, a mapping in YAML)."""
        return mapping_option(self.backbone_kwargs, "backbone_kwargs")

    # --- checks -------------------------------------------------------------------------------
    def _check_method(self) -> None:
        if self.method not in method_names():
            raise ConfigError(f"method {self.method!r} is not one of {list(method_names())}.")
        if self.use_rela and self.switch_rule == "static" and self.switch_fraction is None:
            raise ConfigError("switch_rule static needs switch_fraction c in [0, 1].")
        if self.switch_fraction is not None and not 0.0 <= self.switch_fraction <= 1.0:
            raise ConfigError(f"switch_fraction must be in [0, 1], got {self.switch_fraction}.")
        try:
            self.handover_rule()
        except ValueError as error:
            raise ConfigError(f"handover: {error}") from error

    def _check_data(self) -> None:
        if not self.dataset_name:
            raise ConfigError("dataset_name is required (a Hub id, an image folder or a save_to_disk folder).")
        if not 0.0 < self.data_ratio <= 1.0:
            raise ConfigError(f"data_ratio must be in (0, 1], got {self.data_ratio}.")
        for name in ("max_train_samples", "verify_images_max_samples", "verify_images_num_proc"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1 (or none), got {getattr(self, name)}.")
        if self.eval_steps is not None and self.eval_steps < 0:
            raise ConfigError(f"eval_steps must be >= 0 (0: no monitor), got {self.eval_steps}.")
        if self.monitor_enabled and not self.eval_split:
            raise ConfigError("eval_steps needs eval_split (a held-out split with labels), or eval_steps 0.")
        if self.targets_dataset_name and not self.use_rela:
            raise ConfigError("targets_dataset_name gives ReLA targets, but use_rela is false.")
        if self.load_best_model_at_end and not 0.0 < self.train_val_split < 1.0:
            raise ConfigError(
                f"train_val_split must be in (0, 1) for load_best_model_at_end, got {self.train_val_split}."
            )

    def _check_optimization(self) -> None:
        if self.mixed_precision not in (None, "no", "fp16", "bf16"):
            raise ConfigError(f"mixed_precision must be no, fp16 or bf16, got {self.mixed_precision!r}.")
        if not 0.0 <= self.momentum <= 1.0:
            raise ConfigError(f"momentum must be in [0, 1], got {self.momentum}.")
        for name in ("per_device_train_batch_size", "gradient_accumulation_steps", "logging_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")

    def _check_outputs(self) -> None:
        if self.report_to not in _REPORT_TO:
            raise ConfigError(f"report_to must be one of {', '.join(_REPORT_TO)}, got {self.report_to!r}.")
        if self.push_to_hub and not self.hub_model_id:
            raise ConfigError("push_to_hub needs hub_model_id (org/name).")
        if self.resume_from_checkpoint == "hub" and not self.hub_model_id:
            raise ConfigError("resume_from_checkpoint hub needs hub_model_id (the repo the run pushed to).")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ConfigError(f"checkpoints_total_limit must be >= 1 or none, got {self.checkpoints_total_limit}.")


def translate_former_values(values: dict[str, Any], explicit: set[str]) -> dict[str, Any]:
    """rela-hf 0.2's ``--method rela|baseline`` (+ ``--ssl_method``) in 0.3's terms.

    In 0.2 ``--method`` said whether ReLA ran (``rela``; ``baseline`` or its alias ``byol``: the
    method alone) and ``--ssl_method`` named the method. Now ``--method`` names the method and
    ``--use_rela`` says whether ReLA runs.
    """
    given, ssl_method = pop_renamed(values, "ssl_method")
    method = values.get("method")
    former = "method" in explicit and (method in _FORMER_METHODS or (given and method == "byol"))
    if former:
        use_rela = method == "rela"
        values["use_rela"] = use_rela
        values["method"] = ssl_method if given else "byol"
        warnings.warn(
            f"--method {method} is rela-hf 0.2's meaning: it is now --use_rela {str(use_rela).lower()}, and "
            f"--method names the method (--method {values['method']}); the old form works until rela-hf 0.4.",
            FutureWarning,
            stacklevel=3,
        )
    elif given:
        values["method"] = ssl_method
        warnings.warn(Rename("ssl_method", "method").message(), FutureWarning, stacklevel=3)
    return values


#: Options added in rela-hf 0.3, at the value that reproduces what runs did before them (their
#: defaults). A checkpoint whose config lacks one of them resumes when this run leaves it there
#: (rela_hf.checkpoint.config_diff); any other value is a different run, as usual.
ADDED_OPTIONS: dict[str, Any] = {
    field.name: field.default
    for field in dataclasses.fields(ReLATrainingArguments)
    if field.name
    in {
        "view_pipeline",
        "handover",
        "handover_steps",
        "handover_weight",
        "load_best_model_at_end",
        "metric_for_best_model",
        "greater_is_better",
        "train_val_split",
        "targets_dataset_name",
        "targets_config_name",
        "targets_revision",
    }
}
