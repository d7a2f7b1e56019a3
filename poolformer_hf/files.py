"""The files a save writes: replaced atomically, and given the modes the process's umask gives.

Part of what a saved folder ships for `trust_remote_code` (the config's JSON write and the model's save use it), and
the one list of what that is: `SHIPPED_CODE`.

**Atomic writes.** Writing a file so that at every instant it holds either its old or its new contents, never a part.

**Modes.** Files and folders we write get the modes the process's umask gives, as `open()` and `os.makedirs` would.

Two writers below us make theirs private: safetensors (0.8) writes a `.safetensors` file 0600, and
`tempfile.mkdtemp` (our atomic staging folders) makes a folder 0700 that becomes the output when renamed into place.
A folder served or shared with other users would then be unreadable to them, though its config and processor files
are 0644. `follow_umask` gives what we wrote the usual modes (0644 files and 0755 folders under umask 022, 0600 and
0700 under 077): it only ever applies the umask, so it never makes a file more open than the user asked for.
"""

import contextlib
import os
import secrets
import shutil
import socket

# The code files a save writes beside the weights and configs for `trust_remote_code`, by what is saved: the package
# root's files, importing only each other. transformers copies the saved class's file and the files its relative
# imports reach; tests/test_package_layout.py checks that those reach exactly these and that a save writes exactly
# these, so an edited import cannot silently change what every checkpoint carries.
_CONFIG = ("configuration_checks.py", "configuration_poolformer.py", "files.py", "presets.py")
_MODEL = (*_CONFIG, "layers.py", "modeling_poolformer.py")
SHIPPED_CODE = {
    "config": _CONFIG,
    "model": _MODEL,
    "segmentation model": (*_MODEL, "modeling_poolformer_segmentation.py"),
    "image processor": ("files.py", "image_inputs.py", "image_processing_pil_poolformer.py",
                        "image_processing_poolformer.py", "image_processing_shared_poolformer.py"),
    "segmentation image processor": ("image_processing_segmentation_poolformer.py",),
}


def ship_code(folder: str | os.PathLike, kind: str) -> None:
    """Copy into `folder` the files of `SHIPPED_CODE[kind]` that transformers' save did not (both image processor
    backends, though a save copies only the saved one's file). Where this code runs from a folder loaded with
    `trust_remote_code`, only the files that folder had are beside it: the missing ones are left out."""
    here = os.path.dirname(os.path.abspath(__file__))
    for name in SHIPPED_CODE[kind]:
        source, target = os.path.join(here, name), os.path.join(folder, name)
        if os.path.isfile(source) and not os.path.exists(target):
            shutil.copyfile(source, target)
            follow_umask(target)


def current_umask() -> int:
    """The process's umask, read without changing it (Linux's /proc; elsewhere set and restored at once)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def follow_umask(path: str | os.PathLike) -> None:
    """Give `path` (a file, or a folder and everything in it) mode 0o666 / 0o777 less the umask; symlinks untouched."""
    mask = current_umask()
    path = os.fspath(path)
    if os.path.islink(path):
        return
    if not os.path.isdir(path):
        os.chmod(path, 0o666 & ~mask)
        return
    os.chmod(path, 0o777 & ~mask)
    for folder, subfolders, files in os.walk(path):
        for name in subfolders:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), 0o777 & ~mask)
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), 0o666 & ~mask)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    """Write `text` to a temporary file next to `path`, then rename it over `path`.

    A failure at any point (an encoding error, a full disk, a kill) leaves `path` as it was and no temporary file
    behind (a kill may leave one, hidden: `.<name>.<random>.tmp`). The rename is atomic because both names are in
    the same folder.
    """
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    temporary = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
    # Mode 0o666 less the umask, as open(path, "w") would create the file (mkstemp would make it private).
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


# ------------------------------------------------------------------------------------------ a model save's staging
def save_staging_prefix(name: str) -> str:
    """The name prefix of the hidden staging folder a save over folder `name` writes beside it. It names this
    process and machine, so that a later save can tell the staging folder of a killed save from one in progress."""
    return f".{name}.saving-{os.getpid()}@{socket.gethostname()}-"


def remove_abandoned_saves(parent: str, name: str) -> list[str]:
    """Remove the staging folders beside `parent/name` that saves killed on this machine left (their process is
    gone); returns their names. A folder of a live save, or of another machine sharing the filesystem, stays."""
    prefix, host, removed = f".{name}.saving-", socket.gethostname(), []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix) or entry.is_symlink() or not entry.is_dir():
            continue
        owner = entry.name[len(prefix):].rpartition("-")[0]  # "<pid>@<host>"; mkdtemp's suffix has no "-"
        pid, _, owner_host = owner.partition("@")
        if owner_host != host or not pid.isdigit() or process_alive(int(pid)):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        removed.append(entry.name)
    return removed


def process_alive(pid: int) -> bool:
    """Whether process `pid` of this machine may still run (this one, someone else's, or any not yet ended)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return not _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """A killed process its parent has not reaped yet (still signalable, but it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
