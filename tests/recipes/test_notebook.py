"""Training from Python, as the README's notebook snippet does (no command line, no argv)."""

from __future__ import annotations

import re

from rela_hf.run_layout import TrainingSummary
from tests.recipes import REPO

#: what the test changes in the README's snippet: the data and output paths, a tiny budget
REPLACEMENTS = {
    '"outputs/demo/fashion_mnist_rela"': "DATA",
    '"outputs/notebook"': "OUTPUT_DIR",
    "max_train_steps=300": "max_train_steps=4",
    "per_device_train_batch_size=128": "per_device_train_batch_size=8",
}


def readme_snippet() -> str:
    """The python block after the ``<!-- notebook -->`` marker of the README."""
    text = (REPO / "README.md").read_text()
    match = re.search(r"<!-- notebook -->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md has no <!-- notebook --> python snippet"
    return match.group(1)


def test_the_readme_notebook_snippet_trains(rela_data, tmp_path, capsys):
    code = readme_snippet()
    for old, new in REPLACEMENTS.items():
        assert old in code, f"the README snippet no longer contains {old}"
        code = code.replace(old, new)
    namespace = {"DATA": str(rela_data), "OUTPUT_DIR": str(tmp_path / "notebook")}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - the README's own code
    summary = namespace["summary"]
    assert isinstance(summary, TrainingSummary) and summary.steps == 4 and summary.switch_step == 2
    assert (tmp_path / "notebook" / "backbone" / "model.safetensors").is_file()
    assert "rela_loss" in capsys.readouterr().out  # what the snippet prints
