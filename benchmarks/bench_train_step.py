"""One optimisation step on the same rollouts: LogitMLPGRPOTrainer vs TRL's GRPOTrainer (LoRA and full-parameter).

All three trainers get the same batch of real rollouts from the embedded SmolLM2-135M-Instruct (fp32, CPU):
``prompts × num_generations`` sequences with exactly ``--completion-tokens`` sampled tokens each, sampled from the
warp with the features recorded during generation (as the trainer does). One *step* is what happens between two
rollouts on the training side: ``_compute_loss`` (policy log-probs with gradient, DAPO loss) + backward +
optimizer step. For TRL that includes its forward+backward through the model (TRL's own fused, chunked LM-head
log-probs; gradient checkpointing off, its fastest setting); for the head it is the cached-feature update.

    python benchmarks/bench_train_step.py
    python benchmarks/bench_train_step.py --completion-tokens 160 --repeats 3

The head's step is timed on both of its paths: the summary path (``update_logprobs="summary"``, what ``"auto"`` takes
on an accelerator: log-probs from the logit
summaries recorded during generation, no vocabulary pass) and the exact chunked path (``update_logprobs="exact"``).

Prints a table and ``RESULT speedup_vs_trl_lora``, ``RESULT speedup_vs_trl_full`` (baseline time ÷ the head's default
step), the same for the exact path (``..._exact``), ``RESULT peak_mem_mb`` (peak resident memory of the process
during the head's default step, model weights included), ``RESULT summary_floats_per_token`` (the summary's size
beside the d floats of the hidden state) and ``RESULT update_share_of_step``: the update's share of a whole training
step of the head (rollout with the features recorded + reward + update).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time

import psutil
import torch
from datasets import Dataset
from peft import LoraConfig
from trl import GRPOConfig, GRPOTrainer

from logitmlp_hf import LogitMLPForCausalLM, LogitMLPGRPOConfig, LogitMLPGRPOTrainer
from logitmlp_hf.hub.offline_model import load_embedded_model
from logitmlp_hf.logit_summary import LogitSummaryLayout
from logitmlp_hf.progress import progress_bar
from logitmlp_hf.tasks.rewards import MathVerifyReward


class PeakRSS:
    """Peak resident memory (MB) of this process while the block runs, sampled every 2 ms."""

    def __enter__(self) -> PeakRSS:
        self._proc = psutil.Process()
        self.before = self.peak = self._proc.memory_info().rss / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss / 2**20)


def make_rollouts(
    model: LogitMLPForCausalLM, tokenizer, n_prompts: int, group: int, tokens: int, timings: dict | None = None
) -> dict:
    prompts = [f"What is {3 * i + 4} + {7 * i + 2}?" for i in range(n_prompts)]
    texts = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False, add_generation_prompt=True)
        for p in prompts
        for _ in range(group)
    ]
    enc = tokenizer(texts, return_tensors="pt", padding=True)
    seconds = []
    for layout in (None, model.decoding_head.logit_summary_layout()):  # the exact path's rollout, then the default's
        torch.manual_seed(0)
        start = time.perf_counter()
        with model.record_generation_features(layout) as record:
            seqs = model.generate(
                **enc,
                do_sample=True,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                pad_token_id=tokenizer.pad_token_id,
            )
        completion = seqs[:, enc["input_ids"].shape[1] :]
        hidden, features = record.completion_features(*completion.shape)
        summaries = record.completion_summaries(*completion.shape)
        seconds.append(time.perf_counter() - start)
    plain_rollout_s, rollout_s = seconds
    start = time.perf_counter()
    texts_out = tokenizer.batch_decode(completion, skip_special_tokens=True)
    MathVerifyReward()(completions=texts_out, answer=[str(10 * i + 6) for i in range(n_prompts) for _ in range(group)])
    if timings is not None:
        timings.update(rollout_s=rollout_s, plain_rollout_s=plain_rollout_s, reward_s=time.perf_counter() - start)
    rewards = torch.tensor([float(i % 2) for i in range(len(texts))])  # half right per group: every group has signal
    advantages = (rewards.view(-1, group) - rewards.view(-1, group).mean(1, keepdim=True)).view(-1)
    mask = torch.ones_like(completion)
    return {
        "prompt_ids": enc["input_ids"],
        "prompt_mask": enc["attention_mask"],
        "completion_ids": completion,
        "completion_mask": mask,
        "advantages": advantages,
        "num_items_in_batch": mask.sum(),
        "logitmlp_hidden": hidden,
        "logitmlp_logit_features": features,
        "logitmlp_logit_summary": summaries,
    }


def time_steps(trainer, batch: dict, repeats: int) -> tuple[float, float, float]:
    """Median seconds of one step, and (before, peak) RSS in MB over the measured steps."""
    trainer.current_gradient_accumulation_steps = 1  # normally set by the training loop
    trainer.create_optimizer()
    model = trainer.model

    def step() -> None:
        loss = trainer.compute_loss(model, batch)
        loss.backward()
        trainer.optimizer.step()
        trainer.optimizer.zero_grad(set_to_none=True)

    model.train()
    step()  # warm-up: allocator, optimizer state
    times = []
    with PeakRSS() as mem:
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    return statistics.median(times), mem.before, mem.peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=2)
    parser.add_argument("--num-generations", type=int, default=4)
    parser.add_argument("--completion-tokens", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    batch_size = args.prompts * args.num_generations
    common = dict(
        per_device_train_batch_size=batch_size,
        num_generations=args.num_generations,
        max_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        loss_type="dapo",
        max_completion_length=args.completion_tokens,
        save_strategy="no",
    )
    dummy = Dataset.from_dict({"prompt": ["x"] * batch_size})
    reward = lambda completions, **kw: [0.0] * len(completions)  # noqa: E731  (never called: no generation here)
    results = {}
    # the five phases on stderr (a bar that keeps its elapsed time moving), so stdout holds only the table
    bar = progress_bar(total=5, desc="bench_train_step", unit="phase")
    with tempfile.TemporaryDirectory() as out:
        base, tokenizer = load_embedded_model()
        model = LogitMLPForCausalLM.from_base_model(base, init_std=0.02)
        timings: dict = {}
        bar.set_postfix_str("rollouts")
        batch = make_rollouts(model, tokenizer, args.prompts, args.num_generations, args.completion_tokens, timings)
        bar.update()
        n_tokens = int(batch["completion_mask"].sum())
        print(
            f"rollouts: {batch_size} sequences × {args.completion_tokens} completion tokens = {n_tokens} tokens, "
            f"SmolLM2-135M-Instruct fp32, torch {torch.__version__}, {torch.get_num_threads()} threads"
        )

        for name, path in [("LogitMLP head, summaries", "summary"), ("LogitMLP head, exact chunked", "exact")]:
            head = LogitMLPGRPOTrainer(
                model,
                reward,
                args=LogitMLPGRPOConfig(output_dir=out, update_logprobs=path, **common),
                train_dataset=dummy,
                processing_class=tokenizer,
            )
            head_batch = (
                batch if path == "summary" else {k: v for k, v in batch.items() if k != "logitmlp_logit_summary"}
            )
            bar.set_postfix_str(name)
            results[name] = time_steps(head, head_batch, args.repeats)
            bar.update()
            del head

        for name, peft_config in [
            ("TRL GRPO + LoRA r=16 (all linear)", LoraConfig(r=16, lora_alpha=32, target_modules="all-linear")),
            ("TRL GRPO full-parameter", None),
        ]:
            bar.set_postfix_str(name)
            policy, _ = load_embedded_model()
            trainer = GRPOTrainer(
                policy,
                reward,
                args=GRPOConfig(output_dir=out, learning_rate=1e-6, **common),
                train_dataset=dummy,
                processing_class=tokenizer,
                peft_config=peft_config,
            )
            results[name] = time_steps(
                trainer, {k: v for k, v in batch.items() if not k.startswith("logitmlp")}, args.repeats
            )
            bar.update()
            del trainer, policy
    bar.close()

    print(f"\n{'trainer':<38} {'step s':>8} {'tokens/s':>9} {'peak RSS MB':>12} {'+MB in step':>12}")
    for name, (seconds, before, peak) in results.items():
        print(f"{name:<38} {seconds:>8.3f} {n_tokens / seconds:>9.0f} {peak:>12.0f} {peak - before:>12.0f}")
    t_head = results["LogitMLP head, summaries"][0]
    t_exact = results["LogitMLP head, exact chunked"][0]
    t_lora, t_full = results["TRL GRPO + LoRA r=16 (all linear)"][0], results["TRL GRPO full-parameter"][0]
    whole = timings["rollout_s"] + timings["reward_s"] + t_head
    whole_exact = timings["plain_rollout_s"] + timings["reward_s"] + t_exact
    print(
        f"\nwhole head step, default: rollout {timings['rollout_s']:.2f} s (features and summaries recorded) + reward "
        f"{timings['reward_s']:.2f} s + update {t_head:.3f} s = {whole:.2f} s; exact path: rollout "
        f"{timings['plain_rollout_s']:.2f} s (features only) + reward + update {t_exact:.3f} s = {whole_exact:.2f} s"
    )
    width, d = LogitSummaryLayout().width, batch["logitmlp_hidden"].shape[-1]
    print(f"RESULT speedup_vs_trl_lora={t_lora / t_head:.2f}")
    print(f"RESULT speedup_vs_trl_full={t_full / t_head:.2f}")
    print(f"RESULT speedup_vs_trl_lora_exact={t_lora / t_exact:.2f}")
    print(f"RESULT speedup_vs_trl_full_exact={t_full / t_exact:.2f}")
    print(f"RESULT peak_mem_mb={results['LogitMLP head, summaries'][2]:.0f}")
    print(f"RESULT summary_floats_per_token={width} (hidden state: {d})")
    print(f"RESULT update_share_of_step={t_head / whole:.4f}")
    print(f"RESULT update_share_of_step_exact={t_exact / whole_exact:.4f}")
    print(f"RESULT summary_rollout_overhead={timings['rollout_s'] / timings['plain_rollout_s'] - 1:.4f}")


if __name__ == "__main__":
    main()
