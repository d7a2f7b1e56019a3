"""The output folder: a previous run is never replaced unasked, `last` is the last complete checkpoint, one run
writes a folder at a time, and a full disk is reported as one, with the file."""

import errno
import os
import subprocess
import sys

import pytest

from poolformer_hf.tasks.classification.output_dir import (
    LOCK_NAME,
    RunLock,
    check_output_dir,
    clear_previous_run,
    disk_full_error,
    resolve_checkpoint,
)


def make_checkpoint(folder, step, complete=True):
    checkpoint = folder / f"checkpoint-{step}"
    checkpoint.mkdir(parents=True)
    (checkpoint / "model.safetensors").write_bytes(b"weights")
    if complete:
        (checkpoint / "trainer_state.json").write_text("{}")
    return checkpoint


def test_a_previous_run_is_refused_naming_both_ways_on(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"x")
    make_checkpoint(tmp_path, 10)
    with pytest.raises(ValueError, match=r"checkpoint-10, model.safetensors.*--overwrite_output_dir.*--resume_from"):
        check_output_dir(tmp_path, overwrite=False, resume=False)
    check_output_dir(tmp_path, overwrite=True, resume=False)
    check_output_dir(tmp_path, overwrite=False, resume=True)
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "notes.txt").write_text("mine")  # other files do not make a previous run
    check_output_dir(tmp_path / "fresh", overwrite=False, resume=False)
    check_output_dir(tmp_path / "missing", overwrite=False, resume=False)
    with pytest.raises(ValueError, match="--overwrite_output_dir would delete the checkpoints --resume_from_checkpoint"):
        check_output_dir(tmp_path, overwrite=True, resume=True)


def test_overwrite_clears_checkpoints_and_results_and_nothing_else(tmp_path):
    make_checkpoint(tmp_path, 5)
    make_checkpoint(tmp_path, 7, complete=False)
    for name in ("eval_results.json", "all_results.json", "model.safetensors", "notes.txt"):
        (tmp_path / name).write_text("{}")
    removed = clear_previous_run(tmp_path)
    assert sorted(removed) == ["all_results.json", "checkpoint-5", "checkpoint-7", "eval_results.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors", "notes.txt"]


def test_last_means_the_last_complete_checkpoint(tmp_path):
    make_checkpoint(tmp_path, 3)
    make_checkpoint(tmp_path, 12)
    make_checkpoint(tmp_path, 15, complete=False)  # killed while saving: no trainer_state.json
    assert resolve_checkpoint("last", tmp_path) == str(tmp_path / "checkpoint-12")
    assert resolve_checkpoint("True", tmp_path) == str(tmp_path / "checkpoint-12")
    assert resolve_checkpoint(None, tmp_path) is None
    assert resolve_checkpoint(str(tmp_path / "checkpoint-3"), tmp_path) == str(tmp_path / "checkpoint-3")
    with pytest.raises(ValueError, match=r"checkpoint-15 is incomplete.*last complete one is .*checkpoint-12"):
        resolve_checkpoint(str(tmp_path / "checkpoint-15"), tmp_path)
    with pytest.raises(ValueError, match="no such checkpoint"):
        resolve_checkpoint(str(tmp_path / "checkpoint-99"), tmp_path)


def test_last_without_a_complete_checkpoint_says_so(tmp_path):
    make_checkpoint(tmp_path, 4, complete=False)
    with pytest.raises(ValueError, match=r"no complete checkpoint.*checkpoint-4"):
        resolve_checkpoint("last", tmp_path)


def test_one_run_at_a_time_and_a_killed_runs_lock_is_taken_over(tmp_path):
    with RunLock(tmp_path / "out"):
        assert (tmp_path / "out" / LOCK_NAME).is_file()
        with pytest.raises(ValueError, match="in use by another training run"):
            RunLock(tmp_path / "out").__enter__()
    assert not (tmp_path / "out" / LOCK_NAME).exists()

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = RunLock(tmp_path / "out")
    stale.path.write_text(f"{stale.owner.split()[0]} {int(gone.stdout)}")  # same host, a process that has ended
    with RunLock(tmp_path / "out") as lock:
        assert lock.path.read_text() == f"{lock.owner}" and str(os.getpid()) in lock.owner


# What torch.save raises when the disk fills mid-write (issue 13; also seen saving to /dev/full).
TORCH_DISK_FULL = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"


def test_a_full_disk_is_reported_with_the_file_being_written(tmp_path):
    checkpoint = make_checkpoint(tmp_path, 9, complete=False)
    (checkpoint / "optimizer.pt").write_bytes(b"partial")  # the newest file: the write that failed
    error = disk_full_error(RuntimeError(TORCH_DISK_FULL), tmp_path)
    assert isinstance(error, OSError) and error.errno == errno.ENOSPC
    assert "is full" in str(error) and str(checkpoint / "optimizer.pt") in str(error)
    assert "MiB free" in str(error) and "unexpected pos" in str(error)
    assert disk_full_error(RuntimeError("shape mismatch"), tmp_path) is None
    chained = RuntimeError("saving failed")
    chained.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert disk_full_error(chained, tmp_path) is not None
