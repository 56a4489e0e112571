"""recipes/byol_rela.py --push_to_hub against the test Hub."""

from __future__ import annotations

import datasets
import pytest
import timm
import torch
from huggingface_hub import HfApi
from PIL import Image
from safetensors.torch import load_file

from rela_hf.assets import fashion_mnist_dataset
from rela_hf.checkpoint import CheckpointError
from rela_hf.hub import build_hub_folder, read_training_history
from tests.recipes import load_recipe
from tests.recipes.trainer import args, one_thread, reset_accelerate


@pytest.mark.slow
def test_trainer_push_to_hub_publishes_the_run(hub, hub_namespace, fashion_mnist_slice, tmp_path):
    """recipes/byol_rela.py --push_to_hub: history.jsonl, card with curves, loadable backbone."""
    from accelerate.state import AcceleratorState, GradientState
    from huggingface_hub import ModelCard

    recipe = load_recipe("byol_rela")
    data = tmp_path / "data"
    fashion_mnist_slice.save_to_disk(str(data))
    repo_id = f"{hub_namespace}/byol-from-trainer"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = recipe.main([
            "--dataset_name", str(data), "--output_dir", str(tmp_path / "run"),
            "--backbone", "test_resnet", "--image_size", "32", "--method", "byol",
            "--per_device_train_batch_size", "8", "--max_train_steps", "4", "--logging_steps", "1",
            "--checkpointing_steps", "4", "--dataloader_num_workers", "0", "--report_to", "none",
            "--push_to_hub", "--hub_model_id", repo_id,
        ])
    finally:
        torch.set_num_threads(threads)
        AcceleratorState._reset_state(True)
        GradientState._reset_state()
    assert [r["step"] for r in read_training_history(tmp_path / "run")] == [1, 2, 3, 4]
    files = hub.files(repo_id)
    assert {"config.json", "model.safetensors", "README.md", "training_curves.png"} <= set(files)
    card = ModelCard.load(repo_id)
    assert card.data.library_name == "timm" and "](training_curves.png)" in card.text
    assert f"optimizer steps | {summary.steps}" in card.text
    model = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    exported = timm.create_model(f"local-dir:{tmp_path / 'run' / 'backbone'}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), exported(x))


class Killed(Exception):
    """Stands for the machine dying right after a push."""


def test_every_save_run_killed_resumes_from_the_hub_copy_bitwise(hub, hub_namespace, rela_data, tmp_path, monkeypatch):
    """--hub_strategy every_save: each checkpoint is on the Hub (backbone, card, training_state/);
    the machine dies after the push of step 10; a new machine resumes from the Hub copy into a new
    folder and ends bitwise equal to an uninterrupted run."""
    recipe = load_recipe("byol_rela")
    with one_thread():
        recipe.main(args(rela_data, tmp_path / "uninterrupted"))
    reset_accelerate()

    repo_id = f"{hub_namespace}/every-save"
    real_push = recipe.push_training_output

    def push_then_die(*a, **kw):
        commit = real_push(*a, **kw)
        if kw["checkpoint"].name == "checkpoint-10":
            raise Killed
        return commit

    monkeypatch.setattr(recipe, "push_training_output", push_then_die)
    hub_args = ["--push_to_hub", "--hub_model_id", repo_id, "--hub_strategy", "every_save"]
    with one_thread(), pytest.raises(Killed):
        recipe.main(args(rela_data, tmp_path / "first_machine", *hub_args))
    reset_accelerate()
    files = hub.files(repo_id)
    assert {"config.json", "model.safetensors", "README.md", "training_state/run_state.json",
            "training_state/model.safetensors", "training_state/optimizer.bin"} <= set(files)
    assert not [name for name in files if name.endswith(".pkl")]
    assert b'"step": 10' in files["training_state/run_state.json"]

    monkeypatch.setattr(recipe, "push_training_output", real_push)
    with one_thread():
        summary = recipe.main(args(rela_data, tmp_path / "second_machine", *hub_args, "--resume_from_checkpoint", "hub"))
    reset_accelerate()
    assert summary.steps == 20 and summary.switch_step == 6
    resumed = load_file(tmp_path / "second_machine" / "checkpoint-20" / "model.safetensors")
    reference = load_file(tmp_path / "uninterrupted" / "checkpoint-20" / "model.safetensors")
    assert resumed.keys() == reference.keys()
    for key in resumed:
        assert torch.equal(resumed[key], reference[key]), key
    # the pushed history came along (5, the switch at 6, 10): the curves do not start at 15
    assert [r["step"] for r in read_training_history(tmp_path / "second_machine")] == [5, 6, 10, 15, 20]
    assert b'"step": 20' in hub.files(repo_id)["training_state/run_state.json"]


def test_resume_from_a_hub_repo_without_state_is_refused(hub, hub_namespace, rela_data, tmp_path):
    recipe = load_recipe("byol_rela")
    repo_id = f"{hub_namespace}/no-state"
    HfApi().create_repo(repo_id)
    with pytest.raises(CheckpointError, match="holds no training_state/"):
        recipe.main(args(rela_data, tmp_path / "x", "--hub_model_id", repo_id, "--resume_from_checkpoint", "hub"))
    reset_accelerate()


def test_online_knn_monitor_logs_to_history_and_card_and_changes_nothing(fashion_mnist_slice, tmp_path):
    recipe = load_recipe("byol_rela")
    data = tmp_path / "data"
    datasets.DatasetDict({"train": fashion_mnist_slice,
                          "test": fashion_mnist_dataset("test", limit=40, seed=0)}).save_to_disk(str(data))
    common = ["--method", "baseline", "--max_train_steps", "6", "--logging_steps", "2"]
    with one_thread():
        plain = recipe.main(args(data, tmp_path / "plain", *common))
        reset_accelerate()
        monitored = recipe.main(args(data, tmp_path / "monitored", *common, "--eval_split", "test",
                                     "--eval_steps", "3", "--eval_max_samples", "40", "--eval_bank_max_samples", "64"))
    reset_accelerate()
    history = read_training_history(tmp_path / "monitored")
    knn = {r["step"]: r["eval/knn_accuracy"] for r in history if "eval/knn_accuracy" in r}
    assert sorted(knn) == [3, 6] and all(0.0 <= v <= 1.0 for v in knn.values())
    assert "byol_loss" in next(r for r in history if r["step"] == 6)  # merged with the training record
    assert monitored.final_metrics["eval/knn_accuracy"] == knn[6]
    # the monitor changes nothing in training: the same weights, bit for bit
    a = load_file(tmp_path / "plain" / "checkpoint-6" / "model.safetensors")
    b = load_file(tmp_path / "monitored" / "checkpoint-6" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert plain.steps == monitored.steps == 6
    # and the card's curves draw it
    folder = build_hub_folder(tmp_path / "monitored", tmp_path / "repo", repo_id="org/monitored")
    assert "eval/knn_accuracy" in Image.open(folder / "training_curves.png").info["Description"]
    assert "online kNN accuracy" in (folder / "README.md").read_text()
