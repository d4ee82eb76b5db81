"""The fake Hub in ``hub_server.py`` works with the real huggingface_hub / transformers client code."""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_server import LocalHub, local_hub, patch_hub_environment  # noqa: F401 - `local_hub` is a fixture
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    constants,
    hf_hub_download,
    snapshot_download,
)
from huggingface_hub.errors import EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError


BINARY = bytes(range(256)) * 4 + b"\x00\xff" * 100  # every byte value, safetensors-like opaque blob
TEXT = "hello hub\nsecond line: ünïcödé\n".encode()


def _read_tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def uploaded(local_hub: LocalHub, tmp_path: Path) -> tuple[HfApi, str]:
    """``user/repo`` holding BINARY at ``model.safetensors`` and TEXT at ``docs/notes.txt``, via ``upload_folder``."""
    api = HfApi(endpoint=local_hub.url, token="fake")
    repo_url = api.create_repo("user/repo", exist_ok=True)
    assert repo_url.repo_id == "user/repo"
    assert api.create_repo("user/repo", exist_ok=True).repo_id == "user/repo"  # 409 + exist_ok path

    folder = tmp_path / "upload"
    (folder / "docs").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(BINARY)
    (folder / "docs" / "notes.txt").write_bytes(TEXT)
    info = api.upload_folder(repo_id="user/repo", folder_path=folder, commit_message="add files")
    assert info.oid == local_hub.head("user/repo")
    return api, "user/repo"


def test_upload_folder_then_download_roundtrip(local_hub: LocalHub, uploaded: tuple[HfApi, str]) -> None:
    _, repo_id = uploaded
    assert local_hub.files(repo_id) == {"model.safetensors": BINARY, "docs/notes.txt": TEXT}
    assert ("POST", "/api/models/user/repo/preupload/main") in local_hub.requests
    assert ("POST", "/api/models/user/repo/commit/main") in local_hub.requests
    assert not local_hub.unhandled

    # Default endpoint (no `endpoint=`): proves the fixture patched the import-time constants.
    assert Path(hf_hub_download(repo_id, "model.safetensors")).read_bytes() == BINARY
    assert Path(hf_hub_download(repo_id, "docs/notes.txt", endpoint=local_hub.url)).read_bytes() == TEXT
    assert str(constants.HF_HUB_CACHE) in hf_hub_download(repo_id, "docs/notes.txt")

    snapshot = Path(snapshot_download(repo_id, endpoint=local_hub.url))
    assert snapshot.name == local_hub.head(repo_id)
    assert _read_tree(snapshot) == {"model.safetensors": BINARY, "docs/notes.txt": TEXT}
    assert not local_hub.unhandled


def test_missing_file_repo_and_revision_raise_typed_errors(local_hub: LocalHub, uploaded: tuple[HfApi, str]) -> None:
    api, repo_id = uploaded
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo_id, "does-not-exist.bin")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("user/missing", "config.json")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("user/missing")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("user/missing")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo_id, "model.safetensors", revision="no-such-branch")


def test_create_commit_with_deletion_and_old_revisions(local_hub: LocalHub, uploaded: tuple[HfApi, str]) -> None:
    api, repo_id = uploaded
    first = local_hub.head(repo_id)
    api.create_commit(
        repo_id,
        operations=[
            CommitOperationAdd(path_in_repo="new.txt", path_or_fileobj=b"new"),
            CommitOperationDelete(path_in_repo="docs/"),
        ],
        commit_message="edit",
    )
    assert local_hub.files(repo_id) == {"model.safetensors": BINARY, "new.txt": b"new"}
    assert sorted(api.list_repo_files(repo_id)) == ["model.safetensors", "new.txt"]
    # The previous commit is still addressable by sha, like on the Hub.
    assert Path(hf_hub_download(repo_id, "docs/notes.txt", revision=first)).read_bytes() == TEXT

    # Re-uploading identical content is skipped client-side (preupload returns the remote oid): no new commit.
    head = local_hub.head(repo_id)
    api.upload_file(path_or_fileobj=b"new", path_in_repo="new.txt", repo_id=repo_id)
    assert local_hub.head(repo_id) == head

    api.create_branch(repo_id, branch="dev")
    api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id=repo_id, revision="dev")
    assert "dev.txt" in local_hub.files(repo_id, revision="dev")
    assert "dev.txt" not in local_hub.files(repo_id)


def test_module_level_api_and_whoami(local_hub: LocalHub) -> None:
    import huggingface_hub

    assert huggingface_hub.whoami()["name"] == "user"
    # No namespace: the server puts the repo under the authenticated user, as the Hub does.
    assert huggingface_hub.create_repo("bare").repo_id == "user/bare"
    assert local_hub.repo_ids() == ["user/bare"]


def test_transformers_push_to_hub_and_from_pretrained(local_hub: LocalHub) -> None:
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=128, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    config.push_to_hub("user/cfg")
    files = local_hub.files("user/cfg")
    assert set(files) == {"config.json", "README.md"}

    loaded = transformers.LlamaConfig.from_pretrained("user/cfg")
    assert loaded.to_dict() == config.to_dict()
    assert not local_hub.unhandled


def test_patching_is_undone(tmp_path: Path) -> None:
    """Outside the fixture, huggingface_hub and transformers see their original endpoint and cache again."""
    import huggingface_hub.hf_api
    import transformers.utils.hub

    before = (constants.ENDPOINT, constants.HF_HUB_CACHE, huggingface_hub.hf_api.api.endpoint)
    with LocalHub() as hub, pytest.MonkeyPatch.context() as mp:
        patch_hub_environment(mp, hub.url, tmp_path / "hf_home")
        assert transformers.utils.hub.hf_api().endpoint == hub.url
        assert huggingface_hub.hf_api.api.endpoint == constants.ENDPOINT == hub.url
    assert (constants.ENDPOINT, constants.HF_HUB_CACHE, huggingface_hub.hf_api.api.endpoint) == before
    assert transformers.utils.hub._hf_api is None or transformers.utils.hub._hf_api.endpoint == before[0]
