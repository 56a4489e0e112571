"""The options of the five commands: one vocabulary, one parser (HfArgumentParser + ``--config``).

- ``vocabulary.py``: every option name with its one meaning (:data:`FLAGS`, :func:`arg`);
- ``groups.py``: option groups several commands share (the dataset, the prior);
- ``parser.py``: :func:`parse_command_line` (presets, ``none``/``false`` to turn options off,
  renamed options that still work with a FutureWarning).
"""

from rela_hf.arguments.groups import DatasetArguments, PriorArguments
from rela_hf.arguments.parser import (
    NONE_WORDS,
    Rename,
    build_parser,
    explicit_options,
    mapping_option,
    option_names,
    parse_command_line,
    pop_renamed,
    values_from_config,
)
from rela_hf.arguments.vocabulary import FLAGS, arg

__all__ = [
    "FLAGS",
    "NONE_WORDS",
    "DatasetArguments",
    "PriorArguments",
    "Rename",
    "arg",
    "build_parser",
    "explicit_options",
    "mapping_option",
    "option_names",
    "parse_command_line",
    "pop_renamed",
    "values_from_config",
]
