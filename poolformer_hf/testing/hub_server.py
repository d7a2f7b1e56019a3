"""A loopback stand-in for the Hugging Face Hub HTTP API, for tests (what moto is for AWS).

`LoopbackHub` serves, on 127.0.0.1 and a free port, exactly the routes that `huggingface_hub`'s
`create_repo`, `create_branch`, `create_commit` / `upload_folder`, `model_info` / `repo_info`,
`list_repo_files` / `list_repo_tree`, `list_repo_refs`, `list_repo_commits`, `hf_hub_download` and
`snapshot_download` call, so that the real client (and `transformers`' `from_pretrained` /
`push_to_hub`) can be driven end to end without internet::

    with LoopbackHub() as hub:
        env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_TOKEN": hub.token}
        subprocess.run([sys.executable, "client.py"], env=env)

huggingface_hub reads HF_ENDPOINT when it is imported: a process that imported it already must
also patch `huggingface_hub.constants.ENDPOINT` (see tests/hub_fixtures.py).

Uploads: the client asks `preupload` how to send each file and sends "regular" files inline
(base64) in the commit, "lfs" files through LFS or Xet storage. This server answers "regular" for
every file, so neither the LFS batch API nor Xet is needed, whether `hf_xet` is installed or not.
It never sends `X-Xet-Hash` headers either, so downloads take the plain HTTP path too.

Only the standard library is used. Not implemented (answered 400/404): pull requests, tags,
dataset and Space repos, LFS / Xet transfers, pagination (every listing fits one page).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .hub_store import DEFAULT_BRANCH, Commit, HubError, HubStore, Repo

DEFAULT_TOKEN = "hf_loopback_test_token"
DEFAULT_USER = "loopback-user"

_REPO = r"/api/models/(?P<repo>[^/]+/[^/]+)"
# (route name, HTTP methods, pattern on the raw, still percent-encoded, path)
_ROUTES = [
    ("create_repo", ("POST",), r"/api/repos/create"),
    ("validate_yaml", ("POST",), r"/api/validate-yaml"),
    ("agent_harnesses", ("GET",), r"/api/agent-harnesses"),
    ("preupload", ("POST",), _REPO + r"/preupload/(?P<rev>[^/]+)"),
    ("commit", ("POST",), _REPO + r"/commit/(?P<rev>[^/]+)"),
    ("create_branch", ("POST",), _REPO + r"/branch/(?P<rev>[^/]+)"),
    ("tree", ("GET",), _REPO + r"/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?"),
    ("refs", ("GET",), _REPO + r"/refs"),
    ("commits", ("GET",), _REPO + r"/commits/(?P<rev>[^/]+)"),
    ("model_info", ("GET",), _REPO + r"(?:/revision/(?P<rev>[^/]+))?"),
    ("resolve", ("GET", "HEAD"), r"/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)"),
]
_COMPILED = [(name, methods, re.compile(pattern + r"/?")) for name, methods, pattern in _ROUTES]


@dataclass
class RecordedRequest:
    method: str
    route: str | None  # None when no route matched
    path: str


@dataclass
class _Failure:
    status: int  # for kind "status"
    remaining: int | None  # None: until cleared
    kind: str = "status"  # "status": answer `status`; "drop": close the connection unanswered; "stall": never answer


class LoopbackHub:
    """Threaded HTTP server speaking the Hub API on 127.0.0.1; start()/stop() or use as a context manager.

    One user, `DEFAULT_USER`, authenticated by `token`. Writes need the token; private repos are
    invisible (404 RepoNotFound, as on the Hub) without it.

    `fail(route, status)` makes the named route (see `_ROUTES`) answer `status` to simulate an outage;
    `drop(route)` closes the connection after reading the request, without an answer (a connection lost mid-request);
    `stall(route)` reads the request and never answers (an endpoint that accepts TCP and hangs) until `stop()`;
    `requests` records every request received, to assert what a client did or did not send.
    """

    def __init__(self, token: str = DEFAULT_TOKEN, user: str = DEFAULT_USER):
        self.token = token
        self.user = user
        self.store = HubStore()
        self.requests: list[RecordedRequest] = []
        self._failures: dict[str, _Failure] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()  # releases stalled handlers
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        if self._httpd is None:
            raise RuntimeError("LoopbackHub is not running: call start() first")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LoopbackHub":
        self._stopping.clear()
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.hub = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="loopback-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket; later requests get "connection refused"."""
        if self._httpd is None:
            return
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self._httpd = None

    def __enter__(self) -> "LoopbackHub":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- test controls -------------------------------------------------------------------------

    def fail(self, route: str, status: int = 500, times: int | None = None) -> None:
        """Answer `status` on `route` for the next `times` requests (all of them when None)."""
        self._inject(route, _Failure(status, times))

    def drop(self, route: str, times: int | None = None) -> None:
        """Close the connection of the next `times` requests to `route` (all when None) without answering."""
        self._inject(route, _Failure(0, times, kind="drop"))

    def stall(self, route: str, times: int | None = None) -> None:
        """Read the next `times` requests to `route` (all when None) and never answer them (until stop())."""
        self._inject(route, _Failure(0, times, kind="stall"))

    def _inject(self, route: str, failure: _Failure) -> None:
        if route not in {name for name, _, _ in _ROUTES}:
            raise ValueError(f"unknown route {route!r}; expected one of {[name for name, _, _ in _ROUTES]}")
        with self._lock:
            self._failures[route] = failure

    def requests_to(self, route: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.route == route]

    def commit_count(self, repo_id: str, revision: str = DEFAULT_BRANCH) -> int:
        return len(self.store.repo(repo_id).history(revision))

    def _take_failure(self, route: str) -> _Failure | None:
        with self._lock:
            failure = self._failures.get(route)
            if failure is None:
                return None
            if failure.remaining is not None:
                failure.remaining -= 1
                if failure.remaining <= 0:
                    del self._failures[route]
            return failure


def _route(path: str) -> tuple[str | None, dict[str, str], tuple[str, ...]]:
    for name, methods, pattern in _COMPILED:
        match = pattern.fullmatch(path)
        if match:
            params = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
            return name, params, methods
    return None, {}, ()


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, so stop() leaves no idle keep-alive connection
    # through which a client could still reach a "stopped" server.
    protocol_version = "HTTP/1.0"
    server_version = "LoopbackHub/1.0"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    @property
    def hub(self) -> LoopbackHub:
        return self.server.hub  # type: ignore[attr-defined]

    def do_GET(self):
        self._dispatch()

    def do_HEAD(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    # -- plumbing ----------------------------------------------------------------------------

    def _dispatch(self) -> None:
        url = urlsplit(self.path)
        route, params, methods = _route(url.path)
        self.hub.requests.append(RecordedRequest(self.command, route, url.path))
        self.query = parse_qs(url.query)
        try:
            self.body = self._read_body()
            if route is None or self.command not in methods:
                raise HubError(404, f"Not implemented by the loopback Hub: {self.command} {url.path}")
            failure = self.hub._take_failure(route)
            if failure is not None and failure.kind == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)  # the client sees the connection close, unanswered
                return
            if failure is not None and failure.kind == "stall":
                self.hub._stopping.wait()
                self.close_connection = True
                return
            if failure is not None:
                raise HubError(failure.status, f"Injected failure on route '{route}'")
            getattr(self, f"_{route}")(**params)
        except HubError as err:
            self._send_error(err)
        except Exception as exc:  # a malformed request or a server bug: answer instead of dropping the connection
            self._send_error(HubError(500, f"Loopback Hub could not handle {self.command} {url.path}: {exc!r}"))

    def _read_body(self) -> bytes:
        if "Content-Length" not in self.headers:
            if self.headers.get("Transfer-Encoding"):
                raise HubError(411, "The loopback Hub needs a Content-Length (no chunked uploads)")
            return b""
        return self.rfile.read(int(self.headers["Content-Length"]))

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None, ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, payload, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(payload).encode(), headers)

    def _send_error(self, err: HubError) -> None:
        headers = {"X-Error-Message": err.message}
        if err.code:
            headers["X-Error-Code"] = err.code
        if err.commit:
            headers["X-Repo-Commit"] = err.commit
        self._send_json({"error": err.message}, err.status, headers)

    def _json_body(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except ValueError as exc:
            raise HubError(400, f"Request body is not JSON: {exc}") from exc

    # -- auth --------------------------------------------------------------------------------

    def _authenticated(self) -> bool:
        return self.headers.get("Authorization", "") == f"Bearer {self.hub.token}"

    def _require_token(self) -> None:
        if not self._authenticated():
            raise HubError(401, "Invalid credentials in Authorization header")

    def _readable_repo(self, repo_id: str) -> Repo:
        repo = self.hub.store.repo(repo_id)
        if repo.private and not self._authenticated():
            raise HubError(404, f"Repository not found: {repo_id}", code="RepoNotFound")
        return repo

    def _writable_repo(self, repo_id: str) -> Repo:
        self._require_token()
        return self.hub.store.repo(repo_id)

    def _endpoint(self) -> str:
        return self.hub.endpoint

    # -- routes ------------------------------------------------------------------------------

    def _agent_harnesses(self) -> None:
        # Registry the client fetches for its user-agent telemetry: an empty one detects no agent.
        self._send_json({"standardEnvVars": [], "harnesses": {}})

    def _create_repo(self) -> None:
        self._require_token()
        payload = self._json_body()
        if payload.get("type", "model") != "model":
            raise HubError(400, "The loopback Hub only implements model repos")
        repo_id = f"{payload.get('organization') or self.hub.user}/{payload['name']}"
        url = f"{self._endpoint()}/{repo_id}"
        private = payload.get("visibility", "private" if payload.get("private") else "public") == "private"
        try:
            self.hub.store.create_repo(repo_id, private=private, author=self.hub.user)
        except HubError as err:
            # The Hub's 409 carries the repo url: `create_repo(exist_ok=True)` reads it.
            self._send_json({"error": err.message, "url": url}, err.status, {"X-Error-Message": err.message})
            return
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _validate_yaml(self) -> None:
        # The Hub checks README.md metadata against its schemas; here only that the front matter is closed.
        content = self._json_body().get("content", "")
        if content.startswith("---") and "\n---" not in content[3:]:
            self._send_json({"errors": [{"message": "YAML front matter is not closed by '---'"}]}, status=400)
            return
        self._send_json({"errors": [], "warnings": []})

    def _create_branch(self, repo: str, rev: str) -> None:
        self._writable_repo(repo)
        self.hub.store.create_branch(repo, rev, self._json_body().get("startingPoint"))
        self._send_json({})

    def _preupload(self, repo: str, rev: str) -> None:
        self._reject_pull_requests()
        head = self._writable_repo(repo).resolve(rev)
        files = [
            # "regular" for every file: the content then travels inline in the commit payload.
            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": head.files.get(f["path"])}
            for f in self._json_body().get("files", [])
        ]
        self._send_json({"files": files, "commitOid": head.oid})

    def _commit(self, repo: str, rev: str) -> None:
        self._reject_pull_requests()
        self._writable_repo(repo)
        header, additions, deletions = {}, {}, []
        for line in self.body.splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                header = value
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"Unsupported encoding {value.get('encoding')!r} for {value['path']}")
                additions[value["path"]] = base64.b64decode(value["content"])
            elif key in ("deletedFile", "deletedFolder"):
                path = value["path"]
                deletions.append(path.rstrip("/") + "/" if key == "deletedFolder" else path)
            else:
                raise HubError(400, f"Commit operation {key!r} is not implemented by the loopback Hub")
        commit = self.hub.store.commit(
            repo,
            rev,
            additions,
            deletions,
            title=header.get("summary", ""),
            message=header.get("description", ""),
            author=self.hub.user,
            parent_commit=header.get("parentCommit"),
        )
        self._send_json(
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": f"{self._endpoint()}/{repo}/commit/{commit.oid}",
                "pullRequestUrl": None,
            }
        )

    def _reject_pull_requests(self) -> None:
        if self.query.get("create_pr", ["0"])[0] not in ("0", "false", ""):
            raise HubError(400, "Pull requests are not implemented by the loopback Hub")

    def _model_info(self, repo: str, rev: str = DEFAULT_BRANCH) -> None:
        record = self._readable_repo(repo)
        commit = record.resolve(rev)
        with_blobs = self.query.get("blobs", ["false"])[0].lower() in ("1", "true")
        siblings = []
        for path, blob_id in sorted(commit.files.items()):
            sibling = {"rfilename": path}
            if with_blobs:
                sibling.update(size=len(self.hub.store.blob(blob_id)), blobId=blob_id)
            siblings.append(sibling)
        self._send_json(
            {
                "_id": repo,
                "id": repo,
                "modelId": repo,
                "author": repo.split("/")[0],
                "sha": commit.oid,
                "lastModified": commit.date,
                "createdAt": record.created_at,
                "private": record.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": siblings,
            }
        )

    def _tree(self, repo: str, rev: str, path: str = "") -> None:
        commit = self._readable_repo(repo).resolve(rev)
        recursive = self.query.get("recursive", ["false"])[0].lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        entries = _tree_entries(commit, prefix, recursive, self.hub.store)
        if prefix and not entries:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound", commit=commit.oid)
        self._send_json(entries)

    def _refs(self, repo: str) -> None:
        record = self._readable_repo(repo)
        branches = [
            {"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid}
            for name, oid in sorted(record.branches.items())
        ]
        payload = {"branches": branches, "converts": [], "tags": []}
        if "include_prs" in self.query:
            payload["pullRequests"] = []
        self._send_json(payload)

    def _commits(self, repo: str, rev: str) -> None:
        history = self._readable_repo(repo).history(rev)
        self._send_json(
            [
                {"id": c.oid, "title": c.title, "message": c.message, "date": c.date, "authors": [{"user": c.author}]}
                for c in history
            ]
        )

    def _resolve(self, repo: str, rev: str, path: str) -> None:
        commit = self._readable_repo(repo).resolve(rev)
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound", commit=commit.oid)
        blob_id = commit.files[path]
        content = self.hub.store.blob(blob_id)
        headers = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob_id}"', "Accept-Ranges": "bytes"}
        status = 200
        byte_range = _parse_range(self.headers.get("Range"), len(content))
        if byte_range is not None:
            start, end = byte_range
            headers["Content-Range"] = f"bytes {start}-{end}/{len(content)}"
            content, status = content[start : end + 1], 206
        self._send(status, content, headers, ctype="application/octet-stream")


def _tree_entries(commit: Commit, prefix: str, recursive: bool, store: HubStore) -> list[dict]:
    """Files and folders under `prefix`, as the Hub's tree API lists them (folders first)."""
    folders: dict[str, list[str]] = {}
    files = []
    for path, blob_id in sorted(commit.files.items()):
        if not path.startswith(prefix):
            continue
        parts = path[len(prefix) :].split("/")
        for depth in range(1, len(parts) if recursive else min(2, len(parts))):
            folders.setdefault(prefix + "/".join(parts[:depth]), []).append(blob_id)
        if recursive or len(parts) == 1:
            files.append({"type": "file", "oid": blob_id, "size": len(store.blob(blob_id)), "path": path})
    # A folder's id only has to change when its content does; git's real tree hash is not needed.
    tree_ids = {p: hashlib.sha1("".join(sorted(ids)).encode()).hexdigest() for p, ids in folders.items()}
    return [{"type": "directory", "oid": tree_ids[p], "size": 0, "path": p} for p in sorted(folders)] + files


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=a-b` / `bytes=a-` / `bytes=-n` range, or None for the whole file."""
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", (header or "").strip())
    if not match or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if first == "":
        start, end = max(size - int(last), 0), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise HubError(416, f"Range {header} not satisfiable for {size} bytes")
    return start, end
