"""The test hub answers what huggingface_hub 2.4 asks, the way the Hub does (checked through the client)."""

from __future__ import annotations

import uuid

import httpx2
import pytest
from huggingface_hub import HfApi, errors

from tests.conftest import HF_TOKEN
from tests.hub_server import git_blob_oid


@pytest.fixture
def repo(hub):
    api = HfApi()
    repo_id = f"zoo-test/server-{uuid.uuid4().hex[:8]}"
    api.create_repo(repo_id)
    commit = api.create_commit(
        repo_id,
        operations=[
            _add("config.json", b'{"a": 1}'),
            _add("sub/deep/data.bin", bytes(range(256)) * 4),
        ],
        commit_message="two files",
    )
    return api, repo_id, commit.oid


def _add(path: str, data: bytes):
    from huggingface_hub import CommitOperationAdd

    return CommitOperationAdd(path_in_repo=path, path_or_fileobj=data)


def test_create_is_idempotent_with_exist_ok_and_409_still_carries_the_url(hub, repo):
    api, repo_id, _ = repo
    assert api.create_repo(repo_id, exist_ok=True).repo_id == repo_id
    with pytest.raises(errors.HfHubHTTPError) as info:
        api.create_repo(repo_id)
    assert info.value.response.status_code == 409 and info.value.response.json()["url"].endswith(repo_id)


def test_writes_need_a_valid_bearer_token(hub):
    name = f"no-token-{uuid.uuid4().hex[:8]}"
    answer = httpx2.post(f"{hub.url}/api/repos/create", json={"name": name, "organization": "zoo-test"})
    assert answer.status_code == 401
    answer = httpx2.post(
        f"{hub.url}/api/repos/create",
        json={"name": name, "organization": "zoo-test"},
        headers={"Authorization": f"Bearer {HF_TOKEN}x"},
    )
    assert answer.status_code == 401


def test_info_tree_and_paths_info(repo):
    api, repo_id, sha = repo
    info = api.model_info(repo_id)
    assert info.sha == sha == api.model_info(repo_id, revision=sha).sha
    assert {s.rfilename for s in info.siblings} == {".gitattributes", "config.json", "sub/deep/data.bin"}
    top = {e.path: type(e).__name__ for e in api.list_repo_tree(repo_id)}
    assert top == {"sub": "RepoFolder", ".gitattributes": "RepoFile", "config.json": "RepoFile"}
    assert set(api.list_repo_files(repo_id)) == {".gitattributes", "config.json", "sub/deep/data.bin"}
    assert [e.path for e in api.list_repo_tree(repo_id, "sub")] == ["sub/deep"]
    found = api.get_paths_info(repo_id, ["config.json", "sub/deep", "missing.txt"])
    assert [(e.path, type(e).__name__) for e in found] == [
        ("config.json", "RepoFile"),
        ("sub/deep", "RepoFolder"),
    ]
    assert found[0].blob_id == git_blob_oid(b'{"a": 1}') and found[0].size == 8


def test_resolve_headers_ranges_and_error_codes(hub, repo):
    _, repo_id, sha = repo
    url = f"{hub.url}/{repo_id}/resolve/main/sub/deep/data.bin"
    head = httpx2.head(url)
    assert head.headers["X-Repo-Commit"] == sha and head.headers["Content-Length"] == "1024"
    assert head.headers["ETag"] == f'"{git_blob_oid(bytes(range(256)) * 4)}"'
    part = httpx2.get(url, headers={"Range": "bytes=250-259"})
    assert part.status_code == 206 and part.content == bytes([250, 251, 252, 253, 254, 255, 0, 1, 2, 3])
    assert part.headers["Content-Range"] == "bytes 250-259/1024"
    assert httpx2.get(url, headers={"Range": "bytes=1000-"}).content == (bytes(range(256)) * 4)[1000:]
    codes = {
        f"{hub.url}/zoo-test/nope/resolve/main/x": (401, "RepoNotFound"),
        f"{hub.url}/{repo_id}/resolve/nope/config.json": (404, "RevisionNotFound"),
        f"{hub.url}/{repo_id}/resolve/main/nope.json": (404, "EntryNotFound"),
    }
    for where, (status, code) in codes.items():
        answer = httpx2.head(where)
        assert (answer.status_code, answer.headers["X-Error-Code"]) == (status, code)


def test_commits_are_atomic_and_deletions_apply(hub, repo):
    from huggingface_hub import CommitOperationDelete

    api, repo_id, sha = repo
    with pytest.raises(errors.RemoteEntryNotFoundError):  # one bad line: nothing of the commit applies
        api.create_commit(
            repo_id,
            operations=[_add("new.txt", b"new"), CommitOperationDelete("not-there.txt")],
            commit_message="bad",
        )
    assert hub.head(repo_id) == sha
    commit = api.create_commit(
        repo_id, operations=[CommitOperationDelete("sub/", is_folder=True)], commit_message="drop sub"
    )
    assert commit.oid != sha and set(hub.files(repo_id)) == {".gitattributes", "config.json"}
    assert set(hub.files(repo_id, sha)) == {".gitattributes", "config.json", "sub/deep/data.bin"}
    with pytest.raises(errors.RevisionNotFoundError):
        api.create_commit(repo_id, operations=[_add("x", b"x")], commit_message="x", revision="no-branch")


def test_invalid_card_metadata_is_refused_before_upload(hub, repo):
    api, repo_id, _ = repo
    with pytest.raises(ValueError, match="never closed"):
        api.upload_file(
            path_or_fileobj=b"---\nlicense: mit\n# no end\n", path_in_repo="README.md", repo_id=repo_id
        )
