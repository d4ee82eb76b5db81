"""Import paths of the flat 0.1 layout (``logitmlp_hf.data``, ``logitmlp_hf.grpo_trainer``, ...), kept working.

``logitmlp_hf.analysis``, ``logitmlp_hf.evaluation`` and ``logitmlp_hf.reproduce`` are packages now, named as the
modules were; they re-export those modules' main names. Every other old module name is an alias of the module that now holds it: the first import warns once
(``DeprecationWarning``) and returns the new module itself, so objects, ``isinstance`` checks and ``mock.patch``
targets are shared. Names that moved to another module than their old one's (``Unembedding``,
``fit_sequence_adapter``, ...) are re-exported there by the new module's ``__init__`` or by :mod:`logitmlp_hf`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType


# old name (relative to the package) → new name
MOVED_MODULES: dict[str, str] = {
    "advantages": "trainer.advantages",
    "analysis_report": "analysis.report",
    "autodeco": "heads.autodeco",
    "base_loading": "hub.base_loading",
    "baselines": "evaluation.baselines",
    "benchmark_data": "tasks.benchmark_data",
    "checkpoints": "trainer.checkpoints",
    "configuration_decoding_head": "heads.configuration",
    "configuration_logitmlp": "heads.logitmlp.configuration",
    "contextual_bandit": "heads.sequence_adapter.contextual_bandit",
    "data": "tasks.data",
    "decoding_adapter": "heads.decoding_adapter",
    "decoding_head": "heads.base",
    "demo": "cli.demo",
    "eval_metrics": "evaluation.metrics",
    "grpo_config": "trainer.config",
    "grpo_trainer": "trainer.grpo_trainer",
    "head": "heads.logitmlp.head",
    "head_repo": "hub.head_repo",
    "model_card": "hub.model_card",
    "modeling_decoding_head": "modeling",
    "modeling_logitmlp": "heads.logitmlp.modeling",
    "offline_model": "hub.offline_model",
    "policy_logprobs": "heads.logitmlp.logprobs",
    "presets": "heads.logitmlp.presets",
    "reproduce_report": "reproduce.report",
    "rewards": "tasks.rewards",
    "sequence_adapter": "heads.sequence_adapter.modeling",
    "strategy_pool": "heads.sequence_adapter.strategy_pool",
    "temperature_sweep": "evaluation.sweep",
    "transform": "heads.logitmlp.transform",
    "vllm_engine": "integrations.vllm.engine",
    "vllm_model": "integrations.vllm.model",
    "vllm_plugin": "integrations.vllm.plugin",
    "vllm_rollouts": "integrations.vllm.rollouts",
    "vllm_serve": "cli.vllm_serve",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves ``logitmlp_hf.<old>`` to ``logitmlp_hf.<new>`` (see the module docstring)."""

    def __init__(self, package: str) -> None:
        self.package = package

    def find_spec(self, fullname: str, path=None, target=None):  # noqa: ANN001 - importlib's signature
        prefix = self.package + "."
        if fullname.startswith(prefix) and fullname[len(prefix) :] in MOVED_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec) -> ModuleType | None:  # noqa: ANN001
        return None

    def exec_module(self, module: ModuleType) -> None:
        old = module.__name__[len(self.package) + 1 :]
        new = f"{self.package}.{MOVED_MODULES[old]}"
        warnings.warn(
            f"{module.__name__} is now {new}; the old path will be removed", DeprecationWarning, stacklevel=2
        )
        # importlib returns whatever sys.modules holds under the name once exec_module is done: the real module.
        sys.modules[module.__name__] = importlib.import_module(new)


def install(package: str) -> None:
    """Put the finder on ``sys.meta_path`` (once)."""
    if not any(isinstance(f, _MovedModuleFinder) and f.package == package for f in sys.meta_path):
        sys.meta_path.append(_MovedModuleFinder(package))
