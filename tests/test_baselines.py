"""Baseline decoding policies: each processor's defining rule, checked exactly on tensors and in a real generate."""

import itertools
import math

import numpy as np
import pytest
import torch
from conftest import VOCAB, tiny_llama
from test_modeling import _batch
from transformers import MinPLogitsWarper, TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from logitmlp_hf.evaluation.baselines import (
    BASELINES,
    AnnealedTemperatureProcessor,
    EntropyGuidedTemperatureProcessor,
    MultiTemperatureProcessor,
    finite_entropy,
    make_baseline_processor,
    split_samples_across_temperatures,
    static_warpers,
)
from logitmlp_hf.tasks.answers import majority_vote


# ---------------------------------------------------------------------------------------------------------- helpers


def _uniform_scores(ks, value=2.0, vocab=16):
    """Row i uniform over its first ks[i] tokens (entropy exactly log ks[i]), the rest masked with -inf."""
    scores = torch.full((len(ks), vocab), float("-inf"))
    for row, k in enumerate(ks):
        scores[row, :k] = value
    return scores


def _left_padded(lengths=(5, 3), seed=0):
    return _batch(lengths=lengths, seed=seed)


def _generate(model, ids, mask, processor, seed=0, **kwargs):
    # top_k=None: generate otherwise falls back to its global default top_k=50 when sampling.
    kwargs.setdefault("top_k", None)
    torch.manual_seed(seed)
    return model.generate(
        ids,
        attention_mask=mask,
        do_sample=True,
        temperature=1.0,
        pad_token_id=0,
        logits_processor=[processor],
        output_scores=True,
        output_logits=True,
        return_dict_in_generate=True,
        **kwargs,
    )


def _applied_temperatures(out):
    """Per step, per row: raw logits / processed scores (constant over the vocabulary for a pure temperature)."""
    temps = []
    for raw, processed in zip(out.logits, out.scores):
        assert torch.isfinite(processed).all()
        ratio = raw / processed
        assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), rtol=1e-5), "not a pure per-row temperature"
        temps.append(ratio[:, 0])
    return torch.stack(temps, dim=1)  # (rows, steps)


# ---------------------------------------------------------------------------------------------------------- entropy


def test_finite_entropy_ignores_masked_entries_and_never_nans():
    scores = _uniform_scores([1, 4, 16])
    assert torch.allclose(finite_entropy(scores), torch.tensor([0.0, math.log(4), math.log(16)]), atol=1e-6)
    all_masked = torch.full((2, 8), float("-inf"))
    all_masked[1, 3] = float("nan")
    assert torch.equal(finite_entropy(all_masked), torch.zeros(2))
    half = finite_entropy(_uniform_scores([4]).half())
    assert half.dtype == torch.float32 and torch.allclose(half, torch.tensor([math.log(4)]), atol=1e-3)


# ------------------------------------------------------------------------------------------------ entropy-guided


def _reference_temperatures(ks_per_step, window, percentile, min_history, t_low, t_high):
    """Direct transcription of the rule with NumPy (np.percentile uses the same linear interpolation)."""
    entropies = np.log(np.asarray(ks_per_step, dtype=np.float64))  # (steps, rows)
    out = np.empty_like(entropies)
    for t in range(entropies.shape[0]):
        for r in range(entropies.shape[1]):
            past = entropies[max(0, t - window) : t, r]
            high = len(past) >= min_history and entropies[t, r] > np.percentile(past, percentile)
            out[t, r] = t_high if high else t_low
    return out


@pytest.mark.parametrize("window,percentile,min_history", [(4, 75.0, None), (5, 50.0, 2), (3, 100.0, 1), (6, 0.0, 3)])
def test_entropy_guided_uses_t_high_exactly_above_the_window_percentile(window, percentile, min_history):
    gen = torch.Generator().manual_seed(window)
    steps, rows, vocab = 30, 3, 16
    ks = torch.randint(1, vocab + 1, (steps, rows), generator=gen)
    ks[10:14, 0] = 5  # a constant stretch: equal to the threshold is not "above"
    proc = EntropyGuidedTemperatureProcessor(0.5, 1.5, window=window, percentile=percentile, min_history=min_history)
    expected = _reference_temperatures(
        ks.numpy(), window, percentile, window if min_history is None else min_history, 0.5, 1.5
    )
    ids = torch.randint(3, VOCAB, (rows, 4), generator=gen)
    for t in range(steps):
        scores = _uniform_scores(ks[t].tolist(), value=2.0, vocab=vocab)
        out = proc(ids, scores)
        temps = torch.tensor(expected[t], dtype=torch.float32)
        finite = torch.isfinite(scores)
        assert not out.isnan().any() and torch.equal(torch.isfinite(out), finite)
        assert torch.equal(out[finite], (2.0 / temps[:, None]).expand_as(out)[finite]), f"step {t}"
        assert torch.equal(proc.last_temperatures, temps)
        ids = torch.cat([ids, torch.randint(3, VOCAB, (rows, 1), generator=gen)], dim=1)
    assert (expected == 1.5).any() and (expected == 0.5).any()  # both branches exercised


def test_entropy_guided_warm_up_uses_t_low_until_min_history():
    proc = EntropyGuidedTemperatureProcessor(0.5, 2.0, window=4, percentile=50)
    ids = torch.full((1, 3), 5)
    # Rising entropies: every step would be "above" — but the first `window` steps have too little history.
    for t, k in enumerate([1, 2, 3, 4, 5, 6]):
        proc(ids, _uniform_scores([k]))
        assert proc.last_temperatures.item() == (0.5 if t < 4 else 2.0)
        assert math.isnan(proc.last_thresholds.item()) == (t < 4)
        ids = torch.cat([ids, ids[:, -1:]], dim=1)


def test_entropy_guided_keeps_dtype_and_device_and_handles_masked_rows():
    proc = EntropyGuidedTemperatureProcessor(0.5, 2.0, window=2, min_history=1)
    ids = torch.full((2, 3), 5)
    for k in ([1, 1], [8, 1]):
        scores = _uniform_scores(k).to(torch.bfloat16)
        scores[1] = float("-inf")  # a row with nothing allowed: entropy 0, output stays -inf, no NaN
        out = proc(ids, scores)
        assert out.dtype == torch.bfloat16 and out.device == scores.device and not out.isnan().any()
        ids = torch.cat([ids, ids[:, -1:]], dim=1)
    assert proc.last_temperatures.tolist() == [2.0, 0.5]


def test_entropy_guided_state_resets_on_a_new_call():
    proc = EntropyGuidedTemperatureProcessor(0.5, 2.0, window=2, min_history=1)
    ids = torch.full((2, 3), 5)
    proc(ids, _uniform_scores([1, 1]))
    proc(torch.cat([ids, ids[:, -1:]], 1), _uniform_scores([4, 4]))
    assert proc.last_temperatures.tolist() == [2.0, 2.0]  # continuation: history [0] ⇒ log 4 is above
    # Same batch size and exactly one token longer, but a different prefix: a new call, back to warm-up.
    other = torch.full((2, 5), 7)
    proc(other, _uniform_scores([8, 8]))
    assert proc.last_temperatures.tolist() == [0.5, 0.5]
    # A different batch size is a new call too.
    proc(torch.cat([other, other[:, -1:]], 1)[:1], _uniform_scores([16]))
    assert proc.last_temperatures.tolist() == [0.5]
    proc.reset()
    proc(ids, _uniform_scores([4, 4]))
    assert proc.last_temperatures.tolist() == [0.5, 0.5]


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("entropy_guided", {"t_low": 0.5, "t_high": 2.0, "window": 3, "percentile": 50, "min_history": 1}),
        ("annealed", {"t_start": 2.0, "t_end": 0.5, "horizon": 4, "schedule": "cosine"}),
    ],
)
def test_state_resets_between_two_generate_calls(name, kwargs):
    model = tiny_llama()
    first_ids, first_mask = _left_padded((6, 4), seed=1)
    # Same batch size, and exactly one token longer than the first call's last step (6 + 7 - 1): only the prefix
    # check can tell the second call from a continuation.
    ids, mask = _left_padded((13, 9), seed=2)
    reused = make_baseline_processor(name, **kwargs)
    first = _generate(model, first_ids, first_mask, reused, max_new_tokens=7, num_return_sequences=2)
    assert first.sequences.shape[1] == ids.shape[1]
    second = _generate(model, ids, mask, reused, max_new_tokens=6, num_return_sequences=2, seed=3)
    fresh = _generate(
        model, ids, mask, make_baseline_processor(name, **kwargs), max_new_tokens=6, num_return_sequences=2, seed=3
    )
    assert torch.equal(second.sequences, fresh.sequences)
    for a, b in zip(second.scores, fresh.scores):
        assert torch.equal(a, b)


def test_entropy_guided_in_generate_matches_the_rule_on_the_raw_logits():
    model = tiny_llama()
    ids, mask = _left_padded((5, 3))
    proc = EntropyGuidedTemperatureProcessor(0.5, 2.0, window=3, percentile=50, min_history=1)
    out = _generate(model, ids, mask, proc, max_new_tokens=10, num_return_sequences=2)
    temps = _applied_temperatures(out)
    entropies = torch.stack([finite_entropy(raw) for raw in out.logits], dim=1).double().numpy()
    for r in range(temps.shape[0]):
        for t in range(temps.shape[1]):
            past = entropies[r, max(0, t - 3) : t]
            high = len(past) >= 1 and entropies[r, t] > np.percentile(past, 50)
            assert temps[r, t].item() == pytest.approx(2.0 if high else 0.5, rel=1e-5)


# ---------------------------------------------------------------------------------------------------------- annealed


@pytest.mark.parametrize("schedule", ["linear", "cosine", "exponential"])
def test_annealed_schedule_values(schedule):
    proc = AnnealedTemperatureProcessor(2.0, 0.5, horizon=4, schedule=schedule)
    formulas = {
        "linear": lambda f: 2.0 + (0.5 - 2.0) * f,
        "cosine": lambda f: 0.5 + 1.5 * (1 + math.cos(math.pi * f)) / 2,
        "exponential": lambda f: 2.0 * 0.25**f,
    }
    for p in range(8):
        assert proc.temperature_at(p) == pytest.approx(formulas[schedule](min(p / 4, 1.0)), rel=1e-12)
    assert proc.temperature_at(0) == pytest.approx(2.0) and proc.temperature_at(4) == pytest.approx(0.5)
    temps = [proc.temperature_at(p) for p in range(5)]
    assert all(a > b for a, b in itertools.pairwise(temps))  # strictly annealed down


@pytest.mark.parametrize("schedule", ["linear", "cosine", "exponential"])
def test_annealed_in_generate_with_left_padding_and_num_return_sequences(schedule):
    model = tiny_llama()
    ids, mask = _left_padded((6, 2, 4))
    proc = AnnealedTemperatureProcessor(2.0, 0.5, horizon=5, schedule=schedule)
    out = _generate(model, ids, mask, proc, max_new_tokens=8, num_return_sequences=3)
    temps = _applied_temperatures(out)
    assert temps.shape[0] == 9
    for p in range(temps.shape[1]):
        assert torch.allclose(temps[:, p], torch.full((9,), proc.temperature_at(p)), rtol=1e-5), f"position {p}"


def test_annealed_keeps_dtype_and_masked_entries():
    proc = AnnealedTemperatureProcessor(2.0, 1.0, horizon=2)
    scores = _uniform_scores([3, 1]).half()
    out = proc(torch.ones(2, 4, dtype=torch.long), scores)
    assert out.dtype == torch.float16 and not out.isnan().any()
    assert torch.equal(torch.isfinite(out), torch.isfinite(scores)) and out[0, 0].item() == 1.0


# --------------------------------------------------------------------------------------------- multi-temperature


def test_split_is_even_and_deterministic():
    temps = [0.6, 1.0, 1.2]
    assert split_samples_across_temperatures(8, temps) == [0.6, 0.6, 0.6, 1.0, 1.0, 1.0, 1.2, 1.2]
    assert split_samples_across_temperatures(6, temps) == [0.6, 0.6, 1.0, 1.0, 1.2, 1.2]
    assert split_samples_across_temperatures(2, temps) == [0.6, 1.0]
    assert split_samples_across_temperatures(0, temps) == []
    for n in range(20):
        split = split_samples_across_temperatures(n, temps)
        counts = [split.count(t) for t in temps]
        assert len(split) == n and max(counts) - min(counts) <= 1
        assert split == split_samples_across_temperatures(n, temps)
    with pytest.raises(ValueError):
        split_samples_across_temperatures(4, [])
    with pytest.raises(ValueError):
        split_samples_across_temperatures(4, [1.0, 0.0])


def test_multi_temperature_applies_each_rows_temperature():
    scores = torch.randn(6, 10)
    scores[:, 0] = float("-inf")
    per_row = MultiTemperatureProcessor([0.5, 1.0, 2.0, 4.0, 0.25, 1.5])
    expected = torch.tensor([0.5, 1.0, 2.0, 4.0, 0.25, 1.5])
    assert torch.equal(per_row(None, scores), scores / expected[:, None])
    # One temperature per sample of a prompt, tiled over prompts like num_return_sequences rows.
    per_sample = MultiTemperatureProcessor.from_split(3, [0.5, 2.0])
    out = per_sample(None, scores)
    assert torch.equal(out, scores / torch.tensor([0.5, 0.5, 2.0] * 2)[:, None]) and not out.isnan().any()
    assert per_sample(None, scores.half()).dtype == torch.float16
    with pytest.raises(ValueError, match="divide"):
        MultiTemperatureProcessor([1.0, 2.0, 3.0, 4.0])(None, scores)
    with pytest.raises(ValueError):
        MultiTemperatureProcessor([1.0, -1.0])


def test_multi_temperature_in_generate_with_num_return_sequences():
    model = tiny_llama()
    ids, mask = _left_padded((5, 3))
    proc = make_baseline_processor("multi_temperature", n=4, temperatures=[0.5, 1.0, 2.0])
    out = _generate(model, ids, mask, proc, max_new_tokens=5, num_return_sequences=4)
    temps = _applied_temperatures(out)
    expected = torch.tensor([0.5, 0.5, 1.0, 2.0] * 2)[:, None].expand_as(temps)
    assert torch.allclose(temps, expected, rtol=1e-5)


# ---------------------------------------------------------------------------------------------------------- voting


def test_majority_vote():
    assert majority_vote(["4", None, " 5", "5.", "4"]) == "4"  # 2-2 tie: "4" occurred first
    assert majority_vote([None, "5", "4", "$4$", "\\boxed{5}", "5"]) == "5"
    assert majority_vote(["b", "a", "a", "b"]) == "b"
    assert majority_vote([None, None]) is None and majority_vote([]) is None
    assert majority_vote(["", "  ", None]) is None  # empty answers normalise to None and are ignored
    assert majority_vote(["5", "5.", "5."], normalize=None) == "5."
    assert majority_vote(["X", "x", "y"], normalize=str.lower) == "x"
    assert majority_vote(["\u22123", "-3", "2"]) == "-3"


# ---------------------------------------------------------------------------------------------------------- registry


def test_registry_and_factory():
    assert set(BASELINES) == {"entropy_guided", "annealed", "multi_temperature"}
    assert isinstance(
        make_baseline_processor("entropy_guided", t_low=0.6, t_high=1.2), EntropyGuidedTemperatureProcessor
    )
    assert isinstance(
        make_baseline_processor("annealed", t_start=1.2, t_end=0.6, horizon=8), AnnealedTemperatureProcessor
    )
    multi = make_baseline_processor("multi_temperature", temperatures_per_row=[0.5, 1.0])
    assert multi.temperatures.tolist() == [0.5, 1.0]
    with pytest.raises(ValueError, match="unknown baseline"):
        make_baseline_processor("greedy")
    with pytest.raises(ValueError):
        make_baseline_processor("annealed", t_start=1.0, t_end=0.5, horizon=4, schedule="step")
    with pytest.raises(ValueError):
        make_baseline_processor("entropy_guided", t_low=0.5, t_high=1.0, window=4, min_history=5)


def test_static_warpers_are_transformers_warpers():
    warpers = static_warpers(temperature=0.7, top_k=20, top_p=0.9, min_p=0.05)
    expected = [TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper, MinPLogitsWarper]
    assert [type(w) for w in warpers] == expected
    assert len(static_warpers()) == 0
