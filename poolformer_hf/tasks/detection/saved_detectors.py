"""A torchvision detector on disk: `model.safetensors` (its state dict) and `detector_config.json` (the
`DetectorConfig` that rebuilds it). torchvision's detectors are not PreTrainedModels; this is their save_pretrained
and from_pretrained.

`save_detector` writes the folder in a hidden staging sibling and swaps it into place whole (`hub.output_folders`),
so a reader finds the previous detector or the new one, never a mix; it replaces only a folder that holds nothing but
a saved detector's files. A training run saves its detector as `<output_dir>/detector` (Trainer's checkpoints and
logs live beside it); `load_detector` takes that folder, or the run's folder.
"""

import json
import os
import secrets
from pathlib import Path

import torch

from ...files import follow_umask, write_text_atomically
from ...hub.output_folders import MARKER_NAME, write_staged
from .torchvision_detectors import DetectorConfig, build_torchvision_detector

DETECTOR_CONFIG_NAME = "detector_config.json"
WEIGHTS_NAME = "model.safetensors"
DETECTOR_FOLDER = "detector"  # a training run's detector, inside its --output_dir
DETECTOR_FILES = frozenset({DETECTOR_CONFIG_NAME, WEIGHTS_NAME})
# What a folder `save_detector` wrote may hold: the two files and output_folders' marker listing them.
SAVED_FOLDER_FILES = DETECTOR_FILES | {MARKER_NAME}


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


def find_detector_folder(path: str | os.PathLike) -> Path | None:
    """`path` when it is a saved detector, its `detector/` when it is a training run's folder, else None."""
    for candidate in (Path(path), Path(path) / DETECTOR_FOLDER):
        if (candidate / DETECTOR_CONFIG_NAME).is_file():
            return candidate
    return None


def load_detector(folder: str | os.PathLike, device: str | torch.device = "cpu"):
    """The detector saved in `folder` (or in a run folder's `detector/`), in eval mode on `device`."""
    from safetensors.torch import load_file

    found = find_detector_folder(folder)
    if found is None:
        raise ValueError(f"{folder} is not a saved detector: it has no {DETECTOR_CONFIG_NAME} (nor "
                         f"{DETECTOR_FOLDER}/{DETECTOR_CONFIG_NAME})")
    config_file = found / DETECTOR_CONFIG_NAME
    config = DetectorConfig.from_dict(json.loads(config_file.read_text(encoding="utf-8")), source=str(config_file))
    model = build_torchvision_detector(config)
    model.load_state_dict(load_file(found / WEIGHTS_NAME))
    return model.to(device).eval()
