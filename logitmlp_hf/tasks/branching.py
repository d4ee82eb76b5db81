"""A controlled task on which the best per-token warp is known and no fixed temperature reaches it.

Each problem is three digits ``x y z`` (``x`` in 1..6, ``y``, ``z`` in 0..9) and its answer is three digits too:

- position 0, **exploration**: the right digit is ``x + c`` with ``c`` in {1, 2, 3} drawn per problem and not
  visible in the prompt. The base model gives the decoy ``x`` probability ``decoy_prob`` (it is never right), each
  of the three candidates ``candidate_prob``, and spreads the rest over the other digits (the tail). Sampling the
  right digit needs the candidates *flattened against the decoy* while the tail stays cold: a warp with a low slope
  above a breakpoint just under the candidates and a high slope below it.
- positions 1 and 2, **precision**: the right digit is ``y`` (then ``z``); the base gives it ``precision_prob`` and
  spreads the rest over the three digits after it (mod 10). Here the best warp is as cold as allowed.

A fixed temperature trades one kind of position against the other (hot helps position 0 only until the tail takes
over, and hurts positions 1-2); a per-token warp need not. Since the right completion is unique, the probability that
one sample is right is exactly the product of the three right digits' probabilities along the reference path, so
the oracle (the best warp per position) is found by exhaustive search (:mod:`logitmlp_hf.evaluation.exact`).

No pretrained model has this structure, so the base is a small Llama built and trained in code
([`train_branching_base`]) to the distributions above (trained on the distributions themselves, not on samples:
its conditionals match them to within a small KL, which [`branching_base_fit`] reports). Answers are plain digit
strings, graded by the package's usual math-verify reward.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from .data import build_prompt


logger = logging.getLogger(__name__)

__all__ = [
    "BRANCHING_POSITION_TYPES",
    "BranchingTaskConfig",
    "branching_base_fit",
    "branching_targets",
    "branching_tokenizer",
    "make_branching_splits",
    "train_branching_base",
]

DIGITS = [str(d) for d in range(10)]
SPECIAL_TOKENS = ["<pad>", "<s>", "<|end|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
BRANCHING_POSITION_TYPES = ("exploration", "precision", "precision")
"""The kind of each answer position (the end-of-answer token after them is neither)."""


@dataclass
class BranchingTaskConfig:
    """The controlled task's distributions and the base model built for it.

    Args:
        decoy_prob (`float`, *optional*, defaults to `0.40`): Base probability of the (always wrong) decoy at the
            exploration position.
        candidate_prob (`float`, *optional*, defaults to `0.15`): Base probability of each of the three candidates
            there (one of which is right, uniformly at random per problem); the tail gets what is left.
        precision_prob (`float`, *optional*, defaults to `0.55`): Base probability of the right digit at each
            precision position; the three digits after it share the rest equally.
        hidden_size (`int`, *optional*, defaults to `64`): The base Llama's width (2 layers, 4 heads).
        train_steps (`int`, *optional*, defaults to `600`): Optimiser steps fitting the base to the distributions.
        seed (`int`, *optional*, defaults to `0`): Seeds the base model's initialisation and training.
    """

    decoy_prob: float = 0.40
    candidate_prob: float = 0.15
    precision_prob: float = 0.55
    hidden_size: int = 64
    train_steps: int = 600
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("decoy_prob", "candidate_prob", "precision_prob"):
            value = getattr(self, name)
            if not 0.0 < value < 1.0:
                raise ValueError(f"BranchingTaskConfig.{name} must be in (0, 1), got {value}")
        if self.decoy_prob + 3 * self.candidate_prob >= 1.0:
            raise ValueError(
                f"decoy_prob + 3 * candidate_prob = {self.decoy_prob + 3 * self.candidate_prob:.3f} must be < 1 "
                "(the tail needs some probability)"
            )
        if self.hidden_size < 8 or self.train_steps < 1:
            raise ValueError("hidden_size must be >= 8 and train_steps >= 1")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def branching_tokenizer():
    """The task's tokenizer: the ten digits and five special tokens, one token per character, with a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + DIGITS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<pad>"))
    backend.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    backend.decoder = decoders.Fuse()
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="<|end|>", padding_side="left"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def branching_targets(config: BranchingTaskConfig, x: int, y: int, z: int) -> torch.Tensor:
    """The base's intended next-token distributions at the 3 answer positions and the end, shape ``(4, vocab)``.

    Position 1 and 2 do not depend on the digits sampled before them: the positions are independent given the
    prompt, which is what makes the reference-path probability the whole story.
    """
    vocab = len(SPECIAL_TOKENS) + len(DIGITS)
    digit = {d: len(SPECIAL_TOKENS) + d for d in range(10)}
    out = torch.zeros(4, vocab, dtype=torch.float64)
    candidates = [x + 1, x + 2, x + 3]
    tail = [d for d in range(10) if d != x and d not in candidates]
    out[0, digit[x]] = config.decoy_prob
    for d in candidates:
        out[0, digit[d]] = config.candidate_prob
    for d in tail:
        out[0, digit[d]] = (1.0 - config.decoy_prob - 3 * config.candidate_prob) / len(tail)
    for row, right in ((1, y), (2, z)):
        out[row, digit[right]] = config.precision_prob
        for step in (1, 2, 3):
            out[row, digit[(right + step) % 10]] = (1.0 - config.precision_prob) / 3
    out[3, SPECIAL_TOKENS.index("<|end|>")] = 1.0
    return out


def _all_prompts() -> list[tuple[int, int, int]]:
    return [(x, y, z) for x in range(1, 7) for y in range(10) for z in range(10)]


def _prompt_ids(tokenizer, x: int, y: int, z: int) -> list[int]:
    text = tokenizer.apply_chat_template(build_prompt(f"{x}{y}{z}"), add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def train_branching_base(config: BranchingTaskConfig, output_dir: str | Path | None = None, progress=None):
    """Build the task's base model (a small Llama) and fit it to [`branching_targets`] on every prompt.

    Trained with the cross-entropy against the target distributions (soft labels) at the 4 answer positions, along
    prefixes whose earlier answer digits are sampled from the targets, so that every context the task can reach is
    seen. Deterministic for a given seed on a given machine.

    Args:
        config ([`BranchingTaskConfig`]): Distributions, size and seed.
        output_dir (`str` or `Path`, *optional*): If given, save the model and tokenizer there
            (``save_pretrained``), so heads can name it as their base.
        progress (`Callable[[int, int], None]`, *optional*): Called with ``(step, total)`` after each step.

    Returns:
        `(LlamaForCausalLM, PreTrainedTokenizerFast)`.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = branching_tokenizer()
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    model = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=config.hidden_size,
            intermediate_size=2 * config.hidden_size,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=64,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            tie_word_embeddings=False,
        )
    )
    prompts = _all_prompts()
    targets = {p: branching_targets(config, *p).float() for p in prompts}
    prompt_len = len(_prompt_ids(tokenizer, *prompts[0]))
    prompt_ids = {p: _prompt_ids(tokenizer, *p) for p in prompts}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, config.train_steps)
    batch = 256
    model.train()
    for step in range(config.train_steps):
        chosen = [prompts[rng.randrange(len(prompts))] for _ in range(batch)]
        rows, soft = [], []
        for p in chosen:
            t = targets[p]
            answer = [int(torch.multinomial(t[i], 1)) for i in range(3)]
            rows.append(prompt_ids[p] + answer)
            soft.append(t)
        input_ids = torch.tensor(rows)
        logits = model(input_ids=input_ids).logits[:, prompt_len - 1 :, :].float()  # (B, 4, V)
        loss = -(torch.stack(soft) * torch.log_softmax(logits, dim=-1)).sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if progress is not None:
            progress(step + 1, config.train_steps)
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    if output_dir is not None:
        model.save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    return model, tokenizer


@torch.no_grad()
def branching_base_fit(model, tokenizer, config: BranchingTaskConfig, n_prompts: int = 100) -> dict[str, float]:
    """How well the base matches the intended distributions: mean and max KL(target ‖ model) per answer position,
    along reference paths of ``n_prompts`` prompts (nats)."""
    prompts = _all_prompts()[:: max(1, len(_all_prompts()) // n_prompts)][:n_prompts]
    kls = []
    for x, y, z in prompts:
        ids = _prompt_ids(tokenizer, x, y, z) + [len(SPECIAL_TOKENS) + d for d in (x + 1, y, z)]
        logits = model(input_ids=torch.tensor([ids])).logits[0, -4:].double()
        target = branching_targets(config, x, y, z)
        log_q = torch.log_softmax(logits, -1)
        kl = (target * (torch.log(target.clamp_min(1e-300)) - log_q)).where(target > 0, 0.0).sum(-1)
        kls.append(kl)
    kl = torch.stack(kls)
    return {"kl_mean": float(kl.mean()), "kl_max": float(kl.max())}


def make_branching_splits(n_train: int, n_validation: int, n_test: int, seed: int = 0):
    """Disjoint train / validation / test problem sets (no prompt is shared across sets).

    Each row has ``prompt`` (chat messages), ``question`` (the three digits), ``answer`` (the three right digits)
    and ``candidate_offset`` (``c``). There are 600 prompts; every prompt appears once, with its own ``c``.

    Returns:
        `(Dataset, Dataset, Dataset)`.
    """
    from datasets import Dataset

    prompts = _all_prompts()
    total = n_train + n_validation + n_test
    if total > len(prompts):
        raise ValueError(
            f"n_train + n_validation + n_test = {total}, but the branching task has {len(prompts)} prompts"
        )
    if min(n_train, n_validation, n_test) < 1:
        raise ValueError("n_train, n_validation and n_test must all be >= 1")
    rng = random.Random(seed)
    rng.shuffle(prompts)

    def rows(chosen):
        offsets = [rng.randint(1, 3) for _ in chosen]
        return Dataset.from_dict(
            {
                "prompt": [build_prompt(f"{x}{y}{z}") for x, y, z in chosen],
                "question": [f"{x}{y}{z}" for x, y, z in chosen],
                "answer": [f"{x + c}{y}{z}" for (x, y, z), c in zip(chosen, offsets)],
                "candidate_offset": offsets,
            }
        )

    return (
        rows(prompts[:n_train]),
        rows(prompts[n_train : n_train + n_validation]),
        rows(prompts[n_train + n_validation : total]),
    )
