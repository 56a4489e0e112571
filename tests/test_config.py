"""Tests for rela_hf.config: YAML config files and preset names for the recipes."""

from __future__ import annotations

import pytest

from rela_hf.config import ConfigFileError, config_argument, find_config, read_config
from rela_hf.errors import ConfigError
from tests.recipes import REPO, load_recipe

PRESETS = REPO / "recipes" / "configs"


def test_presets_by_name_and_files_by_path(tmp_path):
    assert find_config("demo", PRESETS) == PRESETS / "demo.yaml"
    assert find_config("demo.yaml", PRESETS) == PRESETS / "demo.yaml"
    own = tmp_path / "demo.yaml"
    own.write_text("seed: 1\n")
    assert find_config(str(own), PRESETS) == own  # a path wins over a preset of the same name
    with pytest.raises(ConfigFileError, match=r"no such file, nor a preset \(presets: \[.*'demo'"):
        find_config("dmeo", PRESETS)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("learning_rate: 0.1\nlearnig_rate: 0.2\n", r"unknown options \['learnig_rate'\]"),
        ("- 1\n- 2\n", "must hold a mapping"),
        ("seed: [1\n", "not valid YAML"),
        ("seed: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),  # safe_load only
    ],
)
def test_bad_files_are_refused_with_the_reason(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigFileError, match=message):
        read_config(str(path), known={"learning_rate", "seed"})


def test_config_argument_is_read_before_full_parsing():
    assert config_argument(["--seed", "3", "--config", "demo"]) == "demo"
    assert config_argument(["--seed", "3"]) is None


def test_make_targets_takes_a_yaml_config(tmp_path):
    recipe = load_recipe("make_targets")
    config = tmp_path / "targets.yaml"
    config.write_text("dataset_name: some/dataset\nprior: test_resnet\ntarget_dim: 8\noutput_dir: out\n")
    args = recipe.parse_args(["--config", str(config), "--target_dim", "16"])
    assert args.dataset_name == "some/dataset" and args.prior == "test_resnet" and args.target_dim == 16  # flag wins
    config.write_text("dataset: some/dataset\nprior: test_resnet\nk: 8\noutput_dir: out\n")  # rela-hf 0.2 keys
    with pytest.warns(FutureWarning, match="--target_dim"):
        assert recipe.parse_args(["--config", str(config)]).target_dim == 8
    config.write_text("dataset_name: some/dataset\nprior: test_resnet\nkk: 8\noutput_dir: out\n")
    with pytest.raises(ConfigError, match=r"unknown options.*kk"):
        recipe.parse_args(["--config", str(config)])
    with pytest.raises(ConfigError, match="--dataset_name is required"):
        recipe.parse_args(["--output_dir", "out"])  # --dataset_name and --prior are still required
