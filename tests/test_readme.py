"""The python blocks of README.md and of each docs/*.md file run as pasted: per file, in order, in one fresh
interpreter sharing one namespace, in an empty working directory, offline. A block that needs the Hub is marked
`<!-- readme-test: skip (why) -->` on the line before its fence, and the block right after it is its offline twin.
Also: README.md stays a short guide (MAX_README_LINES), and no page names a commit hash or an issue number."""

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 250
MIN_README_BLOCKS = 5  # README.md's python blocks that run; a docs page needs at least one to be run at all
SKIP_MARKER = re.compile(r"^<!-- readme-test: skip \((?P<reason>[^)]+)\) -->$")
MAX_SKIPPED = 2  # skipped blocks stay few: each is a snippet a user cannot check offline
OFFLINE_TWIN = "# Offline"  # how the block after a skipped one starts

# Runs each block with the page as its file name and its line numbers, so a traceback points at the page.
DRIVER = """
import json, sys
namespace = {"__name__": "__main__"}
for block in json.load(open(sys.argv[1], encoding="utf-8")):
    exec(compile("\\n" * (block["line"] - 1) + block["code"], sys.argv[2], "exec"), namespace)
    print(f"ran the block at line {block['line']}", flush=True)
"""


@dataclass
class Block:
    language: str
    line: int  # of the block's first code line
    code: str
    skip: str | None  # the reason given by a skip marker, or None


def readme_blocks(text: str) -> list[Block]:
    """The fenced code blocks of `text`, each with the skip marker on the line before its fence, if any. A skip
    marker anywhere else (a blank line before the fence, or no fence) would be silently ignored: it is refused."""
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        line = lines[index]
        if SKIP_MARKER.match(line) and not (index + 1 < len(lines) and lines[index + 1].startswith("```python")):
            raise ValueError(f"README.md:{index + 1}: a skip marker must be the line right before a ```python fence")
        if not line.startswith("```"):
            index += 1
            continue
        start = index
        index += 1
        while index < len(lines) and lines[index] != "```":
            index += 1
        if index == len(lines):
            raise ValueError(f"README.md:{start + 1}: the code block opened here is never closed")
        marker = SKIP_MARKER.match(lines[start - 1]) if start else None
        blocks.append(Block(line[3:].strip(), start + 2, "\n".join(lines[start + 1:index]) + "\n",
                            marker["reason"] if marker else None))
        index += 1
    return blocks


def python_blocks(page: Path = README) -> list[Block]:
    return [block for block in readme_blocks(page.read_text(encoding="utf-8")) if block.language == "python"]


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


PAGES_WITH_CODE = [page for page in PAGES if python_blocks(page)]


def test_the_parser_finds_blocks_markers_and_refuses_a_detached_marker():
    text = ("text\n```bash\nls\n```\n<!-- readme-test: skip (needs the Hub) -->\n```python\na = 1\n```\n\n"
            "```python\n# Offline\nb = a\n```\n")
    blocks = readme_blocks(text)
    assert [(b.language, b.line, b.code, b.skip) for b in blocks] == [
        ("bash", 3, "ls\n", None), ("python", 7, "a = 1\n", "needs the Hub"), ("python", 11, "# Offline\nb = a\n", None)]
    with pytest.raises(ValueError, match="README.md:1: a skip marker must be the line right before"):
        readme_blocks("<!-- readme-test: skip (needs the Hub) -->\n\n```python\na = 1\n```\n")
    with pytest.raises(ValueError, match="README.md:2: the code block opened here is never closed"):
        readme_blocks("text\n```python\na = 1\n")


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=name)
def test_skipped_blocks_are_few_and_each_is_followed_by_its_offline_twin(page):
    blocks = python_blocks(page)
    skipped = [index for index, block in enumerate(blocks) if block.skip]
    assert len(skipped) <= MAX_SKIPPED, (
        f"{len(skipped)} blocks of {name(page)} are skipped (lines {[blocks[i].line for i in skipped]}); keep at most "
        f"{MAX_SKIPPED}: give a block an offline form instead")
    for index in skipped:
        compile(blocks[index].code, f"{name(page)}:{blocks[index].line}", "exec")  # not run, but valid Python
        twin = blocks[index + 1] if index + 1 < len(blocks) else None
        assert twin is not None and twin.skip is None and twin.code.startswith(OFFLINE_TWIN), (
            f"the skipped block at {name(page)}:{blocks[index].line} ({blocks[index].skip}) must be followed by a "
            f"python block that runs and starts with {OFFLINE_TWIN!r}, its offline twin")


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=name)
def test_python_blocks_run_in_order_offline(tmp_path, page):
    blocks = [block for block in python_blocks(page) if block.skip is None]
    least = MIN_README_BLOCKS if page == README else 1
    assert len(blocks) >= least, f"expected {name(page)}'s python blocks, found {len(blocks)} to run"
    (tmp_path / "blocks.json").write_text(json.dumps([block.__dict__ for block in blocks]), encoding="utf-8")
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = {**os.environ,
           "PYTHONPATH": str(ROOT),  # this checkout, as `pip install -e .` in a fresh clone gives
           "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf_home"),  # an empty Hub cache, dynamic modules included
           "HF_ENDPOINT": "http://127.0.0.1:9",  # and no Hub to reach, should anything try
           "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path / "blocks.json"), str(page)],
                            cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    ran = result.stdout.count("ran the block at line ")
    if result.returncode != 0 or ran != len(blocks):
        pytest.fail(f"{ran} of {len(blocks)} blocks of {name(page)} ran; the next one ({name(page)}:"
                    f"{blocks[min(ran, len(blocks) - 1)].line}) failed:\n{result.stderr[-6000:]}", pytrace=False)


def test_readme_is_a_short_guide():
    lines = len(README.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; keep it to {MAX_README_LINES}, detail goes to docs/"


# A commit hash: a word of 7-40 hex digits holding both a digit and a letter a-f (so neither "1000000" nor "defaced").
COMMIT_HASH = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
ISSUE_REFERENCE = re.compile(r"\bissues?\s*#?\s*\d+|(?<![&\w])#\d+\b", re.IGNORECASE)


def test_the_hash_and_issue_patterns():
    assert COMMIT_HASH.findall("at `d1e4d49`, a22a80e and 9ad328d, not 1000000, defaced or 1e-5") == [
        "d1e4d49", "a22a80e", "9ad328d"]
    assert [m.group() for m in ISSUE_REFERENCE.finditer("issue 11, Issue #7, #12, but not #segmentation")] == [
        "issue 11", "Issue #7", "#12"]


@pytest.mark.parametrize("page", PAGES, ids=name)
def test_no_commit_hashes_or_issue_numbers(page):
    """Readers have neither this repository's history nor its tracker: say what a revision or an issue was."""
    found = [f"{name(page)}:{number}: {match.group()!r}"
             for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1)
             for pattern in (COMMIT_HASH, ISSUE_REFERENCE) for match in pattern.finditer(line)]
    assert not found, "commit hashes or issue numbers:\n" + "\n".join(found)
