"""Loading is safe everywhere: no ``torch.load`` without ``weights_only=True``, no pickle, no YAML
loader that builds Python objects, no eval/exec, ``trust_remote_code`` off unless asked for.

An AST walk over every Python file of the package, the recipes, the benchmarks and the scripts
(the tests themselves may read what they wrote)."""

from __future__ import annotations

import ast
import inspect

import pytest

from rela_hf.priors import load_prior
from tests.recipes import REPO, load_recipe

SOURCES = sorted(p for folder in ("rela_hf", "recipes", "benchmarks", "scripts") for p in (REPO / folder).rglob("*.py"))


def calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield node, ast.unparse(node.func)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_unsafe_loading(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(n.split(".")[0] in ("pickle", "dill", "cloudpickle", "marshal") for n in names):
                problems.append(f"line {node.lineno}: imports {names}")
    for node, name in calls(tree):
        keywords = {k.arg: k.value for k in node.keywords}
        if name == "torch.load":
            value = keywords.get("weights_only")
            if not (isinstance(value, ast.Constant) and value.value is True):
                problems.append(f"line {node.lineno}: torch.load without weights_only=True")
        if name in ("yaml.load", "yaml.unsafe_load", "yaml.full_load", "yaml.load_all"):
            problems.append(f"line {node.lineno}: {name} (use yaml.safe_load)")
        if name in ("eval", "exec"):
            problems.append(f"line {node.lineno}: {name}")
        if isinstance(keywords.get("trust_remote_code"), ast.Constant) and keywords["trust_remote_code"].value is True:
            problems.append(f"line {node.lineno}: trust_remote_code=True hard-coded")
    assert not problems, f"{path.relative_to(REPO)}: {problems}"


def test_the_scan_sees_the_code():
    assert len(SOURCES) > 40 and any(p.name == "byol_rela.py" for p in SOURCES)


def test_trust_remote_code_is_off_unless_asked_for():
    assert inspect.signature(load_prior).parameters["trust_remote_code"].default is False
    make_targets = load_recipe("make_targets")
    assert (
        make_targets.parse_args(["--dataset_name", "d", "--prior", "p", "--output_dir", "o"]).trust_remote_code is False
    )
