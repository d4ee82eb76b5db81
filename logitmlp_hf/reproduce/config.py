"""What the main job runs (:class:`ReproduceConfig`) and where each stage writes (:class:`RunPaths`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evaluation.settings import DEFAULT_SETTINGS


_EVAL = DEFAULT_SETTINGS
EVAL_DTYPES = ("float32", "bfloat16")
N_ARITHMETIC_PROBLEMS = 441  # distinct "a + b" with 0 <= a, b <= 20: the task's whole problem space


@dataclass
class ReproduceConfig:
    """What ``logitmlp reproduce`` runs. The defaults are the main job; :meth:`quick` is the smoke run.

    Args:
        output_dir (`str`): Where every stage writes.
        seed (`int`): Seeds the problems, the training runs and the evaluation samples.
        training_seeds (`tuple[int, ...]`): More training seeds: each trains one more pass@1 and one more pass@k
            head on the same problems (``heads/pass1-seed<s>``, ``heads/passk-seed<s>``), evaluated on the same test
            problems with the same samples, so the frontier test pools the seeds of each head type. Empty: only the
            heads trained with ``seed``.
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
        eval_dtype (`str`): The base model's dtype in the sweep, the evaluation and the analysis (``float32`` or
            ``bfloat16``; training runs in float32).
        n_resamples (`int`): Bootstrap resamples for the confidence intervals.
        n_analysis_problems (`int`): Test problems whose rollouts (all samples) the per-token analysis reads.
        with_lora (`bool`): Also run the LoRA stacking demonstration.
        lora_steps (`int`), lora_learning_rate (`float`), lora_rank (`int`): TRL GRPO + LoRA settings.
    """

    # The evaluation defaults are `logitmlp eval`'s and `logitmlp sweep`'s (evaluation/settings.py).
    output_dir: str = "outputs/reproduce"
    seed: int = _EVAL.seed
    training_seeds: tuple[int, ...] = ()
    n_train: int = 309
    n_validation: int = _EVAL.n_validation
    n_test: int = _EVAL.n_test
    n_samples: int = _EVAL.n_samples
    temperatures: tuple[float, ...] = _EVAL.temperatures
    select_by: str = _EVAL.select_by
    max_new_tokens: int = _EVAL.resolved_max_new_tokens("arithmetic")
    train_steps: int = 25
    learning_rate: float = 3e-3
    num_generations: int = 8
    prompts_per_step: int = 2
    pass_k: int = 4
    slope_bound: float = 4.0
    eval_batch_size: int = _EVAL.batch_size
    eval_dtype: str = "float32"
    n_resamples: int = _EVAL.n_resamples
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
            pass_k=2,  # below the group size: k = group size would give all-zero pass@k advantages
            eval_batch_size=8,
            n_resamples=200,
            n_analysis_problems=4,
            lora_steps=2,
        )
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        self.temperatures = tuple(sorted({float(t) for t in self.temperatures}))
        self.training_seeds = tuple(int(s) for s in self.training_seeds)
        if len(set(self.training_seeds)) != len(self.training_seeds) or self.seed in self.training_seeds:
            raise ValueError(
                f"training_seeds must be distinct and differ from seed={self.seed} (its heads are heads/pass1 and "
                f"heads/passk), got {list(self.training_seeds)}"
            )
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
        if self.eval_dtype not in EVAL_DTYPES:
            raise ValueError(f"eval_dtype must be one of {EVAL_DTYPES}, got {self.eval_dtype!r}")
        if self.select_by not in ("mean_accuracy", "best@k"):
            raise ValueError(f"select_by must be 'mean_accuracy' or 'best@k', got {self.select_by!r}")

    @property
    def path(self) -> Path:
        return Path(self.output_dir)

    def settings(self) -> dict[str, Any]:
        """What the run measures with, in the order ``logitmlp reproduce`` prints it first."""
        keys = (
            "seed",
            "training_seeds",
            "n_train",
            "n_validation",
            "n_test",
            "n_samples",
            "max_new_tokens",
            "temperatures",
            "select_by",
            "train_steps",
            "num_generations",
            "pass_k",
            "eval_batch_size",
            "eval_dtype",
            "n_resamples",
        )
        return {"output_dir": self.output_dir, **{k: getattr(self, k) for k in keys}}


# ---------------------------------------------------------------------------------------------------------- data


class RunPaths:
    """Where each stage writes, under the output directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Head repos hold only config, weights and card; each training run (checkpoints, TensorBoard logs,
        # log_history.json) has its own folder under training/.
        self.pass1, self.passk = root / "heads" / "pass1", root / "heads" / "passk"
        self.training = root / "training"
        self.sweep = root / "sweep" / "sweep.json"
        self.eval, self.rollouts = root / "eval" / "results.json", root / "eval" / "rollouts.jsonl"
        self.analysis = root / "analysis"
        self.lora, self.lora_head = root / "lora" / "adapter", root / "lora" / "head-passk"
        self.lora_eval = root / "lora" / "results.json"

    def seed_head(self, key: str, seed: int) -> Path:
        """The head repo of head type ``key`` (``pass1``/``passk``) trained with an extra training seed."""
        return self.root / "heads" / f"{key}-seed{seed}"

    def training_run(self, key: str, seed: int | None = None) -> Path:
        """The training run (checkpoints, logs, ``log_history.json``) of head type ``key``: trained with the run's
        own seed (``seed=None``) or with an extra training seed."""
        return self.training / (key if seed is None else f"{key}-seed{seed}")

    def seed_eval(self, seeds: tuple[int, ...]) -> Path:
        """The evaluation of the extra seeds' heads (named by the seeds: adding one evaluates them again)."""
        return self.root / "eval" / f"seeds-{'-'.join(str(s) for s in seeds)}.json"


__all__ = ["N_ARITHMETIC_PROBLEMS", "ReproduceConfig", "RunPaths"]
