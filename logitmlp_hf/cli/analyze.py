"""``logitmlp analyze``: per-token analysis of a head on saved rollouts (KL, effective temperature, candidates)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch

from ..analysis.per_token import analyze_rollouts, generate_arithmetic_rollouts, load_rollouts, select_policy
from ..analysis.report import write_report
from ..analysis.viewer import DEFAULT_MAX_ROLLOUTS, VIEWER_FILE
from ..errors import DataFileError
from ..heads.registry import decoding_head_type, registered_head_types
from ..hub.head_repo import load_head_config
from ..hub.offline_model import EMBEDDED_MODEL_ID
from ..modeling import DecodingHeadForCausalLM, load_decoding_head_model
from .base import Command
from .options import add_model_options, load_base


logger = logging.getLogger(__name__)

DESCRIPTION = """\
Teacher-forces rollouts through the base and the head and reports, per generated token, KL(head || base), the
effective temperature (the single temperature closest to the head's distribution there), the base and head top
candidates and the head's own choices. Writes plots, report.md, report.html, summary.json and viewer.html (an
interactive page: every token coloured by KL or effective temperature, its candidates and the head's choices on
click) to --output-dir.

Rollouts come from `logitmlp eval --save-rollouts` (--rollouts); without them a small arithmetic set is sampled from
the head first. Without --head a fresh head is analysed (a dry run of the report). Rollouts record the model and
tokenizer that made them; those of another model or vocabulary are refused (--allow-other-model to analyse them
anyway), and every row is checked (token ids in the vocabulary) before the model runs. A rollouts file that holds
several policies' samples (`logitmlp eval` with several --policy) needs --policy NAME to pick the ones to analyse;
without it the command stops and lists the names.

Example:
  logitmlp eval --policy head:outputs/demo-head --n-problems 20 --save-rollouts
  logitmlp analyze --head outputs/demo-head --rollouts outputs/eval/rollouts.jsonl --policy head:outputs/demo-head
"""


def _at_least_one(text: str) -> int:
    """argparse type: an integer ≥ 1 (argparse names the option in its error)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {value}")
    return value


class AnalyzeCommand(Command):
    def __init__(self) -> None:
        super().__init__(
            "analyze",
            "per-token analysis of a head on saved rollouts: KL, T*, top-6, following words; report",
            DESCRIPTION,
        )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--head",
            default=None,
            help="head repo (dir or Hub id); default: a fresh head with --init-std (for a dry run)",
        )
        parser.add_argument(
            "--head-type",
            default="logitmlp",
            choices=registered_head_types(per_token=True),
            help="type of the fresh head (only without --head)",
        )
        parser.add_argument(
            "--rollouts",
            type=Path,
            default=None,
            help="rollouts.jsonl (from `logitmlp eval --save-rollouts`); default: sample a small "
            "arithmetic set from the head on the base first",
        )
        parser.add_argument(
            "--policy",
            default=None,
            metavar="NAME",
            help="analyse only this policy's rollouts (a rollouts file of `logitmlp eval` holds every evaluated "
            "policy's; with several and no --policy the command stops and lists them)",
        )
        parser.add_argument("--output-dir", type=Path, default=Path("outputs/analysis"), help="where the report goes")
        add_model_options(
            parser, base_help="base model id or path (default: the head's base, or the embedded SmolLM2 offline)"
        )
        parser.add_argument(
            "--allow-other-model",
            action="store_true",
            help="analyse --rollouts that record another model or tokenizer than the one loaded (e.g. the same "
            "weights under another path); by default they are refused",
        )
        parser.add_argument(
            "--max-rollouts", type=int, default=None, help="analyse only the first N rollouts (of --policy)"
        )
        parser.add_argument("--batch-size", type=int, default=16, help="rollouts per teacher-forced forward pass")
        parser.add_argument("--active-kl", type=float, default=0.01, help="KL above which a position is 'active'")
        parser.add_argument(
            "--top-positions", type=int, default=12, help="highest-KL positions in the candidates table"
        )
        parser.add_argument("--top-words", type=int, default=60, help="words in the following-words table and plot")
        parser.add_argument(
            "--viewer-rollouts",
            type=_at_least_one,
            default=DEFAULT_MAX_ROLLOUTS,
            help="rollouts shown in viewer.html, the first ones (the page embeds each token's top-5 candidates)",
        )
        parser.add_argument(
            "--init-std",
            type=float,
            default=0.05,
            help="output-layer std of a fresh LogitMLP head (only without --head)",
        )
        parser.add_argument("--n-problems", type=int, default=8, help="generated rollouts: arithmetic problems")
        parser.add_argument("--n-samples", type=int, default=4, help="generated rollouts: samples per problem")
        parser.add_argument("--max-new-tokens", type=int, default=96, help="generated rollouts: completion length")
        parser.add_argument("--seed", type=int, default=0, help="seed of the generated rollouts and a fresh head")

    @staticmethod
    def load_model(args: argparse.Namespace) -> tuple[DecodingHeadForCausalLM, Any]:
        """Base (+ tokenizer) as ``logitmlp eval`` loads it, then the head on top (or a fresh one)."""
        base_name = args.base_model
        if base_name is None and args.head is not None:
            recorded = load_head_config(args.head).base_model_name_or_path
            base_name = None if recorded in (None, EMBEDDED_MODEL_ID) else recorded
        base, tokenizer = load_base(base_name, args.dtype, args.device)
        if args.head is not None:
            model = load_decoding_head_model(args.head, base_model=base)
        else:
            torch.manual_seed(args.seed)
            model_class = decoding_head_type(args.head_type).model_class
            kwargs = {"init_std": args.init_std} if "init_std" in model_class.config_class.__dataclass_fields__ else {}
            model = model_class.from_base_model(base, **kwargs)
            logger.warning("no --head given: analysing a fresh, untrained %s head", args.head_type)
        return model.eval(), tokenizer

    def run(self, args: argparse.Namespace) -> int:
        output_dir = Path(args.output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        rollouts = None
        if args.rollouts is not None:  # the file is checked before any model is loaded
            rollouts = select_policy(load_rollouts(args.rollouts), args.policy, args.rollouts)
            if args.max_rollouts is not None:
                rollouts = rollouts[: args.max_rollouts]
            if not any(r["completion_ids"] for r in rollouts):
                raise DataFileError(
                    f"{args.rollouts}: no completion tokens in its {len(rollouts)} rollouts; nothing to analyse",
                    args.rollouts,
                )
        print(f"Loading {args.base_model or 'the base model'} and {args.head or 'a fresh head'} ...", flush=True)
        model, tokenizer = self.load_model(args)
        if rollouts is not None:
            source = str(args.rollouts) + (f" (policy {args.policy!r})" if args.policy else "")
        else:
            print(
                f"No --rollouts: sampling {args.n_problems}x{args.n_samples} arithmetic rollouts from the head ...",
                flush=True,
            )
            rollouts = generate_arithmetic_rollouts(
                model, tokenizer, args.n_problems, args.n_samples, args.max_new_tokens, args.seed
            )
            if args.max_rollouts is not None:
                rollouts = rollouts[: args.max_rollouts]
            path = output_dir / "rollouts.jsonl"
            with open(path, "w", encoding="utf-8") as f:
                for row in rollouts:
                    f.write(json.dumps(row) + "\n")
            source = f"{path} (generated)"
        print(f"Teacher-forcing {len(rollouts)} rollouts ...", flush=True)
        analysis = analyze_rollouts(
            model,
            tokenizer,
            rollouts,
            batch_size=args.batch_size,
            active_kl=args.active_kl,
            allow_other_model=args.allow_other_model,
        )
        report = write_report(
            analysis,
            tokenizer,
            output_dir,
            top_positions=args.top_positions,
            top_words=args.top_words,
            title=f"Decoding-head analysis: {args.head or 'fresh head'}",
            source=source,
            viewer_rollouts=args.viewer_rollouts,
        )
        summary = analysis.summary()
        conc = summary["concentration"]
        print(
            f"{summary['n_tokens']} completion tokens, {summary['n_active']} active (KL > {args.active_kl:g}); "
            f"mean KL {conc['mean_kl']:.3g} nats; {100 * conc['fraction_below']:.1f}% of positions below "
            f"{conc['zero_threshold']:g}; half the KL on {conc['percent_for_half']:.3g}% of positions"
        )
        print(f"Report: {report} (and {report.with_suffix('.html')})")
        print(f"Per-token viewer: {report.parent / VIEWER_FILE} (open it in a browser)")
        return 0
