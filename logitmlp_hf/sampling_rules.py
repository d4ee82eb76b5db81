"""Hand-set sampling rules (temperature, top-k, top-p, min-p, greedy) with *per-row* parameters.

transformers' warpers take one value for the whole batch; learned decoding policies choose a temperature, a top-p or
a whole strategy per token or per sequence, so they need the same rules with a value per row. Each function here
reproduces the corresponding transformers warper (``TemperatureLogitsWarper``, ``TopKLogitsWarper``,
``TopPLogitsWarper``, ``MinPLogitsWarper``, with ``min_tokens_to_keep=1``) row by row, which the tests check, and
:func:`apply_sampling_rules` chains them in ``generate``'s order (temperature, top-k, top-p, min-p). Removed tokens
get ``-inf``; the result is float32.
"""

from __future__ import annotations

import torch


_NEG_INF = float("-inf")


def _rows(value: torch.Tensor | float | int, logits: torch.Tensor) -> torch.Tensor:
    """``value`` broadcast to the logits' leading shape, with a trailing vocabulary axis."""
    return torch.as_tensor(value, device=logits.device).expand(logits.shape[:-1]).unsqueeze(-1)


def greedy_logits(logits: torch.Tensor) -> torch.Tensor:
    """Only each row's argmax (the first, on ties, as ``torch.argmax``) keeps its logit; the rest are ``-inf``."""
    x = logits.float()
    keep = torch.zeros_like(x, dtype=torch.bool).scatter_(-1, x.argmax(-1, keepdim=True), True)
    return x.masked_fill(~keep, _NEG_INF)


def temperature_logits(logits: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
    """``logits / T`` per row; rows with ``T == 0`` are greedy (:func:`greedy_logits`)."""
    x = logits.float()
    t = _rows(temperature, x).float()
    scaled = x / torch.where(t > 0, t, torch.ones_like(t))
    if bool((t == 0).any()):
        scaled = torch.where(t == 0, greedy_logits(x), scaled)
    return scaled


def top_k_logits(logits: torch.Tensor, top_k: torch.Tensor | int) -> torch.Tensor:
    """Keep each row's ``k`` largest logits (ties at the k-th value kept, as transformers); ``k <= 0`` keeps all."""
    x = logits.float()
    k = _rows(top_k, x).long().clamp(max=x.shape[-1])
    kth = x.sort(dim=-1, descending=True).values.gather(-1, (k - 1).clamp(min=0))
    return torch.where((k > 0) & (x < kth), torch.full_like(x, _NEG_INF), x)


def top_p_logits(logits: torch.Tensor, top_p: torch.Tensor | float) -> torch.Tensor:
    """Nucleus sampling per row, exactly as ``TopPLogitsWarper``: drop the tokens whose ascending cumulative
    probability is ``<= 1 − top_p``, always keeping the most likely one. ``top_p >= 1`` keeps all."""
    x = logits.float()
    p = _rows(top_p, x).float()
    sorted_logits, sorted_idx = torch.sort(x, descending=False)
    cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    remove_sorted = cumulative <= (1 - p)
    remove_sorted[..., -1:] = False
    remove = remove_sorted.scatter(-1, sorted_idx, remove_sorted)
    return x.masked_fill(remove & (p < 1), _NEG_INF)


def min_p_logits(logits: torch.Tensor, min_p: torch.Tensor | float) -> torch.Tensor:
    """Min-p per row, as ``MinPLogitsWarper``: drop tokens whose probability is below ``min_p × max prob``."""
    x = logits.float()
    m = _rows(min_p, x).float()
    probs = x.softmax(dim=-1)
    remove = probs < m * probs.amax(dim=-1, keepdim=True)
    # the most likely token always stays (min_tokens_to_keep=1), even when min_p > 1 rounds against it
    remove.scatter_(-1, x.argmax(-1, keepdim=True), False)
    return x.masked_fill(remove, _NEG_INF)


def apply_sampling_rules(
    logits: torch.Tensor,
    temperature: torch.Tensor | float | None = None,
    top_k: torch.Tensor | int | None = None,
    top_p: torch.Tensor | float | None = None,
    min_p: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Temperature, then top-k, top-p and min-p (``generate``'s order), each with a value per row or one for all.

    ``None`` skips a rule; per-row "off" values are ``T = 1``, ``top_k <= 0``, ``top_p >= 1`` and ``min_p = 0``.
    ``T = 0`` is greedy for that row.
    """
    x = logits.float()
    if temperature is not None:
        x = temperature_logits(x, temperature)
    if top_k is not None:
        x = top_k_logits(x, top_k)
    if top_p is not None:
        x = top_p_logits(x, top_p)
    if min_p is not None:
        x = min_p_logits(x, min_p)
    return x


__all__ = [
    "apply_sampling_rules",
    "greedy_logits",
    "min_p_logits",
    "temperature_logits",
    "top_k_logits",
    "top_p_logits",
]
