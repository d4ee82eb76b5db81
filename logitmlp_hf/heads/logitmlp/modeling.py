"""`LogitMLPForCausalLM`: a frozen causal LM (or `PeftModel`) with a LogitMLP head on its logits.

The hooks, ``generate``, the cached-feature training path and the head-repo format are the shared machinery of
:class:`~logitmlp_hf.modeling.DecodingHeadForCausalLM`; this module names the LogitMLP head and config
and keeps the LogitMLP-specific outputs (``s1``, ``s2``, ``b`` as fields).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from transformers.utils import ModelOutput

from ...modeling import DecodingHeadCausalLMOutput, DecodingHeadForCausalLM, GenerationFeatureRecord
from ..base import Decisions
from .configuration import LogitMLPConfig
from .head import LogitMLPHead


@dataclass
class LogitMLPCausalLMOutput(DecodingHeadCausalLMOutput):
    r"""
    `CausalLMOutputWithPast` whose ``logits`` are the warped logits (float32), plus on request:

    base_logits (`torch.FloatTensor` of shape `(batch, positions, vocab)`, *optional*):
        The base model's logits at the same positions (``output_base_logits=True``).
    s1, s2, b (`torch.FloatTensor` of shape `(batch, positions)`, *optional*):
        The tail slope, head slope and breakpoint chosen at each position (``output_warp_params=True``, or
        ``output_decisions=True``, which also fills ``decisions``).
    """

    s1: torch.FloatTensor | None = None
    s2: torch.FloatTensor | None = None
    b: torch.FloatTensor | None = None


@dataclass
class LogitMLPPolicyOutput(ModelOutput):
    r"""
    Per-token results of the cached-features path of :meth:`LogitMLPForCausalLM.forward` (training updates).

    logprobs (`torch.FloatTensor` of shape `(batch, tokens)`): log p(target) under softmax(f(ℓ)/T), with gradient.
    entropy, kl_to_base (`torch.FloatTensor` of shape `(batch, tokens)`): of the warped policy (no gradient).
    s1, s2, b (`torch.FloatTensor` of shape `(batch, tokens)`): the head's choices.
    decisions (`dict`): the same choices keyed by name, as every decoding head reports them.
    regularizer: always ``None`` (the LogitMLP objective has no extra term).
    """

    logprobs: torch.FloatTensor | None = None
    entropy: torch.FloatTensor | None = None
    kl_to_base: torch.FloatTensor | None = None
    s1: torch.FloatTensor | None = None
    s2: torch.FloatTensor | None = None
    b: torch.FloatTensor | None = None
    decisions: dict[str, torch.Tensor] | None = None
    regularizer: torch.FloatTensor | None = None


class LogitMLPForCausalLM(DecodingHeadForCausalLM):
    r"""
    A frozen causal LM with a trainable LogitMLP head that warps its next-token logits.

    ``forward`` returns the warped logits (float32); ``generate`` samples from the warp with the base model's own
    generation machinery, so greedy/sampling, ``num_return_sequences``, left-padded batches, KV caching and every
    logits processor behave as they do for the base. Only the head has trainable parameters; the base (and any PEFT
    adapter on it) is frozen and kept in eval mode.

    Args:
        config (:class:`LogitMLPConfig`): the head's config.
        base_model (`PreTrainedModel` or `PeftModel`, *optional*):
            The causal LM to warp. Can be attached later with :meth:`attach_base_model`.

    Example:

    ```python
    >>> from transformers import AutoModelForCausalLM
    >>> from logitmlp_hf import LogitMLPForCausalLM
    >>> base = AutoModelForCausalLM.from_pretrained("HuggingFaceTB/SmolLM2-135M-Instruct")
    >>> model = LogitMLPForCausalLM.from_base_model(base)
    >>> model.print_trainable_parameters()
    trainable params: 148,995 || all params: 134,664,003 || trainable%: 0.1106
    ```
    """

    config_class = LogitMLPConfig
    head_class = LogitMLPHead
    head_attribute = "logitmlp_head"
    output_class = LogitMLPCausalLMOutput
    policy_output_class = LogitMLPPolicyOutput

    def _identity_decisions(self, logits: torch.Tensor) -> Decisions:
        ones = torch.ones(logits.shape[:-1], device=logits.device)
        return {"s1": ones, "s2": ones, "b": logits.detach().float().amax(-1)}

    def _make_output(self, **fields: Any) -> LogitMLPCausalLMOutput:
        decisions = fields.get("decisions")
        if decisions is not None:
            fields.update(s1=decisions["s1"], s2=decisions["s2"], b=decisions["b"])
        return LogitMLPCausalLMOutput(**fields)

    def _make_policy_output(self, stats: Any) -> LogitMLPPolicyOutput:
        return LogitMLPPolicyOutput(
            logprobs=stats.logprobs,
            entropy=stats.entropy,
            kl_to_base=stats.kl_to_base,
            decisions=stats.decisions,
            **stats.decisions,
        )


__all__ = ["GenerationFeatureRecord", "LogitMLPCausalLMOutput", "LogitMLPForCausalLM", "LogitMLPPolicyOutput"]
