"""A torchvision detector on disk: `model.safetensors` (its state dict) and `detector_config.json` (the
`DetectorConfig` that rebuilds it). torchvision's detectors are not PreTrainedModels; this is their save_pretrained
and from_pretrained.

`save_detector` writes the folder in a hidden staging sibling and swaps it into place whole (`hub.output_folders`),
so a reader finds the previous detector or the new one, never a mix; it replaces only a folder that holds nothing but
a saved detector's files. A training run saves its detector as `<output_dir>/detector` (Trainer's checkpoints and
logs live beside it), and after evaluating it adds `eval_results.json` (the run's metrics of these weights, which the
Hub card quotes); `load_detector` takes that folder, the run's folder, or a Hub repo id.

Loading runs no code from the folder or the repo: `detector_config.json` is data naming one of our builders
(`TORCHVISION_DETECTORS`; any other name is refused), and only `model.safetensors` is read (from the Hub only those two
files are downloaded).
"""

import json
import os
import re
import secrets
from pathlib import Path

import torch

from ...files import follow_umask, write_text_atomically
from ...hub.output_folders import MARKER_NAME, write_staged
from .torchvision_detectors import DetectorConfig, build_torchvision_detector

DETECTOR_CONFIG_NAME = "detector_config.json"
WEIGHTS_NAME = "model.safetensors"
RESULTS_NAME = "eval_results.json"  # the run's evaluation of the saved weights (`write_detector_results`)
DETECTOR_FOLDER = "detector"  # a training run's detector, inside its --output_dir
DETECTOR_FILES = frozenset({DETECTOR_CONFIG_NAME, WEIGHTS_NAME})
# What a folder `save_detector` wrote may hold: the two files, output_folders' marker listing them and the run's
# results. A new save drops the results: they were measured on the weights it replaces.
SAVED_FOLDER_FILES = DETECTOR_FILES | {MARKER_NAME, RESULTS_NAME}
# ORG/NAME as the Hub spells repo ids (huggingface_hub's own check is stricter; it runs before any download).
_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


def write_detector_files(model, folder: str | os.PathLike, state_dict: dict | None = None) -> None:
    """Write the detector's two files into `folder` (made if missing), each replaced atomically, the config last.
    Trainer's checkpoints are written so (its own files join them); `save_detector` for a folder of its own."""
    from safetensors.torch import save_file

    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    state = model.state_dict() if state_dict is None else state_dict
    weights = os.path.join(folder, WEIGHTS_NAME)
    temporary = os.path.join(folder, f".{WEIGHTS_NAME}.{secrets.token_hex(6)}.tmp")
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, temporary, metadata={"format": "pt"})
        os.replace(temporary, weights)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise
    follow_umask(weights)  # safetensors makes its files private
    write_text_atomically(os.path.join(folder, DETECTOR_CONFIG_NAME),
                          json.dumps(model.detector_config.to_dict(), indent=2) + "\n")


def save_detector(model, folder: str | os.PathLike) -> str:
    """Save `model` (a `build_torchvision_detector` model) as the folder `folder`, atomically; returns its path.
    Refused (ValueError, before anything is written) where `folder` is a symlink, not a folder, or holds other files
    than a saved detector's; a failed write (OSError) leaves the previous folder as it was."""
    folder = os.path.abspath(os.fspath(folder))
    if os.path.islink(folder):
        raise ValueError(f"{folder} is a symlink: refusing to save a detector through it; name the real folder")
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise ValueError(f"{folder} exists and is not a folder: choose a folder path for the detector")
    if os.path.isdir(folder):
        others = sorted(set(os.listdir(folder)) - SAVED_FOLDER_FILES)
        if others:
            raise ValueError(f"{folder} holds files that a saved detector does not ({', '.join(others[:5])}); choose "
                             "another folder, or move them away")
    write_staged(folder, lambda staging: write_detector_files(model, staging), step="torchvision detector",
                 detector=model.detector_config.detector)
    return folder


def write_detector_results(folder: str | os.PathLike, metrics: dict, dataset: str, dataset_id: str,
                           images: int) -> None:
    """Record in a saved detector's folder what its run measured on these weights: the `eval_*` metrics and
    `reloaded_map` of `metrics`, with the dataset (a description and an id) and how many validation images it had."""
    measured = {k: float(v) for k, v in metrics.items() if k.startswith("eval_") or k == "reloaded_map"}
    record = {"dataset": dataset, "dataset_id": dataset_id, "validation_images": int(images), "metrics": measured}
    write_text_atomically(os.path.join(os.fspath(folder), RESULTS_NAME), json.dumps(record, indent=2) + "\n")


def read_detector_results(folder: str | os.PathLike) -> dict | None:
    """What `write_detector_results` recorded in `folder`, or None."""
    path = Path(folder) / RESULTS_NAME
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def find_detector_folder(path: str | os.PathLike) -> Path | None:
    """`path` when it is a saved detector, its `detector/` when it is a training run's folder, else None."""
    for candidate in (Path(path), Path(path) / DETECTOR_FOLDER):
        if (candidate / DETECTOR_CONFIG_NAME).is_file():
            return candidate
    return None


def load_detector(folder: str | os.PathLike, device: str | torch.device = "cpu", **hub):
    """The detector saved in `folder` (or in a run folder's `detector/`), in eval mode on `device`. `folder` may be
    a Hub repo id (ORG/NAME, not a local path): its two files are downloaded (`download_detector`, which takes
    `hub`'s keywords: revision, cache_dir, token, timeout, request_timeout) and read from huggingface_hub's cache."""
    from safetensors.torch import load_file

    found = find_detector_folder(folder)
    if found is None and not os.path.exists(folder) and _REPO_ID.match(os.fspath(folder)):
        found = download_detector(os.fspath(folder), **hub)
    if found is None:
        raise ValueError(f"{folder} is not a saved detector: it has no {DETECTOR_CONFIG_NAME} (nor "
                         f"{DETECTOR_FOLDER}/{DETECTOR_CONFIG_NAME})")
    config_file = found / DETECTOR_CONFIG_NAME
    config = DetectorConfig.from_dict(json.loads(config_file.read_text(encoding="utf-8")), source=str(config_file))
    if not (found / WEIGHTS_NAME).is_file():
        raise ValueError(f"{found} has no {WEIGHTS_NAME}: a detector's weights are read from safetensors only")
    model = build_torchvision_detector(config)
    model.load_state_dict(load_file(found / WEIGHTS_NAME))
    return model.to(device).eval()


def download_detector(repo_id: str, revision: str | None = None, cache_dir: str | None = None,
                      token: str | None = None, timeout: float | None = None,
                      request_timeout: float | None = None) -> Path:
    """The folder, in huggingface_hub's cache, holding `repo_id`'s detector_config.json and model.safetensors (only
    those are downloaded), each request bounded by `request_timeout` s and the whole by `timeout` s, transient
    failures retried (`hub.publish.run_bounded`; DownloadError when it gives up). A repo without a detector config
    is refused (ValueError)."""
    from huggingface_hub import snapshot_download

    from ...hub.publish import DEFAULT_REQUEST_TIMEOUT, run_bounded

    folder = run_bounded(
        f"downloading the detector {repo_id}",
        lambda: snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, token=token,
                                  allow_patterns=sorted(DETECTOR_FILES)),
        timeout=timeout, request_timeout=request_timeout or DEFAULT_REQUEST_TIMEOUT,
    )
    if not (Path(folder) / DETECTOR_CONFIG_NAME).is_file():
        raise ValueError(f"Hub repo {repo_id} is not a saved detector: it has no {DETECTOR_CONFIG_NAME} (a "
                         "transformers model loads with from_pretrained instead)")
    return Path(folder)
