"""Hand-set sampling rules (temperature, top-k, top-p, min-p, greedy): :class:`SamplingRule`, and the same rules as
tensor functions with *per-row* parameters.

transformers' warpers take one value for the whole batch; learned decoding policies choose a temperature, a top-p or
a whole strategy per token or per sequence, so they need the same rules with a value per row. Each function here
reproduces the corresponding transformers warper (``TemperatureLogitsWarper``, ``TopKLogitsWarper``,
``TopPLogitsWarper``, ``MinPLogitsWarper``, with ``min_tokens_to_keep=1``) row by row, which the tests check, and
:func:`apply_sampling_rules` chains them in ``generate``'s order (temperature, top-k, top-p, min-p). Removed tokens
get ``-inf``; the result is float32.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch
from transformers import (
    LogitsProcessorList,
    MinPLogitsWarper,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)


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


def _fmt(value: float) -> str:
    """Shortest exact spelling of a float, without a trailing ``.0`` (``1.0`` → ``"1"``, ``0.7`` → ``"0.7"``)."""
    text = repr(float(value))
    return text.removesuffix(".0")


@dataclass(frozen=True)
class SamplingRule:
    """A fixed sampling rule: a temperature with optional top-k / top-p / min-p truncation, in ``generate``'s order.

    The package's one representation of a static rule: evaluation policies (:class:`~logitmlp_hf.evaluation.
    policies.DecodingPolicy`), the sequence adapter's strategies and the baselines all build it, and it turns into
    transformers' warpers (:meth:`warpers`) or per-row tensor functions (:meth:`apply`), which the tests check agree.

    Args:
        temperature (`float`, *optional*, defaults to `1.0`): Sampling temperature, ``>= 0``; 0 means greedy.
        top_k (`int`, *optional*): Keep the ``top_k`` most likely tokens.
        top_p (`float`, *optional*): Nucleus sampling threshold, in ``(0, 1]``.
        min_p (`float`, *optional*): Min-p threshold (relative to the top token's probability), in ``[0, 1]``.

    The fields mean what they mean in [`~logitmlp_hf.evaluation.runner.DecodingPolicy`] (transformers' warpers), so a
    strategy is evaluated with ``parse_policy(strategy.to_policy_string())``.
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None

    def __post_init__(self) -> None:
        # Normalise types (frozen, hence object.__setattr__) so that e.g. top_p=1 and top_p=1.0 are the same strategy.
        object.__setattr__(self, "temperature", float(self.temperature))
        if not math.isfinite(self.temperature) or self.temperature < 0:
            raise ValueError(f"temperature must be finite and >= 0, got {self.temperature}")
        if self.top_k is not None:
            if isinstance(self.top_k, bool) or int(self.top_k) != self.top_k or self.top_k < 1:
                raise ValueError(f"top_k must be an integer >= 1, got {self.top_k}")
            object.__setattr__(self, "top_k", int(self.top_k))
        if self.top_p is not None:
            object.__setattr__(self, "top_p", float(self.top_p))
            if not 0.0 < self.top_p <= 1.0:
                raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None:
            object.__setattr__(self, "min_p", float(self.min_p))
            if not 0.0 <= self.min_p <= 1.0:
                raise ValueError(f"min_p must be in [0, 1], got {self.min_p}")

    @property
    def greedy(self) -> bool:
        """Temperature 0: argmax decoding, which no truncation rule changes."""
        return self.temperature == 0.0

    @property
    def name(self) -> str:
        """A short unique label, e.g. ``"T=0.7,top_p=0.9"`` or ``"T=0"``."""
        parts = [f"T={_fmt(self.temperature)}"]
        if self.top_k is not None:
            parts.append(f"top_k={self.top_k}")
        if self.top_p is not None:
            parts.append(f"top_p={_fmt(self.top_p)}")
        if self.min_p is not None:
            parts.append(f"min_p={_fmt(self.min_p)}")
        return ",".join(parts)

    def canonical(self) -> SamplingRule:
        """The same decoding distribution with no-op settings dropped.

        Greedy drops all truncation (the argmax survives every truncation rule); ``top_p=1`` and ``min_p=0`` keep
        every token and become ``None``. Two strategies with equal canonical forms decode identically.
        """
        if self.greedy:
            return SamplingRule(temperature=0.0)
        return SamplingRule(
            temperature=self.temperature,
            top_k=self.top_k,
            top_p=None if self.top_p == 1.0 else self.top_p,
            min_p=None if self.min_p == 0.0 else self.min_p,
        )

    def to_policy_string(self) -> str:
        """A policy string for [`~logitmlp_hf.evaluation.runner.parse_policy`], e.g. ``"temperature:0.7:top_p=0.9"``.

        The policy's name defaults to this string (``name`` is not embedded: [`name`] contains ``,`` and ``=``,
        which the policy syntax reserves).
        """
        options = [f"{key}={value if key == 'top_k' else _fmt(value)}" for key, value in self._truncation().items()]
        spec = f"temperature:{_fmt(self.temperature)}"
        return f"{spec}:{','.join(options)}" if options else spec

    def _truncation(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in ("top_k", "top_p", "min_p") if getattr(self, key) is not None}

    def warpers(self) -> LogitsProcessorList:
        """transformers' own warpers for this rule, in ``generate(do_sample=True)``'s order; rules at their neutral
        value add none. Greedy keeps its truncation at T = 1 (the argmax is the same either way)."""
        warpers = LogitsProcessorList()
        if not self.greedy and self.temperature != 1.0:
            warpers.append(TemperatureLogitsWarper(self.temperature))
        if self.top_k is not None:
            warpers.append(TopKLogitsWarper(top_k=self.top_k))
        if self.top_p is not None and self.top_p < 1.0:
            warpers.append(TopPLogitsWarper(top_p=self.top_p))
        if self.min_p is not None:
            warpers.append(MinPLogitsWarper(min_p=self.min_p))
        return warpers

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        """The rule on ``logits`` as tensor functions (float32, ``-inf`` for removed tokens); greedy keeps the argmax."""
        return apply_sampling_rules(logits, self.temperature, self.top_k, self.top_p, self.min_p)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SamplingRule:
        return cls(**{key: data[key] for key in ("temperature", "top_k", "top_p", "min_p") if key in data})


__all__ = [
    "SamplingRule",
    "apply_sampling_rules",
    "greedy_logits",
    "min_p_logits",
    "temperature_logits",
    "top_k_logits",
    "top_p_logits",
]
