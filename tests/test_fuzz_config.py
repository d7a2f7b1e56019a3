"""Fuzzing PoolFormerConfig: every drawn config either builds a model whose forward is finite, or is refused with a
ValueError / TypeError (or strict typing's error) that names one of the fields given — never NaN out, never a raw
internal error from deep in the model.

Values are drawn per field: valid ones, wrong types, NaN, ±inf, negatives, zero, huge numbers, per-stage lists of the
wrong length or with bad entries. Sizes that are valid but cost memory (depths, kernel sizes, image_size under the
token-mixing mixers) are drawn only in buildable ranges: a huge valid model is a resource limit, not a config error.
The example budget is fixed and generation derandomized, so CI runs the same examples every time.
"""

import collections
import json
import math

import pytest
import torch
from huggingface_hub.errors import StrictDataclassFieldValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolformer_hf import PoolFormerConfig, PoolFormerForImageClassification
from poolformer_hf.configuration_poolformer import ACTIVATION_NAMES, NORM_NAMES, TOKEN_MIXER_NAMES

# Small enough that a model builds and runs in milliseconds; attention_head_dim 8 lets attention stages build.
BASE = {"depths": [1, 1, 1, 1], "hidden_sizes": [8, 16, 16, 32], "num_labels": 3, "attention_head_dim": 8}
CLEAR_ERRORS = (ValueError, TypeError, StrictDataclassFieldValidationError)
# What each example ended as, for the counts the fuzzing report gives (see `record`).
OUTCOMES = collections.Counter()

NAN, INF = float("nan"), float("inf")
# Wrong in most places: wrong types, non-finite and extreme numbers, empty containers.
NASTY = st.sampled_from(
    [None, True, False, 0, -1, 10**9, -(10**9), 0.0, -0.0, -1.5, 1e-300, 1e30, 1e300, NAN, INF, -INF, "", "1",
     "gelu", [], [1], {}, (1, 2), {"a": 1}]
)  # fmt: skip
# The same without huge integers, for fields where a huge valid value would be a huge model.
NASTY_SMALL = NASTY.filter(lambda v: not (isinstance(v, int) and not isinstance(v, bool) and abs(v) > 100))
EXTREME_FLOATS = st.sampled_from([NAN, INF, -INF, 0.0, -0.0, 1e-300, 1e30, 1e300, 7e4])


def or_nasty(good, nasty=NASTY):
    return st.one_of(good, good, nasty)  # two draws in three valid, so that a fair share of configs builds


def per_stage(item, nasty=NASTY):
    """One value, or a list (of 0 to 5 entries: 4 is right) of values, some possibly nasty."""
    return st.one_of(item, nasty, st.lists(st.one_of(item, item, nasty), min_size=0, max_size=5))


def stage_list(item, nasty=NASTY_SMALL):
    return or_nasty(st.lists(st.one_of(item, item, item, nasty), min_size=0, max_size=5), nasty)


def finite(low, high):
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


def ratio():
    return or_nasty(st.one_of(finite(-1.0, 8.0), st.integers(-2, 8), EXTREME_FLOATS))


def scale():
    return st.one_of(st.none(), finite(-1.0, 10.0), st.sampled_from([1e-6, 1e-5, 1.0, 1e3]), EXTREME_FLOATS)


def names(options, extra=("bogus",)):
    return st.sampled_from(list(options) + list(extra))


FIELDS = {
    "num_channels": or_nasty(st.integers(-1, 4), NASTY),
    "pool_size": or_nasty(st.integers(-1, 9) | st.just(10**9 + 1)),
    "mlp_ratio": ratio(),
    "depths": stage_list(st.integers(-1, 2)),
    "hidden_sizes": stage_list(st.integers(-2, 40) | st.just(2**30)),
    "patch_sizes": stage_list(st.integers(-1, 8)),
    "strides": stage_list(st.integers(-1, 5) | st.just(10**9)),
    "padding": stage_list(st.integers(-2, 4) | st.just(10**9)),
    "drop_path_rate": or_nasty(st.one_of(finite(-0.5, 1.5), EXTREME_FLOATS)),
    "hidden_act": per_stage(names(ACTIVATION_NAMES)),
    "layer_scale_init_value": per_stage(scale()),
    "initializer_range": or_nasty(st.one_of(finite(-1.0, 10.0), EXTREME_FLOATS)),
    "token_mixers": per_stage(names(TOKEN_MIXER_NAMES), NASTY_SMALL),
    "norm_type": per_stage(names(NORM_NAMES)),
    "norm_bias": or_nasty(st.booleans()),
    "norm_eps": or_nasty(st.one_of(finite(-1.0, 2.0), st.sampled_from([1e-6, 1e-12]), EXTREME_FLOATS)),
    "downsample_norm": or_nasty(names([None, *NORM_NAMES])),
    "res_scale_init_value": per_stage(scale()),
    "mlp_bias": or_nasty(st.booleans()),
    "head_type": or_nasty(names(["linear", "mlp"])),
    "head_norm_type": or_nasty(names(NORM_NAMES)),
    "head_norm_position": or_nasty(names(["before_pool", "after_pool"])),
    "head_mlp_ratio": ratio(),
    "head_hidden_act": or_nasty(names(ACTIVATION_NAMES)),
    "head_dropout": or_nasty(st.one_of(finite(-0.5, 1.5), EXTREME_FLOATS)),
    "attention_head_dim": or_nasty(st.sampled_from([-8, 0, 3, 4, 8, 16, 10**9])),
    "attention_qkv_bias": or_nasty(st.booleans()),
    "sepconv_expansion_ratio": ratio(),
    "sepconv_kernel_size": or_nasty(st.integers(-1, 9), NASTY_SMALL),
    "sepconv_act": or_nasty(names([*ACTIVATION_NAMES, "identity"])),
    "image_size": or_nasty(st.integers(-1, 48), NASTY_SMALL),
    "crop_pct": or_nasty(st.one_of(finite(-0.5, 1.5), EXTREME_FLOATS)),
    "backbone_norm": or_nasty(st.booleans()),
    "out_indices": or_nasty(st.lists(st.integers(-6, 6), max_size=3)),
    "num_labels": or_nasty(st.integers(-2, 5), NASTY_SMALL),
    "id2label": or_nasty(st.dictionaries(st.integers(-1, 3) | st.sampled_from(["0", "x"]), st.text(max_size=3))),
    "problem_type": or_nasty(names(["regression", "single_label_classification", "multi_label_classification"])),
    "return_dict": or_nasty(st.booleans()),
    "dtype": or_nasty(names(["float32", "bfloat16", "float16"], extra=("float17", "auto"))),
}
overrides = st.lists(st.sampled_from(sorted(FIELDS)), min_size=1, max_size=3, unique=True).flatmap(
    lambda chosen: st.fixed_dictionaries({name: FIELDS[name] for name in chosen})
)
BUDGET = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


def record(outcome: str) -> None:
    OUTCOMES[outcome] += 1


def assert_names_a_given_field(error: Exception, given: dict) -> None:
    message = str(error)
    assert any(name in message for name in given), f"{type(error).__name__} names none of {sorted(given)}: {message}"


def input_size(config: PoolFormerConfig) -> int:
    """The smallest square input every stage keeps at least one pixel of (token-count mixers need image_size)."""
    if any(config.stage_value("token_mixers", s) in ("random_mixing", "spatial_fc") for s in range(config.num_stages)):
        return config.image_size
    size = 1
    while min(min(hw) for hw in config.stage_resolutions(size, size)) < 1:
        size += 1
    return size


@settings(BUDGET, max_examples=120)  # each builds and runs a model: ~0.2 s
@given(overrides)
def test_a_fuzzed_config_builds_a_finite_model_or_is_refused_naming_the_field(given_fields):
    try:
        config = PoolFormerConfig(**{**BASE, **given_fields})
    except CLEAR_ERRORS as error:
        assert_names_a_given_field(error, given_fields)
        record("refused")
        return
    torch.manual_seed(0)
    model = PoolFormerForImageClassification(config).eval()
    size = input_size(config)
    with torch.no_grad():
        logits = model(torch.randn(2, config.num_channels, size, size), return_dict=True).logits
    assert torch.isfinite(logits).all(), f"non-finite logits for {given_fields}"
    assert PoolFormerConfig.from_dict(config.to_dict()).to_dict() == config.to_dict()
    record("built")


# Found by this fuzzer: with config.return_dict False or None the base model used to return a tuple to the heads,
# which then read outputs.last_hidden_state / pooler_output.
@pytest.mark.parametrize("return_dict", [False, None])
def test_return_dict_off_in_the_config_gives_tuples_not_a_crash(return_dict):
    model = PoolFormerForImageClassification(PoolFormerConfig(**BASE, return_dict=return_dict)).eval()
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 32, 32))[0]
    assert logits.shape == (1, 3)


def _json_able(value) -> bool:
    try:
        json.dumps(value)  # NaN / Infinity allowed: Python writes and reads them as literals
    except (TypeError, ValueError):
        return False
    return True


@pytest.fixture(scope="module")
def json_folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzzed_config_json")


@settings(BUDGET, max_examples=200)
@given(overrides.filter(_json_able))
def test_a_fuzzed_config_json_loads_a_valid_config_or_is_refused_naming_the_field(json_folder, given_fields):
    path = json_folder / "config.json"
    path.write_text(json.dumps({"model_type": "poolformer_hf", **BASE, **given_fields}))
    try:
        config = PoolFormerConfig.from_pretrained(json_folder)
    except CLEAR_ERRORS as error:
        assert_names_a_given_field(error, given_fields)
        record("refused from config.json")
        return
    floats = [v for v in json.loads(config.to_json_string(use_diff=False)).values() if isinstance(v, float)]
    assert all(math.isfinite(v) for v in floats)
    record("loaded from config.json")
