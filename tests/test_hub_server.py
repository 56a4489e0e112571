"""Contract tests of the Hub test server (tests/hub_server.py), endpoint by endpoint, over raw HTTP.

They pin the protocol details the real clients depend on (hub-protocol.md §3-§4 and §7) without any
Hugging Face library in the loop, so a failure here points at the server, not at a client. The
real-client scenarios live in tests/test_hub_clients.py.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hub_server import INVALID_TOKEN_MESSAGE, FakeHub, git_blob_sha1, lfs_pointer

TOKEN = "hf_test_dummy_token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SHA1 = re.compile(r"^[0-9a-f]{40}$")


@dataclass
class Response:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self):
        return json.loads(self.body)


class RawClient:
    """One kept-alive HTTP/1.1 connection to the server, as httpx uses it."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host = parts.netloc
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)

    def request(self, method, path, body=None, headers=None, json_body=None) -> Response:
        headers = dict(headers or {})
        if json_body is not None:
            body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        return Response(response.status, response.headers, response.read())

    def create(self, repo_id: str, repo_type: str | None = None) -> Response:
        namespace, name = repo_id.split("/")
        payload = {
            "name": name,
            "organization": namespace,
            **({"type": repo_type} if repo_type else {}),
        }
        return self.request("POST", "/api/repos/create", json_body=payload, headers=AUTH)

    def head_sha(self, repo_id: str, revision: str = "main", kind: str = "models") -> str:
        quoted = quote(revision, safe="")
        return self.request("GET", f"/api/{kind}/{repo_id}/revision/{quoted}", headers=AUTH).json()[
            "sha"
        ]

    def commit(self, repo_id, operations, revision="main", parent=None, query="", kind="models"):
        header = {"summary": "test commit", "description": ""}
        if parent:
            header["parentCommit"] = parent
        lines = [{"key": "header", "value": header}, *operations]
        body = "\n".join(json.dumps(line) for line in lines).encode()
        path = f"/api/{kind}/{repo_id}/commit/{quote(revision, safe='')}{query}"
        return self.request("POST", path, body, {**AUTH, "Content-Type": "application/x-ndjson"})

    def upload_lfs(self, repo_id: str, data: bytes, prefix: str = "") -> str:
        """Batch + PUT, as the client does; returns the sha256."""
        oid = hashlib.sha256(data).hexdigest()
        batch = self.batch(repo_id, [{"oid": oid, "size": len(data)}], prefix).json()
        href = urlsplit(batch["objects"][0]["actions"]["upload"]["href"])
        put = self.request("PUT", f"{href.path}?{href.query}", data)
        assert put.status == 200, put.body
        return oid

    def batch(self, repo_id: str, objects: list[dict], prefix: str = "") -> Response:
        payload = {
            "operation": "upload",
            "transfers": ["basic", "multipart"],
            "objects": objects,
            "hash_algo": "sha256",
            "ref": {"name": "main"},
        }
        headers = {**AUTH, "Content-Type": "application/vnd.git-lfs+json"}
        path = f"/{prefix}{repo_id}.git/info/lfs/objects/batch"
        return self.request("POST", path, json.dumps(payload).encode(), headers)


def file_op(path: str, data: bytes) -> dict:
    content = base64.b64encode(data).decode()
    return {"key": "file", "value": {"path": path, "content": content, "encoding": "base64"}}


def lfs_op(path: str, data: bytes) -> dict:
    oid = hashlib.sha256(data).hexdigest()
    return {
        "key": "lfsFile",
        "value": {"path": path, "algo": "sha256", "oid": oid, "size": len(data)},
    }


@pytest.fixture
def client(hub) -> RawClient:
    client = RawClient(hub.url)
    yield client
    client.connection.close()


@pytest.fixture
def repo(client, hub_namespace) -> str:
    """A model repo holding a README, a nested regular file and an LFS weight file."""
    repo_id = f"{hub_namespace}/model"
    assert client.create(repo_id).status == 200
    client.upload_lfs(repo_id, WEIGHTS)
    operations = [
        file_op("README.md", README),
        file_op("sub/dir/a.txt", b"a"),
        lfs_op("w.bin", WEIGHTS),
    ]
    assert client.commit(repo_id, operations).status == 200
    return repo_id


README = b"---\nlicense: mit\n---\n# card\n"
WEIGHTS = bytes(range(256)) * 8  # 2 KiB with NUL bytes


# ---- repos ----------------------------------------------------------------------------------


def test_create_answers_url_on_request_host_and_starts_main_with_gitattributes(
    client, hub_namespace
):
    created = client.create(f"{hub_namespace}/fresh")
    assert created.status == 200
    assert created.json()["url"] == f"http://{client.host}/{hub_namespace}/fresh"
    again = client.create(f"{hub_namespace}/fresh")
    assert again.status == 409 and again.json()["url"] == created.json()["url"]  # exist_ok reads it
    info = client.request("GET", f"/api/models/{hub_namespace}/fresh").json()
    assert SHA1.match(info["sha"]) and info["modelId"] == f"{hub_namespace}/fresh"
    assert info["siblings"] == [{"rfilename": ".gitattributes"}]


def test_dataset_repo_lives_under_its_own_prefix_and_can_be_deleted(client, hub_namespace):
    repo_id = f"{hub_namespace}/data"
    assert client.create(repo_id, "dataset").json()["url"].endswith(f"/datasets/{repo_id}")
    assert client.request("GET", f"/api/models/{repo_id}").headers["X-Error-Code"] == "RepoNotFound"
    assert client.request("GET", f"/api/datasets/{repo_id}").status == 200
    body = {"name": "data", "organization": hub_namespace, "type": "dataset"}
    assert client.request("DELETE", "/api/repos/delete", json_body=body, headers=AUTH).status == 200
    gone = client.request("GET", f"/api/datasets/{repo_id}")
    assert gone.status == 404 and gone.headers["X-Error-Code"] == "RepoNotFound"


def test_create_rejects_invalid_names(client):
    bad = client.request(
        "POST", "/api/repos/create", json_body={"name": "a b", "organization": "x"}
    )
    assert bad.status == 400 and "Invalid repo name" in bad.json()["error"]


def test_repo_info_with_blobs_describes_lfs_files(client, repo):
    info = client.request("GET", f"/api/models/{repo}?blobs=true").json()
    siblings = {s["rfilename"]: s for s in info["siblings"]}
    assert siblings["README.md"]["size"] == len(README) and "lfs" not in siblings["README.md"]
    assert siblings["w.bin"]["lfs"] == {
        "sha256": hashlib.sha256(WEIGHTS).hexdigest(),
        "size": len(WEIGHTS),
        "pointerSize": len(lfs_pointer(hashlib.sha256(WEIGHTS).hexdigest(), len(WEIGHTS))),
    }


# ---- errors ---------------------------------------------------------------------------------


def test_unknown_route_is_an_untyped_404(client, repo):
    for path in (
        "/nope",
        "/api/nope",
        f"/api/models/{repo}/nope/main",
        f"/{repo}/blob/main/README.md",
    ):
        response = client.request("GET", path)
        assert response.status == 404 and "X-Error-Code" not in response.headers, path
        assert response.headers["Content-Length"] == str(len(response.body))


def test_xet_is_never_served():
    # on a private server: the shared one fails any test that sends a xet request (conftest guard)
    with FakeHub() as other:
        client = RawClient(other.url)
        client.create("ns/repo")
        response = client.request("GET", "/api/models/ns/repo/xet-write-token/main", headers=AUTH)
        assert response.status == 404 and "X-Error-Code" not in response.headers
        assert [r.path for r in other.find_requests(contains="xet")] == [
            "/api/models/ns/repo/xet-write-token/main"
        ]


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
        response = client.request("GET", path)
        assert (response.status, response.headers["X-Error-Code"]) == (404, code), path
        assert response.json()["error"] == response.headers["X-Error-Message"]
        if code == "EntryNotFound":
            assert response.headers["X-Repo-Commit"] == sha


# ---- revisions and downloads ------------------------------------------------------------------


def test_every_kind_of_revision_resolves(client, repo):
    sha = client.head_sha(repo)
    assert (
        client.request("POST", f"/api/models/{repo}/branch/dev", json_body={}, headers=AUTH).status
        == 200
    )
    assert (
        client.request(
            "POST", f"/api/models/{repo}/tag/main", json_body={"tag": "v1"}, headers=AUTH
        ).status
        == 200
    )
    pr = client.commit(repo, [file_op("pr.txt", b"pr")], query="?create_pr=1").json()
    assert pr["pullRequestUrl"].endswith(f"/{repo}/discussions/1")
    for revision in ("main", "dev", "v1", sha):
        response = client.request("HEAD", f"/{repo}/resolve/{revision}/README.md")
        assert response.status == 200 and response.headers["X-Repo-Commit"] == sha, revision
    response = client.request("GET", f"/{repo}/resolve/refs%2Fpr%2F1/pr.txt")
    assert (response.status, response.body) == (200, b"pr")
    assert response.headers["X-Repo-Commit"] == pr["commitOid"]
    assert client.head_sha(repo) == sha  # a PR leaves the branch where it was


def test_head_resolve_sends_cache_headers_and_no_body(client, repo):
    regular = client.request("HEAD", f"/{repo}/resolve/main/README.md")
    assert regular.body == b"" and regular.headers["Content-Length"] == str(len(README))
    assert regular.headers["ETag"] == f'"{git_blob_sha1(README)}"'
    assert SHA1.match(regular.headers["X-Repo-Commit"])
    assert "X-Linked-Etag" not in regular.headers and "X-Xet-Hash" not in regular.headers
    lfs = client.request("HEAD", f"/{repo}/resolve/main/w.bin")
    sha256 = hashlib.sha256(WEIGHTS).hexdigest()
    assert lfs.headers["ETag"] == lfs.headers["X-Linked-Etag"] == f'"{sha256}"'
    assert lfs.headers["X-Linked-Size"] == lfs.headers["Content-Length"] == str(len(WEIGHTS))
    assert client.request("GET", f"/{repo}/resolve/main/w.bin").body == WEIGHTS


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-9", 0, 9),
        ("bytes=2040-", 2040, 2047),
        ("bytes=-5", 2043, 2047),
        ("bytes=10-99999", 10, 2047),
    ],
)
def test_range_get_returns_206_with_the_slice(client, repo, header, start, end):
    response = client.request("GET", f"/{repo}/resolve/main/w.bin", headers={"Range": header})
    assert response.status == 206 and response.body == WEIGHTS[start : end + 1]
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{len(WEIGHTS)}"
    assert response.headers["Content-Length"] == str(end - start + 1)


def test_unsatisfiable_range_is_416(client, repo):
    response = client.request(
        "GET", f"/{repo}/resolve/main/w.bin", headers={"Range": "bytes=5000-"}
    )
    assert response.status == 416 and response.headers["Content-Range"] == f"bytes */{len(WEIGHTS)}"


# ---- uploads --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "sample", "size", "mode"),
    [
        ("notes.txt", b"hello", 5, "regular"),
        ("data/train-00000.parquet", b"PAR1", 4, "lfs"),  # datasets deletes its shards
        ("model.safetensors", b"{}", 2, "lfs"),
        ("blob.dat", b"a\x00b", 3, "lfs"),  # binary sample
        ("big.txt", b"text", 11 * 2**20, "lfs"),  # > 10 MiB
        ("CHANGELOG.md", b"# hi", 4, "regular"),
    ],
)
def test_preupload_chooses_the_upload_mode(client, repo, path, sample, size, mode):
    files = [{"path": path, "sample": base64.b64encode(sample).decode(), "size": size}]
    response = client.request(
        "POST", f"/api/models/{repo}/preupload/main", json_body={"files": files}, headers=AUTH
    )
    assert response.json()["files"] == [{"path": path, "uploadMode": mode, "shouldIgnore": False}]


def test_preupload_reports_the_existing_oid_in_the_etag_scheme(client, repo):
    files = [{"path": p, "sample": "", "size": 1} for p in ("README.md", "w.bin", "new.txt")]
    answers = client.request(
        "POST", f"/api/models/{repo}/preupload/main", json_body={"files": files}, headers=AUTH
    )
    oids = {f["path"]: f.get("oid") for f in answers.json()["files"]}
    assert oids == {
        "README.md": git_blob_sha1(README),
        "w.bin": hashlib.sha256(WEIGHTS).hexdigest(),
        "new.txt": None,
    }


def test_lfs_batch_offers_an_absolute_href_only_for_unknown_objects(client, repo):
    new = b"new object"
    objects = [
        {"oid": hashlib.sha256(WEIGHTS).hexdigest(), "size": len(WEIGHTS)},
        {"oid": hashlib.sha256(new).hexdigest(), "size": len(new)},
        {"oid": "not-a-sha", "size": 1},
    ]
    response = client.batch(repo, objects)
    assert response.headers["Content-Type"] == "application/vnd.git-lfs+json"
    known, unknown, invalid = response.json()["objects"]
    assert "actions" not in known  # already stored: the client skips the upload
    href = unknown["actions"]["upload"]["href"]
    assert (
        href.startswith(f"http://{client.host}/") and unknown["actions"]["upload"]["header"] == {}
    )
    assert invalid["error"]["code"] == 422
    wrong = urlsplit(href)
    assert client.request("PUT", f"{wrong.path}?{wrong.query}", b"other bytes").status == 400
    assert client.request("PUT", wrong.path, new).status == 403  # unsigned URL
    assert (
        client.request("PUT", f"{wrong.path}?{wrong.query}", new).status == 200
    )  # no Authorization needed


def test_commit_applies_every_operation_kind(client, repo, hub):
    client.upload_lfs(repo, b"\x00lfs two")
    operations = [
        file_op("new.txt", b"new"),
        lfs_op("sub/w2.bin", b"\x00lfs two"),
        {"key": "deletedFile", "value": {"path": "README.md"}},
        {"key": "deletedFolder", "value": {"path": "sub/dir/"}},
    ]
    result = client.commit(repo, operations, parent=client.head_sha(repo)).json()
    assert result["success"] is True and result["pullRequestUrl"] is None
    assert result["commitUrl"] == f"http://{client.host}/{repo}/commit/{result['commitOid']}"
    assert hub.files(repo) == {
        ".gitattributes": hub.files(repo)[".gitattributes"],
        "new.txt": b"new",
        "sub/w2.bin": b"\x00lfs two",
        "w.bin": WEIGHTS,
    }
    assert hub.commits(repo)[0].oid == result["commitOid"] == client.head_sha(repo)


def test_commit_rejections_leave_the_branch_untouched(client, repo):
    head = client.head_sha(repo)
    stale = client.commit(repo, [file_op("x.txt", b"x")], parent="0" * 40)
    assert stale.status == 412
    unknown_key = client.commit(repo, [{"key": "copyFile", "value": {"path": "x"}}])
    assert unknown_key.status == 400 and "copyFile" in unknown_key.json()["error"]
    never_uploaded = client.commit(
        repo, [file_op("ok.txt", b"ok"), lfs_op("x.bin", b"never uploaded")]
    )
    assert never_uploaded.status == 422
    missing = client.commit(repo, [{"key": "deletedFile", "value": {"path": "nope.txt"}}])
    assert (missing.status, missing.headers["X-Error-Code"]) == (404, "EntryNotFound")
    assert client.commit(repo, [file_op("../escape", b"x")]).status == 400
    unknown_branch = client.commit(repo, [file_op("x.txt", b"x")], revision="nope")
    assert unknown_branch.headers["X-Error-Code"] == "RevisionNotFound"
    client.request("POST", f"/api/models/{repo}/tag/main", json_body={"tag": "v1"}, headers=AUTH)
    assert (
        client.commit(repo, [file_op("x.txt", b"x")], revision="v1").status == 400
    )  # tags do not move
    assert client.head_sha(repo) == head


def test_commit_to_a_pull_request_ref_moves_that_ref_only(client, repo):
    head = client.head_sha(repo)
    first = client.commit(repo, [file_op("a.txt", b"1")], query="?create_pr=1").json()
    second = client.commit(repo, [file_op("b.txt", b"2")], revision="refs/pr/1").json()
    assert second["pullRequestUrl"] is None
    assert client.head_sha(repo, "refs/pr/1") == second["commitOid"] != first["commitOid"]
    assert client.head_sha(repo) == head


# ---- listings -------------------------------------------------------------------------------


def test_tree_lists_children_or_everything_below(client, repo):
    top = client.request("GET", f"/api/models/{repo}/tree/main").json()
    assert [(e["type"], e["path"]) for e in top] == [
        ("directory", "sub"),
        ("file", ".gitattributes"),
        ("file", "README.md"),
        ("file", "w.bin"),
    ]
    by_path = {e["path"]: e for e in top}
    assert by_path["README.md"] == {
        "type": "file",
        "oid": git_blob_sha1(README),
        "size": len(README),
        "path": "README.md",
    }
    assert by_path["w.bin"]["lfs"]["oid"] == hashlib.sha256(WEIGHTS).hexdigest()
    assert by_path["w.bin"]["oid"] == git_blob_sha1(
        lfs_pointer(by_path["w.bin"]["lfs"]["oid"], len(WEIGHTS))
    )
    assert by_path["sub"]["size"] == 0 and SHA1.match(by_path["sub"]["oid"])
    nested = client.request("GET", f"/api/models/{repo}/tree/main/sub?recursive=true").json()
    assert [e["path"] for e in nested] == ["sub/dir", "sub/dir/a.txt"]
    assert [
        e["path"] for e in client.request("GET", f"/api/models/{repo}/tree/main/sub").json()
    ] == ["sub/dir"]


def test_tree_expand_adds_the_last_commit_of_each_entry(client, repo):
    first = client.head_sha(repo)
    second = client.commit(repo, [file_op("README.md", b"changed")]).json()["commitOid"]
    entries = client.request("GET", f"/api/models/{repo}/tree/main?expand=true").json()
    last = {e["path"]: e["lastCommit"]["id"] for e in entries}
    assert last["README.md"] == second and last["sub"] == first and last["w.bin"] == first
    assert all("securityFileStatus" not in e for e in entries)


def test_paths_info_takes_a_form_and_omits_missing_paths(client, repo):
    form = urlencode(
        [("paths", "README.md"), ("paths", "sub"), ("paths", "missing"), ("expand", "true")]
    )
    headers = {**AUTH, "Content-Type": "application/x-www-form-urlencoded"}
    entries = client.request(
        "POST", f"/api/models/{repo}/paths-info/main", form.encode(), headers
    ).json()
    assert [(e["type"], e["path"]) for e in entries] == [
        ("file", "README.md"),
        ("directory", "sub"),
    ]
    assert all(SHA1.match(e["lastCommit"]["id"]) for e in entries)


def test_refs_and_commits_list_history(client, repo):
    client.request("POST", f"/api/models/{repo}/branch/feature%2Fx", json_body={}, headers=AUTH)
    duplicate = client.request(
        "POST", f"/api/models/{repo}/branch/feature%2Fx", json_body={}, headers=AUTH
    )
    assert duplicate.status == 409
    client.request("POST", f"/api/models/{repo}/tag/main", json_body={"tag": "v1"}, headers=AUTH)
    assert (
        client.request(
            "POST", f"/api/models/{repo}/tag/main", json_body={"tag": "v1"}, headers=AUTH
        ).status
        == 409
    )
    client.commit(repo, [file_op("a.txt", b"a")], query="?create_pr=1")
    refs = client.request("GET", f"/api/models/{repo}/refs?include_prs=1").json()
    head = client.head_sha(repo)
    assert {b["name"]: b["targetCommit"] for b in refs["branches"]} == {
        "main": head,
        "feature/x": head,
    }
    assert refs["tags"] == [{"name": "v1", "ref": "refs/tags/v1", "targetCommit": head}]
    assert refs["pullRequests"][0]["ref"] == "refs/pr/1" and refs["converts"] == []
    commits = client.request("GET", f"/api/models/{repo}/commits/main").json()
    assert [c["id"] for c in commits] == [
        head,
        commits[1]["id"],
    ]  # newest first, then the initial one
    assert commits[1]["title"] == "initial commit"
    assert (
        client.request("DELETE", f"/api/models/{repo}/branch/feature%2Fx", headers=AUTH).status
        == 200
    )
    assert client.request("DELETE", f"/api/models/{repo}/tag/v1", headers=AUTH).status == 200
    assert client.request("GET", f"/api/models/{repo}/refs").json()["tags"] == []


# ---- misc -------------------------------------------------------------------------------------


def test_validate_yaml_needs_no_auth(client):
    response = client.request(
        "POST", "/api/validate-yaml", json_body={"content": "x", "repoType": "model"}
    )
    assert (response.status, response.json()) == (200, {"errors": [], "warnings": []})


def test_keep_alive_survives_errors_and_heads(client, repo):
    statuses = [
        client.request("GET", "/nope").status,
        client.request("HEAD", f"/{repo}/resolve/main/missing").status,
        client.request("HEAD", f"/{repo}/resolve/main/README.md").status,
        client.request("POST", "/api/repos/create", b"not json", AUTH).status,
        client.request("GET", f"/{repo}/resolve/main/README.md").status,
    ]
    assert statuses == [404, 404, 200, 400, 200]


def test_chunked_request_bodies_are_read(client, repo):
    client.connection.putrequest("POST", "/api/validate-yaml")
    client.connection.putheader("Transfer-Encoding", "chunked")
    client.connection.endheaders()
    client.connection.send(b"2\r\n{}\r\n0\r\n\r\n")
    assert client.connection.getresponse().read() == b'{"errors": [], "warnings": []}'
    assert client.request("GET", f"/{repo}/resolve/main/README.md").body == README


def test_strict_auth_answers_like_the_real_hub(client, repo, hub):
    with hub.strict_auth(TOKEN):
        wrong = client.request(
            "GET", f"/api/models/{repo}", headers={"Authorization": "Bearer hf_wrong"}
        )
        assert (wrong.status, wrong.headers["X-Error-Message"]) == (401, INVALID_TOKEN_MESSAGE)
        assert "X-Error-Code" not in wrong.headers  # -> HfHubHTTPError, not RepositoryNotFoundError
        assert (
            client.request("GET", f"/api/models/{repo}").status == 200
        )  # anonymous read of a public repo
        anonymous_write = client.request("POST", f"/api/models/{repo}/branch/b", json_body={})
        assert (anonymous_write.status, anonymous_write.headers["X-Error-Code"]) == (
            401,
            "RepoNotFound",
        )
        assert client.request("POST", "/api/validate-yaml", json_body={"content": ""}).status == 200
        assert client.request("GET", "/api/whoami-v2", headers=AUTH).json()["name"]
    assert (
        client.request(
            "GET", f"/api/models/{repo}", headers={"Authorization": "Bearer hf_wrong"}
        ).status
        == 200
    )


def test_private_repos_are_hidden_from_anonymous_requests_under_strict_auth(
    client, hub_namespace, hub
):
    body = {"name": "secret", "organization": hub_namespace, "visibility": "private"}
    client.request("POST", "/api/repos/create", json_body=body, headers=AUTH)
    with hub.strict_auth(TOKEN):
        hidden = client.request("GET", f"/{hub_namespace}/secret/resolve/main/.gitattributes")
        assert (hidden.status, hidden.headers["X-Error-Code"]) == (401, "RepoNotFound")
        assert (
            client.request(
                "GET", f"/{hub_namespace}/secret/resolve/main/.gitattributes", headers=AUTH
            ).status
            == 200
        )


def test_request_log_records_requests_but_never_the_token(client, repo, hub):
    client.request("GET", f"/{repo}/resolve/main/w.bin", headers={**AUTH, "Range": "bytes=0-1"})
    record = hub.find_requests("GET", f"/{repo}/resolve/main/w.bin")[-1]
    assert (record.status, record.authorized, record.headers["Range"]) == (206, True, "bytes=0-1")
    assert TOKEN not in repr(hub.requests)


def test_fake_hub_is_a_context_manager_on_a_free_port():
    with FakeHub() as other:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", other.url)
        assert RawClient(other.url).request("GET", "/api/whoami-v2").status == 200
    with pytest.raises(RuntimeError, match="not running"):
        _ = other.url


def test_command_line_entry_point_serves_until_interrupted():
    script = Path(__file__).with_name("hub_server.py")
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().split()[-1]
        assert RawClient(url).request("GET", "/api/whoami-v2").status == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
