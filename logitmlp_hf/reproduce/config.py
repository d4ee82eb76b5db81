"""What the main job runs (:class:`ReproduceConfig`) and where each stage writes (:class:`RunPaths`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any


N_ARITHMETIC_PROBLEMS = 441  # distinct "a + b" with 0 <= a, b <= 20: the task's whole problem space


@dataclass
class ReproduceConfig:
    """What ``logitmlp reproduce`` runs. The defaults are the main job; :meth:`quick` is the smoke run.

    Args:
        output_dir (`str`): Where every stage writes.
        seed (`int`): Seeds the problems, the training runs and the evaluation samples.
        n_train, n_validation, n_test (`int`): Disjoint problem sets (at most 441 together: the whole task).
        n_samples (`int`): Samples per problem in evaluation (the k of best@k).
        temperatures (`tuple[float, ...]`): The GLOBAL-T* sweep.
        select_by (`str`): Validation metric that picks T* (``mean_accuracy`` or ``best@k``).
        max_new_tokens (`int`): Completion budget in training and evaluation.
        train_steps (`int`): Optimiser steps per head.
        learning_rate (`float`): The heads' learning rate (constant).
        num_generations (`int`): Group size (rollouts per prompt).
        prompts_per_step (`int`): Prompts per optimiser step.
        pass_k (`int`): k of the pass@k objective.
        slope_bound (`float`): The heads' slopes lie in ``(1/slope_bound, slope_bound)`` (the source: 4), so their
            temperatures lie in ``(1/slope_bound, slope_bound)`` too.
        eval_batch_size (`int`): Problems per ``generate`` call in evaluation.
        n_resamples (`int`): Bootstrap resamples for the confidence intervals.
        n_analysis_problems (`int`): Test problems whose rollouts (all samples) the per-token analysis reads.
        with_lora (`bool`): Also run the LoRA stacking demonstration.
        lora_steps (`int`), lora_learning_rate (`float`), lora_rank (`int`): TRL GRPO + LoRA settings.
    """

    output_dir: str = "outputs/reproduce"
    seed: int = 0
    n_train: int = 309
    n_validation: int = 32
    n_test: int = 100
    n_samples: int = 8
    temperatures: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 1.0)
    select_by: str = "mean_accuracy"
    max_new_tokens: int = 48
    train_steps: int = 25
    learning_rate: float = 3e-3
    num_generations: int = 8
    prompts_per_step: int = 2
    pass_k: int = 4
    slope_bound: float = 4.0
    eval_batch_size: int = 8
    n_resamples: int = 1000
    n_analysis_problems: int = 25
    with_lora: bool = False
    lora_steps: int = 30
    lora_learning_rate: float = 2e-4
    lora_rank: int = 16

    @classmethod
    def quick(cls, **overrides: Any) -> ReproduceConfig:
        """A few-minute run of every stage on tiny problem sets: checks the pipeline, measures nothing."""
        values: dict[str, Any] = dict(
            output_dir="outputs/reproduce-quick",
            n_train=16,
            n_validation=6,
            n_test=8,
            n_samples=4,
            temperatures=(0.4, 1.0),
            max_new_tokens=24,
            train_steps=2,
            num_generations=4,
            eval_batch_size=8,
            n_resamples=200,
            n_analysis_problems=4,
            lora_steps=2,
        )
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        self.temperatures = tuple(sorted({float(t) for t in self.temperatures}))
        total = self.n_train + self.n_validation + self.n_test
        if total > N_ARITHMETIC_PROBLEMS:
            raise ValueError(
                f"n_train + n_validation + n_test = {total}, but the arithmetic task (a + b, operands "
                f"0..20) has only {N_ARITHMETIC_PROBLEMS} distinct problems"
            )
        if min(self.n_train, self.n_validation, self.n_test) < 1:
            raise ValueError("n_train, n_validation and n_test must all be >= 1")
        if not 1 <= self.pass_k < self.num_generations:
            # k = group size would make every pass@k advantage 0 (see DecodingHeadGRPOConfig)
            raise ValueError(f"pass_k must be in [1, num_generations={self.num_generations}), got {self.pass_k}")
        if self.select_by not in ("mean_accuracy", "best@k"):
            raise ValueError(f"select_by must be 'mean_accuracy' or 'best@k', got {self.select_by!r}")

    @property
    def path(self) -> Path:
        return Path(self.output_dir)


# ---------------------------------------------------------------------------------------------------------- data


class RunPaths:
    """Where each stage writes, under the output directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pass1, self.passk = root / "heads" / "pass1", root / "heads" / "passk"
        self.sweep = root / "sweep" / "sweep.json"
        self.eval, self.rollouts = root / "eval" / "results.json", root / "eval" / "rollouts.jsonl"
        self.analysis = root / "analysis"
        self.lora, self.lora_head = root / "lora" / "adapter", root / "lora" / "head-passk"
        self.lora_eval = root / "lora" / "results.json"


__all__ = ["N_ARITHMETIC_PROBLEMS", "ReproduceConfig", "RunPaths"]
