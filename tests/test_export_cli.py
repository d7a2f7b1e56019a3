"""scripts/export.py as a careless or hostile user drives it: every refusal is one line on stderr with exit status 2,
before anything is read or written, and nothing the tool did not write is ever deleted."""

import importlib.util
import json
import os
import re
import stat
from pathlib import Path

import pytest

from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification

ROOT = Path(__file__).resolve().parents[1]
SPEC = importlib.util.spec_from_file_location("export_cli", ROOT / "scripts" / "export.py")
export_cli = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(export_cli)


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """tmp/work (the working directory) holding model/ (a saved tiny classifier) and notes/ (a user's folder)."""
    work = tmp_path / "work"
    model = work / "model"
    config = PoolFormerConfig(depths=[1, 1, 1, 1], hidden_sizes=[8, 8, 16, 16], num_labels=3)
    PoolFormerForImageClassification(config).save_pretrained(model)
    notes = work / "notes"
    notes.mkdir()
    (notes / "thesis.txt").write_text("years of work")
    (work / "a_file").write_text("not a folder")
    os.symlink(notes, work / "link")
    (work / "weightless").mkdir()
    config.save_pretrained(work / "weightless")
    (work / "other_model").mkdir()
    (work / "other_model" / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    monkeypatch.chdir(work)
    return work


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*"))
            if path.is_file() and not path.is_symlink()}


# (arguments, a phrase the one-line error must contain)
REFUSALS = [
    (["model", "--format", "pt2", "--output", "notes", "--overwrite"], "not the output of an earlier conversion or export"),
    (["model", "--format", "pt2", "--output", "notes"], "exists and is not empty"),
    (["model", "--format", "pt2", "--output", "model", "--overwrite"], "it holds the input file"),
    (["model/", "--format", "pt2", "--output", ".", "--overwrite"], "it holds the working directory"),
    (["model", "--format", "pt2", "--output", "..", "--overwrite"], "it holds the working directory"),
    (["model", "--format", "pt2", "--output", "link", "--overwrite"], "is a symlink"),
    (["model", "--format", "pt2", "--output", "a_file", "--overwrite"], "exists and is not a folder"),
    (["model", "--format", "pt2", "--output", "model/exported"], "inside the source model folder"),
    (["no/such/folder", "--format", "pt2", "--output", "out"], "no/such/folder"),
    (["weightless", "--format", "pt2", "--output", "out"], "weightless"),
    (["other_model", "--format", "pt2", "--output", "out"], "bert"),
    (["model", "--format", "pt2", "--photos", "1", "--output", "out"], "--photos must be at least 2"),
    (["--format", "pt2", "--output", "out"], "exactly one of a model folder"),
]


@pytest.mark.parametrize("arguments, phrase", REFUSALS, ids=[" ".join(case[0]) for case in REFUSALS])
def test_a_refusal_is_one_line_with_status_2_and_loses_nothing(workspace, capsys, arguments, phrase):
    before = snapshot(workspace.parent)
    try:
        status = export_cli.main(arguments)
    except SystemExit as exit:  # argparse's own usage errors
        status = exit.code
    error = capsys.readouterr().err.strip()
    assert status == 2
    assert phrase in error, error
    assert len(error.splitlines()) == 1 or error.startswith("usage:"), error
    assert snapshot(workspace.parent) == before
    assert not (workspace / "out").exists()
    assert [name for name in os.listdir(workspace) if name.startswith(".")] == []


def test_an_export_is_written_whole_and_may_replace_only_its_own_earlier_output(workspace, capsys):
    assert export_cli.main(["model", "--format", "pt2", "--photos", "2", "--output", "exported"]) == 0
    first = snapshot(workspace / "exported")
    assert "model.pt2" in first and "export_report.json" in first
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((workspace / "exported").stat().st_mode) == 0o777 & ~mask
    assert export_cli.main(["model", "--format", "pt2", "--photos", "2", "--output", "exported", "--overwrite"]) == 0
    assert set(snapshot(workspace / "exported")) == set(first)
    (workspace / "exported" / "my_notes.txt").write_text("added by the user")  # no longer only what it wrote
    assert export_cli.main(["model", "--format", "pt2", "--output", "exported", "--overwrite"]) == 2
    assert "files that no conversion or export wrote (my_notes.txt)" in capsys.readouterr().err
    assert (workspace / "exported" / "my_notes.txt").read_text() == "added by the user"
    assert [name for name in os.listdir(workspace) if name.startswith(".")] == []


def test_bfloat16_is_refused_in_one_line_for_formats_that_cannot_run_it(workspace, capsys):
    for format in ("onnx", "executorch"):
        assert export_cli.main(["model", "--format", format, "--dtype", "bfloat16", "--output", "out"]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and f"{format} cannot be exported in bfloat16" in error, error
        assert "bfloat16 as openvino, pt2" in error
    assert not (workspace / "out").exists()


def test_a_bfloat16_pt2_folder_states_its_input_dtype_and_shapes_and_its_loader_checks_them(workspace):
    import torch

    from poolformer_hf.export.loading import load_export

    assert export_cli.main(["model", "--format", "pt2", "--dtype", "bfloat16", "--photos", "2", "--output", "bf16"]) == 0
    report = json.loads((workspace / "bf16" / "export_report.json").read_text())
    assert report["dtype"] == report["input_dtype"] == "bfloat16"
    assert report["accepted_shapes"] == {"batch": {"min": 1, "max": None}, "channels": 3,
                                         "height": {"min": 35, "max": None}, "width": {"min": 35, "max": None}}
    program = load_export(workspace / "bf16", trust_remote_code=True)
    logits = program(pixel_values=torch.randn(1, 3, 35, 36)).logits  # float32 pixels, cast as the report says
    assert logits.dtype == torch.bfloat16 and logits.shape == (1, 3)
    for shape in [(1, 3, 33, 47), (1, 3, 7, 7), (1, 3, 35, 34), (2, 1, 64, 64)]:
        with pytest.raises(ValueError, match=rf"shape {re.escape(str(shape))} is outside .* height 35\.\.∞, width 35"):
            program(pixel_values=torch.randn(shape))
