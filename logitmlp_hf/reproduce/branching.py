"""The controlled task's job (``logitmlp reproduce --task branching``): heads vs oracle vs the temperature frontier.

Stages, each skipped when its output exists (so an interrupted run resumes):

1. ``base``: build and fit the task's base model (:mod:`logitmlp_hf.tasks.branching`), saved under ``base/``;
2. ``train``: every recipe × training seed, one head each (``heads/<recipe>/seed<s>/``);
3. ``sweep``: the base at every temperature of the grid, and a few static rules (top-p, min-p), on the test problems
   with the same sampling seeds as the heads (``sweep.json``);
4. ``eval``: every head, sampled the same way (``heads/<recipe>/seed<s>/eval.json``);
5. ``report``: exact metrics along reference paths (temperatures, heads, the oracle), paired frontier tests on the
   sampled and on the exact metrics, effective temperatures by position type, ``results.json`` and ``results.md``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


logger = logging.getLogger(__name__)

__all__ = ["BRANCHING_RECIPES", "BranchingRecipe", "BranchingRunConfig", "run_branching"]


@dataclass(frozen=True)
class BranchingRecipe:
    """One training configuration of the recipe search.

    Args:
        name (`str`): Label (lower case letters, digits and ``-``).
        objective (`str`): ``"pass@1"`` (DAPO, group-mean advantages) or ``"pass@k"`` (analytical pass@k advantage).
        pass_k (`int`): ``k`` of the pass@k objective (must be below ``num_generations``).
        learning_rate (`float`): Constant learning rate of the head.
        train_steps (`int`): Optimiser steps.
        num_generations (`int`): Rollouts per prompt.
        prompts_per_step (`int`): Prompts per optimiser step.
        slope_bound (`float`): The slopes' bound ``B``.
    """

    name: str
    objective: str
    pass_k: int = 8
    learning_rate: float = 1e-2
    train_steps: int = 100
    num_generations: int = 8
    prompts_per_step: int = 4
    slope_bound: float = 4.0


BRANCHING_RECIPES: dict[str, BranchingRecipe] = {
    r.name: r
    for r in (
        # the two main recipes: the source's objectives at a learning rate where 100 steps move the head
        BranchingRecipe("pass1", "pass@1"),
        BranchingRecipe("pass8", "pass@k", pass_k=8, num_generations=16, prompts_per_step=2),
        # the search around them: lower learning rate, more prompts per step, a wider slope bound, longer training
        BranchingRecipe("pass1-lr3e-3", "pass@1", learning_rate=3e-3),
        BranchingRecipe(
            "pass8-lr3e-3", "pass@k", pass_k=8, num_generations=16, prompts_per_step=2, learning_rate=3e-3
        ),
        BranchingRecipe("pass1-16prompts", "pass@1", prompts_per_step=16),
        BranchingRecipe("pass8-8prompts", "pass@k", pass_k=8, num_generations=16, prompts_per_step=8),
        BranchingRecipe("pass1-bound10", "pass@1", slope_bound=10.0),
        BranchingRecipe("pass8-bound10", "pass@k", pass_k=8, num_generations=16, prompts_per_step=2, slope_bound=10.0),
        BranchingRecipe("pass1-300steps", "pass@1", train_steps=300),
        BranchingRecipe("pass8-300steps", "pass@k", pass_k=8, num_generations=16, prompts_per_step=2, train_steps=300),
    )
}
MAIN_RECIPES = ("pass1", "pass8")
DEFAULT_TEMPERATURES = (0.25, 0.35, 0.45, 0.55, 0.65, 0.75, 0.85, 1.0, 1.15, 1.3, 1.5, 2.0, 3.0, 4.0)
STATIC_RULES = (
    "temperature:1.0:top_p=0.5,name=top-p 0.5",
    "temperature:1.0:top_p=0.8,name=top-p 0.8",
    "temperature:1.0:min_p=0.1,name=min-p 0.1",
    "temperature:1.0:min_p=0.2,name=min-p 0.2",
    "temperature:1.0:min_p=0.3,name=min-p 0.3",
)


@dataclass
class BranchingRunConfig:
    """What ``logitmlp reproduce --task branching`` runs.

    Args:
        output_dir (`str`): Where every stage writes.
        seed (`int`): Seeds the problems, the base model and the evaluation samples.
        training_seeds (`tuple[int, ...]`): One head per recipe per seed.
        recipes (`tuple[str, ...]`): Names from ``BRANCHING_RECIPES`` (``("all",)`` for the whole search).
        n_train, n_validation, n_test (`int`): Disjoint problem sets (600 prompts in all).
        n_samples (`int`): Samples per problem in evaluation (the k of best@k).
        temperatures (`tuple[float, ...]`): The frontier's grid.
        n_resamples (`int`): Bootstrap resamples for the confidence intervals.
        base_train_steps (`int`): Steps fitting the base to the task's distributions.
    """

    output_dir: str = "outputs/branching"
    seed: int = 0
    training_seeds: tuple[int, ...] = (0, 1, 2)
    recipes: tuple[str, ...] = MAIN_RECIPES
    n_train: int = 300
    n_validation: int = 50
    n_test: int = 200
    n_samples: int = 8
    temperatures: tuple[float, ...] = DEFAULT_TEMPERATURES
    n_resamples: int = 1000
    base_train_steps: int = 600
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.training_seeds = tuple(int(s) for s in self.training_seeds)
        self.temperatures = tuple(sorted({float(t) for t in self.temperatures}))
        self.recipes = tuple(self.recipes)
        if self.recipes == ("all",):
            self.recipes = tuple(BRANCHING_RECIPES)
        unknown = [r for r in self.recipes if r not in BRANCHING_RECIPES]
        if unknown:
            raise ValueError(f"unknown recipes {unknown}; allowed: {sorted(BRANCHING_RECIPES)} or 'all'")
        if not self.training_seeds:
            raise ValueError("training_seeds must not be empty")
        if len(self.temperatures) < 2 or min(self.temperatures) <= 0:
            raise ValueError(f"temperatures needs at least 2 positive values, got {self.temperatures}")
        if self.n_samples < 2:
            raise ValueError(f"n_samples must be >= 2 (best@k needs several samples), got {self.n_samples}")

    @classmethod
    def quick(cls, **overrides: Any) -> BranchingRunConfig:
        """A small run of every stage (one seed, short training): checks the pipeline, measures nothing."""
        values: dict[str, Any] = dict(
            output_dir="outputs/branching-quick",
            training_seeds=(0,),
            n_train=40,
            n_validation=8,
            n_test=24,
            temperatures=(0.5, 1.0, 2.0),
            n_resamples=200,
            base_train_steps=60,
            extra={"train_steps": 3},
        )
        values.update(overrides)
        return cls(**values)

    @property
    def path(self) -> Path:
        return Path(self.output_dir)

    def train_steps(self, recipe: BranchingRecipe) -> int:
        """The recipe's optimiser steps, unless ``extra["train_steps"]`` overrides them (the quick run)."""
        return int(self.extra.get("train_steps", recipe.train_steps))

    def settings_line(self) -> str:
        """The run's design in one line (what the CLI prints first)."""
        return (
            f"recipes {', '.join(self.recipes)} x training seeds {', '.join(map(str, self.training_seeds))}; "
            f"{self.n_test} test problems x {self.n_samples} samples (seed {self.seed}); temperature grid "
            f"{', '.join(f'{t:g}' for t in self.temperatures)}; {self.n_resamples} bootstrap resamples"
        )


def _training_arguments(recipe: BranchingRecipe, output_dir: Path, seed: int, steps: int):
    from ..trainer.config import DecodingHeadGRPOConfig

    return DecodingHeadGRPOConfig(
        output_dir=str(output_dir),
        objective=recipe.objective,
        pass_k=recipe.pass_k,
        num_generations=recipe.num_generations,
        per_device_train_batch_size=recipe.num_generations * recipe.prompts_per_step,
        max_completion_length=6,
        temperature=1.0,
        learning_rate=recipe.learning_rate,
        lr_scheduler_type="constant",
        max_steps=steps,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        dynamic_sampling=True,
        max_dynamic_sampling_rounds=2,
        logging_steps=10,
        save_strategy="no",
        report_to=[],
        seed=seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
        head_slope_bound=recipe.slope_bound,
        rollout_sampler="generate",  # as the committed branching results were trained (see reproduce/pipeline.py)
    )


def _effective_temperatures(warped: torch.Tensor, base: torch.Tensor) -> np.ndarray:
    """Per position (columns), the effective temperature of each problem's warp (rows)."""
    from ..analysis.per_token import effective_temperature

    n, length, vocab = base.shape
    t = effective_temperature(warped.reshape(-1, vocab), base.reshape(-1, vocab))
    return t.reshape(n, length).numpy()


def run_branching(
    config: BranchingRunConfig,
    on_stage: Callable[[str], None] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Path:
    """Run every stage of the controlled-task job (skipping finished ones) and write the results page.

    Args:
        config ([`BranchingRunConfig`]): What to run.
        on_stage (`Callable[[str], None]`, *optional*): Called with a line as each stage starts and ends.
        progress (`Callable[[str, int, int], None]`, *optional*): Called with ``(what, done, total)`` inside long
            stages (base fitting, heads trained).

    Returns:
        `Path`: ``results.md``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..evaluation.results import EvalResults
    from ..evaluation.runner import evaluate
    from ..evaluation.sweep import temperature_policy
    from ..modeling import DecodingHeadForCausalLM
    from ..tasks.branching import BranchingTaskConfig, branching_base_fit, make_branching_splits, train_branching_base
    from ..tasks.rewards import MathVerifyReward
    from ..trainer.grpo_trainer import DecodingHeadGRPOTrainer
    from .branching_report import write_branching_results

    say = on_stage or logger.info
    root = config.path
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1), encoding="utf-8")
    timings_path = root / "timings.json"
    timings: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    task = BranchingTaskConfig(seed=config.seed, train_steps=config.base_train_steps)
    train, _validation, test = make_branching_splits(config.n_train, config.n_validation, config.n_test, config.seed)
    base_dir = root / "base"
    eval_kwargs = dict(
        n_samples=config.n_samples,
        batch_size=64,
        seed=config.seed,
        max_new_tokens=6,
        n_resamples=config.n_resamples,
        progress=False,
    )

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        say(f"[{name}] started")
        start = time.perf_counter()
        value = fn()
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        timings_path.write_text(json.dumps(timings, indent=1), encoding="utf-8")
        say(f"[{name}] done in {time.perf_counter() - start:.0f} s")
        return value

    # 1. base
    if not (base_dir / "config.json").exists():

        def fit_base() -> None:
            report = (lambda done, total: progress("base", done, total)) if progress else None
            model, tokenizer = train_branching_base(task, base_dir, progress=report)
            fit = branching_base_fit(model, tokenizer, task)
            (base_dir / "fit.json").write_text(json.dumps(fit, indent=1), encoding="utf-8")

        timed("base", fit_base)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)

    def load_base():
        return AutoModelForCausalLM.from_pretrained(base_dir).eval()

    # 2. heads
    runs = [(BRANCHING_RECIPES[r], s) for r in config.recipes for s in config.training_seeds]
    head_dirs = {(r.name, s): root / "heads" / r.name / f"seed{s}" for r, s in runs}

    def train_heads() -> None:
        for i, (recipe, seed) in enumerate(runs):
            head_dir = head_dirs[(recipe.name, seed)]
            if (head_dir / "config.json").exists():
                continue
            trainer = DecodingHeadGRPOTrainer(
                model=load_base(),
                reward_funcs=MathVerifyReward(),
                args=_training_arguments(recipe, head_dir, seed, config.train_steps(recipe)),
                train_dataset=train,
                processing_class=tokenizer,
            )
            trainer.train()
            trainer.save_model()
            (head_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history), encoding="utf-8")
            if progress:
                progress("heads", i + 1, len(runs))

    if any(not (d / "config.json").exists() for d in head_dirs.values()):
        timed("train", train_heads)

    # 3. sweep (temperatures + static rules) on test
    sweep_path = root / "sweep.json"
    if not sweep_path.exists():
        policies = [temperature_policy(t) for t in config.temperatures] + list(STATIC_RULES)
        timed(
            "sweep", lambda: evaluate(load_base(), tokenizer, test, policies, results_path=sweep_path, **eval_kwargs)
        )
    sweep = EvalResults.load(sweep_path)

    # 4. heads, sampled
    def eval_heads() -> None:
        for recipe, seed in runs:
            head_dir = head_dirs[(recipe.name, seed)]
            if (head_dir / "eval.json").exists():
                continue
            model = DecodingHeadForCausalLM.from_pretrained(head_dir, base_model=load_base()).eval()
            evaluate(model, tokenizer, test, ["head"], results_path=head_dir / "eval.json", **eval_kwargs)

    if any(not (d / "eval.json").exists() for d in head_dirs.values()):
        timed("eval", eval_heads)

    # 5. exact metrics, oracle, frontier tests, report
    def report() -> Path:
        from ..evaluation.exact import reference_paths, success_probability
        from ..heads.logitmlp.oracle import oracle_position_warps

        base = load_base()
        paths = reference_paths(base, tokenizer, test)
        exact_temperatures = {
            t: success_probability(paths.base_logits / t, paths.targets) for t in config.temperatures
        }
        heads: dict[str, dict[str, Any]] = {}
        for recipe, seed in runs:
            head_dir = head_dirs[(recipe.name, seed)]
            model = DecodingHeadForCausalLM.from_pretrained(head_dir, base_model=base).eval()
            head_paths = reference_paths(model, tokenizer, test)
            heads[f"{recipe.name}/seed{seed}"] = {
                "recipe": dataclasses.asdict(dataclasses.replace(recipe, train_steps=config.train_steps(recipe))),
                "seed": seed,
                "sampled": EvalResults.load(head_dir / "eval.json")["head"],
                "q": success_probability(head_paths.head_logits, head_paths.targets),
                "effective_temperature": _effective_temperatures(head_paths.head_logits, head_paths.base_logits),
                "decisions": {k: v.mean(0).tolist() for k, v in (head_paths.decisions or {}).items()},
            }
        oracles = {}
        for objective in ("best@k", "mean_accuracy"):
            for bound in sorted({BRANCHING_RECIPES[r].slope_bound for r in config.recipes}):
                oracle = oracle_position_warps(
                    paths.base_logits, paths.targets, objective, k=config.n_samples, slope_bound=bound
                )
                oracles[f"{objective}, B={bound:g}"] = {
                    "q": oracle.q,
                    "s1": oracle.s1.tolist(),
                    "s2": oracle.s2.tolist(),
                    "u": oracle.u.tolist(),
                    "effective_temperature": _effective_temperatures(oracle.sampling_logits, paths.base_logits),
                }
        fit = json.loads((base_dir / "fit.json").read_text()) if (base_dir / "fit.json").exists() else None
        return write_branching_results(
            root,
            config,
            task,
            sweep=sweep,
            exact_temperatures=exact_temperatures,
            heads=heads,
            oracles=oracles,
            base_fit=fit,
            timings=timings,
        )

    return timed("report", report)
