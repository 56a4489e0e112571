"""docs/design.md's import rules, checked on the source (an AST walk; nothing is imported).

The module-level import graph of rela_hf is a DAG, no rela_hf import hides inside a function, the
library never imports a recipe, math never imports IO, the phase and the switch know no method,
leaves import nothing of rela_hf, ReLA-D (priors/, targets/) knows nothing of training, and
publishing (hub/) and evaluation read but never train. Run-folder file names are spelled in
run_layout.py alone.
"""

from __future__ import annotations

import ast
import configparser
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rela_hf"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(name: str, imported: str | None = None) -> str | None:
    """The rela_hf module an import refers to (``from a import b``: ``a.b`` if it is a module)."""
    if not name.startswith("rela_hf"):
        return None
    if imported and f"{name}.{imported}" in MODULES:
        return f"{name}.{imported}"
    return name if name in MODULES else None


def runtime_imports(module: str) -> tuple[set[str], list[str]]:
    """(rela_hf modules imported at module level outside TYPE_CHECKING, rela_hf imports found
    inside functions)."""
    tree = ast.parse(MODULES[module].read_text())
    top, hidden = set(), []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if isinstance(child, ast.ImportFrom):
                    base = child.module or ""
                    if child.level:  # relative import
                        package = module.split(".")[
                            : len(module.split(".")) - child.level + (MODULES[module].name == "__init__.py")
                        ]
                        base = ".".join([*package, base] if base else package)
                    targets = [_resolve(base, alias.name) for alias in child.names]
                else:
                    targets = [_resolve(alias.name) for alias in child.names]
                for target in filter(None, targets):
                    (hidden.append(target) if in_function else top.add(target))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top - {module}, hidden


GRAPH = {module: runtime_imports(module)[0] for module in MODULES}


def _in(module: str, *groups: str) -> bool:
    return any(module == g or module.startswith(g + ".") for g in groups)


LEAVES = (
    "rela_hf.preprocessing",
    "rela_hf.model_names",
    "rela_hf.run_layout",
    "rela_hf.card_templates",
    "rela_hf.errors",
    "rela_hf._deprecation",
    "rela_hf.config",
)
MATH = (
    "rela_hf.whitening",
    "rela_hf.switch",
    "rela_hf.rela",
    "rela_hf.heads",
    "rela_hf.momentum",
    "rela_hf.handover",
    "rela_hf.distributed",
    "rela_hf.methods",
    "rela_hf.model",
)
#: what math may use besides itself: the view pipelines (torchvision transforms, no IO) and leaves
MATH_MAY_USE = (*MATH, "rela_hf.views", "rela_hf.preprocessing", "rela_hf._deprecation", "rela_hf.errors")


def test_no_import_cycle():
    state: dict[str, int] = {}

    def walk(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*path, module, target])}")
            if target not in state:
                walk(target, [*path, module])
        state[module] = 2

    for module in MODULES:
        if module not in state:
            walk(module, [])


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_rela_hf_import_hides_in_a_function(module):
    assert not runtime_imports(module)[1], f"{module} imports {runtime_imports(module)[1]} inside a function"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_library_never_imports_a_recipe(module):
    assert not any(_in(t, "rela_hf.recipes") for t in GRAPH[module])


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, *MATH)))
def test_math_imports_no_io(module):
    outside = {t for t in GRAPH[module] if not _in(t, *MATH_MAY_USE)}
    assert not outside, f"{module} (math) imports {outside}"


@pytest.mark.parametrize("module", ["rela_hf.switch", "rela_hf.rela", "rela_hf.handover"])
def test_the_phase_and_the_switch_know_no_method(module):
    assert not any(_in(t, "rela_hf.methods", "rela_hf.model") for t in GRAPH[module])


@pytest.mark.parametrize("module", LEAVES)
def test_leaves_import_nothing_of_rela_hf(module):
    allowed = {"rela_hf._deprecation"} if module != "rela_hf._deprecation" else set()
    allowed |= {"rela_hf.errors"} if module == "rela_hf.config" else set()
    assert GRAPH[module] <= allowed, f"{module} imports {GRAPH[module] - allowed}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "rela_hf.priors", "rela_hf.targets")))
def test_relad_knows_nothing_of_training(module):
    forbidden = {
        t
        for t in GRAPH[module]
        if _in(
            t,
            "rela_hf.model",
            "rela_hf.training",
            "rela_hf.switch",
            "rela_hf.methods",
            "rela_hf.handover",
            "rela_hf.hub",
        )
    }
    assert not forbidden, f"{module} imports {forbidden}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _in(m, "rela_hf.hub", "rela_hf.evaluation")))
def test_publishing_and_evaluation_never_train(module):
    forbidden = {t for t in GRAPH[module] if _in(t, "rela_hf.model", "rela_hf.training", "rela_hf.switch")}
    assert not forbidden, f"{module} imports {forbidden}"


@pytest.mark.parametrize("literal", ["training_summary.json", "history.jsonl", "eval_results.json", "run_state.json"])
def test_run_folder_names_live_in_run_layout(literal):
    spelled = [
        name
        for name, path in MODULES.items()
        if name != "rela_hf.run_layout"
        and any(isinstance(n, ast.Constant) and n.value == literal for n in ast.walk(ast.parse(path.read_text())))
    ]
    assert not spelled, f"{literal!r} is spelled outside run_layout.py: {spelled}"


def test_every_package_ships_in_the_wheel():
    """setup.cfg lists its packages by name: a new package left out would be missing from wheels."""
    config = configparser.ConfigParser()
    config.read(PACKAGE.parent / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    packages = {module_name(p) for p in PACKAGE.rglob("__init__.py")}
    assert packages <= listed, f"not in setup.cfg [options] packages: {sorted(packages - listed)}"
