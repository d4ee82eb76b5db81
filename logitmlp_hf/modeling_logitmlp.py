"""`LogitMLPForCausalLM`: a frozen causal LM (or `PeftModel`) with a LogitMLP head on its logits.

How the head reaches the logits: for the duration of a ``forward`` or ``generate`` call, two hooks sit on the base —
a pre-hook on its unembedding (``get_output_embeddings()``) that records the hidden state the unembedding multiplies
(post-final-norm, already sliced to ``logits_to_keep``), and a forward hook on the causal LM that replaces the
returned logits with the warped ones. The base model therefore runs its own forward (its cache handling, logit
soft-capping or scaling, LoRA layers) and its own ``generate`` (its generation config, cache classes and input
preparation), and every logits processor ``generate`` applies sees the warped logits, exactly as if the base had
produced them. Outside those calls the base object is untouched.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from huggingface_hub import CommitInfo, HfApi
from torch import nn
from transformers import GenerationMixin, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutputWithPast
from transformers.utils import ModelOutput

from .base_loading import base_dimensions, check_base_compatible, describe_base, load_base_model, unwrap_causal_lm
from .configuration_logitmlp import LogitMLPConfig
from .head import LogitMLPHead
from .head_repo import load_head_config, load_head_state_dict, save_head, split_hub_kwargs
from .model_card import render_model_card
from .policy_logprobs import Unembedding, warped_token_logprobs
from .transform import LogitStatistics, WarpParameters, logit_statistics, warp_logits

logger = logging.getLogger(__name__)

# Passed by the transformers Auto classes or by habit; meaningless for the base's own load.
_AUTO_ONLY_KWARGS = ("_from_auto", "adapter_kwargs", "code_revision", "_commit_hash", "output_loading_info")


@dataclass
class LogitMLPCausalLMOutput(CausalLMOutputWithPast):
    r"""
    `CausalLMOutputWithPast` whose ``logits`` are the warped logits (float32), plus on request:

    base_logits (`torch.FloatTensor` of shape `(batch, positions, vocab)`, *optional*):
        The base model's logits at the same positions (``output_base_logits=True``).
    s1, s2, b (`torch.FloatTensor` of shape `(batch, positions)`, *optional*):
        The tail slope, head slope and breakpoint chosen at each position (``output_warp_params=True``).
    """

    base_logits: torch.FloatTensor | None = None
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
    """

    logprobs: torch.FloatTensor | None = None
    entropy: torch.FloatTensor | None = None
    kl_to_base: torch.FloatTensor | None = None
    s1: torch.FloatTensor | None = None
    s2: torch.FloatTensor | None = None
    b: torch.FloatTensor | None = None


class GenerationFeatureRecord:
    """What a training rollout needs, recorded while ``generate`` runs: per decoding step and sequence, the hidden
    state that predicted the next token and its logit features (max, mean, std, log-sum-exp), so the update never
    has to run the base model again. Filled by :meth:`LogitMLPForCausalLM.record_generation_features`."""

    def __init__(self) -> None:
        self.hidden: list[torch.Tensor] = []
        self.features: list[torch.Tensor] = []
        self.generate_calls = 0

    def add(self, hidden: torch.Tensor, logits: torch.Tensor, stats: LogitStatistics) -> None:
        lse = torch.logsumexp(logits[:, -1].float(), dim=-1)
        last = LogitStatistics(*(t[:, -1] for t in stats))
        self.hidden.append(hidden[:, -1].detach())
        self.features.append(torch.stack((last.max, last.mean, last.std, lse), dim=-1))

    def completion_features(self, batch_size: int, length: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``(hidden (B, length, d), features (B, length, 4))`` for the first ``length`` generated tokens, or
        ``None`` when the record does not describe exactly one ``generate`` call of ``batch_size`` sequences."""
        if self.generate_calls != 1 or len(self.hidden) < length or not self.hidden:
            return None
        if self.hidden[0].shape[0] != batch_size:
            return None
        return torch.stack(self.hidden[:length], dim=1), torch.stack(self.features[:length], dim=1)


class _WarpSession:
    """Hooks that make one call of the base model return warped logits (see the module docstring)."""

    def __init__(
        self,
        head: LogitMLPHead,
        base: nn.Module,
        keep_base_logits: bool = False,
        record: GenerationFeatureRecord | None = None,
    ) -> None:
        self.head = head
        self.lm = unwrap_causal_lm(base)
        self.keep_base_logits = keep_base_logits
        self.record = record
        self.hidden: torch.Tensor | None = None
        self.base_logits: torch.Tensor | None = None
        self.params: WarpParameters | None = None
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def __enter__(self) -> _WarpSession:
        self._handles = [
            self.lm.get_output_embeddings().register_forward_pre_hook(self._capture_hidden),
            self.lm.register_forward_hook(self._warp_output),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _capture_hidden(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        self.hidden = args[0]

    def _warp_output(self, module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
        logits, hidden = output["logits"], self.hidden
        self.hidden = None
        if hidden is None or hidden.shape[:-1] != logits.shape[:-1]:
            raise RuntimeError(
                f"{type(self.lm).__name__} did not compute its logits with get_output_embeddings() on the final "
                "hidden states, so the LogitMLP head cannot see them"
                + ("" if hidden is None else f" (hidden {tuple(hidden.shape)} vs logits {tuple(logits.shape)})")
            )
        hidden = hidden.to(self.head.fc_in.weight.device)
        stats = logit_statistics(logits)
        self.params = self.head(hidden, logits, stats)
        warped = warp_logits(logits, *self.params)
        if self.record is not None:
            self.record.add(hidden, logits, stats)
        if self.keep_base_logits:
            self.base_logits = logits
        output["logits"] = warped.to(logits.device)
        return output


class LogitMLPForCausalLM(PreTrainedModel, GenerationMixin):
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
    main_input_name = "input_ids"
    supports_gradient_checkpointing = False
    _supports_param_buffer_assignment = False

    def __init__(self, config: LogitMLPConfig, base_model: nn.Module | None = None) -> None:
        super().__init__(config)
        self.logitmlp_head = LogitMLPHead(config)
        self._head_enabled = True
        self.post_init()
        self.base_lm: nn.Module | None = None
        if base_model is not None:
            self.attach_base_model(base_model)

    def init_weights(self) -> None:
        # The head initialises itself (near identity) and the base arrives pretrained: transformers' generic
        # re-initialisation must touch neither.
        pass

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
        self.logitmlp_head.to(lm.get_output_embeddings().weight.device)
        for key, value in describe_base(base_model).items():
            if getattr(self.config, key) is None and value is not None:
                setattr(self.config, key, value)

    @classmethod
    def from_base_model(cls, base_model: nn.Module, **config_kwargs: Any) -> LogitMLPForCausalLM:
        """A fresh (near-identity) head on ``base_model``; ``config_kwargs`` go to :class:`LogitMLPConfig`."""
        hidden, vocab = base_dimensions(base_model)
        config = LogitMLPConfig(hidden_size=hidden, vocab_size=vocab, **config_kwargs)
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

    def train(self, mode: bool = True) -> LogitMLPForCausalLM:
        """Train mode for the head only: the frozen base stays in eval mode (no dropout in rollouts)."""
        super().train(mode)
        if self.base_lm is not None:
            self.base_lm.eval()
        return self

    # ---------------------------------------------------------------------------------------------- the warp
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

    def _session(self, keep_base_logits: bool = False, record: GenerationFeatureRecord | None = None):
        if not self._head_enabled:
            return contextlib.nullcontext()
        return _WarpSession(self.logitmlp_head, self._require_base(), keep_base_logits, record)

    @contextlib.contextmanager
    def record_generation_features(self) -> Iterator[GenerationFeatureRecord]:
        """Within this context, ``generate`` records each step's hidden state and logit features (see
        :class:`GenerationFeatureRecord`): the trainer's rollout cache, captured at no extra forward pass."""
        record = GenerationFeatureRecord()
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
        output_warp_params: bool = False,
        cached_features: dict[str, torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> LogitMLPCausalLMOutput | LogitMLPPolicyOutput:
        r"""
        The base model's forward with warped logits.

        Args:
            logits_to_keep (`int` or `torch.Tensor`, *optional*, defaults to `0`):
                As for transformers causal LMs: compute (and warp) logits only for the last ``logits_to_keep``
                positions (0 = all) or for the given position indices.
            labels (`torch.LongTensor`, *optional*):
                Targets for the causal-LM loss, computed on the *warped* distribution.
            output_base_logits (`bool`, *optional*): also return the unwarped logits.
            output_warp_params (`bool`, *optional*): also return ``(s1, s2, b)`` per position.
            cached_features (`dict`, *optional*):
                The training path: ``hidden`` `(B, T, d)`, ``logit_features`` `(B, T, 4)` and ``targets`` `(B, T)`
                cached from a rollout (see :func:`~logitmlp_hf.policy_logprobs.cache_features`), plus optional
                ``temperature`` and ``chunk_size``. The base model is not run; returns a
                :class:`LogitMLPPolicyOutput`. Going through ``forward`` keeps DDP's gradient synchronisation.
            kwargs: passed to the base model's forward (e.g. ``cache_position``, ``output_hidden_states``).
        """
        base = self._require_base()
        if cached_features is not None:
            return self._policy_forward(**cached_features)
        if "logits_to_keep" in self._forward_params:
            kwargs["logits_to_keep"] = logits_to_keep
        elif not (isinstance(logits_to_keep, int) and logits_to_keep == 0):
            raise ValueError(f"{type(unwrap_causal_lm(base)).__name__}.forward does not support logits_to_keep")
        with self._session(keep_base_logits=output_base_logits) as session:
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
        params = session.params if session is not None else None
        if output_warp_params and params is None:  # head disabled: the identity warp
            ones = torch.ones(logits.shape[:-1], device=logits.device)
            params = WarpParameters(ones, ones, logits.detach().float().amax(-1))
        return LogitMLPCausalLMOutput(
            loss=loss,
            logits=logits,
            past_key_values=out.past_key_values,
            hidden_states=out.hidden_states,
            attentions=out.attentions,
            base_logits=(session.base_logits if session is not None else logits) if output_base_logits else None,
            s1=params.s1 if output_warp_params else None,
            s2=params.s2 if output_warp_params else None,
            b=params.b if output_warp_params else None,
        )

    def _policy_forward(
        self,
        hidden: torch.Tensor,
        logit_features: torch.Tensor,
        targets: torch.Tensor,
        temperature: float = 1.0,
        chunk_size: int = 128,
    ) -> LogitMLPPolicyOutput:
        unembedding = Unembedding.from_model(unwrap_causal_lm(self._require_base()))
        if not self._head_enabled:
            raise RuntimeError("the cached-features path computes the warped policy; it has no meaning with the head off")
        stats = warped_token_logprobs(
            self.logitmlp_head, hidden, logit_features, targets, unembedding, temperature, chunk_size
        )
        return LogitMLPPolicyOutput(**stats._asdict())

    @torch.no_grad()
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        """The base model's ``generate``, sampling from the warped distribution (see ``transformers`` docs)."""
        record = getattr(self, "_feature_record", None)
        if record is not None:
            record.generate_calls += 1
        with self._session(record=record):
            return self._require_base().generate(*args, **kwargs)

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
        print(f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}")

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
        **kwargs: Any,
    ) -> None:
        """Write a head-only repo: ``config.json``, ``logitmlp_head.safetensors`` and a model card (``README.md``).

        The base model is not saved (the config names it). Extra kwargs that transformers' ``save_pretrained``
        accepts (``max_shard_size``, ``state_dict``, ...) are ignored: a head is a single small file.

        Args:
            metrics: name → value pairs for the card's results table.
            training_config: YAML text of the run's configuration, shown in the card.
            license: SPDX licence id for the card's metadata.
            repo_id: the Hub repo the card should refer to in its usage snippet.
        """
        if not safe_serialization:
            raise ValueError("LogitMLP heads are saved with safetensors only (safe_serialization=False refused)")
        if not is_main_process:
            return
        base_params = sum(p.numel() for p in self.base_lm.parameters()) if self.base_lm is not None else 0
        card = render_model_card(
            self.config, base_params, repo_id=repo_id, metrics=metrics, training_config=training_config,
            license=license,
        )
        save_head(save_directory, self.config, self.logitmlp_head, str(card))

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
                tmp, metrics=metrics, training_config=training_config, license=license, repo_id=repo_id
            )
            return api.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                commit_message=commit_message or "Upload LogitMLP head",
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
        config: LogitMLPConfig | None = None,
        **kwargs: Any,
    ) -> LogitMLPForCausalLM:
        r"""
        Load a head repo and the base it names (or ``base_model``), and return base + head.

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
            HeadCheckpointError: the head repo is missing, unreadable, or inconsistent.
            IncompatibleBaseModelError: the base's hidden size or vocabulary differ from the head's.
        """
        if model_args:
            raise TypeError(f"unexpected positional arguments {model_args}")
        for key in _AUTO_ONLY_KWARGS:
            kwargs.pop(key, None)
        hub_kwargs, model_kwargs = split_hub_kwargs(kwargs)
        if config is None:
            config = load_head_config(pretrained_model_name_or_path, **hub_kwargs)
        state_dict = load_head_state_dict(pretrained_model_name_or_path, config, **hub_kwargs)

        base_hub = {k: hub_kwargs[k] for k in ("token", "cache_dir", "local_files_only") if k in hub_kwargs}
        if base_model is None:
            if config.base_model_name_or_path is None:
                raise ValueError(
                    f"the head at {str(pretrained_model_name_or_path)!r} does not record its base model; "
                    "pass base_model=..."
                )
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
        model.logitmlp_head.load_state_dict(state_dict)
        model.attach_base_model(base_model)
        model.name_or_path = str(pretrained_model_name_or_path)
        return model.eval()

