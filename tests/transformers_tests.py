"""transformers' own test mixins (`ModelTesterMixin`, `ConfigTester`, `BackboneTesterMixin`, `ImageProcessingTestMixin`,
...), importable here: the one fetcher of transformers' test sources, for every test module that uses them.

They come from the source distribution of the INSTALLED transformers version, fetched at test set-up with
`pip download --no-binary :all: --no-deps transformers==X` and cached, extracted, in `.cache/transformers-tests/X/`
(ignored by git: nothing of theirs is committed to this tree). Its top-level `tests/*.py` become the package
`hf_transformers_tests` (not `tests`, which would clash with ours).

The sdist ships only those top-level files; four modules they import are not in it. `STAND_INS` below provides
exactly the names imported from them, and is the one place that says so:
- `exporters.test_export.ExportTesterMixin` (a base of `ModelTesterMixin`: its torch.export tests) and
  `generation.test_utils.GenerationTesterMixin` (generation tests): empty mixins, so those tests are absent, not
  skipped. Neither applies to an image encoder with no `generate()`; our export is tested in our own tests.
- `utils.test_configuration_utils.config_common_kwargs` (the `PreTrainedConfig` fields `ConfigTester` sets to
  non-default values and reads back): a small dict written by us for transformers v5's common fields.
- `fetch_hub_objects_for_ci.url_to_local_path` (imported by `test_image_processing_common`; it maps a URL to a copy
  the CI pre-fetched): the identity, so a test that loads an image by URL needs the network.

When the sdist cannot be fetched (no network, no such version on the index), `load_or_skip` skips the calling test
module with the reason: the one place that reason is stated. `account_for_skips` makes a test class list every other
test that does not run, with its reason.
"""

import functools
import importlib
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import types
import unittest
from pathlib import Path

import pytest
import transformers
from packaging.version import Version

PACKAGE = "hf_transformers_tests"
VERSION = transformers.__version__
CACHE_ROOT = Path(__file__).resolve().parent.parent / ".cache" / "transformers-tests"
# pip builds no wheel here, but it prepares the sdist's metadata: 35-100 s measured on a busy 2-core machine.
FETCH_TIMEOUT_S = 300
PIP_SOCKET_TIMEOUT_S = 30
PIP_RETRIES = 3

COMMON_CONFIG_KWARGS = {
    "return_dict": False,
    "output_hidden_states": True,
    "dtype": "float16",
    "chunk_size_feed_forward": 5,
    "architectures": ["PoolFormerModel"],
    "id2label": {0: "label"},
    "label2id": {"label": 0},
    "problem_type": "regression",
}


class ExportTesterMixin:
    """Stand-in for transformers' `tests/exporters/test_export.py` mixin (not in the sdist): no tests."""


class GenerationTesterMixin:
    """Stand-in for transformers' `tests/generation/test_utils.py` mixin (not in the sdist): no tests."""


def url_to_local_path(url, *args, **kwargs):
    """Stand-in for transformers' `utils/fetch_hub_objects_for_ci.py` (not in the sdist): the URL itself."""
    return url


STAND_INS = {
    f"{PACKAGE}.exporters.test_export": {"ExportTesterMixin": ExportTesterMixin},
    f"{PACKAGE}.generation.test_utils": {"GenerationTesterMixin": GenerationTesterMixin},
    f"{PACKAGE}.utils.test_configuration_utils": {"config_common_kwargs": COMMON_CONFIG_KWARGS},
    "fetch_hub_objects_for_ci": {"url_to_local_path": url_to_local_path},
}


class TransformersTestsUnavailable(RuntimeError):
    """transformers' test sources for the installed version could not be fetched or imported."""


def sdist_tests_root(version: str = VERSION, cache_root: Path = CACHE_ROOT) -> Path:
    """The folder holding the `hf_transformers_tests` package of transformers `version`, fetched on first use.

    The download and extraction go to a temporary folder renamed into place, so an interrupted fetch leaves nothing
    that a later run would take for complete.
    """
    root = cache_root / version
    if (root / PACKAGE / "test_modeling_common.py").is_file():
        return root
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.fetching-", dir=cache_root))
    try:
        archive = _download_sdist(version, staging / "download")
        _extract_tests(archive, staging / "tree" / PACKAGE)
        try:
            os.replace(staging / "tree", root)
        except OSError:  # another process put a complete copy there first
            if not (root / PACKAGE / "test_modeling_common.py").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _download_sdist(version: str, destination: Path) -> Path:
    # pip reads the sdist's metadata with its build backend (setuptools): the installed one when there is one, which
    # saves fetching it into an isolated build environment.
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") is not None else []
    command = [
        sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", *isolation,
        "--disable-pip-version-check", "--timeout", str(PIP_SOCKET_TIMEOUT_S), "--retries", str(PIP_RETRIES),
        f"transformers=={version}", "-d", str(destination),
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=FETCH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise TransformersTestsUnavailable(
            f"`pip download transformers=={version}` (the sdist) did not finish within {FETCH_TIMEOUT_S} s"
        ) from None
    archives = sorted(destination.glob("transformers-*.tar.gz")) if destination.is_dir() else []
    if result.returncode != 0 or not archives:
        tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
        raise TransformersTestsUnavailable(
            f"could not download the transformers=={version} sdist (pip exit {result.returncode}): {' | '.join(tail)}"
        )
    return archives[0]


def _extract_tests(archive: Path, package_dir: Path) -> None:
    """Extract the sdist's top-level `tests/*.py` (no sub-folders: the sdist has none) into `package_dir`."""
    package_dir.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if member.isfile() and len(parts) == 3 and parts[1] == "tests" and parts[2].endswith(".py"):
                source = tar.extractfile(member)
                (package_dir / parts[2]).write_bytes(source.read())
    if not (package_dir / "test_modeling_common.py").is_file():
        raise TransformersTestsUnavailable(f"{archive.name} has no tests/test_modeling_common.py")
    # The package's `__init__.py`; `test_configuration_common` also runs it through `direct_transformers_import`.
    (package_dir / "__init__.py").touch()


def _install_stand_ins() -> None:
    for name, attributes in STAND_INS.items():
        if name in sys.modules:
            continue
        parent_name, _, child = name.rpartition(".")
        if parent_name and parent_name not in sys.modules:  # e.g. `hf_transformers_tests.exporters`
            sys.modules[parent_name] = types.ModuleType(parent_name)
            sys.modules[parent_name].__path__ = []  # a package, so that the child is found under it
        module = types.ModuleType(name)
        module.__dict__.update(attributes)
        sys.modules[name] = module
        if parent_name:
            setattr(sys.modules[parent_name], child, module)


def import_transformers_test_module(name: str) -> types.ModuleType:
    """transformers' `tests/<name>.py` of the installed version, e.g. `"test_modeling_common"`, as a module."""
    root = sdist_tests_root()
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    importlib.import_module(PACKAGE)
    _install_stand_ins()
    return importlib.import_module(f"{PACKAGE}.{name}")


def load_or_skip(name: str) -> types.ModuleType:
    """`import_transformers_test_module(name)`, or skip the calling test module when the sdist is unavailable."""
    try:
        return import_transformers_test_module(name)
    except TransformersTestsUnavailable as error:
        pytest.skip(f"transformers' own test mixins are unavailable: {error}", allow_module_level=True)


def account_for_skips(skipped: dict[str, str], skipped_by_transformers: dict[str, str], written_for: str = "0",
                      dropped_in: dict[str, str] | None = None):
    """Class decorator: every test of the class that does not run is named, with its reason, in one of two dicts.

    `skipped`: tests we skip (not applicable to our models); they are skipped here with the reason given.
    `skipped_by_transformers`: tests that skip themselves, by transformers' own checks (a feature the model does not
    declare, no accelerator, an optional package missing); they still run, and may pass where the condition holds
    (on a GPU machine, say). A test that skips itself for a reason of the machine (`is_environment_reason`: what
    transformers' own CI skips for) is accepted unlisted, so a new upstream `@require_torch_accelerator` test needs
    no entry. Any other self-skip that is not listed fails, naming itself and its reason: a new skip is looked at,
    never hidden. A listed name that the class lacks fails too (a stale entry says nothing), unless the installed
    transformers is older than `written_for`, the version the lists were written against (an older release lacks
    the newer tests), or the test is named in `dropped_in` with the release that removed it and the installed one is
    that release or newer (an entry kept for the older releases that still have the test).
    """
    dropped_in = dropped_in or {}

    def decorate(cls):
        installed = Version(transformers.__version__).release
        older = installed < Version(written_for).release
        for test_name in {*skipped, *skipped_by_transformers}:
            gone = test_name in dropped_in and installed >= Version(dropped_in[test_name]).release
            if not callable(getattr(cls, test_name, None)) and not older and not gone:
                raise AttributeError(
                    f"{cls.__name__} has no test {test_name!r} to account for (transformers "
                    f"{transformers.__version__}; the skip lists were written for {written_for})"
                )
        for test_name in [name for name in dir(cls) if name.startswith("test_")]:
            test = getattr(cls, test_name)
            if not callable(test):
                continue
            if test_name in skipped:
                setattr(cls, test_name, unittest.skip(skipped[test_name])(test))
            elif test_name not in skipped_by_transformers:
                setattr(cls, test_name, _failing_on_skip(test))
        return cls

    return decorate


# The reasons `transformers.testing_utils`' decorators give when the machine lacks what a test needs: "test requires
# accelerator", "test requires Flash Attention", "test requires multiple accelerators", "test requires PEFT", ...
# (`@require_*`), and "test is slow" (`@slow` without RUN_SLOW=1) with its siblings for the opt-in test groups. The
# mixins' own feature checks word theirs otherwise ("Model does not output attentions"): those must be listed.
ENVIRONMENT_REASON = re.compile(r"test (requires|is) ")


def is_environment_reason(reason) -> bool:
    """Whether a skip's reason is one of transformers' environment gates, the skips its own CI has on some runners."""
    return ENVIRONMENT_REASON.match(str(reason)) is not None


def _failing_on_skip(test):
    def fail(self, reason):
        self.fail(f"{test.__name__} skipped itself ({reason}) but is in neither skip list of {type(self).__name__}")

    if getattr(test, "__unittest_skip__", False):  # skipped by a decorator (`@slow`, `@require_torch_accelerator`)
        if is_environment_reason(test.__unittest_skip_why__):
            return test

        def run(self, *args, **kwargs):
            fail(self, test.__unittest_skip_why__)

        run.__name__ = test.__name__
        return run

    @functools.wraps(test)
    def run(self, *args, **kwargs):
        try:
            return test(self, *args, **kwargs)
        except unittest.SkipTest as skip:
            if is_environment_reason(skip):
                raise
            fail(self, skip)

    return run
