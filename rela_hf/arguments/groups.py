"""Option groups that several commands share (the dataset read, the prior that makes targets).

Each group is a dataclass of :func:`~rela_hf.arguments.vocabulary.arg` fields; a command's flat
arguments class inherits the groups it needs, so ``--help`` lists options by subject and a
notebook builds one typed object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rela_hf.arguments.vocabulary import arg

__all__ = ["DatasetArguments", "PriorArguments"]


@dataclass
class DatasetArguments:
    """The image dataset a command reads."""

    _argument_group_name = "dataset"

    dataset_name: str | None = arg("dataset_name")
    dataset_config_name: str | None = arg("dataset_config_name")
    dataset_revision: str | None = arg("dataset_revision")
    train_split: str = arg("train_split")
    image_column: str = arg("image_column")


@dataclass
class PriorArguments:
    """The prior model that turns images into ReLA targets (ReLA-D)."""

    _argument_group_name = "prior"

    prior: str | None = arg("prior")
    prior_revision: str | None = arg("prior_revision")
    prior_library: Literal["auto", "timm", "transformers"] = arg("prior_library")
    prior_preprocessing: Literal["prior", "official"] = arg("prior_preprocessing")
    prior_image_size: int | None = arg("prior_image_size")
    prior_batch_size: int = arg("prior_batch_size")
    trust_remote_code: bool = arg("trust_remote_code")
