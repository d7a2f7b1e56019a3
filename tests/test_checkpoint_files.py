"""poolformer_hf.conversion.checkpoint_files: every file is named for what it is, and refused before anything dangerous happens."""

import os
import pickle
import resource
import shutil

import pytest
import torch
from safetensors.torch import save_file

from checkpoint_fixtures import write_deflate_bomb
from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification
from poolformer_hf.conversion.checkpoint_files import (
    MAX_CHECKPOINT_BYTES,
    check_floating,
    identify_checkpoint_file,
    load_state_dict_file,
)
from poolformer_hf.presets import PRESET_NAMES

TENSORS = {"stem.conv.weight": torch.randn(4, 3, 7, 7), "stem.conv.bias": torch.randn(4)}


def test_random_bytes_are_named_as_such_not_as_a_pickle_that_runs_code(tmp_path):
    path = tmp_path / "model.pth"
    path.write_bytes(bytes(range(7, 250)) * 9)
    with pytest.raises(ValueError, match="not a checkpoint file.*random or corrupt") as info:
        load_state_dict_file(path)
    assert "run code" not in str(info.value)


@pytest.mark.parametrize("name", ["weights", "weights.bin", "weights.pth"])
def test_a_safetensors_file_is_read_whatever_its_name(tmp_path, name):
    save_file(TENSORS, tmp_path / name)
    assert identify_checkpoint_file(str(tmp_path / name)) == "safetensors"
    loaded = load_state_dict_file(tmp_path / name)
    assert loaded.keys() == TENSORS.keys() and all(torch.equal(loaded[k], TENSORS[k]) for k in TENSORS)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n", "Git LFS pointer"),
        (b"\x89HDF\r\n\x1a\n" + bytes(100), "HDF5"),
        (b'{"stem.conv.weight": [1, 2]}', "text"),
        (b"PK\x03\x04" + bytes(40), "zip archive that cannot be read"),
    ],
)
def test_other_kinds_of_file_are_named(tmp_path, content, message):
    path = tmp_path / "model.pth"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message):
        load_state_dict_file(path)


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_a_pickle_that_runs_code_is_refused_naming_what_it_imports(tmp_path, monkeypatch, protocol):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"stem.conv.weight": _RunsCode()}, protocol=protocol))
    with pytest.raises(ValueError, match=r"asks to import or run code \(posix\.system\)"):
        load_state_dict_file(path)
    assert not (tmp_path / "PWNED").exists()


def test_a_deflate_bomb_is_refused_from_the_zip_directory_before_inflating(tmp_path):
    path = tmp_path / "bomb.pth"
    write_deflate_bomb(path)  # 1 GiB of tensor data in about 1 MB
    assert os.path.getsize(path) < 2_000_000
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="deflate bomb.*Nothing was inflated"):
        load_state_dict_file(path)
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 256, f"peak memory grew by {grown_mib:.0f} MiB"


def test_a_checkpoint_over_the_size_limit_is_refused_before_loading(tmp_path):
    path = tmp_path / "big.pth"
    torch.save(TENSORS, path)
    with pytest.raises(ValueError, match="declares .* bytes of tensors, more than the 1,000 bytes"):
        load_state_dict_file(path, max_bytes=1000)


def test_the_default_size_limit_covers_8_bytes_per_parameter_of_every_preset():
    largest = 0
    for name in PRESET_NAMES:
        with torch.device("meta"):
            model = PoolFormerForImageClassification(PoolFormerConfig.from_preset(name))
        largest = max(largest, sum(parameter.numel() for parameter in model.parameters()))
    assert 8 * largest <= MAX_CHECKPOINT_BYTES < 1 << 30  # and a 1 GiB tensor is still refused


def test_int8_weights_are_refused_by_name():
    state_dict = {**TENSORS, "stem.conv.weight": torch.zeros(4, 3, 7, 7, dtype=torch.int8)}
    with pytest.raises(ValueError, match="int8.pth holds 1 non-floating tensor.*stem.conv.weight: torch.int8.*Quantized"):
        check_floating(state_dict, "int8.pth")
    check_floating(TENSORS, "float.pth")


def test_the_same_name_with_and_without_the_data_parallel_prefix_is_refused(tmp_path):
    path = tmp_path / "both.pth"
    torch.save({**TENSORS, "module.stem.conv.bias": TENSORS["stem.conv.bias"]}, path)
    with pytest.raises(ValueError, match="'stem.conv.bias' and 'module.stem.conv.bias'"):
        load_state_dict_file(path)
    torch.save({f"module.{k}": v for k, v in TENSORS.items()}, path)  # only prefixed: the usual DDP file
    assert set(load_state_dict_file(path)) == set(TENSORS)


@pytest.mark.parametrize(
    "content, message",
    [
        ({"stem.conv.weight": 3}, "not tensors"),
        ({}, "empty dict"),
        ([torch.zeros(2)], "found list"),
        ({1: torch.zeros(2)}, "keys should be tensor names"),
    ],
)
def test_pickles_that_hold_no_state_dict_are_named(tmp_path, content, message):
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        load_state_dict_file(path)


def test_a_truncated_zip_checkpoint_is_named(tmp_path):
    path = tmp_path / "cut.pth"
    torch.save(TENSORS, path)
    shutil.copyfile(path, tmp_path / "whole.pth")
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_state_dict_file(path)
