"""Publishing a saved model folder to the Hugging Face Hub (the logic behind `scripts/push_to_hub.py`).

`validate_model_folder` (in `hub_folder`) refuses, before anything leaves the machine, a folder that would not load
or that reaches outside itself, without running the folder's code unless `trust_remote_code=True`.

`push_folder_to_hub` then uploads, in one commit, what a user needs and nothing else: config, safetensors weights,
processor config, the code files `auto_map` needs, the Trainer's results files and a README.md (the folder's own, or
a generated model card). Pickle files never leave. The folder is only read. The endpoint and token are
huggingface_hub's (HF_ENDPOINT, HF_TOKEN, or the stored login); an unchanged folder pushed again makes no commit
(the client skips files whose git blob id matches the remote one).

Every network step is bounded. huggingface_hub>=1.0 sends its API calls through one shared httpx client that has no
timeout (HF_HUB_ETAG_TIMEOUT / HF_HUB_DOWNLOAD_TIMEOUT only bound downloads), so for the push the client is built
with a per-request timeout (`set_client_factory`, restored afterwards), the whole push has an optional deadline, and
a step that fails transiently (503, a dropped connection) is retried a few times with backoff. Retrying a commit is
safe: if the lost attempt did land, the retry finds every file unchanged and commits nothing.

Folders that are not transformers models (the torchvision detectors) build their own file list and commit it with
`commit_to_hub`; their downloads go through `run_bounded`, under the same timeouts and retries.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .folder_checks import FolderPlan, load_model_folder, validate_model_folder

__all__ = ["DownloadError", "FolderPlan", "HubError", "PushError", "PushResult", "commit_to_hub", "load_model_folder",
           "push_folder_to_hub", "run_bounded", "validate_model_folder"]

DEFAULT_REQUEST_TIMEOUT = 10.0  # seconds without progress on one request (huggingface_hub's own default for downloads)
RETRIES = 3
_RETRY_STATUSES = (408, 429, 500, 502, 503, 504)


class HubError(RuntimeError):
    """A Hub step failed or timed out; the message names the step."""


class PushError(HubError):
    """Uploading failed; the message names the step (repository, branch, commit) that failed."""


class DownloadError(HubError):
    """Downloading failed; the message names what was being downloaded."""


@dataclass(frozen=True)
class PushResult:
    repo_id: str
    revision: str
    commit_oid: str
    commit_url: str
    created_commit: bool  # False when the remote already had every file unchanged
    files: tuple[str, ...]  # what the repo now holds from this folder (changed or not)
    skipped: tuple[str, ...]


def http_library():
    """The HTTP client library huggingface_hub sends through: `httpx2` from huggingface_hub 2, `httpx` before."""
    from huggingface_hub.utils import _http

    library = getattr(_http, "httpx2", None) or getattr(_http, "httpx", None)
    if library is None:
        raise ImportError("huggingface_hub's HTTP client library (httpx2 or httpx) was not found")
    return library


@contextlib.contextmanager
def _client_timeout(seconds: float):
    """huggingface_hub's shared HTTP client, built with a timeout for the duration (its default has none)."""
    httpx2 = http_library()
    from huggingface_hub import set_client_factory
    from huggingface_hub.utils import _http

    # The user's own factory (proxies, certificates) is kept; huggingface_hub has no public getter for it.
    previous = getattr(_http, "_GLOBAL_CLIENT_FACTORY", _http.default_client_factory)

    def bounded_client():
        client = previous()
        client.timeout = httpx2.Timeout(seconds)
        return client

    set_client_factory(bounded_client)
    try:
        yield
    finally:
        set_client_factory(previous)


def _transient(error: Exception) -> bool:
    httpx2 = http_library()
    from huggingface_hub.errors import HfHubHTTPError

    if isinstance(error, HfHubHTTPError):
        return error.response is not None and error.response.status_code in _RETRY_STATUSES
    return isinstance(error, (httpx2.NetworkError, httpx2.RemoteProtocolError)) and not isinstance(
        error, httpx2.TimeoutException)


class _Steps:
    """Runs the push's network steps under one deadline, retrying transient failures, naming the step that failed."""

    def __init__(self, endpoint: str, timeout: float | None, request_timeout: float, action: str = "push to",
                 error: type[HubError] = PushError):
        self.endpoint, self.action, self.error = endpoint, action, error
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.timeout = timeout
        self.request_timeout = request_timeout

    def run(self, step: str, call):
        httpx2 = http_library()

        for attempt in range(RETRIES + 1):
            try:
                return self._within_deadline(step, call)
            except HubError:
                raise
            except httpx2.TimeoutException as error:
                raise self.error(f"{self.action} {self.endpoint} timed out while {step}: no answer within "
                                 f"{self.request_timeout:g} s ({type(error).__name__})") from error
            except Exception as error:  # noqa: BLE001 - HTTP errors, connection errors, the client's ValueErrors
                if attempt == RETRIES or not _transient(error):
                    tries = f" (after {attempt + 1} attempts)" if attempt else ""
                    raise self.error(f"{self.action} {self.endpoint} failed while {step}{tries}: {error}") from error
                backoff, left = 0.5 * 2**attempt, self._left()
                time.sleep(backoff if left is None else min(backoff, left))

    def _left(self) -> float | None:
        return None if self.deadline is None else max(self.deadline - time.monotonic(), 0.0)

    def _within_deadline(self, step: str, call):
        left = self._left()
        if left is None:
            return call()
        outcome: dict = {}

        def target():
            try:
                outcome["value"] = call()
            except BaseException as error:  # noqa: BLE001 - handed to the caller's thread
                outcome["error"] = error

        # The step runs in a worker so that the deadline holds even across the client's own retries and sleeps;
        # a worker still waiting when it passes ends at its request timeout.
        worker = threading.Thread(target=target, name=f"push: {step}", daemon=True)
        worker.start()
        worker.join(left)
        if worker.is_alive():
            note = " (if this was the commit, it may still complete on the Hub)" if self.error is PushError else ""
            raise self.error(f"{self.action} {self.endpoint} timed out while {step}: the --timeout of {self.timeout:g} s "
                             f"passed{note}")
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]


def push_folder_to_hub(
    model_dir: str | Path,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    eval_dataset: str | None = None,
    trust_remote_code: bool = False,
    timeout: float | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> PushResult:
    """Validate `model_dir`, then publish it to `repo_id` (on branch `revision`, created if needed) in one commit.

    `timeout` bounds the whole upload (seconds; None: each request is still bounded by `request_timeout`).
    Raises ValueError (nothing uploaded) for a folder that would not load, PushError when the Hub fails or times out.
    """
    from huggingface_hub import CommitOperationAdd

    from .model_card import folder_facts, render_card

    plan = validate_model_folder(model_dir, trust_remote_code=trust_remote_code)
    operations = [
        # The resolved path: a symlink validated as pointing inside the folder is read there, not followed again.
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=str((plan.model_dir / name).resolve()))
        for name in plan.files
    ]
    if not plan.has_readme:
        card = render_card(folder_facts(plan.model_dir, repo_id, plan.model, eval_dataset=eval_dataset))
        # Uploaded from memory: the folder itself is never written to.
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card.encode()))
    return commit_to_hub(operations, repo_id, folder_name=plan.model_dir.name, skipped=plan.skipped, private=private,
                         revision=revision, commit_message=commit_message, token=token, timeout=timeout,
                         request_timeout=request_timeout)


def commit_to_hub(
    operations: list,
    repo_id: str,
    *,
    folder_name: str,
    skipped: tuple[str, ...] = (),
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> PushResult:
    """Create `repo_id` (and branch `revision`) where missing and commit `operations` (huggingface_hub's
    `CommitOperationAdd`s) in one commit, each step bounded and retried as the module says. Raises PushError."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    branch = revision or "main"
    steps = _Steps(api.endpoint, timeout, request_timeout)
    with _client_timeout(request_timeout):
        steps.run(f"creating repository {repo_id}", lambda: api.create_repo(repo_id, private=private, exist_ok=True))
        if branch != "main":
            steps.run(f"creating branch {branch!r} of {repo_id}",
                      lambda: api.create_branch(repo_id, branch=branch, exist_ok=True))
        head_before = steps.run(f"reading the head of {repo_id}@{branch}",
                                lambda: api.repo_info(repo_id, revision=branch).sha)
        info = steps.run(
            f"uploading {len(operations)} files to {repo_id}@{branch}",
            lambda: api.create_commit(
                repo_id,
                operations=operations,
                commit_message=commit_message or f"Upload {folder_name} with poolformer_hf",
                revision=branch,
            ),
        )
    return PushResult(
        repo_id=repo_id,
        revision=branch,
        commit_oid=info.oid,
        commit_url=info.commit_url,
        created_commit=info.oid != head_before,
        files=tuple(op.path_in_repo for op in operations),
        skipped=tuple(skipped),
    )


def run_bounded(step: str, call, *, timeout: float | None = None,
                request_timeout: float = DEFAULT_REQUEST_TIMEOUT):
    """`call()` (a download: `snapshot_download`, `hf_hub_download`) under the push's bounds: each request times out
    after `request_timeout` s, the whole call after `timeout` s (None: no overall limit), and a transient failure is
    retried with backoff. Raises DownloadError naming `step`.

    huggingface_hub reports a Hub it could not reach as LocalEntryNotFoundError (nothing cached either); the Hub's
    own answer (a 503, a dropped connection, a timeout) is its cause, and that is what decides whether to retry."""
    from huggingface_hub import constants
    from huggingface_hub.errors import LocalEntryNotFoundError

    def answer():
        try:
            return call()
        except LocalEntryNotFoundError as error:
            if error.__cause__ is None:
                raise
            raise error.__cause__ from error

    steps = _Steps(constants.ENDPOINT, timeout, request_timeout, action="download from", error=DownloadError)
    with _client_timeout(request_timeout):
        return steps.run(step, answer)
