"""Cost of ``logitmlp analyze`` vs the teacher-forced forward pass it cannot avoid, in one run.

Rollouts are MATH-500 problems (chat-templated prompts) with their reference solutions as completions, cut or
extended to exactly ``--tokens`` tokens: real text, and no sampling time in the measurement. Both variants see the
same batches:

- ``forward``: the base model alone, teacher-forced over the same left-padded batches with the same
  ``logits_to_keep`` (the floor: no analysis can be cheaper than producing the logits);
- ``analyze``: :func:`logitmlp_hf.analysis.per_token.analyze_rollouts` — base + head forward, KL, top-1 bins, statistics,
  top-6 candidates, the following words and ``T*`` on every active position.

The head is untrained with ``init_std=0.05``: a worst case, most positions are active (KL > 0.01) and get a ``T*``
solve. A trained head leaves fewer active positions.

    python benchmarks/bench_analysis.py                       # 32 rollouts × 256 tokens, SmolLM2-135M fp32, CPU
    python benchmarks/bench_analysis.py --rollouts 64
    python benchmarks/bench_analysis.py --dtype bfloat16    # the base in bf16 (KL, T* stay float32)

Prints a table and ``RESULT`` lines: ``analysis_ratio_vs_forward`` (analyze time ÷ forward time) and
``analysis_minutes_per_1000`` (the measured analyze time scaled linearly to 1,000 rollouts of ``--tokens``).
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.analysis.per_token import analyze_rollouts, length_order, teacher_forcing_batch
from logitmlp_hf.hub.offline_model import load_embedded_model
from logitmlp_hf.progress import progress_bar
from logitmlp_hf.tasks.benchmark_data import benchmark_path


def _rollouts(tokenizer, n: int, tokens: int) -> list[dict]:
    rows = [json.loads(line) for line in benchmark_path("math500").read_text().splitlines() if line.strip()]
    solutions = tokenizer("\n\n".join(r["solution"] for r in rows), add_special_tokens=False)["input_ids"]
    rollouts = []
    for i in range(n):
        row = rows[i % len(rows)]
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": row["problem"]}], tokenize=True, add_generation_prompt=True
        )
        if not isinstance(prompt, list):  # transformers 5 may return a BatchEncoding
            prompt = prompt["input_ids"]
        start = (i * 997) % (len(solutions) - tokens)
        rollouts.append({"prompt_ids": list(prompt), "completion_ids": solutions[start : start + tokens]})
    return rollouts


@torch.no_grad()
def _forward_only(base, rollouts: list[dict], batch_size: int, pad_id: int) -> None:
    """The same length-sorted, left-padded batches as ``analyze_rollouts`` (its own helpers), through the base alone."""
    order = length_order(rollouts)
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        input_ids, mask, position_ids, keep, rows, cols = teacher_forcing_batch(
            [rollouts[i]["prompt_ids"] for i in idx], [rollouts[i]["completion_ids"] for i in idx], pad_id
        )
        out = base(
            input_ids=input_ids, attention_mask=mask, position_ids=position_ids, logits_to_keep=keep, use_cache=False
        )
        out.logits[rows, cols].sum().item()  # gather the scored positions, as analysis does


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rollouts", type=int, default=32)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--init-std", type=float, default=0.05)
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="the base model's dtype (bfloat16 is fast on CPUs with AMX/AVX512-BF16)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base, tokenizer = load_embedded_model(dtype=getattr(torch, args.dtype))
    torch.manual_seed(0)  # the head's init decides how many positions are active, i.e. how many T* solves
    model = LogitMLPForCausalLM.from_base_model(base, init_std=args.init_std)
    rollouts = _rollouts(tokenizer, args.rollouts, args.tokens)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    print(
        f"model: {base.name_or_path} {args.dtype}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{platform.processor() or platform.machine()}; {args.rollouts} rollouts × {args.tokens} tokens"
    )

    # the baseline's phase on stderr (analyze_rollouts shows its own bar)
    with progress_bar(total=2, desc="forward (baseline)", unit="pass") as bar:
        _forward_only(base, rollouts[: args.batch_size], args.batch_size, pad)  # warm-up
        bar.update()
        start = time.perf_counter()
        _forward_only(base, rollouts, args.batch_size, pad)
        t_forward = time.perf_counter() - start
        bar.update()
    start = time.perf_counter()
    analysis = analyze_rollouts(model, tokenizer, rollouts, batch_size=args.batch_size)
    t_analyze = time.perf_counter() - start

    active = float(analysis.active.mean())
    per_1000 = t_analyze / args.rollouts * 1000 / 60
    print(f"{'variant':>8} {'seconds':>8} {'ms/token':>9}")
    n_tokens = args.rollouts * args.tokens
    for name, t in (("forward", t_forward), ("analyze", t_analyze)):
        print(f"{name:>8} {t:>8.2f} {1000 * t / n_tokens:>9.3f}")
    print(
        f"active positions: {active:.1%}; scaled to 1000 rollouts: {per_1000:.1f} min "
        f"(forward alone {t_forward / args.rollouts * 1000 / 60:.1f} min)"
    )
    print(f"RESULT analysis_ratio_vs_forward={t_analyze / t_forward:.3f}")
    print(f"RESULT analysis_minutes_per_1000={per_1000:.2f}")


if __name__ == "__main__":
    main()
