"""The evaluation sampler: seeded Gumbel-max noise per sample, independent of the batch it shares."""

from __future__ import annotations

import torch

from logitmlp_hf.evaluation.sampler import SeededGumbelSampler, sample_seed


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
