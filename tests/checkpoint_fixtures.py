"""Hostile checkpoint files for the tests of `poolformer_hf.conversion.checkpoint_files` and `poolformer_hf.conversion.to_folder`."""

import io
import zipfile
import zlib

import torch


def write_deflate_bomb(path, inflated_bytes: int = 1 << 30) -> None:
    """A real PyTorch zip checkpoint whose tensor entry inflates to `inflated_bytes` of zeros from about 1 MB.

    The deflate stream is one compressed 1 MiB block of zeros repeated (a full flush resets the compressor, so every
    block compresses identically); zipfile still computes the true CRC and size, so torch.load would inflate it whole.
    """
    chunk = b"\0" * (1 << 20)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = compressor.compress(chunk) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = zlib.compressobj(9, zlib.DEFLATED, -15).flush()

    class RepeatedBlock:
        def compress(self, data):
            return block

        def flush(self):
            return final

    buffer = io.BytesIO()
    torch.save({"stem.conv.weight": torch.zeros(4)}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    original = zipfile._get_compressor
    with zipfile.ZipFile(path, "w") as out:
        for info in source.infolist():
            if not info.filename.endswith("/data/0"):
                out.writestr(info, source.read(info.filename))
                continue
            entry = zipfile.ZipInfo(info.filename)
            entry.compress_type = zipfile.ZIP_DEFLATED
            zipfile._get_compressor = lambda *args, **kwargs: RepeatedBlock()
            try:
                with out.open(entry, "w") as handle:
                    for _ in range(inflated_bytes // len(chunk)):
                        handle.write(chunk)
            finally:
                zipfile._get_compressor = original
