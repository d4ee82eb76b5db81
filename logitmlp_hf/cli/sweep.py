"""``logitmlp sweep``: GLOBAL-T*, the best fixed temperature of the base, and the best@1-vs-best@k plot."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.policies import DecodingPolicy
from ..evaluation.results import EvalResults
from ..evaluation.runner import evaluate
from ..evaluation.settings import DEFAULT_SETTINGS
from ..evaluation.sweep import SELECTION_METRICS, global_temperature_sweep, pareto_plot
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
Samples the base at every temperature of --temperatures on validation problems (held out before the test problems),
picks GLOBAL-T* by --select-by, reports it on the test problems, and draws the best@1-vs-best@k Pareto plot. Heads
given with --head are evaluated on the same test problems and drawn as markers. Writes sweep.json and pareto.png.

Example:
  logitmlp sweep --temperatures 0.4 0.7 1.0 --n-validation 32 --n-problems 100

Defaults (grid, validation and test sizes, samples, completion budget, seed) are the ones `logitmlp eval` and
`logitmlp reproduce` use; the first line of the output lists them.
"""


class SweepCommand(Command):
    def __init__(self) -> None:
        super().__init__(
            "sweep",
            "GLOBAL-T*: best fixed temperature on validation, reported on test, with the Pareto plot",
            DESCRIPTION,
        )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--temperatures",
            type=float,
            nargs="+",
            default=list(DEFAULT_SETTINGS.temperatures),
            help="the temperature grid",
        )
        parser.add_argument(
            "--select-by",
            choices=SELECTION_METRICS,
            default=DEFAULT_SETTINGS.select_by,
            help="validation metric that picks T*",
        )
        parser.add_argument(
            "--n-validation",
            type=int,
            default=DEFAULT_SETTINGS.n_validation,
            help="validation problems (held out before the test problems)",
        )
        parser.add_argument(
            "--head",
            action="append",
            default=[],
            dest="heads",
            metavar="HEAD",
            help="head repo (dir or Hub id) evaluated on test and drawn as a marker; repeatable",
        )
        parser.add_argument(
            "--sweep-on-test",
            action="store_true",
            help="also run every temperature on test, so the plot compares heads on the same problems",
        )
        add_evaluation_options(parser)
        parser.add_argument("--output-dir", type=Path, default=Path("outputs/sweep"), help="where results go")

    def run(self, args: argparse.Namespace) -> int:
        args.temperatures = tuple(args.temperatures)
        settings = evaluation_settings(args)
        print_settings(
            dataset=args.dataset,
            n_problems=n_test_problems(args) or "all",
            n_validation=settings.n_validation,
            n_samples=settings.n_samples,
            max_new_tokens=settings.max_new_tokens,
            temperatures=settings.temperatures,
            select_by=settings.select_by,
            seed=settings.seed,
            batch_size=settings.batch_size,
            n_resamples=settings.n_resamples,
            no_answer=settings.no_answer,
        )
        print(f"Loading {args.base_model or 'the embedded SmolLM2-135M-Instruct'} ...", flush=True)
        model, tokenizer = load_base(args.base_model, args.dtype, args.device)
        validation = dataset_from_args(args, split="validation", n_validation=args.n_validation)
        test = dataset_from_args(args, split="test", n_validation=args.n_validation)
        if len(validation) == 0:
            raise SystemExit("the validation split is empty: pass --n-validation > 0")
        common = dict(
            **settings.evaluate_kwargs(),
            config={"dataset": args.dataset, "command": "sweep"},
        )
        print(
            f"Sweeping T in {args.temperatures} on {len(validation)} validation problems "
            f"({settings.n_samples} samples each) ...",
            flush=True,
        )
        # Heads are plotted against the sweep, so both must be measured on the same (test) problems.
        sweep_on_test = args.sweep_on_test or bool(args.heads)
        sweep = global_temperature_sweep(
            model,
            tokenizer,
            validation,
            test,
            args.temperatures,
            selection_metric=args.select_by,
            sweep_on_test=sweep_on_test,
            **common,
        )
        if args.heads:
            heads = [DecodingPolicy(name=f"head:{h}", kind="head", head=h) for h in args.heads]
            head_results = evaluate(model, tokenizer, test, heads, **common)
            sweep.markers = dict(head_results.policies)
        output_dir = Path(args.output_dir)
        sweep.save(output_dir / "sweep.json")
        pareto_plot(sweep, path=output_dir / "pareto.png")

        print(f"\nValidation (selection by {args.select_by}):")
        print(sweep.validation.format_table())
        print(f"\nGLOBAL-T*: T* = {sweep.best_temperature:g}. Test split ({len(test)} problems):")
        test_table = EvalResults(sweep.test.config, {**sweep.test.policies, **sweep.markers})
        print(test_table.format_table())
        print(f"\nWritten: {output_dir / 'sweep.json'}, {output_dir / 'pareto.png'}")
        return 0
