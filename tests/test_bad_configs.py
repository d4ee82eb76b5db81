"""Head configs and head files that lie: every field is checked before anything is built from it (issue #15, class 1).

A bad field raises `InvalidHeadConfigError` naming the field, the value and what it may hold, when the config is
built or read; expected tensor shapes come from the config alone (the head is built on the meta device); the sizes
are compared with the base's config before the base's weights load; non-float weights are refused by name.
"""

import json
import math
import time

import pytest
import torch
from conftest import tiny_llama
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

from logitmlp_hf import (
    AutoDecoConfig,
    DecodingAdapterConfig,
    IncompatibleBaseModelError,
    InvalidHeadConfigError,
    LogitMLPConfig,
    LogitMLPForCausalLM,
    LogitMLPHead,
    SequenceAdapterConfig,
)
from logitmlp_hf.heads.registry import decoding_head_type, registered_head_types
from logitmlp_hf.hub.head_repo import load_head_config, load_head_state_dict


@pytest.fixture
def head_dir(tmp_path, base_dir):
    """A LogitMLP head repo on the tiny Llama saved at ``base_dir`` (hidden 48, vocabulary 256)."""
    model = LogitMLPForCausalLM.from_base_model(AutoModelForCausalLM.from_pretrained(base_dir))
    model.save_pretrained(tmp_path / "head")
    return tmp_path / "head"


def _edit_config(path, **changes):
    config = json.loads((path / "config.json").read_text())
    config.update(changes)
    (path / "config.json").write_text(json.dumps(config))  # (json writes float("inf") as Infinity)


# ------------------------------------------------------------------------------------------- field values
# Each case either loaded silently before (and failed later: an allocator error, NaN logits, a Hub lookup) or failed
# with a TypeError/ValueError from inside torch or float() that named no field.
BAD_FIELDS = [
    (LogitMLPConfig, "hidden_size", "2048", "an integer in [1, 262144]"),
    (LogitMLPConfig, "hidden_size", 64.5, "an integer in [1, 262144]"),
    (LogitMLPConfig, "hidden_size", True, "an integer in [1, 262144]"),
    (LogitMLPConfig, "hidden_size", 10**9, "an integer in [1, 262144]"),
    (LogitMLPConfig, "vocab_size", 2.0, "an integer in [1, 16777216]"),
    (LogitMLPConfig, "head_hidden_size", 10**6, "an integer in [1, 65536]"),
    (LogitMLPConfig, "pass_k", True, "an integer >= 1 or null"),
    (LogitMLPConfig, "base_model_name_or_path", 123, "a non-empty string or null"),
    (LogitMLPConfig, "base_model_revision", 7, "a non-empty string or null"),
    (LogitMLPConfig, "slope_bound", math.inf, "a finite number in (1, 1000]"),
    (LogitMLPConfig, "breakpoint_scale", math.inf, "a finite number in (0, 1000]"),
    (LogitMLPConfig, "init_std", math.inf, "a finite number in [0, 1]"),
    (AutoDecoConfig, "max_temperature", math.inf, "a finite number in (0, 1000]"),
    (AutoDecoConfig, "top_p_steepness", math.inf, "a finite number in (0, 1e+06]"),
    (AutoDecoConfig, "sampling_composition", "multiplied", "one of ('released', 'sequential')"),
    (AutoDecoConfig, "top_p_features", "entropy", "one of ('prob_stats', 'temperature', 'logit_spread')"),
    (DecodingAdapterConfig, "action_temperatures", [1.0, math.inf], "a finite number in [0, 1000]"),
    (DecodingAdapterConfig, "action_temperatures", ["hot"], "a finite number in [0, 1000]"),
    (DecodingAdapterConfig, "budget_conditioning", 1, "true or false"),
    (DecodingAdapterConfig, "entropy_coef", math.inf, "a finite number >= 0"),
    (SequenceAdapterConfig, "budgets", [True], "an integer >= 1"),
    (SequenceAdapterConfig, "budgets", [1.5], "an integer >= 1"),
    (SequenceAdapterConfig, "budgets", ["4"], "an integer >= 1"),
]


@pytest.mark.parametrize(
    ("config_class", "field", "value", "allowed"),
    BAD_FIELDS,
    ids=[f"{c.__name__}.{f}={v!r}" for c, f, v, _ in BAD_FIELDS],
)
def test_bad_field_values_are_refused_naming_field_value_and_range(config_class, field, value, allowed):
    with pytest.raises(InvalidHeadConfigError) as info:
        config_class(**{field: value})
    err = info.value
    name = field if not isinstance(value, list) else f"{field}[{len(value) - 1}]"  # lists: the bad item
    assert (err.field, err.allowed) == (name, allowed)
    assert f"{name}=" in str(err) and allowed in str(err)


def test_a_config_claiming_a_huge_hidden_size_fails_fast_with_the_field(head_dir):
    _edit_config(head_dir, hidden_size=10**9)
    start = time.perf_counter()
    with pytest.raises(InvalidHeadConfigError, match=r"hidden_size=1000000000; .*integer in \[1, 262144\]") as info:
        LogitMLPForCausalLM.from_pretrained(head_dir)
    assert time.perf_counter() - start < 1.0
    assert str(head_dir / "config.json") in str(info.value)  # read from a file: the message says which
    with pytest.raises(InvalidHeadConfigError, match="hidden_size=1000000000"):  # the Auto classes read it too
        AutoModelForCausalLM.from_pretrained(head_dir)


def test_infinite_warp_bounds_in_a_head_repo_are_refused_on_read(head_dir):
    _edit_config(head_dir, slope_bound=math.inf)  # loaded before, then every logit was NaN
    with pytest.raises(InvalidHeadConfigError, match=r"slope_bound=inf; .*finite number in \(1, 1000\]"):
        load_head_config(head_dir)


def test_a_non_string_base_is_refused_before_any_hub_lookup(head_dir, monkeypatch):
    def no_lookup(*args, **kwargs):
        raise AssertionError("the base was looked up")

    monkeypatch.setattr("logitmlp_hf.modeling.load_base_model", no_lookup)
    monkeypatch.setattr("logitmlp_hf.hub.base_loading.find_adapter_config_file", no_lookup)
    _edit_config(head_dir, base_model_name_or_path=["org/model"])
    with pytest.raises(InvalidHeadConfigError, match=r"base_model_name_or_path=\['org/model'\]; .*string"):
        LogitMLPForCausalLM.from_pretrained(head_dir)


# -------------------------------------------------------------------------------------------- tensor shapes
def test_expected_shapes_come_from_the_config_without_building_the_head(head_dir, monkeypatch):
    built_on = []
    init = LogitMLPHead.__init__

    def spy(self, config):
        init(self, config)
        built_on.append(self.fc_in.weight.device.type)

    monkeypatch.setattr(LogitMLPHead, "__init__", spy)
    claimed = LogitMLPConfig(hidden_size=4096, vocab_size=256, head_hidden_size=8192)  # 34M parameters, 0.1 GB
    with pytest.raises(Exception, match="does not match its config"):
        load_head_state_dict(head_dir, claimed)
    assert built_on == ["meta"]


@pytest.mark.parametrize("head_type", registered_head_types())
def test_meta_shapes_equal_the_real_heads_shapes(head_type):
    head_class = decoding_head_type(head_type).head_class
    config = head_class.config_class(hidden_size=48, vocab_size=256, head_hidden_size=16)
    real = {name: tuple(t.shape) for name, t in head_class(config).state_dict().items()}
    assert head_class.expected_state_shapes(config) == real


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool])
def test_integer_or_boolean_weights_are_refused_naming_the_tensor(head_dir, dtype):
    path = head_dir / LogitMLPHead.weights_name
    state = load_file(path)
    state["fc_out.weight"] = torch.ones_like(state["fc_out.weight"], dtype=dtype)  # right shape, wrong kind
    save_file(state, path)
    name = str(dtype).removeprefix("torch.")
    with pytest.raises(Exception, match=f"non-floating-point tensors {{'fc_out.weight': '{name}'}}"):
        LogitMLPForCausalLM.from_pretrained(head_dir)


# ---------------------------------------------------------------------------------------------- the base
@pytest.mark.parametrize("named", ["in_config", "as_argument"])
def test_a_base_that_cannot_fit_is_refused_from_its_config_before_its_weights_load(
    tmp_path, base_dir, monkeypatch, named
):
    """A consistent 64-wide head pointed at the 48-wide base: the base's config.json says so, no weights load."""
    LogitMLPForCausalLM.from_base_model(tiny_llama(hidden_size=64)).save_pretrained(tmp_path / "wide")
    _edit_config(tmp_path / "wide", base_model_name_or_path=str(base_dir))

    def no_weights(*args, **kwargs):
        raise AssertionError("the base's weights were loaded")

    monkeypatch.setattr("logitmlp_hf.hub.base_loading.AutoModelForCausalLM.from_pretrained", no_weights)
    kwargs = {"base_model": str(base_dir)} if named == "as_argument" else {}
    with pytest.raises(
        IncompatibleBaseModelError, match=r"per its config.json\) has hidden size 48 \(head expects 64"
    ):
        LogitMLPForCausalLM.from_pretrained(tmp_path / "wide", **kwargs)
