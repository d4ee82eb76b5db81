"""What is decided before vLLM starts: engine arguments from a head repo, size checks, merged LoRA bases, the serve
command line and the training-server check. None of it needs vLLM installed (tests/test_vllm.py runs the engine)."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import tiny_llama
from transformers import AutoModelForCausalLM

from logitmlp_hf import IncompatibleBaseModelError, LogitMLPConfig, LogitMLPForCausalLM
from logitmlp_hf.cli import main as cli_main
from logitmlp_hf.integrations.vllm.engine import load_vllm_engine, vllm_engine_args, vllm_serve_command
from logitmlp_hf.integrations.vllm.model import HF_CONFIG_KEY, VLLMHeadSpec, wrapper_architecture
from logitmlp_hf.integrations.vllm.rollouts import check_server_serves_head


@pytest.fixture
def head_dir(tmp_path, base_dir):
    model = LogitMLPForCausalLM.from_base_model(AutoModelForCausalLM.from_pretrained(base_dir))
    model.save_pretrained(tmp_path / "head")
    return tmp_path / "head"


def test_engine_args_serve_the_recorded_base_with_the_wrapper_architecture(head_dir, base_dir):
    args = vllm_engine_args(head_dir)
    assert args["model"] == args["tokenizer"] == str(base_dir)
    overrides = args["hf_overrides"]
    assert overrides["architectures"] == ["DecodingHeadLlamaForCausalLM"] == [wrapper_architecture("LlamaForCausalLM")]
    assert overrides[HF_CONFIG_KEY] == {"name_or_path": os.path.abspath(head_dir)}
    assert "enable_lora" not in args
    json.dumps(overrides)  # it must survive `vllm serve --hf-overrides '<json>'`


def test_engine_args_refuse_a_base_of_another_size_before_vllm_starts(head_dir, tmp_path):
    other = tmp_path / "narrow"
    tiny_llama(hidden_size=32).save_pretrained(other)
    with pytest.raises(IncompatibleBaseModelError, match=r"hidden size 32 \(head expects 48\)"):
        vllm_engine_args(head_dir, base_model=other)
    wide_vocab = tmp_path / "wide-vocab"
    tiny_llama(vocab_size=300).save_pretrained(wide_vocab)
    with pytest.raises(IncompatibleBaseModelError, match=r"vocabulary size 300 \(head expects 256\)"):
        vllm_engine_args(head_dir, base_model=wide_vocab)


def test_engine_args_need_a_base(tmp_path, base_dir):
    model = LogitMLPForCausalLM.from_base_model(AutoModelForCausalLM.from_pretrained(base_dir))
    model.config.base_model_name_or_path = None
    model.save_pretrained(tmp_path / "orphan")
    with pytest.raises(ValueError, match="does not record its base"):
        vllm_engine_args(tmp_path / "orphan")
    assert vllm_engine_args(tmp_path / "orphan", base_model=base_dir)["model"] == str(base_dir)


def test_head_spec_validation_and_inline_config():
    with pytest.raises(ValueError, match="exactly one"):
        VLLMHeadSpec()
    with pytest.raises(ValueError, match="exactly one"):
        VLLMHeadSpec(name_or_path="x", config={"model_type": "logitmlp"})

    class HFConfig:
        architectures = ["DecodingHeadLlamaForCausalLM"]

    with pytest.raises(ValueError, match="no 'decoding_head' entry"):
        VLLMHeadSpec.from_hf_config(HFConfig())
    HFConfig.decoding_head = {"name_or_path": "x", "weights": "y"}
    with pytest.raises(ValueError, match=r"unknown keys in decoding_head: \['weights'\]"):
        VLLMHeadSpec.from_hf_config(HFConfig())
    config = LogitMLPConfig(hidden_size=48, vocab_size=256, head_hidden_size=16, slope_bound=6.0)
    HFConfig.decoding_head = {"config": config.to_diff_dict()}
    loaded = VLLMHeadSpec.from_hf_config(HFConfig()).load_config()
    assert isinstance(loaded, LogitMLPConfig)
    assert (loaded.hidden_size, loaded.vocab_size, loaded.head_hidden_size, loaded.slope_bound) == (48, 256, 16, 6.0)


def test_model_impl_transformers_is_refused(head_dir):
    with pytest.raises(ValueError, match="bypasses vLLM's model classes"):
        load_vllm_engine(head_dir, model_impl="transformers")


def test_lora_base_is_merged_once_or_left_to_vllm(tmp_path, base_dir, monkeypatch):
    from peft import LoraConfig, PeftModel, get_peft_model

    monkeypatch.setenv("LOGITMLP_HF_CACHE", str(tmp_path / "cache"))
    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir),
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    lora.save_pretrained(tmp_path / "adapter")
    base = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), tmp_path / "adapter")
    head = LogitMLPForCausalLM.from_base_model(base)
    head.config.base_adapter_name_or_path = str(tmp_path / "adapter")
    head.save_pretrained(tmp_path / "head")

    merged_args = vllm_engine_args(tmp_path / "head")
    merged_dir = merged_args["model"]
    assert merged_dir.startswith(str(tmp_path / "cache")) and "enable_lora" not in merged_args
    ids = torch.tensor([[1, 5, 9, 33, 7]])
    merged = AutoModelForCausalLM.from_pretrained(merged_dir)
    with torch.no_grad():
        torch.testing.assert_close(merged(ids).logits, base(ids).logits, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(base.get_base_model()(ids).logits, merged(ids).logits)  # the adapter is in there
    stamp = os.path.getmtime(os.path.join(merged_dir, "config.json"))
    assert vllm_engine_args(tmp_path / "head")["model"] == merged_dir
    assert os.path.getmtime(os.path.join(merged_dir, "config.json")) == stamp  # reused, not merged again

    lora_args = vllm_engine_args(tmp_path / "head", adapter="vllm")
    assert lora_args["model"] == str(base_dir) and lora_args["enable_lora"] and lora_args["max_lora_rank"] == 4
    with pytest.raises(ValueError, match="adapter must be one of"):
        vllm_engine_args(tmp_path / "head", adapter="ignore")


def test_serve_command_line(head_dir, base_dir, capsys):
    command = vllm_serve_command(head_dir, extra_args=["--port", "8011"])
    assert command[:3] == ["vllm", "serve", str(base_dir)] and command[-2:] == ["--port", "8011"]
    overrides = json.loads(command[command.index("--hf-overrides") + 1])
    assert overrides == vllm_engine_args(head_dir)["hf_overrides"]

    assert cli_main(["vllm-serve", "--dry-run", str(head_dir), "--port", "8011"]) == 0
    printed = capsys.readouterr().out.strip()
    assert printed.startswith(f"vllm serve {base_dir} ") and printed.endswith("--port 8011")


def test_training_server_command_serves_a_fresh_head_with_trl_settings(base_dir, head_dir, capsys):
    assert (
        cli_main(
            [
                "vllm-serve",
                "--dry-run",
                "--for-training",
                "--head-config",
                '{"head_hidden_size": 32}',
                str(base_dir),
                "--port",
                "8012",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out.strip()
    assert printed.startswith("VLLM_SERVER_DEV_MODE=1 vllm serve ")
    for setting in ["--logprobs-mode processed_logprobs", "--weight-transfer-config", "--port 8012"]:
        assert setting in printed
    import shlex

    words = shlex.split(printed)
    overrides = json.loads(words[words.index("--hf-overrides") + 1])
    inline = overrides[HF_CONFIG_KEY]["config"]
    assert overrides["architectures"] == ["DecodingHeadLlamaForCausalLM"]
    assert (inline["model_type"], inline["hidden_size"], inline["vocab_size"], inline["head_hidden_size"]) == (
        "logitmlp",
        48,
        256,
        32,
    )

    # a head repo as HEAD: the server loads its weights (the trainer then continues from them)
    assert cli_main(["vllm-serve", "--dry-run", "--for-training", str(head_dir)]) == 0
    words = shlex.split(capsys.readouterr().out.strip())
    assert json.loads(words[words.index("--hf-overrides") + 1])[HF_CONFIG_KEY] == {"name_or_path": str(head_dir)}


def test_training_server_check():
    head = LogitMLPConfig(hidden_size=48, vocab_size=256, head_hidden_size=32)
    plain = {"model_config": {"model": "base", "hf_overrides": {}}}
    with pytest.raises(ValueError, match="without a decoding head"):
        check_server_serves_head(plain, head)
    served = {
        "model_config": {
            "model": "base",
            "hf_overrides": {
                "architectures": ["DecodingHeadLlamaForCausalLM"],
                HF_CONFIG_KEY: {"config": head.to_diff_dict()},
            },
        }
    }
    check_server_serves_head(served, head)
    other = LogitMLPConfig(hidden_size=48, vocab_size=256, head_hidden_size=64)
    with pytest.raises(ValueError, match="head_hidden_size=32"):
        check_server_serves_head(served, other)
    from_repo = {
        "model_config": {
            "hf_overrides": {
                "architectures": ["DecodingHeadLlamaForCausalLM"],
                HF_CONFIG_KEY: {"name_or_path": "user/head"},
            }
        }
    }
    check_server_serves_head(from_repo, head)


def test_heads_that_need_the_token_budget_or_decide_per_sequence_are_refused(tmp_path, base_dir):
    from logitmlp_hf import DecodingAdapterForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_dir)
    DecodingAdapterForCausalLM.from_base_model(base, budget_conditioning=True).save_pretrained(tmp_path / "budget")
    with pytest.raises(ValueError, match="conditions on the token budget left"):
        vllm_engine_args(tmp_path / "budget")
    DecodingAdapterForCausalLM.from_base_model(base).save_pretrained(tmp_path / "plain")
    assert vllm_engine_args(tmp_path / "plain")["hf_overrides"]["architectures"] == ["DecodingHeadLlamaForCausalLM"]
