"""Options several commands share (model, dataset, sampling), and turning them into objects."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

import torch

from ..evaluation.metrics import NO_ANSWER_MODES
from ..evaluation.runner import load_eval_dataset
from ..evaluation.settings import (
    DEFAULT_SETTINGS,
    LONG_FORM_MAX_NEW_TOKENS,
    MAX_NEW_TOKENS_BY_DATASET,
    EvaluationSettings,
    format_settings,
)


DTYPES = ("float32", "bfloat16", "float16")


def add_model_options(parser: argparse.ArgumentParser, base_help: str | None = None) -> None:
    """``--base-model``, ``--dtype``, ``--device``."""
    parser.add_argument(
        "--base-model",
        default=None,
        help=base_help or "base model id or path (default: the embedded SmolLM2-135M-Instruct, offline)",
    )
    parser.add_argument("--dtype", default="float32", choices=DTYPES, help="dtype of the base model")
    parser.add_argument("--device", default=None, help="e.g. cuda (default: cuda if available, else cpu)")


def add_evaluation_options(parser: argparse.ArgumentParser) -> None:
    """Dataset and sampling options shared by ``logitmlp eval`` and ``logitmlp sweep``."""
    add_model_options(parser)
    parser.add_argument(
        "--dataset",
        default="arithmetic",
        help="arithmetic | gsm8k | math500 (vendored) | a .jsonl file | a Hub id in DAPO format",
    )
    parser.add_argument(
        "--n-problems",
        type=int,
        default=None,
        help=f"test problems (default: {DEFAULT_SETTINGS.n_test} for arithmetic, all of any other dataset)",
    )
    parser.add_argument(
        "--instruction",
        default="auto",
        help="text appended to each question; 'auto' = ask for \\boxed{} except on arithmetic; 'none' = nothing",
    )
    parser.add_argument("--arithmetic-seed", type=int, default=0, help="arithmetic: problem seed (the recipes' seed)")
    parser.add_argument("--arithmetic-max-operand", type=int, default=20, help="arithmetic: largest operand")
    parser.add_argument("--arithmetic-n-operands", type=int, default=2, help="arithmetic: operands per problem")
    defaults = DEFAULT_SETTINGS
    parser.add_argument(
        "--n-samples", type=int, default=defaults.n_samples, help="samples per problem (the k of best@k)"
    )
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="problems per generate call")
    budgets = ", ".join(f"{v} for {k}" for k, v in MAX_NEW_TOKENS_BY_DATASET.items())
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=defaults.max_new_tokens,
        help=f"completion length limit (default: the dataset's: {budgets}, {LONG_FORM_MAX_NEW_TOKENS} otherwise)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="sampling seed (per problem and sample)")
    parser.add_argument(
        "--n-resamples", type=int, default=defaults.n_resamples, help="bootstrap resamples for the CIs"
    )
    parser.add_argument(
        "--no-answer",
        choices=NO_ANSWER_MODES,
        default=defaults.no_answer,
        help="how samples without an answer count in answer entropy and uniq/k",
    )


def evaluation_settings(args: argparse.Namespace) -> EvaluationSettings:
    """The evaluation options as :class:`EvaluationSettings` (the dataset's budget filled in)."""
    fields = {f for f in EvaluationSettings.__dataclass_fields__ if hasattr(args, f)}
    settings = EvaluationSettings(**{f: getattr(args, f) for f in fields if getattr(args, f) is not None})
    return dataclasses.replace(settings, max_new_tokens=settings.resolved_max_new_tokens(args.dataset))


def print_settings(**settings: Any) -> None:
    """The ``settings:`` line every command prints first."""
    print(format_settings(settings), flush=True)


def load_base(base_model: str | None, dtype: str = "float32", device: str | None = None):
    """(model, tokenizer), left-padded, on ``device``: ``base_model`` or the embedded SmolLM2 when ``None``."""
    torch_dtype = getattr(torch, dtype)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if base_model is None:
        from ..hub.offline_model import load_embedded_model

        model, tokenizer = load_embedded_model(dtype=torch_dtype)
    else:
        from transformers import AutoTokenizer

        from ..hub.base_loading import load_base_model, resolve_model_path

        model = load_base_model(base_model, dtype=torch_dtype)
        # the resolved path: the embedded model's Hub id must load offline, like the model itself
        tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(base_model), padding_side="left")
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return model.to(device).eval(), tokenizer


def n_test_problems(args: argparse.Namespace) -> int | None:
    """``--n-problems``, or the shared default for arithmetic (``None``, all, for other datasets)."""
    if args.n_problems is None and args.dataset == "arithmetic":
        return DEFAULT_SETTINGS.n_test
    return args.n_problems


def dataset_from_args(args: argparse.Namespace, split: str = "test", n_validation: int = 0):
    """The evaluation problems the dataset options name."""
    instruction = None if args.instruction == "none" else args.instruction
    return load_eval_dataset(
        args.dataset,
        n_test_problems(args),
        split=split,
        n_validation=n_validation,
        instruction=instruction,
        arithmetic_seed=args.arithmetic_seed,
        arithmetic_max_operand=args.arithmetic_max_operand,
        arithmetic_n_operands=args.arithmetic_n_operands,
    )
