"""logitmlp_hf: learned, per-token reshaping of a frozen LLM's next-token distribution.

Importing the package registers the ``logitmlp`` model type with transformers' Auto classes, so
``AutoModelForCausalLM.from_pretrained(<head repo>)`` returns the base model with the head on it.
"""

from transformers import AutoConfig, AutoModelForCausalLM

__version__ = "0.1.0"

from .configuration_logitmlp import LogitMLPConfig  # noqa: E402
from .errors import HeadCheckpointError, IncompatibleBaseModelError, LogitMLPError, NonFiniteLogitsError  # noqa: E402
from .head import LogitMLPHead  # noqa: E402
from .logits_processor import LogitMLPLogitsProcessor  # noqa: E402
from .modeling_logitmlp import LogitMLPCausalLMOutput, LogitMLPForCausalLM, LogitMLPPolicyOutput  # noqa: E402
from .presets import apply_preset, preset_parameters  # noqa: E402
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


AutoConfig.register(LogitMLPConfig.model_type, LogitMLPConfig, exist_ok=True)
AutoModelForCausalLM.register(LogitMLPConfig, LogitMLPForCausalLM, exist_ok=True)

__all__ = [
    "HeadCheckpointError",
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
    "WarpParameters",
    "apply_preset",
    "logit_statistics",
    "preset_parameters",
    "warp_kl",
    "warp_logits",
    "warp_parameters",
]
