"""In-memory, git-like storage behind the loopback Hub server (see `hub_server.py`).

A repository is a set of branches pointing at commits; a commit is an immutable snapshot
`path -> blob id` plus its parent. Blob ids are git blob SHA-1s, because the client compares them
with its own `git_hash` of the local file to skip unchanged files (no-op commit detection).
Everything lives in memory: the repos a test writes are tiny and die with the server.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Mapping

DEFAULT_BRANCH = "main"

# What the real Hub commits when it creates a model repo; kept so listings look like the Hub's.
INITIAL_GITATTRIBUTES = (
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
)


class HubError(Exception):
    """An error the server turns into an HTTP response the client understands.

    `code` becomes the `X-Error-Code` header, which `huggingface_hub` maps to its exception
    classes (RepoNotFound, RevisionNotFound, EntryNotFound).
    """

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.commit = commit


def git_blob_id(content: bytes) -> str:
    """The git blob SHA-1 of `content`, as the Hub reports it for regular (non-LFS) files."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z")


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    files: Mapping[str, str]  # path -> blob id
    title: str
    message: str
    author: str
    date: str


@dataclass
class Repo:
    repo_id: str
    private: bool
    created_at: str
    branches: dict[str, str] = field(default_factory=dict)  # branch -> commit oid
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, revision: str) -> Commit:
        """The commit a branch name or a full commit id points at."""
        oid = self.branches.get(revision, revision)
        if oid not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")
        return self.commits[oid]

    def history(self, revision: str) -> list[Commit]:
        """Commits reachable from `revision`, newest first."""
        commit: Commit | None = self.resolve(revision)
        out = []
        while commit is not None:
            out.append(commit)
            commit = self.commits[commit.parent] if commit.parent else None
        return out


class HubStore:
    """Repos and blobs of the loopback Hub; every method is safe to call from handler threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._repos: dict[str, Repo] = {}
        self._blobs: dict[str, bytes] = {}

    # -- reading -----------------------------------------------------------------------------

    def repo(self, repo_id: str) -> Repo:
        with self._lock:
            if repo_id not in self._repos:
                raise HubError(404, f"Repository not found: {repo_id}", code="RepoNotFound")
            return self._repos[repo_id]

    def blob(self, blob_id: str) -> bytes:
        with self._lock:
            return self._blobs[blob_id]

    def read_file(self, repo_id: str, revision: str, path: str) -> bytes:
        """Content of `path` at `revision` (a convenience for tests)."""
        commit = self.repo(repo_id).resolve(revision)
        if path not in commit.files:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound", commit=commit.oid)
        return self.blob(commit.files[path])

    # -- writing -----------------------------------------------------------------------------

    def create_repo(self, repo_id: str, private: bool, author: str) -> Repo:
        with self._lock:
            if repo_id in self._repos:
                raise HubError(409, f"You already created this model repo: {repo_id}")
            repo = Repo(repo_id=repo_id, private=private, created_at=_now())
            self._repos[repo_id] = repo
        initial = {".gitattributes": INITIAL_GITATTRIBUTES}
        self.commit(repo_id, DEFAULT_BRANCH, initial, [], title="initial commit", message="", author=author)
        return repo

    def create_branch(self, repo_id: str, branch: str, starting_point: str | None) -> None:
        repo = self.repo(repo_id)
        with self._lock:
            if branch in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{branch}")
            start = repo.resolve(starting_point or DEFAULT_BRANCH)
            repo.branches[branch] = start.oid

    def commit(
        self,
        repo_id: str,
        branch: str,
        additions: Mapping[str, bytes],
        deletions: list[str],
        title: str,
        message: str,
        author: str,
        parent_commit: str | None = None,
    ) -> Commit:
        """Apply deletions (a path ending in "/" removes a folder) then additions on top of `branch`."""
        repo = self.repo(repo_id)
        with self._lock:
            head = repo.commits[repo.branches[branch]] if branch in repo.branches else None
            if head is None and repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", code="RevisionNotFound")
            if parent_commit is not None and (head is None or head.oid != parent_commit):
                raise HubError(412, f"A commit has happened since {parent_commit}: refusing to overwrite it")
            files = dict(head.files) if head else {}
            for path in deletions:
                doomed = [p for p in files if p == path or (path.endswith("/") and p.startswith(path))]
                if not doomed:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                for p in doomed:
                    del files[p]
            for path, content in additions.items():
                blob_id = git_blob_id(content)
                self._blobs[blob_id] = content
                files[path] = blob_id
            date = _now()
            seed = f"{head.oid if head else ''}\n{sorted(files.items())}\n{title}\n{date}\n{len(repo.commits)}"
            oid = hashlib.sha1(seed.encode()).hexdigest()
            commit = Commit(oid, head.oid if head else None, MappingProxyType(files), title, message, author, date)
            repo.commits[oid] = commit
            repo.branches[branch] = oid
            return commit
