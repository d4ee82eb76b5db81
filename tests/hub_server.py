"""In-process fake of the Hugging Face Hub HTTP API, for tests.

Why: we want tests to run the *real* ``huggingface_hub`` (2.4) and ``transformers`` (5.23) upload/download code
(``create_repo``, ``create_commit``/``upload_folder``, ``hf_hub_download``, ``snapshot_download``,
``PushToHubMixin.push_to_hub``, ``from_pretrained``) without network access and without mocking any client code.
So instead of patching the client we serve the subset of the Hub HTTP API those code paths hit, from a
``ThreadingHTTPServer`` bound to ``127.0.0.1`` on an ephemeral port.

Scope (deliberately small):

* ``POST /api/repos/create``, ``DELETE /api/repos/delete``, ``GET /api/whoami-v2``, ``POST /api/validate-yaml``;
* ``GET /api/{models,datasets,spaces}/{repo_id}[/revision/{rev}]`` (repo info with ``sha`` and ``siblings``);
* ``GET /api/{type}s/{repo_id}/tree/{rev}[/{path}]`` (used by ``snapshot_download``);
* ``POST /api/{type}s/{repo_id}/preupload/{rev}``: always answers ``uploadMode: "regular"`` so file contents arrive
  inline (base64) in the commit payload; LFS and Xet are never involved;
* ``POST /api/{type}s/{repo_id}/commit/{rev}``: NDJSON payload with ``file``, ``deletedFile`` and ``deletedFolder``
  operations (``create_pr=1`` opens a ``refs/pr/N`` ref);
* ``POST /api/{type}s/{repo_id}/branch/{branch}``;
* ``HEAD``/``GET /[datasets/|spaces/]{repo_id}/resolve/{rev}/{path}`` with ``X-Repo-Commit``, ``ETag`` (git blob
  sha1, like the Hub for non-LFS files), ``Content-Length`` and single ``Range`` support.

Errors carry the ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) that
``huggingface_hub.utils.hf_raise_for_status`` maps to its typed exceptions. Unknown routes answer 404 without an error
code and are recorded in :attr:`LocalHub.unhandled` so a missing route is easy to diagnose.

Writes require an ``Authorization: Bearer ...`` header (any token is accepted); reads are anonymous. Repos created
without a namespace land under :data:`USER`, which is also what ``whoami`` reports. Unlike the real Hub, a new repo
starts with an empty initial commit (no ``.gitattributes``), so :meth:`LocalHub.files` holds exactly what was pushed.

Use the :func:`local_hub` fixture (it also points every import-time copy of the Hub endpoint/cache settings at the
fake and an isolated cache, see :func:`patch_hub_environment`), or ``LocalHub`` directly as a context manager.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest


USER = "user"
"""Namespace of the (single) authenticated user, used for repos created without an organization."""

_TYPE_PREFIXES: dict[str, str] = {"model": "", "dataset": "datasets/", "space": "spaces/"}
_API_KINDS: dict[str, str] = {"models": "model", "datasets": "dataset", "spaces": "space"}
_RESOLVE_RE = re.compile(
    r"^/(?:(?P<prefix>datasets|spaces)/)?(?P<repo>[^/]+(?:/[^/]+)?)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"
)
_API_REPO_RE = re.compile(r"^/api/(?P<kind>models|datasets|spaces)/(?P<rest>.+)$")
_RANGE_RE = re.compile(r"^bytes=(?P<start>\d*)-(?P<end>\d*)$")


def git_blob_sha(data: bytes) -> str:
    """Git blob sha1 of ``data``: the Hub's ETag / ``oid`` for regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class HubError(Exception):
    """An HTTP error answered the way the Hub does (status + ``X-Error-Code``/``X-Error-Message`` headers)."""

    def __init__(self, status: int, message: str, error_code: str | None = None, **headers: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_code = error_code
        self.headers = headers


@dataclass
class _Request:
    method: str
    path: str  # raw (still percent-encoded) path, without the query string
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def flag(self, name: str) -> bool:
        return self.query.get(name, [""])[0].lower() in ("1", "true")


@dataclass
class _Response:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def of_json(cls, payload: Any, status: int = 200, **headers: str) -> _Response:
        return cls(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **headers})


@dataclass
class _Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: str
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # commit sha -> full tree (path -> bytes)
    commit_dates: dict[str, str] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)  # branch / refs/pr/N -> commit sha
    nb_prs: int = 0


class LocalHub:
    """A fake Hub: in-memory repos served over HTTP on ``127.0.0.1`` (see module docstring for the API subset).

    State is kept per ``(repo_type, repo_id)``: every commit's full tree (``path -> bytes``) and the refs pointing to
    them. :attr:`requests` logs ``(method, path)`` for every request (path percent-decoded, query string dropped).
    """

    def __init__(self, *, require_token: bool = True) -> None:
        self.require_token = require_token
        self.requests: list[tuple[str, str]] = []
        self.unhandled: list[tuple[str, str]] = []
        self._repos: dict[tuple[str, str], _Repo] = {}
        self._nb_commits = 0
        self._lock = threading.RLock()
        self._server: _HubHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------------------------

    def start(self) -> LocalHub:
        """Bind an ephemeral port on 127.0.0.1 and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._server = _HubHTTPServer(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="LocalHub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        assert self._thread is not None
        self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """Endpoint to use as ``HF_ENDPOINT`` / ``HfApi(endpoint=...)``, e.g. ``http://127.0.0.1:40123``."""
        if self._server is None:
            raise RuntimeError("LocalHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- assertions helpers ----------------------------------------------------------------------------------------

    def files(self, repo_id: str, *, repo_type: str = "model", revision: str = "main") -> dict[str, bytes]:
        """Copy of the repo's files at ``revision`` (branch or commit sha). Raises ``KeyError`` if unknown."""
        with self._lock:
            repo = self._repos[(repo_type, repo_id)]
            return dict(repo.commits[self._resolve_revision(repo, revision)])

    def head(self, repo_id: str, *, repo_type: str = "model", revision: str = "main") -> str:
        """Commit sha that ``revision`` points to."""
        with self._lock:
            return self._resolve_revision(self._repos[(repo_type, repo_id)], revision)

    def repo_ids(self, repo_type: str = "model") -> list[str]:
        with self._lock:
            return sorted(repo_id for rtype, repo_id in self._repos if rtype == repo_type)

    # -- request handling (called from the HTTP handler threads) ---------------------------------------------------

    def _handle(self, req: _Request) -> _Response:
        with self._lock:
            try:
                return self._route(req)
            except HubError as err:
                headers = dict(err.headers)
                if err.error_code is not None:
                    headers["X-Error-Code"] = err.error_code
                headers["X-Error-Message"] = err.message.encode("ascii", "backslashreplace").decode()  # latin-1 only
                return _Response.of_json({"error": err.message}, status=err.status, **headers)

    def _route(self, req: _Request) -> _Response:
        method, path = req.method, req.path
        if method in ("GET", "HEAD") and (m := _RESOLVE_RE.match(path)):
            repo_type = _API_KINDS[m["prefix"]] if m["prefix"] else "model"
            repo = self._get_repo(repo_type, unquote(m["repo"]))
            return self._resolve(req, repo, unquote(m["rev"]), unquote(m["path"]))
        if path == "/api/whoami-v2" and method == "GET":
            return self._whoami(req)
        if path == "/api/repos/create" and method == "POST":
            return self._create_repo(req)
        if path == "/api/repos/delete" and method == "DELETE":
            return self._delete_repo(req)
        if path == "/api/validate-yaml" and method == "POST":
            return _Response.of_json({"errors": [], "warnings": []})
        if m := _API_REPO_RE.match(path):
            repo_type = _API_KINDS[m["kind"]]
            repo, tail = self._split_repo(repo_type, [unquote(s) for s in m["rest"].split("/")])
            if method == "GET" and not tail:
                return self._repo_info(req, repo, "main")
            if method == "GET" and len(tail) == 2 and tail[0] == "revision":
                return self._repo_info(req, repo, tail[1])
            if method == "GET" and len(tail) >= 2 and tail[0] == "tree":
                return self._tree(req, repo, tail[1], "/".join(tail[2:]))
            if method == "POST" and len(tail) == 2 and tail[0] == "preupload":
                return self._preupload(req, repo, tail[1])
            if method == "POST" and len(tail) == 2 and tail[0] == "commit":
                return self._commit(req, repo, tail[1])
            if method == "POST" and len(tail) >= 2 and tail[0] == "branch":
                return self._create_branch(req, repo, "/".join(tail[1:]))
        self.unhandled.append((method, unquote(path)))
        raise HubError(404, f"LocalHub does not implement {method} {path}")

    # -- helpers ---------------------------------------------------------------------------------------------------

    def _check_auth(self, req: _Request) -> None:
        if self.require_token and not req.headers.get("Authorization", "").startswith("Bearer "):
            raise HubError(401, "Invalid credentials in Authorization header")

    def _repo_url(self, repo: _Repo) -> str:
        return f"{self.url}/{_TYPE_PREFIXES[repo.repo_type]}{repo.repo_id}"

    def _get_repo(self, repo_type: str, repo_id: str) -> _Repo:
        repo = self._repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _split_repo(self, repo_type: str, segments: list[str]) -> tuple[_Repo, list[str]]:
        """Split ``ns/name/<tail...>`` (or legacy ``name/<tail...>``) into a known repo and the route tail."""
        if len(segments) >= 2 and (repo_type, "/".join(segments[:2])) in self._repos:
            return self._repos[(repo_type, "/".join(segments[:2]))], segments[2:]
        if (repo_type, segments[0]) in self._repos:
            return self._repos[(repo_type, segments[0])], segments[1:]
        raise HubError(404, "Repository not found", "RepoNotFound")

    @staticmethod
    def _resolve_revision(repo: _Repo, revision: str) -> str:
        if revision in repo.refs:
            return repo.refs[revision]
        if revision in repo.commits:
            return revision
        raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    def _new_commit(self, repo: _Repo, parent: str | None, tree: dict[str, bytes]) -> str:
        self._nb_commits += 1
        listing = "\n".join(f"{path} {git_blob_sha(data)}" for path, data in sorted(tree.items()))
        sha = hashlib.sha1(f"{repo.repo_type}/{repo.repo_id}\n{parent}\n{self._nb_commits}\n{listing}".encode())
        commit = sha.hexdigest()
        repo.commits[commit] = tree
        repo.commit_dates[commit] = _now()
        return commit

    # -- routes ----------------------------------------------------------------------------------------------------

    def _whoami(self, req: _Request) -> _Response:
        if not req.headers.get("Authorization", "").startswith("Bearer "):
            raise HubError(401, "Invalid credentials in Authorization header")
        return _Response.of_json(
            {
                "type": "user",
                "id": "0" * 24,
                "name": USER,
                "fullname": "Local Hub User",
                "orgs": [],
                "auth": {"type": "access_token", "accessToken": {"displayName": "fake", "role": "write"}},
            }
        )

    def _create_repo(self, req: _Request) -> _Response:
        self._check_auth(req)
        payload = req.json()
        repo_type = payload.get("type") or "model"
        if repo_type not in _TYPE_PREFIXES:
            raise HubError(400, f"Unsupported repo type: {repo_type}")
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        existing = self._repos.get((repo_type, repo_id))
        if existing is not None:
            return _Response.of_json(
                {"error": f"You already created this {repo_type} repo", "url": self._repo_url(existing)}, status=409
            )
        private = payload.get("private") or payload.get("visibility") == "private"
        repo = _Repo(repo_type=repo_type, repo_id=repo_id, private=bool(private), created_at=_now())
        repo.refs["main"] = self._new_commit(repo, None, {})
        self._repos[(repo_type, repo_id)] = repo
        repo_hash = hashlib.md5(repo_id.encode()).hexdigest()[:24]
        return _Response.of_json({"url": self._repo_url(repo), "name": repo_id, "id": repo_hash})

    def _delete_repo(self, req: _Request) -> _Response:
        self._check_auth(req)
        payload = req.json()
        repo_type = payload.get("type") or "model"
        repo_id = f"{payload.get('organization') or USER}/{payload['name']}"
        self._get_repo(repo_type, repo_id)
        del self._repos[(repo_type, repo_id)]
        return _Response()

    def _repo_info(self, req: _Request, repo: _Repo, revision: str) -> _Response:
        sha = self._resolve_revision(repo, revision)
        tree = repo.commits[sha]
        info: dict[str, Any] = {
            "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": repo.repo_id.split("/")[0],
            "sha": sha,
            "lastModified": repo.commit_dates[sha],
            "createdAt": repo.created_at,
            "private": repo.private,
            "disabled": False,
            "gated": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": [
                {"rfilename": path, "size": len(data), "blobId": git_blob_sha(data)}
                for path, data in sorted(tree.items())
            ],
        }
        if repo.repo_type == "model":
            info["modelId"] = repo.repo_id
        return _Response.of_json(info)

    def _tree(self, req: _Request, repo: _Repo, revision: str, path_in_repo: str) -> _Response:
        tree = repo.commits[self._resolve_revision(repo, revision)]
        prefix = f"{path_in_repo.strip('/')}/" if path_in_repo.strip("/") else ""
        files = {path: data for path, data in tree.items() if path.startswith(prefix)}
        if prefix and not files:
            raise HubError(404, f"{path_in_repo} does not exist on {revision}", "EntryNotFound")
        recursive = req.flag("recursive")
        entries: dict[str, dict[str, Any]] = {}
        for path, data in sorted(files.items()):
            parts = path[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # parent folders, below `prefix`
                if depth > 1 and not recursive:
                    break
                folder = prefix + "/".join(parts[:depth])
                oid = hashlib.sha1(f"tree {folder}".encode()).hexdigest()
                entries.setdefault(folder, {"type": "directory", "oid": oid, "size": 0, "path": folder})
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": path}
        return _Response.of_json(list(entries.values()))

    def _preupload(self, req: _Request, repo: _Repo, revision: str) -> _Response:
        self._check_auth(req)
        base = "main" if req.flag("create_pr") else revision
        tree = repo.commits[self._resolve_revision(repo, base)]
        files = [
            {
                "path": f["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_blob_sha(tree[f["path"]]) if f["path"] in tree else None,
            }
            for f in req.json().get("files", [])
        ]
        return _Response.of_json({"files": files, "commitOid": repo.refs.get(base)})

    def _commit(self, req: _Request, repo: _Repo, revision: str) -> _Response:
        self._check_auth(req)
        lines = [json.loads(line) for line in req.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "Commit payload must start with a header line")
        header = lines[0]["value"]
        create_pr = req.flag("create_pr")
        parent = self._resolve_revision(repo, "main" if create_pr else revision)
        if header.get("parentCommit") and not parent.startswith(header["parentCommit"]):
            raise HubError(412, f"Parent commit {header['parentCommit']} is not the head of {revision}")
        tree = dict(repo.commits[parent])
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"]
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding for {path}: {value.get('encoding')}")
                tree[path] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                if path not in tree:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
                del tree[path]
            elif key == "deletedFolder":
                folder = path.rstrip("/") + "/"
                doomed = [p for p in tree if p.startswith(folder)]
                if not doomed:
                    raise HubError(404, f"A folder with this name doesn't exist: {path}", "EntryNotFound")
                for p in doomed:
                    del tree[p]
            else:  # lfsFile: never requested, since preupload always answers "regular"
                raise HubError(400, f"LocalHub does not support commit operation {key!r} ({path})")
        sha = self._new_commit(repo, parent, tree)
        pr_url = None
        if create_pr:
            repo.nb_prs += 1
            repo.refs[f"refs/pr/{repo.nb_prs}"] = sha
            pr_url = f"{self._repo_url(repo)}/discussions/{repo.nb_prs}"
        else:
            repo.refs[revision] = sha
        return _Response.of_json(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{self._repo_url(repo)}/commit/{sha}",
                "commitMessage": header.get("summary", ""),
                "hookOutput": "",
                "pullRequestUrl": pr_url,
            }
        )

    def _create_branch(self, req: _Request, repo: _Repo, branch: str) -> _Response:
        self._check_auth(req)
        if branch in repo.refs:
            raise HubError(409, f"Reference already exists: refs/heads/{branch}")
        starting_point = req.json().get("startingPoint") or "main"
        repo.refs[branch] = self._resolve_revision(repo, starting_point)
        return _Response.of_json({})

    def _resolve(self, req: _Request, repo: _Repo, revision: str, path: str) -> _Response:
        sha = self._resolve_revision(repo, revision)
        tree = repo.commits[sha]
        if path not in tree:
            raise HubError(404, "Entry not found", "EntryNotFound", **{"X-Repo-Commit": sha})
        data = tree[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "ETag": f'"{git_blob_sha(data)}"',
            "X-Repo-Commit": sha,
        }
        if (range_header := req.headers.get("Range")) and (m := _RANGE_RE.match(range_header.strip())):
            start = int(m["start"]) if m["start"] else max(len(data) - int(m["end"] or 0), 0)
            end = int(m["end"]) if m["start"] and m["end"] else len(data) - 1
            if start >= len(data) or start > end:
                return _Response(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            return _Response(206, data[start : end + 1], headers)
        return _Response(200, data, headers)


class _HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # keep-alive connections from pooled clients must not block shutdown

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], hub: LocalHub) -> None:
        self.hub = hub
        super().__init__(address, handler)


class _Handler(BaseHTTPRequestHandler):
    """Thin HTTP/1.1 adapter: parse the request, let :class:`LocalHub` answer, write the response."""

    protocol_version = "HTTP/1.1"  # keep-alive, as httpx pools connections
    timeout = 30  # don't let an idle pooled connection pin a thread forever
    server: _HubHTTPServer

    def do_GET(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the base class
        pass  # keep pytest output clean; LocalHub.requests is the log

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        req = _Request(self.command, split.path, parse_qs(split.query), self.headers, self._read_body())
        hub = self.server.hub
        hub.requests.append((self.command, unquote(split.path)))
        resp = hub._handle(req)
        self.send_response(resp.status)
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(resp.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)


# -- pytest integration ---------------------------------------------------------------------------------------------


_CONFLICTING_ENV_VARS = (
    "TRANSFORMERS_OFFLINE",
    "HUGGING_FACE_HUB_TOKEN",
    "HUGGINGFACE_HUB_CACHE",
    "HUGGINGFACE_ASSETS_CACHE",
    "HUGGINGFACE_CO_STAGING",
    "HF_OIDC_RESOURCE",  # would take precedence over HF_TOKEN
    "HF_HUB_DISABLE_IMPLICIT_TOKEN",
)


def patch_hub_environment(monkeypatch: pytest.MonkeyPatch, endpoint: str, hf_home: Path) -> None:
    """Point huggingface_hub and transformers at ``endpoint`` with an isolated cache under ``hf_home``.

    Env vars alone are not enough: ``huggingface_hub.constants`` reads them once at import time, a few modules copy
    constants with ``from ..constants import X``, and some ``HfApi`` instances bind ``constants.ENDPOINT`` when they
    are built (``huggingface_hub.hf_api.api``, the backing object of the module-level ``create_repo``,
    ``upload_folder``, ``whoami``...; and transformers' lazily cached ``transformers.utils.hub._hf_api``).
    Everything is undone by ``monkeypatch`` at teardown, so nothing leaks into other tests.
    """
    import huggingface_hub.hf_api
    import huggingface_hub.utils._cache_assets
    import huggingface_hub.utils._cache_manager
    import huggingface_hub.utils._git_credential
    import transformers.utils.hub
    from huggingface_hub import constants
    from huggingface_hub.utils import close_session

    endpoint = endpoint.rstrip("/")
    host = urlsplit(endpoint).hostname or "127.0.0.1"
    hub_cache, assets_cache, token_path = hf_home / "hub", hf_home / "assets", hf_home / "token"
    for directory in (hub_cache, assets_cache):
        directory.mkdir(parents=True, exist_ok=True)

    # Environment: read lazily by some code (tokens) and inherited by subprocesses.
    env = {
        "HF_ENDPOINT": endpoint,
        "HF_TOKEN": "fake",
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(assets_cache),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(token_path),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for name in _CONFLICTING_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    no_proxy = ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("NO_PROXY")]))
    monkeypatch.setenv("NO_PROXY", no_proxy)
    monkeypatch.setenv("no_proxy", no_proxy)

    # huggingface_hub.constants: values computed from the environment at import time.
    constant_values: dict[str, Any] = {
        "ENDPOINT": endpoint,
        "HUGGINGFACE_CO_URL_TEMPLATE": endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": constants.HF_URL_HOSTS | {host},
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_XET": True,  # hf_xet is installed: without this, upload_folder takes the xet pipeline
        "HF_HUB_DISABLE_IMPLICIT_TOKEN": False,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hub_cache),
        "HUGGINGFACE_HUB_CACHE": str(hub_cache),
        "HF_ASSETS_CACHE": str(assets_cache),
        "HUGGINGFACE_ASSETS_CACHE": str(assets_cache),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(token_path),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "CHECK_FOR_UPDATE_DONE_PATH": str(hf_home / ".check_for_update_done"),
        "CHECK_FOR_SKILL_UPDATE_DONE_PATH": str(hf_home / ".check_for_skill_update_done"),
        "AGENT_HARNESSES_PATH": str(hf_home / ".agent_harnesses.json"),
    }
    for name, value in constant_values.items():
        monkeypatch.setattr(constants, name, value)

    # Copies made by `from ..constants import X` at import time.
    monkeypatch.setattr(huggingface_hub.utils._cache_manager, "HF_HUB_CACHE", str(hub_cache))
    monkeypatch.setattr(huggingface_hub.utils._cache_assets, "HF_ASSETS_CACHE", str(assets_cache))
    monkeypatch.setattr(huggingface_hub.utils._git_credential, "ENDPOINT", endpoint)
    if (cli_auth := sys.modules.get("huggingface_hub.cli.auth")) is not None:  # not imported unless the CLI is used
        monkeypatch.setattr(cli_auth, "ENDPOINT", endpoint)

    # HfApi instances that captured the endpoint when they were built.
    monkeypatch.setattr(huggingface_hub.hf_api.api, "endpoint", endpoint)
    monkeypatch.setattr(huggingface_hub.hf_api.api, "_whoami_cache", {})
    monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)  # rebuilt on first use, reset at teardown

    # Fresh pooled HTTP client, so proxy settings are re-read and no connection to another server is reused.
    close_session()


@pytest.fixture
def local_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalHub]:
    """A started :class:`LocalHub` that huggingface_hub and transformers talk to by default.

    Sets ``HF_ENDPOINT``, ``HF_TOKEN=fake`` and an isolated ``HF_HOME`` under ``tmp_path``; see
    :func:`patch_hub_environment` for the import-time constants it patches.
    """
    from huggingface_hub.utils import close_session

    with LocalHub() as hub:
        patch_hub_environment(monkeypatch, hub.url, tmp_path / "hf_home")
        try:
            yield hub
        finally:
            close_session()  # drop keep-alive connections to this server before it goes away
