"""Generation overhead of a LogitMLP head: ``generate()`` with the head vs the plain base model, in one run.

Same model object, same prompts, same number of new tokens (``min_new_tokens = max_new_tokens``), sampling; the two
variants alternate within every repeat so machine noise hits both alike, and the median time per variant is
compared. The head is a trained-looking (non-identity) head so no code path is skipped.

    python benchmarks/bench_generate.py                 # embedded SmolLM2-135M-Instruct, fp32, CPU
    python benchmarks/bench_generate.py --repeats 7 --new-tokens 64

Prints a table and one ``RESULT`` line per headline figure:
``generate_ratio_batch1`` and ``generate_ratio_batch8`` = head time ÷ plain time (lower is better; 1.0 = free).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from logitmlp_hf import LogitMLPForCausalLM
from logitmlp_hf.hub.offline_model import load_embedded_model
from logitmlp_hf.progress import progress_bar


PROMPTS = [f"What is {a} + {b}?" for a, b in [(14, 15), (3, 19), (7, 8), (12, 9), (20, 5), (6, 17), (11, 11), (2, 13)]]


def _inputs(tokenizer, batch_size: int) -> dict[str, torch.Tensor]:
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in PROMPTS[:batch_size]
    ]
    return tokenizer(texts, return_tensors="pt", padding=True)


def _time_generate(model, inputs, new_tokens: int, pad_token_id: int) -> float:
    torch.manual_seed(0)
    start = time.perf_counter()
    out = model.generate(
        **inputs, do_sample=True, max_new_tokens=new_tokens, min_new_tokens=new_tokens, pad_token_id=pad_token_id
    )
    elapsed = time.perf_counter() - start
    assert out.shape[1] - inputs["input_ids"].shape[1] == new_tokens
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    base, tokenizer = load_embedded_model()
    model = LogitMLPForCausalLM.from_base_model(base, init_std=0.05)  # visibly non-identity: nothing short-circuits
    pad = tokenizer.pad_token_id
    print(
        f"model: {base.name_or_path} ({sum(p.numel() for p in base.parameters()) / 1e6:.1f}M params, fp32), "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    print(f"{'batch':>5} {'plain tok/s':>12} {'head tok/s':>11} {'ratio':>7}")
    ratios = {}
    # on stderr, so the table on stdout stays clean
    bar = progress_bar(total=len(args.batch_sizes) * (1 + args.repeats), desc="bench_generate", unit="run")
    for batch_size in args.batch_sizes:
        bar.set_postfix_str(f"batch {batch_size}")
        inputs = _inputs(tokenizer, batch_size)
        with model.disable_head():  # warm-up: first calls allocate caches and pick kernels
            _time_generate(model, inputs, 8, pad)
        _time_generate(model, inputs, 8, pad)
        bar.update()
        plain, head = [], []
        for _ in range(args.repeats):
            with model.disable_head():
                plain.append(_time_generate(model, inputs, args.new_tokens, pad))
            head.append(_time_generate(model, inputs, args.new_tokens, pad))
            bar.update()
        t_plain, t_head = statistics.median(plain), statistics.median(head)
        tokens = batch_size * args.new_tokens
        ratios[batch_size] = t_head / t_plain
        print(f"{batch_size:>5} {tokens / t_plain:>12.1f} {tokens / t_head:>11.1f} {ratios[batch_size]:>7.3f}")
    bar.close()
    for batch_size, ratio in ratios.items():
        print(f"RESULT generate_ratio_batch{batch_size}={ratio:.3f}")


if __name__ == "__main__":
    main()
