"""Metric functions of logitmlp_hf.evaluation.metrics on hand-computed cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from logitmlp_hf.evaluation.metrics import (
    answer_entropy,
    bootstrap_ci,
    canonical_answer,
    compute_metrics,
    group_equivalent_answers,
    per_problem_metrics,
    unique_fraction,
)
from logitmlp_hf.trainer.advantages import pass_at_k


def test_table1_columns_on_hand_computed_problems():
    correct = [
        [True, True, True, True],  # all correct
        [False, False, False, False],  # all wrong
        [True, False, True, False],  # half
    ]
    answers = [["5", "5", "5", "5"], ["1", "2", "3", None], ["7", "8", "7", "8"]]
    m = compute_metrics(correct, answers, n_resamples=0)
    assert m["best@k"].value == pytest.approx(2 / 3)
    assert m["worst@k"].value == pytest.approx(1 / 3)
    assert m["mean_accuracy"].value == pytest.approx(0.5)
    # within-problem std sqrt(p(1-p)): 0, 0, 0.5 → mean 1/6
    assert m["accuracy_std"].value == pytest.approx(0.5 / 3)
    # across problems: std of (1, 0, 0.5)
    assert m["accuracy_std_across_problems"].value == pytest.approx(np.std([1, 0, 0.5]))
    # entropies: 0; 4 distinct (no-answer is a category) → ln 4; tie 2/2 → ln 2
    assert m["answer_entropy"].value == pytest.approx((math.log(4) + math.log(2)) / 3)
    assert m["uniq/k"].value == pytest.approx((1 / 4 + 4 / 4 + 2 / 4) / 3)
    # majority: "5" correct; problem 2 has a 1-1-1 tie → first seen ("1") is wrong; tie "7"/"8" → "7" correct
    assert m["maj@k"].value == pytest.approx(2 / 3)
    assert m["pass@1"].value == pytest.approx(m["mean_accuracy"].value)
    assert m["pass@4"].value == pytest.approx(m["best@k"].value)


def test_no_answer_modes():
    answers = ["12", "12", None, None]
    assert answer_entropy(answers, "category") == pytest.approx(math.log(2))
    assert answer_entropy(answers, "exclude") == 0.0
    assert unique_fraction(answers, "category") == 0.5
    assert unique_fraction(answers, "exclude") == 0.25
    assert answer_entropy([None] * 4, "exclude") == 0.0 and unique_fraction([None] * 4, "exclude") == 0.0
    assert answer_entropy([None] * 4, "category") == 0.0
    with pytest.raises(ValueError):
        answer_entropy(answers, "bogus")


def test_no_answer_never_wins_the_vote():
    m = per_problem_metrics([[False, False, False, True]], [[None, None, None, "3"]])
    assert m["maj@k"][0] == 1.0


@pytest.mark.parametrize("n", [1, 3, 5, 8])
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        flags = [True] * c + [False] * (n - c)
        table = per_problem_metrics([flags])
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(flags, k))
            brute = sum(any(s) for s in subsets) / len(subsets)
            assert table[f"pass@{k}"][0] == pytest.approx(brute)
            assert pass_at_k(n, c, k) == pytest.approx(brute)


def test_bootstrap_is_seeded_and_contains_the_estimate():
    rng = np.random.default_rng(1)
    values = rng.random(50)
    a = bootstrap_ci(values, n_resamples=500, seed=3)
    b = bootstrap_ci(values, n_resamples=500, seed=3)
    c = bootstrap_ci(values, n_resamples=500, seed=4)
    assert a == b and a != c
    assert a.ci_low <= a.value <= a.ci_high and a.value == pytest.approx(values.mean())
    correct = rng.random((40, 8)) < 0.4
    answers = [[str(int(x)) for x in rng.integers(0, 3, 8)] for _ in range(40)]
    m1 = compute_metrics(correct, answers, n_resamples=300, seed=0)
    m2 = compute_metrics(correct, answers, n_resamples=300, seed=0)
    assert m1 == m2
    for key, value in m1.items():
        assert value.ci_low <= value.value + 1e-12 and value.value <= value.ci_high + 1e-12, key
    assert m1["mean_accuracy"].ci_low < m1["mean_accuracy"].ci_high


def test_canonical_answer_and_grouping():
    assert canonical_answer(" $29.0$ ") == "29"
    assert canonical_answer(r"\dfrac{2}{4}") == "1/2"
    assert canonical_answer(r"\left( 1, 2 \right)") == "(1,2)"
    assert canonical_answer(r"10\text{ cm}.") == "10cm"
    assert canonical_answer("   ") is None and canonical_answer(None) is None
    grouped = group_equivalent_answers(["29", "29.0", r"\frac{1}{2}", "0.5", None, "30"])
    assert grouped == ["29", "29", "1/2", "1/2", None, "30"]


def test_grouping_uses_math_verify_only_among_distinct_non_numbers():
    calls = []

    def equal(a, b):
        calls.append((a, b))
        return {a, b} == {"x+1", "1+x"}

    grouped = group_equivalent_answers(["x+1", "1+x", "x+1", "3", "4", "1+x"], equal=equal)
    assert grouped == ["x+1", "x+1", "x+1", "3", "4", "x+1"]
    assert ("3", "4") not in calls and ("4", "3") not in calls
    assert len(calls) <= 4


def test_math_verify_grouping():
    grouped = group_equivalent_answers([r"\sqrt{4}", "2", "x+1", "1+x"])
    assert grouped[0] == grouped[1] and grouped[2] == grouped[3]


def test_shape_errors():
    with pytest.raises(ValueError):
        per_problem_metrics([[True, False], [True]])
    with pytest.raises(ValueError):
        per_problem_metrics([[True, False]], [["1"]])
