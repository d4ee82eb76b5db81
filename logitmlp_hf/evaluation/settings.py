"""The evaluation settings ``logitmlp eval``, ``logitmlp sweep`` and ``logitmlp reproduce`` share, defined once.

The three commands take their defaults from :data:`DEFAULT_SETTINGS`, so a head evaluated with ``logitmlp eval``
and the main job's table are measured the same way unless an option says otherwise. The completion budget depends
on the dataset: arithmetic answers take a few tokens (48, the main job's budget), GSM8K/MATH-style solutions up to
512.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


# Completion budget per dataset name; any other dataset (a file, a Hub id) gets LONG_FORM_MAX_NEW_TOKENS.
MAX_NEW_TOKENS_BY_DATASET = {"arithmetic": 48, "gsm8k": 512, "math500": 512}
LONG_FORM_MAX_NEW_TOKENS = 512


@dataclass(frozen=True)
class EvaluationSettings:
    """How decoding policies are evaluated (samples, budget, seeds, bootstrap) and GLOBAL-T* is picked.

    Args:
        n_samples (`int`): Samples per problem (the k of best@k).
        n_test (`int`): Test problems of the arithmetic task (other datasets: all, unless a count is given).
        n_validation (`int`): Validation problems, held out before the test problems (GLOBAL-T* is picked on them).
        max_new_tokens (`int`, *optional*): Completion budget; ``None``: the dataset's (see
            :func:`default_max_new_tokens`).
        batch_size (`int`): Problems per ``generate`` call (does not change the samples).
        seed (`int`): Sampling seed (per problem and sample).
        n_resamples (`int`): Bootstrap resamples for the confidence intervals.
        temperatures (`tuple[float, ...]`): The GLOBAL-T* grid.
        select_by (`str`): Validation metric that picks T*.
        no_answer (`str`): How samples without an answer count in answer entropy and uniq/k.
    """

    n_samples: int = 8
    n_test: int = 100
    n_validation: int = 32
    max_new_tokens: int | None = None
    batch_size: int = 8
    seed: int = 0
    n_resamples: int = 1000
    temperatures: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0)
    select_by: str = "mean_accuracy"
    no_answer: str = "category"

    def resolved_max_new_tokens(self, dataset: str) -> int:
        """``max_new_tokens``, or the dataset's budget when it is ``None``."""
        return default_max_new_tokens(dataset) if self.max_new_tokens is None else self.max_new_tokens

    def evaluate_kwargs(self) -> dict[str, Any]:
        """The settings [`~logitmlp_hf.evaluation.runner.evaluate`] takes, as its keyword arguments."""
        return dict(
            n_samples=self.n_samples,
            batch_size=self.batch_size,
            seed=self.seed,
            max_new_tokens=self.max_new_tokens,
            n_resamples=self.n_resamples,
            no_answer=self.no_answer,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def default_max_new_tokens(dataset: str) -> int:
    """The completion budget for ``dataset`` (a name of :data:`MAX_NEW_TOKENS_BY_DATASET`, else long-form)."""
    return MAX_NEW_TOKENS_BY_DATASET.get(dataset, LONG_FORM_MAX_NEW_TOKENS)


DEFAULT_SETTINGS = EvaluationSettings()


def format_settings(settings: dict[str, Any]) -> str:
    """One ``settings: key=value ...`` line (sequences joined by commas), as the commands print it first."""

    def show(value: Any) -> str:
        if isinstance(value, (list, tuple)):
            return ",".join(show(v) for v in value) or "none"
        return f"{value:g}" if isinstance(value, float) else str(value)

    return "settings: " + " ".join(f"{k}={show(v)}" for k, v in settings.items())


__all__ = [
    "DEFAULT_SETTINGS",
    "LONG_FORM_MAX_NEW_TOKENS",
    "MAX_NEW_TOKENS_BY_DATASET",
    "EvaluationSettings",
    "default_max_new_tokens",
    "format_settings",
]
