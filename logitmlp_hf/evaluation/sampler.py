"""Seeded, batch-independent sampling: every sample draws its token noise from its own generator.

Decoding runs in greedy mode and :class:`SeededGumbelSampler`, the last logits processor, adds seeded Gumbel noise to
the final (warped, temperature-scaled, truncated) scores, so the argmax is an exact sample from the distribution
``do_sample=True`` would draw from (the Gumbel-max trick), with noise that does not depend on which other rows share
the batch.

[`sample_completions`] is the evaluation's decoding loop: the same computation as ``generate`` in greedy mode with
these processors, shaped for many samples of few short prompts. Each prompt is prefilled once and its KV cache
repeated to its samples, and a row leaves the batch (and the cache) as soon as it has emitted an end-of-sequence
token, so no step is spent on finished rows or on recomputing a shared prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any

import numpy as np
import torch
from transformers import LogitsProcessor, LogitsProcessorList


def sample_seed(seed: int, problem_id: int, sample: int) -> int:
    """The 63-bit seed of one sample's noise stream (a hash of the three numbers, not a simple sum)."""
    return int(
        np.random.SeedSequence([seed, problem_id, sample]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)
    )


class SeededGumbelSampler(LogitsProcessor):
    """Adds per-row seeded Gumbel noise, turning greedy decoding into exact sampling from ``softmax(scores)``.

    ``argmax(scores + G)`` with ``G`` i.i.d. standard Gumbel is distributed as ``softmax(scores)`` (the Gumbel-max
    trick); ``-inf`` scores stay ``-inf``. Each row owns a generator, so its samples do not depend on the other rows.
    Must be the last processor (after temperature, top-k, top-p, min-p).

    Args:
        row_seeds (`Sequence[int]`): One seed per batch row (see [`sample_seed`]).
        device (`torch.device`): Where the scores live.
    """

    def __init__(self, row_seeds: Sequence[int], device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in row_seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"SeededGumbelSampler was built for {len(self.generators)} rows, got {scores.shape[0]}")
        # Each row's noise is drawn straight into its row of one buffer (a stack of per-row draws cost a full extra
        # copy per step); the values are the same draws, so samples do not change.
        noise = torch.empty(scores.shape, dtype=torch.float32, device=self.device)
        for row, generator in zip(noise, self.generators):
            torch.rand(row.shape, generator=generator, device=self.device, dtype=torch.float32, out=row)
        # Clamp away from 0 and 1 so the double log is finite (float32: the extreme Gumbel values are ~±4.5 and 16).
        # In place: -log(-log(u)), three passes over one buffer.
        tiny = torch.finfo(torch.float32).tiny
        gumbel = noise.clamp_(min=tiny, max=1.0 - 2**-24).log_().neg_().log_().neg_()
        return gumbel.add_(scores.float())

    def select(self, rows: Sequence[int] | torch.Tensor) -> SeededGumbelSampler:
        """A sampler for the given rows only (their generators, shared and not copied: their streams continue)."""
        kept = SeededGumbelSampler.__new__(SeededGumbelSampler)
        kept.device = self.device
        kept.generators = [self.generators[int(r)] for r in rows]
        return kept


@torch.inference_mode()
def sample_completions(
    model: Any,
    prompts: Sequence[Sequence[int]],
    samples_per_prompt: int,
    *,
    max_new_tokens: int,
    eos_token_ids: Collection[int],
    pad_token_id: int,
    row_seeds: Sequence[int] | None = None,
    logits_processor: LogitsProcessorList | None = None,
    on_step: Callable[[int], None] | None = None,
) -> list[list[int]]:
    """Decode ``samples_per_prompt`` completions of every prompt: greedy, or seeded sampling with ``row_seeds``.

    The result equals greedy ``generate`` with ``logits_processor`` (then [`SeededGumbelSampler`] with ``row_seeds``,
    when given) on the prompts repeated ``samples_per_prompt`` times, up to floating-point differences of batched
    forwards of other shapes (which can flip a token only at an exact near-tie). It computes less: each prompt is
    prefilled once and its KV cache repeated to its samples, and a row leaves the batch and the cache at its first
    end-of-sequence token.

    The processors must treat rows independently (temperature, top-k/top-p/min-p and other per-row warpers): the
    batch shrinks as rows finish. ``model`` is a causal LM (or a decoding-head model whose head decides per token
    without a decoding context) whose ``forward`` takes ``position_ids``, ``past_key_values`` and ``logits_to_keep``.

    Args:
        model (`PreTrainedModel`, `PeftModel` or `DecodingHeadForCausalLM`): What computes the next-token logits.
        prompts (`Sequence[Sequence[int]]`): Prompt token ids (no padding).
        samples_per_prompt (`int`): Rows per prompt.
        max_new_tokens (`int`): Completion length limit.
        eos_token_ids (`Collection[int]`): Tokens that end a completion (kept as its last token).
        pad_token_id (`int`): Left padding of the prompts.
        row_seeds (`Sequence[int]`, *optional*): One seed per row, prompt-major (row ``p * samples_per_prompt + s``);
            ``None`` decodes greedily.
        logits_processor (`LogitsProcessorList`, *optional*): Applied to each step's float32 scores, before the noise.
        on_step (`Callable[[int], None]`, *optional*): Called after each decoding step with the rows still running.

    Returns:
        `list[list[int]]`: Each row's completion, prompt-major, through its first end-of-sequence token.
    """
    n_rows = len(prompts) * samples_per_prompt
    if samples_per_prompt < 1 or not prompts:
        raise ValueError(
            f"need at least one prompt and one sample per prompt, got {len(prompts)} and {samples_per_prompt}"
        )
    if row_seeds is not None and len(row_seeds) != n_rows:
        raise ValueError(f"row_seeds has {len(row_seeds)} seeds for {n_rows} rows")
    device = next(model.parameters()).device
    processors = logits_processor if logits_processor is not None else LogitsProcessorList()
    sampler = SeededGumbelSampler(row_seeds, device) if row_seeds is not None else None
    eos = torch.tensor(sorted(eos_token_ids), dtype=torch.long, device=device)

    # Prefill: one row per prompt, left-padded; positions count real tokens only (as generate computes them).
    width = max(len(p) for p in prompts)
    input_ids = torch.full((len(prompts), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, ids in enumerate(prompts):
        input_ids[i, width - len(ids) :] = torch.as_tensor(list(ids), dtype=torch.long)
        attention_mask[i, width - len(ids) :] = 1
    input_ids, attention_mask = input_ids.to(device), attention_mask.to(device)
    position_ids = (attention_mask.cumsum(-1) - 1).clamp_(min=0)
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=True,
        logits_to_keep=1,
    )
    cache = out.past_key_values
    scores = out.logits[:, -1].float()
    if samples_per_prompt > 1:  # every sample of a prompt starts from the prompt's one prefill
        cache.batch_repeat_interleave(samples_per_prompt)
        scores = scores.repeat_interleave(samples_per_prompt, dim=0)
        input_ids = input_ids.repeat_interleave(samples_per_prompt, dim=0)
        attention_mask = attention_mask.repeat_interleave(samples_per_prompt, dim=0)
    next_position = position_ids[:, -1:].repeat_interleave(samples_per_prompt, dim=0) + 1

    completions: list[list[int]] = [[] for _ in range(n_rows)]
    alive = torch.arange(n_rows, device=device)  # the original row of each batch row
    generated = torch.empty((n_rows, 0), dtype=torch.long, device=device)
    for step in range(max_new_tokens):
        # Processors see what generate would pass them: the prompt and the tokens so far.
        scores = processors(torch.cat([input_ids, generated], dim=1), scores)
        if sampler is not None:
            scores = sampler(None, scores)
        tokens = scores.argmax(-1)
        generated = torch.cat([generated, tokens[:, None]], dim=1)
        finished = torch.isin(tokens, eos)
        for row, token in zip(alive.tolist(), tokens.tolist()):
            completions[row].append(token)
        if step == max_new_tokens - 1:
            break
        if bool(finished.any()):
            keep = (~finished).nonzero().view(-1)
            if keep.numel() == 0:
                break
            # The finished rows leave the batch: their cache, mask, positions and noise streams go with them.
            cache.batch_select_indices(keep)
            alive, generated, input_ids = alive[keep], generated[keep], input_ids[keep]
            attention_mask, next_position, tokens = attention_mask[keep], next_position[keep], tokens[keep]
            if sampler is not None:
                sampler = sampler.select(keep.tolist())
        if on_step is not None:
            on_step(int(alive.numel()))
        attention_mask = torch.cat([attention_mask, attention_mask.new_ones((attention_mask.shape[0], 1))], dim=1)
        out = model(
            input_ids=tokens[:, None],
            attention_mask=attention_mask,
            position_ids=next_position,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.past_key_values
        next_position = next_position + 1
        scores = out.logits[:, -1].float()
    return completions


__all__ = ["SeededGumbelSampler", "sample_completions", "sample_seed"]
