"""The frontier test: a policy against the whole temperature curve at its own mean accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from logitmlp_hf.evaluation.frontier import frontier_gap, frontier_gap_from_values, frontier_value, pooled_frontier_gap


def _flags(q: np.ndarray, k: int, seed: int) -> list[list[bool]]:
    """k Bernoulli(q_i) samples per problem."""
    rng = np.random.default_rng(seed)
    return (rng.random((len(q), k)) < q[:, None]).tolist()


def test_frontier_value_interpolates_between_grid_neighbours_and_takes_dominating_points():
    # three temperatures: (acc, best@k) = (0.6, 0.7), (0.4, 0.8), (0.2, 0.6)
    acc = np.array([[0.6, 0.4, 0.2]])
    val = np.array([[0.7, 0.8, 0.6]])
    f = lambda a: float(frontier_value(acc, val, np.array([a]))[0])  # noqa: E731
    # at 0.5: the only point at least as accurate is (0.6, 0.7); the segment 0.6 → 0.4 passes 0.75 there
    assert f(0.5) == pytest.approx(0.75)
    assert f(0.3) == pytest.approx(0.8)  # the (0.4, 0.8) point dominates everything at or below 0.4
    assert f(0.6) == pytest.approx(0.7)
    assert f(0.9) == pytest.approx(0.7)  # above the grid: flat from the most accurate point


def test_a_sweep_point_is_on_the_frontier_and_a_dominating_policy_is_beyond():
    n, k = 400, 8
    q = np.random.default_rng(0).uniform(0.05, 0.6, n)
    # a family of "temperatures": scaling q trades accuracy against nothing here, so the frontier is monotone
    sweep = {
        t: _flags(np.clip(q * s, 0, 1), k, seed=i) for i, (t, s) in enumerate([(0.5, 1.0), (1.0, 0.7), (2.0, 0.4)])
    }
    same = frontier_gap(sweep[0.5], sweep, n_resamples=300)
    assert same.gap.value == pytest.approx(0.0, abs=1e-12) and same.verdict == "on"
    better = frontier_gap(_flags(np.clip(q * 1.6, 0, 1), k, seed=9), sweep, n_resamples=300)
    assert better.verdict == "beyond" and better.gap.ci_low > 0 and better.beyond_range
    worse = frontier_gap(_flags(np.clip(q * 0.2, 0, 1), k, seed=10), sweep, n_resamples=300)
    assert worse.verdict == "inside" and worse.gap.ci_high < 0


def test_pooled_gap_is_the_mean_of_the_seeds_gaps():
    n = 300
    rng = np.random.default_rng(1)
    sweep = [(rng.uniform(0, a, n), rng.uniform(0, b, n)) for a, b in [(0.6, 0.5), (0.4, 0.7), (0.2, 0.6)]]
    seeds = [(rng.uniform(0, 0.5, n), rng.uniform(0, 0.9, n)) for _ in range(3)]
    singles = [frontier_gap_from_values(s, sweep, n_resamples=50).gap.value for s in seeds]
    pooled = frontier_gap_from_values(seeds, sweep, n_resamples=50)
    assert pooled.gap.value == pytest.approx(np.mean(singles))
    assert pooled.gap.ci_low <= pooled.gap.value <= pooled.gap.ci_high


def test_pooled_flags_test_averages_the_heads_gaps():
    n, k = 200, 8
    q = np.random.default_rng(2).uniform(0.05, 0.6, n)
    sweep = {t: _flags(np.clip(q * s, 0, 1), k, seed=i) for i, (t, s) in enumerate([(0.5, 1.0), (1.0, 0.6)])}
    heads = [_flags(np.clip(q * s, 0, 1), k, seed=20 + i) for i, s in enumerate((1.3, 0.8))]
    singles = [frontier_gap(h, sweep, n_resamples=100).gap.value for h in heads]
    pooled = pooled_frontier_gap(heads, sweep, n_resamples=100)
    assert pooled.gap.value == pytest.approx(np.mean(singles))
    assert (
        pooled_frontier_gap(heads[:1], sweep, n_resamples=100).gap
        == frontier_gap(heads[0], sweep, n_resamples=100).gap
    )
    with pytest.raises(ValueError, match="at least one policy"):
        pooled_frontier_gap([], sweep)


def test_frontier_needs_the_same_problems():
    sweep = {0.5: [[True, False]] * 4, 1.0: [[False, False]] * 4}
    with pytest.raises(ValueError, match="same problems"):
        frontier_gap([[True, True]] * 3, sweep)
    with pytest.raises(ValueError, match="at least 2 temperatures"):
        frontier_gap([[True, True]] * 4, {0.5: sweep[0.5]})
