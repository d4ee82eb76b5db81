"""Cached-feature log-probs equal a fresh full forward, and their analytic gradient equals autograd's."""

import pytest
import torch
from conftest import scramble_head, tiny_llama, tiny_qwen3
from peft import LoraConfig, get_peft_model

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.features import Unembedding, cache_features, warp_kl
from logitmlp_hf.heads.logitmlp.logprobs import warped_token_logprobs


def _setup(make_base=tiny_llama, peft=False):
    base = make_base()
    if peft:
        base = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model = LogitMLPForCausalLM.from_base_model(base)
    scramble_head(model.logitmlp_head, scale=0.3)
    torch.manual_seed(0)
    ids = torch.randint(3, 256, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :4] = 0  # left padding
    return model, ids, mask


@pytest.mark.parametrize("make_base,peft", [(tiny_llama, False), (tiny_qwen3, False), (tiny_llama, True)])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_cached_logprobs_equal_a_full_forward(make_base, peft, temperature):
    model, ids, mask = _setup(make_base, peft)
    keep = 7
    lm = model.get_base_model().get_base_model() if peft else model.get_base_model()
    hidden, stats = cache_features(lm, ids, mask, logits_to_keep=keep)
    assert hidden.shape == (3, keep, 48) and stats.shape == (3, keep, 4)
    targets = ids[:, -keep:]
    got = warped_token_logprobs(
        model.logitmlp_head, hidden, stats, targets, Unembedding.from_model(lm), temperature=temperature, chunk_size=5
    )
    with torch.no_grad():
        out = model(ids, attention_mask=mask, output_base_logits=True)
    warped = out.logits[:, -keep - 1 : -1] / temperature
    want = warped.log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    assert torch.allclose(got.logprobs, want, atol=1e-5)
    entropy = -(warped.softmax(-1) * warped.log_softmax(-1)).sum(-1)
    assert torch.allclose(got.entropy, entropy, atol=1e-4)
    if temperature == 1.0:
        assert torch.allclose(got.kl_to_base, warp_kl(out.logits, out.base_logits)[:, -keep - 1 : -1], atol=1e-5)


def test_analytic_gradient_equals_autograd_through_the_full_vocabulary():
    model, ids, mask = _setup()
    keep = 8
    lm = model.get_base_model()
    hidden, stats = cache_features(lm, ids, mask, logits_to_keep=keep)
    targets = ids[:, -keep:]
    weights = torch.randn(3, keep)
    head = model.logitmlp_head

    got = warped_token_logprobs(head, hidden, stats, targets, Unembedding.from_model(lm), temperature=0.8)
    (got.logprobs * weights).sum().backward()
    analytic = [p.grad.clone() for p in head.parameters()]
    head.zero_grad()

    out = model(ids, attention_mask=mask)  # the naive way: tokens × vocab under autograd
    logp = (out.logits[:, -keep - 1 : -1] / 0.8).log_softmax(-1).gather(-1, targets[..., None]).squeeze(-1)
    (logp * weights).sum().backward()
    for a, p in zip(analytic, head.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-5, rtol=1e-4)


def test_memory_per_cached_token_scales_with_hidden_size_not_vocab():
    small_vocab, big_vocab = tiny_llama(vocab_size=256), tiny_llama(vocab_size=4096)
    ids = torch.randint(3, 256, (2, 10))
    for lm in (small_vocab, big_vocab):
        hidden, stats = cache_features(lm, ids, torch.ones_like(ids), logits_to_keep=6)
        per_token = (hidden.numel() + stats.numel()) / (2 * 6)
        assert per_token == 48 + 4


def test_lora_on_lm_head_is_refused_with_a_clear_error():
    lm = get_peft_model(tiny_llama(), LoraConfig(r=2, target_modules=["lm_head"])).get_base_model()
    with pytest.raises(NotImplementedError, match="merge_and_unload"):
        Unembedding.from_model(lm)


def test_an_empty_batch_of_tokens_is_fine():
    model, ids, mask = _setup()
    lm = model.get_base_model()
    head = model.logitmlp_head
    out = warped_token_logprobs(
        head, torch.zeros(0, 48), torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), Unembedding.from_model(lm)
    )
    assert out.logprobs.shape == (0,)
    out.logprobs.sum().backward()
    assert all(p.grad is None or torch.all(p.grad == 0) for p in head.parameters())
