"""An in-memory server that speaks the Hugging Face Hub HTTP protocol on 127.0.0.1, for tests.

Test machines cannot reach huggingface.co, and a monkeypatched client proves nothing about protocol drift.
So the test suite points the *real* ``huggingface_hub``, ``datasets``, ``timm`` and ``transformers`` code at this
server through ``HF_ENDPOINT`` (see ``tests/conftest.py``) and lets them run end to end: HTTP, the download cache
and the mapping of HTTP errors to exception types.

The protocol subset is specified in ``/work/shared/hub-protocol.md`` (endpoints §3, details §4, flows §5,
gotchas §6). In short, the server holds:

* repos keyed by ``(repo_type, "namespace/name")`` for models, datasets and spaces, each with commits, branches,
  tags and pull-request refs (``refs/pr/N``);
* a blob store keyed by sha256; a file is uploaded either inline ("regular") or through the Git LFS batch API;
* a request log (:attr:`FakeHub.requests`) for assertions such as "push_to_hub used LFS" or "no xet request";
* optional strict auth (:meth:`FakeHub.set_strict_auth`) that answers a wrong token the way the real Hub does.

It deliberately uses the standard library only and must never import a Hugging Face library: the test
configuration starts it *before* those libraries are imported, because they read ``HF_ENDPOINT`` at import.

Manual use::

    python tests/hub_server.py --port 8765        # then: export HF_ENDPOINT=http://127.0.0.1:8765 HF_HUB_DISABLE_XET=1
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
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import MappingProxyType
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = ["FakeHub", "RequestRecord", "git_blob_sha1", "lfs_pointer"]

# ---- protocol constants -------------------------------------------------------------------------------------------

#: The user every request is attributed to (the server has a single account).
FAKE_USER = "rela-hf-tester"
#: URL collection name (``/api/<plural>/...``) -> repo type.
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
#: Repo type -> prefix of its web and resolve URLs.
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}
#: Extensions uploaded through LFS, as the Hub's default ``.gitattributes`` does (``.parquet`` is load-bearing:
#: datasets deletes its temporary shards between preupload and commit, so they must not be re-read inline).
LFS_EXTENSIONS = frozenset(
    {
        ".bin",
        ".safetensors",
        ".parquet",
        ".arrow",
        ".pt",
        ".pth",
        ".h5",
        ".onnx",
        ".npz",
        ".npy",
        ".zip",
        ".gz",
    }
)
#: Files larger than this go to LFS whatever their extension.
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
#: The real Hub's message for a token it does not know; huggingface_hub turns it into a plain ``HfHubHTTPError``.
INVALID_TOKEN_MESSAGE = "Invalid credentials in Authorization header"
#: The real Hub's answer when a ``parentCommit`` is no longer the head of the branch.
STALE_PARENT_MESSAGE = "A commit has happened since. Please refresh and try again."

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_PR_RE = re.compile(r"^refs/pr/([1-9][0-9]*)$")
_DEFAULT_GITATTRIBUTES = "".join(
    f"*{ext} filter=lfs diff=lfs merge=lfs -text\n" for ext in sorted(LFS_EXTENSIONS)
).encode()


def git_blob_sha1(data: bytes) -> str:
    """Git's object id for a blob: sha1 of ``b"blob <size>\\0" + data`` (the Hub's id of a regular file)."""
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The Git LFS pointer text that stands in the git tree for an LFS file."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _iso_now() -> str:
    """The current time in the Hub's ISO 8601 UTC format, e.g. ``2026-11-26T20:33:42.000Z``."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


# ---- data model ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredFile:
    """One file of a commit; its bytes live in the hub's blob store under ``sha256``."""

    sha256: str
    size: int
    lfs: bool
    oid: str  # git blob sha1 of the content (regular) or of the LFS pointer text (LFS)

    @property
    def etag(self) -> str:
        """The id clients compare against their cache: git sha1 for regular files, sha256 for LFS files."""
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
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: list[str] = field(default_factory=list)  # refs/pr/N -> pull_requests[N - 1]
    lfs_objects: set[str] = field(
        default_factory=set
    )  # sha256 of LFS objects uploaded to this repo

    @property
    def url_path(self) -> str:
        return URL_PREFIX[self.repo_type] + self.repo_id

    def resolve(self, revision: str) -> Commit:
        """Branch, then tag, then ``refs/pr/N``, then a full commit id; else 404 ``RevisionNotFound``."""
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
    """One served request. The token itself is never recorded, only whether one was sent."""

    method: str
    path: str  # raw (still percent-encoded) path, without the query
    query: str
    status: int
    error_code: str | None
    authorized: bool
    headers: Mapping[str, str]  # a few request headers: Range, Content-Type, User-Agent

    @property
    def decoded_path(self) -> str:
        return unquote(self.path)


class HubError(Exception):
    """An error answer: status, message (``{"error"}`` body + ``X-Error-Message``), optional ``X-Error-Code``."""

    def __init__(
        self, status: int, message: str, error_code: str | None = None, headers: dict | None = None
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = headers or {}


def _repo_not_found(repo_type: str, repo_id: str, status: int = 404) -> HubError:
    return HubError(status, f"Repository not found: {repo_type} {repo_id}", "RepoNotFound")


def _entry_not_found(path: str, commit: Commit) -> HubError:
    return HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})


# ---- listings -----------------------------------------------------------------------------------------------------


def _folder_oid(files: Mapping[str, StoredFile], folder: str) -> str:
    """A stable 40-hex id for a folder, derived from the ids of everything under it (like a git tree id)."""
    prefix = folder + "/"
    listing = "\n".join(f"{p} {f.oid}" for p, f in sorted(files.items()) if p.startswith(prefix))
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
    """Tree listing of ``folder`` ("" = root): direct children, or everything below when ``recursive``."""
    files = commit.files
    prefix = folder + "/" if folder else ""
    below = sorted(p for p in files if p.startswith(prefix))
    if folder and (folder in files or not below):
        raise _entry_not_found(folder, commit)  # a missing folder, or a path that is a file
    folders: set[str] = set()
    entries = []
    for path in below:
        parts = path[len(prefix) :].split("/")
        depth = len(parts) - 1 if recursive else min(1, len(parts) - 1)
        folders.update(prefix + "/".join(parts[: i + 1]) for i in range(depth))
        if recursive or len(parts) == 1:
            entries.append(_file_entry(path, files[path]))
    return [_folder_entry(files, f) for f in sorted(folders)] + entries


# ---- the store ----------------------------------------------------------------------------------------------------


class HubStore:
    """All repos and blobs. Every public method takes the one lock, so concurrent requests see whole commits."""

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
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, "You already created this repo")
            repo = Repo(repo_type, repo_id, private, created_at=_iso_now())
            self.repos[(repo_type, repo_id)] = repo
            initial = self.store_bytes(_DEFAULT_GITATTRIBUTES, lfs=False)
            self._add_commit(repo, None, {".gitattributes": initial}, "initial commit", "")
            repo.branches["main"] = next(iter(repo.commits))
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

    def _add_commit(
        self,
        repo: Repo,
        parent: Commit | None,
        files: dict[str, StoredFile],
        title: str,
        message: str,
    ) -> Commit:
        seed = f"{repo.repo_type}/{repo.repo_id}/{next(self._commit_counter)}/{parent.oid if parent else ''}"
        commit = Commit(
            oid=hashlib.sha1(seed.encode()).hexdigest(),
            parent=parent.oid if parent else None,
            title=title,
            message=message,
            date=_iso_now(),
            files=MappingProxyType(dict(sorted(files.items()))),
        )
        repo.commits[commit.oid] = commit
        return commit

    def commit(
        self, repo: Repo, revision: str, header: dict, operations: list[dict], create_pr: bool
    ) -> tuple[Commit, int | None]:
        """Apply a validated list of commit operations atomically; returns the commit and the PR number if any."""
        with self.lock:
            if revision not in repo.branches and not _PR_RE.match(revision):
                repo.resolve(revision)  # 404 RevisionNotFound if it does not exist at all
                raise HubError(
                    400, f"Can only commit to a branch or a pull request ref, not to {revision!r}"
                )
            head = repo.resolve(revision)
            parent_commit = header.get("parentCommit")
            if parent_commit and parent_commit != head.oid:
                raise HubError(412, STALE_PARENT_MESSAGE)
            files = dict(head.files)
            for op in operations:
                self._apply(repo, head, files, op)
            commit = self._add_commit(
                repo, head, files, header["summary"], header.get("description") or ""
            )
            if create_pr:
                repo.pull_requests.append(commit.oid)
                return commit, len(repo.pull_requests)
            pr = _PR_RE.match(revision)
            if pr:
                repo.pull_requests[int(pr.group(1)) - 1] = commit.oid
            else:
                repo.branches[revision] = commit.oid
            return commit, None

    def _apply(self, repo: Repo, head: Commit, files: dict[str, StoredFile], op: dict) -> None:
        key, value = op["key"], op["value"]
        path = value["path"]
        if key == "file":
            if value.get("encoding", "base64") != "base64":
                raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {path}")
            try:
                data = base64.b64decode(value["content"], validate=True)
            except (binascii.Error, TypeError) as e:
                raise HubError(400, f"Invalid base64 content for {path}: {e}") from e
            files[path] = self.store_bytes(data, lfs=False)
        elif key == "lfsFile":
            oid, size = value.get("oid"), value.get("size")
            if value.get("algo", "sha256") != "sha256" or oid not in repo.lfs_objects:
                raise HubError(
                    422, f"LFS object {oid} for {path} was never uploaded to {repo.repo_id}"
                )
            if size != len(self.blobs[oid]):
                raise HubError(
                    422, f"LFS object {oid} for {path} has size {len(self.blobs[oid])}, not {size}"
                )
            files[path] = StoredFile(oid, size, True, git_blob_sha1(lfs_pointer(oid, size)))
        elif key == "deletedFile":
            if files.pop(path, None) is None:
                raise _entry_not_found(path, head)
        elif key == "deletedFolder":
            prefix = path.rstrip("/") + "/"
            doomed = [p for p in files if p.startswith(prefix)]
            if not doomed:
                raise _entry_not_found(path, head)
            for p in doomed:
                del files[p]


# ---- HTTP ---------------------------------------------------------------------------------------------------------


def _validate_path(path: Any) -> str:
    """A repo-relative file path: no leading slash, no ``.``/``..``/empty segments, nothing under ``.git/``."""
    if not isinstance(path, str) or not path:
        raise HubError(400, f"Invalid path {path!r}: expected a non-empty string")
    parts = path.split("/")
    if any(p in ("", ".", "..") for p in parts) or parts[0] == ".git":
        raise HubError(
            400, f"Invalid path {path!r}: use a relative path without '.', '..' or empty segments"
        )
    return path


def _upload_mode(path: str, size: int, sample: bytes) -> str:
    """The Hub's choice between inline ("regular") and LFS upload (§4 of the protocol notes)."""
    extension = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    if extension in LFS_EXTENSIONS or b"\x00" in sample or size > LFS_SIZE_THRESHOLD:
        return "lfs"
    return "regular"


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """``bytes=a-b`` / ``a-`` / ``-n`` -> inclusive (start, end); None for a header to ignore; 416 if unsatisfiable."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or match.groups() == ("", ""):
        return None  # malformed or multi-range: RFC 9110 says serve the whole entity
    first, last = match.groups()
    if first:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
        if last and int(last) < start:
            return None
    else:
        start, end = max(size - int(last), 0), size - 1
        if int(last) == 0:
            start = size
    if start >= size:
        raise HubError(
            416,
            f"Range {header!r} not satisfiable for {size} bytes",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


class _Handler(BaseHTTPRequestHandler):
    """Parses a request, dispatches it to a ``FakeHub`` route, and answers with exact lengths (keep-alive)."""

    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY, Nagle + delayed ACKs add
    # ~40 ms to every response
    disable_nagle_algorithm = True
    server: _HubHTTPServer

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests read FakeHub.requests instead of stderr noise

    # -- plumbing --

    def _read_body(self) -> bytes:
        """Read the whole body (even when the answer is an error, or the kept-alive connection breaks)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self, method: str) -> None:
        hub = self.server.hub
        split = urlsplit(self.path)
        self.query = parse_qs(split.query)
        host, port = self.server.server_address[:2]
        self.base_url = f"http://{self.headers.get('Host', f'{host}:{port}')}"
        status, error_code = 500, None
        try:
            self.body = self._read_body()
            segments = [unquote(s) for s in split.path.split("/")[1:]]
            status, headers, payload = hub._route(self, method, segments)
        except HubError as e:
            status, error_code = e.status, e.error_code
            # a header value must be a single latin-1 line
            message = " ".join(e.message.split()).encode("ascii", "replace").decode()
            headers = {"X-Error-Message": message, **e.headers}
            if e.error_code:
                headers["X-Error-Code"] = e.error_code
            payload = {"error": e.message}
        except Exception as e:  # noqa: BLE001 - a server bug: answer 500, keep the traceback for the test
            hub.server_errors.append(traceback.format_exc())
            status, headers, payload = (
                500,
                {"X-Error-Message": f"fake hub bug: {type(e).__name__}"},
                {"error": f"fake hub bug: {e!r}"},
            )
        finally:
            hub._log(self, method, split, status, error_code)
        self._respond(method, status, headers, payload)

    def _respond(self, method: str, status: int, headers: dict, payload: Any) -> None:
        if isinstance(payload, bytes):
            body = payload
            headers.setdefault("Content-Type", "application/octet-stream")
        else:
            body = json.dumps(payload).encode()
            headers.setdefault("Content-Type", "application/json")
        # resolve routes set Content-Length themselves: a HEAD answer carries the full entity size
        headers.setdefault("Content-Length", str(len(body)))
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def json_body(self) -> Any:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as e:
            raise HubError(400, f"Request body is not valid JSON: {e}") from e

    def bearer_token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[len("Bearer ") :].strip() if auth.startswith("Bearer ") else None


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], hub: FakeHub) -> None:
        super().__init__(address, _Handler)
        self.hub = hub


# ---- the public server --------------------------------------------------------------------------------------------

Route = tuple[int, dict, Any]  # status, headers, JSON-able payload or raw bytes


class FakeHub:
    """An in-memory Hugging Face Hub on ``127.0.0.1:<port>``; point ``HF_ENDPOINT`` at :attr:`url`.

    Usage::

        hub = FakeHub().start()          # or: with FakeHub() as hub: ...
        os.environ["HF_ENDPOINT"] = hub.url
        ...
        assert not [r for r in hub.requests if "xet" in r.path]
        hub.stop()
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.store = HubStore()
        self.server_errors: list[
            str
        ] = []  # tracebacks of requests that crashed the server (should stay empty)
        self._address = (host, port)
        self._httpd: _HubHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._log_lock = threading.Lock()
        self._requests: list[RequestRecord] = []
        self._strict_token: str | None = None
        self._upload_key = secrets.token_bytes(
            16
        )  # signs LFS upload URLs (they carry no Authorization)

    # -- lifecycle --

    def start(self) -> FakeHub:
        """Bind (port 0 = any free port) and serve in a daemon thread. Returns ``self``."""
        if self._httpd is not None:
            raise RuntimeError("FakeHub is already running")
        self._httpd = _HubHTTPServer(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.1,), name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, the value for ``HF_ENDPOINT``."""
        if self._httpd is None:
            raise RuntimeError("FakeHub is not running: call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    # -- test helpers --

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of the request log, oldest first."""
        with self._log_lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    def find_requests(self, method: str | None = None, contains: str = "") -> list[RequestRecord]:
        """Logged requests with this method (any if None) whose decoded path contains ``contains``."""
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and contains in r.decoded_path
        ]

    def set_strict_auth(self, token: str | None) -> None:
        """Require ``Authorization: Bearer <token>`` like the real Hub (None turns the check off).

        With strict auth on, a request carrying any other token gets 401 "Invalid credentials in Authorization
        header" (huggingface_hub raises ``HfHubHTTPError``, as against the real Hub); an anonymous request may read
        public repos and validate YAML, but writing or reading a private repo gets 401 ``RepoNotFound``
        (``RepositoryNotFoundError``).
        """
        self._strict_token = token

    def strict_auth(self, token: str) -> _StrictAuth:
        """Context manager form of :meth:`set_strict_auth`: ``with hub.strict_auth(token): ...``."""
        return _StrictAuth(self, token)

    def files(
        self, repo_id: str, repo_type: str = "model", revision: str = "main"
    ) -> dict[str, bytes]:
        """Server-side view of a repo at a revision: path -> content (for assertions, bypassing the clients)."""
        with self.store.lock:
            commit = self.store.get_repo(repo_type, repo_id).resolve(revision)
            return {path: self.store.blobs[f.sha256] for path, f in commit.files.items()}

    def commits(
        self, repo_id: str, repo_type: str = "model", revision: str = "main"
    ) -> list[Commit]:
        """The history of a revision, newest first."""
        with self.store.lock:
            repo = self.store.get_repo(repo_type, repo_id)
            return list(repo.history(repo.resolve(revision)))

    # -- internals --

    def _log(
        self, request: _Handler, method: str, split: Any, status: int, error_code: str | None
    ) -> None:
        wanted = ("Range", "Content-Type", "User-Agent")
        record = RequestRecord(
            method=method,
            path=split.path,
            query=split.query,
            status=status,
            error_code=error_code,
            authorized=request.headers.get("Authorization") is not None,
            headers=MappingProxyType(
                {h: request.headers[h] for h in wanted if h in request.headers}
            ),
        )
        with self._log_lock:
            self._requests.append(record)
        if "xet" in split.path:
            print(
                f"fake hub: xet request {method} {split.path}: is HF_HUB_DISABLE_XET=1 set?",
                file=sys.stderr,
            )

    def _upload_signature(self, repo: Repo, sha256: str) -> str:
        message = f"{repo.repo_type}/{repo.repo_id}/{sha256}".encode()
        return hmac.new(self._upload_key, message, hashlib.sha256).hexdigest()[:32]

    def _check_token(self, request: _Handler) -> None:
        token = request.bearer_token()
        if self._strict_token is not None and token is not None and token != self._strict_token:
            raise HubError(401, INVALID_TOKEN_MESSAGE)

    def _repo(self, request: _Handler, repo_type: str, repo_id: str, write: bool) -> Repo:
        """Look a repo up, applying strict auth to anonymous requests (as the real Hub: a 401 ``RepoNotFound``)."""
        repo = self.store.get_repo(repo_type, repo_id)
        anonymous = request.bearer_token() is None
        if self._strict_token is not None and anonymous and (write or repo.private):
            raise _repo_not_found(repo_type, repo_id, status=401)
        return repo

    def _route(self, request: _Handler, method: str, segments: list[str]) -> Route:
        self._check_token(request)
        if segments[:1] == ["api"]:
            return self._route_api(request, method, segments[1:])
        if segments[:1] == ["_lfs"] and method == "PUT" and len(segments) == 5:
            return self._lfs_upload(
                request, REPO_TYPES.get(segments[1] + "s", ""), "/".join(segments[2:4]), segments[4]
            )
        repo_type, rest = "model", segments
        if segments[:1] in (["datasets"], ["spaces"]) and len(segments) >= 3:
            repo_type, rest = REPO_TYPES[segments[0]], segments[1:]
        if len(rest) >= 5 and rest[2] == "resolve" and method in ("GET", "HEAD"):
            return self._resolve(
                request, repo_type, "/".join(rest[:2]), rest[3], "/".join(rest[4:])
            )
        if (
            len(rest) == 6
            and rest[1].endswith(".git")
            and rest[2:] == ["info", "lfs", "objects", "batch"]
        ) and method == "POST":
            return self._lfs_batch(request, repo_type, f"{rest[0]}/{rest[1][:-4]}")
        raise HubError(404, f"Unknown route {method} /{'/'.join(segments)}")  # untyped, on purpose

    def _route_api(self, request: _Handler, method: str, segs: list[str]) -> Route:
        simple: dict[tuple[str, str], Callable[[_Handler], Route]] = {
            ("POST", "repos/create"): self._create_repo,
            ("DELETE", "repos/delete"): self._delete_repo,
            ("POST", "validate-yaml"): self._validate_yaml,
            ("GET", "whoami-v2"): self._whoami,
        }
        if (method, "/".join(segs)) in simple:
            return simple[(method, "/".join(segs))](request)
        if len(segs) < 3 or segs[0] not in REPO_TYPES:
            raise HubError(404, f"Unknown route {method} /api/{'/'.join(segs)}")
        repo_type, repo_id, action, args = (
            REPO_TYPES[segs[0]],
            f"{segs[1]}/{segs[2]}",
            segs[3:4],
            segs[4:],
        )
        if method == "GET" and (not action or (action == ["revision"] and len(args) == 1)):
            return self._repo_info(request, repo_type, repo_id, args[0] if args else "main")
        # (method, action) -> (handler, whether the route takes a revision/name/path after the action)
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
        handler, takes_args = routes.get((method, action[0] if action else ""), (None, False))
        if handler is None or takes_args != bool(args):
            raise HubError(404, f"Unknown route {method} /api/{'/'.join(segs)}")
        return handler(request, repo_type, repo_id, *args)

    # -- repos --

    def _create_repo(self, request: _Handler) -> Route:
        body = request.json_body()
        name, organization = body.get("name"), body.get("organization") or FAKE_USER
        repo_type = body.get("type") or "model"
        for label, value in (("name", name), ("organization", organization)):
            if not isinstance(value, str) or not _NAME_RE.match(value):
                raise HubError(
                    400, f"Invalid repo {label} {value!r}: use letters, digits, '-', '_' or '.'"
                )
        if repo_type not in URL_PREFIX:
            raise HubError(
                400, f"Invalid repo type {repo_type!r}: expected one of {sorted(URL_PREFIX)}"
            )
        if self._strict_token is not None and request.bearer_token() is None:
            raise HubError(401, "You must be authenticated to create a repo")
        repo_id = f"{organization}/{name}"
        private = bool(body.get("private")) or body.get("visibility") == "private"
        payload = {
            "url": f"{request.base_url}/{URL_PREFIX[repo_type]}{repo_id}",
            "name": repo_id,
            "id": repo_id,
        }
        try:
            self.store.create_repo(repo_type, repo_id, private)
        except (
            HubError
        ) as e:  # the client reads "url" from the 409 too (create_repo(exist_ok=True))
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
        repo = self._repo(request, repo_type, repo_id, write=True)
        body = request.json_body()
        if "private" in body:
            repo.private = bool(body["private"])
        return 200, {}, {"private": repo.private}

    def _validate_yaml(self, request: _Handler) -> Route:
        request.json_body()  # must be JSON; the YAML itself is not checked (the stdlib has no YAML parser)
        return 200, {}, {"errors": [], "warnings": []}

    def _whoami(self, request: _Handler) -> Route:
        if self._strict_token is not None and request.bearer_token() is None:
            raise HubError(401, INVALID_TOKEN_MESSAGE)
        access = {"displayName": "fake-hub", "role": "write"}
        return (
            200,
            {},
            {
                "type": "user",
                "id": FAKE_USER,
                "name": FAKE_USER,
                "fullname": "Fake Hub Tester",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": access},
            },
        )

    def _repo_info(self, request: _Handler, repo_type: str, repo_id: str, revision: str) -> Route:
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=False)
            commit = repo.resolve(revision)
            blobs = request.query.get("blobs", [""])[0].lower() == "true"
            siblings = []
            for path, stored in commit.files.items():
                sibling: dict[str, Any] = {"rfilename": path}
                if blobs:
                    sibling.update(size=stored.size, blobId=stored.oid)
                    if stored.lfs:
                        sibling["lfs"] = {
                            "sha256": stored.sha256,
                            "size": stored.size,
                            "pointerSize": stored.pointer_size,
                        }
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

    def _expand(self, repo: Repo, head: Commit, entry: dict) -> dict:
        """Add ``lastCommit`` (the newest commit that changed this file or something under this folder)."""
        path, is_file = entry["path"], entry["type"] == "file"

        def snapshot(commit: Commit | None) -> Any:
            if commit is None:
                return None
            if is_file:
                return commit.files.get(path)
            return [(p, f) for p, f in commit.files.items() if p.startswith(path + "/")]

        for commit in repo.history(head):
            parent = repo.commits[commit.parent] if commit.parent else None
            if snapshot(commit) != snapshot(parent):
                return {
                    **entry,
                    "lastCommit": {"id": commit.oid, "title": commit.title, "date": commit.date},
                }
        return entry

    def _list_tree(
        self, request: _Handler, repo_type: str, repo_id: str, revision: str, *path: str
    ) -> Route:
        recursive = request.query.get("recursive", [""])[0].lower() == "true"
        expand = request.query.get("expand", [""])[0].lower() == "true"
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=False)
            commit = repo.resolve(revision)
            entries = _tree(commit, "/".join(path).strip("/"), recursive)
            if expand:
                entries = [self._expand(repo, commit, e) for e in entries]
        return 200, {}, entries

    def _paths_info(self, request: _Handler, repo_type: str, repo_id: str, revision: str) -> Route:
        form = parse_qs(request.body.decode())
        expand = form.get("expand", [""])[0].lower() in ("true", "1")
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=False)
            commit = repo.resolve(revision)
            entries = []
            for path in dict.fromkeys(p.strip("/") for p in form.get("paths", [])):
                if path in commit.files:
                    entries.append(_file_entry(path, commit.files[path]))
                elif path and any(p.startswith(path + "/") for p in commit.files):
                    entries.append(_folder_entry(commit.files, path))
            if expand:
                entries = [self._expand(repo, commit, e) for e in entries]
        return 200, {}, entries

    def _list_refs(self, request: _Handler, repo_type: str, repo_id: str) -> Route:
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=False)
            refs: dict[str, Any] = {
                "branches": [
                    {"name": n, "ref": f"refs/heads/{n}", "targetCommit": c}
                    for n, c in repo.branches.items()
                ],
                "tags": [
                    {"name": n, "ref": f"refs/tags/{n}", "targetCommit": c}
                    for n, c in repo.tags.items()
                ],
                "converts": [],
            }
            if request.query.get("include_prs", [""])[0] in ("1", "true", "True"):
                refs["pullRequests"] = [
                    {"name": f"refs/pr/{i}", "ref": f"refs/pr/{i}", "targetCommit": c}
                    for i, c in enumerate(repo.pull_requests, start=1)
                ]
        return 200, {}, refs

    def _list_commits(
        self, request: _Handler, repo_type: str, repo_id: str, revision: str
    ) -> Route:
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=False)
            history = [
                {
                    "id": c.oid,
                    "title": c.title,
                    "message": c.message,
                    "date": c.date,
                    "authors": [{"user": FAKE_USER}],
                }
                for c in repo.history(repo.resolve(revision))
            ]
        return 200, {}, history

    # -- refs --

    def _create_branch(
        self, request: _Handler, repo_type: str, repo_id: str, *name_parts: str
    ) -> Route:
        name = "/".join(name_parts)
        starting_point = request.json_body().get("startingPoint") or "main"
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=True)
            if not re.fullmatch(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", name) or name.startswith(
                "refs"
            ):
                raise HubError(400, f"Invalid branch name {name!r}")
            if name in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{name}")
            repo.branches[name] = repo.resolve(starting_point).oid
        return 200, {}, {}

    def _create_tag(
        self, request: _Handler, repo_type: str, repo_id: str, *revision_parts: str
    ) -> Route:
        tag = request.json_body().get("tag")
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=True)
            if not isinstance(tag, str) or not re.fullmatch(
                r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*", tag
            ):
                raise HubError(400, f"Invalid tag name {tag!r}")
            if tag in repo.tags:
                raise HubError(409, f"Reference already exists: refs/tags/{tag}")
            repo.tags[tag] = repo.resolve("/".join(revision_parts)).oid
        return 200, {}, {}

    def _delete_branch(
        self, request: _Handler, repo_type: str, repo_id: str, *name_parts: str
    ) -> Route:
        name = "/".join(name_parts)
        if name == "main":
            raise HubError(403, "The main branch cannot be deleted")
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=True)
            if repo.branches.pop(name, None) is None:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
        return 200, {}, {}

    def _delete_tag(
        self, request: _Handler, repo_type: str, repo_id: str, *name_parts: str
    ) -> Route:
        name = "/".join(name_parts)
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=True)
            if repo.tags.pop(name, None) is None:
                raise HubError(404, f"Invalid rev id: {name}", "RevisionNotFound")
        return 200, {}, {}

    # -- uploads --

    def _preupload(self, request: _Handler, repo_type: str, repo_id: str, revision: str) -> Route:
        files = request.json_body().get("files")
        if not isinstance(files, list):
            raise HubError(400, "Expected a JSON body {'files': [{'path', 'sample', 'size'}, ...]}")
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
                answer = {
                    "path": path,
                    "uploadMode": _upload_mode(path, size, sample),
                    "shouldIgnore": False,
                }
                if path in head.files:
                    answer["oid"] = head.files[path].etag
                answers.append(answer)
        return 200, {}, {"files": answers}

    def _lfs_batch(self, request: _Handler, repo_type: str, repo_id: str) -> Route:
        body = request.json_body()
        if body.get("operation") != "upload" or "basic" not in body.get("transfers", ["basic"]):
            raise HubError(
                400, "Only the 'upload' operation with the 'basic' transfer is supported"
            )
        with self.store.lock:
            repo = self._repo(request, repo_type, repo_id, write=True)
            objects = []
            for obj in body.get("objects", []):
                oid, size = obj.get("oid"), obj.get("size")
                if (
                    not isinstance(oid, str)
                    or not _SHA256_RE.match(oid)
                    or not isinstance(size, int)
                    or size < 0
                ):
                    objects.append(
                        {
                            "oid": oid,
                            "size": size,
                            "error": {
                                "code": 422,
                                "message": "oid must be a sha256, size an integer >= 0",
                            },
                        }
                    )
                    continue
                answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
                if (
                    oid not in repo.lfs_objects
                ):  # omitted actions = already stored: the client skips the upload
                    href = (
                        f"{request.base_url}/_lfs/{repo_type}/{repo_id}/{oid}"
                        f"?sig={self._upload_signature(repo, oid)}"
                    )
                    answer["actions"] = {"upload": {"href": href, "header": {}}}
                objects.append(answer)
        return (
            200,
            {"Content-Type": "application/vnd.git-lfs+json"},
            {"transfer": "basic", "objects": objects},
        )

    def _lfs_upload(self, request: _Handler, repo_type: str, repo_id: str, oid: str) -> Route:
        """The "presigned" storage URL: no Authorization (as on the real Hub), the signature authorises it."""
        repo = self.store.get_repo(repo_type, repo_id)
        signature = request.query.get("sig", [""])[0]
        if not hmac.compare_digest(signature, self._upload_signature(repo, oid)):
            raise HubError(403, "Invalid or missing upload signature")
        if hashlib.sha256(request.body).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match sha256 {oid}")
        with self.store.lock:
            self.store.store_bytes(request.body, lfs=True)
            repo.lfs_objects.add(oid)
        return 200, {}, b""

    def _commit(self, request: _Handler, repo_type: str, repo_id: str, revision: str) -> Route:
        header, operations = _parse_commit_body(request.body)
        create_pr = request.query.get("create_pr", [""])[0] in ("1", "true", "True")
        repo = self._repo(request, repo_type, repo_id, write=True)
        commit, pr_number = self.store.commit(repo, revision, header, operations, create_pr)
        repo_url = f"{request.base_url}/{repo.url_path}"
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

    def _resolve(
        self, request: _Handler, repo_type: str, repo_id: str, revision: str, path: str
    ) -> Route:
        with self.store.lock:
            commit = self._repo(request, repo_type, repo_id, write=False).resolve(revision)
            stored = commit.files.get(path)
            if stored is None:
                raise _entry_not_found(path, commit)
            data = self.store.blobs[stored.sha256]
        headers = {
            "X-Repo-Commit": commit.oid,
            "ETag": f'"{stored.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
            "Content-Length": str(stored.size),
        }
        if stored.lfs:
            headers.update(
                {"X-Linked-Etag": f'"{stored.sha256}"', "X-Linked-Size": str(stored.size)}
            )
        range_header = request.headers.get("Range") if request.command == "GET" else None
        byte_range = _parse_range(range_header, stored.size) if range_header else None
        if byte_range is not None:
            start, end = byte_range
            headers.update(
                {
                    "Content-Range": f"bytes {start}-{end}/{stored.size}",
                    "Content-Length": str(end - start + 1),
                }
            )
            return 206, headers, data[start : end + 1]
        return 200, headers, data


def _parse_commit_body(body: bytes) -> tuple[dict, list[dict]]:
    """Validate the NDJSON commit payload: a ``header`` line, then file operations. Unknown keys are a 400."""
    try:
        lines = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    except ValueError as e:
        raise HubError(400, f"Commit payload is not valid NDJSON: {e}") from e
    if not lines or not isinstance(lines[0], dict) or lines[0].get("key") != "header":
        raise HubError(400, "Commit payload must start with a {'key': 'header'} line")
    header = lines[0].get("value") or {}
    if not isinstance(header.get("summary"), str) or not header["summary"].strip():
        raise HubError(400, "Commit header needs a non-empty 'summary'")
    operations = lines[1:]
    for op in operations:
        if not isinstance(op, dict) or op.get("key") not in (
            "file",
            "lfsFile",
            "deletedFile",
            "deletedFolder",
        ):
            raise HubError(
                400, f"Unknown commit operation {op.get('key') if isinstance(op, dict) else op!r}"
            )
        if not isinstance(op.get("value"), dict):
            raise HubError(400, f"Commit operation {op['key']!r} needs a 'value' object")
        _validate_path(
            op["value"].get("path", "").rstrip("/")
            if op["key"] == "deletedFolder"
            else op["value"].get("path")
        )
    return header, operations


class _StrictAuth:
    def __init__(self, hub: FakeHub, token: str) -> None:
        self._hub, self._token, self._previous = hub, token, None

    def __enter__(self) -> FakeHub:
        self._previous = self._hub._strict_token
        self._hub.set_strict_auth(self._token)
        return self._hub

    def __exit__(self, *exc_info: object) -> None:
        self._hub.set_strict_auth(self._previous)


def main(argv: list[str] | None = None) -> None:
    """Run the server in the foreground for manual experiments with the real clients."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--strict-auth",
        action="store_true",
        help="only accept the token in the HF_TOKEN environment variable",
    )
    args = parser.parse_args(argv)
    hub = FakeHub(args.host, args.port).start()
    if args.strict_auth:
        if not os.environ.get("HF_TOKEN"):
            parser.error("--strict-auth needs HF_TOKEN set in the environment")
        hub.set_strict_auth(os.environ["HF_TOKEN"])
    print(
        f"Fake Hub serving at {hub.url}\n  export HF_ENDPOINT={hub.url} HF_HUB_DISABLE_XET=1 HF_TOKEN=hf_dummy\n"
        "  (and keep HF_HUB_OFFLINE unset). Ctrl-C stops it.",
        flush=True,
    )
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        hub.stop()


if __name__ == "__main__":
    main()
