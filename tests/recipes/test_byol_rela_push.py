"""recipes/byol_rela.py --push_to_hub against the test Hub."""

from __future__ import annotations

import pytest
import timm
import torch

from rela_hf.hub import (
    read_training_history,
)
from tests.recipes import load_recipe


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
