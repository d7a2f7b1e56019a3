"""Test helpers shipped with the package: a loopback stand-in for the Hugging Face Hub API."""

from .hub_server import DEFAULT_TOKEN, DEFAULT_USER, LoopbackHub
from .hub_store import HubError, HubStore, git_blob_id

__all__ = ["DEFAULT_TOKEN", "DEFAULT_USER", "HubError", "HubStore", "LoopbackHub", "git_blob_id"]
