"""One command-line parser for the five commands: HfArgumentParser + ``--config`` + renamed flags.

Every command's options are a dataclass (a flat class composed of option *groups*, so ``--help``
lists them by subject and a notebook builds one typed object). :func:`parse_command_line` adds
what all five share:

- ``--config``: a YAML file, or a preset name of the command's ``configs/`` folder, gives the
  defaults; flags override them (timm's two-stage configuration).
- **Any option can be turned off from the command line**: an optional option takes ``none``
  (``--prior none`` undoes a preset's prior), a boolean takes ``false``.
- **Renamed options keep working for one release**: the old flag (or YAML key) is still accepted
  and a ``FutureWarning`` names the new one (:class:`Rename`).

Errors in option values raise :class:`~rela_hf.errors.ConfigError` (the console commands print
it on one line).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import types
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from transformers import HfArgumentParser
from transformers.hf_argparser import DataClassType

from rela_hf.config import ConfigFileError, config_argument, read_config
from rela_hf.errors import ConfigError

__all__ = [
    "NONE_WORDS",
    "Rename",
    "build_parser",
    "explicit_options",
    "mapping_option",
    "option_names",
    "parse_command_line",
    "pop_renamed",
    "values_from_config",
]

T = TypeVar("T")
NONE_WORDS = frozenset({"none", "null"})
"""Values that turn an optional option off on the command line."""
_LEGACY_PREFIX = "_renamed_"
_NOT_GIVEN = object()


@dataclasses.dataclass(frozen=True)
class Rename:
    """An option renamed in this release: ``--old`` still works, with a FutureWarning.

    Attributes:
        old: The former name.
        new: The current name (must be an option of the command).
        flag: The former name was a switch without a value (``--private``).
        invert: The former name was a negative switch of the boolean ``new`` (``--no_card`` for
            ``--write_card false``).
    """

    old: str
    new: str
    flag: bool = False
    invert: bool = False

    def message(self) -> str:
        new = f"--{self.new} false" if self.invert else f"--{self.new}"
        return (
            f"--{self.old} is renamed {new} (rela-hf 0.3); the old name works until "
            "rela-hf 0.4. Update your command line or config file."
        )


def _is_optional(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(annotation)


def _none_or(parse: Callable[[str], Any] | None) -> Callable[[str], Any]:
    def parse_value(text: str) -> Any:
        if text.strip().lower() in NONE_WORDS:
            return None
        return parse(text) if parse is not None else text

    parse_value.__name__ = getattr(parse, "__name__", "str")  # argparse names the type in errors
    return parse_value


def _groups(argument_class: type) -> tuple[DataClassType, ...]:
    """The option groups of a command's flat arguments class (its dataclass bases), or itself."""
    bases = tuple(base for base in argument_class.__bases__ if dataclasses.is_dataclass(base))
    return tuple(DataClassType(group) for group in bases or (argument_class,))


def build_parser(
    argument_class: type,
    *,
    renames: Sequence[Rename] = (),
    description: str | None = None,
    presets_dir: Path | None = None,
) -> HfArgumentParser:
    """The command's parser: its option groups, ``--config``, and the former names (hidden)."""
    parser = HfArgumentParser(
        _groups(argument_class), description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    hints = typing.get_type_hints(argument_class)
    actions = {action.dest: action for action in parser._actions}
    for name, annotation in hints.items():
        if name in actions and _is_optional(annotation):
            parse = actions[name].type
            assert not isinstance(parse, str)  # HfArgumentParser gives callables, never type names
            actions[name].type = _none_or(parse)
    presets = sorted(p.stem for p in presets_dir.glob("*.yaml")) if presets_dir and presets_dir.is_dir() else []
    parser.add_argument(
        "--config",
        type=str,
        default=None,
        help="YAML file of option values (keys = option names); flags override it."
        + (f" Presets: {presets}." if presets else ""),
    )
    for rename in renames:
        new = actions.get(rename.new)
        if new is None:
            raise ValueError(f"Rename {rename}: --{rename.new} is not an option of this command.")
        switch = rename.flag or rename.invert
        kwargs: dict[str, Any] = (
            {"action": "store_true"} if switch else {"type": new.type, "nargs": new.nargs, "choices": new.choices}
        )
        if new.const is not None and not switch:
            kwargs["const"] = new.const
        parser.add_argument(
            f"--{rename.old}", dest=_LEGACY_PREFIX + rename.old, default=_NOT_GIVEN, help=argparse.SUPPRESS, **kwargs
        )
    return parser


def _config_values(
    parser: HfArgumentParser, path: str, renames: Sequence[Rename], presets_dir: Path | None
) -> dict[str, Any]:
    """A config file's values as parser defaults (former keys go to their hidden options)."""
    known = {a.dest for a in parser._actions if not a.dest.startswith(_LEGACY_PREFIX)} - {"help", "config"}
    known |= {rename.old for rename in renames}
    try:
        values = read_config(path, known=known, presets_dir=presets_dir)
    except ConfigFileError as error:
        raise ConfigError(str(error)) from error
    old_names = {rename.old for rename in renames}
    return {(_LEGACY_PREFIX + key if key in old_names else key): value for key, value in values.items()}


def _apply_renames(values: dict[str, Any], renames: Sequence[Rename]) -> dict[str, Any]:
    """Move values given under former names to the current ones, with a FutureWarning each."""
    for rename in renames:
        value = values.pop(_LEGACY_PREFIX + rename.old, _NOT_GIVEN)
        if value is not _NOT_GIVEN:
            warnings.warn(rename.message(), FutureWarning, stacklevel=3)
            values[rename.new] = (not value) if rename.invert else value
    return values


def pop_renamed(values: dict[str, Any], old: str) -> tuple[bool, Any]:
    """``(given, value)`` of the former option ``old`` in parsed values, removing it (for a
    ``translate`` hook that gives a former name its own treatment)."""
    value = values.pop(_LEGACY_PREFIX + old, _NOT_GIVEN)
    return value is not _NOT_GIVEN, (None if value is _NOT_GIVEN else value)


Translate = Callable[[dict[str, Any], set[str]], dict[str, Any]]


def parse_command_line(
    argument_class: type[T],
    argv: Sequence[str] | None = None,
    *,
    renames: Sequence[Rename] = (),
    presets_dir: Path | None = None,
    description: str | None = None,
    rewrite_argv: Callable[[list[str]], list[str]] | None = None,
    translate: Translate | None = None,
) -> T:
    """Parse ``argv`` (default ``sys.argv[1:]``) into one ``argument_class`` object.

    Args:
        argument_class: The command's flat dataclass (its bases are the option groups).
        argv: The command line.
        renames: Options renamed in this release (still accepted, with a FutureWarning).
        presets_dir: Where ``--config <preset>`` looks for ``<preset>.yaml``.
        description: The command's one-line description for ``--help``.
        rewrite_argv: A first hook on the raw command line, for a former name that is a current
            name with another meaning (rela-hf-evaluate's former ``--dataset_name``).
        translate: A hook on the parsed values and the set of option names given explicitly (on
            the command line or in the config file), before the former names are moved to the
            current ones: for former *values* of an option (the former ``--method rela``).

    Raises:
        ConfigError: a config file or an option value is wrong (the message says which and why).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if rewrite_argv is not None:
        argv = rewrite_argv(argv)
    parser = build_parser(argument_class, renames=renames, description=description, presets_dir=presets_dir)
    config_path = config_argument(argv)
    explicit = explicit_options(argv)
    if config_path is not None:
        config_values = _config_values(parser, config_path, renames, presets_dir)
        parser.set_defaults(**config_values)
        explicit |= {key.removeprefix(_LEGACY_PREFIX) for key in config_values}
    namespace, unknown = parser.parse_known_args(argv)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    values = {k: v for k, v in vars(namespace).items() if k != "config"}
    if translate is not None:
        values = translate(values, explicit)
    values = _apply_renames(values, renames)
    # argument_class is a dataclass, but its TypeVar is not bound to DataclassInstance (hence the ignore)
    fields = {f.name for f in dataclasses.fields(argument_class) if f.init}  # type: ignore[arg-type]
    return argument_class(**{k: v for k, v in values.items() if k in fields})


def option_names(argument_class: type) -> list[str]:
    """The option names of a command (for the vocabulary test and docs)."""
    return [f.name for f in dataclasses.fields(argument_class) if f.init]


def explicit_options(argv: Iterable[str]) -> set[str]:
    """Option names given on a command line (``--name`` or ``--name=value``)."""
    return {token[2:].split("=", 1)[0] for token in argv if token.startswith("--")}


def mapping_option(value: str | Mapping[str, Any] | None, flag: str) -> dict[str, Any]:
    """A JSON-object option: a JSON string on the command line, a mapping in YAML, or none."""
    if value is None or isinstance(value, Mapping):
        return dict(value or {})
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ConfigError(f"--{flag} is not valid JSON ({error}): {value!r}") from error
    if not isinstance(parsed, dict):
        raise ConfigError(f"--{flag} must be a JSON object, got {value!r}.")
    return parsed


def values_from_config(
    argument_class: type,
    path_or_preset: str,
    *,
    renames: Sequence[Rename] = (),
    presets_dir: Path | None = None,
    translate: Translate | None = None,
) -> dict[str, Any]:
    """A config file's option values under their current names (for ``from_config`` in Python)."""
    parser = build_parser(argument_class, renames=renames, presets_dir=presets_dir)
    values = _config_values(parser, path_or_preset, renames, presets_dir)
    explicit = {key.removeprefix(_LEGACY_PREFIX) for key in values}
    if translate is not None:
        values = translate(values, explicit)
    return _apply_renames(values, renames)
