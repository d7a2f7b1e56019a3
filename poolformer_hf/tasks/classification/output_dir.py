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

from ...files import process_alive

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
    if overwrite and resume:
        raise ValueError("--overwrite_output_dir would delete the checkpoints --resume_from_checkpoint resumes: give one")
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output_dir {output_dir} is a file, not a folder: choose a folder path")
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
    other. It holds "<host> <pid>" of its run. A lock left by a killed run on this machine (its process is gone or a
    zombie) is taken over; any other lock file is refused with a ValueError naming it: a live run's, another
    machine's (whose process cannot be checked from here), and a path there that is no lock a run wrote (a folder, a
    symlink, an unreadable or empty file, other contents), which a run will not delete on a guess. The holder also
    keeps an flock on the file for the run: a stale lock is taken over in place under it, so of two runs taking
    over one stale lock at the same moment only one gets it."""

    def __init__(self, output_dir: str | Path):
        self.path = Path(output_dir) / LOCK_NAME
        self.owner = f"{socket.gethostname()} {os.getpid()}"
        self._descriptor = None

    def __enter__(self) -> "RunLock":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                descriptor = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                host, pid = self._holder()
                if host != socket.gethostname() or process_alive(pid):
                    raise self._in_use(host, pid) from None
                try:  # a killed run's lock: taken over in place, under the file lock below
                    descriptor = os.open(self.path, os.O_WRONLY | os.O_NOFOLLOW)
                except FileNotFoundError:  # its taker finished meanwhile
                    continue
            # Held until __exit__ and let go by the kernel when the process dies: of two runs taking over one stale
            # lock at the same moment, only one gets it (both would otherwise delete it and write their own).
            if not _hold_file_lock(descriptor):
                os.close(descriptor)
                raise self._in_use(*self._holder()) from None
            if not _still_at(descriptor, self.path):  # unlinked by its finishing holder before we locked it
                os.close(descriptor)
                continue
            os.ftruncate(descriptor, 0)
            os.write(descriptor, self.owner.encode())  # at once, so that the lock is never seen empty but for an instant
            self._descriptor = descriptor
            return self
        raise ValueError(f"could not take the lock file {self.path}")

    def __exit__(self, *exc_info) -> None:
        try:
            ours = self.path.is_file() and not self.path.is_symlink() and self.path.read_text() == self.owner
        except OSError:
            ours = False
        if ours:
            self.path.unlink(missing_ok=True)
        if self._descriptor is not None:
            os.close(self._descriptor)  # after the unlink: nobody locks the old file in between
            self._descriptor = None

    def _in_use(self, host: str, pid: int) -> ValueError:
        where = "" if host == socket.gethostname() else ", on another machine"
        return ValueError(
            f"--output_dir {self.path.parent} is in use by another training run ({host} {pid}{where}, "
            f"lock file {self.path}): wait for it to finish or choose another --output_dir"
        )

    def _holder(self) -> tuple[str, int]:
        """(host, pid) of the lock there, or a ValueError saying why the path there is no lock of a run."""
        remove = f"remove it if no training run is using --output_dir {self.path.parent}"
        if self.path.is_symlink() or not self.path.is_file():
            kind = "a symlink" if self.path.is_symlink() else "a folder" if self.path.is_dir() else "not a file"
            raise ValueError(f"lock file {self.path} is {kind}, not a lock a training run writes: {remove}")
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise ValueError(f"lock file {self.path} cannot be read ({error}): {remove}") from None
        host, _, pid = text.strip().partition(" ")
        if not text:
            raise ValueError(f"lock file {self.path} is empty (a run starting this instant, or one killed as it "
                             f"started): {remove}")
        if not host or not pid.isdigit():
            raise ValueError(
                f"lock file {self.path} holds {text[:60]!r}, not the '<host> <pid>' a training run writes: {remove}"
            )
        return host, int(pid)


def _hold_file_lock(descriptor: int) -> bool:
    """An exclusive, non-blocking flock on the open lock file; True where it was taken (and where the platform has
    no flock: the pid check alone decides there)."""
    try:
        import fcntl
    except ImportError:
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _still_at(descriptor: int, path: Path) -> bool:
    try:
        return os.fstat(descriptor).st_ino == os.stat(path, follow_symlinks=False).st_ino
    except FileNotFoundError:
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
