"""What a decoding head reads from the frozen base besides its hidden state: logit features.

A head conditions on the final hidden state ``h`` and on a few statistics of the base logits ``ℓ``; training caches
both at rollout time so that the update never runs the base model again. This module is the one place that defines

- :class:`LogitStatistics` / :func:`logit_statistics` — max, mean and std of ``ℓ`` over its finite entries (the head's
  inputs besides ``h``);
- :class:`LogitFeatures` — those three plus the log-sum-exp of ``ℓ`` (for KL to the base), the per-token record the
  trainer caches, and its packed tensor layout ``(..., 4)``;
- :class:`Unembedding` — the base's ``h → ℓ`` map, to recompute logits from cached hidden states;
- :func:`cache_features` — one no-grad pass of the base that returns ``h`` and the packed features.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .errors import NonFiniteLogitsError


class LogitStatistics(NamedTuple):
    """Per-row statistics of the logits over finite entries (float32, no gradient)."""

    max: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor

    def as_features(self) -> torch.Tensor:
        """The three statistics stacked on a new last dimension, the order the head expects."""
        return torch.stack((self.max, self.mean, self.std), dim=-1)


class LogitFeatures(NamedTuple):
    """Per-token logit features cached at rollout time: the head's statistics and the base's log-sum-exp.

    Stored packed as one float32 tensor of shape ``(..., 4)`` (:meth:`pack`, :meth:`unpack`): that layout is what
    crosses TRL's hooks and what :meth:`~logitmlp_hf.heads.DecodingHead.token_logprobs` receives.
    """

    max: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    lse: torch.Tensor

    WIDTH = 4

    @classmethod
    def from_logits(cls, logits: torch.Tensor, stats: LogitStatistics | None = None) -> LogitFeatures:
        """The features of ``logits`` (``stats`` if the caller already has them)."""
        stats = logit_statistics(logits) if stats is None else stats
        return cls(stats.max, stats.mean, stats.std, torch.logsumexp(logits.float(), dim=-1))

    @property
    def stats(self) -> LogitStatistics:
        """The head's inputs (max, mean, std)."""
        return LogitStatistics(self.max, self.mean, self.std)

    def pack(self) -> torch.Tensor:
        """One float32 tensor ``(..., 4)``: max, mean, std, log-sum-exp."""
        return torch.stack(tuple(t.float() for t in self), dim=-1)

    @classmethod
    def unpack(cls, packed: torch.Tensor) -> LogitFeatures:
        """The inverse of :meth:`pack` (float32, any leading shape)."""
        if packed.shape[-1] != cls.WIDTH:
            raise ValueError(f"packed logit features have last dimension {cls.WIDTH}, got {tuple(packed.shape)}")
        return cls(*packed.float().unbind(-1))

    def reshape(self, *shape: int) -> LogitFeatures:
        """Every field reshaped (e.g. flattened to rows)."""
        return LogitFeatures(*(t.reshape(*shape) for t in self))


def logit_statistics(logits: torch.Tensor, check_finite: bool = True, host_sync: bool = True) -> LogitStatistics:
    """Max, mean and (population) std of ``logits`` along the last dimension, ignoring ``-inf`` entries.

    ``-inf`` entries are what other logits processors (``min_new_tokens``, bad-words, constrained decoding) and
    vocabulary padding write; including them would make mean/std ``-inf``/NaN. The statistics are computed in
    float32 whatever the model's dtype (bf16 sums over a 150k vocabulary lose the mean) and detached: the head
    is conditioned on them, gradients must not flow through them.

    Args:
        logits (`torch.Tensor` of shape `(..., vocab_size)`): raw next-token logits.
        check_finite (`bool`, *optional*, defaults to `True`):
            Raise :class:`NonFiniteLogitsError` on NaN, ``+inf``, or a row without any finite entry. The check
            costs one host synchronisation; turn it off only inside code that has already validated its input.
        host_sync (`bool`, *optional*, defaults to `True`):
            ``False`` never waits for the device: no finiteness check (``check_finite`` is ignored; NaN propagates
            into the statistics) and no data-dependent fast path. For hot paths on an asynchronous accelerator,
            such as vLLM's per-step ``compute_logits``, where a synchronisation would stall the scheduler.
    """
    x = logits.detach().float()
    row_max = x.amax(dim=-1)
    if check_finite and host_sync and not bool(torch.isfinite(row_max).all()):
        bad = int((~torch.isfinite(row_max)).sum())
        raise NonFiniteLogitsError(
            f"{bad} of {row_max.numel()} logit rows contain NaN or +inf, or have no finite entry at all; "
            "the LogitMLP warp is undefined there. Check the base model's dtype (fp16 overflow) and any logits "
            "processor that runs before the head."
        )
    if host_sync and bool((x.amin(dim=-1) > float("-inf")).all()):
        # Nothing masked (the usual case), told apart by the row minimum: counting finite entries (a comparison and
        # an integer sum) cost 5x the rest on CPU (64 x 49,152: 7 ms before, 1.4 ms now). The std is centred
        # (E[x²] − mean² would be 5x cheaper still but loses up to 1e-3 relative when |mean| ≫ std).
        mean = x.sum(dim=-1) / x.shape[-1]
        std = (x - mean.unsqueeze(-1)).square_().sum(dim=-1).div_(x.shape[-1]).sqrt_()
        return LogitStatistics(row_max, mean, std)
    finite = x > float("-inf")  # NaN compares False here but is caught by the max check above
    count = finite.sum(dim=-1)
    zeros = torch.zeros((), dtype=x.dtype, device=x.device)
    safe_count = count.clamp_min(1).to(x.dtype)
    mean = torch.where(finite, x, zeros).sum(dim=-1) / safe_count
    centred = torch.where(finite, x - mean.unsqueeze(-1), zeros)
    std = (centred.square().sum(dim=-1) / safe_count).sqrt()
    return LogitStatistics(row_max, mean, std)


def kl_from_log_probs(log_w: torch.Tensor, log_b: torch.Tensor) -> torch.Tensor:
    """KL(w ‖ b) per row from log-probabilities the caller already has; ``-inf`` entries of ``log_w`` contribute 0."""
    masked = torch.isneginf(log_w)
    if not bool(masked.any()):  # the usual case: one fused reduction instead of three more full passes
        return torch.linalg.vecdot(log_w.exp(), log_w - log_b)
    terms = log_w.exp() * (log_w - log_b)
    return torch.where(masked, torch.zeros_like(terms), terms).sum(-1)


def warp_kl(warped_logits: torch.Tensor, base_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(warped) ‖ softmax(base)) per row, in nats (float32); tokens masked to ``-inf`` contribute 0."""
    return kl_from_log_probs(
        torch.log_softmax(warped_logits.float(), dim=-1), torch.log_softmax(base_logits.float(), dim=-1)
    )


@dataclass
class Unembedding:
    """How the frozen base turns a final hidden state into logits: ``softcap·tanh((h·Wᵀ + bias)/softcap)``."""

    weight: torch.Tensor
    bias: torch.Tensor | None = None
    softcap: float | None = None

    @classmethod
    def from_model(cls, lm: nn.Module) -> Unembedding:
        """Read the unembedding of a transformers causal LM (unwrapped: not a `PeftModel`)."""
        out = lm.get_output_embeddings()
        if hasattr(out, "get_base_layer"):  # a PEFT wrapper: its adapter weights are not in `out.weight`
            raise NotImplementedError(
                "the base's lm_head carries a PEFT adapter; cached log-probs read the plain unembedding. "
                "Merge the adapter into the base first (PeftModel.merge_and_unload())."
            )
        weight = out.weight
        softcap = getattr(lm.config.get_text_config(), "final_logit_softcapping", None)
        return cls(weight=weight.detach(), bias=None if out.bias is None else out.bias.detach(), softcap=softcap)

    def target_logits(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The logit of ``targets`` only, float32: one unembedding row per position instead of the vocabulary.

        Accumulated in float32 and rounded to the hidden states' dtype, as the matrix product in :meth:`logits` does,
        so a bf16 base gives the same bf16 logit (a product in bf16 itself would be off by up to an ulp, 0.125 at 30).
        """
        weight = self.weight[targets]
        logits = torch.linalg.vecdot(hidden.float(), weight.float()).to(hidden.dtype).float()
        if self.bias is not None:
            logits = logits + self.bias.float()[targets]
        if self.softcap:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        weight = self.weight if self.weight.dtype == hidden.dtype else self.weight.to(hidden.dtype)
        logits = (hidden @ weight.T).float()
        if self.bias is not None:
            logits = logits + self.bias.float()
        if self.softcap:
            logits = self.softcap * torch.tanh(logits / self.softcap)
        return logits


@torch.no_grad()
def cache_features(
    lm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int, chunk_size: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """One no-grad pass of the frozen base: what the update needs for the last ``logits_to_keep`` tokens.

    Position ``t`` of the result predicts token ``input_ids[:, -logits_to_keep + t]`` (the usual causal shift).

    Returns:
        ``hidden`` of shape ``(B, logits_to_keep, d)`` in the model's dtype, and ``logit_features`` of shape
        ``(B, logits_to_keep, 4)`` in float32 — max, mean and std of the logits (the head's inputs) and their
        log-sum-exp (for KL to the base): ``d + 4`` numbers per token, whatever the vocabulary size.
    """
    captured: dict[str, torch.Tensor] = {}

    def keep_last_hidden_state(module: nn.Module, args: tuple, output) -> None:
        captured["h"] = output[0] if isinstance(output, tuple) else output.last_hidden_state

    # The decoder's post-norm output for every position; the LM itself computes logits for one position only, so the
    # tokens × vocab logits are never materialised at once (they are recomputed chunk by chunk below).
    handle = lm.get_decoder().register_forward_hook(keep_last_hidden_state)
    try:
        lm(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=1, use_cache=False)
    finally:
        handle.remove()
    hidden = captured["h"][:, -logits_to_keep - 1 : -1]
    unembedding = Unembedding.from_model(lm)
    flat = hidden.reshape(-1, hidden.shape[-1])
    features = []
    for i in range(0, len(flat), chunk_size):
        features.append(LogitFeatures.from_logits(unembedding.logits(flat[i : i + chunk_size])).pack())
    return hidden, torch.cat(features).reshape(*hidden.shape[:-1], LogitFeatures.WIDTH)
