"""Contract tests of the Hub test server (tests/hub_server.py), endpoint by endpoint, raw HTTP.

They pin the protocol details the real clients depend on (hub-protocol.md §3-§4, test plan §7)
with no Hugging Face library in the loop, so a failure here points at the server, not at a
client. The real-client scenarios live in tests/test_hub_clients.py.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest

from tests import conftest
from tests.hub_server import INVALID_TOKEN_MESSAGE, FakeHub, git_blob_sha1, lfs_pointer

TOKEN = "hf_test_dummy_token"  # the one tests/conftest.py puts in HF_TOKEN
SHA1 = re.compile(r"^[0-9a-f]{40}$")
README = b"---\nlicense: mit\n---\n# card\n"
WEIGHTS = bytes(range(256)) * 8  # 2 KiB with NUL bytes
WEIGHTS_SHA256 = hashlib.sha256(WEIGHTS).hexdigest()


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


class RawClient:
    """One kept-alive HTTP/1.1 connection (as httpx uses them), sending the test token."""

    def __init__(self, url: str, token: str | None = TOKEN) -> None:
        parts = urlsplit(url)
        self.host = parts.netloc
        self.token = token
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)

    def request(self, method, path, body=None, headers=None, json_body=None, token=...):
        token = self.token if token is ... else token
        headers = {**({"Authorization": f"Bearer {token}"} if token else {}), **(headers or {})}
        if json_body is not None:
            body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        return Response(response.status, response.headers, response.read())

    def get(self, path: str, **kwargs) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: dict, **kwargs) -> Response:
        return self.request("POST", path, json_body=json_body, **kwargs)

    def create(self, repo_id: str, **options) -> Response:
        namespace, name = repo_id.split("/")
        return self.post("/api/repos/create", {"name": name, "organization": namespace, **options})

    def head_sha(self, repo_id: str, revision: str = "main") -> str:
        return self.get(f"/api/models/{repo_id}/revision/{quote(revision, safe='')}").json()["sha"]

    def commit(self, repo_id, operations, revision="main", parent=None, query="") -> Response:
        header = {"summary": "test commit", "description": ""}
        header |= {"parentCommit": parent} if parent else {}
        lines = [{"key": "header", "value": header}, *operations]
        body = "\n".join(json.dumps(line) for line in lines).encode()
        path = f"/api/models/{repo_id}/commit/{quote(revision, safe='')}{query}"
        return self.request("POST", path, body, {"Content-Type": "application/x-ndjson"})

    def preupload(self, repo_id: str, files: list[dict]) -> list[dict]:
        return self.post(f"/api/models/{repo_id}/preupload/main", {"files": files}).json()["files"]

    def batch(self, repo_id: str, objects: list[dict]) -> Response:
        payload = {"operation": "upload", "transfers": ["basic", "multipart"], "objects": objects}
        payload |= {"hash_algo": "sha256", "ref": {"name": "main"}}
        headers = {"Content-Type": "application/vnd.git-lfs+json"}
        path = f"/{repo_id}.git/info/lfs/objects/batch"
        return self.request("POST", path, json.dumps(payload).encode(), headers)

    def upload_lfs(self, repo_id: str, data: bytes) -> None:
        """Batch, then PUT to the href without a token, as the client does."""
        objects = [{"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}]
        [answer] = self.batch(repo_id, objects).json()["objects"]
        href = urlsplit(answer["actions"]["upload"]["href"])
        assert self.request("PUT", f"{href.path}?{href.query}", data, token=None).status == 200


def file_op(path: str, data: bytes) -> dict:
    content = base64.b64encode(data).decode()
    return {"key": "file", "value": {"path": path, "content": content, "encoding": "base64"}}


def lfs_op(path: str, data: bytes) -> dict:
    value = {"path": path, "algo": "sha256", "oid": hashlib.sha256(data).hexdigest()}
    return {"key": "lfsFile", "value": {**value, "size": len(data)}}


def delete_op(path: str, key: str = "deletedFile") -> dict:
    return {"key": key, "value": {"path": path}}


@pytest.fixture
def client(hub) -> RawClient:
    client = RawClient(hub.url)
    yield client
    client.connection.close()


@pytest.fixture
def repo(client, hub_namespace) -> str:
    """A model repo with a README, a nested regular file and an LFS weight file."""
    repo_id = f"{hub_namespace}/model"
    assert client.create(repo_id).status == 200
    client.upload_lfs(repo_id, WEIGHTS)
    operations = [file_op("README.md", README), file_op("sub/dir/a.txt", b"a")]
    assert client.commit(repo_id, [*operations, lfs_op("w.bin", WEIGHTS)]).status == 200
    return repo_id


# ---- repos --------------------------------------------------------------------------------------


def test_create_answers_url_on_request_host_and_starts_main(client, hub_namespace):
    repo_id = f"{hub_namespace}/fresh"
    created = client.create(repo_id)
    assert created.status == 200 and created.json()["url"] == f"http://{client.host}/{repo_id}"
    again = client.create(repo_id)
    assert again.status == 409 and again.json()["url"] == created.json()["url"]  # for exist_ok
    info = client.get(f"/api/models/{repo_id}").json()
    assert SHA1.match(info["sha"]) and info["modelId"] == repo_id
    assert info["siblings"] == [{"rfilename": ".gitattributes"}]


def test_dataset_repos_have_their_own_prefix_and_can_be_deleted(client, hub_namespace):
    repo_id = f"{hub_namespace}/data"
    assert client.create(repo_id, type="dataset").json()["url"].endswith(f"/datasets/{repo_id}")
    assert client.get(f"/api/models/{repo_id}").headers["X-Error-Code"] == "RepoNotFound"
    assert client.get(f"/api/datasets/{repo_id}").status == 200
    body = {"name": "data", "organization": hub_namespace, "type": "dataset"}
    assert client.request("DELETE", "/api/repos/delete", json_body=body).status == 200
    gone = client.get(f"/api/datasets/{repo_id}")
    assert (gone.status, gone.headers["X-Error-Code"]) == (404, "RepoNotFound")


def test_create_rejects_invalid_names(client):
    bad = client.create("x/a b")
    assert bad.status == 400 and "Invalid repo name" in bad.json()["error"]


def test_repo_info_with_blobs_describes_lfs_files(client, repo):
    info = client.get(f"/api/models/{repo}?blobs=true").json()
    siblings = {s["rfilename"]: s for s in info["siblings"]}
    assert siblings["README.md"]["size"] == len(README) and "lfs" not in siblings["README.md"]
    pointer_size = len(lfs_pointer(WEIGHTS_SHA256, len(WEIGHTS)))
    lfs = {"sha256": WEIGHTS_SHA256, "size": len(WEIGHTS), "pointerSize": pointer_size}
    assert siblings["w.bin"]["lfs"] == lfs


# ---- errors -------------------------------------------------------------------------------------


def test_unknown_routes_are_untyped_404s(client, repo):
    for path in ("/nope", "/api/nope", f"/api/models/{repo}/nope/main", f"/{repo}/blob/main/x"):
        response = client.get(path)
        assert response.status == 404 and "X-Error-Code" not in response.headers, path
        assert response.headers["Content-Length"] == str(len(response.body))


def test_xet_is_never_served():
    # on a server of its own: the shared one fails any test that sends a xet request (conftest)
    with FakeHub() as other:
        client = RawClient(other.url)
        client.create("ns/repo")
        response = client.get("/api/models/ns/repo/xet-write-token/main")
        assert response.status == 404 and "X-Error-Code" not in response.headers
        assert [r.path for r in other.find_requests(contains="xet")] == ["/api/models/ns/repo/xet-write-token/main"]


def test_typed_404s_carry_their_error_code(client, repo, hub_namespace):
    sha = client.head_sha(repo)
    cases = {
        f"/api/models/{hub_namespace}/missing": "RepoNotFound",
        f"/{hub_namespace}/missing/resolve/main/README.md": "RepoNotFound",
        f"/api/models/{repo}/revision/nope": "RevisionNotFound",
        f"/api/models/{repo}/revision/{sha[:7]}": "RevisionNotFound",  # short ids do not resolve
        f"/{repo}/resolve/nope/README.md": "RevisionNotFound",
        f"/{repo}/resolve/main/missing.txt": "EntryNotFound",
        f"/api/models/{repo}/tree/main/missing": "EntryNotFound",
        f"/api/models/{repo}/tree/main/README.md": "EntryNotFound",  # a file is not a folder
    }
    for path, code in cases.items():
        response = client.get(path)
        assert (response.status, response.headers["X-Error-Code"]) == (404, code), path
        assert response.json()["error"] == response.headers["X-Error-Message"]
        if code == "EntryNotFound":
            assert response.headers["X-Repo-Commit"] == sha


# ---- revisions and downloads --------------------------------------------------------------------


def test_every_kind_of_revision_resolves(client, repo):
    sha = client.head_sha(repo)
    assert client.post(f"/api/models/{repo}/branch/dev", {}).status == 200
    assert client.post(f"/api/models/{repo}/tag/main", {"tag": "v1"}).status == 200
    pr = client.commit(repo, [file_op("pr.txt", b"pr")], query="?create_pr=1").json()
    assert pr["pullRequestUrl"] == f"http://{client.host}/{repo}/discussions/1"
    for revision in ("main", "dev", "v1", sha):
        response = client.request("HEAD", f"/{repo}/resolve/{revision}/README.md")
        assert response.status == 200 and response.headers["X-Repo-Commit"] == sha, revision
    response = client.get(f"/{repo}/resolve/refs%2Fpr%2F1/pr.txt")
    assert (response.status, response.body) == (200, b"pr")
    assert response.headers["X-Repo-Commit"] == pr["commitOid"]
    assert client.head_sha(repo) == sha  # a PR leaves the branch where it was


def test_head_resolve_sends_the_cache_headers_and_no_body(client, repo):
    regular = client.request("HEAD", f"/{repo}/resolve/main/README.md")
    assert regular.body == b"" and regular.headers["Content-Length"] == str(len(README))
    assert regular.headers["ETag"] == f'"{git_blob_sha1(README)}"'
    assert SHA1.match(regular.headers["X-Repo-Commit"])
    assert "X-Linked-Etag" not in regular.headers and "X-Xet-Hash" not in regular.headers
    lfs = client.request("HEAD", f"/{repo}/resolve/main/w.bin")
    assert lfs.headers["ETag"] == lfs.headers["X-Linked-Etag"] == f'"{WEIGHTS_SHA256}"'
    assert lfs.headers["X-Linked-Size"] == lfs.headers["Content-Length"] == str(len(WEIGHTS))
    assert client.get(f"/{repo}/resolve/main/w.bin").body == WEIGHTS


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=2040-", 2040, 2047),
        ("bytes=-5", 2043, 2047),
        ("bytes=10-9999", 10, 2047),
    ],  # an end past the size is clamped
)
def test_range_get_returns_206_with_the_slice(client, repo, header, start, end):
    response = client.get(f"/{repo}/resolve/main/w.bin", headers={"Range": header})
    assert response.status == 206 and response.body == WEIGHTS[start : end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(WEIGHTS)}"
    assert response.headers["Content-Length"] == str(end - start + 1)


def test_unsatisfiable_range_is_416(client, repo):
    response = client.get(f"/{repo}/resolve/main/w.bin", headers={"Range": "bytes=5000-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{len(WEIGHTS)}"


# ---- uploads ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "sample", "size", "mode"),
    [
        ("notes.txt", b"hello", 5, "regular"),
        ("CHANGELOG.md", b"# hi", 4, "regular"),
        ("data/train-00000.parquet", b"PAR1", 4, "lfs"),  # always: datasets deletes its shards
        ("model.safetensors", b"{}", 2, "lfs"),
        ("blob.dat", b"a\x00b", 3, "lfs"),  # binary sample
        ("big.txt", b"text", 11 * 2**20, "lfs"),  # over 10 MiB
    ],
)
def test_preupload_chooses_the_upload_mode(client, repo, path, sample, size, mode):
    files = [{"path": path, "sample": base64.b64encode(sample).decode(), "size": size}]
    answer = {"path": path, "uploadMode": mode, "shouldIgnore": False}
    assert client.preupload(repo, files) == [answer]


def test_preupload_reports_the_existing_oid_in_the_etag_scheme(client, repo):
    files = [{"path": p, "sample": "", "size": 1} for p in ("README.md", "w.bin", "new.txt")]
    oids = {f["path"]: f.get("oid") for f in client.preupload(repo, files)}
    assert oids == {"README.md": git_blob_sha1(README), "w.bin": WEIGHTS_SHA256, "new.txt": None}


def test_lfs_batch_offers_an_absolute_href_only_for_unknown_objects(client, repo):
    new = b"new object"
    objects = [
        {"oid": WEIGHTS_SHA256, "size": len(WEIGHTS)},
        {"oid": hashlib.sha256(new).hexdigest(), "size": len(new)},
        {"oid": "not-a-sha", "size": 1},
    ]
    response = client.batch(repo, objects)
    assert response.headers["Content-Type"] == "application/vnd.git-lfs+json"
    known, unknown, invalid = response.json()["objects"]
    assert "actions" not in known  # already stored: the client skips the upload
    upload = unknown["actions"]["upload"]
    assert upload["href"].startswith(f"http://{client.host}/_lfs/") and upload["header"] == {}
    assert invalid["error"]["code"] == 422
    href = urlsplit(upload["href"])
    put = f"{href.path}?{href.query}"
    assert client.request("PUT", put, b"other bytes", token=None).status == 400  # sha256 differs
    assert client.request("PUT", href.path, new, token=None).status == 403  # unsigned URL
    assert client.request("PUT", put, new, token=None).status == 200  # no token needed


def test_commit_applies_every_operation_kind(client, repo, hub):
    client.upload_lfs(repo, b"\x00lfs two")
    operations = [
        file_op("new.txt", b"new"),
        lfs_op("sub/w2.bin", b"\x00lfs two"),
        delete_op("README.md"),
        delete_op("sub/dir/", key="deletedFolder"),
    ]
    result = client.commit(repo, operations, parent=client.head_sha(repo)).json()
    assert result["success"] is True and result["pullRequestUrl"] is None
    assert result["commitUrl"] == f"http://{client.host}/{repo}/commit/{result['commitOid']}"
    files = hub.files(repo)
    assert files.pop(".gitattributes").startswith(b"*.")
    assert files == {"new.txt": b"new", "sub/w2.bin": b"\x00lfs two", "w.bin": WEIGHTS}
    assert hub.commits(repo)[0].oid == result["commitOid"] == client.head_sha(repo)


def test_rejected_commits_leave_the_branch_untouched(client, repo):
    head = client.head_sha(repo)
    new_file = [file_op("x.txt", b"x")]
    assert client.commit(repo, new_file, parent="0" * 40).status == 412  # stale parent
    unknown_key = client.commit(repo, [{"key": "copyFile", "value": {"path": "x"}}])
    assert unknown_key.status == 400 and "copyFile" in unknown_key.json()["error"]
    never_uploaded = [file_op("ok.txt", b"ok"), lfs_op("x.bin", b"never uploaded")]
    assert client.commit(repo, never_uploaded).status == 422
    missing = client.commit(repo, [delete_op("nope.txt")])
    assert (missing.status, missing.headers["X-Error-Code"]) == (404, "EntryNotFound")
    assert client.commit(repo, [file_op("../escape", b"x")]).status == 400
    unknown_branch = client.commit(repo, new_file, revision="nope")
    assert unknown_branch.headers["X-Error-Code"] == "RevisionNotFound"
    client.post(f"/api/models/{repo}/tag/main", {"tag": "v1"})
    assert client.commit(repo, new_file, revision="v1").status == 400  # tags do not move
    assert client.head_sha(repo) == head


def test_commit_to_a_pull_request_ref_moves_that_ref_only(client, repo):
    head = client.head_sha(repo)
    first = client.commit(repo, [file_op("a.txt", b"1")], query="?create_pr=1").json()
    second = client.commit(repo, [file_op("b.txt", b"2")], revision="refs/pr/1").json()
    assert second["pullRequestUrl"] is None
    assert client.head_sha(repo, "refs/pr/1") == second["commitOid"] != first["commitOid"]
    assert client.head_sha(repo) == head


# ---- listings -----------------------------------------------------------------------------------


def test_tree_lists_children_or_everything_below(client, repo):
    top = client.get(f"/api/models/{repo}/tree/main").json()
    assert [(e["type"], e["path"]) for e in top] == [
        ("directory", "sub"),
        ("file", ".gitattributes"),
        ("file", "README.md"),
        ("file", "w.bin"),
    ]
    entries = {e["path"]: e for e in top}
    readme = {
        "type": "file",
        "oid": git_blob_sha1(README),
        "size": len(README),
        "path": "README.md",
    }
    assert entries["README.md"] == readme
    assert entries["w.bin"]["lfs"]["oid"] == WEIGHTS_SHA256
    assert entries["w.bin"]["oid"] == git_blob_sha1(lfs_pointer(WEIGHTS_SHA256, len(WEIGHTS)))
    assert entries["sub"]["size"] == 0 and SHA1.match(entries["sub"]["oid"])
    recursive = client.get(f"/api/models/{repo}/tree/main/sub?recursive=true").json()
    assert [e["path"] for e in recursive] == ["sub/dir", "sub/dir/a.txt"]
    children = client.get(f"/api/models/{repo}/tree/main/sub").json()
    assert [e["path"] for e in children] == ["sub/dir"]


def test_tree_expand_adds_the_last_commit_of_each_entry(client, repo):
    first = client.head_sha(repo)
    second = client.commit(repo, [file_op("README.md", b"changed")]).json()["commitOid"]
    entries = client.get(f"/api/models/{repo}/tree/main?expand=true").json()
    last = {e["path"]: e["lastCommit"]["id"] for e in entries}
    assert (last["README.md"], last["sub"], last["w.bin"]) == (second, first, first)
    assert all("securityFileStatus" not in e for e in entries)  # or it needs both scan fields


def test_paths_info_takes_a_form_and_omits_missing_paths(client, repo):
    paths = [("paths", "README.md"), ("paths", "sub"), ("paths", "nope")]
    form = urlencode([*paths, ("expand", "true")])
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    path = f"/api/models/{repo}/paths-info/main"
    entries = client.request("POST", path, form.encode(), headers).json()
    kinds = [(e["type"], e["path"]) for e in entries]
    assert kinds == [("file", "README.md"), ("directory", "sub")]
    assert all(SHA1.match(e["lastCommit"]["id"]) for e in entries)


def test_refs_commits_branches_and_tags(client, repo):
    branch, tag = f"/api/models/{repo}/branch/feature%2Fx", f"/api/models/{repo}/tag/main"
    assert client.post(branch, {}).status == 200
    assert client.post(branch, {}).status == 409
    assert client.post(tag, {"tag": "v1"}).status == 200
    assert client.post(tag, {"tag": "v1"}).status == 409
    client.commit(repo, [file_op("a.txt", b"a")], query="?create_pr=1")
    head = client.head_sha(repo)

    refs = client.get(f"/api/models/{repo}/refs?include_prs=1").json()
    branches = {b["name"]: b["targetCommit"] for b in refs["branches"]}
    assert branches == {"main": head, "feature/x": head}
    assert refs["tags"] == [{"name": "v1", "ref": "refs/tags/v1", "targetCommit": head}]
    assert refs["pullRequests"][0]["ref"] == "refs/pr/1" and refs["converts"] == []
    commits = client.get(f"/api/models/{repo}/commits/main").json()
    assert commits[0]["id"] == head  # newest first ...
    assert [c["title"] for c in commits] == ["test commit", "initial commit"]  # ... to the first

    assert client.request("DELETE", branch).status == 200
    assert client.request("DELETE", f"/api/models/{repo}/tag/v1").status == 200
    assert client.request("DELETE", f"/api/models/{repo}/branch/main").status == 403
    assert client.get(f"/api/models/{repo}/refs").json()["tags"] == []


# ---- plumbing, auth, log ------------------------------------------------------------------------


def test_validate_yaml_needs_no_token(client):
    response = client.post("/api/validate-yaml", {"content": "x", "repoType": "model"}, token=None)
    assert (response.status, response.json()) == (200, {"errors": [], "warnings": []})


def test_keep_alive_survives_errors_and_heads(client, repo):
    statuses = [
        client.get("/nope").status,
        client.request("HEAD", f"/{repo}/resolve/main/missing").status,
        client.request("HEAD", f"/{repo}/resolve/main/README.md").status,
        client.request("POST", "/api/repos/create", b"not json").status,
        client.get(f"/{repo}/resolve/main/README.md").status,
    ]
    assert statuses == [404, 404, 200, 400, 200]


def test_chunked_request_bodies_are_read(client, repo):
    client.connection.putrequest("POST", "/api/validate-yaml")
    client.connection.putheader("Transfer-Encoding", "chunked")
    client.connection.endheaders()
    client.connection.send(b"2\r\n{}\r\n0\r\n\r\n")
    assert client.connection.getresponse().read() == b'{"errors": [], "warnings": []}'
    assert client.get(f"/{repo}/resolve/main/README.md").body == README


def test_strict_auth_answers_like_the_real_hub(client, repo, hub):
    with hub.strict_auth(TOKEN):
        wrong = client.get(f"/api/models/{repo}", token="hf_wrong")
        assert (wrong.status, wrong.headers["X-Error-Message"]) == (401, INVALID_TOKEN_MESSAGE)
        assert "X-Error-Code" not in wrong.headers  # HfHubHTTPError, not RepositoryNotFoundError
        assert client.get(f"/api/models/{repo}", token=None).status == 200  # public: readable
        write = client.post(f"/api/models/{repo}/branch/b", {}, token=None)
        assert (write.status, write.headers["X-Error-Code"]) == (401, "RepoNotFound")
        assert client.post("/api/validate-yaml", {"content": ""}, token=None).status == 200
        assert client.get("/api/whoami-v2").json()["name"]
    assert client.get(f"/api/models/{repo}", token="hf_wrong").status == 200  # off again


def test_strict_auth_hides_private_repos_from_anonymous_requests(client, hub_namespace, hub):
    client.create(f"{hub_namespace}/secret", visibility="private")
    path = f"/{hub_namespace}/secret/resolve/main/.gitattributes"
    with hub.strict_auth(TOKEN):
        hidden = client.get(path, token=None)
        assert (hidden.status, hidden.headers["X-Error-Code"]) == (401, "RepoNotFound")
        assert client.get(path).status == 200


def test_request_log_records_requests_but_never_the_token(client, repo, hub):
    mark = hub.request_count
    client.get(f"/{repo}/resolve/main/w.bin", headers={"Range": "bytes=0-1"})
    [record] = hub.find_requests("GET", f"/{repo}/resolve/main/w.bin", since=mark)
    assert (record.status, record.authorized, record.headers["Range"]) == (206, True, "bytes=0-1")
    assert TOKEN not in repr(hub.requests)


def test_put_files_seeds_a_repo_server_side(client, hub, hub_namespace):
    repo_id = f"{hub_namespace}/seeded"
    sha = hub.put_files(repo_id, {"a.txt": b"text", "w.safetensors": b"{}"})
    assert client.head_sha(repo_id) == sha and hub.commits(repo_id)[0].title == "Seed files"
    lfs = client.request("HEAD", f"/{repo_id}/resolve/main/w.safetensors")
    assert lfs.headers["X-Linked-Etag"] == f'"{hashlib.sha256(b"{}").hexdigest()}"'
    assert client.get(f"/{repo_id}/resolve/{sha}/a.txt").body == b"text"


def test_fake_hub_is_a_context_manager_on_a_free_port():
    with FakeHub() as other:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", other.url)
        assert RawClient(other.url).get("/api/whoami-v2").status == 200
    with pytest.raises(RuntimeError, match="not running"):
        _ = other.url


def test_command_line_entry_point_serves_until_stopped():
    script = Path(__file__).with_name("hub_server.py")
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split()[-1]  # "Fake Hub serving at <url>"
        assert RawClient(url).get("/api/whoami-v2").status == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_network_guard_blocks_non_loopback_lookups():
    before = len(conftest._BLOCKED_LOOKUPS)
    with pytest.raises(socket.gaierror, match="network guard"):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    assert conftest._BLOCKED_LOOKUPS[before:] == ["huggingface.co"]
    del conftest._BLOCKED_LOOKUPS[before:]  # expected here: do not fail this test at teardown
    assert socket.getaddrinfo("127.0.0.1", 80)  # loopback stays allowed
