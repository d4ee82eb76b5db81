"""`DecodingHeadLogitsProcessor`: a per-token decoding head applied inside a *plain* base model's ``generate()``.

A `LogitsProcessor` only receives ``(input_ids, scores)``; the head also needs the final hidden state. The processor
therefore puts a forward pre-hook on the base's unembedding (``get_output_embeddings()``) that records the hidden
state of the last position at every decoding step, and replaces ``scores`` with the head's sampling logits when
``generate`` calls it. The hook lives until :meth:`DecodingHeadLogitsProcessor.remove` (or the end of a ``with``
block). Any per-token head type works (LogitMLP, AutoDeco, the token-level adapter); heads that condition on the
token budget or decide once per sequence need the wrapper, which knows ``generate``'s step and budget.

Beam search: ``generate`` hands processors the *log-softmax* of the model's logits there (raw logits when sampling or
greedy), and accumulates what they return as log-probabilities. The head reads the logits' max and mean, which that
shift moves, so the processor also records the model's output logits of the last position (a forward hook on the
causal LM, where the wrapper applies its head too) and recognises which of the two it was given: scores equal to the
logits (sampling, greedy) go to the head as they are; scores equal to their log-softmax (beam search) are mapped back
to the logits (entries an earlier processor changed keep that change, shifted by the same log-sum-exp), and the head's
logits are returned log-softmaxed. With no other processor, beam search through the processor then ranks beams exactly
as the wrapper's ``generate(num_beams=...)`` does.

Ordering: ``generate`` runs its built-in processors (repetition penalty, ``min_new_tokens``, bad words, ...) first,
then user processors such as this one, then the temperature/top-k/top-p/min-p warpers. So the head sees the
penalised scores (``-inf`` entries are ignored by its statistics) and the sampling warpers act on the head's
distribution. A head that absorbs the user's sampling settings instead (AutoDeco's released composition, where the
user's temperature and top-p scale the head's) cannot take them from ``generate``, which a processor does not see:
give them to the processor (``temperature=``, ``top_p=``) and not to ``generate``, whose warpers would act a second
time after the head (its top-k, min-p, ... warpers act after the head on both paths). :class:`~logitmlp_hf.DecodingHeadForCausalLM` instead applies the head to the model's output, before
every processor; with no built-in processor active the two paths give the same distribution.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import nn
from transformers import LogitsProcessor

from .heads.base import DecodingHead
from .heads.configuration import DecodingHeadConfig
from .heads.registry import decoding_head_type
from .hub.base_loading import check_base_compatible, unwrap_causal_lm
from .hub.head_repo import load_head_config, load_head_state_dict
from .sampling_rules import SamplingRule


class DecodingHeadLogitsProcessor(LogitsProcessor):
    r"""
    Apply a per-token decoding head to next-token scores during ``model.generate``.

    Args:
        head (:class:`~logitmlp_hf.heads.DecodingHead`): the trained head (LogitMLP, AutoDeco, token-level adapter).
        model (`PreTrainedModel` or `PeftModel`): the model whose ``generate`` this processor is passed to.
        config (:class:`~logitmlp_hf.heads.DecodingHeadConfig`, *optional*): the head's config, to check the model's
            sizes against.
        temperature, top_p (*optional*): the user's sampling settings, for a head that absorbs them
            (``head.absorbs_user_rule``: AutoDeco's released composition samples at ``T̂·temperature`` with top-p
            ``min(1, p̂·top_p)``). Pass them here *instead of* to ``generate``. Refused for other heads, whose rule
            ``generate``'s own warpers follow.

    Example:

    ```python
    >>> from logitmlp_hf import DecodingHeadLogitsProcessor
    >>> with DecodingHeadLogitsProcessor.from_pretrained("user/smollm2-logitmlp-passk", base) as warp:
    ...     out = base.generate(**inputs, do_sample=True, logits_processor=[warp], max_new_tokens=64)
    ```
    """

    def __init__(
        self,
        head: DecodingHead,
        model: nn.Module,
        config: DecodingHeadConfig | None = None,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
    ) -> None:
        given = {k: v for k, v in dict(temperature=temperature, top_p=top_p).items() if v is not None}
        if given and not head.absorbs_user_rule:
            raise ValueError(
                f"{type(head).__name__} does not take the user's sampling settings into its rule: pass {sorted(given)} "
                "to generate(), whose warpers act after the head"
            )
        self.user_rule = SamplingRule(**given) if head.absorbs_user_rule else None
        if not head.per_token or head.uses_context:
            raise ValueError(
                f"{type(head).__name__} "
                + ("decides once per sequence" if not head.per_token else "conditions on the token budget")
                + ", which a logits processor cannot see; load it with AutoModelForCausalLM.from_pretrained(head repo) "
                "(or load_decoding_head_model) and call that model's generate()"
            )
        if config is not None:
            check_base_compatible(config, model)
        self.head = head
        self._last_hidden: torch.Tensor | None = None
        self._last_logits: torch.Tensor | None = None
        lm = unwrap_causal_lm(model)
        self._handles = [
            lm.get_output_embeddings().register_forward_pre_hook(self._capture_last_hidden),
            lm.register_forward_hook(self._capture_last_logits),
        ]

    @classmethod
    def from_pretrained(
        cls,
        head_name_or_path: str | os.PathLike,
        model: nn.Module,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        **hub_kwargs: Any,
    ) -> DecodingHeadLogitsProcessor:
        """Load a head repo's head (not its base), of whatever head type, and hook it to ``model``; the sampling
        settings are the user's, for a head that absorbs them (see the class docstring)."""
        config = load_head_config(head_name_or_path, **hub_kwargs)
        check_base_compatible(config, model)  # before anything is read or built from the config's sizes
        state_dict = load_head_state_dict(head_name_or_path, config, **hub_kwargs)
        head = decoding_head_type(config.model_type).head_class(config)
        head.load_state_dict(state_dict)
        device = unwrap_causal_lm(model).get_output_embeddings().weight.device
        return cls(head.to(device).eval(), model, config=config, temperature=temperature, top_p=top_p)

    def _capture_last_hidden(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self._last_hidden = args[0][:, -1]

    def _capture_last_logits(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> None:
        logits = getattr(output, "logits", None)
        # A view, no copy: it is only read if the scores turn out not to be these logits (beam search).
        self._last_logits = None if logits is None else logits[:, -1]

    @staticmethod
    def _undo_log_softmax(scores: torch.Tensor, logits: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(head input, beam rows)``: rows of ``scores`` that are the log-softmax of the model's ``logits`` (beam
        search) mapped back to the logits; other rows (sampling, greedy: the logits themselves) unchanged."""
        beam = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
        if logits is None or logits.shape != scores.shape:
            return scores, beam
        # The float32 values generate gives processors (so its log-softmax below is bit-identical to generate's).
        logits = logits.to(device=scores.device, dtype=torch.float32)
        as_logits = (scores == logits).sum(-1)
        if bool((as_logits == scores.shape[-1]).all()):
            # Sampling and greedy with nothing before this processor: every row is the logits themselves, which the
            # rule below also concludes (a row equal to both forms ties and goes to the logits); one pass, not six.
            return scores, beam
        lse = logits.logsumexp(dim=-1, keepdim=True)
        log_probs = torch.log_softmax(logits, dim=-1)  # the same op on the same tensor as generate's: bit-identical
        as_log_probs = (scores == log_probs).sum(-1)
        # Ties (no entry matches either, or a row whose log-sum-exp is 0): whichever normalisation is closer.
        lse_scores = scores.logsumexp(dim=-1)
        closer = lse_scores.abs() < (lse_scores - lse.squeeze(-1)).abs()
        beam = torch.where(as_log_probs == as_logits, closer, as_log_probs > as_logits)
        restored = torch.where(scores == log_probs, logits, scores + lse)
        return torch.where(beam.unsqueeze(-1), restored, scores), beam

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        hidden, self._last_hidden = self._last_hidden, None
        logits, self._last_logits = self._last_logits, None
        if hidden is None:
            raise RuntimeError(
                f"{type(self).__name__} saw no hidden state for this step: pass it to the generate() of the model "
                "it was built with, and do not call remove() before generating"
            )
        if hidden.shape[0] != scores.shape[0]:
            raise RuntimeError(
                f"batch mismatch: hidden states for {hidden.shape[0]} sequences, scores for {scores.shape[0]} "
                "(assisted/speculative decoding, which scores several positions per step, is not supported)"
            )
        head_input, beam = self._undo_log_softmax(scores.float(), logits)
        hidden = hidden.to(self.head.device)
        if self.user_rule is None:  # heads that override warp() need not know the argument
            warped, _ = self.head.warp(hidden, head_input)
        else:
            warped, _ = self.head.warp(hidden, head_input, user_rule=self.user_rule)
        warped = warped.to(scores.device)
        if beam.any():  # beam search accumulates log-probabilities: return those of the head's distribution
            warped = torch.where(beam.unsqueeze(-1), torch.log_softmax(warped, dim=-1), warped)
        return warped.to(scores.dtype)

    def remove(self) -> None:
        """Detach the hooks from the model."""
        for handle in self._handles:
            handle.remove()

    def __enter__(self) -> DecodingHeadLogitsProcessor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()


# The name of the first head type's processor, kept for existing code; it takes every per-token head.
LogitMLPLogitsProcessor = DecodingHeadLogitsProcessor

__all__ = ["DecodingHeadLogitsProcessor", "LogitMLPLogitsProcessor"]
