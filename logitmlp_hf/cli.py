"""The ``logitmlp`` console script. Subcommands: ``demo``, ``eval``, ``sweep``, ``analyze``."""

from __future__ import annotations

import argparse
import logging
import sys

from transformers.utils import logging as hf_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logitmlp", description="LogitMLP heads for transformers models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show info-level logs")
    commands = parser.add_subparsers(dest="command", required=True)

    from . import demo

    demo_parser = commands.add_parser(
        "demo", help="a head on the embedded SmolLM2: base vs warped samples and per-token (s1, s2, b)",
        description=demo.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_arguments(demo_parser)
    demo_parser.set_defaults(func=demo.run_demo)

    from . import evaluation, temperature_sweep

    eval_parser = commands.add_parser(
        "eval", help="n samples per problem from decoding policies (temperature, heads, baselines): Table-1 metrics",
        description=evaluation.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluation.add_eval_arguments(eval_parser)
    eval_parser.set_defaults(func=evaluation.run_eval)

    sweep_parser = commands.add_parser(
        "sweep", help="GLOBAL-T*: best fixed temperature on validation, reported on test, with the Pareto plot",
        description=temperature_sweep.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    temperature_sweep.add_sweep_arguments(sweep_parser)
    sweep_parser.set_defaults(func=temperature_sweep.run_sweep)

    from . import analysis

    analyze_parser = commands.add_parser(
        "analyze", help="per-token analysis of a head on saved rollouts: KL, T*, top-6, following words; report",
        description=analysis.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    analysis.add_analyze_arguments(analyze_parser)
    analyze_parser.set_defaults(func=analysis.run_analyze)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    hf_logging.set_verbosity(level)
    if not args.verbose:
        hf_logging.disable_progress_bar()  # weight-loading bars would drown the demo's output
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
