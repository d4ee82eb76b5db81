"""``logitmlp eval``: sample decoding policies side by side and print their Table-1 metrics."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.policies import parse_policy
from ..evaluation.runner import evaluate
from .base import Command
from .options import (
    add_evaluation_options,
    dataset_from_args,
    evaluation_settings,
    load_base,
    n_test_problems,
    print_settings,
)


DESCRIPTION = """\
n samples per problem from each decoding policy (a temperature, a head repo, a baseline), graded with math-verify;
prints best@k, mean accuracy, worst@k, answer entropy, uniq/k, accuracy std and maj@k with bootstrap CIs, and writes
results.json (and rollouts.jsonl with --save-rollouts) to --output-dir.

Policies (repeat --policy):
  temperature:T[:top_p=P,top_k=K,min_p=M]   the base at a fixed temperature, optionally truncated
  head:DIR_OR_HUB_ID                        a decoding head repo on the base
  baseline:NAME[:key=value,...]             a baseline sampler (entropy_guided, annealed, multi_temperature)

Example:
  logitmlp eval --policy temperature:0.7 --policy head:outputs/demo-head --n-problems 50

Defaults (samples, completion budget, seed, ...) are the ones `logitmlp sweep` and `logitmlp reproduce` use; the
first line of the output lists them.
"""


class EvalCommand(Command):
    def __init__(self) -> None:
        super().__init__(
            "eval",
            "n samples per problem from decoding policies (temperature, heads, baselines): Table-1 metrics",
            DESCRIPTION,
        )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--policy",
            action="append",
            dest="policies",
            default=None,
            metavar="SPEC",
            help="decoding policy, repeatable (see above; default: temperature:1.0)",
        )
        add_evaluation_options(parser)
        parser.add_argument("--output-dir", type=Path, default=Path("outputs/eval"), help="where results go")
        parser.add_argument("--save-rollouts", action="store_true", help="also write rollouts.jsonl")

    def run(self, args: argparse.Namespace) -> int:
        policies = [parse_policy(p) for p in (args.policies or ["temperature:1.0"])]
        settings = evaluation_settings(args)
        print_settings(
            dataset=args.dataset,
            n_problems=n_test_problems(args) or "all",
            n_samples=settings.n_samples,
            max_new_tokens=settings.max_new_tokens,
            seed=settings.seed,
            batch_size=settings.batch_size,
            n_resamples=settings.n_resamples,
            no_answer=settings.no_answer,
            policies=[p.name for p in policies],
        )
        print(f"Loading {args.base_model or 'the embedded SmolLM2-135M-Instruct'} ...", flush=True)
        model, tokenizer = load_base(args.base_model, args.dtype, args.device)
        dataset = dataset_from_args(args)
        print(
            f"{len(dataset)} problems from {args.dataset}, {settings.n_samples} samples each, {len(policies)} policies",
            flush=True,
        )
        output_dir = Path(args.output_dir)
        results = evaluate(
            model,
            tokenizer,
            dataset,
            policies,
            **settings.evaluate_kwargs(),
            rollouts_path=output_dir / "rollouts.jsonl" if args.save_rollouts else None,
            results_path=output_dir / "results.json",
            config={"dataset": args.dataset, "command": "eval"},
        )
        print()
        print(results.format_table())
        print(
            f"\nResults written to {output_dir / 'results.json'}"
            + (f" and {output_dir / 'rollouts.jsonl'}" if args.save_rollouts else "")
        )
        return 0
