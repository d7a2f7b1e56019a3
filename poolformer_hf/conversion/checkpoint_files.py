"""Reading foreign checkpoint files safely: say what a file is before loading it, and load nothing that would run code.

A file is identified by its first bytes, not its name: a safetensors file without its extension is still read as
safetensors, and random bytes, a Git LFS pointer or a Keras HDF5 file are named for what they are instead of being
handed to the unpickler. A PyTorch zip checkpoint is checked from its zip central directory (metadata only) before
`torch.load` inflates anything, so a deflate bomb (a huge tensor in a tiny compressed file) is refused unread.
"""

from __future__ import annotations

import argparse
import json
import os
import pickletools
import struct
import zipfile

import torch

# safetensors refuses headers above 100 MB itself; a larger length field means the file is something else.
_SAFETENSORS_MAX_HEADER = 100_000_000
# torch.save writes its zip entries uncompressed; a compressed entry that inflates this much is not one of its files.
_MAX_INFLATION_RATIO = 20
_SMALL_ENTRY = 1 << 20
# The largest checkpoint read unasked: 8 bytes (float32 weights plus their EMA copy, or float64 weights) for each of
# the 96.8 M parameters of the largest preset, rounded up (tests/test_checkpoint_files.py checks it still covers them).
MAX_CHECKPOINT_BYTES = 1_000_000_000
_TRAINING_WRAPPERS = ("state_dict", "model", "model_ema", "state_dict_ema")
# timm's training script (which sail-sg/poolformer's and sail-sg/metaformer's train.py follow) saves its argparse
# arguments beside the weights. A Namespace only takes attributes, which the weights-only unpickler still restricts to
# plain values: loading one runs no code.
_TRAINING_GLOBALS = (argparse.Namespace,)
_TRAINING_GLOBAL_NAMES = tuple(f"{kind.__module__}.{kind.__qualname__}" for kind in _TRAINING_GLOBALS)
_DATA_PARALLEL_PREFIX = "module."


def identify_checkpoint_file(path: str) -> str:
    """"safetensors", "torch-zip" or "pickle" from the file's first bytes; a ValueError naming anything else."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as error:
        raise ValueError(f"{path} could not be read: {error.strerror or error}") from error
    if size == 0:
        raise ValueError(f"{path} is empty (0 bytes): not a checkpoint")
    if len(head) >= 9:
        (header_length,) = struct.unpack("<Q", head[:8])
        if head[8:9] == b"{" and 2 <= header_length <= min(_SAFETENSORS_MAX_HEADER, size - 8):
            return "safetensors"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "torch-zip"
    if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:  # pickle protocol 2-5 (torch's legacy format)
        return "pickle"
    raise ValueError(f"{path} is not a checkpoint file: {_describe_other(head)}")


def _describe_other(head: bytes) -> str:
    known = [
        (b"version https://git-lfs", "it is a Git LFS pointer, not the file itself (run `git lfs pull`)"),
        (b"\x89HDF", "it is an HDF5 file (Keras/TensorFlow weights), not a PyTorch or safetensors checkpoint"),
        (b"\x1f\x8b", "it is gzip-compressed: decompress it first"),
        (b"\x93NUMPY", "it is a NumPy .npy array, not a state dict"),
        (b"\x08", "it looks like a protobuf file (ONNX or TensorFlow), not a state dict"),
    ]
    for magic, description in known:
        if head.startswith(magic):
            return description
    if head.lstrip()[:1] in (b"{", b"["):
        return "it is text (JSON?), not a state dict"
    if head.startswith(b"PK"):
        return "it starts like a zip archive but is not a readable one (truncated or corrupt?)"
    return (
        f"its first bytes ({head[:8].hex(' ')}) are neither a safetensors header, a PyTorch zip archive nor a pickle "
        "(random or corrupt data?)"
    )


def check_torch_zip(path: str, max_bytes: int) -> None:
    """Refuse a zip that is no PyTorch checkpoint, or whose entries would inflate past `max_bytes`, reading metadata only."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path} is a zip archive that cannot be read (truncated or corrupt?): {error}") from error
    names = [entry.filename for entry in entries]
    if not any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
        raise ValueError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl; it holds {names[:5]})")
    for entry in entries:
        inflated, stored = entry.file_size, max(entry.compress_size, 1)
        if entry.compress_type != zipfile.ZIP_STORED and inflated > _SMALL_ENTRY and inflated > _MAX_INFLATION_RATIO * stored:
            raise ValueError(
                f"Refused {path}: its entry {entry.filename!r} inflates from {stored:,} to {inflated:,} bytes "
                f"(×{inflated // stored:,}), which no torch.save writes (a deflate bomb?). Nothing was inflated."
            )
    total = sum(entry.file_size for entry in entries)
    if total > max_bytes:
        raise ValueError(
            f"Refused {path}: it declares {total:,} bytes of tensors, more than the {max_bytes:,} bytes the largest "
            "preset needs (8 bytes per parameter). Nothing was inflated. If the file is genuine (e.g. a training "
            "checkpoint with optimizer state), raise the limit (max_bytes / --max_checkpoint_bytes)."
        )


def _load_safetensors(path: str, max_bytes: int) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if os.path.getsize(path) > max_bytes:
        raise ValueError(
            f"Refused {path}: {os.path.getsize(path):,} bytes, more than the {max_bytes:,} bytes the largest preset "
            "needs; raise the limit (max_bytes / --max_checkpoint_bytes) if the file is genuine"
        )
    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path} is not a readable safetensors file (truncated or corrupt?): {error}") from error


# What torch's weights-only unpickler says when a pickle asks for a global or a call it does not allow.
_ASKS_TO_RUN_CODE = ("unsupported GLOBAL", "Unsupported global", "call reduce for unrecognized function",
                     "Can only create new object", "Can only build Tensor")


def _load_pickled(path: str) -> object:
    try:
        with torch.serialization.safe_globals(list(_TRAINING_GLOBALS)):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, EOFError, ...
        text = str(error)
        imports = _foreign_imports(path)
        if imports or any(phrase in text for phrase in _ASKS_TO_RUN_CODE):
            named = f" ({', '.join(imports[:3])})" if imports else ""
            raise ValueError(
                f"Refused to load {path}: it is a pickle that asks to import or run code{named} "
                "(torch.load with weights_only=True refused it; nothing was executed). Convert it to a plain "
                "state dict or safetensors from a trusted source."
            ) from error
        if "Weights only load failed" in text:
            reason = _unpickler_reason(text)
        else:  # an EOFError, say, may have no message at all
            reason = text.strip().splitlines()[-1] if text.strip() else type(error).__name__
        raise ValueError(
            f"{path} could not be read as a PyTorch checkpoint (truncated or corrupt pickle?): {reason}"
        ) from error


def _foreign_imports(path: str) -> list[str]:
    """Globals other than torch's, collections' and a training run's arguments that a plain pickle file imports, read
    from its opcodes only.

    pickletools decodes opcodes without executing any: it finds what a pickle torch cannot parse (protocol 4+
    framing, say) would have imported.
    """
    found, strings = [], []
    try:
        with open(path, "rb") as handle:
            for opcode, argument, _ in pickletools.genops(handle):
                if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE", "BINUNICODE8"):
                    strings = [*strings[-1:], argument]
                elif opcode.name in ("GLOBAL", "INST"):
                    found.append(argument.replace(" ", "."))
                elif opcode.name == "STACK_GLOBAL" and len(strings) == 2:
                    found.append(".".join(strings))
                elif opcode.name == "STOP":
                    break
    except Exception:  # noqa: BLE001 - a corrupt stream: report what was decoded before it
        pass
    return [name for name in found
            if not name.startswith(("torch.", "collections.")) and name not in _TRAINING_GLOBAL_NAMES]


def _unpickler_reason(text: str) -> str:
    # The weights-only message buries its reason (e.g. "Unsupported operand 102") among advice lines.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Weights only load failed", "Please file", "Check the"))]
    return reasons[-1] if reasons else lines[-1]


def unwrap_state_dict(loaded: object, path: str) -> dict:
    """The tensors of a loaded checkpoint: training wrappers and DataParallel's `module.` prefix removed, checked."""
    # Training checkpoints wrap the weights: {"state_dict": ...}, {"model": ...} or {"model_ema": ...}, beside the
    # epoch, optimizer state, arguments (timm, sail-sg) or `meta` (mmdet / mmseg), which are left out.
    for wrapper in _TRAINING_WRAPPERS:
        if isinstance(loaded, dict) and isinstance(loaded.get(wrapper), dict):
            loaded = loaded[wrapper]
            break
    if not isinstance(loaded, dict) or not loaded:
        found = "an empty dict" if isinstance(loaded, dict) else type(loaded).__name__
        raise ValueError(f"{path} holds no state dict of tensors (found {found})")
    not_named = [key for key in loaded if not isinstance(key, str)]
    if not_named:
        raise ValueError(f"{path} is not a state dict: its keys should be tensor names, found {not_named[:3]!r}")
    not_tensors = {key: type(value).__name__ for key, value in loaded.items() if not isinstance(value, torch.Tensor)}
    if not_tensors:
        sample = ", ".join(f"{key}: {kind}" for key, kind in list(not_tensors.items())[:3])
        raise ValueError(f"{path} holds no state dict of tensors ({len(not_tensors)} value(s) are not tensors: {sample})")
    # Checkpoints saved from DataParallel / DistributedDataParallel prefix every key; a file holding both a prefixed
    # and an unprefixed copy of one name is ambiguous, and keeping either would hide the other.
    renamed: dict[str, torch.Tensor] = {}
    origin: dict[str, str] = {}
    for key, tensor in loaded.items():
        name = key.removeprefix(_DATA_PARALLEL_PREFIX)
        if name in renamed:
            raise ValueError(
                f"{path} holds {origin[name]!r} and {key!r}, which both name the tensor {name!r} (DataParallel's "
                "'module.' prefix removed): keep one of them in the file"
            )
        renamed[name], origin[name] = tensor, key
    return renamed


def check_floating(state_dict: dict, path: str) -> None:
    """PoolFormer/MetaFormer weights are all floating point: name the tensors that are not (e.g. int8, quantized)."""
    not_float = {key: str(value.dtype) for key, value in state_dict.items() if not value.is_floating_point()}
    if not_float:
        sample = ", ".join(f"{key}: {dtype}" for key, dtype in list(not_float.items())[:3])
        raise ValueError(
            f"{path} holds {len(not_float)} non-floating tensor(s) ({sample}): PoolFormer/MetaFormer weights are all "
            "floating point. Quantized (int8) checkpoints are not supported: dequantize them first."
        )


def load_state_dict_file(path: str, max_bytes: int | None = None) -> dict:
    """Tensors of a safetensors, PyTorch zip or legacy PyTorch pickle file, whatever its name says.

    Nothing pickled is executed (weights_only=True). A file that is something else (random bytes, a Git LFS pointer,
    HDF5, ...), truncated, a deflate bomb, larger than `max_bytes` (default `MAX_CHECKPOINT_BYTES`), a
    pickle that asks to run code, or one that holds no state dict of tensors raises a ValueError saying so.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ValueError(f"No checkpoint file at {path}")
    max_bytes = MAX_CHECKPOINT_BYTES if max_bytes is None else max_bytes
    kind = identify_checkpoint_file(path)
    if kind == "safetensors":
        return unwrap_state_dict(_load_safetensors(path, max_bytes), path)
    if kind == "torch-zip":
        check_torch_zip(path, max_bytes)
    elif os.path.getsize(path) > max_bytes:  # a legacy pickle stores its tensors raw after the pickle
        raise ValueError(f"Refused {path}: {os.path.getsize(path):,} bytes, more than the limit of {max_bytes:,}")
    return unwrap_state_dict(_load_pickled(path), path)


def safetensors_shapes(path: str) -> dict[str, list[int]]:
    """Tensor name → shape from a safetensors file's header, reading no tensor data; ValueError if unreadable."""
    from safetensors import safe_open

    try:
        with safe_open(os.fspath(path), framework="pt") as handle:
            return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for bad headers
        raise ValueError(f"{os.path.basename(path)} is not a readable safetensors file ({error})") from error


def read_json_object(path: str) -> dict:
    """A JSON file that must hold an object; ValueError naming the file otherwise."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"{os.path.basename(path)} is not readable JSON ({error})") from error
    if not isinstance(data, dict):
        raise ValueError(f"{os.path.basename(path)} should hold a JSON object, found {type(data).__name__}")
    return data
