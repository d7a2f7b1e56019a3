"""Fuzzing checkpoint conversion: every file either converts or is refused with a ValueError/TypeError naming the problem.

Never a raw internal error, never a file changed outside the output folder, never a staging folder left behind.
The example budget is fixed and the search derandomized, so CI runs the same inputs every time in a few seconds.
"""

import io
import json
import os
import struct
import tempfile
import zipfile

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import save_file

from poolformer_hf.conversion.to_folder import convert_checkpoint

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
VARIANT = "poolformer_s12"
# Names of every format's stem and a few of its layers, plus junk: most dicts get past format detection.
KEYS = ["stem.conv.weight", "stem.conv.bias", "patch_embed.proj.weight", "downsample_layers.0.conv.weight",
        "poolformer.stem.conv.weight", "encoder.patch_embeddings.0.projection.weight", "module.stem.conv.weight",
        "stages.0.blocks.0.norm1.weight", "network.0.0.mlp.fc1.weight", "head.fc.weight", "head.weight",
        "classifier.weight", "norm.weight", "head.norm.weight", "state_dict", "x", ""]
DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.int64, torch.bool,
          torch.uint8, torch.complex64]
SAFETENSORS_DTYPES = ["F32", "F16", "BF16", "F64", "I8", "I64", "BOOL", "U8", "F8_E4M3", "XYZ", "", 3]

shapes = st.lists(st.integers(0, 5), min_size=0, max_size=4)


@st.composite
def state_dicts(draw):
    entries = draw(st.dictionaries(st.sampled_from(KEYS), st.tuples(shapes, st.sampled_from(DTYPES)), max_size=6))
    return {key: torch.zeros(shape, dtype=dtype) for key, (shape, dtype) in entries.items()}


def _torch_bytes(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def _safetensors_bytes(tensors) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "t.safetensors")
        save_file({k: v.contiguous() for k, v in tensors.items()}, path)
        with open(path, "rb") as handle:
            return handle.read()


@st.composite
def odd_safetensors(draw):
    """A safetensors file with a hand-written header: odd dtypes, shapes, offsets, metadata and lengths."""
    header = {}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=3, unique=True)):
        start = draw(st.integers(-2, 64))
        header[key] = {"dtype": draw(st.sampled_from(SAFETENSORS_DTYPES)), "shape": draw(shapes),
                       "data_offsets": [start, start + draw(st.integers(-2, 64))]}
    if draw(st.booleans()):
        header["__metadata__"] = draw(st.sampled_from([{"format": "pt"}, {"format": 3}, [], None]))
    text = json.dumps(header).encode()
    length = len(text) + draw(st.integers(-3, 3))
    return struct.pack("<Q", max(length, 0)) + text + draw(st.binary(max_size=80))


@st.composite
def mutated(draw, base):
    """`base` truncated at a random point or with a few bytes overwritten."""
    data = bytearray(base)
    if draw(st.booleans()):
        return bytes(data[: draw(st.integers(0, len(data)))])
    for _ in range(draw(st.integers(1, 4))):
        data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data)


def _zip_without_data_pkl(names):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")
    return buffer.getvalue()


VALID_TORCH = _torch_bytes({"stem.conv.weight": torch.randn(2, 3, 7, 7), "norm.weight": torch.randn(2)})
VALID_SAFETENSORS = _safetensors_bytes({"stem.conv.weight": torch.randn(2, 3, 7, 7)})

checkpoint_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda prefix, rest: prefix + rest,
              st.sampled_from([b"PK\x03\x04", b"\x80\x02", b"\x80\x05", b"{", b"\x08\x00\x00\x00\x00\x00\x00\x00{"]),
              st.binary(max_size=200)),
    state_dicts().map(_torch_bytes),
    state_dicts().map(lambda sd: _torch_bytes({"model": sd})),
    state_dicts().filter(lambda sd: all(v.dtype != torch.complex64 for v in sd.values())).map(_safetensors_bytes),
    odd_safetensors(),
    mutated(VALID_TORCH),
    mutated(VALID_SAFETENSORS),
    st.lists(st.sampled_from(["a.txt", "archive/version", "data.pkl"]), max_size=3, unique=True).map(_zip_without_data_pkl),
    st.sampled_from([_torch_bytes([1, 2]), _torch_bytes({"stem.conv.weight": 3}), _torch_bytes({1: torch.zeros(1)}),
                     _torch_bytes(torch.zeros(3)), _torch_bytes({})]),
)


def _snapshot(folder):
    return {os.path.relpath(os.path.join(root, name), folder): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(folder) for name in names}


@FUZZ
@given(data=checkpoint_bytes, suffix=st.sampled_from([".pth", ".safetensors", ".bin", ""]))
def test_every_checkpoint_file_converts_or_is_refused_by_name(data, suffix):
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = os.path.join(folder, "model" + suffix)
        with open(checkpoint, "wb") as handle:
            handle.write(data)
        with open(os.path.join(folder, "keep.txt"), "w") as handle:
            handle.write("keep")
        before = _snapshot(folder)
        output = os.path.join(folder, "out")
        try:
            convert_checkpoint(checkpoint, VARIANT, output)
        except (ValueError, TypeError) as error:
            message = str(error)
            assert checkpoint in message or "checkpoint" in message.lower(), message
            assert not os.path.exists(output)
        after = _snapshot(folder)
        assert {name: content for name, content in after.items() if not name.startswith("out" + os.sep)} == before
        assert not [name for name in os.listdir(folder) if name.startswith(".converting-")]
