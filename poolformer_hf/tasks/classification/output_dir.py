"""The output folder of a training run: what a previous run left there, which checkpoint to resume from, one run
at a time, and a full disk reported as such.

Trainer (transformers v5) writes into --output_dir whatever is there: a second run silently replaces the first
one's model and results and mixes its checkpoints with the old ones; a run killed while saving leaves a
`checkpoint-N` without `trainer_state.json`, which Trainer's "last checkpoint" then picks and fails on; and a full
disk surfaces as torch's `[enforce fail at inline_container.cc] unexpected pos`.
"""

import errno
import os
import re
import shutil
import socket
from pathlib import Path

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
# What Trainer and the run write besides checkpoints; any of them marks the folder as holding a previous run.
RUN_FILES = (
    "config.json", "model.safetensors", "model.safetensors.index.json", "preprocessor_config.json",
    "training_args.bin", "trainer_state.json", "all_results.json", "train_results.json", "eval_results.json",
    "adapter",  # a LoRA run's adapter folder (lora.py)
)  # fmt: skip
# Files a run writes only in some configurations: cleared on --overwrite_output_dir so none outlives its run.
RESULT_FILES = ("trainer_state.json", "all_results.json", "train_results.json", "eval_results.json")
# Written last when Trainer saves a checkpoint: a checkpoint without it was cut off while saving.
COMPLETE_MARKER = "trainer_state.json"
LOCK_NAME = ".poolformer-train.lock"


def checkpoints(output_dir: str | Path) -> list[Path]:
    """The `checkpoint-N` folders of `output_dir`, oldest (lowest N) first."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    return [path for _, path in sorted(found) if path.is_dir()]


def is_complete(checkpoint: Path) -> bool:
    return (Path(checkpoint) / COMPLETE_MARKER).is_file()


def previous_run(output_dir: str | Path) -> list[str]:
    """Names of what a previous run left in `output_dir` (empty if nothing)."""
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        return []
    return [p.name for p in checkpoints(output_dir)] + [name for name in RUN_FILES if (output_dir / name).exists()]


def check_output_dir(output_dir: str | Path, overwrite: bool, resume: bool) -> None:
    """Refuse to train into a folder holding a previous run unless told to replace it or to resume it."""
    found = previous_run(output_dir)
    if found and not overwrite and not resume:
        shown = ", ".join(found[:6]) + (f" and {len(found) - 6} more" if len(found) > 6 else "")
        raise ValueError(
            f"--output_dir {output_dir} holds a previous run ({shown}): pass --overwrite_output_dir true to replace "
            "it, --resume_from_checkpoint last to continue it, or choose another --output_dir"
        )


def clear_previous_run(output_dir: str | Path) -> list[str]:
    """Remove a previous run's checkpoints and result files (model files are overwritten by the new run);
    returns what was removed. Nothing else in the folder is touched."""
    output_dir = Path(output_dir)
    removed = []
    for path in checkpoints(output_dir):
        shutil.rmtree(path)
        removed.append(path.name)
    for name in RESULT_FILES:
        if (output_dir / name).is_file():
            (output_dir / name).unlink()
            removed.append(name)
    return removed


def resolve_checkpoint(value: str | None, output_dir: str | Path) -> str | None:
    """--resume_from_checkpoint: None, a checkpoint folder, or `last`/`true` for the newest COMPLETE checkpoint of
    `output_dir`. A checkpoint cut off while saving is named in the error, with the complete one to use instead."""
    if value is None:
        return None
    found = checkpoints(output_dir)
    complete = [path for path in found if is_complete(path)]
    if value.lower() in ("last", "true"):
        if not complete:
            incomplete = f" ({', '.join(p.name for p in found)}: none has {COMPLETE_MARKER})" if found else ""
            raise ValueError(f"--resume_from_checkpoint {value}: no complete checkpoint in {output_dir}{incomplete}")
        return str(complete[-1])
    path = Path(value)
    if not path.is_dir():
        raise ValueError(f"--resume_from_checkpoint {value}: no such checkpoint folder")
    if not is_complete(path):
        hint = f"; the last complete one is {complete[-1]}" if complete else ""
        raise ValueError(
            f"--resume_from_checkpoint {value} is incomplete: it has no {COMPLETE_MARKER} (the run was stopped "
            f"while saving it){hint}"
        )
    return str(path)


class RunLock:
    """An exclusive lock file in the output folder, so that two runs never write one folder unaware of each
    other. A lock left by a killed run on this machine (its process is gone) is taken over."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / LOCK_NAME
        self.owner = f"{socket.gethostname()} {os.getpid()}"

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._take_over_stale():
                    raise ValueError(
                        f"--output_dir {self.path.parent} is in use by another training run ({self._holder()}, "
                        f"lock file {self.path}): wait for it to finish or choose another --output_dir"
                    ) from None
                continue
            with os.fdopen(descriptor, "w") as lock:
                lock.write(self.owner)
            return self
        raise ValueError(f"could not take the lock file {self.path}")

    def __exit__(self, *exc_info) -> None:
        if self._holder() == self.owner:
            self.path.unlink(missing_ok=True)

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def _take_over_stale(self) -> bool:
        host, _, pid = self._holder().partition(" ")
        if host != socket.gethostname() or not pid.isdigit():
            return False
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            self.path.unlink(missing_ok=True)
            return True
        except PermissionError:
            pass
        return False


# How a full disk shows itself: ENOSPC, or the messages torch and safetensors raise without an errno.
_DISK_FULL_MESSAGES = ("unexpected pos", "No space left on device", "StorageFull", "file write failed")


def is_disk_full(error: BaseException) -> bool:
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        if any(message in str(error) for message in _DISK_FULL_MESSAGES):
            return True
        error = error.__cause__ or error.__context__
    return False


def disk_full_error(error: BaseException, output_dir: str | Path) -> OSError | None:
    """An OSError saying the disk is full and which file was being written, if `error` is a full disk; else None.

    The file is the newest one under `output_dir`: the one the failed write had started."""
    if not is_disk_full(error):
        return None
    output_dir = Path(output_dir)
    files = [p for p in output_dir.rglob("*") if p.is_file()] if output_dir.is_dir() else []
    newest = max(files, key=lambda p: p.stat().st_mtime_ns, default=None)
    free = shutil.disk_usage(output_dir if output_dir.is_dir() else output_dir.parent).free
    where = f"while writing {newest}" if newest is not None else f"while writing into {output_dir}"
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return OSError(
        errno.ENOSPC,
        f"the disk holding {output_dir} is full ({free / 2**20:.0f} MiB free) {where}: free some space or choose "
        f"another --output_dir, then resume with --resume_from_checkpoint last ({type(error).__name__}: {first_line})",
    )
