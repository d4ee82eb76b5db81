"""`DecodingHeadGRPOConfig`: TRL's `GRPOConfig` with the settings of head-only RLVR."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments
from trl import GRPOConfig

from ..heads.configuration import OBJECTIVES
from ..heads.registry import registered_head_types


UPDATE_LOGPROBS = ("auto", "summary", "exact")
ROLLOUT_SAMPLERS = ("auto", "rows", "generate")


@dataclass
class DecodingHeadGRPOConfig(GRPOConfig):
    r"""
    Configuration of :class:`DecodingHeadGRPOTrainer`: every `trl.GRPOConfig` option, DAPO defaults, and the head's.

    Defaults that differ from `GRPOConfig` and why:

    - ``loss_type="dapo"`` (token-level aggregation), ``epsilon=0.2``, ``epsilon_high=0.28`` (decoupled clip),
      ``beta=0.0`` (no KL term): DAPO as in the source.
    - ``learning_rate=1e-3``: the head is a freshly initialised 2-layer MLP, not a pretrained LM; TRL's 1e-6 would
      leave it at its near-identity init.
    - ``gradient_checkpointing=False``: the base is frozen and never back-propagated through.
    - ``bf16``: on only where a CUDA device supports it (CPU bf16 autocast is slower and changes the numerics).
    - ``dataloader_pin_memory``: off without an accelerator (nothing to pin to; torch would warn every epoch).
    - ``temperature=1.0`` and no top-k/top-p/min-p: the warp *is* the sampling rule, and TRL's policy log-probs
      ignore truncation, so any truncation would make the rollouts off-policy.

    Parameters that control the objective:

    Args:
        objective (`str`, *optional*, defaults to `"pass@1"`):
            ``"pass@1"`` — group-mean advantages (TRL's, with ``scale_rewards``); ``"pass@k"`` — the analytical pass@k
            advantage (Chen et al. 2025) with ``pass_k``.
        pass_k (`int`, *optional*, defaults to `4`):
            ``k`` for ``objective="pass@k"``, then at most ``num_generations`` and ``num_generations_eval``; also the
            ``k`` of the logged in-batch pass@k (capped at the group size, so any ``k`` works with ``"pass@1"``).
        correct_threshold (`float`, *optional*, defaults to `0.5`):
            A rollout whose total reward is at least this counts as correct (pass@k, in-batch pass@k).

    Parameters that control dynamic sampling (DAPO):

    Args:
        dynamic_sampling (`bool`, *optional*, defaults to `True`):
            Drop groups whose rewards are all equal (no learning signal) and refill them with groups of new
            prompts until the batch is full or ``max_dynamic_sampling_rounds`` extra generation rounds were used.
        max_dynamic_sampling_rounds (`int`, *optional*, defaults to `3`):
            Bound on extra generation rounds per batch; groups still unfilled stay in the batch with zero advantage.
        dynamic_sampling_extra_prompts (`int`, *optional*, defaults to `0`):
            Fresh prompts generated in the same ``generate`` call as every training batch (each with its
            ``num_generations`` rollouts), as the first candidates to replace groups without signal; refill rounds
            run only for what they leave unfilled. Where decoding a few more rows costs much less than another
            round (small models, CPU), this saves most rounds; extra groups not needed are discarded.
        overlong_buffer_length (`int`, *optional*):
            Adds TRL's soft overlong punishment as a reward: 0 up to ``max_completion_length − buffer`` tokens, then
            linearly down to −1 at ``max_completion_length``. ``None`` disables it.

    Parameters of the head (used when the trainer is given a plain model and wraps it):

    Args:
        head_type (`str`, *optional*, defaults to `"logitmlp"`):
            Which decoding head to train: ``"logitmlp"``, ``"autodeco"`` (per-token temperature + top-p) or
            ``"decoding_adapter"`` (token-level discrete actions). Ignored when the model already has a head.
        head_config (`dict` or `str`, *optional*):
            Extra fields of the new head's config (a dict, or its JSON on the command line), e.g.
            ``{"budget_conditioning": true}`` for the decoding adapter.
        head_hidden_size (`int`, *optional*, defaults to `256`): width of the head's hidden layer.
        head_init_std (`float`, *optional*): std of the head's output layer at init (default: the config's).
        head_slope_bound (`float`, *optional*): the slopes' bound, slopes in ``(1/b, b)`` (default: the config's 4).
        logprob_chunk_size (`int`, *optional*, defaults to `128`):
            Tokens per vocabulary pass when recomputing log-probs from cached features.
        update_logprobs (`str`, *optional*, defaults to `"auto"`):
            How updates get the policy's log-probs from the rollout cache. ``"summary"``: from a per-token logit
            summary recorded during generation (:mod:`logitmlp_hf.logit_summary`; no vocabulary pass, rows whose
            certified error bound is too large are recomputed exactly); only for heads that have a summary path
            (LogitMLP with slopes/temperature within ``[1/10, 10]`` and ``breakpoint_scale ≤ 4``). ``"exact"``:
            recompute the logits from the cached hidden states chunk by chunk. ``"auto"``: ``"summary"`` where it
            applies on an accelerator, else ``"exact"`` (on a CPU, recording the summaries costs the rollout more
            than the update saves; see ``benchmarks/README.md``).
        rollout_sampler (`str`, *optional*, defaults to `"auto"`):
            How rollouts are decoded without vLLM. ``"rows"``: the package's decoding loop
            (:meth:`~logitmlp_hf.DecodingHeadForCausalLM.sample_completions`): each prompt is prefilled once for its
            group, a rollout leaves the batch at its end-of-sequence token, and each rollout draws its noise from its
            own generator, seeded from the global one, so a rollout does not depend on which others share the batch;
            only for heads that decide per token without a decoding context, text prompts, and the sampling settings
            ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``repetition_penalty``. ``"generate"``: TRL's
            ``generate`` call. ``"auto"``: ``"rows"`` where it applies, else ``"generate"``.
    """

    objective: str = field(default="pass@1", metadata={"help": "'pass@1' (group-mean advantage) or 'pass@k'."})
    pass_k: int = field(default=4, metadata={"help": "k of the pass@k objective and of the logged pass@k."})
    correct_threshold: float = field(default=0.5, metadata={"help": "Reward at or above which a rollout is correct."})
    dynamic_sampling: bool = field(default=True, metadata={"help": "Drop and refill groups with equal rewards."})
    max_dynamic_sampling_rounds: int = field(default=3, metadata={"help": "Extra generation rounds per batch."})
    dynamic_sampling_extra_prompts: int = field(
        default=0,
        metadata={"help": "Fresh prompts generated with every batch as refill candidates (before any extra round)."},
    )
    overlong_buffer_length: int | None = field(default=None, metadata={"help": "Soft overlong punishment buffer."})
    head_type: str = field(
        default="logitmlp", metadata={"help": "Head to train: 'logitmlp', 'autodeco' or 'decoding_adapter'."}
    )
    head_config: dict | str | None = field(
        default=None, metadata={"help": "Extra config fields of a new head, as a dict or JSON string."}
    )
    head_hidden_size: int = field(default=256, metadata={"help": "Hidden width of a newly created head."})
    head_init_std: float | None = field(default=None, metadata={"help": "Output-layer init std of a new head."})
    head_slope_bound: float | None = field(
        default=None, metadata={"help": "Bound of the head's slopes, (1/b, b); default: the head config's (4)."}
    )
    logprob_chunk_size: int = field(default=128, metadata={"help": "Tokens per vocabulary pass in updates."})
    update_logprobs: str = field(
        default="auto",
        metadata={"help": "'auto', 'summary' (vocabulary-free, from logit summaries) or 'exact' (chunked logits)."},
    )
    rollout_sampler: str = field(
        default="auto",
        metadata={"help": "'auto', 'rows' (the package's decoding loop) or 'generate' (TRL's generate call)."},
    )
    print_metrics: bool = field(
        default=False,
        metadata={
            "help": "Print every step's metrics dict to stdout as transformers does; by default they go to the "
            "logger (INFO), the report_to backends and trainer.state.log_history, and the progress bar shows the "
            "reward and KL."
        },
    )

    # GRPOConfig defaults changed for head-only DAPO (see the class docstring)
    learning_rate: float = field(default=1e-3, metadata={"help": "Learning rate of the head."})
    loss_type: str = field(default="dapo", metadata={"help": "TRL loss type; DAPO's token-level aggregation."})
    epsilon_high: float | None = field(default=0.28, metadata={"help": "Upper clip range (DAPO's clip-higher)."})
    beta: float = field(default=0.0, metadata={"help": "KL coefficient; head-only training supports only 0."})
    # None, not False: TRL's default is True, and transformers >= 5.20 (where this is a deprecated alias of
    # `activation_checkpointing`) warns about any value set here; None lets it resolve to off silently.
    gradient_checkpointing: bool | None = field(
        default=None, metadata={"help": "Must stay off: the base is frozen (default: off)."}
    )
    bf16: bool | None = field(default=None, metadata={"help": "bf16 mixed precision; default: on with bf16 CUDA."})
    temperature: float = field(
        default=1.0,
        metadata={
            "help": "Sampling temperature: applied after the head's rule, or composed with it by heads that absorb "
            "it (AutoDeco's released composition samples at T̂·temperature)."
        },
    )

    def __post_init__(self) -> None:
        if self.bf16 is None:
            self.bf16 = bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported()) and not self.fp16
        has_accelerator = getattr(getattr(torch, "accelerator", None), "is_available", torch.cuda.is_available)
        if self.dataloader_pin_memory and not has_accelerator():
            self.dataloader_pin_memory = False  # nothing to pin to; torch warns at every epoch's first batch
        if self.gradient_checkpointing is None and not hasattr(TrainingArguments, "activation_checkpointing"):
            self.gradient_checkpointing = False  # transformers < 5.20 has no alias to resolve it
        super().__post_init__()
        if isinstance(self.head_config, str):
            self.head_config = json.loads(self.head_config)
        self.head_config = dict(self.head_config or {})
        trainable = registered_head_types(trainable=True)  # the sequence adapter is fitted, not trained here
        if self.head_type not in trainable:
            raise ValueError(f"head_type must be one of {trainable}, got {self.head_type!r}")
        if self.head_type != "logitmlp" and self.head_slope_bound is not None:
            raise ValueError("head_slope_bound applies to LogitMLP heads only")
        if self.update_logprobs not in UPDATE_LOGPROBS:
            raise ValueError(f"update_logprobs must be one of {UPDATE_LOGPROBS}, got {self.update_logprobs!r}")
        if self.rollout_sampler not in ROLLOUT_SAMPLERS:
            raise ValueError(f"rollout_sampler must be one of {ROLLOUT_SAMPLERS}, got {self.rollout_sampler!r}")
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}, got {self.objective!r}")
        if self.pass_k < 1:
            raise ValueError(f"pass_k must be at least 1, got {self.pass_k}")
        # Only the pass@k objective needs k samples per group; the logged in-batch pass@k uses min(pass_k, group).
        if self.objective == "pass@k":
            for name in ("num_generations", "num_generations_eval"):
                group = getattr(self, name)
                if group is not None and self.pass_k > group:
                    raise ValueError(
                        f"pass_k={self.pass_k} must be between 1 and {name}={group} (the pass@k objective is "
                        "estimated from each prompt's group of generations, in training and in evaluation)"
                    )
            if self.num_generations is not None and self.pass_k == self.num_generations:
                # With k = group size, every k-subset is the whole group: a group with any right rollout has pass@k = 1
                # and every advantage is 0, one without has 0 too. Training would silently learn nothing.
                raise ValueError(
                    f"pass_k={self.pass_k} equals num_generations={self.num_generations}: the pass@k advantage is then 0 "
                    f"for every rollout and the head never learns; use num_generations > pass_k (e.g. "
                    f"{2 * self.pass_k}) or a smaller pass_k"
                )
        if self.max_dynamic_sampling_rounds < 0:
            raise ValueError(f"max_dynamic_sampling_rounds must be >= 0, got {self.max_dynamic_sampling_rounds}")
        if self.dynamic_sampling_extra_prompts < 0:
            raise ValueError(f"dynamic_sampling_extra_prompts must be >= 0, got {self.dynamic_sampling_extra_prompts}")
        if self.dynamic_sampling_extra_prompts and not self.dynamic_sampling:
            raise ValueError(
                f"dynamic_sampling_extra_prompts={self.dynamic_sampling_extra_prompts} needs dynamic_sampling=True "
                "(the extra prompts only serve as refill candidates)"
            )
        if self.use_vllm and self.vllm_enable_sleep_mode:
            raise ValueError(
                "vllm_enable_sleep_mode=True: TRL's sleep (level 2) discards the engine's weights and re-sends the whole "
                "model after each wake-up, while this trainer only ever sends the head (the base is frozen). Head-only "
                "updates need almost no memory beside the engine, so leave sleep mode off."
            )
        if self.gradient_checkpointing:
            raise ValueError("gradient_checkpointing must be False: only the head is trained and the base is frozen")
        if self.beta != 0.0:
            raise ValueError(
                "beta must be 0 for head-only training (DAPO uses no KL term; a reference model would be a second "
                "copy of the frozen base). KL(warp‖base) is logged as warp/kl_to_base instead."
            )


# The first head type's name for it, kept for existing code and recipes; it trains every trainable head type.
LogitMLPGRPOConfig = DecodingHeadGRPOConfig
