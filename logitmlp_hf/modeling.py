"""`DecodingHeadForCausalLM`: a frozen causal LM (or `PeftModel`) with a learned decoding head on its logits.

How the head reaches the logits: for the duration of a ``forward`` or ``generate`` call, two hooks sit on the base —
a pre-hook on its unembedding (``get_output_embeddings()``) that records the hidden state the unembedding multiplies
(post-final-norm, already sliced to ``logits_to_keep``), and a forward hook on the causal LM that replaces the
returned logits with the head's sampling logits. The base model therefore runs its own forward (its cache handling,
logit soft-capping or scaling, LoRA layers) and its own ``generate`` (its generation config, cache classes and input
preparation), and every logits processor ``generate`` applies sees the head's logits, exactly as if the base had
produced them. Outside those calls the base object is untouched.

Each decoding policy is a pair (config, head) plus a thin subclass of :class:`DecodingHeadForCausalLM` naming them
(:class:`~logitmlp_hf.LogitMLPForCausalLM`, :class:`~logitmlp_hf.AutoDecoForCausalLM`, ...); subclasses register
themselves, so :func:`load_decoding_head_model` and the transformers Auto classes find the right one from a head
repo's ``model_type``.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from huggingface_hub import CommitInfo, HfApi
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import ModelOutput

from .features import LogitFeatures, LogitStatistics, Unembedding, logit_statistics
from .heads.base import Decisions, DecodingContext, DecodingHead
from .heads.configuration import DecodingHeadConfig
from .heads.registry import decoding_head_type
from .hub.base_loading import (
    base_dimensions,
    check_base_compatible,
    check_base_config_fits,
    describe_base,
    load_base_model,
    unwrap_causal_lm,
)
from .hub.head_repo import load_head_config, load_head_state_dict, save_head, split_hub_kwargs
from .hub.model_card import render_model_card
from .logit_summary import LogitSummaryLayout, summarize_logits
from .sampling_rules import SamplingRule


logger = logging.getLogger(__name__)

# Passed by the transformers Auto classes or by habit; meaningless for the base's own load.
_AUTO_ONLY_KWARGS = ("_from_auto", "adapter_kwargs", "code_revision", "_commit_hash", "output_loading_info")


@dataclass
class DecodingHeadCausalLMOutput(CausalLMOutputWithPast):
    r"""
    `CausalLMOutputWithPast` whose ``logits`` are the head's sampling logits (float32), plus on request:

    base_logits (`torch.FloatTensor` of shape `(batch, positions, vocab)`, *optional*):
        The base model's logits at the same positions (``output_base_logits=True``).
    decisions (`dict[str, torch.FloatTensor]`, *optional*):
        The head's choices at each position, each of shape `(batch, positions)` (``output_decisions=True``).
    """

    base_logits: torch.FloatTensor | None = None
    decisions: dict[str, torch.Tensor] | None = None


@dataclass
class DecodingPolicyOutput(ModelOutput):
    r"""
    Per-token results of the cached-features path of :meth:`DecodingHeadForCausalLM.forward` (training updates).

    logprobs (`torch.FloatTensor` of shape `(batch, tokens)`): log p(target) under the policy / T, with gradient.
    entropy, kl_to_base (`torch.FloatTensor` of shape `(batch, tokens)`): of the policy (no gradient).
    decisions (`dict[str, torch.FloatTensor]`): the head's choices per token (no gradient).
    regularizer (`torch.FloatTensor` of shape `(batch, tokens)`, *optional*): a term added to the objective.
    """

    logprobs: torch.FloatTensor | None = None
    entropy: torch.FloatTensor | None = None
    kl_to_base: torch.FloatTensor | None = None
    decisions: dict[str, torch.Tensor] | None = None
    regularizer: torch.FloatTensor | None = None


class GenerationFeatureRecord:
    """What a training rollout needs, recorded while ``generate`` runs: per decoding step and sequence, the hidden
    state that predicted the next token and its logit features (max, mean, std, log-sum-exp), so the update never
    has to run the base model again. Filled by :meth:`DecodingHeadForCausalLM.record_generation_features`.

    Each step's entries have one row per sequence in the batch (``generate``), unless
    :meth:`rows_left_at_end_of_sequence` says the steps came from a decoding loop whose batch shrinks
    (:meth:`DecodingHeadForCausalLM.sample_completions`: one prefill row per prompt, finished rows leave)."""

    def __init__(self, logit_summary: LogitSummaryLayout | None = None) -> None:
        self.hidden: list[torch.Tensor] = []
        self.features: list[torch.Tensor] = []
        self.summaries: list[torch.Tensor] = []
        self.logit_summary = logit_summary
        self.generate_calls = 0
        self._shrinking: tuple[list[int], int] | None = None

    def add(self, hidden: torch.Tensor, logits: torch.Tensor, stats: LogitStatistics) -> None:
        last = LogitStatistics(*(t[:, -1] for t in stats))
        self.hidden.append(hidden[:, -1].detach())
        self.features.append(LogitFeatures.from_logits(logits[:, -1], last).pack())
        if self.logit_summary is not None:
            self.summaries.append(summarize_logits(logits[:, -1], last.max, last.std, self.logit_summary))

    def rows_left_at_end_of_sequence(self, lengths: list[int], samples_per_prompt: int) -> None:
        """Declare the layout of :func:`~logitmlp_hf.evaluation.sampler.sample_completions`: step 0 holds one row
        per prompt (its ``samples_per_prompt`` sequences share it), step ``t`` the sequences longer than ``t``, in
        order. ``lengths``: each sequence's completion length (prompt-major)."""
        self._shrinking = (list(lengths), samples_per_prompt)

    def _per_sequence(self, steps: list[torch.Tensor], batch_size: int, length: int) -> torch.Tensor | None:
        """``(batch_size, length, ...)`` from per-step entries; ``None`` when they do not describe such a batch."""
        if len(steps) < length or not steps:
            return None
        if self._shrinking is None:
            return torch.stack(steps[:length], dim=1) if steps[0].shape[0] == batch_size else None
        lengths, samples_per_prompt = self._shrinking
        if len(lengths) != batch_size or min(lengths) < 1:
            return None
        device = steps[0].device
        n = torch.tensor(lengths, device=device)
        t = torch.arange(length, device=device)
        alive = n[:, None] > t[None, :]  # (B, L): the sequence was in the batch at step t
        rank = alive.long().cumsum(0) - 1  # its row in step t's batch (rows keep their order)
        rank[:, 0] = torch.arange(batch_size, device=device) // samples_per_prompt  # the prefill's row per prompt
        sizes = torch.tensor([s.shape[0] for s in steps[:length]], device=device)
        expected = alive.sum(0)
        expected[0] = -(-batch_size // samples_per_prompt)
        if not torch.equal(sizes, expected):
            return None
        # Positions past a sequence's end (padding, masked out of the loss) repeat its last entry: finite values
        # whatever the head computes from them.
        step = torch.minimum(t[None, :], (n - 1)[:, None])
        offsets = torch.cumsum(sizes, 0) - sizes
        return torch.cat(steps[:length])[offsets[step] + rank.gather(1, step)]

    def completion_summaries(self, batch_size: int, length: int) -> torch.Tensor | None:
        """Logit summaries ``(B, length, width)`` of the first ``length`` generated tokens (when the record was asked
        for them and describes one decoding call of ``batch_size`` sequences), else ``None``."""
        if not self.summaries or self.generate_calls != 1:
            return None
        return self._per_sequence(self.summaries, batch_size, length)

    def completion_features(self, batch_size: int, length: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(hidden (B, length, d), features (B, length, 4))`` for the first ``length`` generated tokens, or
        ``None`` when the record does not describe exactly one decoding call of ``batch_size`` sequences."""
        if self.generate_calls != 1:
            return None
        hidden = self._per_sequence(self.hidden, batch_size, length)
        if hidden is None:
            return None
        return hidden, self._per_sequence(self.features, batch_size, length)


class _HeadSession:
    """Hooks that make one call of the base model return the head's logits (see the module docstring).

    Within ``generate`` the session counts decoding steps, so heads that read a :class:`DecodingContext` see the
    tokens left in ``max_new_tokens`` and the parallel budget (``num_return_sequences``), and heads that decide once
    per sequence (``per_token = False``) decide at the prompt's last position and keep that choice for every step.
    A ``user_rule`` (``generate``'s sampling settings, for heads that absorb them) is composed with every decision.
    """

    def __init__(
        self,
        head: DecodingHead,
        base: nn.Module,
        keep_base_logits: bool = False,
        record: GenerationFeatureRecord | None = None,
        context: DecodingContext | None = None,
        max_new_tokens: int | None = None,
        user_rule: SamplingRule | None = None,
    ) -> None:
        self.head = head
        self.user_rule = user_rule
        self.lm = unwrap_causal_lm(base)
        self.keep_base_logits = keep_base_logits
        self.record = record
        self.context = context
        self.max_new_tokens = max_new_tokens
        self.step = 0
        self.hidden: torch.Tensor | None = None
        self.base_logits: torch.Tensor | None = None
        self.decisions: Decisions | None = None
        self._sequence_decisions: Decisions | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> _HeadSession:
        self._handles = [
            self.lm.get_output_embeddings().register_forward_pre_hook(self._capture_hidden),
            self.lm.register_forward_hook(self._apply_head),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _capture_hidden(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.hidden = args[0]

    def _step_context(self, positions: tuple[int, ...]) -> DecodingContext | None:
        if not self.head.uses_context:
            return None
        context = self.context or DecodingContext()
        device = self.head.device
        if self.max_new_tokens is not None:  # inside generate: one position per row and step
            remaining = torch.full(positions, float(self.max_new_tokens - self.step), device=device)
            budget = torch.full(positions, float(self.max_new_tokens), device=device)
            context = DecodingContext(remaining, budget, context.parallel_budget)
        parallel = context.parallel_budget
        if parallel is not None and parallel.dim() == 0:  # one k for the whole generate call
            context = DecodingContext(context.remaining_tokens, context.budget, parallel.to(device).expand(positions))
        return context

    def _apply_head(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        logits, hidden = output["logits"], self.hidden
        self.hidden = None
        if hidden is None or hidden.shape[:-1] != logits.shape[:-1]:
            raise RuntimeError(
                f"{type(self.lm).__name__} did not compute its logits with get_output_embeddings() on the final "
                "hidden states, so the decoding head cannot see them"
                + ("" if hidden is None else f" (hidden {tuple(hidden.shape)} vs logits {tuple(logits.shape)})")
            )
        hidden = hidden.to(self.head.device)
        self.head.check_hidden(hidden)
        stats = logit_statistics(logits)
        if self.head.per_token:
            decisions = self.head.decide_at(hidden, logits, stats, self._step_context(tuple(hidden.shape[:-1])))
        else:
            if self._sequence_decisions is None:
                # The sequence's one decision: from its first scored position (the prompt's last token in generate).
                first = LogitStatistics(*(t[:, :1] for t in stats))
                self._sequence_decisions = self.head.decide_at(
                    hidden[:, :1], logits[:, :1], first, self._step_context((hidden.shape[0], 1))
                )
            decisions = {k: v.expand(*hidden.shape[:-1], *v.shape[2:]) for k, v in self._sequence_decisions.items()}
        if self.user_rule is not None:
            decisions = self.head.apply_user_rule(decisions, self.user_rule)
        warped = self.head.sampling_logits(logits, decisions)
        self.decisions = decisions
        self.step += 1
        if self.record is not None:
            self.record.add(hidden, logits, stats)
        if self.keep_base_logits:
            self.base_logits = logits
        output["logits"] = warped.to(logits.device)
        return output


class DecodingHeadForCausalLM(PreTrainedModel, GenerationMixin):
    r"""
    A frozen causal LM with a trainable decoding head on its next-token logits.

    ``forward`` returns the head's logits (float32); ``generate`` samples from them with the base model's own
    generation machinery, so greedy/sampling, ``num_return_sequences``, left-padded batches, KV caching and every
    logits processor behave as they do for the base. Only the head has trainable parameters; the base (and any PEFT
    adapter on it) is frozen and kept in eval mode.

    Subclasses set ``config_class``, ``head_class`` and ``head_attribute`` (the head's attribute name, which is also
    the prefix of its parameter names).

    Args:
        config (:class:`DecodingHeadConfig`): the head's config.
        base_model (`PreTrainedModel` or `PeftModel`, *optional*):
            The causal LM under the head. Can be attached later with :meth:`attach_base_model`.
    """

    config_class = DecodingHeadConfig
    head_class: ClassVar[type[DecodingHead]] = DecodingHead
    head_attribute: ClassVar[str] = "decoding_head_module"
    output_class: ClassVar[type[DecodingHeadCausalLMOutput]] = DecodingHeadCausalLMOutput
    policy_output_class: ClassVar[type[DecodingPolicyOutput]] = DecodingPolicyOutput
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _supports_param_buffer_assignment = False

    def __init__(self, config: DecodingHeadConfig, base_model: nn.Module | None = None) -> None:
        super().__init__(config)
        setattr(self, self.head_attribute, self.head_class(config))
        self._head_enabled = True
        self.post_init()
        self.base_lm: nn.Module | None = None
        if base_model is not None:
            self.attach_base_model(base_model)

    def init_weights(self) -> None:
        # The head initialises itself and the base arrives pretrained: transformers' generic re-initialisation
        # must touch neither.
        pass

    @property
    def decoding_head(self) -> DecodingHead:
        """The head module (whatever the subclass names its attribute)."""
        return getattr(self, self.head_attribute)

    # ----------------------------------------------------------------------------------------------- base model
    def attach_base_model(self, base_model: nn.Module) -> None:
        """Attach (or replace) the frozen base; checks hidden and vocabulary sizes against the config."""
        check_base_compatible(self.config, base_model)
        base_model.requires_grad_(False)
        base_model.eval()
        self.base_lm = base_model
        lm = unwrap_causal_lm(base_model)
        self.generation_config = lm.generation_config
        self._forward_params = set(inspect.signature(lm.forward).parameters)
        self.decoding_head.to(lm.get_output_embeddings().weight.device)
        for key, value in describe_base(base_model).items():
            if getattr(self.config, key) is None and value is not None:
                setattr(self.config, key, value)

    @classmethod
    def from_base_model(cls, base_model: nn.Module, **config_kwargs: Any) -> DecodingHeadForCausalLM:
        """A fresh head on ``base_model``; ``config_kwargs`` go to the head's config class."""
        hidden, vocab = base_dimensions(base_model)
        config = cls.config_class(hidden_size=hidden, vocab_size=vocab, **config_kwargs)
        return cls(config, base_model=base_model)

    def _require_base(self) -> nn.Module:
        if self.base_lm is None:
            raise RuntimeError("no base model attached: use from_pretrained, from_base_model or attach_base_model")
        return self.base_lm

    def get_base_model(self) -> nn.Module:
        """The frozen base (a `PreTrainedModel` or `PeftModel`), as PEFT's verb of the same name."""
        return self._require_base()

    def get_input_embeddings(self) -> nn.Module:
        return unwrap_causal_lm(self._require_base()).get_input_embeddings()

    def get_output_embeddings(self) -> nn.Module:
        return unwrap_causal_lm(self._require_base()).get_output_embeddings()

    def train(self, mode: bool = True) -> DecodingHeadForCausalLM:
        """Train mode for the head only: the frozen base stays in eval mode (no dropout in rollouts)."""
        super().train(mode)
        if self.base_lm is not None:
            self.base_lm.eval()
        return self

    # ---------------------------------------------------------------------------------------------- the head
    @property
    def head_enabled(self) -> bool:
        return self._head_enabled

    @contextlib.contextmanager
    def disable_head(self) -> Iterator[None]:
        """Context manager under which ``forward`` and ``generate`` give the base distribution (same object)."""
        previous, self._head_enabled = self._head_enabled, False
        try:
            yield
        finally:
            self._head_enabled = previous

    def _session(
        self,
        keep_base_logits: bool = False,
        record: GenerationFeatureRecord | None = None,
        context: DecodingContext | None = None,
        max_new_tokens: int | None = None,
        user_rule: SamplingRule | None = None,
    ):
        if not self._head_enabled:
            return contextlib.nullcontext()
        return _HeadSession(
            self.decoding_head, self._require_base(), keep_base_logits, record, context, max_new_tokens, user_rule
        )

    @contextlib.contextmanager
    def record_generation_features(
        self, logit_summary: LogitSummaryLayout | None = None
    ) -> Iterator[GenerationFeatureRecord]:
        """Within this context, ``generate`` records each step's hidden state and logit features (see
        :class:`GenerationFeatureRecord`): the trainer's rollout cache, captured at no extra forward pass. With a
        ``logit_summary`` layout it also records each step's logit summary (for the vocabulary-free update)."""
        record = GenerationFeatureRecord(logit_summary)
        self._feature_record = record
        try:
            yield record
        finally:
            self._feature_record = None

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        past_key_values: Any = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.LongTensor | None = None,
        use_cache: bool | None = None,
        logits_to_keep: int | torch.Tensor = 0,
        output_base_logits: bool = False,
        output_decisions: bool = False,
        decoding_context: DecodingContext | None = None,
        cached_features: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> DecodingHeadCausalLMOutput | DecodingPolicyOutput:
        r"""
        The base model's forward with the head's logits.

        Args:
            logits_to_keep (`int` or `torch.Tensor`, *optional*, defaults to `0`):
                As for transformers causal LMs: compute (and transform) logits only for the last ``logits_to_keep``
                positions (0 = all) or for the given position indices.
            labels (`torch.LongTensor`, *optional*):
                Targets for the causal-LM loss, computed on the head's distribution.
            output_base_logits (`bool`, *optional*): also return the base logits.
            output_decisions (`bool`, *optional*): also return the head's choices per position.
            decoding_context (:class:`DecodingContext`, *optional*):
                Budgets for heads that read them, each of shape `(batch, positions)` or `(batch,)`. ``generate``
                builds it itself.
            cached_features (`dict`, *optional*):
                The training path: ``hidden`` `(B, T, d)`, ``logit_features`` `(B, T, 4)` and ``targets`` `(B, T)`
                cached from a rollout (see :func:`~logitmlp_hf.features.cache_features`), plus optional
                ``temperature``, ``chunk_size``, ``context`` and ``logit_summary`` (`(B, T, width)`, from
                :meth:`record_generation_features`, for heads with a summary path). The base model is not run; returns a
                :class:`DecodingPolicyOutput`. Going through ``forward`` keeps DDP's gradient synchronisation.
            kwargs: passed to the base model's forward (e.g. ``cache_position``, ``output_hidden_states``).
        """
        output_decisions = output_decisions or kwargs.pop("output_warp_params", False)
        base = self._require_base()
        if cached_features is not None:
            return self._policy_forward(**cached_features)
        if "logits_to_keep" in self._forward_params:
            kwargs["logits_to_keep"] = logits_to_keep
        elif not (isinstance(logits_to_keep, int) and logits_to_keep == 0):
            raise ValueError(f"{type(unwrap_causal_lm(base)).__name__}.forward does not support logits_to_keep")
        if self._head_enabled and self.decoding_head.uses_context and self.decoding_head.per_token:
            if decoding_context is None or decoding_context.remaining_tokens is None:
                raise ValueError(
                    f"{type(self.decoding_head).__name__} conditions on the token budget left: pass "
                    "decoding_context=DecodingContext(remaining_tokens=..., budget=...) to forward "
                    "(generate builds it from max_new_tokens)"
                )
        with self._session(keep_base_logits=output_base_logits, context=decoding_context) as session:
            out = base(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                past_key_values=past_key_values,
                inputs_embeds=inputs_embeds,
                use_cache=use_cache,
                **kwargs,
            )
        logits = out.logits
        loss = None
        if labels is not None:
            lm = unwrap_causal_lm(base)
            loss = lm.loss_function(logits=logits, labels=labels, vocab_size=logits.shape[-1])
        decisions = session.decisions if session is not None else None
        if output_decisions and decisions is None:
            decisions = self._identity_decisions(logits)
        return self._make_output(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            base_logits=(session.base_logits if session is not None else logits) if output_base_logits else None,
            decisions=decisions if output_decisions else None,
        )

    def _identity_decisions(self, logits: torch.Tensor) -> Decisions | None:
        """The decisions that reproduce the base distribution, reported with the head disabled (``None``: none)."""
        return None

    def _make_output(self, **fields: Any) -> DecodingHeadCausalLMOutput:
        return self.output_class(**fields)

    def _policy_forward(
        self,
        hidden: torch.Tensor,
        logit_features: torch.Tensor,
        targets: torch.Tensor,
        temperature: float = 1.0,
        chunk_size: int = 128,
        context: DecodingContext | None = None,
        logit_summary: torch.Tensor | None = None,
    ) -> DecodingPolicyOutput:
        if not self._head_enabled:
            raise RuntimeError(
                "the cached-features path computes the head's policy; it has no meaning with the head off"
            )
        unembedding = Unembedding.from_model(unwrap_causal_lm(self._require_base()))
        stats = self.decoding_head.token_logprobs(
            hidden, logit_features, targets, unembedding, temperature, chunk_size, context, logit_summary=logit_summary
        )
        return self._make_policy_output(stats)

    def _make_policy_output(self, stats: Any) -> DecodingPolicyOutput:
        return self.policy_output_class(
            logprobs=stats.logprobs,
            entropy=stats.entropy,
            kl_to_base=stats.kl_to_base,
            decisions=stats.decisions,
            regularizer=stats.regularizer,
        )

    def _generation_context(self, kwargs: dict[str, Any], parallel_budget: int | None) -> tuple[DecodingContext, int]:
        """The parallel budget and ``max_new_tokens`` of a ``generate`` call, as the base's generate will see them."""
        generation_config = kwargs.get("generation_config") or self.generation_config
        max_new_tokens = kwargs.get("max_new_tokens", generation_config.max_new_tokens)
        if max_new_tokens is None:
            raise ValueError(
                f"{type(self.decoding_head).__name__} conditions on the token budget: pass max_new_tokens to generate"
            )
        k = int(parallel_budget or kwargs.get("num_return_sequences") or generation_config.num_return_sequences or 1)
        return DecodingContext(parallel_budget=torch.tensor(float(k))), int(max_new_tokens)

    def _absorb_user_rule(self, kwargs: dict[str, Any]) -> tuple[SamplingRule | None, dict[str, Any]]:
        """For heads that absorb the user's sampling settings: the temperature and top-p ``generate`` would apply (of
        the generation config it builds from ``kwargs`` and the base's defaults) and the kwargs that make the base's
        ``generate`` apply neither warper after the head (its other warpers, top-k, min-p, ..., still act after it).
        ``(None, kwargs)`` when not sampling: ``generate`` applies no warper then, and the head decides alone."""
        lm = unwrap_causal_lm(self._require_base())
        given = kwargs.get("generation_config")
        # transformers' own merge of the generation config, the model's defaults and kwargs: what generate would use.
        effective, _ = lm._prepare_generation_config(
            given, **{k: v for k, v in kwargs.items() if k != "generation_config"}
        )
        if not effective.do_sample:
            return None, kwargs
        rule = SamplingRule(
            temperature=1.0 if effective.temperature is None else effective.temperature,
            top_p=1.0 if effective.top_p is None else effective.top_p,
        )
        # Neutral values, not None: generate fills None fields from the model's generation config again.
        neutral = {"temperature": 1.0, "top_p": 1.0}
        if given is None:
            return rule, {**kwargs, **neutral}
        given = copy.deepcopy(given)  # the caller's object stays as it was
        given.update(**neutral)
        rest = {k: v for k, v in kwargs.items() if k not in neutral and k != "generation_config"}
        return rule, {**rest, "generation_config": given}

    @torch.no_grad()
    def generate(
        self, *args: Any, parallel_budget: int | None = None, user_rule: SamplingRule | None = None, **kwargs: Any
    ) -> Any:
        """The base model's ``generate``, sampling from the head's distribution (see ``transformers`` docs).

        For heads that absorb the user's sampling settings (``absorbs_user_rule``: AutoDeco's released composition),
        the temperature and top-p of the call (or of the generation config) go into the head's rule and the base's
        warpers for them are turned off; for every other head they act after the head's rule, as usual. Every other
        warper (top-k, min-p, ...) acts after the head's rule for every head.

        Args:
            parallel_budget (`int`, *optional*): for heads that condition on it, how many samples are drawn per
                prompt when they are separate rows of the batch (default: ``num_return_sequences``).
            user_rule (:class:`~logitmlp_hf.sampling_rules.SamplingRule`, *optional*): for heads that absorb the
                user's settings, the temperature and top-p to compose with, given explicitly (e.g. by an evaluation
                that samples with its own processors under ``do_sample=False``); the call's temperature and top-p
                are then left to ``generate`` as they are. Refused for other heads.
        """
        record = getattr(self, "_feature_record", None)
        if record is not None:
            record.generate_calls += 1
        context, max_new_tokens = (None, None)
        if self._head_enabled and self.decoding_head.uses_context:
            context, max_new_tokens = self._generation_context(kwargs, parallel_budget)
        if user_rule is not None and not self.decoding_head.absorbs_user_rule:
            raise ValueError(
                f"{type(self.decoding_head).__name__} does not compose a user_rule with its own: pass temperature/top_p "
                "to generate, whose warpers act after the head"
            )
        if not self._head_enabled:
            user_rule = None
        elif user_rule is None and self.decoding_head.absorbs_user_rule:
            user_rule, kwargs = self._absorb_user_rule(kwargs)
        if record is not None and not args:  # a training rollout: each prompt in a run of identical rows
            kwargs = self._prefill_repeated_prompts(kwargs)
        with self._session(record=record, context=context, max_new_tokens=max_new_tokens, user_rule=user_rule):
            return self._require_base().generate(*args, **kwargs)

    @torch.no_grad()
    def sample_completions(
        self,
        prompts: Sequence[Sequence[int]],
        samples_per_prompt: int,
        *,
        user_rule: SamplingRule | None = None,
        **kwargs: Any,
    ) -> list[list[int]]:
        """Sample from the head's distribution with the package's decoding loop,
        :func:`~logitmlp_hf.evaluation.sampler.sample_completions` (each prompt prefilled once, a row leaves the batch
        at its end-of-sequence token, per-row seeded noise), whose keyword arguments ``kwargs`` are. Within
        :meth:`record_generation_features` the steps are recorded as ``generate``'s are.

        For heads that decide per token without a decoding context (the loop has no token budget to give one);
        others raise ``ValueError`` (use ``generate``).

        Args:
            prompts (`Sequence[Sequence[int]]`): Prompt token ids (no padding).
            samples_per_prompt (`int`): Rows per prompt.
            user_rule (:class:`~logitmlp_hf.sampling_rules.SamplingRule`, *optional*): for heads that absorb the
                user's settings, the temperature and top-p to compose with (as for :meth:`generate`).
        """
        from .evaluation.sampler import sample_completions

        head = self.decoding_head
        if self._head_enabled and (not head.per_token or head.uses_context):
            raise ValueError(
                f"{type(head).__name__} decides once per sequence or reads the token budget: sample with generate"
            )
        if user_rule is not None and not head.absorbs_user_rule:
            raise ValueError(f"{type(head).__name__} does not compose a user_rule with its own: pass warpers instead")
        record = getattr(self, "_feature_record", None)
        if record is not None:
            record.generate_calls += 1
        with self._session(record=record, user_rule=user_rule if self._head_enabled else None):
            completions = sample_completions(self._require_base(), prompts, samples_per_prompt, **kwargs)
        if record is not None:
            record.rows_left_at_end_of_sequence([len(c) for c in completions], samples_per_prompt)
        return completions

    @torch.no_grad()
    def _prefill_repeated_prompts(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``generate``'s kwargs with a KV cache of every prompt but its last token, computed once per run of
        identical rows (a rollout repeats each prompt ``num_generations`` times) and repeated to the rows, so
        ``generate`` prefills only the last prompt token of each row. The cache holds base states only (the head
        acts on logits), so the rollout is the same up to float rounding. Unchanged when no row repeats the one
        before it, or when the call brings its own cache or embeddings."""
        input_ids, mask = kwargs.get("input_ids"), kwargs.get("attention_mask")
        if (
            input_ids is None
            or mask is None
            or input_ids.dim() != 2
            or input_ids.shape[1] < 2
            or kwargs.get("past_key_values") is not None
            or kwargs.get("inputs_embeds") is not None
            or kwargs.get("use_cache") is False
        ):
            return kwargs
        repeats = (input_ids[1:] == input_ids[:-1]).all(-1) & (mask[1:] == mask[:-1]).all(-1)
        if not bool(repeats.any()):
            return kwargs
        first = torch.cat([repeats.new_ones(1), ~repeats]).nonzero().view(-1)
        counts = torch.diff(first, append=first.new_tensor([input_ids.shape[0]]))
        prefix_mask = mask[first, :-1]
        extra = {"logits_to_keep": 1} if "logits_to_keep" in self._forward_params else {}
        out = self._require_base()(
            input_ids=input_ids[first, :-1],
            attention_mask=prefix_mask,
            position_ids=(prefix_mask.long().cumsum(-1) - 1).clamp_(min=0),  # as generate computes them
            use_cache=True,
            **extra,
        )
        cache = out.past_key_values
        cache.batch_select_indices(torch.repeat_interleave(torch.arange(len(first), device=counts.device), counts))
        return {**kwargs, "past_key_values": cache}

    def prepare_inputs_for_generation(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return unwrap_causal_lm(self._require_base()).prepare_inputs_for_generation(*args, **kwargs)

    # ------------------------------------------------------------------------------------------- parameters
    def get_nb_trainable_parameters(self) -> tuple[int, int]:
        """``(trainable, all)`` parameter counts, as PEFT reports them."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return trainable, sum(p.numel() for p in self.parameters())

    def print_trainable_parameters(self) -> None:
        """Print trainable vs total parameters (PEFT's format)."""
        trainable, total = self.get_nb_trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
        )

    # ---------------------------------------------------------------------------------------- save / load / push
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        is_main_process: bool = True,
        metrics: dict[str, Any] | None = None,
        training_config: str | None = None,
        license: str | None = "apache-2.0",
        repo_id: str | None = None,
        safe_serialization: bool = True,
        evaluation_settings: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """Write a head-only repo: ``config.json``, the head's safetensors file and a model card (``README.md``).

        The base model is not saved (the config names it). Extra kwargs that transformers' ``save_pretrained``
        accepts (``max_shard_size``, ``state_dict``, ...) are ignored: a head is a single small file.

        Args:
            metrics: evaluation results, name → value, for the card's results table (without them the card says
                the head has not been evaluated).
            training_config: YAML text of the run's configuration, shown in the card.
            license: SPDX licence id for the card's metadata.
            repo_id: the Hub repo the card should refer to in its usage snippet.
            evaluation_settings: how ``metrics`` were measured (problems, samples, ``max_new_tokens``, seed, ...).
        """
        if not safe_serialization:
            raise ValueError("decoding heads are saved with safetensors only (safe_serialization=False refused)")
        if not is_main_process:
            return
        save_head(
            save_directory,
            self.config,
            self.decoding_head,
            str(self.model_card(metrics, training_config, license, repo_id, evaluation_settings)),
        )

    def model_card(
        self,
        metrics: dict[str, Any] | None = None,
        training_config: str | None = None,
        license: str | None = "apache-2.0",
        repo_id: str | None = None,
        evaluation_settings: dict[str, Any] | None = None,
    ):
        """The head repo's card (a ``huggingface_hub.ModelCard``) from this head type's template."""
        base_params = sum(p.numel() for p in self.base_lm.parameters()) if self.base_lm is not None else 0
        head_params = sum(p.numel() for p in self.decoding_head.parameters())
        return render_model_card(
            self.config,
            base_params,
            repo_id=repo_id,
            metrics=metrics,
            training_config=training_config,
            license=license,
            head_params=head_params,
            evaluation_settings=evaluation_settings,
        )

    def push_to_hub(
        self,
        repo_id: str,
        *,
        commit_message: str | None = None,
        commit_description: str | None = None,
        private: bool | None = None,
        token: bool | str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        metrics: dict[str, Any] | None = None,
        training_config: str | None = None,
        license: str | None = "apache-2.0",
        evaluation_settings: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> CommitInfo:
        """Push the head-only repo (see :meth:`save_pretrained`) with ``huggingface_hub``'s ``HfApi``.

        Returns the commit's ``CommitInfo``. The endpoint follows ``HF_ENDPOINT`` like every huggingface_hub call.
        """
        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        if revision is not None and not revision.startswith("refs/pr"):
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(
                tmp,
                metrics=metrics,
                training_config=training_config,
                license=license,
                repo_id=repo_id,
                evaluation_settings=evaluation_settings,
            )
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message or f"Upload {type(self.decoding_head).__name__}",
                commit_description=commit_description,
                revision=revision,
                create_pr=create_pr,
            )

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *model_args: Any,
        base_model: str | os.PathLike | nn.Module | None = None,
        config: DecodingHeadConfig | None = None,
        **kwargs: Any,
    ) -> DecodingHeadForCausalLM:
        r"""
        Load a head repo and the base it names (or ``base_model``), and return base + head.

        Called on :class:`DecodingHeadForCausalLM` itself, it returns the wrapper class the repo's ``model_type``
        names (as the transformers Auto classes do).

        Args:
            pretrained_model_name_or_path: Hub id or directory of a head repo.
            base_model (`str`, `os.PathLike`, `PreTrainedModel` or `PeftModel`, *optional*):
                Stack the head on this base instead of the one in its config: a model id/path, a PEFT adapter
                id/path (its base is loaded and the adapter applied), a merged fine-tuned checkpoint, or a model
                object. Must have the head's hidden size and vocabulary.
            config: an already-loaded head config (the Auto classes pass one).
            kwargs: ``revision``, ``token``, ``cache_dir``, ``local_files_only``, ``subfolder``, ``force_download``
                locate the head; everything else (``dtype``, ``device_map``, ``attn_implementation``, ...) goes to the
                base model's ``from_pretrained``.

        Raises:
            HeadCheckpointError: the head repo is missing, unreadable, inconsistent, or of another head type.
            InvalidHeadConfigError: a field of the head's ``config.json`` has the wrong type, range or finiteness.
            IncompatibleBaseModelError: the base's hidden size or vocabulary differ from the head's (checked from the
                base's ``config.json`` before its weights are loaded, where that config tells).
        """
        if model_args:
            raise TypeError(f"unexpected positional arguments {model_args}")
        for key in _AUTO_ONLY_KWARGS:
            kwargs.pop(key, None)
        hub_kwargs, model_kwargs = split_hub_kwargs(kwargs)
        if config is None:
            config = load_head_config(
                pretrained_model_name_or_path,
                config_class=None if cls is DecodingHeadForCausalLM else cls.config_class,
                **hub_kwargs,
            )
        if cls is DecodingHeadForCausalLM:
            cls = decoding_head_type(config.model_type).model_class

        # The sizes are compared with the base's (its config.json, or the model object) before the head's weights are
        # read or the base's weights loaded: a head that cannot fit costs no download.
        base_hub = {k: hub_kwargs[k] for k in ("token", "cache_dir", "local_files_only") if k in hub_kwargs}
        if base_model is None:
            if config.base_model_name_or_path is None:
                raise ValueError(
                    f"the head at {str(pretrained_model_name_or_path)!r} does not record its base model; "
                    "pass base_model=..."
                )
            if config.base_adapter_name_or_path is None:
                check_base_config_fits(
                    config, config.base_model_name_or_path, revision=config.base_model_revision, **base_hub
                )
        elif isinstance(base_model, (str, os.PathLike)):
            check_base_config_fits(config, base_model, **base_hub)
        else:
            check_base_compatible(config, base_model)
        state_dict = load_head_state_dict(pretrained_model_name_or_path, config, cls.head_class, **hub_kwargs)

        if base_model is None:
            base_model = load_base_model(
                config.base_model_name_or_path,
                revision=config.base_model_revision,
                adapter_name_or_path=config.base_adapter_name_or_path,
                adapter_revision=config.base_adapter_revision,
                **base_hub,
                **model_kwargs,
            )
        elif isinstance(base_model, (str, os.PathLike)):
            base_model = load_base_model(base_model, **base_hub, **model_kwargs)
        elif model_kwargs:
            logger.warning("ignoring %s: base_model is already a loaded model", sorted(model_kwargs))

        model = cls(config)
        model.decoding_head.load_state_dict(state_dict)
        model.attach_base_model(base_model)
        model.name_or_path = str(pretrained_model_name_or_path)
        return model.eval()


def load_decoding_head_model(
    head_name_or_path: str | os.PathLike, base_model: str | os.PathLike | nn.Module | None = None, **kwargs: Any
) -> DecodingHeadForCausalLM:
    """Base + head for any head repo, whatever its head type (the class is picked from its ``model_type``)."""
    return DecodingHeadForCausalLM.from_pretrained(head_name_or_path, base_model=base_model, **kwargs)


__all__ = [
    "DecodingHeadCausalLMOutput",
    "DecodingHeadForCausalLM",
    "DecodingPolicyOutput",
    "GenerationFeatureRecord",
    "load_decoding_head_model",
]
