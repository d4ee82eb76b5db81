"""The evaluation sampler: seeded Gumbel-max noise per sample, independent of the batch it shares."""

from __future__ import annotations

import pytest
import torch

from logitmlp_hf.evaluation.sampler import SeededGumbelSampler, sample_completions, sample_seed


def _reference_gumbel(seed: int, steps: int, vocab: int) -> list[torch.Tensor]:
    """The documented noise: step t of a sample is -log(-log(u_t)) with u_t its generator's t-th uniform draw."""
    generator = torch.Generator().manual_seed(seed)
    tiny = torch.finfo(torch.float32).tiny
    out = []
    for _ in range(steps):
        u = torch.rand(vocab, generator=generator, dtype=torch.float32).clamp_(min=tiny, max=1.0 - 2**-24)
        out.append(-torch.log(-torch.log(u)))
    return out


def test_noise_is_each_samples_own_stream_whatever_shares_the_batch():
    vocab, seeds = 1000, [sample_seed(0, p, s) for p in range(3) for s in range(2)]
    scores = torch.randn(len(seeds), vocab)
    scores[0, :10] = float("-inf")  # masked tokens stay masked
    together = SeededGumbelSampler(seeds, "cpu")
    alone = SeededGumbelSampler(seeds[3:4], "cpu")
    for step in range(3):
        batch_out = together(None, scores)
        single_out = alone(None, scores[3:4])
        assert torch.equal(batch_out[3], single_out[0])  # the batch does not change a sample
        for row, seed in enumerate(seeds):
            expected = scores[row] + _reference_gumbel(seed, step + 1, vocab)[step]
            assert torch.equal(batch_out[row], expected)
    assert torch.isneginf(batch_out[0, :10]).all()


def test_argmax_of_scores_plus_noise_samples_the_softmax():
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, float("-inf")])
    n = 20_000
    sampler = SeededGumbelSampler([sample_seed(1, i, 0) for i in range(n)], "cpu")
    draws = sampler(None, logits.expand(n, -1).clone()).argmax(-1)
    freq = torch.bincount(draws, minlength=5).float() / n
    expected = logits.softmax(-1)
    assert freq[4] == 0
    # 4 binomial standard errors at n = 20,000
    assert torch.all((freq - expected).abs() <= 4 * (expected * (1 - expected) / n).sqrt() + 1e-9)


def test_seeds_are_distinct_per_problem_and_sample():
    seeds = {sample_seed(0, p, s) for p in range(50) for s in range(8)}
    assert len(seeds) == 400 and all(0 <= s < 2**63 for s in seeds)


def _generate_reference(model, prompts, n, seeds, processors, eos, max_new_tokens):
    """What the evaluation computed before its own loop: greedy generate + the seeded noise, rows repeated."""
    from transformers import GenerationConfig, LogitsProcessorList

    rows = [p for p in prompts for _ in range(n)]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in rows])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in rows])
    extra = [SeededGumbelSampler(seeds, "cpu")] if seeds is not None else []
    config = GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=max_new_tokens, pad_token_id=0, eos_token_id=sorted(eos)
    )
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            generation_config=config,
            logits_processor=LogitsProcessorList(list(processors) + extra),
        )
    completions = []
    for row in out[:, width:].tolist():
        cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
        completions.append(row[:cut])
    return completions


def _sharp_llama():
    """The tiny Llama with attention and logits sharp enough that positions and the cache change the samples (at
    its initial scale attention is uniform and the noise swamps the logits)."""
    from conftest import tiny_llama

    model = tiny_llama()
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(30)
            layer.self_attn.k_proj.weight.mul_(30)
        model.lm_head.weight.mul_(30)
    return model


@pytest.mark.parametrize("with_head", [False, True])
def test_sample_completions_equals_generate_with_the_seeded_noise(with_head):
    """Prefill once per prompt, finished rows dropped: the same samples as generate, row for row."""
    from conftest import scramble_head
    from transformers import LogitsProcessorList, TemperatureLogitsWarper, TopKLogitsWarper

    from logitmlp_hf import LogitMLPForCausalLM

    model = _sharp_llama()
    if with_head:
        model = LogitMLPForCausalLM.from_base_model(model)
        scramble_head(model.logitmlp_head)
    prompts = [[5, 9, 17, 3], [40, 41], [7, 8, 9, 10, 11, 12, 13]]  # left padding of different widths
    eos = {2, 30, 31, 32, 33, 34, 35, 36}  # many end tokens, so rows finish at different steps
    n, steps = 4, 12
    seeds = [sample_seed(0, p, s) for p in range(len(prompts)) for s in range(n)]
    processors = [TemperatureLogitsWarper(0.8), TopKLogitsWarper(50)]
    ours = sample_completions(
        model,
        prompts,
        n,
        max_new_tokens=steps,
        eos_token_ids=eos,
        pad_token_id=0,
        row_seeds=seeds,
        logits_processor=LogitsProcessorList(processors),
    )
    assert ours == _generate_reference(model, prompts, n, seeds, processors, eos, steps)
    lengths = {len(c) for c in ours}
    assert steps in lengths and min(lengths) < steps  # some rows left the batch early, some ran to the limit
    # greedy: no noise, every row of a prompt the same
    greedy = sample_completions(model, prompts, 2, max_new_tokens=steps, eos_token_ids=eos, pad_token_id=0)
    assert greedy == _generate_reference(model, prompts, 2, None, [], eos, steps)


def test_sample_completions_checks_its_seeds():
    from conftest import tiny_llama

    with pytest.raises(ValueError, match="row_seeds has 3 seeds for 4 rows"):
        sample_completions(
            tiny_llama(), [[5, 6]], 4, max_new_tokens=2, eos_token_ids={2}, pad_token_id=0, row_seeds=[1, 2, 3]
        )
