"""Tests for rela_hf.hub.push: building the repo contents and pushing them to the test Hub,
through failures injected by a scripted HTTP proxy in front of it."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
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

from rela_hf.hub import (
    PushError,
    build_hub_folder,
    export_backbone,
    push_encoder,
    push_training_output,
    push_training_state,
)
from rela_hf.preprocessing import official_data_config
from tests.hub import timm_pixels


def _tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with its sha256 and mtime: proof that nothing changed."""
    return {
        str(p.relative_to(folder)): f"{hashlib.sha256(p.read_bytes()).hexdigest()}:{p.stat().st_mtime_ns}"
        for p in sorted(folder.rglob("*"))
        if p.is_file()
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


def test_build_hub_folder_keeps_the_run_untouched_and_the_state_safe(training_run, tmp_path):
    before = _tree_digest(training_run)
    folder = build_hub_folder(training_run, tmp_path / "repo", repo_id="org/x", include_training_state=True)
    assert _tree_digest(training_run) == before
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert [f for f in files if f.endswith("config.json")] == ["config.json"]  # one, at the root
    assert "last-checkpoint/model.safetensors" in files and "last-checkpoint/run_state.json" in files
    assert "last-checkpoint/config.yaml" in files and "last-checkpoint/history.jsonl" in files
    assert not [f for f in files if f.endswith(".pkl")]  # Accelerate's RNG pickles stay home
    assert {"README.md", "model.safetensors", "training_curves.png", "eval_results.json"} <= set(files)
    with pytest.raises(FileExistsError, match="not empty"):
        build_hub_folder(training_run, folder, repo_id="org/x")


LOAD_IN_FRESH_PROCESS = textwrap.dedent(
    """
    # A new interpreter, as a user would load the published encoder: only the environment
    # (HF_ENDPOINT of the test Hub, a fresh HF_HOME cache) is shared with the test.
    import sys, timm, torch
    from transformers import AutoImageProcessor, AutoModel, pipeline
    from rela_hf.assets import foolbox_dataset

    repo_id, out = sys.argv[1], sys.argv[2]
    images = [image.convert("RGB") for image in foolbox_dataset("cifar10")["image"]]
    timm_model = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    config = timm.data.resolve_data_config(model=timm_model)
    transform = timm.data.create_transform(**config)
    pixels = torch.stack([transform(image) for image in images])
    hf_model = AutoModel.from_pretrained(repo_id).eval()
    processor = AutoImageProcessor.from_pretrained(repo_id)
    # the card's pipeline snippet: pool=True gives one pooled vector per image
    extractor = pipeline("image-feature-extraction", model=repo_id, pool=True)
    pipeline_features = torch.tensor([row[0] for row in extractor(images)])
    with torch.no_grad():
        torch.save({
            "pipeline": pipeline_features,
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
    run = subprocess.run(
        [sys.executable, str(script), repo_id, str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
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
    assert {
        "config.json",
        "model.safetensors",
        "README.md",
        "training_curves.png",
        "eval_results.json",
        "last-checkpoint/model.safetensors",
    } <= set(files)
    assert [p for p in files if p.endswith("config.json")] == ["config.json"]
    assert not [p for p in files if p.endswith(".pkl")]
    # one commit on top of the repo's initial one: the Hub never saw a partial upload
    assert len(hub.commits(repo_id)) == 2 and hub.commits(repo_id)[0].oid == commit.oid

    loaded = _load_in_fresh_process(repo_id, tmp_path)
    pixels = timm_pixels(cifar10_images["image"], official_data_config(32))
    with torch.no_grad():
        expected = tiny_backbone(pixels)
    assert loaded["input_size"] == [3, 32, 32]
    assert torch.equal(loaded["timm"], expected)
    assert torch.allclose(loaded["transformers"], expected, atol=1e-6)
    assert torch.allclose(loaded["transformers_processor"], expected, atol=1e-5)
    assert torch.allclose(loaded["pipeline"], expected, atol=1e-5)  # the card's pipeline snippet


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
        with pytest.raises(PushError, match=rf"(?s){repo_id}.*Invalid credentials") as raised:
            push_encoder(folder, repo_id, token="hf_a_wrong_token")
        assert len(hub.find_requests("POST", "/api/repos/create", since=start)) == 1  # a 401 is final
    assert "hf_a_wrong_token" not in str(raised.value)


def test_a_hub_that_is_down_fails_naming_the_repo_and_keeps_the_folder(tiny_backbone, tmp_path):
    folder = export_backbone(tiny_backbone, tmp_path / "bb")
    before = _tree_digest(folder)
    down = _ScriptedServer(upstream=None, status=503)
    try:
        with pytest.raises(PushError, match=r"(?s)'org/unlucky'.*503"):
            push_encoder(folder, "org/unlucky", endpoint=down.url)
    finally:
        down.close()
    assert _tree_digest(folder) == before


def test_push_to_an_unreachable_endpoint_raises_naming_the_repo(tiny_backbone, tmp_path):
    import socket

    folder = export_backbone(tiny_backbone, tmp_path / "bb")
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(PushError, match=r"(?s)'org/nowhere'.*ConnectError"):
        push_encoder(folder, "org/nowhere", endpoint=f"http://127.0.0.1:{port}")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]


def test_transfers_failing_for_a_while_are_retried_by_huggingface_hub(hub, hub_namespace, tiny_backbone, tmp_path):
    """503 on the preupload and 500 on the LFS upload: huggingface_hub's own backoff retries both
    (no retry loop in rela-hf), and the push lands as one commit."""
    folder = export_backbone(tiny_backbone, tmp_path / "bb")
    repo_id = f"{hub_namespace}/flaky-transfers"
    proxy = _ScriptedServer(upstream=hub.url)
    try:
        proxy.fail("/preupload/", times=2, status=503)
        proxy.fail("/_lfs/", times=1, status=500)
        commit = push_encoder(folder, repo_id, endpoint=proxy.url)
    finally:
        proxy.close()
    preuploads = [status for _, path, status in proxy.seen if "/preupload/" in path]
    uploads = [status for method, path, status in proxy.seen if method == "PUT" and "/_lfs/" in path]
    assert preuploads == [503, 503, 200] and uploads == [500, 200]
    assert hub.commits(repo_id)[0].oid == commit.oid and len(hub.commits(repo_id)) == 2
    assert hub.files(repo_id)["model.safetensors"] == (folder / "model.safetensors").read_bytes()


def test_a_commit_failing_mid_push_leaves_the_hub_unchanged(hub, hub_namespace, tiny_backbone, tmp_path):
    folder = export_backbone(tiny_backbone, tmp_path / "bb")
    repo_id = f"{hub_namespace}/flaky"
    proxy = _ScriptedServer(upstream=hub.url)
    try:
        commit = push_encoder(folder, repo_id, endpoint=proxy.url)
        # a second version whose files are uploaded but whose commit is refused: main keeps the first
        export_backbone(timm.create_model("test_resnet", num_classes=0), folder, pretrained_cfg={"tag": "second"})
        proxy.fail("/commit/", times=10, status=502)
        with pytest.raises(PushError, match=rf"(?s){repo_id}.*502"):
            push_encoder(folder, repo_id, endpoint=proxy.url)
    finally:
        proxy.close()
    assert hub.commits(repo_id)[0].oid == commit.oid and len(hub.commits(repo_id)) == 2
    assert b'"second"' not in hub.files(repo_id)["config.json"]


def test_former_retry_options_warn_and_are_ignored(hub, hub_namespace, tiny_backbone, tmp_path):
    folder = export_backbone(tiny_backbone, tmp_path / "bb")
    with pytest.warns(FutureWarning, match="max_retries / retry_backoff are ignored"):
        commit = push_encoder(folder, f"{hub_namespace}/former", max_retries=2, retry_backoff=0.01)
    assert hub.commits(f"{hub_namespace}/former")[0].oid == commit.oid


def test_a_new_checkpoint_replaces_the_repos_last_checkpoint(hub, hub_namespace, training_run):
    """Files of an older last-checkpoint/ that the new one lacks go in the same commit."""
    repo_id = f"{hub_namespace}/replaced"
    hub.put_files(repo_id, {"last-checkpoint/stale.bin": b"\0old", "notes.txt": b"kept"})
    push_training_state(training_run, repo_id)
    files = hub.files(repo_id)
    assert "last-checkpoint/stale.bin" not in files and files["notes.txt"] == b"kept"
    assert b'"step": 1000' in files["last-checkpoint/run_state.json"]
    assert not [name for name in files if name.endswith(".pkl")]


def test_push_refuses_a_folder_that_is_not_a_timm_export(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ValueError, match="architecture"):
        push_encoder(tmp_path, "org/bad")
    with pytest.raises(FileNotFoundError, match="No folder"):
        push_encoder(tmp_path / "missing", "org/bad")
