"""Strategy pool, reward tables and coverage selection of logitmlp_hf.heads.sequence_adapter.strategy_pool."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from logitmlp_hf.evaluation.metrics import MetricValue, per_problem_metrics
from logitmlp_hf.evaluation.policies import DecodingPolicy, parse_policy
from logitmlp_hf.evaluation.results import EvalResults, PolicyResults
from logitmlp_hf.heads.sequence_adapter.strategy_pool import (
    CoverageSelection,
    SamplingStrategy,
    brute_force_coverage_selection,
    candidate_pool,
    coverage,
    greedy_coverage_selection,
    reward_table,
)


# --------------------------------------------------------------------------------------------------------------------
# Strategies and the candidate pool
# --------------------------------------------------------------------------------------------------------------------


def test_strategy_names_and_policy_strings():
    s = SamplingStrategy(0.7, top_p=0.9)
    assert s.name == "T=0.7,top_p=0.9"
    assert s.to_policy_string() == "temperature:0.7:top_p=0.9"
    full = SamplingStrategy(1.0, top_k=20, top_p=0.95, min_p=0.05)
    assert full.name == "T=1,top_k=20,top_p=0.95,min_p=0.05"
    assert full.to_policy_string() == "temperature:1:top_k=20,top_p=0.95,min_p=0.05"
    assert SamplingStrategy(0.0).name == "T=0"
    assert SamplingStrategy(0.0).greedy and not s.greedy


def test_strategy_round_trips_through_dict_and_normalises_types():
    s = SamplingStrategy(1, top_k=20, top_p=1, min_p=0)
    assert isinstance(s.temperature, float) and isinstance(s.top_p, float) and isinstance(s.min_p, float)
    assert SamplingStrategy.from_dict(s.to_dict()) == s
    assert s == SamplingStrategy(1.0, top_k=20, top_p=1.0, min_p=0.0)
    assert hash(s) == hash(SamplingStrategy(1.0, top_k=20, top_p=1.0, min_p=0.0))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"temperature": -0.1},
        {"temperature": float("inf")},
        {"top_k": 0},
        {"top_k": 2.5},
        {"top_p": 0.0},
        {"top_p": 1.1},
        {"min_p": -0.1},
        {"min_p": 1.5},
    ],
)
def test_strategy_rejects_invalid_settings(kwargs):
    with pytest.raises(ValueError):
        SamplingStrategy(**kwargs)


def test_canonical_drops_noop_settings():
    assert SamplingStrategy(0.0, top_k=20, top_p=0.9, min_p=0.1).canonical() == SamplingStrategy(0.0)
    assert SamplingStrategy(0.8, top_p=1.0, min_p=0.0).canonical() == SamplingStrategy(0.8)
    assert SamplingStrategy(0.8, top_k=5, top_p=0.9).canonical() == SamplingStrategy(0.8, top_k=5, top_p=0.9)


def test_default_candidate_pool_is_the_deduplicated_product():
    pool = candidate_pool()
    # greedy once + 5 temperatures × 2 top-k × 2 top-p × 2 min-p
    assert len(pool) == 1 + 5 * 2 * 2 * 2
    assert pool[0] == SamplingStrategy(0.0)
    assert sum(s.greedy for s in pool) == 1
    assert len({s.name for s in pool}) == len(pool)
    assert len(set(pool)) == len(pool)
    assert all(s == s.canonical() for s in pool)


def test_candidate_pool_dedupes_equivalent_settings_and_rejects_empty_axes():
    pool = candidate_pool(temperatures=(0.0, 0.7, 0.7), top_ks=(None,), top_ps=(None, 1.0, 0.9), min_ps=(None, 0.0))
    assert [s.name for s in pool] == ["T=0", "T=0.7", "T=0.7,top_p=0.9"]
    with pytest.raises(ValueError, match="empty"):
        candidate_pool(temperatures=())


def test_policy_strings_round_trip_through_parse_policy():
    pool = candidate_pool(
        temperatures=(0.0, 0.35, 1.0, 1.2), top_ks=(None, 20), top_ps=(None, 0.95), min_ps=(None, 0.05)
    )
    for s in pool:
        policy = parse_policy(s.to_policy_string())
        assert policy.kind == "temperature"
        assert policy.name == s.to_policy_string()
        assert (policy.temperature, policy.top_k, policy.top_p, policy.min_p) == (
            s.temperature,
            s.top_k,
            s.top_p,
            s.min_p,
        )
        assert isinstance(policy.top_k, (int, type(None)))
        assert SamplingStrategy(policy.temperature, policy.top_k, policy.top_p, policy.min_p) == s


# --------------------------------------------------------------------------------------------------------------------
# Reward tables
# --------------------------------------------------------------------------------------------------------------------


def test_reward_table_from_mapping_is_the_unbiased_pass_at_k():
    correct = {
        "a": [[True, False, False, False], [True, True, False, False], [False] * 4],
        "b": [[True] * 4, [False, False, False, True], [False, True, False, False]],
    }
    ids, names, rewards = reward_table(correct, k=2)
    assert ids == [0, 1, 2] and names == ["a", "b"]
    # pass@2 with n = 4: c = 1 → 1 − C(3,2)/C(4,2) = 1/2; c = 2 → 1 − 1/6 = 5/6; c = 0 → 0; c = 4 → 1
    np.testing.assert_allclose(rewards, [[0.5, 1.0], [5 / 6, 0.5], [0.0, 0.5]])
    for j, name in enumerate(names):
        np.testing.assert_allclose(rewards[:, j], per_problem_metrics(correct[name])["pass@2"])
    # k = 1 is the per-problem accuracy
    np.testing.assert_allclose(reward_table(correct, k=1).rewards[:, 0], [0.25, 0.5, 0.0])


def test_reward_table_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 3 samples"):
        reward_table({"a": [[True, False]]}, k=3)
    with pytest.raises(ValueError, match="k must be"):
        reward_table({"a": [[True, False]]}, k=0)
    with pytest.raises(ValueError, match="same problems"):
        reward_table({"a": [[True]], "b": [[True], [False]]}, k=1)
    with pytest.raises(ValueError, match="empty"):
        reward_table({}, k=1)
    with pytest.raises(TypeError):
        reward_table([[True]], k=1)


def _policy_results(name: str, problems: dict[int, list[bool]]) -> PolicyResults:
    return PolicyResults(
        policy=parse_policy(name) if ":" in name else DecodingPolicy(name=name),
        metrics={"best@k": MetricValue(0.0, 0.0, 0.0)},
        problems=[{"problem_id": pid, "correct": flags} for pid, flags in problems.items()],
    )


def test_reward_table_from_eval_results_aligns_problems_by_id():
    s1, s2 = SamplingStrategy(0.6).to_policy_string(), SamplingStrategy(1.0, top_p=0.9).to_policy_string()
    results = EvalResults(
        config={"n_samples": 2},
        policies={
            s1: _policy_results(s1, {7: [True, True], 3: [False, False], 5: [True, False]}),
            # same problems, another order
            s2: _policy_results(s2, {5: [True, True], 7: [False, False], 3: [False, True]}),
        },
    )
    ids, names, rewards = reward_table(results, k=1)
    assert ids == [7, 3, 5]
    assert names == [s1, s2]
    np.testing.assert_allclose(rewards, [[1.0, 0.0], [0.0, 0.5], [0.5, 1.0]])
    # also through a save/load round trip of the evaluation
    np.testing.assert_allclose(reward_table(EvalResults.from_dict(results.to_dict()), k=2).rewards[:, 1], [0, 1, 1])


def test_reward_table_from_eval_results_rejects_different_problem_sets():
    results = EvalResults(
        config={},
        policies={
            "a": _policy_results("a", {0: [True], 1: [False]}),
            "b": _policy_results("b", {0: [True], 2: [False]}),
        },
    )
    with pytest.raises(ValueError, match=r"'b' was evaluated on different problems than 'a'.*missing \(e.g. \[1\]\)"):
        reward_table(results, k=1)
    duplicated = EvalResults(config={}, policies={"a": _policy_results("a", {0: [True]})})
    duplicated.policies["a"].problems.append({"problem_id": 0, "correct": [False]})
    with pytest.raises(ValueError, match="duplicate"):
        reward_table(duplicated, k=1)


# --------------------------------------------------------------------------------------------------------------------
# Coverage selection
# --------------------------------------------------------------------------------------------------------------------


def test_coverage_of_subsets():
    rewards = np.array([[0.2, 0.9, 0.0], [0.8, 0.1, 0.0], [0.5, 0.5, 1.0]])
    assert coverage(rewards, [0]) == pytest.approx(1.5)
    assert coverage(rewards, [0, 1]) == pytest.approx(0.9 + 0.8 + 0.5)
    assert coverage(rewards, [0, 1, 2]) == pytest.approx(0.9 + 0.8 + 1.0)
    assert coverage(rewards, []) == 0.0
    with pytest.raises(ValueError, match="2-d"):
        coverage(np.zeros(3), [0])


def test_greedy_matches_brute_force_on_hand_built_specialists():
    # Specialists with disjoint strengths and a weak generalist: greedy is optimal at every size.
    rewards = np.array(
        [
            [1.0, 0.0, 0.0, 0.3],
            [1.0, 0.0, 0.0, 0.3],
            [1.0, 0.0, 0.0, 0.3],
            [0.0, 1.0, 0.0, 0.3],
            [0.0, 1.0, 0.0, 0.3],
            [0.0, 0.0, 0.9, 0.3],
        ]
    )
    names = ["low-T", "mid-T", "high-T", "generalist"]
    one = greedy_coverage_selection(rewards, 1, names)
    assert one.indices == [0] and one.names == ["low-T"] and one.value == pytest.approx(3.0)
    full = greedy_coverage_selection(rewards, 4, names)
    # the generalist adds nothing once the specialists are in, so selection stops at three
    assert full.names == ["low-T", "mid-T", "high-T"]
    np.testing.assert_allclose(full.coverages, [3.0, 5.0, 5.9])
    for size in (1, 2, 3, 4):
        greedy, best = greedy_coverage_selection(rewards, size), brute_force_coverage_selection(rewards, size)
        assert greedy.value == pytest.approx(best.value)
        assert sorted(greedy.indices) == best.indices[: len(greedy.indices)]


def test_greedy_is_strictly_suboptimal_on_the_classic_counterexample():
    # The generalist has the largest column sum, but the two specialists together cover everything.
    rewards = np.array([[0.6, 1.0, 0.0], [0.6, 1.0, 0.0], [0.6, 0.0, 1.0], [0.6, 0.0, 1.0]])
    greedy = greedy_coverage_selection(rewards, 2)
    best = brute_force_coverage_selection(rewards, 2)
    assert greedy.indices == [0, 1] and greedy.value == pytest.approx(3.2)
    assert best.indices == [1, 2] and best.value == pytest.approx(4.0)
    assert greedy.value < best.value
    assert greedy.value >= (1 - 1 / math.e) * best.value


def test_greedy_is_within_one_minus_one_over_e_of_brute_force_on_random_tables():
    rng = np.random.default_rng(0)
    for trial in range(60):
        n, m = rng.integers(1, 9), rng.integers(1, 8)
        # half the tables look like pass@k estimates (many exact 0/1 and ties), half are continuous
        if trial % 2:
            rewards = rng.integers(0, 5, size=(n, m)) / 4.0
        else:
            rewards = rng.random((n, m)) ** 3
        size = int(rng.integers(1, m + 1))
        greedy = greedy_coverage_selection(rewards, size)
        best = brute_force_coverage_selection(rewards, size)
        assert greedy.value <= best.value + 1e-12
        assert greedy.value >= (1 - 1 / math.e) * best.value - 1e-12
        assert greedy.value == pytest.approx(coverage(rewards, greedy.indices))
        assert best.value == pytest.approx(coverage(rewards, best.indices))
        assert np.all(np.diff(greedy.coverages) > 0)  # every addition after the first strictly helps
        assert len(set(greedy.indices)) == len(greedy.indices) <= size
        # size 1: greedy is exact (the best column sum)
        assert greedy_coverage_selection(rewards, 1).value == pytest.approx(
            brute_force_coverage_selection(rewards, 1).value
        )


def test_greedy_stops_when_nothing_adds_coverage_and_breaks_ties_by_index():
    dominated = np.array([[0.5, 1.0, 0.2], [0.5, 1.0, 0.9]])
    selection = greedy_coverage_selection(dominated, 3, names=["a", "b", "c"])
    assert selection == CoverageSelection([1], ["b"], [2.0])
    ties = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]])
    assert greedy_coverage_selection(ties, 4).indices == [0, 1]
    assert brute_force_coverage_selection(ties, 2).indices == [0, 1]
    # all-zero table: the first strategy is still chosen (an action set is never empty)
    assert greedy_coverage_selection(np.zeros((3, 2)), 2).indices == [0]


def test_selection_argument_checks():
    rewards = np.ones((2, 3))
    with pytest.raises(ValueError, match="size"):
        greedy_coverage_selection(rewards, 0)
    with pytest.raises(ValueError, match="names"):
        greedy_coverage_selection(rewards, 1, names=["a"])
    with pytest.raises(ValueError, match="finite"):
        greedy_coverage_selection(np.array([[np.nan]]), 1)
    with pytest.raises(ValueError, match="max_subsets"):
        brute_force_coverage_selection(np.ones((1, 30)), 10, max_subsets=1000)
    assert brute_force_coverage_selection(rewards, 5).indices == [0, 1, 2]  # size clipped to the pool


def test_pool_to_action_set_end_to_end():
    pool = candidate_pool(temperatures=(0.0, 0.6, 1.2), top_ks=(None,), top_ps=(None, 0.9), min_ps=(None,))
    names = [s.name for s in pool]  # T=0, T=0.6, T=0.6,top_p=0.9, T=1.2, T=1.2,top_p=0.9
    # greedy solves the easy problems, high temperature the hard ones (some correct sample among 4)
    correct = {name: [[False] * 4 for _ in range(4)] for name in names}
    correct["T=0"][0] = correct["T=0"][1] = [True] * 4
    correct["T=0.6"][0] = [True, True, True, False]
    correct["T=1.2,top_p=0.9"][2] = [False, True, False, False]
    correct["T=1.2"][3] = [False, False, True, False]
    _, table_names, rewards = reward_table(correct, k=4)
    assert table_names == names
    selection = greedy_coverage_selection(rewards, 3, table_names)
    assert selection.names == ["T=0", "T=1.2", "T=1.2,top_p=0.9"]
    assert selection.value == pytest.approx(4.0)
    chosen = [pool[i] for i in selection.indices]
    assert [parse_policy(s.to_policy_string()).temperature for s in chosen] == [0.0, 1.2, 1.2]


@pytest.mark.parametrize(
    "rule",
    [
        SamplingStrategy(0.7),
        SamplingStrategy(1.0, top_k=5),
        SamplingStrategy(0.8, top_p=0.9),
        SamplingStrategy(1.2, top_k=20, top_p=0.95, min_p=0.05),
        SamplingStrategy(1.0, top_p=1.0, min_p=0.0),
    ],
)
def test_one_rule_two_forms_warpers_and_tensor_functions_agree(rule):
    from logitmlp_hf.evaluation.policies import parse_policy
    from logitmlp_hf.sampling_rules import SamplingRule

    assert SamplingStrategy is SamplingRule
    logits = torch.randn(3, 200, generator=torch.Generator().manual_seed(0))
    by_warpers = logits.clone()
    for warper in rule.warpers():
        by_warpers = warper(None, by_warpers)
    by_functions = rule.apply(logits)
    assert torch.equal(torch.isneginf(by_warpers), torch.isneginf(by_functions))
    kept = ~torch.isneginf(by_functions)
    assert torch.allclose(by_warpers[kept], by_functions[kept], atol=1e-6)
    assert parse_policy(rule.to_policy_string()).rule == rule  # the evaluation policy holds the same rule
