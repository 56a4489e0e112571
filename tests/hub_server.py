"""An in-memory server that speaks the Hugging Face Hub HTTP protocol on 127.0.0.1, for tests.

Test machines cannot reach huggingface.co, and a monkeypatched client proves nothing about
protocol drift. So the test suite points the *real* ``huggingface_hub``, ``datasets``, ``timm`` and
``transformers`` at this server through ``HF_ENDPOINT`` (see ``tests/conftest.py``) and lets them
run end to end: HTTP, the download cache, and the mapping of HTTP errors to exception types.

The protocol subset is specified in ``/work/shared/hub-protocol.md`` (endpoints §3, details §4,
client flows §5, gotchas §6). The server holds, in memory:

* repos keyed by ``(repo_type, "namespace/name")`` (models, datasets, spaces), each with commits,
  branches, tags and pull-request refs (``refs/pr/N``);
* a blob store keyed by sha256; files arrive inline ("regular") or through the Git LFS batch API;
* a request log (:attr:`FakeHub.requests`) for assertions such as "push_to_hub used LFS";
* optional strict auth (:meth:`FakeHub.set_strict_auth`) that rejects a wrong token the way the
  real Hub does;
* an optional per-request delay (:attr:`FakeHub.request_delay`, :meth:`FakeHub.slowed`): a slow
  link, for tests and benchmarks of code that must not wait for the network.

Standard library only, and it must never import a Hugging Face library: the test configuration
starts it *before* those libraries are imported, because they read ``HF_ENDPOINT`` at import.

Manual use (``python -m tests.hub_server`` from the repository root works too)::

    python tests/hub_server.py --port 8765
    export HF_ENDPOINT=http://127.0.0.1:8765 HF_HUB_DISABLE_XET=1 HF_TOKEN=hf_dummy
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import itertools
import json
import os
import re
import secrets
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["Commit", "FakeHub", "RequestRecord", "git_blob_sha1", "lfs_pointer"]

# ---- protocol constants -------------------------------------------------------------------------

#: The single account of the server: every request acts as this user.
FAKE_USER = "rela-hf-tester"
#: URL collection name (``/api/<plural>/...``) -> repo type.
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
#: Repo type -> prefix of its web and resolve URLs.
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
#: Uploaded through LFS, like the Hub's default ``.gitattributes``. ``.parquet`` is load-bearing:
#: datasets deletes its temporary shards between preupload and commit, so they cannot go inline.
LFS_EXTENSIONS = frozenset(
    (
        *(".bin", ".safetensors", ".pt", ".pth", ".h5", ".onnx"),  # weights
        *(".parquet", ".arrow", ".npz", ".npy", ".zip", ".gz"),  # data and archives
    )
)
#: Files larger than this go to LFS whatever their extension.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
#: The real Hub's answer to an unknown token; huggingface_hub raises a plain ``HfHubHTTPError``.
INVALID_TOKEN_MESSAGE = "Invalid credentials in Authorization header"
#: The real Hub's answer when ``parentCommit`` is no longer the head of the branch (HTTP 412).
STALE_PARENT_MESSAGE = "A commit has happened since. Please refresh and try again."

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_REF_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_PR_RE = re.compile(r"^refs/pr/([1-9][0-9]*)$")
_OPERATION_KEYS = ("file", "lfsFile", "deletedFile", "deletedFolder")
_GITATTRIBUTES = "".join(f"*{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in sorted(LFS_EXTENSIONS)).encode()


def git_blob_sha1(data: bytes) -> str:
    """Git's id of a blob, sha1 of ``b"blob <size>\\0" + data``: the Hub's id of a regular file."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer text that stands for an LFS file in the git tree."""
    spec = "version https://git-lfs.github.com/spec/v1"
    return f"{spec}\noid sha256:{sha256}\nsize {size}\n".encode()


def upload_mode(path: str, size: int, sample: bytes) -> str:
    """The Hub's choice for a file: ``"lfs"`` by extension, binary sample or size, else regular."""
    name = path.rsplit("/", 1)[-1]
    extension = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ""
    if extension in LFS_EXTENSIONS or b"\x00" in sample or size > LFS_SIZE_THRESHOLD:
        return "lfs"
    return "regular"


def _iso_now() -> str:
    """The current time in the Hub's format, e.g. ``2026-11-26T20:33:42.000Z``."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


# ---- data model ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit; its bytes live in the blob store under ``sha256``."""

    sha256: str
    size: int
    lfs: bool
    oid: str  # git blob sha1 of the content (regular) or of the LFS pointer text (LFS)

    @property
    def etag(self) -> str:
        """What clients compare with their cache: git sha1 (regular) or sha256 (LFS)."""
        return self.sha256 if self.lfs else self.oid

    @property
    def pointer_size(self) -> int:
        return len(lfs_pointer(self.sha256, self.size))


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    title: str
    message: str
    date: str
    files: Mapping[str, StoredFile]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit id
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: list[str] = field(default_factory=list)  # refs/pr/N is pull_requests[N - 1]
    lfs_objects: set[str] = field(default_factory=set)  # sha256 of LFS uploads to this repo

    @property
    def url_path(self) -> str:
        return URL_PREFIX[self.repo_type] + self.repo_id

    def resolve(self, revision: str) -> Commit:
        """Branch, then tag, then ``refs/pr/N``, then a full commit id; else ``RevisionNotFound``."""
        if revision in self.branches:
            return self.commits[self.branches[revision]]
        if revision in self.tags:
            return self.commits[self.tags[revision]]
        pr = _PR_RE.match(revision)
        if pr and int(pr.group(1)) <= len(self.pull_requests):
            return self.commits[self.pull_requests[int(pr.group(1)) - 1]]
        if revision in self.commits:
            return self.commits[revision]
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def history(self, head: Commit) -> Iterator[Commit]:
        """``head`` and its ancestors, newest first."""
        commit: Commit | None = head
        while commit is not None:
            yield commit
            commit = self.commits[commit.parent] if commit.parent else None


@dataclass(frozen=True)
class RequestRecord:
    """One served request. A token is never recorded, only whether one was sent."""

    method: str
    path: str  # raw (percent-encoded) path, without the query
    query: str
    status: int
    error_code: str | None  # the X-Error-Code answered, if any
    authorized: bool  # an Authorization header was sent
    headers: Mapping[str, str]  # Range, Content-Type and User-Agent, when sent

    @property
    def decoded_path(self) -> str:
        return unquote(self.path)


class HubError(Exception):
    """An error answer: ``{"error": message}`` + ``X-Error-Message``, optional ``X-Error-Code``."""

    def __init__(self, status: int, message: str, error_code: str | None = None, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = headers or {}


def _repo_not_found(repo_type: str, repo_id: str, status: int = 404) -> HubError:
    return HubError(status, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")


def _entry_not_found(path: str, commit: Commit) -> HubError:
    headers = {"X-Repo-Commit": commit.oid}  # lets the client cache "missing at this commit"
    return HubError(404, f"Entry not found: {path}", "EntryNotFound", headers)


# ---- listings -----------------------------------------------------------------------------------


def _folder_oid(files: Mapping[str, StoredFile], folder: str) -> str:
    """A stable 40-hex id for a folder, from the ids of everything under it (like a git tree)."""
    listing = "\n".join(f"{p} {f.oid}" for p, f in files.items() if p.startswith(folder + "/"))
    return hashlib.sha1(f"tree {folder}\n{listing}".encode()).hexdigest()


def _file_entry(path: str, stored: StoredFile) -> dict[str, Any]:
    entry: dict[str, Any] = {"type": "file", "oid": stored.oid, "size": stored.size, "path": path}
    if stored.lfs:
        entry["lfs"] = {
            "oid": stored.sha256,
            "size": stored.size,
            "pointerSize": stored.pointer_size,
        }
    return entry


def _folder_entry(files: Mapping[str, StoredFile], folder: str) -> dict[str, Any]:
    return {"type": "directory", "oid": _folder_oid(files, folder), "size": 0, "path": folder}


def _tree(commit: Commit, folder: str, recursive: bool) -> list[dict[str, Any]]:
    """Listing of ``folder`` ("" = root): its children, or everything below when ``recursive``."""
    files = commit.files
    prefix = folder + "/" if folder else ""
    below = sorted(p for p in files if p.startswith(prefix))
    if folder and (folder in files or not below):  # a missing folder, or a file
        raise _entry_not_found(folder, commit)
    folders: set[str] = set()
    entries = []
    for path in below:
        parts = path[len(prefix) :].split("/")
        depth = len(parts) - 1 if recursive else min(1, len(parts) - 1)
        folders.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
        if recursive or len(parts) == 1:
            entries.append(_file_entry(path, files[path]))
    return [_folder_entry(files, f) for f in sorted(folders)] + entries


def _last_commit(repo: Repo, head: Commit, entry: dict) -> dict:
    """``entry`` plus ``lastCommit``: the newest commit that changed the file or the folder."""
    path, is_file = entry["path"], entry["type"] == "file"

    def state(commit: Commit | None) -> Any:
        if commit is None or is_file:
            return commit and commit.files.get(path)
        return [(p, f) for p, f in commit.files.items() if p.startswith(path + "/")]

    for commit in repo.history(head):
        if state(commit) != state(repo.commits.get(commit.parent or "")):
            info = {"id": commit.oid, "title": commit.title, "date": commit.date}
            return {**entry, "lastCommit": info}
    return entry


# ---- the store ----------------------------------------------------------------------------------


class HubStore:
    """All repos and blobs, behind one lock so that concurrent requests see whole commits."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}  # sha256 -> content
        self._commit_counter = itertools.count(1)

    def get_repo(self, repo_type: str, repo_id: str) -> Repo:
        with self.lock:
            repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise _repo_not_found(repo_type, repo_id)
        return repo

    def create_repo(self, repo_type: str, repo_id: str, private: bool) -> Repo:
        """A new repo whose ``main`` holds one commit with the default ``.gitattributes``."""
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, "You already created this repo")
            repo = Repo(repo_type, repo_id, private, created_at=_iso_now())
            self.repos[(repo_type, repo_id)] = repo
            files = {".gitattributes": self.store_bytes(_GITATTRIBUTES, lfs=False)}
            repo.branches["main"] = self._add_commit(repo, None, files, "initial commit", "").oid
            return repo

    def delete_repo(self, repo_type: str, repo_id: str) -> None:
        with self.lock:
            if self.repos.pop((repo_type, repo_id), None) is None:
                raise _repo_not_found(repo_type, repo_id)

    def store_bytes(self, data: bytes, lfs: bool) -> StoredFile:
        sha256 = hashlib.sha256(data).hexdigest()
        with self.lock:
            self.blobs.setdefault(sha256, data)
        oid = git_blob_sha1(lfs_pointer(sha256, len(data)) if lfs else data)
        return StoredFile(sha256=sha256, size=len(data), lfs=lfs, oid=oid)

    def commit(
        self, repo: Repo, revision: str, header: dict, operations: list[dict], create_pr: bool
    ) -> tuple[Commit, int | None]:
        """Apply commit operations all or nothing; returns the commit and its PR number, if any."""
        with self.lock:
            if revision not in repo.branches and not _PR_RE.match(revision):
                repo.resolve(revision)  # RevisionNotFound when it does not exist at all
                raise HubError(400, f"Can only commit to a branch or a PR ref, not {revision!r}")
            head = repo.resolve(revision)
            parent_commit = header.get("parentCommit")
            if parent_commit and parent_commit != head.oid:
                raise HubError(412, STALE_PARENT_MESSAGE)
            files = dict(head.files)
            for operation in operations:
                self._apply(repo, head, files, operation)
            description = header.get("description") or ""
            commit = self._add_commit(repo, head, files, header["summary"], description)
            if create_pr:
                repo.pull_requests.append(commit.oid)
                return commit, len(repo.pull_requests)
            pr = _PR_RE.match(revision)
            if pr:
                repo.pull_requests[int(pr.group(1)) - 1] = commit.oid
            else:
                repo.branches[revision] = commit.oid
            return commit, None

    def _add_commit(self, repo: Repo, parent: Commit | None, files: dict, title: str, message: str) -> Commit:
        parent_oid = parent.oid if parent else None
        seed = f"{repo.repo_type}/{repo.repo_id}/{next(self._commit_counter)}/{parent_oid}"
        commit = Commit(
            oid=hashlib.sha1(seed.encode()).hexdigest(),
            parent=parent_oid,
            title=title,
            message=message,
            date=_iso_now(),
            files=MappingProxyType(dict(sorted(files.items()))),
        )
        repo.commits[commit.oid] = commit
        return commit

    def _apply(self, repo: Repo, head: Commit, files: dict, operation: dict) -> None:
        key, value = operation["key"], operation["value"]
        path = value["path"]
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}")
            try:
                data = base64.b64decode(value["content"], validate=True)
            except (binascii.Error, TypeError, KeyError) as e:
                raise HubError(400, f"Invalid base64 content for {path}: {e!r}") from e
            files[path] = self.store_bytes(data, lfs=False)
        elif key == "lfsFile":
            oid, size = value.get("oid"), value.get("size")
            if value.get("algo", "sha256") != "sha256" or oid not in repo.lfs_objects:
                raise HubError(422, f"LFS object {oid} for {path} was never uploaded to this repo")
            if size != len(self.blobs[oid]):
                raise HubError(422, f"LFS object {oid} has {len(self.blobs[oid])} bytes, not {size}")
            files[path] = StoredFile(oid, size, True, git_blob_sha1(lfs_pointer(oid, size)))
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise _entry_not_found(path, head)
        elif key == "deletedFolder":
            doomed = [p for p in files if p.startswith(path.rstrip("/") + "/")]
            if not doomed:
                raise _entry_not_found(path, head)
            for p in doomed:
                del files[p]


def _validate_path(path: Any) -> str:
    """A repo-relative path: no leading slash, no ``.``/``..``/empty segment, not in ``.git/``."""
    parts = path.split("/") if isinstance(path, str) else [""]
    if any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(400, f"Invalid path {path!r}: use a relative path like 'dir/file.txt'")
    return path


def _parse_commit_body(body: bytes) -> tuple[dict, list[dict]]:
    """Validate the NDJSON commit payload: a ``header`` line, then operations (unknown key: 400)."""
    try:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    except ValueError as e:
        raise HubError(400, f"Commit payload is not valid NDJSON: {e}") from e
    if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != "header":
        raise HubError(400, "Commit payload must start with a {'key': 'header'} line")
    header = lines[0].get("value") or {}
    if not isinstance(header.get("summary"), str) or not header["summary"].strip():
        raise HubError(400, "Commit header needs a non-empty 'summary'")
    for operation in lines[1:]:
        key = operation.get("key") if isinstance(operation, dict) else None
        if key not in _OPERATION_KEYS or not isinstance(operation.get("value"), dict):
            raise HubError(400, f"Unknown commit operation {key!r}: expected {_OPERATION_KEYS}")
        path = operation["value"].get("path")
        if key == "deletedFolder" and isinstance(path, str):
            path = path.rstrip("/")  # the client sends folders with a trailing slash
        _validate_path(path)
    return header, lines[1:]


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b|a-|-n`` -> inclusive (start, end); None: ignore the header; 416: unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or match.groups() == ("", ""):
        return None  # malformed or multi-range: RFC 9110 says serve the whole entity
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
    else:  # a suffix: the last n bytes
        suffix = int(last)
        start, end = (max(size - suffix, 0) if suffix else size), size - 1
    if start >= size:
        message = f"Range {header!r} is not satisfiable for {size} bytes"
        raise HubError(416, message, headers={"Content-Range": f"bytes */{size}"})
    return start, end


# ---- HTTP plumbing ------------------------------------------------------------------------------

Route = tuple[int, dict, Any]  # status, headers, JSON-able payload or raw bytes


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, hands it to ``FakeHub._route`` and answers with exact lengths."""

    protocol_version = "HTTP/1.1"  # httpx keeps connections alive
    # headers and body are two writes: without TCP_NODELAY, Nagle's algorithm and delayed ACKs
    # add ~40 ms to every response
    disable_nagle_algorithm = True
    server: _HubHTTPServer

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read FakeHub.requests rather than stderr

    def _handle(self) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        host, port = self.server.server_address[:2]
        # absolute URLs in answers must use the host the client called (hub-protocol.md gotcha 4)
        self.base_url = "http://" + self.headers.get("Host", f"{host}:{port}")
        error_code = None
        try:
            self.body = self._read_body()
            hub._delay(split.path)
            segments = [unquote(s) for s in split.path.split("/")[1:]]  # split first: refs%2Fpr%2F1
            status, headers, payload = hub._route(self, self.command, segments)
        except HubError as e:
            status, error_code, payload = e.status, e.error_code, {"error": e.message}
            header_safe = " ".join(e.message.split()).encode("ascii", "replace").decode()
            headers = {"X-Error-Message": header_safe, **e.headers}
            if e.error_code:
                headers["X-Error-Code"] = e.error_code
        except Exception as e:  # noqa: BLE001 - a server bug: answer 500, keep it for the test
            hub.server_errors.append(traceback.format_exc())
            status, payload = 500, {"error": f"fake hub bug: {e!r}"}
            headers = {"X-Error-Message": f"fake hub bug: {type(e).__name__}"}
        hub._log(self, split, status, error_code)
        self._respond(status, headers, payload)

    def _read_body(self) -> bytes:
        """The whole body, read even for an error answer, or the kept-alive connection breaks."""
        if "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        chunks = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            chunks.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline().strip():  # trailers
            pass
        return b"".join(chunks)

    def _respond(self, status: int, headers: dict, payload: Any) -> None:
        if isinstance(payload, bytes):
            body, content_type = payload, "application/octet-stream"
        else:
            body, content_type = json.dumps(payload).encode(), "application/json"
        headers.setdefault("Content-Type", content_type)
        headers.setdefault("Content-Length", str(len(body)))  # resolve sets it (HEAD: full size)
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def json_body(self) -> dict:
        try:
            body = json.loads(self.body or b"{}")
        except ValueError as e:
            raise HubError(400, f"Request body is not valid JSON: {e}") from e
        if not isinstance(body, dict):
            raise HubError(400, f"Request body must be a JSON object, not {type(body).__name__}")
        return body

    def query_flag(self, name: str) -> bool:
        return self.query.get(name, [""])[0].lower() in ("1", "true")

    def bearer_token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], hub: FakeHub) -> None:
        super().__init__(address, _Handler)
        self.hub = hub


# ---- the server ---------------------------------------------------------------------------------


class FakeHub:
    """An in-memory Hugging Face Hub on ``127.0.0.1:<port>``; point ``HF_ENDPOINT`` at ``url``.

    Usage::

        with FakeHub() as hub:                     # or hub = FakeHub().start(); ...; hub.stop()
            os.environ["HF_ENDPOINT"] = hub.url    # before importing huggingface_hub/datasets
            ...
            assert hub.find_requests("POST", "/info/lfs/objects/batch")
            assert hub.files("user/repo")["README.md"].startswith(b"---")
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = HubStore()
        #: tracebacks of requests that crashed the server; the test conftest fails on any
        self.server_errors: list[str] = []
        self._address = (host, port)
        self._httpd: _HubHTTPServer | None = None
        self._log_lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._strict_token: str | None = None
        self._upload_key = secrets.token_bytes(16)  # signs LFS upload URLs (sent without a token)
        #: seconds every request waits (body read, nothing handled yet) before it is served: a
        #: slow link. Tests set it (or use :meth:`slowed`); 0 turns it off.
        self.request_delay = 0.0
        #: only requests whose (raw) path contains this are delayed; "" delays every request
        self.delayed_paths = ""

    # -- lifecycle --

    def start(self) -> FakeHub:
        """Bind (port 0: a free port chosen by the OS) and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("FakeHub is already running")
        self._httpd = _HubHTTPServer(self._address, self)
        threading.Thread(target=self._httpd.serve_forever, args=(0.1,), name="fake-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; the store stays readable (idempotent)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeHub:  # noqa: PYI034 - Self needs Python 3.11
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: the value for ``HF_ENDPOINT``."""
        if self._httpd is None:
            raise RuntimeError("FakeHub is not running: call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- for tests --

    @property
    def requests(self) -> list[RequestRecord]:
        """A copy of the request log, oldest first."""
        with self._log_lock:
            return list(self._requests)

    @property
    def request_count(self) -> int:
        """How many requests were served: a cheap mark for ``find_requests(since=...)``."""
        return len(self._requests)

    def find_requests(self, method: str | None = None, contains: str = "", since: int = 0) -> list[RequestRecord]:
        """Logged requests (from index ``since``) with this method and ``contains`` in the path."""
        with self._log_lock:
            log = self._requests[since:]
        return [r for r in log if method in (None, r.method) and contains in r.decoded_path]

    def set_strict_auth(self, token: str | None) -> None:
        """Check tokens like the real Hub (``None`` turns the check off, the default).

        With strict auth on, any other token gets 401 "Invalid credentials in Authorization
        header" (huggingface_hub raises ``HfHubHTTPError``, as with the real Hub). Requests
        without a token may still read public repos and validate YAML; writes and private repos
        answer 401 ``RepoNotFound`` (``RepositoryNotFoundError``).
        """
        self._strict_token = token

    def strict_auth(self, token: str) -> _StrictAuth:
        """``with hub.strict_auth(token): ...`` turns strict auth on for a block."""
        return _StrictAuth(self, token)

    @contextmanager
    def slowed(self, seconds: float, contains: str = "") -> Iterator[FakeHub]:
        """``with hub.slowed(0.5, "/commit/"): ...``: those requests wait ``seconds`` first."""
        previous = self.request_delay, self.delayed_paths
        self.request_delay, self.delayed_paths = seconds, contains
        try:
            yield self
        finally:
            self.request_delay, self.delayed_paths = previous

    def files(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> dict:
        """The server's view of a repo at a revision: ``{path: bytes}``, bypassing the clients."""
        with self.store.lock:
            commit = self.store.get_repo(repo_type, repo_id).resolve(revision)
            return {path: self.store.blobs[f.sha256] for path, f in commit.files.items()}

    def commits(self, repo_id: str, repo_type: str = "model", revision: str = "main") -> list:
        """The ``Commit`` history of a revision, newest first."""
        with self.store.lock:
            repo = self.store.get_repo(repo_type, repo_id)
            return list(repo.history(repo.resolve(revision)))

    def put_files(
        self,
        repo_id: str,
        files: Mapping[str, bytes],
        repo_type: str = "model",
        branch: str = "main",
        message: str = "Seed files",
    ) -> str:
        """Commit ``{path: bytes}`` server-side (creating the repo if needed); returns the commit id.

        For tests of download paths that should not depend on the upload path. Files are stored
        regular or LFS by the same rule as uploads.
        """
        with self.store.lock:
            try:
                repo = self.store.get_repo(repo_type, repo_id)
            except HubError:
                repo = self.store.create_repo(repo_type, repo_id, private=False)
            operations = []
            for path, data in files.items():
                lfs = upload_mode(_validate_path(path), len(data), data[:512]) == "lfs"
                stored = self.store.store_bytes(data, lfs=lfs)
                if lfs:
                    repo.lfs_objects.add(stored.sha256)
                    value = {"path": path, "algo": "sha256", "oid": stored.sha256}
                    operations.append({"key": "lfsFile", "value": {**value, "size": stored.size}})
                else:
                    content = base64.b64encode(data).decode()
                    operations.append({"key": "file", "value": {"path": path, "content": content}})
            header = {"summary": message}
            return self.store.commit(repo, branch, header, operations, create_pr=False)[0].oid

    # -- request handling --

    def _log(self, request: _Handler, split: Any, status: int, error_code: str | None) -> None:
        wanted = {h: request.headers[h] for h in ("Range", "Content-Type", "User-Agent")}
        record = RequestRecord(
            method=request.command,
            path=split.path,
            query=split.query,
            status=status,
            error_code=error_code,
            authorized="Authorization" in request.headers,
            headers=MappingProxyType({k: v for k, v in wanted.items() if v is not None}),
        )
        with self._log_lock:
            self._requests.append(record)
        if "xet" in split.path:  # xet must be off (HF_HUB_DISABLE_XET=1): there is no fallback
            print(f"fake hub: unexpected xet request {split.path}", file=sys.stderr)

    def _delay(self, path: str) -> None:
        delay = self.request_delay
        if delay > 0 and self.delayed_paths in path:
            time.sleep(delay)

    def _upload_signature(self, repo: Repo, sha256: str) -> str:
        message = f"{repo.repo_type}/{repo.repo_id}/{sha256}".encode()
        return hmac.new(self._upload_key, message, hashlib.sha256).hexdigest()[:32]

    def _repo(self, request: _Handler, repo_type: str, repo_id: str, write: bool) -> Repo:
        """Look a repo up; under strict auth, anonymous writes and private reads get a 401."""
        repo = self.store.get_repo(repo_type, repo_id)
        anonymous = request.bearer_token() is None
        if self._strict_token is not None and anonymous and (write or repo.private):
            raise _repo_not_found(repo_type, repo_id, status=401)
        return repo

    def _route(self, request: _Handler, method: str, segments: list[str]) -> Route:
        token = request.bearer_token()
        if self._strict_token is not None and token is not None and token != self._strict_token:
            raise HubError(401, INVALID_TOKEN_MESSAGE)
        if segments[:1] == ["api"]:
            return self._route_api(request, method, segments[1:])
        if segments[:1] == ["_lfs"] and len(segments) == 5 and method == "PUT":
            repo_type = REPO_TYPES.get(segments[1] + "s", "")
            return self._lfs_upload(request, repo_type, "/".join(segments[2:4]), segments[4])
        repo_type, rest = "model", segments
        if segments[0] in ("datasets", "spaces") and len(segments) >= 3:
            repo_type, rest = REPO_TYPES[segments[0]], segments[1:]
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            path = "/".join(rest[4:])
            return self._resolve(request, repo_type, "/".join(rest[:2]), rest[3], path)
        is_batch = rest[2:] == ["info", "lfs", "objects", "batch"] and rest[1].endswith(".git")
        if len(rest) == 6 and is_batch and method == "POST":
            return self._lfs_batch(request, repo_type, f"{rest[0]}/{rest[1].removesuffix('.git')}")
        raise HubError(404, f"Unknown route {method} /{'/'.join(segments)}")  # untyped on purpose

    def _route_api(self, request: _Handler, method: str, segs: list[str]) -> Route:
        unknown = HubError(404, f"Unknown route {method} /api/{'/'.join(segs)}")
        top_level: dict[tuple[str, str], Callable[[_Handler], Route]] = {
            ("POST", "repos/create"): self._create_repo,
            ("DELETE", "repos/delete"): self._delete_repo,
            ("POST", "validate-yaml"): self._validate_yaml,
            ("GET", "whoami-v2"): self._whoami,
        }
        if (method, "/".join(segs)) in top_level:
            return top_level[(method, "/".join(segs))](request)
        if len(segs) < 3 or segs[0] not in REPO_TYPES:
            raise unknown
        repo_type, repo_id = REPO_TYPES[segs[0]], f"{segs[1]}/{segs[2]}"
        action, args = (segs[3] if len(segs) > 3 else ""), segs[4:]
        if method == "GET" and (action == "" or (action == "revision" and len(args) == 1)):
            return self._repo_info(request, repo_type, repo_id, args[0] if args else "main")
        # (method, action) -> (handler, whether a revision/name/path follows the action)
        routes: dict[tuple[str, str], tuple[Callable[..., Route], bool]] = {
            ("GET", "tree"): (self._list_tree, True),
            ("POST", "paths-info"): (self._paths_info, True),
            ("POST", "preupload"): (self._preupload, True),
            ("POST", "commit"): (self._commit, True),
            ("GET", "refs"): (self._list_refs, False),
            ("GET", "commits"): (self._list_commits, True),
            ("POST", "branch"): (self._create_branch, True),
            ("DELETE", "branch"): (self._delete_branch, True),
            ("POST", "tag"): (self._create_tag, True),
            ("DELETE", "tag"): (self._delete_tag, True),
            ("PUT", "settings"): (self._update_settings, False),
        }
        handler, takes_args = routes.get((method, action), (None, False))
        if handler is None or takes_args != bool(args):
            raise unknown
        return handler(request, repo_type, repo_id, *args)

    # -- account and repos --

    def _whoami(self, request: _Handler) -> Route:
        if self._strict_token is not None and request.bearer_token() is None:
            raise HubError(401, INVALID_TOKEN_MESSAGE)
        auth = {"type": "access_token", "accessToken": {"displayName": "test", "role": "write"}}
        user = {"type": "user", "id": FAKE_USER, "name": FAKE_USER, "fullname": "Test User"}
        return 200, {}, {**user, "orgs": [], "auth": auth}

    def _validate_yaml(self, request: _Handler) -> Route:
        request.json_body()  # must be JSON; the YAML is not checked (no YAML parser in the stdlib)
        return 200, {}, {"errors": [], "warnings": []}

    def _create_repo(self, request: _Handler) -> Route:
        body = request.json_body()
        name, namespace = body.get("name"), body.get("organization") or FAKE_USER
        repo_type = body.get("type") or "model"
        for label, value in (("name", name), ("organization", namespace)):
            if not isinstance(value, str) or not _NAME_RE.match(value):
                raise HubError(400, f"Invalid repo {label} {value!r}: use letters, digits, -_.")
        if repo_type not in URL_PREFIX:
            raise HubError(400, f"Invalid repo type {repo_type!r}: one of {sorted(URL_PREFIX)}")
        if self._strict_token is not None and request.bearer_token() is None:
            raise HubError(401, "You must be authenticated to create a repo")
        repo_id = f"{namespace}/{name}"
        url = f"{request.base_url}/{URL_PREFIX[repo_type]}{repo_id}"
        payload = {"url": url, "name": repo_id, "id": repo_id}
        private = bool(body.get("private")) or body.get("visibility") == "private"
        try:
            self.store.create_repo(repo_type, repo_id, private)
        except HubError as e:  # 409: create_repo(exist_ok=True) still reads "url" from it
            return e.status, {"X-Error-Message": e.message}, {"error": e.message, **payload}
        return 200, {}, payload

    def _delete_repo(self, request: _Handler) -> Route:
        body = request.json_body()
        repo_type = body.get("type") or "model"
        repo_id = f"{body.get('organization') or FAKE_USER}/{body.get('name')}"
        self._repo(request, repo_type, repo_id, write=True)
        self.store.delete_repo(repo_type, repo_id)
        return 200, {}, {}

    def _update_settings(self, request: _Handler, repo_type: str, repo_id: str) -> Route:
        body = request.json_body()
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=True)
            if "private" in body:
                repo.private = bool(body["private"])
            return 200, {}, {"private": repo.private}

    def _repo_info(self, request: _Handler, repo_type: str, repo_id: str, revision: str) -> Route:
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=False)
            commit = repo.resolve(revision)
        siblings = []
        for path, stored in commit.files.items():
            sibling: dict[str, Any] = {"rfilename": path}
            if request.query_flag("blobs"):
                sibling.update(size=stored.size, blobId=stored.oid)
                if stored.lfs:
                    lfs = {"sha256": stored.sha256, "size": stored.size}
                    sibling["lfs"] = {**lfs, "pointerSize": stored.pointer_size}
            siblings.append(sibling)
        info = {
            "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0],
            "sha": commit.oid,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        return 200, {}, info

    # -- listings --

    def _list_tree(self, request: _Handler, repo_type: str, repo_id: str, revision: str, *path: str) -> Route:
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=False)
            commit = repo.resolve(revision)
            entries = _tree(commit, "/".join(path).strip("/"), request.query_flag("recursive"))
            if request.query_flag("expand"):
                entries = [_last_commit(repo, commit, e) for e in entries]
        return 200, {}, entries

    def _paths_info(self, request: _Handler, repo_type: str, repo_id: str, revision: str) -> Route:
        form = parse_qs(request.body.decode())  # form-encoded: paths=a&paths=b&expand=true
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=False)
            commit = repo.resolve(revision)
            entries = []
            for path in dict.fromkeys(p.strip("/") for p in form.get("paths", [])):
                if path in commit.files:
                    entries.append(_file_entry(path, commit.files[path]))
                elif path and any(p.startswith(path + "/") for p in commit.files):
                    entries.append(_folder_entry(commit.files, path))
            if form.get("expand", [""])[0].lower() in ("1", "true"):
                entries = [_last_commit(repo, commit, e) for e in entries]
        return 200, {}, entries

    def _list_refs(self, request: _Handler, repo_type: str, repo_id: str) -> Route:
        def refs(kind: str, names: Mapping[str, str]) -> list[dict]:
            return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c} for n, c in names.items()]

        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=False)
            answer: dict[str, Any] = {
                "branches": refs("heads", repo.branches),
                "tags": refs("tags", repo.tags),
                "converts": [],
            }
            if request.query_flag("include_prs"):
                answer["pullRequests"] = [
                    {"name": f"refs/pr/{n}", "ref": f"refs/pr/{n}", "targetCommit": c}
                    for n, c in enumerate(repo.pull_requests, start=1)
                ]
        return 200, {}, answer

    def _list_commits(self, request: _Handler, repo_type: str, repo_id: str, revision: str) -> Route:
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=False)
            history = list(repo.history(repo.resolve(revision)))
        authors = [{"user": FAKE_USER}]
        return (
            200,
            {},
            [
                {
                    "id": c.oid,
                    "title": c.title,
                    "message": c.message,
                    "date": c.date,
                    "authors": authors,
                }
                for c in history
            ],
        )

    # -- refs --

    def _create_branch(self, request: _Handler, repo_type: str, repo_id: str, *name_parts: str) -> Route:
        name = "/".join(name_parts)
        starting_point = request.json_body().get("startingPoint") or "main"
        if not _REF_NAME_RE.match(name) or name.startswith("refs"):
            raise HubError(400, f"Invalid branch name {name!r}")
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=True)
            if name in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{name}")
            repo.branches[name] = repo.resolve(starting_point).oid
        return 200, {}, {}

    def _create_tag(self, request: _Handler, repo_type: str, repo_id: str, *revision_parts: str) -> Route:
        tag = request.json_body().get("tag")
        if not isinstance(tag, str) or not _REF_NAME_RE.match(tag):
            raise HubError(400, f"Invalid tag name {tag!r}")
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=True)
            if tag in repo.tags:
                raise HubError(409, f"Reference already exists: refs/tags/{tag}")
            repo.tags[tag] = repo.resolve("/".join(revision_parts)).oid
        return 200, {}, {}

    def _delete_branch(self, request: _Handler, repo_type: str, repo_id: str, *name: str) -> Route:
        if "/".join(name) == "main":
            raise HubError(403, "The main branch cannot be deleted")
        return self._delete_ref(request, repo_type, repo_id, "branches", "/".join(name))

    def _delete_tag(self, request: _Handler, repo_type: str, repo_id: str, *name: str) -> Route:
        return self._delete_ref(request, repo_type, repo_id, "tags", "/".join(name))

    def _delete_ref(self, request: _Handler, repo_type: str, repo_id: str, kind: str, name: str):
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=True)
            if getattr(repo, kind).pop(name, None) is None:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
        return 200, {}, {}

    # -- uploads --

    def _preupload(self, request: _Handler, repo_type: str, repo_id: str, revision: str) -> Route:
        files = request.json_body().get("files")
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise HubError(400, "Expected a JSON body {'files': [{'path', 'sample', 'size'}]}")
        with self.store.lock:
            head = self._repo(request, repo_type, repo_id, write=True).resolve(revision)
        answers = []
        for item in files:
            path, size = _validate_path(item.get("path")), item.get("size")
            if not isinstance(size, int) or size < 0:
                raise HubError(400, f"Invalid size {size!r} for {path}")
            try:
                sample = base64.b64decode(item.get("sample") or "", validate=True)
            except binascii.Error as e:
                raise HubError(400, f"Invalid base64 sample for {path}: {e}") from e
            mode = upload_mode(path, size, sample)
            answer = {"path": path, "uploadMode": mode, "shouldIgnore": False}
            if path in head.files:  # same scheme as the ETag, or the client's no-op check misfires
                answer["oid"] = head.files[path].etag
            answers.append(answer)
        return 200, {}, {"files": answers}

    def _lfs_batch(self, request: _Handler, repo_type: str, repo_id: str) -> Route:
        body = request.json_body()
        if body.get("operation") != "upload" or "basic" not in body.get("transfers", ["basic"]):
            raise HubError(400, "Only the 'upload' operation with 'basic' transfers is supported")
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=True)
            known = set(repo.lfs_objects)
        objects = []
        for obj in body.get("objects", []):
            oid, size = (obj.get("oid"), obj.get("size")) if isinstance(obj, dict) else (None, None)
            answer: dict[str, Any] = {"oid": oid, "size": size}
            if not (isinstance(oid, str) and _SHA256_RE.match(oid) and isinstance(size, int)):
                answer["error"] = {"code": 422, "message": "oid must be a sha256, size an integer"}
            elif oid not in known:  # no "actions" means "already stored": the client skips it
                signature = self._upload_signature(repo, oid)
                href = f"{request.base_url}/_lfs/{repo_type}/{repo_id}/{oid}?sig={signature}"
                answer.update(authenticated=True, actions={"upload": {"href": href, "header": {}}})
            objects.append(answer)
        headers = {"Content-Type": "application/vnd.git-lfs+json"}
        return 200, headers, {"transfer": "basic", "objects": objects}

    def _lfs_upload(self, request: _Handler, repo_type: str, repo_id: str, oid: str) -> Route:
        """A "presigned" storage URL: no Authorization (as on the Hub); the signature is the auth."""
        repo = self.store.get_repo(repo_type, repo_id)
        signature = request.query.get("sig", [""])[0]
        if not hmac.compare_digest(signature, self._upload_signature(repo, oid)):
            raise HubError(403, "Invalid or missing upload signature")
        if hashlib.sha256(request.body).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match its sha256 {oid}")
        with self.store.lock:
            self.store.store_bytes(request.body, lfs=True)
            repo.lfs_objects.add(oid)
        return 200, {}, b""

    def _commit(self, request: _Handler, repo_type: str, repo_id: str, revision: str) -> Route:
        header, operations = _parse_commit_body(request.body)
        repo = self._repo(request, repo_type, repo_id, write=True)
        create_pr = request.query_flag("create_pr")
        commit, pr_number = self.store.commit(repo, revision, header, operations, create_pr)
        repo_url = f"{request.base_url}/{repo.url_path}"  # the client parses it: same host
        return (
            200,
            {},
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{repo_url}/commit/{commit.oid}",
                "pullRequestUrl": f"{repo_url}/discussions/{pr_number}" if pr_number else None,
                "hookOutput": "",
            },
        )

    # -- downloads --

    def _resolve(self, request: _Handler, repo_type: str, repo_id: str, revision: str, path: str) -> Route:
        with self.store.lock:
            commit = self._repo(request, repo_type, repo_id, write=False).resolve(revision)
            stored = commit.files.get(path)
            if stored is None:
                raise _entry_not_found(path, commit)
            data = self.store.blobs[stored.sha256]
        headers = {
            "X-Repo-Commit": commit.oid,  # names the client's snapshot folder: must be 40-hex
            "ETag": f'"{stored.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
            "Content-Length": str(stored.size),
        }  # never X-Xet-Hash: it would switch the client to xet downloads
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(stored.size)})
        range_header = request.headers.get("Range") if request.command == "GET" else None
        byte_range = _parse_range(range_header, stored.size) if range_header else None
        if byte_range is None:
            return 200, headers, data
        start, end = byte_range
        headers["Content-Range"] = f"bytes {start}-{end}/{stored.size}"
        headers["Content-Length"] = str(end - start + 1)
        return 206, headers, data[start : end + 1]


class _StrictAuth:
    """The context manager returned by :meth:`FakeHub.strict_auth`."""

    def __init__(self, hub: FakeHub, token: str) -> None:
        self._hub, self._token, self._previous = hub, token, None

    def __enter__(self) -> FakeHub:
        self._previous = self._hub._strict_token
        self._hub.set_strict_auth(self._token)
        return self._hub

    def __exit__(self, *exc_info: object) -> None:
        self._hub.set_strict_auth(self._previous)


def main(argv: list[str] | None = None) -> None:
    """Serve in the foreground, for trying the real clients by hand."""
    parser = argparse.ArgumentParser(description="In-memory Hugging Face Hub for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 (default) picks a free port")
    parser.add_argument("--strict-auth", action="store_true", help="accept only the token in $HF_TOKEN")
    parser.add_argument("--request-delay", type=float, default=0.0, help="seconds each request waits (a slow link)")
    parser.add_argument("--delayed-paths", default="", help="delay only requests whose path contains this")
    args = parser.parse_args(argv)
    if args.strict_auth and not os.environ.get("HF_TOKEN"):
        parser.error("--strict-auth needs HF_TOKEN set in the environment")
    hub = FakeHub(args.host, args.port).start()
    hub.set_strict_auth(os.environ["HF_TOKEN"] if args.strict_auth else None)
    hub.request_delay, hub.delayed_paths = args.request_delay, args.delayed_paths
    print(f"Fake Hub serving at {hub.url}", flush=True)
    print(f"  export HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1 HF_TOKEN=hf_dummy", flush=True)
    print("  (keep HF_HUB_OFFLINE unset; Ctrl-C stops the server)", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
