"""recipes/byol_rela.py --push_to_hub against the test Hub."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

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
from rela_hf.training import ReLATrainer
from tests.recipes import load_recipe
from tests.recipes.trainer import RECIPE, args, one_thread, recipe, reset_accelerate


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
        summary = recipe.main(
            [
                "--dataset_name",
                str(data),
                "--output_dir",
                str(tmp_path / "run"),
                "--backbone",
                "test_resnet",
                "--image_size",
                "32",
                "--method",
                "byol",
                "--per_device_train_batch_size",
                "8",
                "--max_train_steps",
                "4",
                "--logging_steps",
                "1",
                "--use_rela",
                "false",
                "--checkpointing_steps",
                "4",
                "--dataloader_num_workers",
                "0",
                "--report_to",
                "none",
                "--push_to_hub",
                "--hub_model_id",
                repo_id,
            ]
        )
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


#: seconds each commit request waits on the slowed test Hub: longer than a training step
COMMIT_DELAY = 1.0


class StepObserver(ReLATrainer):
    """The trainer, noting at each optimizer step how many pushes were still uploading."""

    def setup(self) -> None:
        super().setup()
        self.uploading_at_step: dict[int, int] = {}

    def optimizer_step_done(self) -> bool:
        self.uploading_at_step[self.state.step + 1] = len(self.publisher.pusher.in_flight)
        return super().optimizer_step_done()


def _commit_titles(hub, repo_id: str) -> list[str]:
    """The repo's commit titles, oldest first, without the initial one (none: no repo yet)."""
    try:
        return [commit.title for commit in reversed(hub.commits(repo_id))][1:]
    except Exception:  # noqa: BLE001 - the repo is created by the first push
        return []


def test_training_goes_on_during_slow_pushes_and_the_hub_ends_with_the_final_state(
    hub, hub_namespace, rela_data, tmp_path
):
    """--hub_strategy checkpoint --hub_always_push on a Hub whose commits are slow: the loop trains
    on while a push uploads, every save is pushed in order, the final push waits for them."""
    repo_id = f"{hub_namespace}/slow-pushes"
    options = recipe.parse_args(
        args(
            rela_data,
            tmp_path / "run",
            "--push_to_hub",
            "--hub_model_id",
            repo_id,
            "--hub_strategy",
            "checkpoint",
            "--hub_always_push",
        )
    )
    trainer = StepObserver(options)
    with hub.slowed(COMMIT_DELAY, "/commit/"):
        summary = trainer.train()
    assert summary.steps == 20
    # step 6 ran right after step 5's push started, long before its commit could land
    assert trainer.uploading_at_step[6] >= 1
    assert not trainer.publisher.pusher.in_flight  # the final push waited for all of them
    assert _commit_titles(hub, repo_id) == [f"Training in progress, step {step}" for step in (5, 10, 15)] + [
        "End of training"
    ]
    files, run = hub.files(repo_id), tmp_path / "run"
    assert files["model.safetensors"] == (run / "backbone" / "model.safetensors").read_bytes()
    for name in ("model.safetensors", "optimizer.bin", "run_state.json"):
        assert files[f"last-checkpoint/{name}"] == (run / "checkpoint-20" / name).read_bytes(), name
    assert not [name for name in files if name.endswith(".pkl")]
    assert not list(run.glob(".hub-push-*"))


def _wait_for(condition, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the condition was not met in time")
        time.sleep(0.02)


@pytest.mark.slow
def test_a_run_killed_mid_push_resumes_from_the_hub_copy_bitwise(hub, hub_namespace, rela_data, tmp_path):
    """The trainer process is SIGKILLed while a push is uploading (commits are slow); a new machine
    resumes from the repo's last-checkpoint/ into a new folder and ends bitwise equal to an
    uninterrupted run, and the Hub ends with the final state."""
    recipe.main(args(rela_data, tmp_path / "uninterrupted"))
    reset_accelerate()

    repo_id = f"{hub_namespace}/killed-mid-push"
    hub_args = ["--push_to_hub", "--hub_model_id", repo_id, "--hub_strategy", "checkpoint", "--hub_always_push"]
    first = tmp_path / "first_machine"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # one thread, like the reference run (same sums)
    with hub.slowed(COMMIT_DELAY, "/commit/"):
        process = subprocess.Popen(
            [sys.executable, str(RECIPE), *args(rela_data, first, *hub_args)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def mid_push() -> bool:  # step 5 is on the Hub, a later save is staged and not committed yet
            titles = _commit_titles(hub, repo_id)
            staged = [path.name.split("-")[1] for path in first.glob(".hub-push-*/run/checkpoint-*")]
            return "Training in progress, step 5" in titles and any(
                f"Training in progress, step {step}" not in titles for step in staged
            )

        try:
            _wait_for(lambda: process.poll() is not None or mid_push())
            assert process.poll() is None, "the run ended before it could be killed mid-push"
            process.kill()
        finally:
            process.wait()
        time.sleep(COMMIT_DELAY)  # a commit request already sent when the machine died may still land
    files = hub.files(repo_id)
    pushed_step = json.loads(files["last-checkpoint/run_state.json"])["step"]
    assert pushed_step in (5, 10, 15) and not [name for name in files if name.endswith(".pkl")]
    assert list(first.glob(".hub-push-*"))  # it died mid-push: the snapshot was never cleaned up

    summary = recipe.main(args(rela_data, tmp_path / "second_machine", *hub_args, "--resume_from_checkpoint", "hub"))
    reset_accelerate()
    assert summary.steps == 20 and summary.switch_step == 6
    resumed = load_file(tmp_path / "second_machine" / "checkpoint-20" / "model.safetensors")
    reference = load_file(tmp_path / "uninterrupted" / "checkpoint-20" / "model.safetensors")
    assert resumed.keys() == reference.keys()
    for key in resumed:
        assert torch.equal(resumed[key], reference[key]), key
    # the pushed history came along: the curves do not start after the pushed step
    history_steps = [r["step"] for r in read_training_history(tmp_path / "second_machine")]
    assert history_steps[:2] == [5, 6] and history_steps[-1] == 20
    assert json.loads(hub.files(repo_id)["last-checkpoint/run_state.json"])["step"] == 20


def test_a_repo_pushed_by_rela_hf_0_2_still_resumes_from_training_state(hub, hub_namespace, rela_data, tmp_path):
    """A repo with the former training_state/ folder: read (with a FutureWarning) until rela-hf 0.4."""
    recipe.main(args(rela_data, tmp_path / "first"))
    reset_accelerate()
    repo_id = f"{hub_namespace}/former-layout"
    checkpoint = tmp_path / "first" / "checkpoint-15"
    hub.put_files(
        repo_id,
        {f"training_state/{path.name}": path.read_bytes() for path in checkpoint.iterdir() if path.suffix != ".pkl"},
    )
    with pytest.warns(FutureWarning, match="training_state/"):
        summary = recipe.main(
            args(rela_data, tmp_path / "second", "--hub_model_id", repo_id, "--resume_from_checkpoint", "hub")
        )
    reset_accelerate()
    assert summary.steps == 20
    resumed = load_file(tmp_path / "second" / "checkpoint-20" / "model.safetensors")
    reference = load_file(tmp_path / "first" / "checkpoint-20" / "model.safetensors")
    assert all(torch.equal(resumed[key], reference[key]) for key in reference)


def test_resume_from_a_hub_repo_without_state_is_refused(hub, hub_namespace, rela_data, tmp_path):
    recipe = load_recipe("byol_rela")
    repo_id = f"{hub_namespace}/no-state"
    HfApi().create_repo(repo_id)
    with pytest.raises(CheckpointError, match="holds no last-checkpoint/"):
        recipe.main(args(rela_data, tmp_path / "x", "--hub_model_id", repo_id, "--resume_from_checkpoint", "hub"))
    reset_accelerate()


def test_online_knn_monitor_logs_to_history_and_card_and_changes_nothing(fashion_mnist_slice, tmp_path):
    recipe = load_recipe("byol_rela")
    data = tmp_path / "data"
    datasets.DatasetDict(
        {"train": fashion_mnist_slice, "test": fashion_mnist_dataset("test", limit=40, seed=0)}
    ).save_to_disk(str(data))
    common = ["--method", "baseline", "--max_train_steps", "6", "--logging_steps", "2"]
    with one_thread():
        plain = recipe.main(args(data, tmp_path / "plain", *common))
        reset_accelerate()
        monitored = recipe.main(
            args(
                data,
                tmp_path / "monitored",
                *common,
                "--eval_split",
                "test",
                "--eval_steps",
                "3",
                "--eval_max_samples",
                "40",
                "--eval_bank_max_samples",
                "64",
            )
        )
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
