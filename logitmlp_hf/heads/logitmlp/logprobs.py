"""Log-probabilities of the warped policy from cached features, with an analytic gradient.

The base model is frozen, so a token's policy log-prob depends on the head's parameters θ only through
``(s1, s2, b) = φ_θ(h, stats)``; the logits ``ℓ = unembed(h)`` are constants. Training therefore never runs the base
model again after the rollout: it caches ``h`` (d floats per token) and the logit statistics (3 floats), and for
every gradient step recomputes ``ℓ`` chunk by chunk from ``h`` and the unembedding, evaluating

    log p(y) = f(ℓ_y)/T − logsumexp_v f(ℓ_v)/T

together with the three expectations its gradient needs (``p = softmax(f/T)``)::

    ∂ log p(y) / ∂s1 = (min(ℓ_y, b) − E_p[min(ℓ, b)]) / T
    ∂ log p(y) / ∂s2 = (ReLU(ℓ_y − b) − E_p[ReLU(ℓ − b)]) / T
    ∂ log p(y) / ∂b  = (s1 − s2) · (1[ℓ_y > b] − P_p(ℓ > b)) / T

Autograd only sees the (tokens × 3) parameters and the tiny head; nothing of size tokens × vocab is kept for the
backward pass. The same pass yields the policy entropy and KL(warp‖base) for logging at no extra matmul.

With a logit summary cached at rollout time (:mod:`logitmlp_hf.logit_summary`), :func:`summary_token_logprobs` needs
no vocabulary pass at all: the target's logit is one dot product with its unembedding row, and ``log Z`` and its
three derivatives come from the summary. Rows whose certified error bound exceeds the tolerance are recomputed
exactly, so the result stays within the tolerance of this exact path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from ...features import LogitFeatures, Unembedding
from ...logit_summary import LogitSummaryLayout, log_partition
from ..base import HeadTokenStats
from .transform import warp_parameters


if TYPE_CHECKING:  # the head calls this module; it is only a type here
    from .head import LogitMLPHead


@torch.no_grad()
def _chunk_pass(
    logits: torch.Tensor,
    targets: torch.Tensor,
    s1: torch.Tensor,
    s2: torch.Tensor,
    b: torch.Tensor,
    row_max: torch.Tensor,
    base_lse: torch.Tensor,
    temperature: float,
) -> tuple[torch.Tensor, ...]:
    """One chunk (rows × vocab): log p(y), E[min(ℓ,b)], E[ReLU(ℓ−b)], P(ℓ>b), ℓ_y, entropy, KL(warp‖base).

    The hot loop of every update. It makes a handful of in-place passes over the chunk: ``f/T = (s1/T)·ℓ +
    ((s2−s1)/T)·ReLU(ℓ−b)`` (the literal form; per-token it equals generation's branch form to float rounding),
    ``exp(f/T − max)`` where ``max = f(max ℓ)/T`` by monotonicity (no reduction needed), and four row-wise
    reductions. ``base_lse`` (log-sum-exp of the base logits) is cached at rollout time, so KL is free.
    """
    a1, a12 = (s1 / temperature)[:, None], ((s2 - s1) / temperature)[:, None]
    relu = (logits - b[:, None]).clamp_(min=0)
    f = (logits * a1).addcmul_(relu, a12)
    f_max = a1.squeeze(-1) * row_max + a12.squeeze(-1) * (row_max - b).clamp(min=0)
    e = f.sub_(f_max[:, None]).exp_()  # reuses f's buffer
    z = e.sum(-1)
    e_logit = torch.linalg.vecdot(e, logits) / z
    e_relu = torch.linalg.vecdot(e, relu) / z
    p_above = e.masked_fill_(relu == 0, 0).sum(-1) / z  # last use of e: mask in place
    lse = f_max + z.log()
    target_logits = logits.gather(-1, targets[:, None]).squeeze(-1)
    f_y = a1.squeeze(-1) * target_logits + a12.squeeze(-1) * (target_logits - b).clamp(min=0)
    e_f = a1.squeeze(-1) * e_logit + a12.squeeze(-1) * e_relu  # E_p[f]/T
    entropy = lse - e_f
    kl = e_f - lse - e_logit + base_lse
    return f_y - lse, e_logit - e_relu, e_relu, p_above, target_logits, entropy, kl


class _WarpedTargetLogProb(torch.autograd.Function):
    """log p(y) as a function of (s1, s2, b); the vocabulary pass happens once, in forward."""

    @staticmethod
    def forward(ctx, s1, s2, b, hidden, targets, row_max, base_lse, unembedding, temperature, chunk_size):  # noqa: D102
        outs = [[s1.new_empty(0)] for _ in range(7)]  # an empty batch (no completion tokens) stays well-defined
        for start in range(0, hidden.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            logits = unembedding.logits(hidden[rows])
            values = _chunk_pass(
                logits, targets[rows], s1[rows], s2[rows], b[rows], row_max[rows], base_lse[rows], temperature
            )
            for acc, value in zip(outs, values):
                acc.append(value)
        logp, e_min, e_relu, p_above, target_logits, entropy, kl = (torch.cat(o) for o in outs)
        ctx.save_for_backward(s1, s2, b, e_min, e_relu, p_above, target_logits)
        ctx.temperature = temperature
        ctx.mark_non_differentiable(entropy, kl)
        return logp, entropy, kl

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy, grad_kl):  # noqa: D102
        s1, s2, b, e_min, e_relu, p_above, target_logits = ctx.saved_tensors
        g = grad_logp / ctx.temperature
        grad_s1 = g * (torch.minimum(target_logits, b) - e_min)
        grad_s2 = g * (torch.relu(target_logits - b) - e_relu)
        grad_b = g * (s1 - s2) * ((target_logits > b).float() - p_above)
        return grad_s1, grad_s2, grad_b, None, None, None, None, None, None, None


def _cached_warp(head, hidden: torch.Tensor, logit_features: torch.Tensor):
    """Flattened hidden states, their unpacked logit features, and the head's ``(s1, s2, b)`` there."""
    flat_hidden = hidden.reshape(-1, hidden.shape[-1])
    features = LogitFeatures.unpack(logit_features).reshape(-1)
    raw = head.raw_outputs(flat_hidden, features.stats)
    return flat_hidden, features, warp_parameters(raw, features.stats, head.slope_bound, head.breakpoint_scale)


def warped_token_logprobs(
    head: LogitMLPHead,
    hidden: torch.Tensor,
    logit_features: torch.Tensor,
    targets: torch.Tensor,
    unembedding: Unembedding,
    temperature: float = 1.0,
    chunk_size: int = 128,
) -> HeadTokenStats:
    """Per-token log p(y) under softmax(f(ℓ)/T), differentiable in the head's parameters, from cached features.

    Args:
        head: the LogitMLP head (its parameters receive gradients).
        hidden (`torch.Tensor` of shape `(..., d)`): final hidden states at the positions that predict ``targets``.
        logit_features (`torch.Tensor` of shape `(..., 4)`): max, mean, std and log-sum-exp of the base logits there,
            as :func:`cache_features` returns them.
        targets (`torch.LongTensor` of shape `(...)`): the sampled tokens.
        unembedding: the base model's unembedding (:meth:`Unembedding.from_model`).
        temperature: the sampling temperature applied after the warp (TRL's ``temperature``).
        chunk_size: tokens per vocabulary pass; memory is about ``3 × chunk_size × vocab`` floats. 128 was fastest
            for SmolLM2 on 2 CPU cores.
    """
    lead = targets.shape
    flat_hidden, features, (s1, s2, b) = _cached_warp(head, hidden, logit_features)
    logp, entropy, kl = _WarpedTargetLogProb.apply(
        s1,
        s2,
        b,
        flat_hidden,
        targets.reshape(-1),
        features.max,
        features.lse,
        unembedding,
        float(temperature),
        chunk_size,
    )
    return HeadTokenStats(
        logprobs=logp.reshape(lead),
        entropy=entropy.reshape(lead),
        kl_to_base=kl.reshape(lead),
        decisions={"s1": s1.detach().reshape(lead), "s2": s2.detach().reshape(lead), "b": b.detach().reshape(lead)},
    )


# Certification thresholds of the summary path: a row is evaluated from its summary when the bound on the error of
# its log Z is at most LOGZ_TOLERANCE (nats; the target is 1e-4) and the bound on the error of ∂ log Z/∂b at most
# GRADIENT_TOLERANCE; otherwise it is recomputed exactly.
LOGZ_TOLERANCE = 2e-5
GRADIENT_TOLERANCE = 2e-4


class _SummaryTargetLogProb(torch.autograd.Function):
    """log p(y) as a function of (s1, s2, b) from logit summaries; uncertified rows take the exact vocabulary pass."""

    @staticmethod
    def forward(  # noqa: D102
        ctx, s1, s2, b, hidden, targets, features, summary, unembedding, temperature, chunk_size, layout
    ):
        with torch.enable_grad():
            p1, p2, pb = (t.detach().double().requires_grad_() for t in (s1, s2, b))
            part = log_partition(summary, features.max, features.std, p1 / temperature, p2 / temperature, pb, layout)
            d1, d2, db = torch.autograd.grad(part.log_z.sum(), (p1, p2, pb)) if part.log_z.numel() else (p1, p2, pb)
        log_z = part.log_z.detach()
        e_min, e_relu = d1 * temperature, d2 * temperature  # ∂ log Z/∂a = E_p[min(ℓ, b)], E_p[ReLU(ℓ − b)]
        dlogz_db = db
        target_logits = unembedding.target_logits(hidden, targets).double()
        exact = (part.error_bound > LOGZ_TOLERANCE) | (
            (s1 - s2).abs() / temperature * part.kink_share > GRADIENT_TOLERANCE
        )
        if bool(exact.any()):
            rows = exact.nonzero().squeeze(1)
            for start in range(0, len(rows), chunk_size):
                r = rows[start : start + chunk_size]
                values = _chunk_pass(
                    unembedding.logits(hidden[r]),
                    targets[r],
                    s1[r],
                    s2[r],
                    b[r],
                    features.max[r],
                    features.lse[r],
                    temperature,
                )
                lp, emin, erelu, pabove, tl = (v.double() for v in values[:5])
                log_z[r] = _log_z_from(lp, tl, s1[r], s2[r], b[r], temperature)
                e_min[r], e_relu[r] = emin, erelu
                dlogz_db[r] = (s1[r] - s2[r]).double() / temperature * pabove
                target_logits[r] = tl
        a1, a2 = s1.double() / temperature, s2.double() / temperature
        f_y = a1 * target_logits + (a2 - a1) * (target_logits - b.double()).clamp(min=0)
        logp = f_y - log_z
        e_f = a1 * e_min + a2 * e_relu
        entropy = log_z - e_f
        kl = e_f - log_z - (e_min + e_relu) + features.lse.double()
        ctx.save_for_backward(s1, s2, b, e_min.float(), e_relu.float(), dlogz_db.float(), target_logits.float())
        ctx.temperature = temperature
        ctx.mark_non_differentiable(entropy, kl)
        return logp.float(), entropy.float(), kl.float()

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy, grad_kl):  # noqa: D102
        s1, s2, b, e_min, e_relu, dlogz_db, target_logits = ctx.saved_tensors
        g = grad_logp / ctx.temperature
        grad_s1 = g * (torch.minimum(target_logits, b) - e_min)
        grad_s2 = g * (torch.relu(target_logits - b) - e_relu)
        grad_b = grad_logp * ((s1 - s2) / ctx.temperature * (target_logits > b).float() - dlogz_db)
        return grad_s1, grad_s2, grad_b, *([None] * 8)


def _log_z_from(logp, target_logits, s1, s2, b, temperature):
    a1, a2 = s1.double() / temperature, s2.double() / temperature
    return a1 * target_logits + (a2 - a1) * (target_logits - b.double()).clamp(min=0) - logp


def summary_token_logprobs(
    head: LogitMLPHead,
    hidden: torch.Tensor,
    logit_features: torch.Tensor,
    logit_summary: torch.Tensor,
    targets: torch.Tensor,
    unembedding: Unembedding,
    layout: LogitSummaryLayout,
    temperature: float = 1.0,
    chunk_size: int = 128,
) -> HeadTokenStats:
    """:func:`warped_token_logprobs` from logit summaries: no vocabulary pass for the rows the summary certifies.

    Args:
        logit_summary (`torch.Tensor` of shape `(..., layout.width)`): from
            :func:`~logitmlp_hf.logit_summary.summarize_logits` at the same positions.
        layout (:class:`~logitmlp_hf.logit_summary.LogitSummaryLayout`): the layout it was built with; must cover
            the head's slopes at this temperature and its breakpoint range.
        (the other arguments as for :func:`warped_token_logprobs`)
    """
    if logit_summary.shape[-1] != layout.width:
        raise ValueError(f"logit summaries have width {logit_summary.shape[-1]}, the layout {layout.width}")
    if not layout.covers(1 / (head.slope_bound * temperature), head.slope_bound / temperature, head.breakpoint_scale):
        raise ValueError(
            f"the logit summary covers slopes in [1/{layout.max_slope}, {layout.max_slope}] and breakpoints within "
            f"{layout.band_stds} stds of the max; this head has slope_bound={head.slope_bound} at temperature "
            f"{temperature} and breakpoint_scale={head.breakpoint_scale}: use the exact path"
        )
    lead = targets.shape
    flat_hidden, features, (s1, s2, b) = _cached_warp(head, hidden, logit_features)
    logp, entropy, kl = _SummaryTargetLogProb.apply(
        s1,
        s2,
        b,
        flat_hidden,
        targets.reshape(-1),
        features,
        logit_summary.reshape(-1, layout.width),
        unembedding,
        float(temperature),
        chunk_size,
        layout,
    )
    return HeadTokenStats(
        logprobs=logp.reshape(lead),
        entropy=entropy.reshape(lead),
        kl_to_base=kl.reshape(lead),
        decisions={"s1": s1.detach().reshape(lead), "s2": s2.detach().reshape(lead), "b": b.detach().reshape(lead)},
    )
