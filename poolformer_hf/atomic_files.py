"""Writing a file so that at every instant it holds either its old or its new contents, never a part."""

import contextlib
import os
import secrets


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
