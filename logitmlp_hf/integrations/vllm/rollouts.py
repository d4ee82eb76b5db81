"""Training rollouts from vLLM: TRL's vLLM backend with the decoding head in the engine and head-only weight syncs.

TRL 1.16's `VLLMGeneration` (``trl/generation/vllm_generation.py``) is kept as it is except for two things:

- **The engine.** In colocate mode TRL builds ``vllm.LLM(model=model.name_or_path, ...)``, which would load the plain
  base and sample unwarped rollouts. :class:`DecodingHeadVLLMGeneration` builds the same ``LLM`` (TRL's arguments,
  TRL's code) on the head model's base with the head's ``hf_overrides`` (:mod:`logitmlp_hf.integrations.vllm.model`); the head's
  config travels inline, because a head being trained has no repo yet. A base carrying a LoRA adapter is served
  merged (:func:`~logitmlp_hf.integrations.vllm.engine.merged_base`). In server mode the server must already serve a head
  (``logitmlp vllm-serve``); its architecture and head type are checked against the trainer's at start-up.
- **The weight sync.** TRL pushes every named parameter after each optimiser step; here only the head's tensors go,
  under the transformers wrapper's names (``logitmlp_head.fc_in.weight``, ...), which the engine's ``load_weights``
  routes to its head. The base is never resent or reloaded (it is frozen), so a sync moves ~0.1% of the model.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import torch
import trl.generation.vllm_generation as trl_vllm_generation
from trl.generation.vllm_generation import VLLMGeneration

from ...hub.base_loading import is_peft_model, resolve_model_path, unwrap_causal_lm
from .engine import head_hf_overrides, merged_base
from .model import ARCHITECTURE_PREFIX, HF_CONFIG_KEY, VLLMHeadSpec


logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _replaced(module: Any, name: str, value: Any) -> Iterator[None]:
    # TRL constructs `LLM(...)` and `VLLMGeneration(...)` inline, with no factory to override; swapping the module
    # attribute for the duration of one call keeps TRL's own construction code and arguments.
    original = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, original)


def head_engine_overrides(model: Any) -> dict[str, Any]:
    """``model``/``tokenizer``/``revision``/``dtype``/``hf_overrides`` for an engine serving a head model in training."""
    config = model.config
    base = model.get_base_model()
    name = unwrap_causal_lm(base).name_or_path
    if not name:
        raise ValueError("the base model has no name_or_path, so vLLM cannot load it; save it and load from disk")
    path = tokenizer = resolve_model_path(name)
    revision = config.base_model_revision
    if is_peft_model(base):
        if config.base_adapter_name_or_path is None:
            raise ValueError(
                "the base carries a PEFT adapter whose source is unknown, so vLLM cannot load it; load the base with "
                "logitmlp_hf.hub.base_loading.load_base_model(adapter) or merge it first (PeftModel.merge_and_unload())"
            )
        path, revision = str(merged_base(config)), None
    spec = VLLMHeadSpec(config=config.to_diff_dict())
    # The trainer's dtype, not vLLM's "auto" (which serves float32 checkpoints in 16 bits): rollouts then come from
    # the policy whose log-probs the update recomputes, and the importance-sampling ratios stay at 1.
    dtype = str(unwrap_causal_lm(base).dtype).removeprefix("torch.")
    return {
        "model": path,
        "tokenizer": tokenizer,
        "revision": revision,
        "dtype": dtype,
        "hf_overrides": head_hf_overrides(spec, path, revision, head_config=config),
    }


def check_server_serves_head(server_info: dict[str, Any], head_config: Any, url: str = "the server") -> None:
    """Raise unless a vLLM server's ``/server_info`` shows it applies a decoding head of ``head_config``'s type and
    sizes (else training would silently sample rollouts from the plain base, or fail at the first sync)."""
    model_config = server_info.get("model_config") or {}
    overrides = model_config.get("hf_overrides") or {}
    architectures = overrides.get("architectures") or []
    spec = overrides.get(HF_CONFIG_KEY)
    if not isinstance(spec, dict) or not any(str(a).startswith(ARCHITECTURE_PREFIX) for a in architectures):
        raise ValueError(
            f"the vLLM server at {url} serves {model_config.get('model')!r} without a decoding head, so rollouts "
            "would be sampled from the plain base. Start it with `logitmlp vllm-serve --for-training <base model or "
            "head repo>`."
        )
    served = spec.get("config") or {}  # a server started from a head repo names it instead; its sizes were checked
    for key in ("model_type", "hidden_size", "vocab_size", "head_hidden_size"):
        if key in served and served[key] != getattr(head_config, key):
            raise ValueError(
                f"the vLLM server at {url} serves a head with {key}={served[key]!r}, but the trainer's head has "
                f"{key}={getattr(head_config, key)!r}; restart the server for this head"
            )


class DecodingHeadVLLMGeneration(VLLMGeneration):
    """TRL's vLLM generation backend for a :class:`~logitmlp_hf.DecodingHeadForCausalLM` (see the module docstring).

    Takes `VLLMGeneration`'s arguments; ``model`` is the head model.
    """

    def _init_vllm(self) -> None:
        if self.model_impl == "transformers":
            raise ValueError(
                "vllm_model_impl='transformers' bypasses vLLM's model classes, so rollouts would not be sampled from "
                "the head; use 'vllm' or 'auto'"
            )
        if self.mode != "colocate":
            super()._init_vllm()
            if self.accelerator.is_main_process:
                self._check_server_serves_head()
            return
        engine = head_engine_overrides(self.model)
        llm_class = trl_vllm_generation.LLM

        def build_llm(*args: Any, **kwargs: Any) -> Any:
            return llm_class(*args, **{**kwargs, **engine})

        with _replaced(trl_vllm_generation, "LLM", build_llm):
            super()._init_vllm()

    def _check_server_serves_head(self) -> None:
        check_server_serves_head(self.vllm_client.get_server_info(), self.model.config, self.vllm_client.base_url)

    def _iter_named_params(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The head's parameters only, named as in the head model (and as the engine's ``load_weights`` expects)."""
        model = self.accelerator.unwrap_model(self.model)
        prefix = model.head_attribute + "."
        for name, param in model.decoding_head.named_parameters():
            with self._dist.gather_params([param]):
                yield prefix + name, param.data


def use_decoding_head_vllm_generation() -> contextlib.AbstractContextManager[None]:
    """While active, TRL's `GRPOTrainer.__init__` builds :class:`DecodingHeadVLLMGeneration` for ``use_vllm=True``."""
    import trl.trainer.grpo_trainer as trl_grpo_trainer

    return _replaced(trl_grpo_trainer, "VLLMGeneration", DecodingHeadVLLMGeneration)


__all__ = [
    "DecodingHeadVLLMGeneration",
    "check_server_serves_head",
    "head_engine_overrides",
    "use_decoding_head_vllm_generation",
]
