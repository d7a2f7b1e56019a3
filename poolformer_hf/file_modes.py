"""Files and folders we write get the modes the process's umask gives, as `open()` and `os.makedirs` would.

Two writers below us make theirs private: safetensors (0.8) writes a `.safetensors` file 0600, and
`tempfile.mkdtemp` (our atomic staging folders) makes a folder 0700 that becomes the output when renamed into place.
A folder served or shared with other users would then be unreadable to them, though its config and processor files
are 0644. `follow_umask` gives what we wrote the usual modes (0644 files and 0755 folders under umask 022, 0600 and
0700 under 077): it only ever applies the umask, so it never makes a file more open than the user asked for.
"""

import os


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
