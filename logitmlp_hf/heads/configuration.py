"""`DecodingHeadConfig`: what every head repo's ``config.json`` holds, whatever the decoding policy.

A decoding head maps the frozen base model's final hidden state and logits to the distribution tokens are sampled
from. Each policy (LogitMLP, AutoDeco, the learned decoding adapters) subclasses this config with its own
``model_type`` and fields; the fields here are the ones the shared machinery reads: which base the head sits on, the
sizes that must match that base, and what the head was trained for.
"""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


OBJECTIVES = ("pass@1", "pass@k")


@strict
class DecodingHeadConfig(PreTrainedConfig):
    r"""
    Base configuration of a decoding head and of the base model it sits on.

    Like a PEFT adapter config, it records the base (``base_model_name_or_path`` at ``base_model_revision``) so that
    ``AutoModelForCausalLM.from_pretrained(head_repo)`` can rebuild base + head, and the sizes the head was built
    for so that stacking it on an incompatible base fails loudly.

    Args:
        base_model_name_or_path (`str`, *optional*):
            Hub id or local path of the causal LM the head was trained on.
        base_model_revision (`str`, *optional*):
            Revision (branch, tag or commit) of the base model.
        base_adapter_name_or_path (`str`, *optional*):
            PEFT adapter (Hub id or local path) that was applied on the base when the head was trained, if any.
        base_adapter_revision (`str`, *optional*):
            Revision of that adapter.
        hidden_size (`int`, *optional*, defaults to `2048`):
            Width ``d`` of the base model's final hidden state.
        vocab_size (`int`, *optional*, defaults to `151936`):
            Width of the base model's logits (its output-embedding rows, padding included).
        head_hidden_size (`int`, *optional*, defaults to `256`):
            Width of the head's hidden layer.
        objective (`str`, *optional*):
            What the head was trained for: ``"pass@1"`` (DAPO, group-mean baseline) or ``"pass@k"``.
        pass_k (`int`, *optional*):
            ``k`` of the pass@k objective.
    """

    model_type = "decoding_head"

    base_model_name_or_path: str | None = None
    base_model_revision: str | None = None
    base_adapter_name_or_path: str | None = None
    base_adapter_revision: str | None = None
    hidden_size: int = 2048
    vocab_size: int = 151936
    head_hidden_size: int = 256
    objective: str | None = None
    pass_k: int | None = None

    def validate_architecture(self) -> None:
        """Part of `@strict` validation: reject sizes and objectives no head is defined for."""
        for name in ("hidden_size", "vocab_size", "head_hidden_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES} or None, got {self.objective!r}")
        if self.pass_k is not None and self.pass_k < 1:
            raise ValueError(f"pass_k must be >= 1, got {self.pass_k}")

    @property
    def num_head_parameters(self) -> int:
        """Parameter count of the head this config describes (each policy's config knows its own shape)."""
        raise NotImplementedError


__all__ = ["OBJECTIVES", "DecodingHeadConfig"]
