"""Train a decoding head (LogitMLP by default; `--head_type`) with RLVR (DAPO pass@1 or pass@k) on a frozen causal LM.

    # CPU, minutes: the embedded SmolLM2-135M-Instruct on arithmetic
    accelerate launch trainers/train_logitmlp_grpo.py --config trainers/configs/smollm2_arith_pass1.yaml
    accelerate launch --config_file trainers/accelerate_configs/cpu_2proc.yaml \\
        trainers/train_logitmlp_grpo.py --config trainers/configs/smollm2_arith_passk.yaml

    # GPU: the source's setting (Qwen3-1.7B-Base on DAPO-Math-17K, 4096-token responses)
    accelerate launch --config_file trainers/accelerate_configs/multi_gpu.yaml \\
        trainers/train_logitmlp_grpo.py --config trainers/configs/qwen3_1.7b_dapo_passk.yaml

Every `DecodingHeadGRPOConfig` / `GRPOConfig` / `TrainingArguments` option can be set in the YAML or on the command line
(`--learning_rate 3e-3`); command-line values win. Resume with `--resume_from_checkpoint true` (the newest
checkpoint in `output_dir`) or a checkpoint path.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trl import TrlParser

from logitmlp_hf import DecodingHeadGRPOConfig, DecodingHeadGRPOTrainer, load_decoding_head_model
from logitmlp_hf.hub.offline_model import EMBEDDED_MODEL_ID
from logitmlp_hf.tasks.data import (
    ArithmeticTaskConfig,
    load_dapo_math,
    load_gsm8k_jsonl,
    load_math_jsonl,
    make_arithmetic_train_validation_test,
)
from logitmlp_hf.tasks.rewards import MathVerifyReward


@dataclass
class ScriptArguments:
    """What to train on. The policy's base model, the head to start from, and the data."""

    model_name_or_path: str = field(
        default=EMBEDDED_MODEL_ID,
        metadata={"help": "Base causal LM (id or path), or a PEFT adapter whose base is loaded with it."},
    )
    head_name_or_path: str | None = field(
        default=None, metadata={"help": "Continue training this head repo (dir or id) instead of a fresh head."}
    )
    dataset: str = field(
        default="arithmetic",
        metadata={"help": "'arithmetic' (generated, offline), a .jsonl file, or a Hub id / parquet in DAPO format."},
    )
    dataset_format: str = field(
        default="auto", metadata={"help": "'auto', 'math' (problem/answer), 'gsm8k' (#### answers) or 'dapo'."}
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of a Hub dataset."})
    answer_column: str = field(default="answer", metadata={"help": "Column with the reference answer."})
    instruction: str | None = field(
        default=None, metadata={"help": "Text appended to every question (e.g. ask for a \\boxed{} answer)."}
    )
    n_train_problems: int = field(default=309, metadata={"help": "Arithmetic: number of training problems."})
    n_validation_problems: int = field(
        default=32,
        metadata={"help": "Arithmetic: problems held out for choosing T* (`logitmlp sweep --n-validation`)."},
    )
    n_test_problems: int = field(
        default=100, metadata={"help": "Arithmetic: problems held out for testing (`logitmlp eval --n-problems`)."}
    )
    arithmetic_max_operand: int = field(default=20, metadata={"help": "Arithmetic: operands are in [0, this]."})
    arithmetic_n_operands: int = field(default=2, metadata={"help": "Arithmetic: operands per problem."})
    reward_timeout_seconds: float = field(default=5.0, metadata={"help": "math-verify time limit per answer."})


def make_parser() -> TrlParser:
    return TrlParser((ScriptArguments, DecodingHeadGRPOConfig))


def load_datasets(script_args: ScriptArguments, seed: int):
    """(train, eval or None) with columns ``prompt`` (conversational), ``answer`` and ``question``."""
    if script_args.dataset == "arithmetic":
        task = ArithmeticTaskConfig(
            seed=seed, max_operand=script_args.arithmetic_max_operand, n_operands=script_args.arithmetic_n_operands
        )
        # Never train on the problems `logitmlp eval` / `logitmlp sweep` report or select on (same seed, same sizes).
        train, _, _ = make_arithmetic_train_validation_test(
            task, script_args.n_train_problems, script_args.n_validation_problems, script_args.n_test_problems
        )
        return train, None
    fmt = script_args.dataset_format
    if fmt == "auto":
        fmt = (
            "gsm8k"
            if "gsm8k" in script_args.dataset.lower()
            else "math"
            if script_args.dataset.endswith(".jsonl")
            else "dapo"
        )
    kwargs = {"instruction": script_args.instruction} if script_args.instruction else {}
    if fmt == "math":
        return load_math_jsonl(script_args.dataset, **kwargs), None
    if fmt == "gsm8k":
        return load_gsm8k_jsonl(script_args.dataset, **kwargs), None
    if fmt == "dapo":
        return load_dapo_math(script_args.dataset, split=script_args.dataset_split, **kwargs), None
    raise ValueError(f"unknown dataset_format {fmt!r}")


def main(script_args: ScriptArguments, training_args: DecodingHeadGRPOConfig) -> DecodingHeadGRPOTrainer:
    train_dataset, eval_dataset = load_datasets(script_args, training_args.seed)
    if script_args.head_name_or_path:
        # any head type: the class is picked from the head repo's model_type
        model = load_decoding_head_model(script_args.head_name_or_path, base_model=script_args.model_name_or_path)
    else:
        model = script_args.model_name_or_path
    trainer = DecodingHeadGRPOTrainer(
        model=model,
        reward_funcs=MathVerifyReward(
            answer_column=script_args.answer_column, timeout_seconds=script_args.reward_timeout_seconds
        ),
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model()
    trainer.create_model_card()
    if training_args.push_to_hub:
        trainer.push_to_hub()
    return trainer


if __name__ == "__main__":
    parser = make_parser()
    script_args, training_args = parser.parse_args_and_config()
    # Destroy the process group before the interpreter exits: under `accelerate launch` with gloo, a group left to
    # interpreter teardown can abort a rank with "terminate called without an active exception" (SIGABRT).
    main(script_args, training_args).end()
