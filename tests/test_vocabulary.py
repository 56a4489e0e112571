"""The five commands speak one vocabulary: one name, one meaning (rela_hf.arguments, scripts/vocabulary.py)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
import typing
import warnings

import pytest

from rela_hf.arguments import FLAGS, build_parser, parse_command_line
from rela_hf.arguments.parser import _apply_renames
from rela_hf.config import presets_dir
from rela_hf.training import ReLATrainingArguments
from rela_hf.training.arguments import translate_former_values
from scripts.vocabulary import REPO, command_classes, command_renames

CLASSES = command_classes()
RENAMES = command_renames()

#: rela-hf 0.2 names that meant different things in different commands (or were vague): none of
#: them may be a current option name.
AMBIGUOUS_FORMER_NAMES = {
    "dataset",
    "dataset_config",
    "split",
    "revision",
    "k",
    "batch_size",
    "private",
    "repo_id",
    "encoder",
    "folder",
    "config_name",
    "temperature",
    "lr",
    "epochs",
    "num_workers",
    "max_samples",
    "rela_dim",
    "ssl_method",
    "hub_private",
    "eval_max_samples",
    "train_limit",
    "test_limit",
    "test_split",
    "max_test_samples",
    "random_init",
    "no_card",
}


def _hints(cls: type) -> dict[str, str]:
    """Each option's type, ``| None`` dropped (a command may let an option be omitted; that
    changes its default, not its meaning)."""
    hints = {}
    for name, hint in typing.get_type_hints(cls).items():
        if name in {f.name for f in dataclasses.fields(cls)}:
            args = [a for a in typing.get_args(hint) if a is not type(None)]
            base = args[0] if len(args) == 1 and typing.get_origin(hint) in (typing.Union, types.UnionType) else hint
            hints[name] = getattr(base, "__name__", None) if isinstance(base, type) else str(base)
    return hints


def _optional(cls: type) -> set[str]:
    return {name for name, hint in typing.get_type_hints(cls).items() if type(None) in typing.get_args(hint)}


@pytest.mark.parametrize("command", sorted(CLASSES))
def test_every_option_comes_from_the_vocabulary(command):
    """Each option's help is the vocabulary's one meaning, and the parser builds (no clashes)."""
    cls = CLASSES[command]
    for field in dataclasses.fields(cls):
        assert field.name in FLAGS, f"{command}: --{field.name} is not in the vocabulary"
        assert field.metadata["help"] == FLAGS[field.name][0], f"{command}: --{field.name} has its own help"
    build_parser(cls, renames=RENAMES[command])


def test_one_name_one_meaning_across_the_five_commands():
    types: dict[str, set[str]] = {}
    for cls in CLASSES.values():
        for name, hint in _hints(cls).items():
            types.setdefault(name, set()).add(hint)
    clashes = {name: hints for name, hints in types.items() if len(hints) > 1}
    assert not clashes, f"options whose type differs between commands: {clashes}"
    meanings = [help_text for help_text, _ in FLAGS.values()]
    assert len(meanings) == len(set(meanings)), "two option names share one meaning"
    current = set(types)
    assert not current & AMBIGUOUS_FORMER_NAMES, f"ambiguous names still in use: {current & AMBIGUOUS_FORMER_NAMES}"
    # every command reads the dataset through the same three names
    for command in ("rela-hf-targets", "rela-hf-train", "rela-hf-evaluate"):
        assert {"dataset_name", "dataset_config_name", "dataset_revision"} <= set(_hints(CLASSES[command]))


def test_the_table_in_docs_is_up_to_date():
    result = subprocess.run(
        [sys.executable, "scripts/vocabulary.py", "--check"], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


_VALUES = {"int": "7", "float": "0.5", "bool": "true", "str": "x"}


def _value_for(hint: str) -> str:
    for key, value in _VALUES.items():
        if key in hint:
            return value
    return "x"


@pytest.mark.parametrize(
    ("command", "rename"), [(c, r) for c, items in sorted(RENAMES.items()) for r in items if r.old != "ssl_method"]
)
def test_former_names_work_with_a_warning_that_names_the_new_one(command, rename):
    cls = CLASSES[command]
    parser = build_parser(cls, renames=RENAMES[command])
    if rename.flag or rename.invert:
        old_argv, expected = [f"--{rename.old}"], (not rename.invert)
    else:
        choices = next(a.choices for a in parser._actions if a.dest == rename.new)
        text = str(choices[0]) if choices else _value_for(_hints(cls)[rename.new])
        old_argv = [f"--{rename.old}", text]
        expected = vars(parser.parse_args([f"--{rename.new}", text]))[rename.new]
    values = vars(parser.parse_args(old_argv))
    values.pop("config")
    with pytest.warns(FutureWarning, match=f"--{rename.new}"):
        values = _apply_renames(values, RENAMES[command])
    assert values[rename.new] == expected


def _train_args(*argv: str) -> ReLATrainingArguments:
    return parse_command_line(
        ReLATrainingArguments,
        ["--dataset_name", "some/data", *argv],
        presets_dir=presets_dir(),
        renames=ReLATrainingArguments.renamed,
        translate=translate_former_values,
    )


@pytest.mark.parametrize(
    ("argv", "method", "use_rela"),
    [
        (["--method", "rela", "--ssl_method", "dino"], "dino", True),
        (["--method", "baseline"], "byol", False),
        (["--method", "byol", "--ssl_method", "simclr"], "simclr", False),  # 0.2: byol meant "baseline"
        (["--ssl_method", "dino"], "dino", True),
    ],
)
def test_former_method_values_mean_what_they_meant(argv, method, use_rela):
    with pytest.warns(FutureWarning, match="--method|--use_rela"):
        args = _train_args("--prior", "p", *argv)
    assert (args.method, args.use_rela) == (method, use_rela)


def test_method_has_one_meaning_now():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the current vocabulary warns about nothing
        args = _train_args("--method", "supervised", "--use_rela", "false")
    assert (args.method, args.use_rela) == ("supervised", False)


def test_any_preset_option_can_be_turned_off():
    """The demo preset enables the monitor, a label column and image checks: all can go."""
    args = _train_args(
        "--config",
        "demo",
        "--eval_steps",
        "0",
        "--label_column",
        "none",
        "--verify_images",
        "false",
        "--checkpointing_steps",
        "none",
        "--eval_split",
        "none",
    )
    assert not args.monitor_enabled and args.labels is None and args.verify_images is False
    optional = sorted(_optional(ReLATrainingArguments) - {"dataset_name"})
    for name in optional:
        assert getattr(_train_args("--prior", "p", f"--{name}", "none"), name) is None, name
