"""logitmlp_hf: learned, per-token reshaping of a frozen LLM's next-token distribution.

Importing the package registers every decoding head type (``logitmlp`` and the others in the same framework) with
transformers' Auto classes, so ``AutoModelForCausalLM.from_pretrained(<head repo>)`` returns the base model with the
head on it.
"""

from transformers import AutoConfig, AutoModelForCausalLM

__version__ = "0.1.0"

from .autodeco import AutoDecoConfig, AutoDecoForCausalLM, AutoDecoHead  # noqa: E402
from .configuration_decoding_head import DecodingHeadConfig  # noqa: E402
from .configuration_logitmlp import LogitMLPConfig  # noqa: E402
from .decoding_adapter import DecodingAdapterConfig, DecodingAdapterForCausalLM, DecodingAdapterHead  # noqa: E402
from .decoding_head import DecodingContext, DecodingHead, HeadTokenStats  # noqa: E402
from .errors import HeadCheckpointError, IncompatibleBaseModelError, LogitMLPError, NonFiniteLogitsError  # noqa: E402
from .head import LogitMLPHead  # noqa: E402
from .logits_processor import LogitMLPLogitsProcessor  # noqa: E402
from .modeling_decoding_head import (  # noqa: E402
    DecodingHeadCausalLMOutput,
    DecodingHeadForCausalLM,
    DecodingPolicyOutput,
    load_decoding_head_model,
)
from .modeling_logitmlp import LogitMLPCausalLMOutput, LogitMLPForCausalLM, LogitMLPPolicyOutput  # noqa: E402
from .presets import apply_preset, preset_parameters  # noqa: E402
from .sequence_adapter import (  # noqa: E402
    SequenceAdapterConfig,
    SequenceAdapterForCausalLM,
    SequenceAdapterHead,
    fit_sequence_adapter,
)
from .transform import (  # noqa: E402
    LogitStatistics,
    WarpParameters,
    logit_statistics,
    warp_kl,
    warp_logits,
    warp_parameters,
)

# The trainer pulls in TRL (seconds to import); load it only when asked for.
_LAZY = {"LogitMLPGRPOConfig": ".grpo_config", "LogitMLPGRPOTrainer": ".grpo_trainer"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


for _model_class in (LogitMLPForCausalLM, AutoDecoForCausalLM, DecodingAdapterForCausalLM, SequenceAdapterForCausalLM):
    AutoConfig.register(_model_class.config_class.model_type, _model_class.config_class, exist_ok=True)
    AutoModelForCausalLM.register(_model_class.config_class, _model_class, exist_ok=True)

__all__ = [
    "AutoDecoConfig",
    "AutoDecoForCausalLM",
    "AutoDecoHead",
    "DecodingAdapterConfig",
    "DecodingAdapterForCausalLM",
    "DecodingAdapterHead",
    "DecodingContext",
    "DecodingHead",
    "DecodingHeadCausalLMOutput",
    "DecodingHeadConfig",
    "DecodingHeadForCausalLM",
    "DecodingPolicyOutput",
    "HeadCheckpointError",
    "HeadTokenStats",
    "IncompatibleBaseModelError",
    "LogitMLPCausalLMOutput",
    "LogitMLPConfig",
    "LogitMLPError",
    "LogitMLPForCausalLM",
    "LogitMLPGRPOConfig",
    "LogitMLPGRPOTrainer",
    "LogitMLPHead",
    "LogitMLPLogitsProcessor",
    "LogitMLPPolicyOutput",
    "LogitStatistics",
    "NonFiniteLogitsError",
    "SequenceAdapterConfig",
    "SequenceAdapterForCausalLM",
    "SequenceAdapterHead",
    "WarpParameters",
    "apply_preset",
    "fit_sequence_adapter",
    "logit_statistics",
    "preset_parameters",
    "warp_kl",
    "warp_logits",
    "load_decoding_head_model",
    "warp_parameters",
]
