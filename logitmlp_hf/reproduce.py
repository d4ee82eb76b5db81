"""`logitmlp reproduce`: the main job. Train a pass@1 and a pass@k head on the embedded SmolLM2-135M-Instruct and
compare them with GLOBAL-T* on held-out arithmetic problems, in the shape of the source's Table 1.

Everything runs offline on CPU (or a GPU when there is one) in one process, in stages that each write their outputs
under ``--output-dir``:

1. ``train-pass1`` / ``train-passk``: :class:`~logitmlp_hf.LogitMLPGRPOTrainer` (DAPO; pass@1 or the analytical
   pass@k advantage) on the training problems; head-only repos in ``heads/pass1`` and ``heads/passk``.
2. ``sweep``: GLOBAL-T* — every temperature on the validation problems, T* = the best by ``--select-by``; every
   temperature also on the test problems, for the best@1-vs-best@8 Pareto plot.
3. ``eval``: the heads on the test problems, ``--n-samples`` samples each, rollouts saved.
4. ``analyze``: per-token analysis of each head on its own test rollouts (KL, T* histogram, top-6, words).
5. ``lora`` (``--with-lora``): the stacking demonstration — a LoRA trained with TRL's own ``GRPOTrainer`` on the
   same problems, its temperature sweep on test, and a pass@k head trained on top of it.
6. ``report``: ``results.md`` (Table 1 with bootstrap CIs, paired differences against GLOBAL-T*, plots, command,
   versions, machine) and ``results.json``.

The three problem sets are disjoint: test = the first ``--n-test`` problems of the seeded stream, validation = the
next ``--n-validation``, training = the rest (``--n-train``). A stage whose output exists is skipped, so a run that
was interrupted continues where it stopped (training resumes from its newest complete checkpoint); ``--overwrite``
starts afresh.

    logitmlp reproduce                      # the full job (~30 min on 2 CPU cores)
    logitmlp reproduce --quick              # a few-minute smoke run of every stage (what CI runs)
    logitmlp reproduce --with-lora          # plus the LoRA stacking demonstration
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .head_repo import HEAD_WEIGHTS_NAME
from .reproduce_report import HEAD_POLICY_NAMES, STACKED_NAME, write_results

__all__ = ["ReproduceConfig", "add_reproduce_arguments", "reproduce", "run_reproduce"]

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
            output_dir="outputs/reproduce-quick", n_train=16, n_validation=6, n_test=8, n_samples=4,
            temperatures=(0.4, 1.0), max_new_tokens=24, train_steps=2, num_generations=4, eval_batch_size=8,
            n_resamples=200, n_analysis_problems=4, lora_steps=2,
        )
        values.update(overrides)
        return cls(**values)

    def __post_init__(self) -> None:
        self.temperatures = tuple(sorted({float(t) for t in self.temperatures}))
        total = self.n_train + self.n_validation + self.n_test
        if total > N_ARITHMETIC_PROBLEMS:
            raise ValueError(f"n_train + n_validation + n_test = {total}, but the arithmetic task (a + b, operands "
                             f"0..20) has only {N_ARITHMETIC_PROBLEMS} distinct problems")
        if min(self.n_train, self.n_validation, self.n_test) < 1:
            raise ValueError("n_train, n_validation and n_test must all be >= 1")
        if not 1 <= self.pass_k <= self.num_generations:
            raise ValueError(f"pass_k must be in [1, num_generations={self.num_generations}], got {self.pass_k}")
        if self.select_by not in ("mean_accuracy", "best@k"):
            raise ValueError(f"select_by must be 'mean_accuracy' or 'best@k', got {self.select_by!r}")

    @property
    def path(self) -> Path:
        return Path(self.output_dir)


# ---------------------------------------------------------------------------------------------------------- data
def problem_sets(config: ReproduceConfig):
    """(train, validation, test) arithmetic datasets, disjoint, exactly as ``logitmlp eval``/``sweep`` split them."""
    from .data import ArithmeticTaskConfig, make_arithmetic_train_validation_test

    task = ArithmeticTaskConfig(seed=config.seed, max_operand=20, n_operands=2)
    return make_arithmetic_train_validation_test(task, config.n_train, config.n_validation, config.n_test)


# ------------------------------------------------------------------------------------------------------ training
def training_arguments(config: ReproduceConfig, output_dir: Path, objective: str, max_steps: int | None = None):
    """The heads' `LogitMLPGRPOConfig` (the same recipe as ``trainers/configs/smollm2_arith_*.yaml``)."""
    from .grpo_config import LogitMLPGRPOConfig

    return LogitMLPGRPOConfig(
        output_dir=str(output_dir),
        objective=objective,
        pass_k=config.pass_k,
        num_generations=config.num_generations,
        per_device_train_batch_size=config.num_generations * config.prompts_per_step,
        max_completion_length=config.max_new_tokens,
        temperature=1.0,
        learning_rate=config.learning_rate,
        lr_scheduler_type="constant",
        max_steps=max_steps or config.train_steps,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        dynamic_sampling=True,
        max_dynamic_sampling_rounds=2,
        logging_steps=1,
        save_strategy="steps",
        save_steps=10,
        save_total_limit=1,
        report_to=["tensorboard"],
        seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
        head_slope_bound=config.slope_bound,
    )


def _write_log_history(trainer, run_dir: Path) -> None:
    (run_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1), encoding="utf-8")


def train_head(config: ReproduceConfig, model: Any, train_dataset, objective: str, head_dir: Path) -> Path:
    """Train one head (resuming from ``head_dir``'s newest checkpoint) and save it there as a head-only repo."""
    from .checkpoints import last_complete_checkpoint
    from .grpo_trainer import LogitMLPGRPOTrainer
    from .rewards import MathVerifyReward

    trainer = LogitMLPGRPOTrainer(
        model=model, reward_funcs=MathVerifyReward(), args=training_arguments(config, head_dir, objective),
        train_dataset=train_dataset,
    )
    weights_name = trainer.accelerator.unwrap_model(trainer.model).decoding_head.weights_name
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(head_dir, weights_name))
    trainer.save_model()
    trainer.create_model_card()
    _write_log_history(trainer, head_dir)
    return head_dir


def train_lora(config: ReproduceConfig, train_dataset, lora_dir: Path) -> Path:
    """The "full RLVR" stand-in at this scale: TRL's own ``GRPOTrainer`` with a LoRA (all linear layers), DAPO loss."""
    from peft import LoraConfig
    from peft.utils import SAFETENSORS_WEIGHTS_NAME
    from trl import GRPOConfig, GRPOTrainer

    from .checkpoints import last_complete_checkpoint
    from .offline_model import load_embedded_model
    from .rewards import MathVerifyReward

    base, tokenizer = load_embedded_model()
    args = GRPOConfig(
        output_dir=str(lora_dir), num_generations=config.num_generations,
        per_device_train_batch_size=config.num_generations * config.prompts_per_step,
        max_completion_length=config.max_new_tokens, temperature=1.0, learning_rate=config.lora_learning_rate,
        lr_scheduler_type="constant", max_steps=config.lora_steps, loss_type="dapo", epsilon=0.2,
        epsilon_high=0.28, beta=0.0, logging_steps=1, save_strategy="steps", save_steps=10, save_total_limit=1,
        report_to=["tensorboard"], seed=config.seed, use_cpu=not torch.cuda.is_available(), disable_tqdm=False,
    )
    trainer = GRPOTrainer(
        model=base, reward_funcs=MathVerifyReward(), args=args, train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=config.lora_rank, lora_alpha=2 * config.lora_rank, target_modules="all-linear",
                               task_type="CAUSAL_LM"),
    )
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(lora_dir, SAFETENSORS_WEIGHTS_NAME))
    trainer.save_model()
    _write_log_history(trainer, lora_dir)
    return lora_dir


# ------------------------------------------------------------------------------------------------------- stages
@dataclass
class _Stage:
    name: str
    done_marker: Path
    run: Callable[[], None]
    description: str


def _evaluate_kwargs(config: ReproduceConfig, progress: bool) -> dict[str, Any]:
    return dict(n_samples=config.n_samples, batch_size=config.eval_batch_size, seed=config.seed,
                max_new_tokens=config.max_new_tokens, n_resamples=config.n_resamples, progress=progress)


class _Paths:
    """Where each stage writes, under the output directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.pass1, self.passk = root / "heads" / "pass1", root / "heads" / "passk"
        self.sweep = root / "sweep" / "sweep.json"
        self.eval, self.rollouts = root / "eval" / "results.json", root / "eval" / "rollouts.jsonl"
        self.analysis = root / "analysis"
        self.lora, self.lora_head = root / "lora" / "adapter", root / "lora" / "head-passk"
        self.lora_eval = root / "lora" / "results.json"



def reproduce(config: ReproduceConfig, overwrite: bool = False, command: str | None = None) -> Path:
    """Run every stage of the main job (skipping finished ones) and write the report.

    Args:
        config ([`ReproduceConfig`]): What to run.
        overwrite (`bool`, *optional*, defaults to `False`): Delete ``config.output_dir`` first.
        command (`str`, *optional*): The command line, recorded in the report.

    Returns:
        `Path`: ``results.md``.
    """
    from peft.utils import SAFETENSORS_WEIGHTS_NAME

    from .evaluation import DecodingPolicy, EvalResults, evaluate
    from .offline_model import EMBEDDED_MODEL_ID, load_embedded_model
    from .temperature_sweep import SweepResults, global_temperature_sweep, temperature_policy

    root = config.path
    if overwrite and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = _Paths(root)
    progress = sys.stderr.isatty()
    (root / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1), encoding="utf-8")
    train, validation, test = problem_sets(config)
    timings_path = root / "timings.json"
    timings: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    def head_policy(key: str) -> DecodingPolicy:
        return DecodingPolicy(name=HEAD_POLICY_NAMES[key], kind="head", head=str(getattr(paths, key)))

    def stage_train(key: str, objective: str) -> Callable[[], None]:
        return lambda: train_head(config, EMBEDDED_MODEL_ID, train, objective, getattr(paths, key))

    def stage_sweep() -> None:
        base, tokenizer = load_embedded_model()
        sweep = global_temperature_sweep(
            base, tokenizer, validation, test, config.temperatures, selection_metric=config.select_by,
            sweep_on_test=True, **_evaluate_kwargs(config, progress),
        )
        sweep.save(paths.sweep)

    def stage_eval() -> None:
        base, tokenizer = load_embedded_model()
        evaluate(base, tokenizer, test, [head_policy("pass1"), head_policy("passk")],
                 rollouts_path=paths.rollouts, results_path=paths.eval, **_evaluate_kwargs(config, progress))

    def stage_analyze() -> None:
        from .analysis import analyze_rollouts, load_rollouts
        from .analysis_report import write_report
        from .modeling_logitmlp import LogitMLPForCausalLM

        base, tokenizer = load_embedded_model()
        rollouts = load_rollouts(paths.rollouts)
        for key in ("passk", "pass1"):  # pass1 last: its summary.json is the stage's done marker
            model = LogitMLPForCausalLM.from_pretrained(getattr(paths, key), base_model=base).eval()
            own = [r for r in rollouts if r.get("policy") == HEAD_POLICY_NAMES[key]
                   and r["problem_id"] < config.n_analysis_problems]
            analysis = analyze_rollouts(model, tokenizer, own)
            write_report(analysis, tokenizer, paths.analysis / key, title=f"LogitMLP analysis: {HEAD_POLICY_NAMES[key]}",
                         source=f"{paths.rollouts} (policy {HEAD_POLICY_NAMES[key]!r})")

    def stage_lora_train() -> None:
        train_lora(config, train, paths.lora)

    def stage_lora_head() -> None:
        train_head(config, str(paths.lora), train, "pass@k", paths.lora_head)

    def stage_lora_eval() -> None:
        from transformers import AutoTokenizer

        from .base_loading import load_base_model

        # TRL saved the LoRA's tokenizer next to the adapter: no second copy of the base just for the tokenizer.
        tokenizer = AutoTokenizer.from_pretrained(paths.lora, padding_side="left")
        lora_base = load_base_model(str(paths.lora)).eval()
        policies = [dataclasses.replace(temperature_policy(t), name=f"LoRA T={t:g}") for t in config.temperatures]
        policies.append(DecodingPolicy(name=STACKED_NAME, kind="head", head=str(paths.lora_head)))
        evaluate(lora_base, tokenizer, test, policies, results_path=paths.lora_eval,
                 **_evaluate_kwargs(config, progress))

    stages = [
        _Stage("train-pass1", paths.pass1 / HEAD_WEIGHTS_NAME, stage_train("pass1", "pass@1"),
               f"train the pass@1 head ({config.train_steps} steps)"),
        _Stage("train-passk", paths.passk / HEAD_WEIGHTS_NAME, stage_train("passk", "pass@k"),
               f"train the pass@{config.pass_k} head ({config.train_steps} steps)"),
        _Stage("sweep", paths.sweep, stage_sweep,
               f"GLOBAL-T*: {len(config.temperatures)} temperatures on {config.n_validation} validation and "
               f"{config.n_test} test problems"),
        _Stage("eval", paths.eval, stage_eval, f"the heads on {config.n_test} test problems × {config.n_samples}"),
        _Stage("analyze", paths.analysis / "pass1" / "summary.json", stage_analyze,
               f"per-token analysis of both heads on their rollouts of {config.n_analysis_problems} test problems"),
    ]
    if config.with_lora:
        stages += [
            _Stage("lora-train", paths.lora / SAFETENSORS_WEIGHTS_NAME, stage_lora_train,
                   f"TRL GRPOTrainer + LoRA r={config.lora_rank} ({config.lora_steps} steps)"),
            _Stage("lora-head", paths.lora_head / HEAD_WEIGHTS_NAME, stage_lora_head,
                   f"a pass@{config.pass_k} head on the LoRA ({config.train_steps} steps)"),
            _Stage("lora-eval", paths.lora_eval, stage_lora_eval, "the LoRA's temperature sweep and the stacked head"),
        ]
    for i, stage in enumerate(stages, start=1):
        if stage.done_marker.exists():
            print(f"[{i}/{len(stages)}] {stage.name}: done already ({stage.done_marker})", flush=True)
            continue
        print(f"[{i}/{len(stages)}] {stage.name}: {stage.description} ...", flush=True)
        start = time.perf_counter()
        stage.run()
        timings[stage.name] = time.perf_counter() - start
        timings_path.write_text(json.dumps(timings, indent=1), encoding="utf-8")
        print(f"[{i}/{len(stages)}] {stage.name}: {timings[stage.name]:.0f} s", flush=True)

    sweep = SweepResults.load(paths.sweep)
    heads = EvalResults.load(paths.eval)
    lora = EvalResults.load(paths.lora_eval) if config.with_lora else None
    return write_results(config, paths, sweep, heads, lora, timings, command=command)


# ---------------------------------------------------------------------------------------------------------- CLI
def add_reproduce_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``logitmlp reproduce``: every :class:`ReproduceConfig` field, plus ``--quick``."""
    parser.add_argument("--quick", action="store_true",
                        help="a few-minute smoke run of every stage (tiny problem sets, 2 steps); measures nothing")
    parser.add_argument("--overwrite", action="store_true", help="delete --output-dir first instead of resuming")
    for f in dataclasses.fields(ReproduceConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.type in ("bool", bool):
            parser.add_argument(flag, action="store_true", default=None)
        elif f.name == "temperatures":
            parser.add_argument(flag, type=float, nargs="+", default=None)
        else:
            kind = {"int": int, "float": float, "str": str}[str(f.type)]
            parser.add_argument(flag, type=kind, default=None, help=f"default: {f.default}")


def config_from_args(args: argparse.Namespace) -> ReproduceConfig:
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(ReproduceConfig)
                 if getattr(args, f.name, None) is not None}
    return ReproduceConfig.quick(**overrides) if args.quick else ReproduceConfig(**overrides)


def run_reproduce(args: argparse.Namespace) -> Path:
    """Run ``logitmlp reproduce`` and print the table and where everything was written."""
    config = config_from_args(args)
    command = "logitmlp " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:] else "logitmlp reproduce"
    report = reproduce(config, overwrite=args.overwrite, command=command)
    print(report.with_suffix(".txt").read_text(encoding="utf-8"))
    return report
