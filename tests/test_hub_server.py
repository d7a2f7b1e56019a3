"""The loopback Hub answers the real huggingface_hub client the way the Hub does, for the routes it implements."""

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from hub_fixtures import loopback_hub  # noqa: F401  (a fixture)
from hub_fixtures import save_tiny_model
from poolformer_hf.hub.publish import http_library
from fixtures import LoopbackHub, git_blob_id

REPO = "org/files"


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "source"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("hello")
    (folder / "sub" / "weights.safetensors").write_bytes(bytes(range(256)) * 40)
    return folder


def test_create_repo_then_exist_ok_and_conflict(loopback_hub):
    api = HfApi()
    url = api.create_repo(REPO)
    assert url == f"{loopback_hub.endpoint}/{REPO}"
    assert api.create_repo(REPO, exist_ok=True) == url
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(REPO)
    assert info.value.response.status_code == 409


def test_writes_need_the_token(loopback_hub):
    with pytest.raises(HfHubHTTPError) as info:
        HfApi(token=False).create_repo(REPO)
    assert info.value.response.status_code == 401


def test_upload_folder_lists_downloads_and_skips_unchanged_files(loopback_hub, source):
    api = HfApi()
    api.create_repo(REPO)
    api.upload_folder(folder_path=source, repo_id=REPO, commit_message="add files")
    commits = len(api.list_repo_commits(REPO))
    api.upload_folder(folder_path=source, repo_id=REPO)  # nothing changed

    assert len(api.list_repo_commits(REPO)) == commits == 2  # initial commit + "add files"
    assert api.list_repo_files(REPO) == [".gitattributes", "a.txt", "sub/weights.safetensors"]
    tree = {entry.path: entry for entry in api.list_repo_tree(REPO)}
    assert set(tree) == {".gitattributes", "a.txt", "sub"}  # not recursive: the folder, not its file
    assert tree["a.txt"].blob_id == git_blob_id(b"hello") and tree["a.txt"].size == 5
    info = api.model_info(REPO, files_metadata=True)
    assert info.sha == api.list_repo_commits(REPO)[0].commit_id
    assert {s.rfilename: s.size for s in info.siblings}["sub/weights.safetensors"] == 10240

    path = hf_hub_download(REPO, "sub/weights.safetensors")
    assert open(path, "rb").read() == (source / "sub" / "weights.safetensors").read_bytes()
    snapshot = snapshot_download(REPO)
    assert open(f"{snapshot}/a.txt").read() == "hello"


def test_branches_keep_their_own_history(loopback_hub):
    api = HfApi()
    api.create_repo(REPO)
    api.create_branch(REPO, branch="dev")
    api.upload_file(path_or_fileobj=b"on dev", path_in_repo="dev.txt", repo_id=REPO, revision="dev")
    api.create_branch(REPO, branch="dev", exist_ok=True)

    assert "dev.txt" in api.list_repo_files(REPO, revision="dev")
    assert "dev.txt" not in api.list_repo_files(REPO)
    refs = {b.name: b.target_commit for b in api.list_repo_refs(REPO).branches}
    assert refs["dev"] == api.model_info(REPO, revision="dev").sha != refs["main"]
    assert open(hf_hub_download(REPO, "dev.txt", revision="dev"), "rb").read() == b"on dev"


def test_errors_map_to_the_clients_exceptions(loopback_hub):
    api = HfApi()
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(REPO)
    api.create_repo(REPO, private=True)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(token=False).model_info(REPO)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="no-such-branch")
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(REPO, "missing.txt")


def test_resolve_serves_headers_and_byte_ranges(loopback_hub):
    api = HfApi()
    api.create_repo(REPO)
    api.upload_file(path_or_fileobj=b"0123456789", path_in_repo="digits.txt", repo_id=REPO)
    url = f"{loopback_hub.endpoint}/{REPO}/resolve/main/digits.txt"

    http = http_library()
    head = http.head(url)
    assert head.headers["ETag"] == f'"{git_blob_id(b"0123456789")}"'
    assert head.headers["X-Repo-Commit"] == api.model_info(REPO).sha
    assert head.headers["Content-Length"] == "10"
    part = http.get(url, headers={"Range": "bytes=3-"})
    assert part.status_code == 206 and part.content == b"3456789"
    assert part.headers["Content-Range"] == "bytes 3-9/10"
    assert http.get(url, headers={"Range": "bytes=20-"}).status_code == 416


def test_injected_failures_count_down(loopback_hub):
    api = HfApi()
    loopback_hub.fail("create_repo", status=507, times=1)
    with pytest.raises(HfHubHTTPError) as info:
        api.create_repo(REPO)
    assert info.value.response.status_code == 507
    api.create_repo(REPO)  # the failure was used up
    assert [r.route for r in loopback_hub.requests_to("create_repo")] == ["create_repo", "create_repo"]


def test_stopped_server_refuses_connections():
    hub = LoopbackHub().start()
    endpoint = hub.endpoint
    hub.stop()
    http = http_library()
    with pytest.raises(http.ConnectError):
        http.get(f"{endpoint}/api/models/{REPO}")


def test_transformers_push_to_hub_round_trips(loopback_hub, tmp_path):
    model = save_tiny_model(tmp_path / "model")
    model.push_to_hub(REPO)

    files = HfApi().list_repo_files(REPO)
    assert {"config.json", "model.safetensors", "modeling_poolformer.py"} <= set(files)
    pushed = hf_hub_download(REPO, "model.safetensors")
    assert open(pushed, "rb").read() == (tmp_path / "model" / "model.safetensors").read_bytes()
