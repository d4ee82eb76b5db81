"""vLLM generation throughput with a decoding head vs plain vLLM, same model, prompts and settings, in one run.

Two engines are built on the same base: plain vLLM, and vLLM serving a LogitMLP head (``load_vllm_engine``). Each
generates ``--new-tokens`` tokens (``ignore_eos``, so every run produces the same number of tokens) for the same
``--prompts`` prompts, sampling at temperature 1; the two alternate within every repeat so machine noise hits both
alike, and the median time per engine is compared. The head is non-identity (``init_std=0.05``, seeded), so no code
path is skipped.

    python benchmarks/bench_vllm.py                              # embedded SmolLM2-135M-Instruct (CPU or GPU)
    python benchmarks/bench_vllm.py --model Qwen/Qwen3-1.7B-Base --prompts 256 --new-tokens 512   # a GPU run

Prints a table, the head's own cost per decoding step, and the headline figure:
``vllm_throughput_ratio`` = head tokens/s ÷ plain tokens/s (higher is better; 1.0 = free; target ≥ 0.95 on GPU).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time


os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

import torch  # noqa: E402


def _prompts(tokenizer, n: int) -> list[dict]:
    questions = [f"What is {a} + {b}? Explain step by step." for a in range(1, 30) for b in range(1, 30)][:n]
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in questions
    ]
    return [{"prompt_token_ids": tokenizer(t, add_special_tokens=False).input_ids} for t in texts]


def _save_head(model: str, path: str) -> None:
    """A LogitMLP head for ``model`` with visibly non-identity weights (no base weights are loaded for it)."""
    from transformers import AutoConfig

    from logitmlp_hf import LogitMLPConfig, LogitMLPHead
    from logitmlp_hf.hub.base_loading import resolve_model_path
    from logitmlp_hf.hub.head_repo import save_head

    text = AutoConfig.from_pretrained(resolve_model_path(model)).get_text_config()
    config = LogitMLPConfig(
        base_model_name_or_path=model, hidden_size=text.hidden_size, vocab_size=text.vocab_size, init_std=0.05
    )
    torch.manual_seed(0)
    save_head(path, config, LogitMLPHead(config), card_text=None)


def _head_step_ms(hidden_size: int, vocab_size: int, batch: int, device: str, dtype: torch.dtype) -> float:
    """Milliseconds the head adds to one decoding step of ``batch`` sequences: what the engine's ``compute_logits``
    runs after the base's logits (:func:`~logitmlp_hf.integrations.vllm.model.apply_head`), median of 5 × 20 calls."""
    from logitmlp_hf import LogitMLPConfig, LogitMLPHead
    from logitmlp_hf.integrations.vllm.model import apply_head

    head = LogitMLPHead(LogitMLPConfig(hidden_size=hidden_size, vocab_size=vocab_size, init_std=0.05)).to(device)
    hidden = torch.randn(batch, hidden_size, device=device, dtype=dtype)
    base_logits = (torch.randn(batch, vocab_size, device=device) * 3).to(dtype)
    runs = []
    with torch.no_grad():
        for _ in range(6):
            inputs = [base_logits.clone() for _ in range(20)]  # apply_head may write into its input
            if device != "cpu":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for logits in inputs:
                apply_head(head, hidden, logits)
            if device != "cpu":
                torch.cuda.synchronize()
            runs.append((time.perf_counter() - start) / len(inputs) * 1e3)
    return statistics.median(runs[1:])


def _time(llm, prompts, params) -> tuple[float, int]:
    start = time.perf_counter()
    outputs = llm.generate(prompts, params, use_tqdm=False)
    elapsed = time.perf_counter() - start
    return elapsed, sum(len(o.outputs[0].token_ids) for o in outputs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="base model (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="auto", help="vLLM dtype for both engines")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.4, help="per engine (two are alive)")
    parser.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs / torch.compile in either")
    args = parser.parse_args()

    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    from logitmlp_hf.hub.base_loading import resolve_model_path
    from logitmlp_hf.hub.offline_model import EMBEDDED_MODEL_ID
    from logitmlp_hf.integrations.vllm.engine import load_vllm_engine

    model = args.model or EMBEDDED_MODEL_ID
    path = resolve_model_path(model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    prompts = _prompts(tokenizer, args.prompts)
    params = SamplingParams(temperature=1.0, max_tokens=args.new_tokens, ignore_eos=True, seed=None)
    engine = {
        "dtype": args.dtype,
        "gpu_memory_utilization": args.gpu_memory_utilization,
        "seed": 0,
        "enforce_eager": args.enforce_eager,
    }
    with tempfile.TemporaryDirectory() as head_dir:
        _save_head(model, head_dir)
        plain = LLM(model=path, **engine)
        head = load_vllm_engine(head_dir, **engine)
        for llm in (plain, head):  # warm-up: kernels, caches, compilation of the sizes used below
            _time(llm, prompts, params)
        times = {"plain": [], "head": []}
        tokens = 0
        for _ in range(args.repeats):
            for name, llm in (("plain", plain), ("head", head)):
                elapsed, tokens = _time(llm, prompts, params)
                times[name].append(elapsed)
        config = plain.llm_engine.model_config
        dtype, hidden, vocab = config.dtype, config.get_hidden_size(), config.get_vocab_size()

    import vllm

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else (platform.processor() or "CPU")
    print(f"model: {model}, vLLM {vllm.__version__}, dtype {dtype}, device {device}, {os.cpu_count()} CPUs")
    print(f"{args.prompts} prompts x {args.new_tokens} new tokens, median of {args.repeats} alternating repeats")
    print(f"{'engine':>6} {'s':>8} {'tok/s':>9}")
    rates = {}
    for name, values in times.items():
        rates[name] = tokens / statistics.median(values)
        print(f"{name:>6} {statistics.median(values):>8.2f} {rates[name]:>9.1f}")
    step_device = "cuda" if torch.cuda.is_available() else "cpu"
    for batch in sorted({1, min(args.prompts, 64), args.prompts}):
        cost = _head_step_ms(hidden, vocab, batch, step_device, dtype)
        print(f"head cost per decoding step, batch {batch}, {dtype} logits: {cost:.3f} ms")
    print(f"RESULT vllm_throughput_ratio={rates['head'] / rates['plain']:.3f}")


if __name__ == "__main__":
    main()
