"""A careless or hostile training run: options that do nothing, checkpoints of another model, bad segmentation
data (label maps of another size, ids beyond the classes, empty folders), output folders holding a previous run,
lock files that are no lock. Each is refused in one line naming the option, file or id and what would be valid,
before a model is trained or anything is written."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from classification_helpers import parse
from poolformer_hf.tasks.classification.arguments import ModelArguments
from poolformer_hf.tasks.classification.model import build_model
from poolformer_hf.tasks.classification.output_dir import LOCK_NAME, RunLock
from poolformer_hf.tasks.segmentation.arguments import parse_arguments as parse_segmentation
from poolformer_hf.tasks.segmentation.data import SegmentationSplit, check_split, load_folder
from poolformer_hf.tasks.segmentation.run import run as run_segmentation

IGNORE = 255


# ------------------------------------------------------------------------------------- 6. --trust_remote_code
@pytest.mark.parametrize("parse_script", [lambda *argv: parse(*argv), lambda *argv: parse_segmentation(list(argv))],
                         ids=["train.py", "train_segmentation.py"])
def test_trust_remote_code_is_no_option_of_either_script(parse_script):
    with pytest.raises(ValueError, match="trust_remote_code"):
        parse_script("--trust_remote_code", "true")


def test_a_checkpoint_of_another_model_type_is_refused_and_its_code_never_runs(tmp_path):
    ran = tmp_path / "code-ran"
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig"}, "architectures": ["EvilModel"]}))
    (tmp_path / "evil.py").write_text(f"open({str(ran)!r}, 'w').close()\n")
    (tmp_path / "model.safetensors").write_bytes(b"")
    # before: the folder loaded into our classes with the default architecture and random weights (a warning)
    with pytest.raises(ValueError, match=rf"^--model_name_or_path {tmp_path} is a 'evil' checkpoint; expected a "):
        build_model(ModelArguments(model_name_or_path=str(tmp_path)), ["a", "b"])
    assert not ran.exists()


# -------------------------------------------------------------------------------------- 7. segmentation data
def _image(width=8, height=8):
    return Image.fromarray(np.zeros((height, width, 3), np.uint8))


def _ids(*values, shape=(8, 8), dtype=np.uint8):
    label_map = np.zeros(shape, dtype)
    label_map.flat[: len(values)] = values
    return label_map


BAD_PAIRS = {  # (image, label map, num_labels, reduce_labels) -> the message
    "a label map of another size": ((_image(10, 8), _ids(), 3, False),
                                    "its label map is 8×8 pixels, the image 10×8; a label map gives one class id"),
    "an id beyond the classes": ((_image(), _ids(1, 5), 3, False),
                                 r"holds class id 5 but there are 3 classes \(0 … 2, or 255 for pixels to ignore\)"),
    "an id beyond them after reduce_labels": ((_image(), _ids(3, 4), 3, True),
                                              r"class id 3 but there are 3 classes \(after --reduce_labels\)"),
    "a negative id (a 32-bit map)": ((_image(), Image.fromarray(_ids(-1, dtype=np.int32), mode="I"), 3, False),
                                     r"holds class id -1; expected 0 … 2, or 255"),
    "a negative id (an array)": ((_image(), _ids(-2, dtype=np.int64), 3, False), "holds class id -2"),
    "fractional ids": ((_image(), _ids(dtype=np.float32) + 0.5, 3, False),
                       "dtype float32; expected one integer class id per pixel"),
    "an RGB array": ((_image(), np.zeros((8, 8, 3), np.uint8), 3, False),
                     r"shape \(8, 8, 3\) .*a 2-D \(height, width\) array of ints"),
    "a colour image": ((_image(), Image.new("RGB", (8, 8)), 3, False), "is a RGB image; expected one class id"),
}


@pytest.mark.parametrize("case", list(BAD_PAIRS))
def test_a_bad_image_and_label_map_pair_is_refused_naming_it(case):
    (image, label_map, num_labels, reduce_labels), message = BAD_PAIRS[case]
    with pytest.raises(ValueError, match=message):
        check_split(SegmentationSplit([image], [label_map]), num_labels, IGNORE, reduce_labels)


@pytest.mark.parametrize("ids, reduce_labels", [((0, 1, 2), False), ((IGNORE,), False), ((0, 3, IGNORE), True)],
                         ids=["0 … num_labels-1", "the ignore index", "0 and 255 with reduce_labels"])
def test_valid_ids_and_the_ignore_index_pass(ids, reduce_labels):
    check_split(SegmentationSplit([_image()], [_ids(*ids)]), 3, IGNORE, reduce_labels)


def _folder(root: Path, pairs: dict) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for stem, (image, label_map) in pairs.items():
        image.save(root / "images" / f"{stem}.jpg")
        Image.fromarray(label_map).save(root / "annotations" / f"{stem}.png")
    return root


def test_a_label_map_file_of_another_size_is_named_with_its_image(tmp_path):
    root = _folder(tmp_path, {"a": (_image(), _ids()), "b": (_image(12, 8), _ids())})
    with pytest.raises(ValueError, match=rf"^{root}/images/b.jpg: its label map {root}/annotations/b.png is 8×8 "):
        check_split(load_folder(root, "train"), 3, IGNORE, False)


FOLDER_ARGUMENTS = ["--num_labels", "3", "--generated_train_size", "2"]
EMPTY_DATA = {
    "an empty images folder": ({}, [], "images holds no image file"),
    "no annotations folder": (None, [], "annotations is missing: a segmentation folder holds images/ and annotations/"),
    "--max_train_samples 0": ({"a": (_image(), _ids())}, ["--max_train_samples", "0"],
                              "--max_train_samples must be at least 1"),
    "--num_labels 0": ({"a": (_image(), _ids())}, ["--num_labels", "0"], r"--num_labels must be in \[1, 255\]"),
    "--num_labels 256 (id 255 is ignored)": ({"a": (_image(), _ids())}, ["--num_labels", "256"],
                                             r"--num_labels must be in \[1, 255\]"),
}


@pytest.mark.parametrize("case", list(EMPTY_DATA))
def test_a_run_without_usable_data_is_refused_before_training(tmp_path, case):
    pairs, extra, message = EMPTY_DATA[case]
    if pairs is None:
        (tmp_path / "data" / "images").mkdir(parents=True)
    else:
        _folder(tmp_path / "data", pairs)
    with pytest.raises(ValueError, match=message):
        run_segmentation(*parse_segmentation(["--output_dir", str(tmp_path / "out"), "--train_dir",
                                              str(tmp_path / "data"), "--validation_dir", str(tmp_path / "data"),
                                              *FOLDER_ARGUMENTS, *extra]))
    assert not (tmp_path / "out").exists()


def test_an_empty_split_is_refused():
    with pytest.raises(ValueError, match="the validation split holds no image"):
        check_split(SegmentationSplit([], [], "validation"), 3, IGNORE, False)


# ----------------------------------------------------------------------------- 7. the segmentation output folder
TINY_RUN = ["--image_size", "32", "--generated_train_size", "2", "--generated_validation_size", "1",
            "--max_steps", "1", "--eval_strategy", "no", "--save_strategy", "no"]  # fmt: skip


def _previous_run(out: Path) -> Path:
    out.mkdir()
    (out / "config.json").write_text("{}")
    return out


OUTPUT_FOLDERS = {  # how the folder is made, extra options, the message
    "a previous run": (_previous_run, [], r"holds a previous run \(config.json\): pass --overwrite_output_dir true"),
    "overwrite and resume": (_previous_run, ["--overwrite_output_dir", "true", "--resume_from_checkpoint", "last"],
                             "--overwrite_output_dir would delete the checkpoints --resume_from_checkpoint resumes"),
    "a file": (lambda out: out.write_text("x"), [], "is a file, not a folder"),
}


@pytest.mark.parametrize("case", list(OUTPUT_FOLDERS))
def test_a_segmentation_run_refuses_an_output_folder_it_would_overwrite(tmp_path, case):
    # before: train_segmentation.py wrote over a previous run's model and results without a word
    make, extra, message = OUTPUT_FOLDERS[case]
    make(tmp_path / "out")
    before = sorted(os.listdir(tmp_path / "out")) if (tmp_path / "out").is_dir() else None
    with pytest.raises(ValueError, match=message):
        run_segmentation(*parse_segmentation(["--output_dir", str(tmp_path / "out"), *TINY_RUN, *extra]))
    assert (sorted(os.listdir(tmp_path / "out")) if (tmp_path / "out").is_dir() else None) == before


def test_a_segmentation_run_waits_for_no_one_and_writes_nothing_while_another_holds_the_folder(tmp_path):
    with RunLock(tmp_path / "out"):
        with pytest.raises(ValueError, match="is in use by another training run"):
            run_segmentation(*parse_segmentation(["--output_dir", str(tmp_path / "out"), *TINY_RUN]))
        assert os.listdir(tmp_path / "out") == [LOCK_NAME]


# --------------------------------------------------------------------------------------------- 7. run lock files
def _finished_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


HOST = socket.gethostname()
FOREIGN_LOCKS = {  # what is at the lock's path -> the message
    "a folder": (lambda path: path.mkdir(), "is a folder, not a lock a training run writes: remove it if no"),
    "a symlink": (lambda path: path.symlink_to(path.parent / "elsewhere"), "is a symlink, not a lock"),
    "an empty file": (lambda path: path.write_text(""), r"is empty \(a run starting this instant, or one killed"),
    "other contents": (lambda path: path.write_text("hello"), "holds 'hello', not the '<host> <pid>' a training run"),
    "undecodable bytes": (lambda path: path.write_bytes(b"\xff\xfe"), "cannot be read"),
    "a live run": (lambda path: path.write_text(f"{HOST} {os.getpid()}"), f"in use by another training run \\({HOST} "),
    "another machine's run": (lambda path: path.write_text("elsewhere 1"), r"\(elsewhere 1, on another machine,"),
}


@pytest.mark.parametrize("case", list(FOREIGN_LOCKS))
def test_a_lock_path_that_is_no_stale_lock_is_refused_naming_it(tmp_path, case):
    # before: a folder, an unreadable or empty file all read as "in use by another training run ()"
    make, message = FOREIGN_LOCKS[case]
    path = tmp_path / LOCK_NAME
    make(path)
    with pytest.raises(ValueError, match=message):
        RunLock(tmp_path).__enter__()
    assert os.path.lexists(path)  # left for its owner


def test_an_unreadable_lock_file_is_refused_naming_it(tmp_path, monkeypatch):
    (tmp_path / LOCK_NAME).write_text(f"{HOST} 1")
    real = Path.read_text

    def unreadable(path, *args, **kwargs):  # root reads every file: chmod 000 cannot show it here
        if path.name == LOCK_NAME:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", unreadable)
    with pytest.raises(ValueError, match=r"cannot be read \(\[Errno 13\] Permission denied"):
        RunLock(tmp_path).__enter__()


def test_of_two_runs_taking_over_one_stale_lock_at_once_only_one_holds_it(tmp_path, monkeypatch):
    stale = (HOST, _finished_pid())
    (tmp_path / LOCK_NAME).write_text(f"{HOST} {stale[1]}")
    first = RunLock(tmp_path).__enter__()
    try:
        # the second read the stale holder before the first wrote its own: it tries to take over the lock too
        second = RunLock(tmp_path)
        monkeypatch.setattr(second, "_holder", lambda: stale)
        with pytest.raises(ValueError, match="in use by another training run"):
            second.__enter__()
        assert (tmp_path / LOCK_NAME).read_text() == first.owner  # the first still holds it, untouched
    finally:
        first.__exit__(None, None, None)
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_killed_or_zombie_runs_lock_is_taken_over(tmp_path):
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while open(f"/proc/{zombie.pid}/stat").read().rsplit(")", 1)[1].split()[0] != "Z":
            time.sleep(0.01)
        for pid in (_finished_pid(), zombie.pid):
            (tmp_path / LOCK_NAME).write_text(f"{HOST} {pid}")
            with RunLock(tmp_path) as lock:
                assert (tmp_path / LOCK_NAME).read_text() == lock.owner
            assert not (tmp_path / LOCK_NAME).exists()
    finally:
        zombie.wait()
