"""The registry of decoding head types: one :func:`register_decoding_head` call per type fills every table.

A head type is a ``model_type`` (the string in a head repo's ``config.json``) with its config, head and wrapper
classes, the model-card template it renders and whether the GRPO trainer can train it. Everything that needs a fact
about head types — loading a head repo, the transformers Auto classes, the model card, the trainer's ``head_type``
option, the vLLM plugin, ``logitmlp analyze`` — asks this registry, so adding a type is its own folder plus one
registration call (see :mod:`logitmlp_hf.heads`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING


if TYPE_CHECKING:  # types only: the registry must not import the modules that register into it
    from ..modeling import DecodingHeadForCausalLM
    from .base import DecodingHead
    from .configuration import DecodingHeadConfig


@dataclass(frozen=True)
class DecodingHeadType:
    """What the package knows about one head type.

    Args:
        model_type: the ``model_type`` of its config (and of its head repos).
        config_class: its :class:`~logitmlp_hf.heads.DecodingHeadConfig` subclass.
        head_class: its :class:`~logitmlp_hf.heads.DecodingHead` subclass.
        model_class: its :class:`~logitmlp_hf.DecodingHeadForCausalLM` subclass.
        card_template: file in ``model_cards/`` its head repos' cards are rendered from (or an absolute path, for a
            head type that lives outside this package).
        card_title: ``None`` when ``card_template`` is a whole card; otherwise the template describes only the head
            and is rendered inside the shared frame under this title.
        trainable: whether :class:`~logitmlp_hf.DecodingHeadGRPOTrainer` trains it (per-token heads trained with
            RLVR); a head fitted by its own procedure (the sequence-level adapter) is not.
    """

    model_type: str
    config_class: type[DecodingHeadConfig]
    head_class: type[DecodingHead]
    model_class: type[DecodingHeadForCausalLM]
    card_template: str
    card_title: str | None = None
    trainable: bool = True

    @property
    def weights_name(self) -> str:
        """File name of the head's safetensors in a head repo."""
        return self.head_class.weights_name

    @property
    def per_token(self) -> bool:
        """Whether the head decides at every position (analysis, the logits processor and vLLM need this)."""
        return self.head_class.per_token


_REGISTRY: dict[str, DecodingHeadType] = {}


def register_decoding_head(
    model_class: type[DecodingHeadForCausalLM],
    *,
    card_template: str,
    card_title: str | None = None,
    trainable: bool = True,
) -> DecodingHeadType:
    """Register a head type from its wrapper class (which names its config and head classes).

    Also registers the config with ``AutoConfig`` and the wrapper with ``AutoModelForCausalLM`` and ``AutoModel``, so
    ``AutoModelForCausalLM.from_pretrained(<head repo>)`` returns base + head once the package is imported.
    """
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    config_class, head_class = model_class.config_class, model_class.head_class
    if head_class.config_class is not config_class:
        raise TypeError(
            f"{model_class.__name__}.config_class is {config_class.__name__} but its head "
            f"{head_class.__name__} is built from {head_class.config_class.__name__}"
        )
    head_type = DecodingHeadType(
        model_type=config_class.model_type,
        config_class=config_class,
        head_class=head_class,
        model_class=model_class,
        card_template=card_template,
        card_title=card_title,
        trainable=trainable,
    )
    _REGISTRY[head_type.model_type] = head_type
    AutoConfig.register(head_type.model_type, config_class, exist_ok=True)
    for auto_class in (AutoModelForCausalLM, AutoModel):
        auto_class.register(config_class, model_class, exist_ok=True)
    return head_type


def decoding_head_type(model_type: str | None) -> DecodingHeadType:
    """The registered type named ``model_type``; ``ValueError`` naming the known types otherwise."""
    try:
        return _REGISTRY[model_type]  # type: ignore[index]
    except KeyError:
        raise ValueError(f"unknown decoding head type {model_type!r}; known: {registered_head_types()}") from None


def find_decoding_head_type(model_type: str | None) -> DecodingHeadType | None:
    """The registered type named ``model_type``, or ``None``."""
    return _REGISTRY.get(model_type) if model_type else None


def registered_head_types(*, trainable: bool | None = None, per_token: bool | None = None) -> list[str]:
    """Every registered ``model_type``, optionally only the trainable or only the per-token ones."""
    return sorted(
        name
        for name, t in _REGISTRY.items()
        if (trainable is None or t.trainable == trainable) and (per_token is None or t.per_token == per_token)
    )


__all__ = [
    "DecodingHeadType",
    "decoding_head_type",
    "find_decoding_head_type",
    "register_decoding_head",
    "registered_head_types",
]
