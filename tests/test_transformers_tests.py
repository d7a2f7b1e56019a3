"""The helper that brings transformers' own test mixins here: a failed fetch says why and leaves nothing behind;
every test that does not run is accounted for."""

import os
import unittest

import pytest
import transformers

import transformers_tests
from transformers_tests import TransformersTestsUnavailable, account_for_skips, sdist_tests_root


def test_a_failed_fetch_says_what_failed_and_leaves_no_partial_cache(tmp_path, monkeypatch):
    # The only index: a loopback port nothing listens on (no network used); no config files' extra indexes or links.
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    monkeypatch.setattr(transformers_tests, "PIP_RETRIES", 0)
    with pytest.raises(TransformersTestsUnavailable, match=r"could not download the transformers==5\.24\.0 sdist"):
        sdist_tests_root("5.24.0", cache_root=tmp_path)
    assert list(tmp_path.iterdir()) == []


class _Mixin:
    def test_runs(self):
        pass

    def test_skips_itself(self):
        self.skipTest("Model does not output attentions")

    @unittest.skip("no feed-forward chunking")
    def test_skipped_by_a_decorator(self):
        pass

    def test_needs_an_accelerator(self):
        self.skipTest("test requires accelerator")  # the words of transformers' @require_torch_accelerator

    @unittest.skip("test is slow")  # the words of transformers' @slow without RUN_SLOW=1
    def test_slow(self):
        pass

    def test_not_applicable(self):
        raise AssertionError("must not run")


def _run(case_class, name):
    result = unittest.TestResult()
    case_class(name).run(result)
    return result


def test_listed_skips_skip_and_an_unlisted_self_skip_fails():
    @account_for_skips(
        {"test_not_applicable": "not applicable"},
        {"test_skips_itself": "no attentions", "test_skipped_by_a_decorator": "no chunking"},
    )
    class Listed(_Mixin, unittest.TestCase):
        pass

    assert _run(Listed, "test_not_applicable").skipped[0][1] == "not applicable"
    assert _run(Listed, "test_skips_itself").skipped[0][1] == "Model does not output attentions"
    assert _run(Listed, "test_skipped_by_a_decorator").skipped[0][1] == "no feed-forward chunking"
    assert _run(Listed, "test_runs").wasSuccessful()

    @account_for_skips({"test_not_applicable": "not applicable"}, {})
    class Unlisted(_Mixin, unittest.TestCase):
        pass

    for name, reason in [
        ("test_skips_itself", "Model does not output attentions"),
        ("test_skipped_by_a_decorator", "no feed-forward chunking"),
    ]:
        failures = _run(Unlisted, name).failures
        assert len(failures) == 1 and f"{name} skipped itself ({reason})" in failures[0][1]


def test_a_skip_for_the_machine_is_accepted_unlisted():
    @account_for_skips({}, {})
    class Unlisted(_Mixin, unittest.TestCase):
        pass

    for name, reason in [("test_needs_an_accelerator", "test requires accelerator"), ("test_slow", "test is slow")]:
        result = _run(Unlisted, name)
        assert result.failures == [] and result.skipped[0][1] == reason


def test_every_reason_of_transformers_require_decorators_is_an_environment_reason():
    # Each `require_*` decorator of the installed transformers, applied to a test, on a machine that lacks what it
    # requires, skips with a reason this runner accepts; the mixins' own feature checks' reasons are not accepted.
    import transformers.testing_utils as testing_utils

    reasons = []
    for name in dir(testing_utils):
        if not name.startswith("require_"):
            continue
        try:
            decorated = getattr(testing_utils, name)(lambda self: None)
        except Exception:  # a decorator factory (`require_torch_greater_or_equal("2.0")`) or one that needs args
            continue
        if getattr(decorated, "__unittest_skip__", False):
            reasons.append(decorated.__unittest_skip_why__)
    assert "test requires accelerator" in reasons  # this machine has none (the CI's runners neither)
    assert all(transformers_tests.is_environment_reason(reason) for reason in reasons), reasons
    assert not transformers_tests.is_environment_reason("Model does not output attentions")


def test_a_listed_name_the_class_lacks_is_an_error():
    with pytest.raises(AttributeError, match="no test 'test_gone'"):
        account_for_skips({"test_gone": "stale"}, {})(type("Case", (_Mixin, unittest.TestCase), {}))


def test_a_listed_name_is_tolerated_on_a_transformers_older_than_the_lists():
    # The lists name tests of the newest transformers; an older release lacks some of them.
    newer = f"{int(transformers.__version__.split('.')[0]) + 1}.0.0"
    case = account_for_skips({"test_gone": "newer"}, {}, written_for=newer)(type("Case", (_Mixin, unittest.TestCase), {}))
    assert _run(case, "test_runs").wasSuccessful()
    with pytest.raises(AttributeError, match="no test 'test_gone'"):
        account_for_skips({"test_gone": "stale"}, {}, written_for=transformers.__version__)(
            type("Case", (_Mixin, unittest.TestCase), {})
        )


def test_a_listed_name_that_a_release_removed_is_tolerated_from_that_release_on():
    installed = transformers.__version__
    newer = f"{int(installed.split('.')[0]) + 1}.0.0"
    case = account_for_skips({}, {"test_gone": "removed upstream"}, written_for=installed,
                             dropped_in={"test_gone": installed})(type("Case", (_Mixin, unittest.TestCase), {}))
    assert _run(case, "test_runs").wasSuccessful()
    with pytest.raises(AttributeError, match="no test 'test_gone'"):  # before that release the test must exist
        account_for_skips({}, {"test_gone": "removed upstream"}, written_for=installed,
                          dropped_in={"test_gone": newer})(type("Case", (_Mixin, unittest.TestCase), {}))
