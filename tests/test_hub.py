"""Tests for rela_hf.hub: timm-format export, model cards and pushing to the (test) Hub."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import timm
import torch
import yaml

from rela_hf.evaluation import write_eval_results
from rela_hf.hub import (
    ExportError,
    PushError,
    build_hub_folder,
    compute_summary,
    export_backbone,
    plot_training_history,
    push_encoder,
    push_training_output,
    read_export_config,
    read_training_history,
    render_model_card,
    training_data_config,
)


@pytest.fixture(scope="module")
def tiny_backbone() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=0).eval()


def _timm_pixels(images, data_config) -> torch.Tensor:
    """The images as timm's eval transform of ``data_config`` gives them."""
    transform = timm.data.create_transform(**data_config, is_training=False)
    return torch.stack([transform(image.convert("RGB")) for image in images])


# ---- export ---------------------------------------------------------------------------------------


def test_export_writes_timm_format_with_our_provenance(tiny_backbone, tmp_path):
    out = export_backbone(
        tiny_backbone,
        tmp_path / "backbone",
        data_config=training_data_config(32),
        pretrained_cfg={"tag": "rela_byol_cifar10"},
    )
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    config = read_export_config(out)
    assert config["architecture"] == "test_resnet"
    assert config["num_classes"] == 0
    assert "num_classes" not in config["model_args"]  # the TimmWrapper fix
    cfg = config["pretrained_cfg"]
    assert cfg["tag"] == "rela_byol_cifar10"
    assert cfg["paper_ids"] == "arXiv:2405.14669"
    assert cfg["license"] == "apache-2.0"
    # The architecture's default ImageNet provenance (r160_in1k, 160 px) must not leak in.
    assert "r160_in1k" not in json.dumps(config)
    assert "origin_url" not in cfg and "hf_hub_id" not in cfg
    assert cfg["input_size"] == [3, 32, 32]
    assert cfg["mean"] == [0.485, 0.456, 0.406] and cfg["std"] == [0.229, 0.224, 0.225]
    assert cfg["crop_pct"] == 1.0
    # no leftover temporary folders next to the export
    assert [p.name for p in tmp_path.iterdir()] == ["backbone"]


def test_export_round_trip_timm_and_transformers_on_real_images(
    tiny_backbone, tmp_path, cifar10_images
):
    from transformers import AutoImageProcessor, AutoModel

    out = export_backbone(tiny_backbone, tmp_path / "bb", data_config=training_data_config(32))
    images = list(cifar10_images["image"])
    pixels = _timm_pixels(images, training_data_config(32))

    timm_model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    hf_model = AutoModel.from_pretrained(out).eval()
    processor = AutoImageProcessor.from_pretrained(out)
    hf_pixels = processor(images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        expected = tiny_backbone(pixels)
        assert torch.equal(timm_model(pixels), expected)
        assert torch.allclose(hf_model(pixel_values=pixels).pooler_output, expected, atol=1e-6)
        # the processor rebuilt from pretrained_cfg preprocesses like timm's transform
        assert hf_pixels.shape == pixels.shape
        assert torch.allclose(hf_pixels, pixels, atol=1e-5)
        assert torch.allclose(hf_model(pixel_values=hf_pixels).pooler_output, expected, atol=1e-5)


def test_export_replaces_a_previous_export_but_not_other_folders(tiny_backbone, tmp_path):
    out = export_backbone(tiny_backbone, tmp_path / "bb")
    export_backbone(tiny_backbone, out, pretrained_cfg={"tag": "second"})
    assert read_export_config(out)["pretrained_cfg"]["tag"] == "second"

    precious = tmp_path / "run"
    precious.mkdir()
    (precious / "checkpoint.pt").write_bytes(b"do not delete")
    with pytest.raises(FileExistsError, match="not part of an export"):
        export_backbone(tiny_backbone, precious)
    assert (precious / "checkpoint.pt").read_bytes() == b"do not delete"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bb", "run"]


def test_export_rejects_a_classifier_or_a_non_timm_module(tmp_path):
    with pytest.raises(ValueError, match="num_classes=0"):
        export_backbone(timm.create_model("test_resnet", num_classes=10), tmp_path / "a")
    with pytest.raises(TypeError, match="timm model"):
        export_backbone(torch.nn.Linear(2, 2), tmp_path / "b")
    with pytest.raises(ValueError, match="input_size"):
        export_backbone(
            timm.create_model("test_resnet", num_classes=0),
            tmp_path / "c",
            data_config={"input_size": (1, 32, 32)},
        )
    assert not any(tmp_path.iterdir())


def test_export_of_a_hand_modified_backbone_fails_before_writing(tmp_path):
    model = timm.create_model("test_resnet", num_classes=0)
    # a stem swapped by hand cannot be rebuilt from architecture + model_args
    model.conv1[0] = torch.nn.Conv2d(3, 16, 3, padding=1, bias=False)
    with pytest.raises(ExportError, match="modified after timm.create_model"):
        export_backbone(model, tmp_path / "bb")
    assert not any(tmp_path.iterdir())


# ---- helpers for the Hub tests ---------------------------------------------------------------------


def _tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its sha256 and mtime: proof that nothing changed."""
    return {
        str(p.relative_to(folder)): f"{hashlib.sha256(p.read_bytes()).hexdigest()}:{p.stat().st_mtime_ns}"
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


class _ScriptedServer:
    """A tiny HTTP server in front of the test Hub that fails chosen requests.

    ``fail(path_part, times, status)``: the next ``times`` requests whose path contains
    ``path_part`` get ``status``; everything else is forwarded to the Hub. With no upstream it
    answers every request with ``status`` (a Hub that is down). Not a mock of any client: the
    real huggingface_hub talks HTTP to it.
    """

    def __init__(self, upstream: str | None, status: int = 503) -> None:
        self.upstream = urlsplit(upstream) if upstream else None
        self.default_status = status
        self.rules: list[list] = []
        self.seen: list[tuple[str, str, int]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status = server._scripted_status(self.path)
                if status is not None:
                    payload = json.dumps({"error": "injected failure"}).encode()
                    server.seen.append((self.command, self.path, status))
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                    return
                connection = http.client.HTTPConnection(server.upstream.hostname, server.upstream.port)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                headers["Host"] = self.headers["Host"]  # the Hub builds URLs from it: keep the proxy's
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                data = response.read()
                server.seen.append((self.command, self.path, response.status))
                self.send_response(response.status)
                for key, value in response.getheaders():
                    if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                connection.close()

            do_GET = do_POST = do_PUT = do_HEAD = do_DELETE = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def fail(self, path_part: str, times: int, status: int = 500) -> None:
        self.rules.append([path_part, times, status])

    def _scripted_status(self, path: str) -> int | None:
        if self.upstream is None:
            return self.default_status
        for rule in self.rules:
            if rule[0] in path and rule[1] > 0:
                rule[1] -= 1
                return rule[2]
        return None

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def training_run(tiny_backbone, tmp_path, cifar10_images) -> Path:
    """A training output_dir as recipes/byol_rela.py leaves it (export, summary, config,
    history, a checkpoint with Accelerate's files) plus an eval_results.json."""
    run = tmp_path / "run"
    export_backbone(tiny_backbone, run / "backbone", data_config=training_data_config(32),
                    pretrained_cfg={"tag": "rela_byol"})
    summary = {
        "method": "rela", "switch_rule": "adaptive", "switch_step": 612, "phase": "byol",
        "steps": 1000, "total_steps": 1000, "epochs": 6.4, "images_seen": 128000,
        "global_batch_size": 128, "num_processes": 1, "device": "cpu", "mixed_precision": "no",
        "wall_clock_seconds": 1234.5, "final_metrics": {"loss": 0.12, "byol_loss": 0.12},
        "backbone": "test_resnet", "dataset": "zalando-datasets/fashion_mnist", "prior": "timm/resnet18.a1_in1k",
        "dataset_revision": "a" * 40, "prior_revision": "b" * 40, "checkpoint": "checkpoint-1000",
    }
    (run / "training_summary.json").write_text(json.dumps(summary))
    (run / "config.yaml").write_text(yaml.safe_dump({"method": "rela", "learning_rate": 1e-3,
                                                      "per_device_train_batch_size": 128}))
    with (run / "history.jsonl").open("w") as f:
        for step in range(10, 1001, 10):
            record = {"step": step, "train/loss": 1 / math.sqrt(step), "train/lr": 1e-3,
                      "train/online_accuracy": min(0.8, step / 1000)}
            if step <= 612:
                record.update({"train/rela_loss": 1 / math.sqrt(step), "train/rho": step / 620})
            else:
                record["train/byol_loss"] = 2 / math.sqrt(step)
            f.write(json.dumps(record) + "\n")
    checkpoint = run / "checkpoint-1000"
    checkpoint.mkdir()
    from safetensors.torch import save_file

    save_file({"backbone.w": torch.ones(2), "target.w": torch.zeros(2)}, str(checkpoint / "model.safetensors"))
    torch.save({"state": {}}, checkpoint / "optimizer.bin")
    (checkpoint / "random_states_0.pkl").write_bytes(b"pickled rng")
    (checkpoint / "run_state.json").write_text(json.dumps({"step": 1000}))
    results = {
        "format_version": 1, "encoder": str(run / "backbone"),
        "dataset": {"id": "zalando-datasets/fashion_mnist", "name": "Fashion-MNIST", "revision": "c" * 40,
                    "train_split": "train", "split": "test", "num_train_samples": 500, "num_samples": 200},
        "results": [
            {"protocol": "knn", "metric": "accuracy", "value": 0.66, "std": None,
             "args": {"k": 200, "temperature": 0.1}},
            {"protocol": "linear_probe", "metric": "accuracy", "value": 0.665, "std": 0.0024,
             "args": {"epochs": 100, "lr": 3e-4}},
        ],
    }
    write_eval_results(results, run / "eval_results.json")
    return run


# ---- history, plot, card ----------------------------------------------------------------------------------


def test_read_training_history_from_jsonl_and_tensorboard(training_run, tmp_path):
    history = read_training_history(training_run)
    assert len(history) == 100 and history[0]["step"] == 10
    assert "loss" in history[0] and "train/loss" not in history[0]  # prefix dropped
    with (training_run / "history.jsonl").open("a") as f:  # a resumed run logs step 20 again
        f.write('{"step": 20, "train/loss": 7.0}\n{"step": 30, "trunc')  # + a torn last line
    history = read_training_history(training_run)
    assert len(history) == 100 and history[1] == {"step": 20, "loss": 7.0}
    from torch.utils.tensorboard import SummaryWriter

    tb_run = tmp_path / "tb"
    writer = SummaryWriter(str(tb_run / "runs" / "byol_rela"))
    for step in (10, 20, 30):
        writer.add_scalar("train/loss", 1.0 / step, step)
        writer.add_scalar("train/rho", step / 100, step)
    writer.close()
    history = read_training_history(tb_run)
    assert [r["step"] for r in history] == [10, 20, 30]
    assert history[1]["loss"] == pytest.approx(0.05) and history[2]["rho"] == pytest.approx(0.3)
    assert read_training_history(tmp_path / "nothing") == []


def test_plot_training_history_writes_a_png(training_run, tmp_path):
    path = plot_training_history(read_training_history(training_run), tmp_path / "curves.png",
                                 switch_step=612)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plot_training_history([{"step": 1, "phase": "rela"}], tmp_path / "none.png") is None


def test_compute_summary_gpu_and_cpu_hours():
    gpu = compute_summary({"wall_clock_seconds": 3600, "num_processes": 8, "device": "cuda:0",
                           "device_name": "NVIDIA H100 80GB HBM3"})
    assert gpu["hours"] == 8 and gpu["unit"] == "GPU-hours"
    cpu = compute_summary({"wall_clock_seconds": 1800, "device": "cpu"})
    assert cpu["hours"] == 0.5 and cpu["unit"] == "CPU process-hours"


def test_card_metadata_eval_results_and_body(training_run, tmp_path):
    from huggingface_hub import ModelCard

    folder = build_hub_folder(training_run, tmp_path / "repo", repo_id="org/rela-test")
    card = ModelCard.load(folder / "README.md")
    data = card.data
    assert data.library_name == "timm" and data.pipeline_tag == "image-feature-extraction"
    assert {"self-supervised", "byol", "rela", "image-feature-extraction"} <= set(data.tags)
    assert data.license == "apache-2.0"
    assert data.datasets == ["zalando-datasets/fashion_mnist"]
    assert data.model_name == "rela-test"
    expected = json.loads((training_run / "eval_results.json").read_text())
    got = {(r.metric_name.split(" (")[0].split(" top-1")[0], r.dataset_split): r for r in data.eval_results}
    assert len(data.eval_results) == 2
    for result in expected["results"]:
        name = {"knn": "kNN", "linear_probe": "linear probe"}[result["protocol"]]
        entry = got[(name, "test")]
        assert entry.metric_value == pytest.approx(result["value"])
        assert entry.dataset_type == "zalando-datasets/fashion_mnist"
        assert entry.dataset_revision == "c" * 40
    text = card.text
    assert "66.00" in text and "66.50 ± 0.24" in text
    assert "after optimizer step 612" in text
    assert "benchmarks/results/README.md" in text  # the measured acceleration, where users look
    assert "revision `" + "a" * 40 + "`" in text and "revision `" + "b" * 40 + "`" in text
    assert "128000" in text and "20 min 34 s" in text and "CPU process-hours" in text
    assert "learning_rate: 0.001" in text  # the training config as YAML
    assert "](training_curves.png)" in text and (folder / "training_curves.png").is_file()
    assert 'timm.create_model("hf-hub:org/rela-test", pretrained=True)' in text
    assert 'AutoModel.from_pretrained("org/rela-test")' in text
    assert "arXiv" in text and "2405.14669" in text and "2006.07733" in text
    assert "import rela_hf.backbones" not in text  # test_resnet is a plain timm architecture
    assert "[More Information Needed]" not in text
    assert "model-index" in (folder / "README.md").read_text()


def test_card_says_when_the_prior_was_randomly_initialised(training_run, tmp_path):
    summary = json.loads((training_run / "training_summary.json").read_text())
    card = render_model_card(training_run / "backbone", repo_id="org/random-prior",
                             training_summary={**summary, "prior_pretrained": False})
    assert "`timm/resnet18.a1_in1k` with **randomly initialised** weights" in card.text
    assert card.data.rela_hf["prior_pretrained"] is False


def test_card_of_a_bare_export_without_training_records(tiny_backbone, tmp_path):
    export = export_backbone(tiny_backbone, tmp_path / "bb", data_config=training_data_config(32))
    card = render_model_card(export, repo_id="org/bare")
    assert "No evaluation results were recorded" in card.text
    assert card.data.eval_results is None
    assert "not recorded" in card.text


def test_card_tells_how_to_register_rela_hf_architectures(tmp_path):
    from rela_hf.backbones import create_backbone

    backbone = create_backbone("test_resnet", cifar_stem=True)
    export = export_backbone(backbone, tmp_path / "bb", data_config=training_data_config(32))
    card = render_model_card(export, repo_id="org/cifar")
    assert "import rela_hf.backbones" in card.text


def test_build_hub_folder_keeps_the_run_untouched_and_the_state_safe(training_run, tmp_path):
    before = _tree_digest(training_run)
    folder = build_hub_folder(training_run, tmp_path / "repo", repo_id="org/x",
                              include_training_state=True)
    assert _tree_digest(training_run) == before
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert [f for f in files if f.endswith("config.json")] == ["config.json"]  # one, at the root
    assert "training_state/model.safetensors" in files and "training_state/run_state.json" in files
    assert "training_state/config.yaml" in files and "training_state/history.jsonl" in files
    assert not [f for f in files if f.endswith(".pkl")]  # Accelerate's RNG pickles stay home
    assert {"README.md", "model.safetensors", "training_curves.png", "eval_results.json"} <= set(files)
    with pytest.raises(FileExistsError, match="not empty"):
        build_hub_folder(training_run, folder, repo_id="org/x")


# ---- pushing through the test Hub -----------------------------------------------------------------------

LOAD_IN_FRESH_PROCESS = textwrap.dedent(
    """
    # A new interpreter, as a user would load the published encoder: only the environment
    # (HF_ENDPOINT of the test Hub, a fresh HF_HOME cache) is shared with the test.
    import sys, timm, torch
    from transformers import AutoImageProcessor, AutoModel
    from rela_hf.assets import foolbox_dataset

    repo_id, out = sys.argv[1], sys.argv[2]
    images = [image.convert("RGB") for image in foolbox_dataset("cifar10")["image"]]
    timm_model = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    config = timm.data.resolve_data_config(model=timm_model)
    transform = timm.data.create_transform(**config)
    pixels = torch.stack([transform(image) for image in images])
    hf_model = AutoModel.from_pretrained(repo_id).eval()
    processor = AutoImageProcessor.from_pretrained(repo_id)
    with torch.no_grad():
        torch.save({
            "timm": timm_model(pixels),
            "transformers": hf_model(pixel_values=pixels).pooler_output,
            "transformers_processor": hf_model(**processor(images, return_tensors="pt")).pooler_output,
            "input_size": list(config["input_size"]),
        }, out)
    """
)


def _load_in_fresh_process(repo_id: str, tmp_path: Path) -> dict:
    script, out = tmp_path / "load.py", tmp_path / "features.pt"
    script.write_text(LOAD_IN_FRESH_PROCESS)
    env = {**os.environ, "HF_HOME": str(tmp_path / "fresh_hf_home")}  # nothing cached
    run = subprocess.run([sys.executable, str(script), repo_id, str(out)], env=env,
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    return torch.load(out, weights_only=True)


def test_pushed_encoder_loads_in_a_fresh_process_with_timm_and_transformers(
    hub, hub_namespace, training_run, tiny_backbone, cifar10_images, tmp_path
):
    repo_id = f"{hub_namespace}/rela-test-resnet"
    before = _tree_digest(training_run)
    commit = push_training_output(training_run, repo_id, include_training_state=True)
    assert _tree_digest(training_run) == before  # the run's files were only read

    files = hub.files(repo_id)
    assert {"config.json", "model.safetensors", "README.md", "training_curves.png",
            "eval_results.json", "training_state/model.safetensors"} <= set(files)
    assert [p for p in files if p.endswith("config.json")] == ["config.json"]
    assert not [p for p in files if p.endswith(".pkl")]
    # one commit on top of the repo's initial one: the Hub never saw a partial upload
    assert len(hub.commits(repo_id)) == 2 and hub.commits(repo_id)[0].oid == commit.oid

    loaded = _load_in_fresh_process(repo_id, tmp_path)
    pixels = _timm_pixels(cifar10_images["image"], training_data_config(32))
    with torch.no_grad():
        expected = tiny_backbone(pixels)
    assert loaded["input_size"] == [3, 32, 32]
    assert torch.equal(loaded["timm"], expected)
    assert torch.allclose(loaded["transformers"], expected, atol=1e-6)
    assert torch.allclose(loaded["transformers_processor"], expected, atol=1e-5)


def test_pushed_card_validates_and_matches_eval_results(hub, hub_namespace, training_run):
    from huggingface_hub import ModelCard

    repo_id = f"{hub_namespace}/rela-card"
    push_training_output(training_run, repo_id)
    card = ModelCard.load(repo_id)
    card.validate()  # the Hub's YAML validation route
    metadata = card.data.to_dict()
    assert metadata["model-index"][0]["name"] == "rela-card"
    expected = json.loads((training_run / "eval_results.json").read_text())["results"]
    values = sorted(r.metric_value for r in card.data.eval_results)
    assert values == pytest.approx(sorted(r["value"] for r in expected))
    assert json.loads(hub.files(repo_id)["eval_results.json"])["results"] == expected


def test_push_to_a_branch_and_as_a_pull_request(hub, hub_namespace, tiny_backbone, tmp_path):
    repo_id = f"{hub_namespace}/branches"
    folder = export_backbone(tiny_backbone, tmp_path / "bb")
    push_encoder(folder, repo_id, revision="step-500")
    assert "model.safetensors" in hub.files(repo_id, revision="step-500")
    assert "model.safetensors" not in hub.files(repo_id)  # main untouched
    commit = push_encoder(folder, repo_id, create_pr=True)
    assert commit.pr_url and "model.safetensors" in hub.files(repo_id, revision="refs/pr/1")


def test_token_never_reaches_card_logs_or_output(hub, hub_namespace, training_run, caplog, capfd):
    token = "hf_rela_secret_token_0123456789"
    caplog.set_level(logging.DEBUG)
    repo_id = f"{hub_namespace}/secret"
    with hub.strict_auth(token):
        push_training_output(training_run, repo_id, token=token)
    assert token.encode() not in hub.files(repo_id)["README.md"]
    assert all(token.encode() not in content for content in hub.files(repo_id).values())
    captured = capfd.readouterr()
    assert token not in caplog.text and token not in captured.out and token not in captured.err


def test_push_with_a_wrong_token_fails_at_once_naming_the_repo(hub, hub_namespace, tiny_backbone, tmp_path):
    folder = export_backbone(tiny_backbone, tmp_path / "bb")
    repo_id = f"{hub_namespace}/denied"
    with hub.strict_auth("hf_the_right_token"):
        start = hub.request_count
        with pytest.raises(PushError, match=rf"{repo_id}.*not retryable"):
            push_encoder(folder, repo_id, token="hf_a_wrong_token", retry_backoff=0.01)
        assert len(hub.find_requests("POST", "/api/repos/create", since=start)) == 1


def test_push_to_a_failing_hub_retries_then_raises_and_keeps_the_folder(tiny_backbone, tmp_path):
    folder = export_backbone(tiny_backbone, tmp_path / "bb")
    before = _tree_digest(folder)
    down = _ScriptedServer(upstream=None, status=503)
    try:
        with pytest.raises(PushError, match=r"'org/unlucky' after 3 attempts") as raised:
            push_encoder(folder, "org/unlucky", endpoint=down.url, max_retries=2, retry_backoff=0.01)
    finally:
        down.close()
    assert "503" in str(raised.value)
    creates = [s for s in down.seen if "/api/repos/create" in s[1]]
    assert len(creates) == 3  # 1 try + 2 retries
    assert _tree_digest(folder) == before


def test_push_to_an_unreachable_endpoint_raises_naming_the_repo(tiny_backbone, tmp_path):
    import socket

    folder = export_backbone(tiny_backbone, tmp_path / "bb")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PushError, match=r"'org/nowhere' after 2 attempts.*ConnectError"):
        push_encoder(folder, "org/nowhere", endpoint=f"http://127.0.0.1:{port}", max_retries=1,
                     retry_backoff=0.01)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_a_commit_failing_mid_push_is_retried_or_leaves_the_hub_unchanged(
    hub, hub_namespace, tiny_backbone, tmp_path
):
    folder = export_backbone(tiny_backbone, tmp_path / "bb")
    repo_id = f"{hub_namespace}/flaky"
    proxy = _ScriptedServer(upstream=hub.url)
    try:
        # files are uploaded, then the commit call fails twice: the third try lands
        proxy.fail("/commit/", times=2, status=500)
        commit = push_encoder(folder, repo_id, endpoint=proxy.url, max_retries=3, retry_backoff=0.01)
        assert hub.commits(repo_id)[0].oid == commit.oid
        assert len(hub.commits(repo_id)) == 2
        assert len([s for s in proxy.seen if "/commit/" in s[1]]) == 3

        # a second version whose commit never gets through: main keeps the first version
        export_backbone(timm.create_model("test_resnet", num_classes=0), folder,
                        pretrained_cfg={"tag": "second"})
        proxy.fail("/commit/", times=10, status=502)
        with pytest.raises(PushError, match=rf"{repo_id}"):
            push_encoder(folder, repo_id, endpoint=proxy.url, max_retries=1, retry_backoff=0.01)
    finally:
        proxy.close()
    assert hub.commits(repo_id)[0].oid == commit.oid
    assert b'"second"' not in hub.files(repo_id)["config.json"]


def test_push_refuses_a_folder_that_is_not_a_timm_export(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="architecture"):
        push_encoder(tmp_path, "org/bad")
    with pytest.raises(FileNotFoundError, match="No folder"):
        push_encoder(tmp_path / "missing", "org/bad")


def test_push_to_hub_recipe_dry_run_then_push(hub, hub_namespace, training_run, tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "push_to_hub", Path(__file__).resolve().parents[1] / "recipes" / "push_to_hub.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    repo_id = f"{hub_namespace}/from-recipe"

    recipe.main(["--folder", str(training_run), "--repo_id", repo_id, "--dry_run", str(tmp_path / "preview")])
    assert (tmp_path / "preview" / "README.md").is_file()
    from huggingface_hub import HfApi

    assert not HfApi().repo_exists(repo_id)  # a dry run pushes nothing

    commit = recipe.main(["--folder", str(training_run), "--repo_id", repo_id, "--include_training_state"])
    assert hub.commits(repo_id)[0].oid == commit.oid
    assert "training_state/run_state.json" in hub.files(repo_id)
    assert repo_id in capsys.readouterr().out

    bare = export_backbone(timm.create_model("test_resnet", num_classes=0), tmp_path / "bare")
    recipe.main(["--folder", str(bare), "--repo_id", f"{hub_namespace}/bare"])
    assert b"No evaluation results" in hub.files(f"{hub_namespace}/bare")["README.md"]


@pytest.mark.slow
def test_trainer_push_to_hub_publishes_the_run(hub, hub_namespace, fashion_mnist_slice, tmp_path):
    """recipes/byol_rela.py --push_to_hub: history.jsonl, card with curves, loadable backbone."""
    import importlib.util

    from accelerate.state import AcceleratorState, GradientState
    from huggingface_hub import ModelCard

    spec = importlib.util.spec_from_file_location(
        "byol_rela", Path(__file__).resolve().parents[1] / "recipes" / "byol_rela.py")
    recipe = importlib.util.module_from_spec(spec)
    sys.modules["byol_rela"] = recipe  # dataclasses resolve their module by name
    spec.loader.exec_module(recipe)
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
    assert f"optimizer steps | {summary['steps']}" in card.text
    model = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    exported = timm.create_model(f"local-dir:{tmp_path / 'run' / 'backbone'}", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), exported(x))


def test_docstring_examples_run():
    import doctest

    import rela_hf.hub

    result = doctest.testmod(rela_hf.hub, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
