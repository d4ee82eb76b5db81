"""The ``logitmlp`` console script. Subcommands: ``reproduce``, ``demo``, ``eval``, ``sweep``, ``analyze``, ``vllm-serve``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from transformers.utils import logging as hf_logging


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="logitmlp", description="LogitMLP heads for transformers models.")
    parser.add_argument("-v", "--verbose", action="store_true", help="show info-level logs")
    commands = parser.add_subparsers(dest="command", required=True)

    # (name, module, function adding its arguments, function running it, one-line help)
    subcommands = [
        ("reproduce", "reproduce", "add_reproduce_arguments", "run_reproduce",
         "the main job: train pass@1 and pass@k heads on the embedded SmolLM2, compare with GLOBAL-T* (Table 1)"),
        ("demo", "demo", "add_arguments", "run_demo",
         "a head on the embedded SmolLM2: base vs warped samples and per-token (s1, s2, b)"),
        ("eval", "evaluation", "add_eval_arguments", "run_eval",
         "n samples per problem from decoding policies (temperature, heads, baselines): Table-1 metrics"),
        ("sweep", "temperature_sweep", "add_sweep_arguments", "run_sweep",
         "GLOBAL-T*: best fixed temperature on validation, reported on test, with the Pareto plot"),
        ("analyze", "analysis", "add_analyze_arguments", "run_analyze",
         "per-token analysis of a head on saved rollouts: KL, T*, top-6, following words; report"),
        ("vllm-serve", "vllm_serve", "add_arguments", "run",
         "vllm serve (OpenAI-compatible server) sampling from a head repo; --for-training for TRL's server mode"),
    ]
    for name, module_name, add_arguments, run, help_text in subcommands:
        module = importlib.import_module(f".{module_name}", __package__)
        sub = commands.add_parser(name, help=help_text, description=module.__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        getattr(module, add_arguments)(sub)
        sub.set_defaults(func=getattr(module, run))
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
