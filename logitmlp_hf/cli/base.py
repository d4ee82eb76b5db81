"""`Command`: one object per ``logitmlp`` subcommand, as TRL's CLI does it (register its parser, then run)."""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions kept as written; each option's default shown unless its help already says it, or it is a
    switch or unset."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, [], argparse.SUPPRESS)
            or action.option_strings == []
            or isinstance(action, argparse._StoreTrueAction)
        ):
            return text
        shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
        return f"{text} (default: {shown})"


class Command(ABC):
    """A ``logitmlp`` subcommand.

    Args:
        name: the subcommand as typed (``logitmlp <name>``).
        help_text: one line for ``logitmlp --help``.
        description: the subcommand's own ``--help`` text (plain text).
    """

    def __init__(self, name: str, help_text: str, description: str | None = None) -> None:
        self.name = name
        self.help_text = help_text
        self.description = description or help_text

    def register(self, subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
        """Add this command's parser to ``subparsers``."""
        parser = subparsers.add_parser(
            self.name, help=self.help_text, description=self.description, formatter_class=HelpFormatter
        )
        self.add_arguments(parser)
        parser.set_defaults(command=self)
        return parser

    @abstractmethod
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The command's options."""

    @abstractmethod
    def run(self, args: argparse.Namespace) -> int:
        """Execute the command; the exit status."""
