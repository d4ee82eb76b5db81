"""``logitmlp``: build the parser from the command objects, set up logging, run the chosen command."""

from __future__ import annotations

import argparse
import logging
import sys

from transformers.utils import logging as hf_logging

from ..errors import LogitMLPError
from .base import Command


def get_commands() -> list[Command]:
    """Every ``logitmlp`` subcommand, in ``--help`` order (each module is imported here, not at package import)."""
    from .analyze import AnalyzeCommand
    from .demo import DemoCommand
    from .eval import EvalCommand
    from .reproduce import ReproduceCommand
    from .sweep import SweepCommand
    from .vllm_serve import VllmServeCommand

    return [ReproduceCommand(), DemoCommand(), EvalCommand(), SweepCommand(), AnalyzeCommand(), VllmServeCommand()]


def build_parser(commands: list[Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="logitmlp", description="Learned decoding heads for transformers models.", allow_abbrev=False
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show info-level logs")
    subparsers = parser.add_subparsers(dest="command_name", required=True, metavar="COMMAND")
    for command in commands:
        command.register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``logitmlp`` command line; returns the exit status."""
    args = build_parser(get_commands()).parse_args(argv)
    level = logging.INFO if args.verbose else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    hf_logging.set_verbosity(level)
    if not args.verbose:
        hf_logging.disable_progress_bar()  # weight-loading bars would drown the commands' own output
    try:
        return args.command.run(args)
    except LogitMLPError as err:  # bad input the library has already explained: the message, not a traceback
        if args.verbose:
            raise
        print(f"logitmlp {args.command.name}: error: {err}", file=sys.stderr)
        return 2
