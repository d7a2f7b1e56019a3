"""scripts/convert_checkpoint.py and poolformer_hf.conversion.to_folder: every source format, and every way a file can be bad."""

import contextlib
import errno
import os
import pickle
import runpy
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch
import transformers
from safetensors.torch import load_file, save_file

from conftest import ROOT, max_abs_diff, randomize_
from poolformer_hf import PoolFormerForImageClassification, PoolFormerModel
from poolformer_hf.conversion.to_folder import convert_checkpoint
from poolformer_hf.hub.output_folders import MARKER_NAME, remove_stale_staging

PIXELS = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))


def logits_of(folder, pixels=PIXELS):
    model = PoolFormerForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        return model(pixels).logits


def test_timm_safetensors_with_imagenet_head_gets_labels_processor_and_code(tmp_path):
    reference = randomize_(timm.create_model("convformer_s18", num_classes=1000), seed=5).eval()
    checkpoint = tmp_path / "convformer_s18.safetensors"
    save_file(reference.state_dict(), checkpoint)
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "scripts", "convert_checkpoint.py"), "--checkpoint", str(checkpoint),
         "--variant", "convformer_s18", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT},
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "out"
    with torch.no_grad():
        expected = reference(PIXELS)
    assert max_abs_diff(logits_of(folder), expected) <= 1e-4
    config = transformers.AutoConfig.from_pretrained(folder)
    assert config.num_labels == 1000 and config.id2label[0] and config.id2label[0] != "LABEL_0"
    assert config.crop_pct == 1.0
    processor = transformers.AutoImageProcessor.from_pretrained(folder)
    assert processor.crop_pct == 1.0
    assert (folder / "modeling_poolformer.py").exists() and (folder / "model.safetensors").exists()


def test_headless_checkpoint_becomes_a_base_model(tmp_path):
    reference = randomize_(timm.create_model("poolformerv2_s12", num_classes=0), seed=6).eval()
    checkpoint = tmp_path / "body.safetensors"
    save_file(reference.state_dict(), checkpoint)
    convert_checkpoint(str(checkpoint), "poolformerv2_s12", str(tmp_path / "out"))
    model = PoolFormerModel.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        expected = reference.forward_head(reference.forward_features(PIXELS), pre_logits=True)
        assert max_abs_diff(model(PIXELS).pooler_output, expected) <= 1e-4


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    checkpoint = tmp_path / "evil.pth"
    with open(checkpoint, "wb") as handle:
        pickle.dump({"stem.conv.weight": _RunsCode()}, handle)
    with pytest.raises(ValueError, match="refused|Refused"):
        convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"))
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "out").exists()


def test_truncated_file_is_reported_and_leaves_no_folder(tmp_path):
    reference = timm.create_model("poolformer_s12", num_classes=3)
    for suffix, save in ((".pth", torch.save), (".safetensors", save_file)):
        checkpoint = tmp_path / f"model{suffix}"
        save(reference.state_dict(), checkpoint)
        data = checkpoint.read_bytes()
        checkpoint.write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match="truncated"):
            convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["model.pth", "model.safetensors"]


def test_checkpoint_of_another_model_is_named(tmp_path):
    checkpoint = tmp_path / "resnet.safetensors"
    save_file(timm.create_model("resnet10t", num_classes=3).state_dict(), checkpoint)
    with pytest.raises(ValueError, match="not a PoolFormer/MetaFormer"):
        convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_variant_that_does_not_match_the_weights_is_named(tmp_path):
    checkpoint = tmp_path / "s12.safetensors"
    save_file(timm.create_model("poolformer_s12", num_classes=3).state_dict(), checkpoint)
    with pytest.raises(ValueError, match="wrong variant"):
        convert_checkpoint(str(checkpoint), "poolformer_m36", str(tmp_path / "out"))
    with pytest.raises(ValueError, match="Unknown variant"):
        convert_checkpoint(str(checkpoint), "poolformer_xxl", str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    assert not [name for name in os.listdir(tmp_path) if name.startswith(".converting")]


def test_existing_output_is_not_overwritten_without_asking(tmp_path):
    checkpoint = tmp_path / "s12.safetensors"
    save_file(timm.create_model("poolformer_s12", num_classes=3).state_dict(), checkpoint)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"))
    with pytest.raises(ValueError, match="files that no conversion or export wrote|not the output of an earlier conversion"):
        convert_checkpoint(str(checkpoint), "poolformer_s12", str(tmp_path / "out"), overwrite=True)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


# ----------------------------------------------------------------- --overwrite, kills, and disks that fail mid-write
def _script(capsys, *args):
    """Run scripts/convert_checkpoint.py's main in this process: (exit status, last stderr line, whole stderr)."""
    main = runpy.run_path(os.path.join(ROOT, "scripts", "convert_checkpoint.py"), run_name="convert")["main"]
    status = main([str(arg) for arg in args])
    stderr = capsys.readouterr().err
    lines = stderr.strip().splitlines()
    return status, lines[-1] if lines else "", stderr


@pytest.fixture(scope="module")
def s12_checkpoints(tmp_path_factory):
    """Two poolformer_s12 timm checkpoints with different weights ("old" and "new"), written once per module."""
    folder = tmp_path_factory.mktemp("checkpoints")
    paths = {}
    for seed, name in ((0, "old"), (1, "new")):
        torch.manual_seed(seed)
        paths[name] = folder / f"{name}.safetensors"
        save_file(timm.create_model("poolformer_s12", num_classes=3).state_dict(), paths[name])
    return paths


def _stem_weight(folder):
    return load_file(os.path.join(folder, "model.safetensors"))["poolformer.stem.conv.weight"]


def _snapshot(folder):
    return {p.name: p.read_bytes() for p in sorted(Path(folder).iterdir())}


def test_overwrite_replaces_an_earlier_conversion_and_nothing_else(tmp_path, s12_checkpoints):
    out = tmp_path / "out"
    convert_checkpoint(str(s12_checkpoints["old"]), "poolformer_s12", str(out))
    assert (out / MARKER_NAME).is_file()
    convert_checkpoint(str(s12_checkpoints["new"]), "poolformer_s12", str(out), overwrite=True)
    assert torch.equal(_stem_weight(out), load_file(s12_checkpoints["new"])["stem.conv.weight"])
    assert sorted(os.listdir(tmp_path)) == ["out"]  # no staging folder or old copy left

    (out / "notes.txt").write_text("mine")
    before = _snapshot(out)
    with pytest.raises(ValueError, match=r"files that no conversion or export wrote \(notes.txt\)"):
        convert_checkpoint(str(s12_checkpoints["old"]), "poolformer_s12", str(out), overwrite=True)
    assert _snapshot(out) == before


def test_overwrite_never_deletes_the_input_checkpoint_or_the_working_directory(tmp_path, s12_checkpoints, capsys,
                                                                               monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    only_copy = out / "my_only_copy.safetensors"
    shutil.copyfile(s12_checkpoints["old"], only_copy)
    (out / "other.txt").write_text("keep")
    status, last, _ = _script(capsys, "--checkpoint", only_copy, "--variant", "poolformer_s12", "--output", out,
                              "--overwrite")
    assert status == 1 and last.startswith("error: refusing --output") and "input file" in last
    assert sorted(os.listdir(out)) == ["my_only_copy.safetensors", "other.txt"]

    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('my work')")
    monkeypatch.chdir(project)
    empty = project / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)  # even an empty working directory is not replaced
    status, last, _ = _script(capsys, "--checkpoint", s12_checkpoints["old"], "--variant", "poolformer_s12",
                              "--output", ".")
    assert status == 1 and "working directory" in last and empty.is_dir() and not os.listdir(empty)
    monkeypatch.chdir(project)
    for output in (".", str(tmp_path)):  # the working directory, and a parent of it
        status, last, _ = _script(capsys, "--checkpoint", s12_checkpoints["old"], "--variant", "poolformer_s12",
                                  "--output", output, "--overwrite")
        assert status == 1 and last.startswith("error: ") and "working directory" in last, last
    assert (project / "train.py").read_text() == "print('my work')"


def test_output_that_is_a_file_or_a_symlink_is_refused_before_anything(tmp_path, s12_checkpoints, capsys):
    existing = tmp_path / "out.txt"
    existing.write_text("not a folder")
    status, last, _ = _script(capsys, "--checkpoint", s12_checkpoints["old"], "--variant", "poolformer_s12",
                              "--output", existing)
    assert status == 1 and last.startswith("error: ") and "exists and is not a folder" in last

    real = tmp_path / "real"
    convert_checkpoint(str(s12_checkpoints["old"]), "poolformer_s12", str(real))
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    before = _snapshot(real)
    for output in (str(link), str(link) + "/"):
        status, last, _ = _script(capsys, "--checkpoint", s12_checkpoints["new"], "--variant", "poolformer_s12",
                                  "--output", output, "--overwrite")
        assert status == 1 and last.startswith("error: ") and "is a symlink" in last
    assert _snapshot(real) == before and existing.read_text() == "not a folder"
    assert sorted(os.listdir(tmp_path)) == ["link", "out.txt", "real"]


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_full_or_read_only_disk_ends_in_an_error_line_and_keeps_the_old_output(tmp_path, s12_checkpoints,
                                                                                  monkeypatch, capsys, code):
    out = tmp_path / "out"
    convert_checkpoint(str(s12_checkpoints["old"]), "poolformer_s12", str(out))
    before = _snapshot(out)

    def failing_write(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\0" * 1000)  # a partial file, then the disk gives up
        raise OSError(code, os.strerror(code), filename)

    monkeypatch.setattr(transformers.modeling_utils, "safe_save_file", failing_write)
    status, last, _ = _script(capsys, "--checkpoint", s12_checkpoints["new"], "--variant", "poolformer_s12",
                              "--output", out, "--overwrite")
    assert status == 1 and last.startswith("error: ") and os.strerror(code) in last and str(out) in last
    assert _snapshot(out) == before and sorted(os.listdir(tmp_path)) == ["out"]


def test_int8_checkpoint_ends_in_an_error_line(tmp_path, s12_checkpoints, capsys):
    checkpoint = tmp_path / "int8.pth"
    torch.save({key: value.to(torch.int8) for key, value in load_file(s12_checkpoints["old"]).items()}, checkpoint)
    status, last, _ = _script(capsys, "--checkpoint", checkpoint, "--variant", "poolformer_s12", "--output",
                              tmp_path / "out")
    assert status == 1 and last.startswith("error: ") and "int8" in last
    assert not (tmp_path / "out").exists()


# Imports once, then forks one --overwrite conversion per kill point; each stops at its point and announces
# "AT <point> <pid>" on stdout, so the test can SIGKILL it there (one import instead of one per point: imports are slow).
_PAUSING_CONVERSIONS = """
import os, shutil, sys, time
import transformers.modeling_utils as modeling_utils
import poolformer_hf.conversion.to_folder as convert
import poolformer_hf.hub.output_folders as output_folders
from poolformer_hf.image_processing_poolformer import PoolFormerImageProcessor

checkpoint, parent = sys.argv[1:3]

def pause(point):
    print("AT", point, os.getpid(), flush=True)
    time.sleep(600)

def pausing(original, point, partial=False):
    def wrapper(*args, **kwargs):
        if partial:  # part of the weights file written
            with open(args[1], "wb") as handle:
                handle.write(bytes(4096))
        pause(point)
        return original(*args, **kwargs)
    return wrapper

def half_removed_then_pause(path, *args, **kwargs):
    names = sorted(os.listdir(path))
    for name in names[: len(names) // 2]:
        os.remove(os.path.join(path, name))
    pause("old-half-removed")

for point in sys.argv[3:]:
    if os.fork() == 0:
        if point == "mid-weights":
            modeling_utils.safe_save_file = pausing(modeling_utils.safe_save_file, point, partial=True)
        elif point == "weights-written":
            PoolFormerImageProcessor.save_pretrained = pausing(PoolFormerImageProcessor.save_pretrained, point)
        elif point == "before-swap":
            output_folders.publish = pausing(output_folders.publish, point)
        elif point == "old-half-removed":
            shutil.rmtree = half_removed_then_pause
        try:
            convert.convert_checkpoint(checkpoint, "poolformer_s12", os.path.join(parent, point, "out"),
                                       overwrite=True)
        finally:  # the point was never reached: say so rather than leave the test waiting
            print("FINISHED", point, os.getpid(), flush=True)
            os._exit(0)
for _ in sys.argv[3:]:
    os.wait()
"""

KILL_POINTS = ["mid-weights", "weights-written", "before-swap", "old-half-removed"]


def test_sigkill_at_any_point_of_an_overwrite_leaves_a_whole_output_and_the_next_run_cleans_up(
        tmp_path, s12_checkpoints):
    old_weight = load_file(s12_checkpoints["old"])["stem.conv.weight"]
    new_weight = load_file(s12_checkpoints["new"])["stem.conv.weight"]
    template = tmp_path / "template"
    convert_checkpoint(str(s12_checkpoints["old"]), "poolformer_s12", str(template))
    for point in KILL_POINTS:
        (tmp_path / point).mkdir()
        shutil.copytree(template, tmp_path / point / "out")
    runner = subprocess.Popen(
        [sys.executable, "-c", _PAUSING_CONVERSIONS, str(s12_checkpoints["new"]), str(tmp_path), *KILL_POINTS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": ROOT},
    )
    reached, children = {}, []
    try:
        for _ in KILL_POINTS:
            line = runner.stdout.readline().split()
            assert len(line) == 3, runner.stderr.read()  # the runner died
            word, point, pid = line
            reached[point] = word
            children.append(int(pid))
            if word == "AT":
                os.kill(int(pid), signal.SIGKILL)
    finally:
        for pid in children:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        runner.kill()
        runner.wait(timeout=60)
    assert reached == dict.fromkeys(KILL_POINTS, "AT")
    for point in KILL_POINTS:
        out = tmp_path / point / "out"
        expected = new_weight if point == "old-half-removed" else old_weight
        assert logits_of(out).isfinite().all(), point  # the folder loads
        assert torch.equal(_stem_weight(out), expected), point
        staging = [name for name in os.listdir(tmp_path / point) if name.startswith(".converting-")]
        assert len(staging) == 1, (point, staging)
        convert_checkpoint(str(s12_checkpoints["new"]), "poolformer_s12", str(out), overwrite=True)
        assert sorted(os.listdir(tmp_path / point)) == ["out"], point  # the killed run's staging is gone
        assert torch.equal(_stem_weight(out), new_weight)


def test_stale_staging_cleanup_removes_only_ours(tmp_path):
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(finished.stdout)
    ours = tmp_path / f".converting-{dead}-abc"
    ours.mkdir()
    (ours / "model.safetensors").write_bytes(b"partial")
    with_user_file = tmp_path / f".converting-{dead}-def"
    with_user_file.mkdir()
    (with_user_file / "notes.txt").write_text("not ours")
    live = tmp_path / f".converting-{os.getpid()}-ghi"
    live.mkdir()
    (live / "config.json").write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "config.json").write_text("{}")
    (tmp_path / f".converting-{dead}-link").symlink_to(elsewhere, target_is_directory=True)

    assert remove_stale_staging(str(tmp_path)) == [ours.name]
    assert with_user_file.is_dir() and live.is_dir() and (elsewhere / "config.json").is_file()
