"""logitmlp_hf: learned, per-token reshaping of a frozen LLM's next-token distribution.

Importing the package registers every decoding head type (``logitmlp`` and the others in the same framework) with
transformers' Auto classes, so ``AutoModelForCausalLM.from_pretrained(<head repo>)`` returns the base model with the
head on it. The layout is described in the README ("Package layout").
"""

__version__ = "0.1.0"

from . import _compat
from .errors import (
    HeadCheckpointError,
    IncompatibleBaseModelError,
    InvalidHeadConfigError,
    LogitMLPError,
    NonFiniteLogitsError,
)
from .features import LogitFeatures, LogitStatistics, logit_statistics, warp_kl
from .heads import (
    DecodingContext,
    DecodingHead,
    DecodingHeadConfig,
    HeadTokenStats,
    register_decoding_head,
    registered_head_types,
)
from .heads.autodeco import AutoDecoConfig, AutoDecoForCausalLM, AutoDecoHead
from .heads.decoding_adapter import DecodingAdapterConfig, DecodingAdapterForCausalLM, DecodingAdapterHead
from .heads.logitmlp import (
    LogitMLPCausalLMOutput,
    LogitMLPConfig,
    LogitMLPForCausalLM,
    LogitMLPHead,
    LogitMLPPolicyOutput,
)
from .heads.logitmlp.presets import apply_preset, preset_parameters
from .heads.logitmlp.transform import WarpParameters, warp_logits, warp_parameters
from .heads.sequence_adapter import SequenceAdapterConfig, SequenceAdapterForCausalLM, SequenceAdapterHead
from .logits_processor import DecodingHeadLogitsProcessor, LogitMLPLogitsProcessor
from .modeling import (
    DecodingHeadCausalLMOutput,
    DecodingHeadForCausalLM,
    DecodingPolicyOutput,
    load_decoding_head_model,
)


_compat.install(__name__)

# The trainer pulls in TRL, and fitting the sequence adapter the evaluation stack (seconds to import): load them only
# when asked for.
_LAZY = {
    "DecodingHeadGRPOConfig": ".trainer.config",
    "DecodingHeadGRPOTrainer": ".trainer.grpo_trainer",
    "LogitMLPGRPOConfig": ".trainer.config",
    "LogitMLPGRPOTrainer": ".trainer.grpo_trainer",
    "fit_sequence_adapter": ".trainer.sequence_adapter",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
    "DecodingHeadGRPOConfig",
    "DecodingHeadGRPOTrainer",
    "DecodingHeadLogitsProcessor",
    "DecodingPolicyOutput",
    "HeadCheckpointError",
    "HeadTokenStats",
    "IncompatibleBaseModelError",
    "InvalidHeadConfigError",
    "LogitFeatures",
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
    "load_decoding_head_model",
    "logit_statistics",
    "preset_parameters",
    "register_decoding_head",
    "registered_head_types",
    "warp_kl",
    "warp_logits",
    "warp_parameters",
]
