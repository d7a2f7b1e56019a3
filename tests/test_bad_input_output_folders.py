"""A run killed while it writes a generated folder (a conversion, an export): the next run removes the staging
folder it left, whatever it held of ours, and nothing that is not provably ours. (A kill at each step of a
conversion: tests/test_convert.py::test_sigkill_at_any_point_of_an_overwrite_leaves_a_whole_output_and_the_next_run_cleans_up.)"""

import os
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from poolformer_hf.export.artefact import write_atomically
from poolformer_hf.files import process_alive
from poolformer_hf.hub.output_folders import MARKER_NAME, STAGING_PREFIX, remove_stale_staging


@pytest.fixture(scope="module")
def dead_pid():
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


# What a killed conversion or export leaves in its staging folder, by where the kill came.
LEFT_BY_A_KILL = {
    "nothing yet": [],
    "mid-weights": ["model.safetensors"],
    "mid-onnx": ["model.onnx", "model.onnx.data"],
    "mid-openvino": ["openvino_model.xml", "openvino_model.bin"],
    "mid-executorch": ["model.pte"],
    "mid-atomic-write": ["model.onnx", ".config.json.0123456789ab.tmp"],  # files.write_text_atomically's temporary
    "mid-marker": ["config.json", "preprocessor_config.json", "modeling_poolformer.py", MARKER_NAME],
}
NOT_OURS = {
    "a user's file": ["notes.txt"],
    "a temporary of another name": [".notes.txt.0123456789ab.tmp"],
    "a temporary not of our form": [".config.json.tmp"],
}


@pytest.mark.parametrize("case", list(LEFT_BY_A_KILL))
def test_a_killed_runs_staging_is_removed_whatever_it_held_of_ours(tmp_path, dead_pid, case):
    staging = tmp_path / f"{STAGING_PREFIX}{dead_pid}-abc"
    staging.mkdir()
    for name in LEFT_BY_A_KILL[case]:
        (staging / name).write_bytes(b"partial")
    assert remove_stale_staging(str(tmp_path)) == [staging.name]
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("case", list(NOT_OURS))
def test_a_staging_folder_holding_anything_else_is_kept(tmp_path, dead_pid, case):
    staging = tmp_path / f"{STAGING_PREFIX}{dead_pid}-abc"
    staging.mkdir()
    for name in ["model.safetensors", *NOT_OURS[case]]:
        (staging / name).write_bytes(b"partial")
    assert remove_stale_staging(str(tmp_path)) == []
    assert staging.is_dir()


def test_a_subfolder_is_not_provably_ours(tmp_path, dead_pid):
    staging = tmp_path / f"{STAGING_PREFIX}{dead_pid}-abc"
    (staging / "sub").mkdir(parents=True)
    assert remove_stale_staging(str(tmp_path)) == [] and staging.is_dir()


def test_a_zombie_is_dead():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
        assert not process_alive(child.pid)
    finally:
        child.wait()
    assert process_alive(os.getpid())


# An export whose write is killed as it writes its config (after the weights), through the export's own staging.
_KILLED_EXPORT = """
import os, signal, sys
from pathlib import Path
import poolformer_hf.files as files
from poolformer_hf.export.artefact import write_atomically

def write(folder):
    (folder / "model.onnx").write_bytes(b"weights")
    files.os.replace = lambda *args: os.kill(os.getpid(), signal.SIGKILL)  # the kill: before the rename
    files.write_text_atomically(folder / "config.json", "{}")

write_atomically(sys.argv[1], write)
"""


def test_the_next_export_removes_the_staging_of_an_export_killed_mid_write(tmp_path):
    out = tmp_path / "export"
    killed = subprocess.run([sys.executable, "-c", _KILLED_EXPORT, str(out)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert killed.returncode == -9, killed.stderr
    (staging,) = os.listdir(tmp_path)
    assert staging.startswith(STAGING_PREFIX) and ".config.json." in " ".join(os.listdir(tmp_path / staging))

    write_atomically(out, lambda folder: (folder / "model.onnx").write_bytes(b"whole"))
    assert os.listdir(tmp_path) == ["export"]
    assert (out / "model.onnx").read_bytes() == b"whole"
