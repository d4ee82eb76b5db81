"""`logitmlp reproduce`: the main job. Train a pass@1 and a pass@k head on the embedded SmolLM2-135M-Instruct and
compare them with GLOBAL-T* on held-out arithmetic problems, in the shape of the source's Table 1.

Everything runs offline on CPU (or a GPU when there is one) in one process, in stages that each write their outputs
under ``--output-dir``:

1. ``train-pass1`` / ``train-passk``: :class:`~logitmlp_hf.DecodingHeadGRPOTrainer` (DAPO; pass@1 or the analytical
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

import dataclasses
import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..heads.registry import decoding_head_type
from .config import N_ARITHMETIC_PROBLEMS, ReproduceConfig, RunPaths  # noqa: F401
from .report import HEAD_POLICY_NAMES, STACKED_NAME, seed_policy_name, write_results


__all__ = ["ReproduceConfig", "reproduce"]

logger = logging.getLogger(__name__)


def problem_sets(config: ReproduceConfig):
    """(train, validation, test) arithmetic datasets, disjoint, exactly as ``logitmlp eval``/``sweep`` split them."""
    from ..tasks.data import ArithmeticTaskConfig, make_arithmetic_train_validation_test

    task = ArithmeticTaskConfig(seed=config.seed, max_operand=20, n_operands=2)
    return make_arithmetic_train_validation_test(task, config.n_train, config.n_validation, config.n_test)


# ------------------------------------------------------------------------------------------------------ training
def training_arguments(
    config: ReproduceConfig,
    output_dir: Path,
    objective: str,
    max_steps: int | None = None,
    progress: bool = True,
    seed: int | None = None,
):
    """The heads' `DecodingHeadGRPOConfig` (the same recipe as ``trainers/configs/smollm2_arith_*.yaml``), trained
    with ``seed`` (default: ``config.seed``)."""
    from ..trainer.config import DecodingHeadGRPOConfig

    return DecodingHeadGRPOConfig(
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
        # As many refill candidates as prompts, decoded in the batch's own call: on 2 CPU cores this took a step from
        # 16.1 s to 10.8 s (5 steps of train-pass1, AMD EPYC), as most batches needed a refill round before.
        dynamic_sampling_extra_prompts=config.prompts_per_step,
        logging_steps=1,
        save_strategy="steps",
        save_steps=10,
        save_total_limit=1,
        report_to=["tensorboard"],
        seed=config.seed if seed is None else seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=not progress,
        head_slope_bound=config.slope_bound,
        # The committed results and the whole recipe search were trained with TRL's generate call; the rows loop (the
        # trainer's default, 1.4x faster) draws other rollouts, hence other heads, until they are regenerated with it.
        rollout_sampler="generate",
    )


def _write_log_history(trainer, run_dir: Path) -> None:
    (run_dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1), encoding="utf-8")


def train_head(
    config: ReproduceConfig,
    model: Any,
    train_dataset,
    objective: str,
    head_dir: Path,
    run_dir: Path | None = None,
    progress: bool = True,
    seed: int | None = None,
) -> Path:
    """Train one head in ``run_dir`` (checkpoints, logs, ``log_history.json``; default ``<head_dir>-training``),
    resuming from its newest complete checkpoint, and save the head-only repo (config, weights, card) to
    ``head_dir``. ``seed``: the training seed (default: ``config.seed``)."""
    from ..tasks.rewards import MathVerifyReward
    from ..trainer.grpo_trainer import DecodingHeadGRPOTrainer

    run_dir = Path(run_dir) if run_dir is not None else head_dir.with_name(head_dir.name + "-training")
    trainer = DecodingHeadGRPOTrainer(
        model=model,
        reward_funcs=MathVerifyReward(),
        args=training_arguments(config, run_dir, objective, progress=progress, seed=seed),
        train_dataset=train_dataset,
    )
    # the newest checkpoint holding everything this run's resume reads (its rollout state included), or none
    trainer.train(resume_from_checkpoint=trainer.last_complete_checkpoint())
    trainer.save_model(str(head_dir))
    _write_log_history(trainer, run_dir)
    return head_dir


def train_lora(config: ReproduceConfig, train_dataset, lora_dir: Path) -> Path:
    """The "full RLVR" stand-in at this scale: TRL's own ``GRPOTrainer`` with a LoRA (all linear layers), DAPO loss."""
    from peft import LoraConfig
    from peft.utils import SAFETENSORS_WEIGHTS_NAME
    from trl import GRPOConfig, GRPOTrainer

    from ..hub.offline_model import load_embedded_model
    from ..tasks.rewards import MathVerifyReward
    from ..trainer.checkpoints import last_complete_checkpoint, resume_files

    base, tokenizer = load_embedded_model()
    args = GRPOConfig(
        output_dir=str(lora_dir),
        num_generations=config.num_generations,
        per_device_train_batch_size=config.num_generations * config.prompts_per_step,
        max_completion_length=config.max_new_tokens,
        temperature=1.0,
        learning_rate=config.lora_learning_rate,
        lr_scheduler_type="constant",
        max_steps=config.lora_steps,
        loss_type="dapo",
        epsilon=0.2,
        epsilon_high=0.28,
        beta=0.0,
        logging_steps=1,
        save_strategy="steps",
        save_steps=10,
        save_total_limit=1,
        report_to=["tensorboard"],
        seed=config.seed,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=False,
    )
    trainer = GRPOTrainer(
        model=base,
        reward_funcs=MathVerifyReward(),
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=config.lora_rank, lora_alpha=2 * config.lora_rank, target_modules="all-linear", task_type="CAUSAL_LM"
        ),
    )
    required = resume_files(trainer.args.world_size, scaler=getattr(trainer.accelerator, "scaler", None) is not None)
    trainer.train(resume_from_checkpoint=last_complete_checkpoint(lora_dir, SAFETENSORS_WEIGHTS_NAME, required))
    trainer.save_model()
    _write_log_history(trainer, lora_dir)
    return lora_dir


def write_evaluated_cards(config: ReproduceConfig, paths: RunPaths, results: Any, base_num_parameters: int) -> None:
    """Rewrite both heads' cards with their test results and the settings they were measured with."""
    from ..hub.model_card import write_head_card
    from ..trainer.grpo_trainer import training_config_yaml

    settings = {
        "dataset": "arithmetic (held-out test problems)",
        "problems": config.n_test,
        "samples": config.n_samples,
        "max_new_tokens": config.max_new_tokens,
        "temperature": 1.0,
        "GLOBAL-T* grid": ", ".join(f"{t:g}" for t in config.temperatures),
        "seed": config.seed,
    }
    for key, objective in (("pass1", "pass@1"), ("passk", "pass@k")):
        metrics = {  # value [95% bootstrap CI]; k is the number of samples
            name.replace("@k", f"@{config.n_samples}").replace("/k", f"/{config.n_samples}"): f"{value:.3f}"
            for name, value in results[HEAD_POLICY_NAMES[key]].metrics.items()
        }
        args = training_arguments(config, paths.training_run(key), objective)
        write_head_card(
            getattr(paths, key), base_num_parameters, metrics, settings, training_config_yaml(args, config.train_steps)
        )


# ------------------------------------------------------------------------------------------------------- stages
@dataclass
class _Stage:
    name: str
    done_marker: Path
    run: Callable[[], None]
    description: str


def _evaluate_kwargs(config: ReproduceConfig, progress: bool) -> dict[str, Any]:
    return dict(
        n_samples=config.n_samples,
        batch_size=config.eval_batch_size,
        seed=config.seed,
        max_new_tokens=config.max_new_tokens,
        n_resamples=config.n_resamples,
        progress=progress,
    )


def reproduce(
    config: ReproduceConfig,
    overwrite: bool = False,
    command: str | None = None,
    on_stage: Callable[[str], None] | None = None,
    progress: bool = True,
) -> Path:
    """Run every stage of the main job (skipping finished ones) and write the report.

    Args:
        config ([`ReproduceConfig`]): What to run.
        overwrite (`bool`, *optional*, defaults to `False`): Delete ``config.output_dir`` first.
        command (`str`, *optional*): The command line, recorded in the report.
        on_stage (`Callable[[str], None]`, *optional*): Called with a line as each stage starts and ends (the CLI
            prints them); default: the module's logger at INFO level.
        progress (`bool`, *optional*, defaults to `True`): tqdm bars with ETAs on stderr for training, evaluation
            and analysis (also when stderr is a log file; see :mod:`logitmlp_hf.progress`).

    Returns:
        `Path`: ``results.md``.
    """
    from peft.utils import SAFETENSORS_WEIGHTS_NAME

    from ..evaluation.policies import DecodingPolicy
    from ..evaluation.results import EvalResults
    from ..evaluation.runner import evaluate
    from ..evaluation.sweep import SweepResults, global_temperature_sweep, temperature_policy
    from ..hub.offline_model import EMBEDDED_MODEL_ID, load_embedded_model

    root = config.path
    if overwrite and root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    paths = RunPaths(root)
    say = on_stage or logger.info
    head_weights = decoding_head_type("logitmlp").weights_name
    (root / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1), encoding="utf-8")
    train, validation, test = problem_sets(config)
    timings_path = root / "timings.json"
    timings: dict[str, float] = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    eval_dtype = getattr(torch, config.eval_dtype)

    def head_policy(key: str) -> DecodingPolicy:
        return DecodingPolicy(name=HEAD_POLICY_NAMES[key], kind="head", head=str(getattr(paths, key)))

    def stage_train(key: str, objective: str, seed: int | None = None) -> Callable[[], None]:
        """Train head type ``key``: with ``config.seed`` (``seed=None``) or an extra training seed."""
        head_dir = getattr(paths, key) if seed is None else paths.seed_head(key, seed)
        return lambda: train_head(
            config, EMBEDDED_MODEL_ID, train, objective, head_dir, paths.training_run(key, seed), progress, seed=seed
        )

    def stage_sweep() -> None:
        base, tokenizer = load_embedded_model(dtype=eval_dtype)
        sweep = global_temperature_sweep(
            base,
            tokenizer,
            validation,
            test,
            config.temperatures,
            selection_metric=config.select_by,
            sweep_on_test=True,
            **_evaluate_kwargs(config, progress),
        )
        sweep.save(paths.sweep)

    def stage_eval() -> None:
        base, tokenizer = load_embedded_model(dtype=eval_dtype)
        results = evaluate(
            base,
            tokenizer,
            test,
            [head_policy("pass1"), head_policy("passk")],
            rollouts_path=paths.rollouts,
            results_path=paths.eval,
            **_evaluate_kwargs(config, progress),
        )
        write_evaluated_cards(config, paths, results, sum(p.numel() for p in base.parameters()))

    def stage_eval_seeds() -> None:
        base, tokenizer = load_embedded_model(dtype=eval_dtype)
        policies = [
            DecodingPolicy(name=seed_policy_name(key, seed), kind="head", head=str(paths.seed_head(key, seed)))
            for seed in config.training_seeds
            for key in ("pass1", "passk")
        ]
        evaluate(
            base,
            tokenizer,
            test,
            policies,
            results_path=paths.seed_eval(config.training_seeds),
            **_evaluate_kwargs(config, progress),
        )

    def stage_analyze() -> None:
        from ..analysis.per_token import analyze_rollouts, load_rollouts
        from ..analysis.report import write_report
        from ..modeling import load_decoding_head_model

        base, tokenizer = load_embedded_model(dtype=eval_dtype)
        rollouts = load_rollouts(paths.rollouts)
        for key in ("passk", "pass1"):  # pass1 last: its summary.json is the stage's done marker
            model = load_decoding_head_model(getattr(paths, key), base_model=base).eval()
            own = [
                r
                for r in rollouts
                if r.get("policy") == HEAD_POLICY_NAMES[key] and r["problem_id"] < config.n_analysis_problems
            ]
            analysis = analyze_rollouts(model, tokenizer, own, progress=progress)
            write_report(
                analysis,
                tokenizer,
                paths.analysis / key,
                title=f"LogitMLP analysis: {HEAD_POLICY_NAMES[key]}",
                source=f"{paths.rollouts} (policy {HEAD_POLICY_NAMES[key]!r})",
            )

    def stage_lora_train() -> None:
        train_lora(config, train, paths.lora)

    def stage_lora_head() -> None:
        train_head(config, str(paths.lora), train, "pass@k", paths.lora_head, paths.training / "lora-head", progress)

    def stage_lora_eval() -> None:
        from transformers import AutoTokenizer

        from ..hub.base_loading import load_base_model

        # TRL saved the LoRA's tokenizer next to the adapter: no second copy of the base just for the tokenizer.
        tokenizer = AutoTokenizer.from_pretrained(paths.lora, padding_side="left")
        lora_base = load_base_model(str(paths.lora), dtype=eval_dtype).eval()
        policies = [dataclasses.replace(temperature_policy(t), name=f"LoRA T={t:g}") for t in config.temperatures]
        policies.append(DecodingPolicy(name=STACKED_NAME, kind="head", head=str(paths.lora_head)))
        evaluate(
            lora_base, tokenizer, test, policies, results_path=paths.lora_eval, **_evaluate_kwargs(config, progress)
        )

    stages = [
        _Stage(
            "train-pass1",
            paths.pass1 / head_weights,
            stage_train("pass1", "pass@1"),
            f"train the pass@1 head ({config.train_steps} steps)",
        ),
        _Stage(
            "train-passk",
            paths.passk / head_weights,
            stage_train("passk", "pass@k"),
            f"train the pass@{config.pass_k} head ({config.train_steps} steps)",
        ),
        *(
            _Stage(
                f"train-{key}-seed{seed}",
                paths.seed_head(key, seed) / head_weights,
                stage_train(key, objective, seed),
                f"train the {objective} head with training seed {seed} ({config.train_steps} steps)",
            )
            for seed in config.training_seeds
            for key, objective in (("pass1", "pass@1"), ("passk", "pass@k"))
        ),
        _Stage(
            "sweep",
            paths.sweep,
            stage_sweep,
            f"GLOBAL-T*: {len(config.temperatures)} temperatures on {config.n_validation} validation and "
            f"{config.n_test} test problems",
        ),
        _Stage("eval", paths.eval, stage_eval, f"the heads on {config.n_test} test problems × {config.n_samples}"),
        *(
            [
                _Stage(
                    "eval-seeds",
                    paths.seed_eval(config.training_seeds),
                    stage_eval_seeds,
                    f"the heads of training seeds {', '.join(map(str, config.training_seeds))} on the same problems "
                    "and samples",
                )
            ]
            if config.training_seeds
            else []
        ),
        _Stage(
            "analyze",
            paths.analysis / "pass1" / "summary.json",
            stage_analyze,
            f"per-token analysis of both heads on their rollouts of {config.n_analysis_problems} test problems",
        ),
    ]
    if config.with_lora:
        stages += [
            _Stage(
                "lora-train",
                paths.lora / SAFETENSORS_WEIGHTS_NAME,
                stage_lora_train,
                f"TRL GRPOTrainer + LoRA r={config.lora_rank} ({config.lora_steps} steps)",
            ),
            _Stage(
                "lora-head",
                paths.lora_head / head_weights,
                stage_lora_head,
                f"a pass@{config.pass_k} head on the LoRA ({config.train_steps} steps)",
            ),
            _Stage("lora-eval", paths.lora_eval, stage_lora_eval, "the LoRA's temperature sweep and the stacked head"),
        ]
    for i, stage in enumerate(stages, start=1):
        if stage.done_marker.exists():
            say(f"[{i}/{len(stages)}] {stage.name}: done already ({stage.done_marker})")
            continue
        say(f"[{i}/{len(stages)}] {stage.name}: {stage.description} ...")
        start = time.perf_counter()
        stage.run()
        timings[stage.name] = time.perf_counter() - start
        timings_path.write_text(json.dumps(timings, indent=1), encoding="utf-8")
        say(f"[{i}/{len(stages)}] {stage.name}: {timings[stage.name]:.0f} s")

    sweep = SweepResults.load(paths.sweep)
    heads = EvalResults.load(paths.eval)
    seed_heads = EvalResults.load(paths.seed_eval(config.training_seeds)) if config.training_seeds else None
    lora = EvalResults.load(paths.lora_eval) if config.with_lora else None
    return write_results(config, paths, sweep, heads, lora, timings, command=command, seed_heads=seed_heads)
