"""Options several commands share (model, dataset, sampling), and turning them into objects."""

from __future__ import annotations

import argparse

import torch

from ..evaluation.metrics import NO_ANSWER_MODES
from ..evaluation.runner import load_eval_dataset


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
        "--n-problems", type=int, default=None, help="test problems (default: all; 100 for arithmetic)"
    )
    parser.add_argument(
        "--instruction",
        default="auto",
        help="text appended to each question; 'auto' = ask for \\boxed{} except on arithmetic; 'none' = nothing",
    )
    parser.add_argument("--arithmetic-seed", type=int, default=0, help="arithmetic: problem seed (the recipes' seed)")
    parser.add_argument("--arithmetic-max-operand", type=int, default=20, help="arithmetic: largest operand")
    parser.add_argument("--arithmetic-n-operands", type=int, default=2, help="arithmetic: operands per problem")
    parser.add_argument("--n-samples", type=int, default=8, help="samples per problem (the k of best@k)")
    parser.add_argument("--batch-size", type=int, default=8, help="problems per generate call")
    parser.add_argument("--max-new-tokens", type=int, default=512, help="completion length limit")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed (per problem and sample)")
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples for the CIs")
    parser.add_argument(
        "--no-answer",
        choices=NO_ANSWER_MODES,
        default="category",
        help="how samples without an answer count in answer entropy and uniq/k",
    )


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


def dataset_from_args(args: argparse.Namespace, split: str = "test", n_validation: int = 0):
    """The evaluation problems the dataset options name."""
    instruction = None if args.instruction == "none" else args.instruction
    return load_eval_dataset(
        args.dataset,
        args.n_problems,
        split=split,
        n_validation=n_validation,
        instruction=instruction,
        arithmetic_seed=args.arithmetic_seed,
        arithmetic_max_operand=args.arithmetic_max_operand,
        arithmetic_n_operands=args.arithmetic_n_operands,
    )
