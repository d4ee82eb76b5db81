"""Is a policy beyond, on, or inside the *whole* fixed-temperature frontier?

A temperature sweep traces a curve in the (mean accuracy, best@k) plane: cold temperatures sit at high accuracy and
low diversity, hot ones the other way round. A learned warp only earns its keep if it reaches a point that no
temperature reaches, so the comparison is not with one temperature (GLOBAL-T*) but with the curve, at the policy's
*own* mean accuracy:

    gap = best@k(policy) − F(mean_accuracy(policy)),

where ``F(a)`` is the best best@k the sweep offers at mean accuracy ``≥ a``: the sweep points themselves, and the
straight segments between neighbouring temperatures of the grid (a finer grid would lie near them). Above the
sweep's highest accuracy the frontier is extended flat from its most accurate point, which can only make the test
harder for the policy. The same holds on any pair of per-problem metrics (``along``/``metric``).

The confidence interval is a *paired* bootstrap: problems are resampled jointly for the policy and every sweep
point (all were evaluated on the same problems with the same sampling seeds), and the frontier is rebuilt in each
resample. ``beyond`` means the interval lies above 0, ``inside`` below 0, ``on`` that it contains 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .metrics import MetricValue, per_problem_metrics


__all__ = [
    "FrontierGap",
    "frontier_gap",
    "frontier_gap_from_values",
    "frontier_value",
    "pooled_frontier_gap",
    "verdict",
]


def frontier_value(accuracy: np.ndarray, value: np.ndarray, at: np.ndarray) -> np.ndarray:
    """The frontier's value at accuracy ``at``, for many resamples at once.

    Args:
        accuracy, value (`np.ndarray` of shape `(R, P)`): Per resample ``R``, the sweep's ``P`` points in grid order
            (ascending temperature), so that neighbours in the last axis are neighbours on the curve.
        at (`np.ndarray` of shape `(R,)`): The accuracy to read the frontier at.

    Returns:
        `np.ndarray` of shape `(R,)`.
    """
    at = at[:, None]
    # Points at least as accurate as `at` (a dominating point counts at its own best@k).
    best = np.where(accuracy >= at, value, -np.inf).max(axis=1)
    # Segments between grid neighbours whose accuracy range contains `at`.
    a0, a1, v0, v1 = accuracy[:, :-1], accuracy[:, 1:], value[:, :-1], value[:, 1:]
    lo, hi = np.minimum(a0, a1), np.maximum(a0, a1)
    span = np.where(a1 != a0, a1 - a0, 1.0)
    interpolated = v0 + (v1 - v0) * (at - a0) / span
    crossing = (lo <= at) & (at <= hi)
    if crossing.size:
        best = np.maximum(best, np.where(crossing, interpolated, -np.inf).max(axis=1))
    # Above every point: extend flat from the most accurate point (conservative for the policy).
    most_accurate = value[np.arange(len(value)), accuracy.argmax(axis=1)]
    return np.where(np.isfinite(best), best, most_accurate)


def verdict(gap: MetricValue) -> str:
    """``"beyond"``, ``"inside"`` or ``"on"`` the frontier, from the gap's confidence interval."""
    if gap.ci_low > 0:
        return "beyond"
    if gap.ci_high < 0:
        return "inside"
    return "on"


@dataclass(frozen=True)
class FrontierGap:
    """A policy against the temperature frontier.

    Args:
        gap (`MetricValue`): ``metric(policy) − F(along(policy))`` with its paired bootstrap CI.
        verdict (`str`): ``"beyond"``, ``"on"`` or ``"inside"``.
        metric, along (`str`): The frontier's two axes (e.g. ``"best@k"`` against ``"mean_accuracy"``).
        policy_point (`tuple[float, float]`): The policy's ``(along, metric)``.
        frontier_at_policy (`float`): ``F`` at the policy's ``along`` value, on all problems.
        beyond_range (`bool`): The policy's ``along`` exceeds every sweep point's (the flat extension was used).
    """

    gap: MetricValue
    verdict: str
    metric: str
    along: str
    policy_point: tuple[float, float]
    frontier_at_policy: float
    beyond_range: bool

    def to_dict(self) -> dict:
        return {
            "gap": self.gap.to_dict(),
            "verdict": self.verdict,
            "metric": self.metric,
            "along": self.along,
            "policy_point": list(self.policy_point),
            "frontier_at_policy": self.frontier_at_policy,
            "beyond_range": self.beyond_range,
        }


def _per_problem(correct: Sequence[Sequence[bool]], key: str) -> np.ndarray:
    metrics = per_problem_metrics(correct)
    if key not in metrics:
        raise KeyError(f"unknown metric {key!r}; available: {sorted(metrics)}")
    return metrics[key]


def frontier_gap(
    policy_correct: Sequence[Sequence[bool]],
    sweep_correct: Mapping[float, Sequence[Sequence[bool]]],
    metric: str = "best@k",
    along: str = "mean_accuracy",
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> FrontierGap:
    """Test a policy against the whole temperature frontier at its own ``along`` value (see the module docstring).

    Args:
        policy_correct (`Sequence[Sequence[bool]]`): Per problem, per sample, whether the policy's sample is right.
        sweep_correct (`Mapping[float, Sequence[Sequence[bool]]]`): Temperature → the same, on the same problems
            (same order, same number of samples).
        metric (`str`, *optional*, defaults to `"best@k"`): The frontier's value axis, a key of
            [`~logitmlp_hf.evaluation.metrics.per_problem_metrics`].
        along (`str`, *optional*, defaults to `"mean_accuracy"`): The axis the policy is matched on.
        n_resamples, confidence, seed: The paired bootstrap's settings.

    Returns:
        [`FrontierGap`].
    """
    return pooled_frontier_gap(
        [policy_correct],
        sweep_correct,
        metric,
        along,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )


def pooled_frontier_gap(
    policies_correct: Sequence[Sequence[Sequence[bool]]],
    sweep_correct: Mapping[float, Sequence[Sequence[bool]]],
    metric: str = "best@k",
    along: str = "mean_accuracy",
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> FrontierGap:
    """[`frontier_gap`] pooled over several policies evaluated on the same problems (e.g. one head per training
    seed): their mean gap, each at its own ``along`` value, with the problems resampled jointly for all of them.

    Args:
        policies_correct (`Sequence[Sequence[Sequence[bool]]]`): Per policy, per problem, per sample, whether the
            sample is right.
        sweep_correct, metric, along, n_resamples, confidence, seed: As in [`frontier_gap`].
    """
    if not policies_correct:
        raise ValueError("pooled_frontier_gap needs at least one policy")
    temperatures = sorted(sweep_correct)
    return frontier_gap_from_values(
        [(_per_problem(c, along), _per_problem(c, metric)) for c in policies_correct],
        [(_per_problem(sweep_correct[t], along), _per_problem(sweep_correct[t], metric)) for t in temperatures],
        metric=metric,
        along=along,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )


def frontier_gap_from_values(
    policy: tuple[np.ndarray, np.ndarray] | Sequence[tuple[np.ndarray, np.ndarray]],
    sweep: Sequence[tuple[np.ndarray, np.ndarray]],
    metric: str = "best@k",
    along: str = "mean_accuracy",
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> FrontierGap:
    """[`frontier_gap`] on per-problem values (e.g. exact probabilities instead of sampled flags).

    Given several policies (e.g. one head per training seed), the gap is their *mean* gap, each against the frontier
    at its own ``along`` value, with the problems resampled jointly for all of them: the pooled test across seeds.

    Args:
        policy (`tuple[np.ndarray, np.ndarray]` or a list of them): The policy's per-problem ``(along, metric)``
            values (or each policy's).
        sweep (`Sequence[tuple[np.ndarray, np.ndarray]]`): The same for each sweep point, in grid order.
        metric, along, n_resamples, confidence, seed: As in [`frontier_gap`] (the names label the result).
    """
    if len(sweep) < 2:
        raise ValueError(f"a frontier needs at least 2 temperatures, got {len(sweep)}")
    policies = [policy] if isinstance(policy, tuple) else list(policy)
    p_along = np.stack([np.asarray(a, dtype=float) for a, _ in policies])  # (S, N)
    p_val = np.stack([np.asarray(v, dtype=float) for _, v in policies])
    s_along = np.stack([np.asarray(a, dtype=float) for a, _ in sweep])  # (P, N)
    s_val = np.stack([np.asarray(v, dtype=float) for _, v in sweep])
    if s_val.shape[1] != p_val.shape[1]:
        raise ValueError(
            f"the policy was evaluated on {p_val.shape[1]} problems but the sweep on {s_val.shape[1]}; the "
            "comparison is paired and needs the same problems"
        )
    n = p_val.shape[1]

    def gaps(index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # index: (R, N) resampled problem indices; every quantity is a mean over the same resampled problems.
        sv = s_val[:, index].mean(axis=2).T  # (R, P)
        sa = s_along[:, index].mean(axis=2).T
        gap, frontier = [], []
        for pv_s, pa_s in zip(p_val, p_along):
            f = frontier_value(sa, sv, pa_s[index].mean(axis=1))
            gap.append(pv_s[index].mean(axis=1) - f)
            frontier.append(f)
        return np.mean(gap, axis=0), np.mean(frontier, axis=0)

    full, frontier_full = gaps(np.arange(n)[None, :])
    rng = np.random.default_rng(seed)
    boot, _ = gaps(rng.integers(0, n, size=(n_resamples, n)))
    alpha = (1.0 - confidence) / 2.0
    gap = MetricValue(
        value=float(full[0]),
        ci_low=float(np.quantile(boot, alpha)),
        ci_high=float(np.quantile(boot, 1.0 - alpha)),
    )
    return FrontierGap(
        gap=gap,
        verdict=verdict(gap),
        metric=metric,
        along=along,
        policy_point=(float(p_along.mean()), float(p_val.mean())),
        frontier_at_policy=float(frontier_full[0]),
        beyond_range=bool((p_along.mean(axis=1) > s_along.mean(axis=1).max()).any()),
    )
