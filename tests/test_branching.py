"""The controlled task: its distributions, its problem sets, exact success probabilities, the oracle, and its job."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.evaluation.exact import exact_metrics, reference_paths, success_probability
from logitmlp_hf.heads.logitmlp.oracle import oracle_position_warps
from logitmlp_hf.tasks.branching import (
    SPECIAL_TOKENS,
    BranchingTaskConfig,
    branching_targets,
    make_branching_splits,
    train_branching_base,
)


@pytest.fixture(scope="module")
def base():
    # a short fit: the distributions are only roughly right, which is all these tests need
    return train_branching_base(BranchingTaskConfig(train_steps=40))


def test_targets_put_the_decoy_first_and_the_right_digit_first_where_precision_matters():
    config = BranchingTaskConfig()
    t = branching_targets(config, 2, 5, 9)
    assert torch.allclose(t.sum(-1), torch.ones(4, dtype=t.dtype))
    digit = lambda d: len(SPECIAL_TOKENS) + d  # noqa: E731
    assert int(t[0].argmax()) == digit(2)  # the decoy, never right
    assert all(t[0, digit(c)] == config.candidate_prob for c in (3, 4, 5))
    assert int(t[1].argmax()) == digit(5) and int(t[2].argmax()) == digit(9)
    with pytest.raises(ValueError, match="decoy_prob"):
        BranchingTaskConfig(decoy_prob=0.6, candidate_prob=0.2)


def test_splits_are_disjoint_and_answers_follow_the_hidden_offset():
    train, validation, test = make_branching_splits(300, 50, 200, seed=3)
    questions = [set(d["question"]) for d in (train, validation, test)]
    assert sum(map(len, questions)) == len(set().union(*questions)) == 550
    for row in test:
        x, y, z = map(int, row["question"])
        assert row["answer"] == f"{x + row['candidate_offset']}{y}{z}"
    with pytest.raises(ValueError, match="600 prompts"):
        make_branching_splits(500, 50, 100)


def test_success_probability_matches_sampling_frequency(base):
    """q along the reference path is the chance that one sample *is* the reference (checked by sampling)."""
    model, tokenizer = base
    _, _, test = make_branching_splits(300, 50, 200)
    problem = test.select(range(1))
    paths = reference_paths(model, tokenizer, problem)
    temperature = 0.8
    q = float(success_probability(paths.base_logits / temperature, paths.targets)[0])
    text = tokenizer.apply_chat_template(problem[0]["prompt"], add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    torch.manual_seed(0)
    n = 3000
    out = model.generate(
        ids.repeat(n, 1), do_sample=True, temperature=temperature, top_k=0, top_p=1.0, max_new_tokens=5
    )
    completions = tokenizer.batch_decode(out[:, ids.shape[1] :], skip_special_tokens=False)
    hits = sum(c.startswith(problem[0]["answer"] + tokenizer.eos_token) for c in completions)
    assert abs(hits / n - q) < 4 * np.sqrt(q * (1 - q) / n) + 1e-3, (hits / n, q)


def test_head_paths_use_the_heads_distribution(base):
    model, tokenizer = base
    _, _, test = make_branching_splits(300, 50, 40)
    wrapped = LogitMLPForCausalLM.from_base_model(model, slope_bound=4.0)
    torch.manual_seed(0)
    with torch.no_grad():
        wrapped.decoding_head.fc_out.weight.normal_(0, 0.5)
    paths = reference_paths(wrapped, tokenizer, test)
    assert paths.head_logits is not None and set(paths.decisions) >= {"s1", "s2", "b"}
    q_head = success_probability(paths.head_logits, paths.targets)
    q_base = success_probability(paths.base_logits, paths.targets)
    assert not np.allclose(q_head, q_base)
    assert torch.allclose(paths.base_logits, reference_paths(model, tokenizer, test).base_logits, atol=1e-5)


def test_oracle_is_at_least_every_temperature_in_its_grid(base):
    model, tokenizer = base
    _, _, test = make_branching_splits(300, 50, 60)
    paths = reference_paths(model, tokenizer, test)
    oracle = oracle_position_warps(
        paths.base_logits, paths.targets, "best@k", k=8, slope_bound=4.0, n_slopes=9, n_breakpoints=5
    )
    best = exact_metrics(oracle.q, 8)["best@k"].mean()
    for t in np.exp(np.linspace(-np.log(4), np.log(4), 9)):  # the grid's own slopes, as temperatures
        assert (
            best >= exact_metrics(success_probability(paths.base_logits / t, paths.targets), 8)["best@k"].mean() - 1e-9
        )
    # the returned logits are the chosen warps, and give the reported q
    assert np.allclose(success_probability(oracle.sampling_logits, paths.targets), oracle.q, rtol=1e-4)


def test_branching_job_runs_end_to_end_from_the_cli(tmp_path):
    out = tmp_path / "branching"
    cmd = [
        sys.executable,
        "-m",
        "logitmlp_hf.cli",
        "reproduce",
        "--task",
        "branching",
        "--quick",
        "--output-dir",
        str(out),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "RESULT branching_pass1_best8_vs_frontier=" in run.stdout
    page = (out / "results.md").read_text()
    assert page.startswith("# Controlled task:") and "## The temperature frontier" in page and "oracle" in page.lower()
    results = json.loads((out / "results.json").read_text())
    assert set(results["pooled"]) == {"pass1", "pass8"}
    assert all(h["sampled_gap"]["verdict"] in ("beyond", "on", "inside") for h in results["heads"].values())
    # arithmetic-only options are refused with a clear message
    bad = subprocess.run(cmd + ["--with-lora"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--with-lora" in bad.stderr
