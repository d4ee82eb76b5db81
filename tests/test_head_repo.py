"""Head-only repos: save/load round trip, Auto classes, stacking on other bases, and bad input."""

import json
import os

import pytest
import torch
from conftest import scramble_head, tiny_llama
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from test_modeling import _batch
from transformers import AutoModelForCausalLM

from logitmlp_hf import (
    HeadCheckpointError,
    IncompatibleBaseModelError,
    LogitMLPForCausalLM,
    LogitMLPHead,
    LogitMLPLogitsProcessor,
)


@pytest.fixture
def head_dir(tmp_path, base_dir):
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    model = LogitMLPForCausalLM.from_base_model(base, objective="pass@k", pass_k=4)
    scramble_head(model.logitmlp_head)
    path = tmp_path / "head"
    model.save_pretrained(path, metrics={"best@8": 0.5})
    return path, model


def test_save_writes_only_a_tiny_safetensors_head_and_a_card(head_dir, base_dir):
    path, model = head_dir
    assert sorted(os.listdir(path)) == ["README.md", "config.json", LogitMLPHead.weights_name]
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "logitmlp" and config["base_model_name_or_path"] == str(base_dir)
    assert config["objective"] == "pass@k" and config["pass_k"] == 4
    card = (path / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: logitmlp-hf" in card and "license: apache-2.0" in card
    assert "pass@k (analytical pass@k advantage, k = 4)" in card and "| best@8 | 0.5 |" in card
    assert f"{model.config.num_head_parameters:,}" in card
    # ~0.6 MB for a 576-wide base (SmolLM2); a few MB at most at 2048 wide
    size = (path / LogitMLPHead.weights_name).stat().st_size
    assert size < model.config.num_head_parameters * 4 + 4096


def test_save_load_round_trip_is_bit_exact(head_dir):
    path, model = head_dir
    loaded = LogitMLPForCausalLM.from_pretrained(path)
    for name, tensor in model.logitmlp_head.state_dict().items():
        assert torch.equal(tensor, loaded.logitmlp_head.state_dict()[name])
    ids, mask = _batch()
    assert torch.equal(model(ids, attention_mask=mask).logits, loaded(ids, attention_mask=mask).logits)


def test_auto_class_loads_base_plus_head_from_a_local_dir(head_dir):
    path, model = head_dir
    loaded = AutoModelForCausalLM.from_pretrained(path)
    assert isinstance(loaded, LogitMLPForCausalLM)
    ids, mask = _batch()
    assert torch.equal(model(ids, attention_mask=mask).logits, loaded(ids, attention_mask=mask).logits)
    bf16 = AutoModelForCausalLM.from_pretrained(path, dtype=torch.bfloat16)
    assert bf16.get_base_model().dtype == torch.bfloat16 and bf16.logitmlp_head.fc_in.weight.dtype == torch.float32
    assert torch.isfinite(bf16(ids, attention_mask=mask).logits).all()


def test_processor_from_pretrained_loads_only_the_head(head_dir, base_dir):
    path, model = head_dir
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    ids, mask = _batch(lengths=(5, 5))
    with LogitMLPLogitsProcessor.from_pretrained(path, base) as warp:
        scores = warp(ids, base(ids, attention_mask=mask).logits[:, -1])
    assert torch.allclose(scores, model(ids, attention_mask=mask).logits[:, -1], atol=1e-5)


def _lora_dir(tmp_path, base_dir):
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    lora = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    path = tmp_path / "lora"
    lora.save_pretrained(path)
    return path


def test_stacking_on_a_lora_adapter_dir(tmp_path, head_dir, base_dir):
    head_path, _ = head_dir
    lora_path = _lora_dir(tmp_path, base_dir)
    stacked = LogitMLPForCausalLM.from_pretrained(head_path, base_model=lora_path)
    assert isinstance(stacked.get_base_model(), PeftModel)
    assert not any(p.requires_grad for p in stacked.get_base_model().parameters())
    ids, mask = _batch()
    out = stacked(ids, attention_mask=mask, output_base_logits=True)
    reference = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), lora_path)
    assert torch.allclose(out.base_logits, reference(ids, attention_mask=mask).logits, atol=1e-5)
    plain = AutoModelForCausalLM.from_pretrained(base_dir)(ids, attention_mask=mask).logits
    assert not torch.allclose(out.base_logits, plain, atol=1e-3)  # the adapter is really active
    assert not torch.allclose(out.logits, out.base_logits, atol=1e-3)  # and the head acts through PEFT's forward
    kwargs = dict(
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=3,
        pad_token_id=0,
        output_scores=True,
        return_dict_in_generate=True,
    )
    warped = stacked.generate(ids, **kwargs)
    with stacked.disable_head():
        unwarped = stacked.generate(ids, **kwargs)
    assert torch.equal(warped.sequences, unwarped.sequences)  # rank-preserving: greedy is unchanged
    assert torch.allclose(warped.scores[0], out.logits[:, -1], atol=1e-5)  # generate() samples from the warp
    assert not torch.allclose(warped.scores[0], unwarped.scores[0], atol=1e-3)
    # saving the stacked model records the adapter, and reloading rebuilds base + adapter + head
    stacked.config.base_adapter_name_or_path = None
    stacked.attach_base_model(stacked.get_base_model())
    assert stacked.config.base_adapter_name_or_path == str(lora_path)
    stacked.save_pretrained(tmp_path / "stacked")
    again = AutoModelForCausalLM.from_pretrained(tmp_path / "stacked")
    assert isinstance(again.get_base_model(), PeftModel)
    assert torch.equal(again(ids, attention_mask=mask).logits, out.logits)


def test_stacking_on_a_peft_model_object_and_a_merged_checkpoint(tmp_path, head_dir, base_dir):
    head_path, _ = head_dir
    peft_model = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(base_dir), _lora_dir(tmp_path, base_dir)
    )
    stacked = LogitMLPForCausalLM.from_pretrained(head_path, base_model=peft_model)
    ids, mask = _batch()
    from_object = stacked(ids, attention_mask=mask).logits
    merged_dir = tmp_path / "merged"
    peft_model.merge_and_unload().save_pretrained(merged_dir)
    on_merged = LogitMLPForCausalLM.from_pretrained(head_path, base_model=str(merged_dir))
    assert torch.allclose(on_merged(ids, attention_mask=mask).logits, from_object, atol=1e-4)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"hidden_size": 32}, "hidden size 32 \\(head expects 48\\)"),
        ({"vocab_size": 300}, "vocabulary size 300 \\(head expects 256\\)"),
    ],
)
def test_incompatible_base_names_both_values(head_dir, kwargs, match):
    path, _ = head_dir
    with pytest.raises(IncompatibleBaseModelError, match=match):
        LogitMLPForCausalLM.from_pretrained(path, base_model=tiny_llama(**kwargs))


def test_missing_corrupt_and_mismatched_head_files(tmp_path, head_dir, base_dir):
    path, _ = head_dir
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / "config.json").write_text((path / "config.json").read_text())
    with pytest.raises(HeadCheckpointError, match="has no 'logitmlp_head.safetensors'"):
        LogitMLPForCausalLM.from_pretrained(missing)
    torch.save({}, missing / "pytorch_model.bin")
    with pytest.raises(HeadCheckpointError, match="pickled weights are never loaded"):
        LogitMLPForCausalLM.from_pretrained(missing)

    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "config.json").write_text((path / "config.json").read_text())
    data = (path / LogitMLPHead.weights_name).read_bytes()
    (corrupt / LogitMLPHead.weights_name).write_bytes(data[: len(data) // 2])  # a truncated download
    with pytest.raises(HeadCheckpointError, match="not a readable safetensors file"):
        LogitMLPForCausalLM.from_pretrained(corrupt)

    (corrupt / LogitMLPHead.weights_name).write_bytes(data)
    config = json.loads((path / "config.json").read_text())
    config["head_hidden_size"] = 128
    (corrupt / "config.json").write_text(json.dumps(config))
    with pytest.raises(HeadCheckpointError, match="does not match its config"):
        LogitMLPForCausalLM.from_pretrained(corrupt)

    (corrupt / "config.json").write_text("{not json")
    with pytest.raises(HeadCheckpointError, match="not readable JSON"):
        LogitMLPForCausalLM.from_pretrained(corrupt)

    with pytest.raises(HeadCheckpointError, match="is a 'llama' checkpoint, not a 'logitmlp' head"):
        LogitMLPForCausalLM.from_pretrained(base_dir)
    with pytest.raises(HeadCheckpointError, match="does-not-exist' does not exist"):
        LogitMLPForCausalLM.from_pretrained(tmp_path / "does-not-exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(HeadCheckpointError, match="has no 'config.json'"):
        LogitMLPForCausalLM.from_pretrained(empty)


def test_nonfinite_head_weights_are_refused(tmp_path, head_dir):
    path, model = head_dir
    bad = tmp_path / "nan"
    bad.mkdir()
    (bad / "config.json").write_text((path / "config.json").read_text())
    state = {k: v.clone() for k, v in model.logitmlp_head.state_dict().items()}
    state["fc_out.bias"][0] = float("nan")
    save_file(state, bad / LogitMLPHead.weights_name)
    with pytest.raises(HeadCheckpointError, match="non-finite values in \\['fc_out.bias'\\]"):
        LogitMLPForCausalLM.from_pretrained(bad)


def test_pickle_serialization_is_refused(tmp_path, head_dir):
    _, model = head_dir
    with pytest.raises(ValueError, match="safetensors only"):
        model.save_pretrained(tmp_path / "x", safe_serialization=False)
