"""The helper that brings transformers' own test mixins here: a failed fetch says why and leaves nothing behind;
every test that does not run is accounted for."""

import os
import unittest

import pytest

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
        self.skipTest("no accelerator")

    @unittest.skip("test is slow")
    def test_skipped_by_a_decorator(self):
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
        {"test_skips_itself": "needs an accelerator", "test_skipped_by_a_decorator": "slow"},
    )
    class Listed(_Mixin, unittest.TestCase):
        pass

    assert _run(Listed, "test_not_applicable").skipped[0][1] == "not applicable"
    assert _run(Listed, "test_skips_itself").skipped[0][1] == "no accelerator"
    assert _run(Listed, "test_skipped_by_a_decorator").skipped[0][1] == "test is slow"
    assert _run(Listed, "test_runs").wasSuccessful()

    @account_for_skips({"test_not_applicable": "not applicable"}, {})
    class Unlisted(_Mixin, unittest.TestCase):
        pass

    for name, reason in [("test_skips_itself", "no accelerator"), ("test_skipped_by_a_decorator", "test is slow")]:
        failures = _run(Unlisted, name).failures
        assert len(failures) == 1 and f"{name} skipped itself ({reason})" in failures[0][1]


def test_a_listed_name_the_class_lacks_is_an_error():
    with pytest.raises(AttributeError, match="no test 'test_gone'"):
        account_for_skips({"test_gone": "stale"}, {})(type("Case", (_Mixin, unittest.TestCase), {}))
