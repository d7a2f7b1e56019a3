"""Publishing a saved torchvision detector to the Hugging Face Hub; `saved_detectors.load_detector` loads it back
from the repo id.

A detector folder is not a transformers model folder, so `hub.publish.validate_model_folder` does not apply: the
folder is checked by loading it (`load_detector`: the config must name one of our builders and the safetensors must
fit it), then `hub.publish.commit_to_hub` uploads, in one commit under its timeouts and retries, the two files, the
run's `eval_results.json` where there is one, and a README.md: the folder's own, or the card `detector_card` writes
from the folder (uploaded from memory; the folder is only read).
"""

from __future__ import annotations

import os
from pathlib import Path

from ...hub.publish import DEFAULT_REQUEST_TIMEOUT, PushResult, commit_to_hub
from .detector_card import render_detector_card
from .saved_detectors import (
    DETECTOR_CONFIG_NAME,
    DETECTOR_FOLDER,
    RESULTS_NAME,
    WEIGHTS_NAME,
    find_detector_folder,
    load_detector,
    read_detector_results,
)

CARD_NAME = "README.md"


def push_detector_to_hub(
    folder: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    timeout: float | None = None,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
) -> PushResult:
    """Publish the detector saved in `folder` (or in a run folder's `detector/`) to `repo_id` in one commit.

    Raises ValueError (nothing uploaded) for a folder that is not a loadable detector, PushError when the Hub fails
    or times out (`timeout`: the whole upload, seconds; `request_timeout`: each request)."""
    from huggingface_hub import CommitOperationAdd

    found = find_detector_folder(folder)
    if found is None:
        raise ValueError(f"{folder} is not a saved detector: it has no {DETECTOR_CONFIG_NAME} (nor "
                         f"{DETECTOR_FOLDER}/{DETECTOR_CONFIG_NAME})")
    try:
        model = load_detector(found)  # what would not load back is refused before anything leaves the machine
    except ValueError:
        raise
    except Exception as error:  # noqa: BLE001 - weights that do not fit the config, a damaged safetensors file
        raise ValueError(f"{found} does not load back as a detector: {error}") from error
    names = [DETECTOR_CONFIG_NAME, WEIGHTS_NAME, *([RESULTS_NAME] if (found / RESULTS_NAME).is_file() else [])]
    for name in names:
        if (found / name).is_symlink():
            raise ValueError(f"{found / name} is a symlink: refusing to upload what it points to; copy the file in")
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(found / name)) for name in names]
    own_card = found / CARD_NAME
    if own_card.is_file() and not own_card.is_symlink():
        operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=str(own_card)))
    else:
        card = render_detector_card(model.detector_config, repo_id, read_detector_results(found))
        operations.append(CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=card.encode()))
    skipped = tuple(sorted(set(os.listdir(found)) - {*names, CARD_NAME}))
    return commit_to_hub(operations, repo_id, folder_name=Path(found).name, skipped=skipped, private=private,
                         revision=revision, commit_message=commit_message, token=token, timeout=timeout,
                         request_timeout=request_timeout)
