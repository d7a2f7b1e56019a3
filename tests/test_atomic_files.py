import errno
import os

import pytest

from poolformer_hf import files as atomic_files
from poolformer_hf.files import write_text_atomically


def test_writes_and_replaces_the_file_with_the_mode_open_would_give(tmp_path):
    path = tmp_path / "config.json"
    write_text_atomically(path, "old\n")
    write_text_atomically(path, "new ✓\n")
    assert path.read_text(encoding="utf-8") == "new ✓\n"
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "config.json"
    path.write_text("previous\n")

    def disk_full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic_files.os, failing, disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_text_atomically(path, "x" * 100_000)
    monkeypatch.undo()
    assert path.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_text_that_cannot_be_encoded_keeps_the_previous_file(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("previous\n")
    with pytest.raises(UnicodeEncodeError):
        write_text_atomically(path, "lone surrogate \udc80")
    assert path.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]
