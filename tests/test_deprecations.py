"""Names that moved in 0.2 still import from their 0.1 place, warn, and are the new objects.

The table below is the contract of CHANGELOG.md's "Migrating from 0.1 / 0.2" section: each row is
read from its old place, must raise a ``FutureWarning`` that names the new place, and must give
the very object found there (the ``is`` check: classes, functions, constants alike). The shims
are rela_hf/_deprecation.py's ``moved_names``; the modules that are gone (``rela_hf.byol``,
``rela_hf.cards``, ``rela_hf.constants``) are thin shim modules that also warn on import.
"""

from __future__ import annotations

import importlib
import re
import sys
import warnings

import pytest
import torch

from rela_hf._deprecation import resolve
from tests.recipes import REPO

# (0.1 module, 0.1 name, new place "module:attribute"); names that kept their place are not here
MOVED = [
    ("rela_hf.byol", "BYOL_OUT_DIM", "rela_hf.methods.byol:BYOL_OUT_DIM"),
    ("rela_hf.byol", "BYOL_PAPER_HIDDEN_DIM", "rela_hf.methods.byol:BYOL_PAPER_HIDDEN_DIM"),
    ("rela_hf.byol", "ProjectionHead", "rela_hf.heads:ProjectionHead"),
    ("rela_hf.byol", "byol_loss", "rela_hf.methods.byol:byol_loss"),
    ("rela_hf.byol", "byol_predictor", "rela_hf.methods.byol:byol_predictor"),
    ("rela_hf.byol", "byol_projector", "rela_hf.methods.byol:byol_projector"),
    ("rela_hf.byol", "cosine_momentum", "rela_hf.momentum:cosine_momentum"),
    ("rela_hf.byol", "make_target_network", "rela_hf.momentum:make_target_network"),
    ("rela_hf.byol", "negative_cosine_similarity", "rela_hf.methods.byol:negative_cosine_similarity"),
    ("rela_hf.byol", "update_momentum", "rela_hf.momentum:update_momentum"),
    ("rela_hf.cards", "DATASET_CARD_TEMPLATE", "rela_hf.targets.card:DATASET_CARD_TEMPLATE"),
    ("rela_hf.cards", "DATASET_TAGS", "rela_hf.targets.card:DATASET_TAGS"),
    ("rela_hf.cards", "TEMPLATE_DIR", "rela_hf.card_templates:TEMPLATE_DIR"),
    ("rela_hf.cards", "render_dataset_card", "rela_hf.targets.card:render_dataset_card"),
    ("rela_hf.cards", "size_category", "rela_hf.targets.card:size_category"),
    ("rela_hf.constants", "IMAGENET_MEAN", "rela_hf.preprocessing:IMAGENET_MEAN"),
    ("rela_hf.constants", "IMAGENET_STD", "rela_hf.preprocessing:IMAGENET_STD"),
    ("rela_hf.card_templates", "BYOL_CITATION", "rela_hf.methods.byol:BYOL_CITATION"),
    ("rela_hf.evaluation", "EVAL_RESULTS_FORMAT_VERSION", "rela_hf.evaluation.results:EVAL_RESULTS_FORMAT_VERSION"),
    ("rela_hf.evaluation", "EVAL_RESULTS_NAME", "rela_hf.run_layout:RunLayout.EVAL_RESULTS"),
    ("rela_hf.evaluation", "eval_transform_for", "rela_hf.preprocessing:eval_transform"),
    ("rela_hf.hub", "BYOL_CITATION", "rela_hf.methods.byol:BYOL_CITATION"),
    ("rela_hf.hub", "BYOL_PAPER_ID", "rela_hf.methods.byol:BYOL.paper"),
    ("rela_hf.hub", "CARD_TAGS", "rela_hf.hub.model_card:CARD_TAGS"),
    ("rela_hf.hub", "CONFIG_NAME", "rela_hf.hub.export:CONFIG_NAME"),
    ("rela_hf.hub", "DATA_CONFIG_KEYS", "rela_hf.preprocessing:DATA_CONFIG_KEYS"),
    ("rela_hf.hub", "DEFAULT_COMMIT_MESSAGE", "rela_hf.hub.push:DEFAULT_COMMIT_MESSAGE"),
    ("rela_hf.hub", "EXPORT_FILES", "rela_hf.hub.export:EXPORT_FILES"),
    ("rela_hf.hub", "HISTORY_NAME", "rela_hf.run_layout:RunLayout.HISTORY"),
    ("rela_hf.hub", "INHERITED_PROVENANCE_KEYS", "rela_hf.hub.export:INHERITED_PROVENANCE_KEYS"),
    ("rela_hf.hub", "PLOT_NAME", "rela_hf.hub.push:PLOT_NAME"),
    ("rela_hf.hub", "PROTOCOL_TITLES", "rela_hf.hub.card_results:PROTOCOL_TITLES"),
    ("rela_hf.hub", "README_NAME", "rela_hf.hub.push:README_NAME"),
    ("rela_hf.hub", "RELA_PAPER_ID", "rela_hf.hub.export:RELA_PAPER_ID"),
    ("rela_hf.hub", "SUMMARY_NAME", "rela_hf.run_layout:RunLayout.SUMMARY"),
    ("rela_hf.hub", "TRAINING_CONFIG_NAME", "rela_hf.run_layout:RunLayout.CONFIG"),
    ("rela_hf.hub", "TRAINING_STATE_DIR", "rela_hf.hub.push:LEGACY_STATE_DIR"),
    ("rela_hf.hub", "UNSAFE_STATE_PATTERNS", "rela_hf.hub.push:UNSAFE_STATE_PATTERNS"),
    ("rela_hf.hub", "WEIGHTS_NAME", "rela_hf.hub.export:WEIGHTS_NAME"),
    ("rela_hf.hub", "training_data_config", "rela_hf.preprocessing:official_data_config"),
    ("rela_hf.priors", "ConvertRGB", "rela_hf.preprocessing:ConvertImageMode"),
    ("rela_hf.priors", "ImageProcessorTransform", "rela_hf.priors.image_processors:ImageProcessorTransform"),
    ("rela_hf.priors", "TimmPooledFeatures", "rela_hf.priors.timm_loader:TimmPooledFeatures"),
    ("rela_hf.priors", "TransformersPooledFeatures", "rela_hf.priors.transformers_loader:TransformersPooledFeatures"),
    ("rela_hf.rela", "AdaptiveSwitch", "rela_hf.switch:AdaptiveSwitch"),
    ("rela_hf.rela", "StaticSwitch", "rela_hf.switch:StaticSwitch"),
    ("rela_hf.rela", "build_switch", "rela_hf.switch:build_switch"),
    ("rela_hf.rela", "FAST_LOSS_DECAY", "rela_hf.switch:FAST_LOSS_DECAY"),
    ("rela_hf.rela", "FAST_LOSS_INIT", "rela_hf.switch:FAST_LOSS_INIT"),
    ("rela_hf.rela", "SLOW_LOSS_DECAY", "rela_hf.switch:SLOW_LOSS_DECAY"),
    ("rela_hf.rela", "SLOW_LOSS_INIT", "rela_hf.switch:SLOW_LOSS_INIT"),
    ("rela_hf.rela", "SWITCH_THRESHOLD", "rela_hf.switch:SWITCH_THRESHOLD"),
    ("rela_hf.rela", "PHASE_RELA", "rela_hf.switch:PHASE_RELA"),
    ("rela_hf.rela", "PHASE_BYOL", "rela_hf.switch:PHASE_SSL"),
    ("rela_hf.switch", "PHASE_BYOL", "rela_hf.switch:PHASE_SSL"),
    ("rela_hf.targets", "PCAWhitening", "rela_hf.whitening:PCAWhitening"),
    ("rela_hf.targets", "RELA_CITATION", "rela_hf.card_templates:RELA_CITATION"),
    ("rela_hf.views", "ConvertRGB", "rela_hf.preprocessing:ConvertImageMode"),
    ("rela_hf.views", "eval_transform", "rela_hf.preprocessing:eval_transform"),
    # moved or renamed in 0.3
    ("rela_hf.training", "ViewPairDataset", "rela_hf.training:ViewDataset"),
    ("rela_hf.training", "ViewPairCollator", "rela_hf.training:ViewCollator"),
    ("rela_hf.methods", "SSLMethod", "rela_hf.methods.base:Method"),
    ("rela_hf.methods.base", "SSLMethod", "rela_hf.methods.base:Method"),
    ("rela_hf.data", "find_unreadable_images", "rela_hf.image_checks:find_unreadable_images"),
]
# Old names with no exact new object: the shim rebuilds the 0.1 value from its replacement.
REBUILT = [
    ("rela_hf.priors", "LIBRARIES", "rela_hf.priors:prior_libraries", ("auto", "timm", "transformers")),
    (
        "rela_hf.hub",
        "RETRYABLE_STATUS",
        "huggingface_hub.utils:http_backoff",
        frozenset({408, 429, 500, 502, 503, 504}),
    ),
]
SHIM_MODULES = ["rela_hf.byol", "rela_hf.cards", "rela_hf.constants"]


def dotted(target: str) -> str:
    return target.replace(":", ".")


def read_old_name(module: str, name: str) -> tuple[object, list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        value = getattr(importlib.import_module(module), name)
    return value, caught


@pytest.mark.parametrize(("module", "name", "target"), MOVED, ids=lambda v: str(v))
def test_old_name_warns_and_is_the_new_object(module, name, target):
    value, caught = read_old_name(module, name)
    assert value is resolve(target)
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    assert any(f"{module}.{name} moved to {dotted(target)}" in m for m in messages), messages


@pytest.mark.parametrize(("module", "name", "target", "old_value"), REBUILT)
def test_old_constant_without_exact_successor_keeps_its_value(module, name, target, old_value):
    value, caught = read_old_name(module, name)
    assert value == old_value
    assert any(dotted(target) in str(w.message) for w in caught if w.category is FutureWarning)


def test_from_import_statement_warns_at_the_callers_line():
    new_place = r"rela_hf\.preprocessing\.official_data_config"
    with pytest.warns(FutureWarning, match=new_place) as record:
        from rela_hf.hub import training_data_config
    assert training_data_config(32) == {  # 0.1's documented result for a 32 px input
        "input_size": (3, 32, 32),
        "interpolation": "bilinear",
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "crop_pct": 1.0,
        "crop_mode": "center",
    }
    assert {w.filename for w in record} == {__file__}


@pytest.mark.parametrize("module", SHIM_MODULES)
def test_gone_module_warns_on_import(module, monkeypatch):
    monkeypatch.delitem(sys.modules, module, raising=False)  # import it afresh, restored after
    with pytest.warns(FutureWarning, match=rf"The module {re.escape(module)} is gone") as record:
        __import__(module)  # what an `import` statement runs (importlib.import_module adds a frame)
    assert record[0].filename == __file__  # points at the importing line, not at the shim


@pytest.mark.parametrize("module", sorted({row[0] for row in MOVED + REBUILT}))
def test_unknown_names_still_raise_attribute_error(module):
    message = rf"module '{re.escape(module)}' has no attribute 'nope'"
    with pytest.raises(AttributeError, match=message):
        importlib.import_module(module).nope  # noqa: B018


@pytest.mark.parametrize("module", sorted({row[0] for row in MOVED + REBUILT}))
def test_every_shim_is_in_this_table(module):
    """A module's moved names are exactly this table's rows for it (no untested shim)."""
    table = {row[1] for row in MOVED + REBUILT if row[0] == module}
    assert set(importlib.import_module(module).__getattr__.moved) == table


def test_changelog_lists_every_moved_name():
    changelog = (REPO / "CHANGELOG.md").read_text()
    rows = {}  # the migration table: | `old` | `new` | note |
    for line in changelog.splitlines():
        if line.startswith("| `rela_hf."):
            old, new = (cell.strip().strip("`") for cell in line.strip("|").split("|")[:2])
            rows[old] = new
    for module, name, target, *_ in MOVED + REBUILT:
        assert f"{module}.{name}" in rows, f"{module}.{name} is missing from CHANGELOG.md"
        assert rows[f"{module}.{name}"].removesuffix("()") == dotted(target)


def test_old_switch_behaves_as_documented():
    """0.1 code comparing the phase with PHASE_BYOL keeps working; the value itself is 'ssl'."""
    adaptive_switch, _ = read_old_name("rela_hf.rela", "AdaptiveSwitch")
    phase_byol, _ = read_old_name("rela_hf.rela", "PHASE_BYOL")
    switch = adaptive_switch()
    while not switch.update(1.0):
        pass
    assert switch.phase == phase_byol == "ssl"


def test_code_written_for_0_1_runs_through_the_shims():
    """The example of 0.1's rela_hf.byol docstring, plus an optimizer step so that the EMA moves
    (random tensors: their content is irrelevant here)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        from rela_hf.byol import (
            byol_loss,
            byol_predictor,
            byol_projector,
            make_target_network,
            update_momentum,
        )
    torch.manual_seed(0)
    projector = byol_projector(feature_dim=512)
    predictor = byol_predictor(hidden_dim=1024)
    target_projector = make_target_network(projector)
    h1, h2 = torch.randn(8, 512), torch.randn(8, 512)
    p1, p2 = predictor(projector(h1)), predictor(projector(h2))
    with torch.no_grad():
        z1, z2 = target_projector(h1), target_projector(h2)
    loss = byol_loss(p1, p2, z1, z2)
    loss.backward()
    torch.optim.SGD([*projector.parameters(), *predictor.parameters()], lr=0.1).step()
    online = [p.detach().clone() for p in projector.parameters()]
    target = [p.detach().clone() for p in target_projector.parameters()]
    update_momentum(projector, target_projector, momentum=0.99)
    assert -1.0 <= loss.item() <= 1.0
    for o, t, moved in zip(online, target, target_projector.parameters(), strict=True):
        torch.testing.assert_close(moved, 0.99 * t + 0.01 * o)  # BYOL's EMA, eq. 1


def test_moved_names_rejects_a_target_without_attribute():
    with pytest.raises(ValueError, match=r"must be 'package.module:attribute'"):
        resolve("rela_hf.switch")
