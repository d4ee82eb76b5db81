"""Metrics over ``k`` samples per problem, with bootstrap confidence intervals over problems.

Everything here is a pure function of per-problem sample outcomes: for each problem a list of correctness flags
(one per sample) and, for the diversity metrics, the samples' final answers after [`group_equivalent_answers`]
(``None`` = the sample gave no answer). The metrics are the columns of the source's Table 1 (docs/method.md §4) plus the
unbiased pass@k curve:

| key | meaning (per problem, then averaged over problems) |
|---|---|
| ``best@k`` | 1 if any of the ``k`` samples is correct (the empirical pass@k at ``k = n``) |
| ``mean_accuracy`` | fraction of correct samples (= best@1 = unbiased pass@1) |
| ``worst@k`` | 1 if all ``k`` samples are correct |
| ``answer_entropy`` | entropy (nats) of the empirical distribution of distinct final answers |
| ``uniq/k`` | number of distinct final answers ÷ ``k`` |
| ``accuracy_std`` | std of the ``k`` correctness flags, ``sqrt(p (1 − p))`` (population std) |
| ``accuracy_std_across_problems`` | std across problems of per-problem accuracy (not an average) |
| ``maj@k`` | 1 if the most frequent final answer (majority vote, ties → first seen) is correct |
| ``pass@j`` | unbiased pass@j (Chen et al. 2021) for every ``1 ≤ j ≤ k`` |

**Which "acc std".** Table 1 cannot be the std *across problems* of per-problem accuracy: GLOBAL-T* has best@8
0.496, worst@8 0.051 and mean 0.231, so ≥ 50.4 % of problems sit at accuracy 0 and ≥ 5.1 % at 1, which forces an
across-problem std ≥ 0.26, yet the table reports 0.185. The within-problem std of the 8 outcomes averaged over
problems fits every row (e.g. ≈ 0.45 × the 44.5 % of problems with mixed outcomes ≈ 0.2 for GLOBAL-T*), so
``accuracy_std`` is that; the across-problem std is reported as well under its own name.

**"No answer" samples** (nothing extractable) count as one extra category by default (``no_answer="category"``): for
the entropy, "no answer" is one outcome among the answers, so 4 × "12" + 4 × none gives ln 2; for ``uniq/k`` it is one
distinct value too. With ``no_answer="exclude"`` they are dropped before both metrics (entropy over the answered
samples only, distinct answers only, still divided by ``k``); a problem with no answered sample then scores 0.

Confidence intervals are percentile bootstrap intervals over problems: resample problems with replacement (one shared
set of resampled indices for every metric, so intervals of different metrics come from the same resamples), recompute
each metric, take the ``(1 − confidence)/2`` and ``(1 + confidence)/2`` quantiles. Seeded; deterministic.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..tasks.answers import canonical_answer, exact_number, majority_vote
from ..trainer.advantages import pass_at_k


logger = logging.getLogger(__name__)

__all__ = [
    "MetricValue",
    "NO_ANSWER_MODES",
    "answer_entropy",
    "bootstrap_ci",
    "canonical_answer",
    "compute_metrics",
    "group_equivalent_answers",
    "paired_difference",
    "per_problem_metrics",
    "unique_fraction",
]

NO_ANSWER_MODES = ("category", "exclude")

# The key under which "no answer" samples are counted when they form their own category; not a valid answer string.
_NO_ANSWER_KEY = "\x00no-answer"


def _math_verify_equal(a: str, b: str, timeout_seconds: float | None) -> bool:
    from ..tasks.rewards import answers_match

    # math-verify's comparison is not guaranteed symmetric (the prediction is searched, the reference read whole);
    # requiring either direction groups e.g. "\frac{1}{2}" with "0.5" whichever comes first.
    return answers_match(a, b, timeout_seconds=timeout_seconds) or answers_match(b, a, timeout_seconds=timeout_seconds)


def group_equivalent_answers(
    answers: Sequence[str | None],
    *,
    use_math_verify: bool = True,
    timeout_seconds: float | None = 2.0,
    equal: Callable[[str, str], bool] | None = None,
) -> list[str | None]:
    r"""Map each answer of one problem to a representative of its math-equivalence class.

    Two answers are the same when their [`canonical_answer`] strings are equal, or (if ``use_math_verify``) when
    [`~logitmlp_hf.tasks.rewards.answers_match`] says so in either direction. math-verify runs only among the *distinct*
    canonical strings, and never between two plain numbers (their canonical strings are already exact), so ``k``
    samples cost at most ``d (d − 1) / 2`` comparisons for ``d`` distinct non-numeric strings. Grouping is greedy
    (each new string joins the first representative it matches), which is what "the same answer" means when the
    relation is transitive, as it is for math equality.

    Args:
        answers (`Sequence[str | None]`): Extracted answers of one problem's samples; ``None`` = no answer.
        use_math_verify (`bool`, *optional*, defaults to `True`): Compare distinct strings with math-verify.
        timeout_seconds (`float`, *optional*, defaults to `2.0`): Bound per math-verify comparison.
        equal (`Callable[[str, str], bool]`, *optional*): Replace math-verify by this equality (used in tests).

    Returns:
        `list[str | None]`: For each sample, the canonical string of its class representative (``None`` stays
        ``None``).

    Example:

    ```python
    >>> group_equivalent_answers(["29", "29.0", r"\frac{1}{2}", "0.5", None])
    ['29', '29', '1/2', '1/2', None]
    ```
    """
    canonical = [canonical_answer(a) for a in answers]
    distinct = list(dict.fromkeys(c for c in canonical if c is not None))
    if equal is None and use_math_verify:
        equal = lambda a, b: _math_verify_equal(a, b, timeout_seconds)  # noqa: E731
    representative: dict[str, str] = {}
    reps: list[str] = []
    for cand in distinct:
        target = cand
        if equal is not None:
            cand_is_number = exact_number(cand) is not None
            for rep in reps:
                if cand_is_number and exact_number(rep) is not None:
                    continue  # two exact numbers with different canonical strings are different
                if equal(rep, cand):
                    target = rep
                    break
        if target == cand:
            reps.append(cand)
        representative[cand] = target
    return [representative[c] if c is not None else None for c in canonical]


# --------------------------------------------------------------------------------------------------------------------
# Per-problem metrics
# --------------------------------------------------------------------------------------------------------------------


def _check_mode(no_answer: str) -> None:
    if no_answer not in NO_ANSWER_MODES:
        raise ValueError(f"no_answer must be one of {NO_ANSWER_MODES}, got {no_answer!r}")


def _answer_keys(answers: Sequence[str | None], no_answer: str) -> list[str]:
    _check_mode(no_answer)
    if no_answer == "category":
        return [_NO_ANSWER_KEY if a is None else a for a in answers]
    return [a for a in answers if a is not None]


def answer_entropy(answers: Sequence[str | None], no_answer: str = "category") -> float:
    """Entropy in nats of the empirical distribution of one problem's (grouped) final answers.

    Args:
        answers (`Sequence[str | None]`): Grouped answers (see [`group_equivalent_answers`]); ``None`` = no answer.
        no_answer (`str`, *optional*, defaults to `"category"`): ``"category"`` (no-answer samples are one extra
            outcome) or ``"exclude"`` (dropped; 0 if nothing is left).

    Returns:
        `float`: ``−Σ p log p`` over distinct answers, 0 when all samples agree.
    """
    keys = _answer_keys(answers, no_answer)
    if not keys:
        return 0.0
    total = len(keys)
    return float(-sum((c / total) * math.log(c / total) for c in Counter(keys).values()) + 0.0)


def unique_fraction(answers: Sequence[str | None], no_answer: str = "category") -> float:
    """Distinct (grouped) final answers of one problem ÷ the number of samples ``k`` (``uniq/k``).

    Args:
        answers (`Sequence[str | None]`): Grouped answers; ``None`` = no answer.
        no_answer (`str`, *optional*, defaults to `"category"`): As in [`answer_entropy`]; with ``"exclude"`` the
            no-answer samples add no distinct value but still count in ``k``.
    """
    if not answers:
        return 0.0
    return len(set(_answer_keys(answers, no_answer))) / len(answers)


def _majority_correct(flags: Sequence[bool], answers: Sequence[str | None]) -> bool:
    """Whether the majority answer (no-answer samples never vote; ties go to the answer seen first) is correct."""
    winner = majority_vote(answers, normalize=None)
    return winner is not None and any(bool(f) for f, a in zip(flags, answers) if a == winner)


def per_problem_metrics(
    correct: Sequence[Sequence[bool]],
    answers: Sequence[Sequence[str | None]] | None = None,
    no_answer: str = "category",
) -> dict[str, np.ndarray]:
    """Each metric's value on each problem (the means of these are the reported metrics).

    Args:
        correct (`Sequence[Sequence[bool]]`): Per problem, one correctness flag per sample. Every problem must have
            the same number of samples ``k``.
        answers (`Sequence[Sequence[str | None]]`, *optional*): Per problem, the grouped final answer per sample;
            without it the diversity metrics are left out.
        no_answer (`str`, *optional*, defaults to `"category"`): See [`answer_entropy`].

    Returns:
        `dict[str, np.ndarray]`: metric key → array of shape ``(num_problems,)``; keys as in the module docstring
        (``accuracy_std_across_problems`` is not per-problem and is left to [`compute_metrics`]).
    """
    _check_mode(no_answer)
    flags = np.asarray([list(map(bool, c)) for c in correct], dtype=bool)
    if flags.ndim != 2 or flags.shape[1] == 0:
        raise ValueError("correct must be a non-empty list of equally long, non-empty lists of flags")
    num_problems, k = flags.shape
    if answers is not None and (len(answers) != num_problems or any(len(a) != k for a in answers)):
        raise ValueError("answers must have the same shape as correct")
    counts = flags.sum(axis=1)
    acc = counts / k
    out: dict[str, np.ndarray] = {
        "best@k": (counts > 0).astype(float),
        "mean_accuracy": acc,
        "worst@k": (counts == k).astype(float),
        "accuracy_std": np.sqrt(acc * (1.0 - acc)),
    }
    if answers is not None:
        out["maj@k"] = np.asarray([_majority_correct(f, a) for f, a in zip(flags, answers)], dtype=float)
        out["answer_entropy"] = np.asarray([answer_entropy(a, no_answer) for a in answers], dtype=float)
        out["uniq/k"] = np.asarray([unique_fraction(a, no_answer) for a in answers], dtype=float)
    for j in range(1, k + 1):
        out[f"pass@{j}"] = np.asarray([pass_at_k(k, int(c), j) for c in counts], dtype=float)
    return out


# --------------------------------------------------------------------------------------------------------------------
# Aggregation with bootstrap confidence intervals
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricValue:
    """A metric's point estimate with a bootstrap confidence interval.

    Args:
        value (`float`): The estimate on all problems.
        ci_low (`float`): Lower end of the percentile bootstrap interval.
        ci_high (`float`): Upper end.
    """

    value: float
    ci_low: float
    ci_high: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)

    def __format__(self, spec: str) -> str:
        spec = spec or ".3f"
        return f"{self.value:{spec}} [{self.ci_low:{spec}}, {self.ci_high:{spec}}]"


def _resample_indices(num_problems: int, n_resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, num_problems, size=(n_resamples, num_problems))


def bootstrap_ci(
    values: Sequence[float] | np.ndarray,
    statistic: Callable[[np.ndarray], np.ndarray] | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> MetricValue:
    """Percentile bootstrap confidence interval of a statistic of per-problem values (resampling problems).

    Args:
        values (`Sequence[float]`): One value per problem.
        statistic (`Callable`, *optional*): Maps an array of shape ``(n_resamples, num_problems)`` to one value per
            row; defaults to the mean. The point estimate applies it to ``values`` itself.
        n_resamples (`int`, *optional*, defaults to `1000`): Bootstrap resamples (0 → the interval is the point).
        confidence (`float`, *optional*, defaults to `0.95`): Coverage of the interval.
        seed (`int`, *optional*, defaults to `0`): Seed of the resampling; same seed, same interval.

    Returns:
        [`MetricValue`].
    """
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("values must be a non-empty 1-d sequence")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    stat = statistic or (lambda x: x.mean(axis=-1))
    point = float(stat(arr[None, :])[0])
    if n_resamples <= 0:
        return MetricValue(point, point, point)
    boot = stat(arr[_resample_indices(arr.size, n_resamples, seed)])
    low, high = np.quantile(boot, [(1 - confidence) / 2, (1 + confidence) / 2])
    return MetricValue(point, float(low), float(high))


def compute_metrics(
    correct: Sequence[Sequence[bool]],
    answers: Sequence[Sequence[str | None]] | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    no_answer: str = "category",
) -> dict[str, MetricValue]:
    """All metrics (module docstring) averaged over problems, each with a percentile bootstrap CI over problems.

    Args:
        correct (`Sequence[Sequence[bool]]`): Per problem, one correctness flag per sample (``k`` each).
        answers (`Sequence[Sequence[str | None]]`, *optional*): Per problem, grouped final answers (see
            [`group_equivalent_answers`]); needed for ``answer_entropy`` and ``uniq/k``.
        n_resamples (`int`, *optional*, defaults to `1000`): Bootstrap resamples.
        confidence (`float`, *optional*, defaults to `0.95`): Interval coverage.
        seed (`int`, *optional*, defaults to `0`): Bootstrap seed.
        no_answer (`str`, *optional*, defaults to `"category"`): See [`answer_entropy`].

    Returns:
        `dict[str, MetricValue]`: ``best@k``, ``mean_accuracy``, ``worst@k``, ``accuracy_std``,
        ``accuracy_std_across_problems``, (``answer_entropy``, ``uniq/k``, ``maj@k``,) ``pass@1`` … ``pass@k``.

    Example:

    ```python
    >>> m = compute_metrics([[True, False], [False, False]], [["1", "2"], ["3", "3"]], n_resamples=0)
    >>> m["best@k"].value, m["mean_accuracy"].value, m["answer_entropy"].value
    (0.5, 0.25, 0.34657359027997264)
    ```
    """
    table = per_problem_metrics(correct, answers, no_answer)
    num_problems = len(next(iter(table.values())))
    idx = _resample_indices(num_problems, n_resamples, seed) if n_resamples > 0 else None
    q = [(1 - confidence) / 2, (1 + confidence) / 2]

    def summarise(values: np.ndarray, stat: Callable[[np.ndarray], np.ndarray]) -> MetricValue:
        point = float(stat(values[None, :])[0])
        if idx is None:
            return MetricValue(point, point, point)
        low, high = np.quantile(stat(values[idx]), q)
        return MetricValue(point, float(low), float(high))

    def mean(x: np.ndarray) -> np.ndarray:
        return x.mean(axis=-1)

    def std(x: np.ndarray) -> np.ndarray:
        return x.std(axis=-1)

    metrics = {key: summarise(values, mean) for key, values in table.items()}
    metrics["accuracy_std_across_problems"] = summarise(table["mean_accuracy"], std)
    order = [
        "best@k",
        "mean_accuracy",
        "worst@k",
        "answer_entropy",
        "uniq/k",
        "accuracy_std",
        "accuracy_std_across_problems",
        "maj@k",
    ]
    ordered = {key: metrics.pop(key) for key in order if key in metrics}
    ordered.update(metrics)  # pass@1 … pass@k, in order
    return ordered


def paired_difference(
    correct_a: Sequence[Sequence[bool]],
    correct_b: Sequence[Sequence[bool]],
    metric: str,
    answers_a: Sequence[Sequence[str | None]] | None = None,
    answers_b: Sequence[Sequence[str | None]] | None = None,
    *,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    no_answer: str = "category",
) -> MetricValue:
    """``metric(a) − metric(b)`` on the same problems, with a *paired* bootstrap CI (problems resampled jointly).

    Two policies evaluated on the same problems share the problems' difficulty; resampling the per-problem
    differences removes that shared variance, so the interval is much narrower than comparing the two separate
    intervals, and an interval excluding 0 is the right test for "a beats b on this problem distribution".

    Args:
        correct_a, correct_b (`Sequence[Sequence[bool]]`): Per problem (same order), per-sample correctness.
        metric (`str`): A key of [`per_problem_metrics`], e.g. ``"best@k"``, ``"mean_accuracy"``.
        answers_a, answers_b (`Sequence[Sequence[str | None]]`, *optional*): Grouped answers, for the diversity
            metrics.
        n_resamples, confidence, seed, no_answer: As in [`compute_metrics`].

    Returns:
        [`MetricValue`] of the difference of means.
    """
    a = per_problem_metrics(correct_a, answers_a, no_answer)
    b = per_problem_metrics(correct_b, answers_b, no_answer)
    if metric not in a or metric not in b:
        raise KeyError(f"metric {metric!r} is not available for both policies (diversity metrics need answers)")
    if a[metric].shape != b[metric].shape:
        raise ValueError(
            f"the two policies were evaluated on different numbers of problems: {a[metric].size} vs {b[metric].size}"
        )
    return bootstrap_ci(a[metric] - b[metric], n_resamples=n_resamples, confidence=confidence, seed=seed)
