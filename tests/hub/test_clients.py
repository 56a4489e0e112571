"""The real Hugging Face clients, end to end, against the Hub test server (tests/hub_server.py).

Nothing is mocked: huggingface_hub, datasets, timm and transformers talk HTTP to 127.0.0.1
through ``HF_ENDPOINT`` (set in tests/conftest.py), with their real download cache and error
mapping. The scenarios follow hub-protocol.md §7; each test works in its own namespace. The
conftest guard fails any test that looks up a non-loopback host or sends a xet request.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import pytest
import timm
import torch
import transformers
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    HfFileSystem,
    ModelCard,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from timm.models import push_to_hf_hub

PARQUET_MAGIC = b"PAR1"


@pytest.fixture
def api(hub) -> HfApi:
    return HfApi(endpoint=hub.url)


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def read(path: str) -> bytes:
    return Path(path).read_bytes()


def test_every_client_points_at_the_test_hub(hub):
    assert hub.url == huggingface_hub.constants.ENDPOINT
    assert hub.url == datasets.config.HF_ENDPOINT
    assert huggingface_hub.constants.HF_HUB_DISABLE_XET
    assert not huggingface_hub.constants.HF_HUB_OFFLINE
    assert datasets.config.USE_PARQUET_EXPORT is False


# ---- S1 huggingface_hub -------------------------------------------------------------------------


def test_create_repo_and_upload_folder(api, hub, hub_namespace, tmp_path):
    repo_id = f"{hub_namespace}/model"
    url = api.create_repo(repo_id)
    assert url == f"{hub.url}/{repo_id}" and url.repo_id == repo_id
    assert api.create_repo(repo_id, exist_ok=True) == url  # the 409 path
    assert api.create_repo(repo_id, repo_type="dataset").repo_type == "dataset"
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_repo(repo_id)
    assert conflict.value.response.status_code == 409

    weights = np.random.default_rng(0).bytes(4096)
    files = {"README.md": b"# model\n", "config.json": b'{"a": 1}', "sub/notes.txt": b"notes"}
    files["weights.bin"] = weights
    commit = api.upload_folder(repo_id=repo_id, folder_path=write_folder(tmp_path, files))
    assert commit.oid == api.model_info(repo_id).sha

    assert set(api.list_repo_files(repo_id)) == {".gitattributes", *files}
    assert hub.files(repo_id) == {".gitattributes": hub.files(repo_id)[".gitattributes"], **files}
    # only weights.bin went through LFS: one batch, one upload
    assert len(hub.find_requests("POST", f"/{repo_id}.git/info/lfs/objects/batch")) == 1
    assert len(hub.find_requests("PUT", f"/_lfs/model/{repo_id}/")) == 1
    siblings = {s.rfilename: s for s in api.model_info(repo_id, files_metadata=True).siblings}
    assert siblings["weights.bin"].lfs.size == len(weights) and siblings["README.md"].lfs is None
    assert api.file_exists(repo_id, "sub/notes.txt") and not api.file_exists(repo_id, "nope.txt")
    titles = [c.title for c in api.list_repo_commits(repo_id)]
    assert titles == [commit.commit_message, "initial commit"]
    top = {entry.path for entry in api.list_repo_tree(repo_id)}
    assert top == {".gitattributes", "README.md", "config.json", "sub", "weights.bin"}


def test_downloads_by_branch_tag_and_commit(api, hub_namespace, tmp_path):
    repo_id = f"{hub_namespace}/revisions"
    api.create_repo(repo_id)
    weights = np.random.default_rng(1).bytes(3000)
    folder = write_folder(tmp_path, {"a.txt": b"main-1", "w.bin": weights})
    first = api.upload_folder(repo_id=repo_id, folder_path=folder)
    api.create_tag(repo_id, tag="v1")
    api.create_branch(repo_id, branch="dev")
    api.upload_file(repo_id=repo_id, path_or_fileobj=b"dev", path_in_repo="a.txt", revision="dev")
    api.upload_file(repo_id=repo_id, path_or_fileobj=b"main-2", path_in_repo="a.txt")

    expected = {"main": b"main-2", "dev": b"dev", "v1": b"main-1", first.oid: b"main-1"}
    for revision, content in expected.items():
        assert read(hf_hub_download(repo_id, "a.txt", revision=revision)) == content, revision
        snapshot = Path(snapshot_download(repo_id, revision=revision))
        assert (snapshot / "a.txt").read_bytes() == content, revision
        assert (snapshot / "w.bin").read_bytes() == weights, revision  # LFS, byte-equal
    refs = api.list_repo_refs(repo_id)
    assert {b.name for b in refs.branches} == {"main", "dev"}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", first.oid)]


def test_model_card_push_and_load(api, hub, hub_namespace):
    repo_id = f"{hub_namespace}/card"
    api.create_repo(repo_id)
    card = ModelCard("---\nlicense: apache-2.0\ntags:\n- rela\n---\n# ReLA encoder\n\nA card.\n")
    mark = hub.request_count
    card.push_to_hub(repo_id)
    loaded = ModelCard.load(repo_id)
    assert loaded.data.license == "apache-2.0" and loaded.data.tags == ["rela"]
    assert "A card." in loaded.text
    validations = hub.find_requests("POST", "/api/validate-yaml", since=mark)
    assert [v.authorized for v in validations] == [False, True]  # RepoCard.validate: no token
    assert not hub.find_requests("POST", f"/{repo_id}.git/info/lfs")  # a README is regular


# ---- S2 datasets --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_dataset(cifar10_images) -> datasets.Dataset:
    """The 20 real CIFAR-10 images and labels, plus a float32 embedding of length 8."""
    rng = np.random.default_rng(0)
    embeddings = rng.standard_normal((len(cifar10_images), 8)).astype(np.float32)
    embedding_feature = datasets.List(datasets.Value("float32"), length=8)
    features = datasets.Features({**cifar10_images.features, "embedding": embedding_feature})
    with_embeddings = cifar10_images.add_column("embedding", list(embeddings))
    return with_embeddings.cast(features)


def assert_same_rows(loaded, expected: datasets.Dataset) -> None:
    rows = list(loaded)
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        assert row["label"] == want["label"]
        np.testing.assert_array_equal(np.asarray(row["image"]), np.asarray(want["image"]))
        embedding = np.asarray(row["embedding"], np.float32)
        np.testing.assert_array_equal(embedding, np.asarray(want["embedding"], np.float32))


def test_dataset_push_to_hub_then_load_dataset(hub, hub_namespace, image_dataset):
    repo_id = f"{hub_namespace}/cifar10-embeddings"
    train, test = image_dataset.select(range(14)), image_dataset.select(range(14, 20))
    train.push_to_hub(repo_id, split="train")
    test.push_to_hub(repo_id, split="test")
    assert hub.find_requests("POST", f"/datasets/{repo_id}.git/info/lfs/objects/batch")
    shards = {p for p in hub.files(repo_id, "dataset") if p.endswith(".parquet")}
    assert shards == {"data/train-00000-of-00001.parquet", "data/test-00000-of-00001.parquet"}

    loaded = datasets.load_dataset(repo_id)
    assert {split: len(ds) for split, ds in loaded.items()} == {"train": 14, "test": 6}
    assert loaded["train"].features == image_dataset.features
    assert_same_rows(loaded["train"], train)
    assert_same_rows(datasets.load_dataset(repo_id, split="test"), test)


def test_dataset_push_to_a_branch_and_streaming(hub, hub_namespace, image_dataset):
    repo_id = f"{hub_namespace}/cifar10-branches"
    image_dataset.push_to_hub(repo_id, split="train")
    small = image_dataset.select(range(5))
    datasets.DatasetDict({"train": small}).push_to_hub(repo_id, revision="small")
    assert hub.find_requests("POST", f"/api/datasets/{repo_id}/branch/small")

    assert_same_rows(datasets.load_dataset(repo_id, split="train", revision="small"), small)
    assert_same_rows(datasets.load_dataset(repo_id, split="train"), image_dataset)  # main as was

    mark = hub.request_count
    streamed = datasets.load_dataset(repo_id, split="train", streaming=True)
    assert isinstance(streamed, datasets.IterableDataset)
    assert_same_rows(streamed, image_dataset)
    shard_reads = hub.find_requests("GET", ".parquet", since=mark)
    assert shard_reads and all(r.status == 206 for r in shard_reads)  # range reads, no download


# ---- S3 timm + transformers ---------------------------------------------------------------------


def test_timm_push_then_timm_and_transformers_load_it(api, hub_namespace):
    repo_id = f"{hub_namespace}/test-resnet"
    model = timm.create_model("test_resnet").eval()
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(pixels)
        features = model.forward_head(model.forward_features(pixels), pre_logits=True)
    push_to_hf_hub(model, repo_id)
    pushed = set(api.list_repo_files(repo_id))
    assert {"config.json", "model.safetensors", "pytorch_model.bin", "README.md"} <= pushed

    reloaded = timm.create_model(f"hf-hub:{repo_id}", pretrained=True).eval()
    with torch.no_grad():
        assert torch.equal(reloaded(pixels), logits)

    # timm 1.0.31 writes model_args.num_classes and transformers 5.24 passes num_classes itself
    # (hf-conventions.md §2). Once this stops raising, upstream fixed it: drop the workaround.
    with pytest.raises(TypeError, match="multiple values for keyword argument 'num_classes'"):
        transformers.AutoModel.from_pretrained(repo_id)
    config = json.loads(read(hf_hub_download(repo_id, "config.json")))
    config["model_args"].pop("num_classes")
    fixed = json.dumps(config).encode()
    api.upload_file(repo_id=repo_id, path_or_fileobj=fixed, path_in_repo="config.json")

    backbone = transformers.AutoModel.from_pretrained(repo_id).eval()
    classifier = transformers.AutoModelForImageClassification.from_pretrained(repo_id).eval()
    assert type(backbone).__name__ == "TimmWrapperModel"
    with torch.no_grad():
        assert torch.equal(backbone(pixel_values=pixels).pooler_output, features)
        assert torch.equal(classifier(pixel_values=pixels).logits, logits)


# ---- S4 errors, pull requests, HfFileSystem -----------------------------------------------------


def test_errors_have_the_exception_types_of_the_real_hub(api, hub_namespace):
    repo_id, missing = f"{hub_namespace}/errors", f"{hub_namespace}/missing"
    api.create_repo(repo_id)
    first = api.upload_file(repo_id=repo_id, path_or_fileobj=b"v1", path_in_repo="a.txt")
    api.upload_file(repo_id=repo_id, path_or_fileobj=b"v2", path_in_repo="a.txt")

    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(missing, "a.txt")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(missing)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "missing.txt")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "a.txt", revision="no-such-branch")
    with pytest.raises(RevisionNotFoundError):
        api.list_repo_files(repo_id, revision="no-such-branch")
    assert not api.repo_exists(missing) and api.repo_exists(repo_id)
    assert not api.revision_exists(repo_id, "nope") and api.revision_exists(repo_id, "main")

    stale = [CommitOperationAdd("b.txt", b"b")]
    with pytest.raises(HfHubHTTPError) as conflict:
        api.create_commit(repo_id, stale, commit_message="stale", parent_commit=first.oid)
    assert conflict.value.response.status_code == 412
    assert api.list_repo_files(repo_id) == [".gitattributes", "a.txt"]  # nothing half-written


def test_wrong_token_fails_like_the_real_hub(api, hub, hub_namespace):
    repo_id, wrong = f"{hub_namespace}/auth", "hf_wrong_token"
    api.create_repo(repo_id, private=True)
    files = [CommitOperationAdd("w.bin", b"\x00" * 64), CommitOperationAdd("notes.txt", b"notes")]
    with hub.strict_auth(os.environ["HF_TOKEN"]):
        api.create_commit(repo_id, files, commit_message="add files")  # LFS PUT: no token sent
        assert read(hf_hub_download(repo_id, "w.bin")) == b"\x00" * 64
        for call in (
            lambda: api.model_info(repo_id, token=wrong),
            lambda: api.whoami(token=wrong),
            lambda: api.upload_file(repo_id=repo_id, path_or_fileobj=b"x", path_in_repo="x", token=wrong),
            lambda: hf_hub_download(repo_id, "notes.txt", token=wrong),
        ):
            with pytest.raises(HfHubHTTPError, match=r"Invalid (credentials|user token)") as error:
                call()
            # the real Hub's 401 for a bad token is untyped: not a RepositoryNotFoundError
            assert not isinstance(error.value, RepositoryNotFoundError)
            assert error.value.response.status_code == 401
        with pytest.raises(RepositoryNotFoundError):  # a private repo is hidden without a token
            api.model_info(repo_id, token=False)


def test_pull_requests_deletions_and_hffilesystem(api, hub_namespace, image_dataset):
    repo_id = f"{hub_namespace}/fs"
    image_dataset.push_to_hub(repo_id, split="train")
    fs = HfFileSystem()
    root = f"datasets/{repo_id}"
    shard = f"{root}/data/train-00000-of-00001.parquet"
    assert fs.ls(f"{root}/data", detail=False) == [shard]
    assert fs.glob(f"{root}/**/*.parquet") == [shard]
    assert fs.exists(shard) and not fs.exists(f"{root}/missing.parquet")
    size = fs.info(shard)["size"]
    with fs.open(shard, "rb") as f:
        assert f.read(4) == PARQUET_MAGIC
        f.seek(size - 4)
        assert f.read() == PARQUET_MAGIC
    from_files = datasets.load_dataset("parquet", data_files=f"hf://{shard}", split="train")
    assert_same_rows(from_files, image_dataset)

    pr = api.upload_file(
        repo_id=repo_id,
        repo_type="dataset",
        path_or_fileobj=b"pr",
        path_in_repo="pr.txt",
        create_pr=True,
    )
    assert (pr.pr_revision, pr.pr_num) == ("refs/pr/1", 1)
    downloaded = hf_hub_download(repo_id, "pr.txt", repo_type="dataset", revision=pr.pr_revision)
    assert read(downloaded) == b"pr"
    assert not api.file_exists(repo_id, "pr.txt", repo_type="dataset")  # main did not move

    api.delete_file("README.md", repo_id, repo_type="dataset")
    assert not api.file_exists(repo_id, "README.md", repo_type="dataset")
    api.delete_repo(repo_id, repo_type="dataset")
    assert not api.repo_exists(repo_id, repo_type="dataset")


# ---- S5 misc ------------------------------------------------------------------------------------


def test_large_files_expanded_listings_and_no_op_uploads(api, hub_namespace):
    repo_id = f"{hub_namespace}/misc"
    api.create_repo(repo_id)
    big = np.random.default_rng(2).bytes(11 * 2**20)  # over 10 MiB: LFS whatever the extension
    api.upload_file(repo_id=repo_id, path_or_fileobj=big, path_in_repo="big.txt")
    head = api.upload_file(repo_id=repo_id, path_or_fileobj=b"small", path_in_repo="d/small.txt")
    assert read(hf_hub_download(repo_id, "big.txt")) == big

    big_info, folder = api.get_paths_info(repo_id, ["big.txt", "d", "missing"], expand=True)
    assert big_info.lfs.size == len(big)
    assert big_info.last_commit.title == "Upload big.txt with huggingface_hub"
    assert folder.path == "d" and folder.last_commit.oid == head.oid
    tree = {entry.path: entry for entry in api.list_repo_tree(repo_id, expand=True)}
    assert tree["d"].last_commit.oid == head.oid and tree["big.txt"].lfs.sha256

    again = api.upload_file(repo_id=repo_id, path_or_fileobj=b"small", path_in_repo="d/small.txt")
    assert again.oid == head.oid == api.model_info(repo_id).sha  # same content: no new commit
