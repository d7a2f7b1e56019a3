"""Importing the package prints nothing: torchao's import-time deprecation notice is dropped, other records are not."""

import logging
import subprocess
import sys

from poolformer_hf import _quiet_imports


def test_importing_the_package_and_building_a_model_prints_nothing():
    code = "import poolformer_hf; poolformer_hf.PoolFormerForImageClassification(poolformer_hf.PoolFormerConfig())"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""


def _record(message, *args, name="torch.utils._pytree"):
    return logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, None)


def test_the_filter_drops_only_torchao_enum_notices():
    torchao_enum = type("KernelPreference", (), {"__module__": "torchao.quantization.quantize_.common"})
    other_enum = type("Mine", (), {"__module__": "my_package.enums"})
    notice = _quiet_imports._MESSAGE_START + " by torch.compile as an opaque value type."
    keep = _quiet_imports.TorchaoEnumNoticeFilter().filter
    assert not keep(_record(notice, torchao_enum))
    assert keep(_record(notice, other_enum))
    assert keep(_record("something else about %s", torchao_enum))
    assert keep(_record("no arguments"))
