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
from .modeling_logitmlp import LogitMLPCausalLMOutput, LogitMLPForCausalLM  # noqa: E402
from .presets import apply_preset, preset_parameters  # noqa: E402
from .transform import (  # noqa: E402
    LogitStatistics,
    WarpParameters,
    logit_statistics,
    warp_kl,
    warp_logits,
    warp_parameters,
)

AutoConfig.register(LogitMLPConfig.model_type, LogitMLPConfig, exist_ok=True)
AutoModelForCausalLM.register(LogitMLPConfig, LogitMLPForCausalLM, exist_ok=True)

__all__ = [
    "HeadCheckpointError",
    "IncompatibleBaseModelError",
    "LogitMLPCausalLMOutput",
    "LogitMLPConfig",
    "LogitMLPError",
    "LogitMLPForCausalLM",
    "LogitMLPHead",
    "LogitMLPLogitsProcessor",
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
