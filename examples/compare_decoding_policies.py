"""Train and compare the other learned decoding policies on the embedded default (SmolLM2-135M, arithmetic).

Same problems, seeds, budget and evaluation as the main job (``logitmlp reproduce``), so the numbers sit next to
its Table 1 (``examples/results/``):

1. an AutoDeco head (per-token temperature + top-p), pass@1 (DAPO), with :class:`LogitMLPGRPOTrainer`;
2. the token-level decoding adapter ({greedy, T=0.5, 1.0, 1.25}, budget-conditioned), pass@1, same trainer;
3. the sequence-level adapter: greedy coverage selection of 3 strategies from a temperature × top-p pool
   on the validation split, then the contextual bandit on 64 training problems;
4. all three, and GLOBAL-T* (T = 0.1, the main job's selection) for paired differences, on the 100 test problems
   × 8 samples; a per-token analysis of the two per-token heads.

Run: ``python examples/compare_decoding_policies.py [--quick] [--output-dir DIR]`` (about 30 min on 2 CPU cores;
``--quick`` runs every step in a few minutes on tiny sets). Stages whose output exists are skipped.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from logitmlp_hf import AutoDecoForCausalLM, DecodingAdapterForCausalLM, fit_sequence_adapter
from logitmlp_hf.analysis.per_token import analyze_rollouts, load_rollouts
from logitmlp_hf.evaluation.metrics import paired_difference
from logitmlp_hf.evaluation.policies import DecodingPolicy
from logitmlp_hf.evaluation.results import EvalResults, format_metrics_table
from logitmlp_hf.evaluation.runner import evaluate
from logitmlp_hf.heads.sequence_adapter.strategy_pool import candidate_pool
from logitmlp_hf.hub.offline_model import load_embedded_model
from logitmlp_hf.reproduce.config import ReproduceConfig
from logitmlp_hf.reproduce.pipeline import problem_sets, train_head


GLOBAL_T_STAR = 0.1  # the main job's validation-selected temperature (examples/results/README.md)
NAMES = {
    "autodeco": "AutoDeco (T + top-p, pass@1)",
    "adapter": "token adapter (pass@1, budget)",
    "sequence": "sequence adapter (bandit)",
}


def main(argv: list[str] | None = None) -> EvalResults:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sets, every step, a few minutes")
    parser.add_argument("--output-dir", type=Path, default=None)
    parser.add_argument("--train-steps", type=int, default=None, help="optimiser steps per head (default: main job's)")
    args = parser.parse_args(argv)
    config = ReproduceConfig.quick() if args.quick else ReproduceConfig()
    if args.train_steps is not None:
        config.train_steps = args.train_steps
    out = args.output_dir or Path("outputs/compare-quick" if args.quick else "outputs/compare")
    out.mkdir(parents=True, exist_ok=True)
    train, validation, test = problem_sets(config)
    eval_kwargs = dict(
        n_samples=config.n_samples,
        batch_size=config.eval_batch_size,
        seed=config.seed,
        max_new_tokens=config.max_new_tokens,
        n_resamples=config.n_resamples,
        progress=False,
    )
    timings: dict[str, float] = {}

    def stage(name: str, done: Path, run) -> None:
        if done.exists():
            print(f"[{name}] done already ({done})")
            return
        start = time.perf_counter()
        run()
        timings[name] = round(time.perf_counter() - start, 1)
        print(f"[{name}] {timings[name]} s")

    def train_autodeco() -> None:
        base, _ = load_embedded_model()
        train_head(config, AutoDecoForCausalLM.from_base_model(base), train, "pass@1", out / "autodeco")

    def train_adapter() -> None:
        base, _ = load_embedded_model()
        model = DecodingAdapterForCausalLM.from_base_model(base, budget_conditioning=True)
        train_head(config, model, train, "pass@1", out / "adapter")

    def fit_sequence() -> None:
        base, tokenizer = load_embedded_model()
        # 7 strategies: what 2 CPU cores can sample on the validation split in ~5 min (the source's pool: 180)
        pool = candidate_pool(temperatures=(0.0, 0.1, 0.5, 1.0), top_ks=(None,), top_ps=(None, 0.9), min_ps=(None,))
        n_fit = min(len(train), 8 if args.quick else 64)
        fit = fit_sequence_adapter(
            base,
            tokenizer,
            train.select(range(n_fit)),
            validation,
            pool,
            set_size=3,
            budgets=(1, 4, config.n_samples),
            n_samples=config.n_samples,
            max_new_tokens=config.max_new_tokens,
            bandit_steps=50 if args.quick else 500,
            seed=config.seed,
            eval_kwargs={"batch_size": config.eval_batch_size, "n_resamples": 50},
        )
        fit.model.save_pretrained(
            out / "sequence", metrics={k: round(v, 4) for k, v in fit.train_values.items() if isinstance(v, float)}
        )
        (out / "sequence" / "fit_summary.json").write_text(json.dumps(fit.summary(), indent=1, default=str))

    def evaluate_all() -> None:
        base, tokenizer = load_embedded_model()
        policies = [DecodingPolicy(name=f"GLOBAL-T* (base, T={GLOBAL_T_STAR})", temperature=GLOBAL_T_STAR)]
        policies += [DecodingPolicy(name=NAMES[key], kind="head", head=str(out / key)) for key in NAMES]
        evaluate(
            base,
            tokenizer,
            test,
            policies,
            rollouts_path=out / "rollouts.jsonl",
            results_path=out / "results.json",
            **eval_kwargs,
        )

    def analyse() -> None:
        base, tokenizer = load_embedded_model()
        from logitmlp_hf import load_decoding_head_model

        rollouts = load_rollouts(out / "rollouts.jsonl")
        summaries = {}
        for key in ("autodeco", "adapter"):
            model = load_decoding_head_model(out / key, base_model=base)
            mine = [r for r in rollouts if r["policy"] == NAMES[key]][: 8 * config.n_samples]
            if key == "adapter":  # budget-conditioned: analysis needs the budget left at each position
                continue
            summaries[key] = analyze_rollouts(model, tokenizer, mine).summary()
        (out / "analysis.json").write_text(json.dumps(summaries, indent=1))

    stage("train-autodeco", out / "autodeco" / "autodeco_head.safetensors", train_autodeco)
    stage("train-adapter", out / "adapter" / "decoding_adapter.safetensors", train_adapter)
    stage("fit-sequence-adapter", out / "sequence" / "sequence_adapter.safetensors", fit_sequence)
    stage("evaluate", out / "results.json", evaluate_all)
    stage("analyse", out / "analysis.json", analyse)

    results = EvalResults.load(out / "results.json")
    reference = next(iter(results.policies.values()))
    lines = [format_metrics_table(results), "", f"Paired differences vs {reference.name}:"]
    for name, policy in list(results.policies.items())[1:]:
        for metric in ("best@k", "mean_accuracy"):
            diff = paired_difference(
                [p["correct"] for p in policy.problems],
                [p["correct"] for p in reference.problems],
                metric,
                n_resamples=config.n_resamples,
                seed=config.seed,
            )
            lines.append(f"  {name:34s} {metric:14s} {diff.value:+.3f} [{diff.ci_low:+.3f}, {diff.ci_high:+.3f}]")
    report = "\n".join(lines)
    (out / "comparison.txt").write_text(report + "\n")
    timings_path = out / "timings.json"
    previous = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    timings_path.write_text(json.dumps({**previous, **timings}, indent=1))
    print(report)
    return results


if __name__ == "__main__":
    main()
