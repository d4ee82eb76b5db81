"""Training rollouts of the main job: the trainer's own decoding loop vs TRL's ``generate`` call, in one run.

Both are :class:`~logitmlp_hf.DecodingHeadGRPOTrainer` with the main job's recipe (``logitmlp reproduce``: a fresh
LogitMLP head on the embedded SmolLM2-135M-Instruct, fp32, ≤ 48 new tokens, groups of 8), differing only in
``rollout_sampler``: ``"rows"`` (the default's choice here: each prompt prefilled once for its group, a rollout
leaves the batch at its end-of-turn token, per-rollout seeded noise) and ``"generate"`` (TRL's call of the wrapper's
``generate``). Each times ``_generate_and_score_completions`` — decoding with the features recorded, rewards, the
cache the updates read — on the same batches of training prompts: ``--prompts`` groups per batch (the main job
decodes 4 per step: 2 prompts and 2 refill candidates). The two alternate within every repeat; medians are reported.

    python benchmarks/bench_rollouts.py                    # 6 batches of 4 groups × 8 rollouts, 3 repeats
    python benchmarks/bench_rollouts.py --dtype bfloat16   # the frozen base in bf16 (the head stays float32)

Prints a table and ``RESULT rollout_rows_s=...`` / ``RESULT rollout_generate_s=...`` (seconds per batch) and
``RESULT rollout_rows_vs_generate=...`` (the speed-up of the rows loop, in tokens per second).
"""

from __future__ import annotations

import argparse
import logging
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from logitmlp_hf.hub.offline_model import EMBEDDED_MODEL_ID
from logitmlp_hf.progress import progress_bar
from logitmlp_hf.reproduce.config import ReproduceConfig
from logitmlp_hf.reproduce.pipeline import problem_sets, training_arguments
from logitmlp_hf.tasks.rewards import MathVerifyReward
from logitmlp_hf.trainer.grpo_trainer import DecodingHeadGRPOTrainer


def _trainer(sampler: str, train, output_dir: Path, dtype: str) -> DecodingHeadGRPOTrainer:
    args = training_arguments(ReproduceConfig(), output_dir / sampler, "pass@1", progress=False)
    args.rollout_sampler = sampler
    args.model_init_kwargs = {"dtype": getattr(torch, dtype)}  # the frozen base's dtype; the head stays float32
    args.dynamic_sampling = False  # every batch decodes exactly the groups given, in both trainers
    args.dynamic_sampling_extra_prompts = 0
    trainer = DecodingHeadGRPOTrainer(
        model=EMBEDDED_MODEL_ID, reward_funcs=MathVerifyReward(), args=args, train_dataset=train
    )
    trainer.model.train()
    return trainer


def _run(trainer, batches) -> tuple[int, float]:
    n_tokens, seconds = 0, 0.0
    for i, rows in enumerate(batches):
        torch.manual_seed(i)
        start = time.perf_counter()
        out = trainer._generate_and_score_completions(rows)
        seconds += time.perf_counter() - start
        n_tokens += int(out["completion_mask"].sum())
    return n_tokens, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=6, help="rollout batches per repeat")
    parser.add_argument("--prompts", type=int, default=4, help="groups per batch (the main job decodes 4)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"], help="the base's dtype")
    args = parser.parse_args()
    logging.getLogger("logitmlp_hf").setLevel(logging.WARNING)

    config = ReproduceConfig()
    train, _, _ = problem_sets(config)
    group = config.num_generations
    batches = [
        [train[(b * args.prompts + p) % len(train)] for p in range(args.prompts) for _ in range(group)]
        for b in range(args.batches)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: _trainer(name, train, Path(tmp), args.dtype) for name in ("rows", "generate")}
        print(
            f"model: SmolLM2-135M-Instruct ({args.dtype}), {args.batches} batches × {args.prompts} groups × {group} "
            f"rollouts, ≤ {config.max_new_tokens} new tokens; torch {torch.__version__}, {torch.get_num_threads()} "
            f"threads, {platform.processor() or platform.machine()}"
        )
        for trainer in trainers.values():  # warm-up
            _run(trainer, batches[:1])
        runs: dict[str, list[tuple[int, float]]] = {name: [] for name in trainers}
        with progress_bar(total=2 * args.repeats, desc="bench_rollouts", unit="run") as bar:  # stderr
            for _ in range(args.repeats):
                for name, trainer in trainers.items():
                    bar.set_postfix_str(name)
                    runs[name].append(_run(trainer, batches))
                    bar.update()
    print(f"{'rollout_sampler':<16} {'s/batch (median)':>17} {'tok/s (median)':>15} {'tok/s runs':>24}")
    per_batch, rate = {}, {}
    for name, values in runs.items():
        per_batch[name] = statistics.median(s / args.batches for _, s in values)
        rate[name] = statistics.median(n / s for n, s in values)
        runs_text = ", ".join(f"{n / s:.1f}" for n, s in values)
        print(f"{name:<16} {per_batch[name]:>17.2f} {rate[name]:>15.1f} {runs_text:>24}")
    print(f"RESULT rollout_rows_s={per_batch['rows']:.2f}")
    print(f"RESULT rollout_generate_s={per_batch['generate']:.2f}")
    print(f"RESULT rollout_rows_vs_generate={rate['rows'] / rate['generate']:.3f}")


if __name__ == "__main__":
    main()
