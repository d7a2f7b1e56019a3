"""What we write follows the umask, as `open()` and `os.makedirs` do: 0644 files and 0755 folders under umask 022,
0600 and 0700 under 077. safetensors writes weights 0600 and mkdtemp makes staging folders 0700, so without this a
saved or exported folder shared with other users would be unreadable to them."""

import os
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from conftest import tiny_config
from poolformer_hf import PoolFormerForImageClassification
from poolformer_hf.export.artefact import write_atomically
from poolformer_hf.files import current_umask, follow_umask
from poolformer_hf.hub.output_folders import new_staging_folder, publish


@pytest.fixture(params=[0o022, 0o077, 0o002], ids=lambda mask: f"umask{mask:03o}")
def umask(request):
    previous = os.umask(request.param)
    yield request.param
    os.umask(previous)


def modes(folder: Path) -> dict[str, int]:
    return {str(path.relative_to(folder)): stat.S_IMODE(path.lstat().st_mode)
            for path in [folder, *folder.rglob("*")] if not path.is_symlink()}


def expected_modes(folder: Path, mask: int) -> dict[str, int]:
    return {str(path.relative_to(folder)): (0o777 if path.is_dir() else 0o666) & ~mask
            for path in [folder, *folder.rglob("*")] if not path.is_symlink()}


def test_current_umask_reads_the_process_umask_without_changing_it(umask):
    assert current_umask() == umask
    assert current_umask() == umask


@pytest.mark.parametrize("over_an_earlier_save", [False, True])
def test_save_pretrained_writes_the_weights_with_the_umask_modes(tmp_path, umask, over_an_earlier_save):
    model = PoolFormerForImageClassification(tiny_config())
    folder = tmp_path / "saved"
    if over_an_earlier_save:
        model.save_pretrained(folder)
    model.save_pretrained(folder)
    assert (folder / "model.safetensors").is_file()
    assert modes(folder) == expected_modes(folder, umask)


def test_a_published_staging_folder_has_the_umask_modes(tmp_path, umask):
    output_dir = str(tmp_path / "converted")
    staging = new_staging_folder(output_dir)
    save_file({"weight": torch.zeros(2)}, os.path.join(staging, "model.safetensors"))
    publish(staging, output_dir)
    assert modes(Path(output_dir)) == expected_modes(Path(output_dir), umask)


def test_an_exported_folder_has_the_umask_modes(tmp_path, umask):
    def write(folder: Path):
        (folder / "program").mkdir()
        save_file({"weight": torch.zeros(2)}, str(folder / "program" / "model.safetensors"))

    write_atomically(tmp_path / "exported", write)
    assert modes(tmp_path / "exported") == expected_modes(tmp_path / "exported", umask)


def test_follow_umask_leaves_a_symlinks_target_alone(tmp_path, umask):
    outside = tmp_path / "outside.txt"
    outside.write_text("theirs")
    outside.chmod(0o600)
    folder = tmp_path / "ours"
    folder.mkdir()
    (folder / "link").symlink_to(outside)
    follow_umask(folder)
    assert stat.S_IMODE(outside.stat().st_mode) == 0o600
