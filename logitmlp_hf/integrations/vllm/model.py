"""Decoding heads inside vLLM: a registered model wrapper whose ``compute_logits`` applies the head.

Why a model wrapper, read against vLLM 0.32 (``vllm/v1/worker/gpu_model_runner.py``, ``gpu/model_runner.py``,
``model_executor/layers/logits_processor.py``, ``model_executor/models/registry.py``):

- vLLM's per-request logits processors (``vllm/v1/sample/logits_processor``) receive only the logits. The head also
  needs the post-final-norm hidden state ``h`` of each sampled position, so it cannot be one of them.
- The one place that sees both is the model class's ``compute_logits(hidden_states)``: the model runner calls it
  with the final hidden states of exactly the positions it samples (and of prompt positions when prompt logprobs are
  asked for), eagerly, outside CUDA graphs and ``torch.compile``. The sampler then applies its own logits processors,
  penalties, temperature, top-k/top-p and logprob modes to what it returns: the same order as the transformers
  wrapper, where ``generate``'s processors see the head's logits. Returning ``f(ℓ)`` there makes ``vllm.LLM`` and
  ``vllm serve`` sample from ``softmax(f(ℓ)/T)``, and ``logprobs`` report it. The request's sampling parameters are
  not visible there, so a head that composes the user's temperature/top-p with its own (AutoDeco's released
  composition, which the released vLLM fork implements by patching the model runner) gets vLLM's sequential
  behaviour instead: equal to its composition at ``temperature=1, top_p=1`` (logged when the engine starts; the
  trainer refuses vLLM rollouts at other values).
- So each base architecture ``A`` (``LlamaForCausalLM``, ``Qwen3ForCausalLM``, ...) gets a subclass
  ``DecodingHead<A>`` that overrides ``compute_logits`` and ``load_weights`` and keeps everything else (attention,
  KV cache, LoRA, quantisation, TP/PP support flags) from vLLM's own class. :mod:`logitmlp_hf.integrations.vllm.plugin` registers
  every such name lazily through the ``vllm.general_plugins`` entry point, which vLLM loads in every process it
  starts (engine core, workers, ``vllm serve``); the class is built on first use by this module's ``__getattr__``.
- The head is named in the base's HF config through ``hf_overrides``: ``architectures`` picks the wrapper and
  ``decoding_head`` says which head (:class:`VLLMHeadSpec`). :func:`logitmlp_hf.integrations.vllm.engine.vllm_engine_args` builds
  both from a head repo, so a head repo alone is enough to start an engine.
- Rejected: batch-sharded sampling (``compute_logits_local``) returns vocabulary shards, but the head's statistics
  need the whole row, so the wrapper hides that method and vLLM falls back to full-row logits.

Head weights: a head repo's weights are read when vLLM loads the base's weights (so reloading keeps them); tensors
named ``<head attribute>.<param>`` (e.g. ``logitmlp_head.fc_in.weight``, the transformers wrapper's parameter names)
passed to ``load_weights`` update the head alone. That is how training syncs the head after each optimiser step
without touching the base (:class:`logitmlp_hf.integrations.vllm.rollouts.DecodingHeadVLLMGeneration`).

Numerics: the head runs in float32 whatever the model dtype, like the transformers wrapper. On an accelerator the
logit statistics are computed without any host synchronisation, so non-finite logits are not checked there (they
would reach vLLM's sampler as they do without a head); on CPU they raise :class:`~logitmlp_hf.NonFiniteLogitsError`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from ...errors import HeadCheckpointError
from ...features import logit_statistics
from ...heads.base import DecodingHead
from ...heads.configuration import DecodingHeadConfig
from ...heads.registry import decoding_head_type, find_decoding_head_type, registered_head_types
from ...hub.base_loading import check_head_fits
from ...hub.head_repo import load_head_config, load_head_state_dict


logger = logging.getLogger(__name__)

ARCHITECTURE_PREFIX = "DecodingHead"
"""``DecodingHead<A>`` is the vLLM architecture of a decoding head on a base of architecture ``A``."""

HF_CONFIG_KEY = "decoding_head"
"""Attribute of the base's HF config (set through ``hf_overrides``) that holds the :class:`VLLMHeadSpec`."""

# Seed of a head built from an inline config: every tensor-parallel rank must build the same head until weights
# arrive, or ranks would sample differently.
_INLINE_INIT_SEED = 0


def wrapper_architecture(base_architecture: str) -> str:
    """The vLLM architecture name of a decoding head on ``base_architecture``."""
    if base_architecture.startswith(ARCHITECTURE_PREFIX):
        raise ValueError(f"{base_architecture!r} is already a decoding-head architecture")
    return ARCHITECTURE_PREFIX + base_architecture


@dataclass
class VLLMHeadSpec:
    """Which decoding head a vLLM engine applies; stored in the HF config as ``decoding_head``.

    Args:
        name_or_path (`str`, *optional*): head repo (Hub id or directory); its config and weights are loaded.
        revision (`str`, *optional*): revision of that repo.
        config (`dict`, *optional*): an inline head config (``DecodingHeadConfig.to_diff_dict()``), used when there is no
            repo yet, e.g. a head being trained whose weights arrive through ``load_weights``.
        check_finite (`bool`, *optional*): raise on non-finite logits. Default: on CPU only, since elsewhere the
            check costs a device synchronisation per decoding step.
    """

    name_or_path: str | None = None
    revision: str | None = None
    config: dict[str, Any] | None = None
    check_finite: bool | None = None

    def __post_init__(self) -> None:
        if (self.name_or_path is None) == (self.config is None):
            raise ValueError("a vLLM head spec needs exactly one of name_or_path (a head repo) or config (inline)")

    @classmethod
    def from_hf_config(cls, hf_config: Any) -> VLLMHeadSpec:
        """Read the spec that ``hf_overrides`` put on the base's HF config."""
        raw = getattr(hf_config, HF_CONFIG_KEY, None)
        if raw is None:
            raise ValueError(
                f"architecture {hf_config.architectures} is a decoding-head wrapper, but the model config has no "
                f"{HF_CONFIG_KEY!r} entry saying which head to apply; build the engine with "
                "logitmlp_hf.integrations.vllm.engine.vllm_engine_args(head) or pass hf_overrides={'architectures': [...], "
                f"'{HF_CONFIG_KEY}': {{'name_or_path': <head repo>}}}}"
            )
        if isinstance(raw, VLLMHeadSpec):
            return raw
        if not isinstance(raw, dict):
            raise TypeError(f"hf_config.{HF_CONFIG_KEY} must be a dict, got {type(raw).__name__}")
        unknown = set(raw) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(
                f"unknown keys in {HF_CONFIG_KEY}: {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}"
            )
        return cls(**raw)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def load_config(self) -> DecodingHeadConfig:
        """The head's config, from its repo or the inline dict."""
        if self.name_or_path is not None:
            return load_head_config(self.name_or_path, revision=self.revision)
        model_type = self.config.get("model_type")
        head_type = find_decoding_head_type(model_type)
        head_class = None if head_type is None else head_type.head_class
        if head_class is None:
            raise HeadCheckpointError(
                f"inline head config has model_type {model_type!r}; known head types: {registered_head_types()}"
            )
        return head_class.config_class.from_dict(dict(self.config))


def check_runs_in_vllm(head: DecodingHead) -> None:
    """Raise unless the head decides per token from ``h`` and ``ℓ`` alone, which is all ``compute_logits`` sees."""
    if not head.per_token or head.uses_context:  # instance attributes: some heads decide from their config
        raise ValueError(
            f"{type(head).__name__} cannot run inside vLLM: "
            + (
                "it decides once per sequence"
                if not head.per_token
                else "it conditions on the token budget left, which vLLM's compute_logits does not see"
            )
            + "; use its transformers wrapper's generate()"
        )


def apply_head(
    head: DecodingHead, hidden_states: torch.Tensor, logits: torch.Tensor, check_finite: bool | None = None
) -> torch.Tensor:
    """The head's sampling logits (float32) from the base's, as the engine computes them at every step.

    The logits are converted to float32 once (or used as they are), and the warp is written into them: nothing reads
    the base logits after ``compute_logits``. On an accelerator no step waits for the device unless ``check_finite``.
    """
    on_cpu = logits.device.type == "cpu"
    logits = logits.float()
    check = on_cpu if check_finite is None else check_finite
    stats = logit_statistics(logits, check_finite=check, host_sync=on_cpu or check)
    return head.sampling_logits_(logits, head.decide_at(hidden_states, logits, stats))


@contextlib.contextmanager
def _float32_on_cpu() -> Iterator[None]:
    # vLLM builds models under its own default dtype (the model's, e.g. bf16) and default device; the head is kept
    # in float32 (as in the transformers wrapper) and built on the CPU so its seeded init is the same on every rank.
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    try:
        with torch.device("cpu"):
            yield
    finally:
        torch.set_default_dtype(previous)


def _model_class_of(head: DecodingHead) -> Any:
    return decoding_head_type(type(head).config_class.model_type).model_class


class DecodingHeadVLLMMixin:
    """What every ``DecodingHead<A>`` class adds to vLLM's class for ``A`` (see the module docstring)."""

    decoding_head_spec: VLLMHeadSpec
    decoding_head_config: DecodingHeadConfig
    head_attribute: str

    def _init_decoding_head(self, vllm_config: Any) -> None:
        model_config = vllm_config.model_config
        spec = VLLMHeadSpec.from_hf_config(model_config.hf_config)
        config = spec.load_config()
        head_class = decoding_head_type(config.model_type).head_class
        check_head_fits(
            config,
            model_config.get_hidden_size(),
            model_config.get_vocab_size(),
            f"the served model {model_config.model!r}",
        )
        if config.base_model_name_or_path and config.base_model_name_or_path != model_config.model:
            logger.info(
                "Decoding head trained on %s is served on %s (same hidden and vocabulary sizes)",
                config.base_model_name_or_path,
                model_config.model,
            )
        with _float32_on_cpu(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(_INLINE_INIT_SEED)
            head = head_class(config)
        check_runs_in_vllm(head)
        if head.absorbs_user_rule:
            # compute_logits sees no request's SamplingParams: vLLM's sampler applies them after the head.
            logger.warning(
                "%s composes the user's temperature/top-p with its own (sampling_composition=%r), but inside vLLM "
                "a request's temperature and top-p act after the head's rule; the two agree at temperature=1, top_p=1",
                type(head).__name__,
                getattr(config, "sampling_composition", None),
            )
        self.decoding_head_spec = spec
        self.decoding_head_config = config
        self.head_attribute = _model_class_of(head).head_attribute
        # Same attribute name as the transformers wrapper, so parameter names match across the two.
        setattr(self, self.head_attribute, head.to(device=vllm_config.device_config.device))

    @property
    def decoding_head(self) -> DecodingHead:
        return getattr(self, self.head_attribute)

    def compute_logits(self, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor | None:
        """The base's logits (its soft-capping and scaling included), then the head's sampling logits (float32)."""
        logits = super().compute_logits(hidden_states, *args, **kwargs)
        if logits is None:  # not the rank that holds the logits (pipeline / tensor parallel gather)
            return None
        return apply_head(self.decoding_head, hidden_states, logits, self.decoding_head_spec.check_finite)

    @property
    def compute_logits_local(self) -> Any:
        # Batch-sharded sampling would hand the head vocabulary shards; hiding the method makes vLLM use full rows.
        raise AttributeError("decoding heads need full-vocabulary logits; batch-sharded sampling is not supported")

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Load base weights (vLLM's own loader) and head tensors named ``<head attribute>.<param>``.

        When base weights arrive without head tensors (the initial load, or a reload), the head's weights are read
        from its repo; an inline-config head keeps its weights until a sync sends them.
        """
        prefix = self.head_attribute + "."
        head_tensors: dict[str, torch.Tensor] = {}
        base_count = 0

        def base_weights() -> Iterator[tuple[str, torch.Tensor]]:
            nonlocal base_count
            for name, tensor in weights:
                if name.startswith(prefix):
                    head_tensors[name[len(prefix) :]] = tensor
                else:
                    base_count += 1
                    yield name, tensor

        loaded = set(super().load_weights(base_weights()) or ())
        spec = self.decoding_head_spec
        if not head_tensors and base_count and spec.name_or_path is not None:
            head_tensors = load_head_state_dict(spec.name_or_path, self.decoding_head_config, revision=spec.revision)
        self._copy_head_tensors(head_tensors)
        head_names = {prefix + name for name, _ in self.decoding_head.named_parameters()}
        return loaded | (head_names if base_count else {prefix + n for n in head_tensors})

    @torch.no_grad()
    def _copy_head_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        params = dict(self.decoding_head.named_parameters())
        for name, tensor in tensors.items():
            if name not in params:
                raise HeadCheckpointError(
                    f"{type(self.decoding_head).__name__} has no parameter {name!r}; it has {sorted(params)}"
                )
            if tuple(tensor.shape) != tuple(params[name].shape):
                raise HeadCheckpointError(
                    f"head tensor {name!r} has shape {tuple(tensor.shape)}, expected {tuple(params[name].shape)}"
                )
            params[name].copy_(tensor)


def decoding_head_model_class(base_architecture: str) -> type[nn.Module]:
    """Build ``DecodingHead<base_architecture>``: vLLM's class for the base, with the head on its logits."""
    from vllm.model_executor.models.registry import ModelRegistry

    registered = ModelRegistry.models.get(base_architecture)
    if registered is None:
        raise ValueError(f"vLLM has no model class for architecture {base_architecture!r}")
    base_class = registered.load_model_cls()
    missing = [name for name in ("compute_logits", "load_weights") if not callable(getattr(base_class, name, None))]
    if missing:
        import vllm

        raise RuntimeError(
            f"vLLM {vllm.__version__}'s {base_class.__name__} has no {' or '.join(missing)}: the decoding-head "
            "integration applies the head in compute_logits and cannot run on this vLLM version (tested: 0.32)"
        )

    def __init__(self: Any, *, vllm_config: Any, prefix: str = "", **kwargs: Any) -> None:
        base_class.__init__(self, vllm_config=vllm_config, prefix=prefix, **kwargs)
        self._init_decoding_head(vllm_config)

    name = wrapper_architecture(base_architecture)
    return type(
        name, (DecodingHeadVLLMMixin, base_class), {"__init__": __init__, "__module__": __name__, "__qualname__": name}
    )


def __getattr__(name: str) -> Any:
    # vLLM's lazy registry entries ("logitmlp_hf.integrations.vllm.model:DecodingHeadLlamaForCausalLM") resolve here.
    if name.startswith(ARCHITECTURE_PREFIX) and len(name) > len(ARCHITECTURE_PREFIX):
        cls = decoding_head_model_class(name[len(ARCHITECTURE_PREFIX) :])
        globals()[name] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ARCHITECTURE_PREFIX",
    "HF_CONFIG_KEY",
    "VLLMHeadSpec",
    "apply_head",
    "check_runs_in_vllm",
    "decoding_head_model_class",
    "wrapper_architecture",
]
