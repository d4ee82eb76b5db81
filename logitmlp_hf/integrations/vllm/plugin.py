"""vLLM plugin (entry point ``vllm.general_plugins``): registers the decoding-head model wrappers.

vLLM loads general plugins in every process it starts (the API server, the engine core, each worker), so a head
served with ``vllm serve`` or sampled with ``vllm.LLM`` finds its architecture wherever the model is built. The
registration is lazy (``"module:Class"`` strings): nothing here imports a model class, builds a head or touches a
device, so the plugin costs nothing to vLLM users who never load a head.
"""

from __future__ import annotations

import logging


logger = logging.getLogger(__name__)

# vLLM versions the integration was run on; others get a warning at registration (the hooks are checked when a
# wrapper class is built, see logitmlp_hf.integrations.vllm.model.decoding_head_model_class).
TESTED_VLLM_VERSIONS = ("0.32",)


def register() -> None:
    """Register ``DecodingHead<A>`` for every architecture ``A`` vLLM knows (idempotent)."""
    import vllm
    from vllm import ModelRegistry

    from .model import ARCHITECTURE_PREFIX, wrapper_architecture

    if not str(vllm.__version__).startswith(TESTED_VLLM_VERSIONS):
        logger.warning(
            "logitmlp_hf's vLLM integration was tested with vLLM %s; this is %s",
            ", ".join(TESTED_VLLM_VERSIONS),
            vllm.__version__,
        )
    for arch in list(ModelRegistry.get_supported_archs()):
        if arch.startswith(ARCHITECTURE_PREFIX):
            continue
        name = wrapper_architecture(arch)
        if name not in ModelRegistry.models:
            ModelRegistry.register_model(name, f"logitmlp_hf.integrations.vllm.model:{name}")
    _share_architecture_config_fixups(ARCHITECTURE_PREFIX)


def _share_architecture_config_fixups(prefix: str) -> None:
    # vLLM adjusts the engine config for some architectures (MODELS_CONFIG_MAP, keyed by architecture name); a head
    # on such a base needs the same adjustments.
    try:
        from vllm.model_executor.models.config import MODELS_CONFIG_MAP
    except ImportError:  # moved or removed in another vLLM version: nothing to share
        return
    for arch, fixup in list(MODELS_CONFIG_MAP.items()):
        if not arch.startswith(prefix):
            MODELS_CONFIG_MAP.setdefault(prefix + arch, fixup)
