"""WebDataset tar shards: shard patterns (`train-{000000..000007}.tar`), the per-shard sample index, and reading a
shard's samples as lazy references, so a skipped sample costs a tar header, never an image read or decode.

A sample is the run of consecutive tar members sharing a key (the member name up to its first dot): one image
(`.jpg`, `.jpeg`, `.png`, `.webp`) and a `.cls` member holding the integer label as text, as in the Hub's
`timm/imagenet-12k-wds`; other members (`.json`, ...) are ignored.
"""

import glob
import hashlib
import json
import logging
import os
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = ("jpg", "jpeg", "png", "webp")
LABEL_SUFFIX = "cls"
# Written by scripts/make_shards.py beside the shards: the class names, a JSON list indexed by label.
LABEL_NAMES_FILE = "label_names.json"
CORRUPT_POLICIES = ("stop", "skip")

_BRACE = re.compile(r"\{(\d+)\.\.(\d+)\}")


def expand_braces(pattern: str) -> list[str]:
    """`a-{000..002}.tar` -> a-000.tar, a-001.tar, a-002.tar (webdataset's braceexpand for number ranges: the
    width of the first bound is kept as zero padding); several ranges expand as a product, in order."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    first, last = match.group(1), match.group(2)
    if int(last) < int(first):
        raise ValueError(f"shard pattern {pattern!r}: the range {{{first}..{last}}} counts down")
    width = len(first)
    head, tail = pattern[: match.start()], pattern[match.end():]
    return [head + str(n).zfill(width) + rest for n in range(int(first), int(last) + 1) for rest in expand_braces(tail)]


def list_shards(pattern: str) -> list[str]:
    """The shard files a `--train_shards` pattern names: a brace range, a glob (`dir/*.tar`) or one file.

    Every file a brace range names must exist (a missing one is a partial copy, not a smaller dataset).
    """
    if _BRACE.search(pattern):
        paths = expand_braces(pattern)
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise ValueError(
                f"shard pattern {pattern!r} names {len(paths)} files, {len(missing)} of them missing "
                f"(first: {missing[0]})"
            )
        return paths
    paths = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern] if os.path.isfile(pattern) else []
    if not paths:
        raise ValueError(
            f"shard pattern {pattern!r} matches no file; give e.g. 'dir/train-{{000000..000007}}.tar' or 'dir/*.tar'"
        )
    return paths


@dataclass(frozen=True)
class SampleRef:
    """One sample as a reference into its shard: the image is read (and decoded) only when it is used."""

    shard: str
    key: str
    image_offset: int
    image_size: int
    label: int

    def read_image(self) -> dict:
        """The image as a `datasets`-style undecoded dict, which `open_image` decodes."""
        with open(self.shard, "rb") as file:
            file.seek(self.image_offset)
            return {"bytes": file.read(self.image_size), "path": f"{self.shard}:{self.key}"}


class CorruptShardError(ValueError):
    pass


def _sample_key(name: str) -> tuple[str, str]:
    directory, base = os.path.split(name)
    stem, _, suffix = base.partition(".")
    return os.path.join(directory, stem), suffix.lower()


def iter_shard(path: str, skip: int = 0) -> Iterator[SampleRef]:
    """The samples of one shard in tar order, the first `skip` passed over (their labels are still read: the
    `.cls` members are tens of bytes)."""
    file_size = os.path.getsize(path)
    try:
        archive = tarfile.open(path, "r:")
    except (tarfile.TarError, OSError) as error:
        raise CorruptShardError(f"shard {path} is not a readable tar file: {error}") from error
    end = 0
    with archive:
        group_key, members = None, {}
        index = 0
        try:
            for member in archive:
                end = member.offset_data + member.size
                if end > file_size:
                    raise CorruptShardError(f"shard {path} is truncated: member {member.name} runs past its end")
                if not member.isfile():
                    continue
                key, suffix = _sample_key(member.name)
                if key != group_key and group_key is not None:
                    sample = _sample(path, group_key, members, archive, index >= skip)
                    index += 1
                    if sample is not None:
                        yield sample
                    members = {}
                group_key = key
                members[suffix] = member
        except (tarfile.TarError, OSError, EOFError) as error:
            raise CorruptShardError(f"shard {path} is corrupt: {error}") from error
        if group_key is not None:
            sample = _sample(path, group_key, members, archive, index >= skip)
            if sample is not None:
                yield sample
    _check_end_of_archive(path, end, file_size)


def _sample(path, key, members, archive, wanted: bool) -> SampleRef | None:
    """The group's SampleRef (None when `wanted` is false: a skipped sample is checked but its label not read)."""
    image = next((members[s] for s in IMAGE_SUFFIXES if s in members), None)
    if image is None or LABEL_SUFFIX not in members:
        raise CorruptShardError(
            f"shard {path}: sample {key!r} has members {sorted(members)}; a sample needs one image "
            f"({', '.join(IMAGE_SUFFIXES)}) and a .{LABEL_SUFFIX} label"
        )
    if not wanted:
        return None
    text = archive.extractfile(members[LABEL_SUFFIX]).read().decode("utf-8", "replace").strip()
    try:
        label = int(text)
    except ValueError:
        raise CorruptShardError(f"shard {path}: sample {key!r} has label {text!r}, not an integer") from None
    return SampleRef(path, key, image.offset_data, image.size, label)


def _check_end_of_archive(path: str, end: int, file_size: int) -> None:
    """tarfile stops quietly at a file cut between two members; a complete tar ends with a zero block after the
    last member's data (padded to 512 bytes), so its absence is a truncated copy."""
    start = -(-end // 512) * 512
    with open(path, "rb") as file:
        file.seek(start)
        block = file.read(512)
    if len(block) < 512 or any(block):
        raise CorruptShardError(f"shard {path} is truncated: it lacks the end-of-archive block ({file_size} bytes)")


@dataclass
class ShardIndex:
    """The usable shards, their sample counts and the label count, read once before training."""

    shards: list[str]
    counts: list[int]
    num_labels: int
    skipped: list[str]

    @property
    def num_samples(self) -> int:
        return sum(self.counts)


# The index of a shard (its sample count and largest label) is kept after its first read, so a restart or a resumed
# run does not read every tar header again (about 7,300 samples/s here: half an hour for 12M samples). An entry is
# keyed by the shard's absolute path, size and modification time: a shard rewritten or replaced is read again.
INDEX_CACHE_ENV = "POOLFORMER_HF_SHARD_INDEX_CACHE"


def default_index_cache() -> Path:
    """Where shard indexes are kept: $POOLFORMER_HF_SHARD_INDEX_CACHE, else `poolformer_hf/shard_index` under
    huggingface_hub's cache home (HF_HOME)."""
    if os.environ.get(INDEX_CACHE_ENV):
        return Path(os.environ[INDEX_CACHE_ENV])
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "poolformer_hf" / "shard_index"


def _cache_entry(cache: Path, path: str) -> Path:
    stat = os.stat(path)
    identity = f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}"
    return cache / (hashlib.sha256(identity.encode()).hexdigest() + ".json")


def _read_cached(entry: Path) -> tuple[int, int] | None:
    try:
        value = json.loads(entry.read_text(encoding="utf-8"))
        return int(value["count"]), int(value["max_label"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent, or unreadable: the shard is read again


def _write_cached(entry: Path, count: int, max_label: int) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        partial = entry.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps({"count": count, "max_label": max_label}), encoding="utf-8")
        os.replace(partial, entry)  # whole or absent: processes indexing the same shard at once may both write
    except OSError as error:  # a read-only cache costs the next start a re-read, nothing else
        logger.debug("shard index cache %s not written: %s", entry, error)


def _shard_summary(path: str, cache: Path | None) -> tuple[int, int]:
    """(sample count, largest label) of one shard, from the cache where it holds this version of the shard."""
    entry = _cache_entry(cache, path) if cache is not None else None
    cached = _read_cached(entry) if entry is not None else None
    if cached is not None:
        return cached
    labels = [sample.label for sample in iter_shard(path)]
    if not labels:
        raise ValueError(f"shard {path} holds no sample")
    if entry is not None:
        _write_cached(entry, len(labels), max(labels))
    return len(labels), max(labels)


def index_shards(paths: list[str], corrupt: str = "stop", cache: Path | str | None | bool = True) -> ShardIndex:
    """Read every shard's tar headers and labels (no image): counts samples and finds corrupt shards, which stop
    the run (`corrupt="stop"`) or are left out with a warning that counts them (`"skip"`).

    `cache`: where each shard's count is kept for the next start (True: `default_index_cache()`; False or None:
    nothing kept, every shard read). A corrupt shard is never cached: it is found again at every start."""
    if corrupt not in CORRUPT_POLICIES:
        raise ValueError(f"--corrupt_shards must be one of {CORRUPT_POLICIES}, got {corrupt!r}")
    cache = default_index_cache() if cache is True else Path(cache) if cache else None
    shards, counts, skipped, max_label = [], [], [], -1
    for path in paths:
        try:
            count, largest = _shard_summary(path, cache)
        except CorruptShardError as error:
            if corrupt == "stop":
                raise CorruptShardError(f"{error} (--corrupt_shards skip leaves such shards out)") from error
            logger.warning("skipping corrupt shard: %s", error)
            skipped.append(path)
            continue
        shards.append(path)
        counts.append(count)
        max_label = max(max_label, largest)
    if skipped:
        logger.warning("--corrupt_shards skip: left out %d of %d shards", len(skipped), len(paths))
    if not shards:
        raise ValueError(f"no usable shard: all {len(paths)} are corrupt")
    return ShardIndex(shards, counts, max_label + 1, skipped)


def shard_label_names(shards: list[str], num_labels: int) -> list[str]:
    """Class names from the label_names.json beside the first shard, else "0", "1", ..."""
    names_file = Path(shards[0]).parent / LABEL_NAMES_FILE
    if not names_file.is_file():
        return [str(i) for i in range(num_labels)]
    names = json.loads(names_file.read_text(encoding="utf-8"))
    if len(names) < num_labels:
        raise ValueError(f"{names_file} names {len(names)} classes but the shards have labels up to {num_labels - 1}")
    return list(names)
