"""``logitmlp reproduce``: the main job, from training two heads to the report."""

from __future__ import annotations

import argparse
import dataclasses
import re
import shlex
import shutil
import sys

from ..errors import LogitMLPError
from ..evaluation.settings import format_settings
from ..reproduce.config import ReproduceConfig
from ..reproduce.pipeline import reproduce
from .base import Command


DESCRIPTION = """\
Trains a pass@1 and a pass@k LogitMLP head with DAPO on arithmetic problems with the embedded SmolLM2-135M-Instruct,
picks GLOBAL-T* (the best fixed temperature of the base) on validation problems, evaluates everything on held-out
test problems and writes results.md (Table 1 with bootstrap CIs, paired differences against GLOBAL-T*, plots), the two
heads as head-only repos and a per-token analysis of each. An interrupted run continues where it stopped.

Examples:
  logitmlp reproduce                 # the full job
  logitmlp reproduce --quick         # a few-minute smoke run of every stage (measures nothing)
  logitmlp reproduce --with-lora     # plus the LoRA stacking demonstration
  logitmlp reproduce --task branching                 # the controlled task: heads vs oracle vs the whole
                                                      # temperature frontier, 3 training seeds
  logitmlp reproduce --task branching --recipes all   # plus the recipe search (10 recipes x 3 seeds)
"""

# Options of the arithmetic job that the controlled task does not have.
_ARITHMETIC_ONLY = {f.name for f in dataclasses.fields(ReproduceConfig)} - {
    "output_dir",
    "seed",
    "n_train",
    "n_validation",
    "n_test",
    "n_samples",
    "temperatures",
    "n_resamples",
    "training_seeds",
}


def field_help() -> dict[str, str]:
    """Each :class:`ReproduceConfig` field's help, from its docstring (``name (`type`): text``), in plain text."""
    helps: dict[str, str] = {}
    names: list[str] = []
    for line in (ReproduceConfig.__doc__ or "").split("Args:", 1)[-1].splitlines():
        entry = re.match(r"^\s{8}(\w+(?:,\s*\w+)*)[^:]*\):\s*(.*)$", line)
        if entry:
            names = [n.strip() for n in entry.group(1).split(",")]
            for name in names:
                helps[name] = entry.group(2)
        elif line.startswith(" " * 12) and names:  # a continuation line
            for name in names:
                helps[name] += " " + line.strip()
    return {k: re.sub(r"``([^`]*)``", r"\1", v).rstrip(".") for k, v in helps.items()}


class ReproduceCommand(Command):
    def __init__(self) -> None:
        super().__init__(
            "reproduce",
            "the main job: train pass@1 and pass@k heads on the embedded SmolLM2, compare with GLOBAL-T* (Table 1)",
            DESCRIPTION,
        )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--quick",
            action="store_true",
            help="a few-minute smoke run of every stage (tiny problem sets, 2 steps); measures nothing",
        )
        parser.add_argument("--overwrite", action="store_true", help="delete --output-dir first instead of resuming")
        parser.add_argument(
            "--task",
            choices=("arithmetic", "branching"),
            default="arithmetic",
            help="arithmetic: Table 1 on the embedded SmolLM2; branching: the controlled task where the best per-token "
            "warp is known (default: arithmetic)",
        )
        parser.add_argument(
            "--recipes",
            nargs="+",
            default=None,
            help="branching only: training recipes to run, or 'all' for the whole search (default: pass1 pass8)",
        )
        helps = field_help()
        for f in dataclasses.fields(ReproduceConfig):
            flag = "--" + f.name.replace("_", "-")
            help_text = helps.get(f.name, f.name.replace("_", " "))
            if f.type in ("bool", bool):
                parser.add_argument(flag, action="store_true", default=None, help=help_text)
            elif f.name == "training_seeds":  # both tasks: the branching task's default differs
                parser.add_argument(
                    flag,
                    type=int,
                    nargs="+",
                    default=None,
                    help=f"arithmetic: {help_text} (default: none); branching: one head per recipe per seed "
                    "(default: 0 1 2)",
                )
            elif f.name == "temperatures":
                parser.add_argument(
                    flag,
                    type=float,
                    nargs="+",
                    default=None,
                    help=f"{help_text} (default: {' '.join(map(str, f.default))})",
                )
            else:
                kind = {"int": int, "float": float, "str": str}[str(f.type)]
                parser.add_argument(flag, type=kind, default=None, help=f"{help_text} (default: {f.default})")

    @staticmethod
    def config_from_args(args: argparse.Namespace) -> ReproduceConfig:
        overrides = {
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(ReproduceConfig)
            if getattr(args, f.name, None) is not None
        }
        try:
            return ReproduceConfig.quick(**overrides) if args.quick else ReproduceConfig(**overrides)
        except ValueError as err:  # a bad option: its message, not a traceback
            raise LogitMLPError(str(err)) from None

    @staticmethod
    def branching_config_from_args(args: argparse.Namespace):
        from ..reproduce.branching import BranchingRunConfig

        given = sorted(
            "--" + name.replace("_", "-") for name in _ARITHMETIC_ONLY if getattr(args, name, None) is not None
        )
        if given:
            raise LogitMLPError(f"--task branching does not take {', '.join(given)} (options of the arithmetic job)")
        overrides = {
            f.name: getattr(args, f.name)
            for f in dataclasses.fields(BranchingRunConfig)
            if getattr(args, f.name, None) is not None
        }
        if overrides.get("output_dir") is None and args.quick:
            overrides["output_dir"] = "outputs/branching-quick"
        try:
            return BranchingRunConfig.quick(**overrides) if args.quick else BranchingRunConfig(**overrides)
        except ValueError as err:
            raise LogitMLPError(str(err)) from None

    def run_branching(self, args: argparse.Namespace) -> int:
        from ..progress import progress_bar
        from ..reproduce.branching import run_branching

        config = self.branching_config_from_args(args)
        if args.overwrite and config.path.exists():
            shutil.rmtree(config.path)
        bars: dict = {}

        def progress(what: str, done: int, total: int) -> None:
            bar = bars.get(what)
            if bar is None:
                bar = bars[what] = progress_bar(total=total, desc=what)
            bar.update(done - bar.n)
            if done >= total:
                bar.close()

        print(f"settings: {config.settings_line()}" + (" (--quick)" if args.quick else ""), flush=True)
        report = run_branching(config, on_stage=lambda line: print(line, flush=True), progress=progress)
        print(f"results: {report}")
        print("\n".join(line for line in report.read_text(encoding="utf-8").splitlines() if line.startswith("RESULT")))
        return 0

    def run(self, args: argparse.Namespace) -> int:
        if args.task == "branching":
            return self.run_branching(args)
        if args.recipes is not None:
            raise LogitMLPError("--recipes belongs to --task branching")
        config = self.config_from_args(args)
        print(format_settings(config.settings()) + (" (--quick)" if args.quick else ""), flush=True)
        command = "logitmlp " + shlex.join(sys.argv[1:]) if sys.argv[1:] else "logitmlp reproduce"
        report = reproduce(
            config, overwrite=args.overwrite, command=command, on_stage=lambda line: print(line, flush=True)
        )
        print(report.with_suffix(".txt").read_text(encoding="utf-8"))
        return 0
