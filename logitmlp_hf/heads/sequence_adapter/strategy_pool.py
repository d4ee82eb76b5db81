"""A pool of fixed sampling strategies and greedy coverage selection of a small action set from it.

The sequence-level learned decoding adapter (Su et al., "Learning Adaptive LLM Decoding") lets a contextual bandit
pick one decoding strategy per prompt (see [`~logitmlp_hf.heads.sequence_adapter.contextual_bandit`]). Its action set ``S`` is a few
strategies chosen from a candidate pool of temperature × top-k × top-p × min-p configurations
([`candidate_pool`]), each evaluated on a validation split. With ``R[x, s]`` the pass@k of strategy ``s`` on
problem ``x`` ([`reward_table`]), the set maximises the *coverage*

    C(S) = Σ_x max_{s ∈ S} R[x, s]

i.e. the value of an oracle that picks the best member of ``S`` for every problem: the best a per-prompt selector
restricted to ``S`` can reach. ``C`` is monotone submodular (the max of a set function of nonnegative columns), so
[`greedy_coverage_selection`] reaches at least ``(1 − 1/e)`` of the optimum (Nemhauser et al. 1978);
[`brute_force_coverage_selection`] finds the optimum exhaustively for small pools.

Example:

```python
>>> pool = candidate_pool(temperatures=(0.0, 0.7), top_ps=(None, 0.9), top_ks=(None,), min_ps=(None,))
>>> [s.name for s in pool]
['T=0', 'T=0.7', 'T=0.7,top_p=0.9']
>>> pool[2].to_policy_string()
'temperature:0.7:top_p=0.9'
```
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ...sampling_rules import SamplingRule
from ...trainer.advantages import pass_at_k


if TYPE_CHECKING:
    from ...evaluation.results import EvalResults

__all__ = [
    "CoverageSelection",
    "RewardTable",
    "SamplingStrategy",
    "brute_force_coverage_selection",
    "candidate_pool",
    "coverage",
    "greedy_coverage_selection",
    "reward_table",
]

DEFAULT_TEMPERATURES = (0.0, 0.3, 0.6, 0.8, 1.0, 1.2)
DEFAULT_TOP_KS = (None, 20)
DEFAULT_TOP_PS = (None, 0.9)
DEFAULT_MIN_PS = (None, 0.1)

# Coverage gains closer than this (relative to the table's scale) count as ties, so that summation-order rounding
# between columns cannot override the documented lowest-index tie-break.
_TIE_RTOL = 1e-12


# --------------------------------------------------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------------------------------------------------


# The strategy pool's name for the one static sampling rule of the package.
SamplingStrategy = SamplingRule


def candidate_pool(
    temperatures: Iterable[float] = DEFAULT_TEMPERATURES,
    top_ks: Iterable[int | None] = DEFAULT_TOP_KS,
    top_ps: Iterable[float | None] = DEFAULT_TOP_PS,
    min_ps: Iterable[float | None] = DEFAULT_MIN_PS,
) -> list[SamplingStrategy]:
    """The Cartesian product temperature × top-k × top-p × min-p, in canonical form and without duplicates.

    Every strategy is reduced with [`SamplingStrategy.canonical`] before deduplication, so temperature 0 appears
    once (greedy ignores truncation) and ``top_p=1.0`` / ``min_p=0.0`` coincide with ``None``. Order: temperatures
    outermost, then top-k, top-p, min-p, first occurrence kept. The defaults give 1 + 5 × 2 × 2 × 2 = 41 strategies.

    Args:
        temperatures (`Iterable[float]`, *optional*, defaults to `(0.0, 0.3, 0.6, 0.8, 1.0, 1.2)`): Temperatures.
        top_ks (`Iterable[int | None]`, *optional*, defaults to `(None, 20)`): Top-k values; ``None`` = no top-k.
        top_ps (`Iterable[float | None]`, *optional*, defaults to `(None, 0.9)`): Top-p values; ``None`` = none.
        min_ps (`Iterable[float | None]`, *optional*, defaults to `(None, 0.1)`): Min-p values; ``None`` = none.

    Returns:
        `list[SamplingStrategy]`.
    """
    product = itertools.product(list(temperatures), list(top_ks), list(top_ps), list(min_ps))
    pool = dict.fromkeys(SamplingStrategy(t, top_k=k, top_p=p, min_p=m).canonical() for t, k, p, m in product)
    if not pool:
        raise ValueError("the candidate pool is empty: every argument needs at least one value (None = no truncation)")
    return list(pool)


# --------------------------------------------------------------------------------------------------------------------
# Reward table
# --------------------------------------------------------------------------------------------------------------------


class RewardTable(NamedTuple):
    """Per-problem pass@k of every strategy (unpacks as ``problem_ids, strategy_names, rewards``).

    Args:
        problem_ids (`list`): Row labels (``problem_id`` of an evaluation, or ``0 … n−1``).
        strategy_names (`list[str]`): Column labels.
        rewards (`np.ndarray`): ``R`` of shape ``(num_problems, num_strategies)``, entries in ``[0, 1]``.
    """

    problem_ids: list[Any]
    strategy_names: list[str]
    rewards: np.ndarray


def _pass_at_k_of(flags: Sequence[bool], k: int, where: str) -> float:
    n = len(flags)
    if n < k:
        raise ValueError(f"{where}: pass@{k} needs at least {k} samples per problem, got {n}")
    return pass_at_k(n, sum(bool(f) for f in flags), k)


def _correct_by_problem(results: EvalResults) -> dict[str, tuple[list[Any], list[Sequence[bool]]]]:
    """Policy name → (problem ids, correctness lists) of an evaluation, with duplicate ids rejected."""
    out = {}
    for name, policy_results in results.policies.items():
        ids = [problem["problem_id"] for problem in policy_results.problems]
        if len(set(ids)) != len(ids):
            raise ValueError(f"policy {name!r} has duplicate problem ids")
        out[name] = (ids, [problem["correct"] for problem in policy_results.problems])
    return out


def reward_table(
    results_per_strategy: Mapping[str, Sequence[Sequence[bool]]] | EvalResults,
    k: int,
) -> RewardTable:
    """``R[x, s]``: the unbiased pass@k (Chen et al. 2021) of strategy ``s`` on problem ``x``.

    Each entry is estimated from the per-sample correctness of that strategy on that problem with
    [`~logitmlp_hf.trainer.advantages.pass_at_k`] (the estimator behind ``pass@j`` in
    [`~logitmlp_hf.evaluation.metrics.per_problem_metrics`]), so it needs ``n >= k`` samples per problem. A greedy
    strategy's ``n`` identical samples give 0 or 1 for every ``k``, as they should.

    Args:
        results_per_strategy (`Mapping[str, Sequence[Sequence[bool]]]` or [`~logitmlp_hf.evaluation.runner.EvalResults`]):
            Either strategy name → per problem, one correctness flag per sample (every strategy on the same
            problems in the same order; rows are labelled ``0 … n−1``), or an evaluation of several policies, whose
            policies become the columns (by name, in evaluation order) and whose problems are aligned by
            ``problem_id`` (rows in the first policy's order).
        k (`int`): The parallel budget, ``>= 1``.

    Returns:
        [`RewardTable`] ``(problem_ids, strategy_names, rewards)``.

    Raises:
        `ValueError`: No strategies, ``k < 1``, fewer than ``k`` samples somewhere, or strategies evaluated on
            different problems (different counts, or, for an evaluation, different ``problem_id`` sets).
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k}")
    k = int(k)
    if isinstance(results_per_strategy, Mapping):
        columns = {name: list(correct) for name, correct in results_per_strategy.items()}
        if not columns:
            raise ValueError("results_per_strategy is empty")
        counts = {name: len(correct) for name, correct in columns.items()}
        if len(set(counts.values())) != 1:
            raise ValueError(f"every strategy must be evaluated on the same problems; problem counts: {counts}")
        problem_ids: list[Any] = list(range(next(iter(counts.values()))))
    elif hasattr(results_per_strategy, "policies"):
        by_policy = _correct_by_problem(results_per_strategy)
        if not by_policy:
            raise ValueError("the evaluation has no policies")
        first_name, (problem_ids, _) = next(iter(by_policy.items()))
        reference = set(problem_ids)
        columns = {}
        for name, (ids, correct) in by_policy.items():
            if set(ids) != reference:
                missing, extra = sorted(reference - set(ids), key=str), sorted(set(ids) - reference, key=str)
                raise ValueError(
                    f"policy {name!r} was evaluated on different problems than {first_name!r}: "
                    f"{len(missing)} missing (e.g. {missing[:5]}), {len(extra)} extra (e.g. {extra[:5]})"
                )
            row = dict(zip(ids, correct))
            columns[name] = [row[pid] for pid in problem_ids]
    else:
        raise TypeError(
            "results_per_strategy must be a mapping name → per-problem correctness lists or an EvalResults, "
            f"got {type(results_per_strategy).__name__}"
        )
    names = list(columns)
    rewards = np.empty((len(problem_ids), len(names)), dtype=float)
    for j, name in enumerate(names):
        for i, flags in enumerate(columns[name]):
            rewards[i, j] = _pass_at_k_of(flags, k, f"strategy {name!r}, problem {problem_ids[i]!r}")
    return RewardTable(list(problem_ids), names, rewards)


# --------------------------------------------------------------------------------------------------------------------
# Coverage selection
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class CoverageSelection:
    """A selected action set.

    Args:
        indices (`list[int]`): Chosen columns of ``R``, in the order they were added.
        names (`list[str]`): Their names (the column indices as strings when no names were given).
        coverages (`list[float]`): ``C`` of the first ``i + 1`` chosen strategies, for each ``i``; the last entry is
            the coverage of the whole set. Divide by the number of problems for the oracle's mean pass@k.
    """

    indices: list[int]
    names: list[str]
    coverages: list[float] = field(default_factory=list)

    @property
    def value(self) -> float:
        """Coverage of the selected set (0 for an empty one)."""
        return self.coverages[-1] if self.coverages else 0.0


def _check_table(rewards: np.ndarray) -> np.ndarray:
    table = np.asarray(rewards, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0 or table.shape[1] == 0:
        raise ValueError(f"R must be a non-empty 2-d array (problems × strategies), got shape {table.shape}")
    if not np.isfinite(table).all():
        raise ValueError("R must be finite")
    return table


def _check_names(names: Sequence[str] | None, num_strategies: int) -> list[str]:
    if names is None:
        return [str(i) for i in range(num_strategies)]
    if len(names) != num_strategies:
        raise ValueError(f"got {len(names)} names for {num_strategies} strategies")
    return list(names)


def coverage(rewards: np.ndarray, subset: Iterable[int]) -> float:
    """``Σ_x max_{s ∈ subset} R[x, s]``; 0 for an empty subset (the convention for nonnegative rewards).

    Args:
        rewards (`np.ndarray`): ``R`` of shape ``(num_problems, num_strategies)``.
        subset (`Iterable[int]`): Column indices.
    """
    table = _check_table(rewards)
    cols = list(subset)
    if not cols:
        return 0.0
    return float(table[:, cols].max(axis=1).sum())


def greedy_coverage_selection(rewards: np.ndarray, size: int, names: Sequence[str] | None = None) -> CoverageSelection:
    """Greedy maximisation of the coverage ``C(S) = Σ_x max_{s ∈ S} R[x, s]`` under ``|S| <= size``.

    Starts from the best single strategy (the strategy with the highest mean reward, which is the best *fixed*
    strategy; an action set must be non-empty, so it is added even when its coverage is 0), then repeatedly adds the
    strategy with the largest coverage gain. Ties go to the lowest column index, so the result is deterministic.
    Selection stops after ``size`` strategies, or earlier when no remaining strategy raises the coverage (every
    problem is already served as well as any candidate could: adding more would only enlarge the bandit's action
    space), or when the pool is exhausted. For nonnegative ``R`` the result is within ``(1 − 1/e)`` of the best
    ``size``-subset (coverage is monotone submodular).

    Args:
        rewards (`np.ndarray`): ``R`` of shape ``(num_problems, num_strategies)`` (e.g. from [`reward_table`]).
        size (`int`): Maximum number of strategies, ``>= 1``.
        names (`Sequence[str]`, *optional*): Strategy names, one per column.

    Returns:
        [`CoverageSelection`].
    """
    table = _check_table(rewards)
    labels = _check_names(names, table.shape[1])
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    tol = _TIE_RTOL * max(1.0, float(np.abs(table).sum()))
    chosen: list[int] = []
    coverages: list[float] = []
    best = None  # per-problem best reward of the chosen set
    while len(chosen) < min(size, table.shape[1]):
        if best is None:
            gains = table.sum(axis=0)
        else:
            gains = np.maximum(table - best[:, None], 0.0).sum(axis=0)
        gains[chosen] = -np.inf
        top = gains.max()
        if best is not None and top <= tol:
            break
        index = int(np.flatnonzero(gains >= top - tol)[0])
        chosen.append(index)
        best = table[:, index].copy() if best is None else np.maximum(best, table[:, index])
        coverages.append(float(best.sum()))
    return CoverageSelection(chosen, [labels[i] for i in chosen], coverages)


def brute_force_coverage_selection(
    rewards: np.ndarray, size: int, names: Sequence[str] | None = None, max_subsets: int = 1_000_000
) -> CoverageSelection:
    """The exact coverage maximiser over all subsets of ``min(size, num_strategies)`` strategies.

    Subsets of exactly that size suffice: adding a strategy never lowers a max. Among optimal subsets (within
    rounding) the lexicographically first in index order is returned. Exponential; meant for tests and small pools.

    Args:
        rewards (`np.ndarray`): ``R`` of shape ``(num_problems, num_strategies)``.
        size (`int`): Subset size, ``>= 1``.
        names (`Sequence[str]`, *optional*): Strategy names, one per column.
        max_subsets (`int`, *optional*, defaults to `1_000_000`): Refuse pools with more subsets than this.

    Returns:
        [`CoverageSelection`] with the indices in increasing order and the coverage of each prefix.
    """
    table = _check_table(rewards)
    labels = _check_names(names, table.shape[1])
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    size = min(size, table.shape[1])
    count = math.comb(table.shape[1], size)
    if count > max_subsets:
        raise ValueError(f"{count} subsets of size {size} exceed max_subsets={max_subsets}; use the greedy selection")
    tol = _TIE_RTOL * max(1.0, float(np.abs(table).sum()))
    best_subset: tuple[int, ...] = ()
    best_value = -np.inf
    for subset in itertools.combinations(range(table.shape[1]), size):
        value = float(table[:, subset].max(axis=1).sum())
        if value > best_value + tol:
            best_subset, best_value = subset, value
    chosen = list(best_subset)
    coverages = [float(table[:, chosen[: i + 1]].max(axis=1).sum()) for i in range(len(chosen))]
    return CoverageSelection(chosen, [labels[i] for i in chosen], coverages)
