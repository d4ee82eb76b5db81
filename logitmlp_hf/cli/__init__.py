"""The ``logitmlp`` console script. Every subcommand is a :class:`~logitmlp_hf.cli.base.Command` object (TRL's CLI
pattern); all argument parsing and printing of the package lives in this subpackage."""

from .main import get_commands, main


__all__ = ["get_commands", "main"]
