"""Writing a generated folder (a converted checkpoint, an exported model) so that nothing is lost, whatever happens.

The folder is written in a hidden staging sibling `.converting-<pid>-<random>` and swapped into place by rename, so at
every instant the output path holds either the previous output, whole, or the new one, whole. `--overwrite` may only
replace a folder that this code wrote (it carries a marker listing its files and nothing else is in it): never the
folder holding the input, the working directory or one of its parents, a folder of other files, or a symlink.
Staging folders left by a killed process are removed on the next run, and only those: the name, a dead pid, and
contents that are files of the kinds written here (the half-written temporary of an atomic file write included).
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import tempfile

from ..files import follow_umask, process_alive

MARKER_NAME = ".poolformer_hf_conversion.json"
STAGING_PREFIX = ".converting-"
_STAGING_NAME = re.compile(re.escape(STAGING_PREFIX) + r"(\d+)-")
_WRITTEN_SUFFIXES = (".json", ".py", ".safetensors", ".onnx", ".data", ".xml", ".bin", ".pt2", ".pte")  # + exports
# The temporary `files.write_text_atomically` writes beside a file (`.<name>.<12 hex>.tmp`): a kill mid-write leaves it.
_ATOMIC_TEMPORARY = re.compile(r"^\.(.+)\.[0-9a-f]{12}\.tmp$")
_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def check_output_folder(output_dir: str, overwrite: bool, inputs: tuple[str, ...] = ()) -> str:
    """The absolute output path, after refusing (ValueError) every target whose replacement could lose data.

    Run before anything is read or written, so a refusal changes nothing.
    """
    output_dir = os.path.abspath(output_dir)  # also drops a trailing "/", through which islink would not see
    if os.path.islink(output_dir):
        raise ValueError(
            f"--output {output_dir} is a symlink (to {os.readlink(output_dir)}): refusing to write through it; "
            "name the real folder"
        )
    if os.path.lexists(output_dir) and not os.path.isdir(output_dir):
        raise ValueError(f"--output {output_dir} exists and is not a folder: choose a folder path")
    real_output = os.path.realpath(output_dir)
    for protected, what in [(os.getcwd(), "the working directory"), *((path, "the input file") for path in inputs)]:
        real = os.path.realpath(protected)
        if real == real_output or real.startswith(real_output + os.sep):
            raise ValueError(f"refusing --output {output_dir}: it holds {what} ({protected}), which replacing "
                             "it would delete")
    if not os.path.isdir(output_dir) or not os.listdir(output_dir):
        return output_dir
    if not overwrite:
        raise ValueError(f"{output_dir} exists and is not empty; choose another --output or pass --overwrite")
    foreign = _foreign_entries(output_dir)
    if foreign is None:
        raise ValueError(
            f"--overwrite refused: {output_dir} is not the output of an earlier conversion or export (no {MARKER_NAME}); "
            "choose another --output, or empty the folder yourself"
        )
    if foreign:
        raise ValueError(
            f"--overwrite refused: {output_dir} holds files that no conversion or export wrote ({', '.join(foreign[:5])}); "
            "move them away first"
        )
    return output_dir


def _foreign_entries(folder: str) -> list[str] | None:
    """Entries of `folder` its marker does not list; None when the folder has no readable marker."""
    try:
        with open(os.path.join(folder, MARKER_NAME), encoding="utf-8") as handle:
            listed = set(json.load(handle)["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    foreign = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        ours = entry.name == MARKER_NAME or entry.name in listed
        if not ours or entry.is_symlink() or not entry.is_file():
            foreign.append(entry.name)
    return foreign


def write_marker(folder: str, **facts) -> None:
    """Mark `folder` as generated here, listing its files: the proof that `--overwrite` may replace it later."""
    files = sorted(name for name in os.listdir(folder) if name != MARKER_NAME)
    with open(os.path.join(folder, MARKER_NAME), "w", encoding="utf-8") as handle:
        json.dump({"written_by": "poolformer_hf", **facts, "files": files}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())


def remove_stale_staging(parent: str) -> list[str]:
    """Remove staging folders in `parent` that a killed process left behind; returns the names removed."""
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING_NAME.match(entry.name)
        if not match or entry.is_symlink() or not entry.is_dir() or process_alive(int(match[1])):
            continue
        try:
            contents = list(os.scandir(entry.path))
        except OSError:  # unreadable: not provably ours
            continue
        if all(_written_here(item) for item in contents):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.name)
    return removed


def _written_here(entry: os.DirEntry) -> bool:
    temporary = _ATOMIC_TEMPORARY.match(entry.name)
    name = temporary[1] if temporary else entry.name
    return not entry.is_symlink() and entry.is_file() and (name == MARKER_NAME or name.endswith(_WRITTEN_SUFFIXES))


def write_staged(output_dir: str, fill, **facts) -> None:
    """Have `fill(staging)` write the folder in a hidden staging sibling, mark it with `facts` (`write_marker`) and
    swap it into `output_dir` (`publish`); staging folders of killed runs beside it are cleaned first.

    A failure removes the staging folder and leaves `output_dir` as it was; an OSError (a full or read-only disk)
    comes back as one naming the output."""
    try:
        remove_stale_staging(os.path.dirname(output_dir))
        staging = new_staging_folder(output_dir)
    except OSError as error:
        raise _write_error(error, output_dir) from error
    try:
        fill(staging)
        write_marker(staging, **facts)
        publish(staging, output_dir)
    except OSError as error:
        shutil.rmtree(staging, ignore_errors=True)
        raise _write_error(error, output_dir) from error
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_error(error: OSError, output_dir: str) -> OSError:
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename else ""
    return OSError(error.errno, f"could not write {output_dir}: {reason}{where}; any earlier output there is unchanged")


def new_staging_folder(output_dir: str) -> str:
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    return tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=parent)


def publish(staging: str, output_dir: str) -> None:
    """Put the complete `staging` folder at `output_dir`, replacing an earlier output in one atomic step."""
    follow_umask(staging)  # mkdtemp made it 0700, safetensors its weights 0600
    if not os.path.isdir(output_dir) or not os.listdir(output_dir):
        os.replace(staging, output_dir)  # rename(2) replaces an empty folder atomically
        return
    _exchange(staging, output_dir)
    shutil.rmtree(staging)  # now the previous output; a kill here leaves it for remove_stale_staging


def _exchange(a: str, b: str) -> None:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE)."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        raise OSError(errno.ENOSYS, "this system has no atomic folder exchange (renameat2); remove the old output "
                      "yourself and run again without --overwrite")
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"could not swap the new output into place ({os.strerror(code)}); the previous "
                      f"output at {b} is unchanged", b)
