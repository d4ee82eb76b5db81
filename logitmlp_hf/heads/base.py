"""`DecodingHead`: the interface every learned decoding policy implements.

A decoding head sits on a frozen causal LM and, at each position, maps the final hidden state ``h`` and the logits
``ℓ`` to the distribution the next token is sampled from. The LogitMLP head is one implementation; AutoDeco's
temperature + top-p head and the learned decoding adapters are others. Everything else in the package (the
transformers wrapper, ``generate()``, the GRPO trainer, ``logitmlp eval`` and ``analyze``, the head-repo format) talks
to a head only through this interface:

- :meth:`DecodingHead.decide` — the head's per-position choices (``s1, s2, b``; a temperature and top-p; action
  probabilities ...), differentiable in its parameters;
- :meth:`DecodingHead.sampling_logits` — the logits ``generate()`` samples from (``-inf`` where a rule truncates);
- :meth:`DecodingHead.policy_logits` — the logits whose ``log_softmax`` is the training policy's log-prob. Equal to
  the sampling logits where those are differentiable; a documented relaxation where they are not (hard top-p);
- :meth:`DecodingHead.token_logprobs` — per-token log-probs of sampled tokens from cached features (``h`` and four
  logit statistics per token), so training never runs the base model again. The generic implementation recomputes
  each chunk's logits under activation checkpointing (memory ``O(chunk × vocab)``, not ``O(tokens × vocab)``);
  LogitMLP overrides it with its analytic-gradient path.

A head may also read a :class:`DecodingContext` (the token budget left, the parallel budget ``k``), read the whole
logits row and not only its statistics (``reads_logits``: AutoDeco's top-p head reads the probabilities at its
temperature), take the user's own temperature/top-k/top-p/min-p into its rule instead of letting ``generate``'s
warpers act after it (``absorbs_user_rule`` and :meth:`apply_user_rule`: AutoDeco's released composition), mask
positions out of the loss (:meth:`loss_mask`) and add a regulariser (:meth:`regularizer`, e.g. an entropy bonus).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ..features import LogitFeatures, LogitStatistics, kl_from_log_probs, logit_statistics
from ..logit_summary import LogitSummaryLayout
from ..sampling_rules import SamplingRule
from .configuration import DecodingHeadConfig


Decisions = dict[str, torch.Tensor]


@dataclass
class DecodingContext:
    """What a head may condition on besides ``h`` and ``ℓ``; each tensor has the positions' leading shape.

    Args:
        remaining_tokens (`torch.Tensor`, *optional*): tokens left in the completion budget *before* this position's
            token is generated (``max_new_tokens − t`` at completion position ``t``).
        budget (`torch.Tensor`, *optional*): the completion budget ``max_new_tokens`` itself.
        parallel_budget (`torch.Tensor`, *optional*): how many samples are drawn for this prompt (``k``).
    """

    remaining_tokens: torch.Tensor | None = None
    budget: torch.Tensor | None = None
    parallel_budget: torch.Tensor | None = None

    def reshape(self, *shape: int) -> DecodingContext:
        """The same context with every tensor reshaped (e.g. flattened to rows)."""
        return DecodingContext(**{k: None if v is None else v.reshape(*shape) for k, v in self.__dict__.items()})

    def rows(self, index: slice) -> DecodingContext:
        """The context of a slice of (flattened) rows."""
        return DecodingContext(**{k: None if v is None else v[index] for k, v in self.__dict__.items()})


@dataclass
class HeadTokenStats:
    """Per-token results of :meth:`DecodingHead.token_logprobs` (each tensor of the targets' shape).

    Args:
        logprobs: log p(target) under the policy, with gradient to the head's parameters.
        entropy: entropy of the policy's token distribution (no gradient).
        kl_to_base: KL(policy ‖ base) per token (no gradient).
        decisions: the head's choices at each token (what :meth:`DecodingHead.decide` returned, detached).
        regularizer: a per-token term the trainer *adds to the objective* (e.g. an entropy bonus), with gradient.
    """

    logprobs: torch.Tensor
    entropy: torch.Tensor
    kl_to_base: torch.Tensor
    decisions: Decisions = field(default_factory=dict)
    regularizer: torch.Tensor | None = None


class DecodingHead(nn.Module):
    """Base class of learned decoding policies (see the module docstring).

    Subclasses set ``config_class`` and ``weights_name`` and implement :meth:`decide` and :meth:`sampling_logits`.

    Class attributes:
        config_class: the :class:`DecodingHeadConfig` subclass the head is built from.
        weights_name: file name of the head's safetensors in a head repo.
        converted_weights_names: other file names a head repo of this type may hold instead, in another code base's
            format (tried in order when ``weights_name`` is absent; their tensors go through :meth:`convert_state_dict`).
        converted_key_prefixes: the prefixes of the tensors read from such a file (others, e.g. a base model's, are
            never read).
        per_token: ``True`` when the head decides at every position (``logitmlp analyze`` applies); ``False`` for a
            decision made once per sequence.
        uses_context: ``True`` when :meth:`decide` reads a :class:`DecodingContext` (the wrapper then builds one).

    Attributes a head may set per instance (from its config):
        reads_logits: ``True`` when :meth:`decide` needs the logits row itself (passed as ``logits=``), not only its
            statistics. The cached-features training path then decides chunk by chunk, where it recomputes the logits.
        absorbs_user_rule: ``True`` when the user's temperature/top-k/top-p/min-p (``generate``'s, or TRL's sampling
            temperature) are composed with the head's decisions by :meth:`apply_user_rule` instead of being applied
            after the head's rule by ``generate``'s warpers.
    """

    config_class: ClassVar[type[DecodingHeadConfig]] = DecodingHeadConfig
    weights_name: ClassVar[str] = "decoding_head.safetensors"
    per_token: ClassVar[bool] = True
    uses_context: ClassVar[bool] = False
    converted_weights_names: ClassVar[tuple[str, ...]] = ()
    converted_key_prefixes: ClassVar[tuple[str, ...]] = ()
    reads_logits: bool = False
    absorbs_user_rule: bool = False

    def __init__(self, config: DecodingHeadConfig) -> None:
        super().__init__()
        self.hidden_size = config.hidden_size

    @classmethod
    def expected_state_shapes(cls, config: DecodingHeadConfig) -> dict[str, tuple[int, ...]]:
        """Name → shape of every tensor in the state dict of the head ``config`` describes, with nothing allocated.

        The head is built on PyTorch's ``meta`` device (shapes only), so a config that claims a huge head costs
        nothing to check against a weights file. A head type whose ``__init__`` needs real tensors overrides this.
        """
        with torch.device("meta"):
            head = cls(config)
        return {name: tuple(t.shape) for name, t in head.state_dict().items()}

    @classmethod
    def convert_state_dict(
        cls, state: dict[str, torch.Tensor], config: DecodingHeadConfig, path: str
    ) -> dict[str, torch.Tensor]:
        """This head's state dict from the tensors of a ``converted_weights_names`` file at ``path`` (those under
        ``converted_key_prefixes``). Raises :class:`~logitmlp_hf.HeadCheckpointError` naming the file and key."""
        raise NotImplementedError(f"{cls.__name__} reads no other checkpoint format")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def check_hidden(self, hidden_states: torch.Tensor) -> None:
        """Raise if the hidden states are not the width the head was built for."""
        if hidden_states.shape[-1] != self.hidden_size:
            raise ValueError(
                f"hidden states have size {hidden_states.shape[-1]} but the head was built for hidden_size="
                f"{self.hidden_size}"
            )

    # ------------------------------------------------------------------------------------------ the policy
    def decide(
        self, hidden_states: torch.Tensor, stats: LogitStatistics, context: DecodingContext | None = None
    ) -> Decisions:
        """The head's choices at each position, differentiable in its parameters.

        Args:
            hidden_states (`torch.Tensor` of shape `(..., hidden_size)`): post-final-norm hidden states.
            stats (:class:`LogitStatistics`): max, mean and std of the base logits at the same positions.
            context (:class:`DecodingContext`, *optional*): budgets, for heads with ``uses_context``.

        Heads with ``reads_logits`` take a fourth, keyword argument ``logits`` (`torch.Tensor` of shape
        `(..., vocab_size)`): the logits row at each position. Callers go through :meth:`decide_at`, which passes it.
        """
        raise NotImplementedError

    def decide_at(
        self,
        hidden_states: torch.Tensor,
        logits: torch.Tensor,
        stats: LogitStatistics | None = None,
        context: DecodingContext | None = None,
    ) -> Decisions:
        """:meth:`decide` with everything the head may read at these positions: the logits' statistics (computed
        here unless given) and, for heads with ``reads_logits``, the logits themselves."""
        stats = logit_statistics(logits) if stats is None else stats
        if self.reads_logits:
            return self.decide(hidden_states, stats, context, logits=logits)
        return self.decide(hidden_states, stats, context)

    def apply_user_rule(self, decisions: Decisions, rule: SamplingRule) -> Decisions:
        """The decisions composed with the user's sampling rule, for heads with ``absorbs_user_rule``.

        Args:
            decisions: what :meth:`decide` returned.
            rule (:class:`~logitmlp_hf.sampling_rules.SamplingRule`): the user's temperature, top-k, top-p and min-p
                (those of ``generate``'s generation config when sampling).
        """
        raise NotImplementedError(f"{type(self).__name__} does not absorb the user's sampling rule")

    def sampling_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """The logits ``generate()`` samples from (float32, ``-inf`` for tokens a rule removes)."""
        raise NotImplementedError

    def sampling_logits_(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """:meth:`sampling_logits` allowed to overwrite ``logits`` (a float32 tensor the caller owns, no autograd);
        for inference hot paths. Defaults to :meth:`sampling_logits`."""
        return self.sampling_logits(logits, decisions)

    def policy_logits(self, logits: torch.Tensor, decisions: Decisions) -> torch.Tensor:
        """Logits whose ``log_softmax`` is the policy trained on; differentiable in ``decisions``.

        Defaults to :meth:`sampling_logits`. Heads whose sampling rule is not differentiable (hard truncation)
        return a relaxation here and say so in their docstring.
        """
        return self.sampling_logits(logits, decisions)

    def warp(
        self,
        hidden_states: torch.Tensor,
        logits: torch.Tensor,
        context: DecodingContext | None = None,
        user_rule: SamplingRule | None = None,
    ) -> tuple[torch.Tensor, Decisions]:
        """Sampling logits (float32) and the decisions that produced them.

        Args:
            user_rule (:class:`~logitmlp_hf.sampling_rules.SamplingRule`, *optional*): the user's sampling settings,
                composed into the decisions by heads with ``absorbs_user_rule`` (refused by other heads).
        """
        self.check_hidden(hidden_states)
        decisions = self.decide_at(hidden_states, logits, context=context)
        if user_rule is not None:
            decisions = self.apply_user_rule(decisions, user_rule)
        return self.sampling_logits(logits, decisions), decisions

    # ---------------------------------------------------------------------------------------- training
    def loss_mask(self, features: LogitFeatures) -> torch.Tensor | None:
        """Positions that count in the loss (``True``), from the cached logit features: ``None`` = all."""
        return None

    def regularizer(self, decisions: Decisions) -> torch.Tensor | None:
        """A per-position term added to the maximised objective (with gradient), or ``None``."""
        return None

    def log_values(self, decisions: Decisions, features: LogitFeatures) -> dict[str, torch.Tensor]:
        """Per-token quantities the trainer logs (mean and spread), keyed by metric name."""
        return {}

    def scalar_decisions(self, decisions: Decisions) -> dict[str, torch.Tensor]:
        """The decisions at flattened positions ``(N, ...)`` as one float per position each, for per-token analysis.

        Defaults to the decisions that already are; heads with vector-valued choices (an action distribution)
        override it.
        """
        return {key: value for key, value in decisions.items() if value.dim() == 1}

    def logit_summary_layout(self, temperature: float = 1.0) -> LogitSummaryLayout | None:
        """The logit summary this head's updates can use instead of the vocabulary at ``temperature``, or ``None``.

        Heads that return a layout accept ``logit_summary`` in :meth:`token_logprobs`; the trainer then records
        summaries at rollout time (:func:`~logitmlp_hf.logit_summary.summarize_logits`). Defaults to ``None``: the
        update recomputes the logits.
        """
        return None

    def token_logprobs(
        self,
        hidden: torch.Tensor,
        logit_features: torch.Tensor,
        targets: torch.Tensor,
        unembedding: Any,
        temperature: float = 1.0,
        chunk_size: int = 128,
        context: DecodingContext | None = None,
        logit_summary: torch.Tensor | None = None,
    ) -> HeadTokenStats:
        """Per-token log p(target) of the policy from cached features, differentiable in the head's parameters.

        Args:
            hidden (`torch.Tensor` of shape `(..., d)`): final hidden states at the positions that predict ``targets``.
            logit_features (`torch.Tensor` of shape `(..., 4)`): max, mean, std and log-sum-exp of the base logits
                there (:func:`~logitmlp_hf.features.cache_features`).
            targets (`torch.LongTensor` of shape `(...)`): the sampled tokens.
            unembedding (:class:`~logitmlp_hf.features.Unembedding`): the base's hidden → logits map.
            temperature: TRL's sampling temperature: applied after the head, or composed with the head's decisions
                (:meth:`apply_user_rule`) by heads with ``absorbs_user_rule``.
            chunk_size: positions per vocabulary pass.
            context (:class:`DecodingContext`, *optional*): budgets, of the targets' shape.
            logit_summary (`torch.Tensor`, *optional*): summaries in the layout of :meth:`logit_summary_layout`;
                only heads that return one accept it.
        """
        if logit_summary is not None:
            raise ValueError(f"{type(self).__name__} has no logit-summary path (its logit_summary_layout is None)")
        lead = targets.shape
        flat_hidden = hidden.reshape(-1, hidden.shape[-1])
        features = LogitFeatures.unpack(logit_features).reshape(-1)
        stats = features.stats
        flat_context = None if context is None else context.reshape(-1)
        self.check_hidden(flat_hidden)
        user_rule = SamplingRule(temperature=temperature) if self.absorbs_user_rule else None
        after = 1.0 if self.absorbs_user_rule else float(temperature)
        decisions = None
        if not self.reads_logits:  # decided once for every position; a logits-reading head decides chunk by chunk
            decisions = self.decide(flat_hidden, stats, flat_context)
            if user_rule is not None:
                decisions = self.apply_user_rule(decisions, user_rule)
        flat_targets = targets.reshape(-1)
        pieces: list[tuple[torch.Tensor, ...]] = []
        chunk_decisions: list[Decisions] = []
        for start in range(0, flat_hidden.shape[0], chunk_size):
            rows = slice(start, start + chunk_size)
            # Checkpointing keeps only the chunk's hidden states for the backward pass; its logits (chunk × vocab)
            # are recomputed there instead of held for every chunk at once.
            if decisions is not None:
                names = list(decisions)
                pieces.append(
                    checkpoint(
                        self._chunk_logprobs,
                        flat_hidden[rows],
                        flat_targets[rows],
                        features.lse[rows],
                        unembedding,
                        after,
                        names,
                        *(v[rows] for v in decisions.values()),
                        use_reentrant=False,
                    )
                )
            else:
                chunk_context = None if flat_context is None else flat_context.rows(rows)
                names, *out = checkpoint(
                    self._chunk_decide_and_logprobs,
                    flat_hidden[rows],
                    flat_targets[rows],
                    features.lse[rows],
                    unembedding,
                    chunk_context,
                    user_rule,
                    after,
                    use_reentrant=False,
                )
                pieces.append(tuple(out[:3]))
                chunk_decisions.append(dict(zip(names, out[3:])))
        if decisions is None and pieces:
            decisions = {k: torch.cat([d[k] for d in chunk_decisions]) for k in chunk_decisions[0]}
        elif decisions is None:  # no completion tokens: the (empty) decisions of no positions
            with torch.no_grad():
                logits = unembedding.logits(flat_hidden)
            decisions = self.decide(flat_hidden, stats, flat_context, logits=logits)
            if user_rule is not None:
                decisions = self.apply_user_rule(decisions, user_rule)
        if pieces:
            logp, entropy, kl = (torch.cat(parts) for parts in zip(*pieces))
        else:  # no completion tokens: well-defined empty results
            logp = entropy = kl = flat_hidden.new_zeros(0, dtype=torch.float32)
        regularizer = self.regularizer(decisions)
        return HeadTokenStats(
            logprobs=logp.reshape(lead),
            entropy=entropy.reshape(lead),
            kl_to_base=kl.reshape(lead),
            decisions={k: v.detach().reshape(*lead, *v.shape[1:]) for k, v in decisions.items()},
            regularizer=None if regularizer is None else regularizer.reshape(lead),
        )

    def _chunk_decide_and_logprobs(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        base_lse: torch.Tensor,
        unembedding: Any,
        context: DecodingContext | None,
        user_rule: SamplingRule | None,
        temperature: float,
    ) -> tuple[Any, ...]:
        """One chunk of a ``reads_logits`` head: decide from the recomputed logits, then the chunk's log-probs."""
        with torch.no_grad():
            logits = unembedding.logits(hidden)
        decisions = self.decide(hidden, logit_statistics(logits, check_finite=False), context, logits=logits)
        if user_rule is not None:
            decisions = self.apply_user_rule(decisions, user_rule)
        names = list(decisions)
        out = self._chunk_logprobs_from(logits, targets, base_lse, temperature, decisions)
        return (names, *out, *decisions.values())

    def _chunk_logprobs(
        self,
        hidden: torch.Tensor,
        targets: torch.Tensor,
        base_lse: torch.Tensor,
        unembedding: Any,
        temperature: float,
        names: list[str],
        *values: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            logits = unembedding.logits(hidden)
        return self._chunk_logprobs_from(logits, targets, base_lse, temperature, dict(zip(names, values)))

    def _chunk_logprobs_from(
        self,
        logits: torch.Tensor,
        targets: torch.Tensor,
        base_lse: torch.Tensor,
        temperature: float,
        decisions: Decisions,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        log_p = torch.log_softmax(self.policy_logits(logits, decisions) / temperature, dim=-1)
        target = log_p.gather(-1, targets[:, None]).squeeze(-1)
        with torch.no_grad():
            log_p_d = log_p.detach()
            entropy = -torch.where(torch.isneginf(log_p_d), 0.0, log_p_d.exp() * log_p_d).sum(-1)
            kl = kl_from_log_probs(log_p_d, logits - base_lse[:, None])
        return target, entropy, kl


__all__ = ["Decisions", "DecodingContext", "DecodingHead", "HeadTokenStats"]
