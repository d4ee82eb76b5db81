"""`LogitMLPConfig`: what a head repo's ``config.json`` holds."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

OBJECTIVES = ("pass@1", "pass@k")


@strict
class LogitMLPConfig(PreTrainedConfig):
    r"""
    Configuration of a LogitMLP head and of the base it sits on.

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
            Width of the head's hidden layer (``d_mlp``).
        slope_bound (`float`, *optional*, defaults to `4.0`):
            Slopes lie in ``(1/slope_bound, slope_bound)``.
        breakpoint_scale (`float`, *optional*, defaults to `4.0`):
            The breakpoint lies in ``(max − breakpoint_scale·std, max)`` of the logits.
        init_std (`float`, *optional*, defaults to `2.5e-4`):
            Std of the output layer's initial weights: a near-identity warp at step 0, but not zero (zero would kill
            the gradient into the first layer). The source's 1e-3 gives a mean KL(warp‖base) of 1.1–3.5e-4 at init on
            SmolLM2 (its post-norm hidden states have norm ≈ 47), above the < 1e-4 near-identity target; 2.5e-4
            gives ≤ 2.3e-5 (8 seeds, sampled arithmetic answers). KL grows with the square of this value.
        objective (`str`, *optional*):
            What the head was trained for: ``"pass@1"`` (DAPO, group-mean baseline) or ``"pass@k"``.
        pass_k (`int`, *optional*):
            ``k`` of the pass@k objective.

    Example:

    ```python
    >>> from logitmlp_hf import LogitMLPConfig
    >>> config = LogitMLPConfig(base_model_name_or_path="Qwen/Qwen3-1.7B-Base", hidden_size=2048, vocab_size=151936)
    >>> config.head_hidden_size
    256
    ```
    """

    model_type = "logitmlp"

    base_model_name_or_path: str | None = None
    base_model_revision: str | None = None
    base_adapter_name_or_path: str | None = None
    base_adapter_revision: str | None = None
    hidden_size: int = 2048
    vocab_size: int = 151936
    head_hidden_size: int = 256
    slope_bound: float = 4.0
    breakpoint_scale: float = 4.0
    init_std: float = 2.5e-4
    objective: str | None = None
    pass_k: int | None = None

    def validate_architecture(self) -> None:
        """Part of `@strict` validation: reject values the transform is undefined for."""
        for name in ("hidden_size", "vocab_size", "head_hidden_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.slope_bound > 1.0:
            raise ValueError(f"slope_bound must be > 1 (slopes lie in (1/bound, bound)), got {self.slope_bound}")
        if not self.breakpoint_scale > 0.0:
            raise ValueError(f"breakpoint_scale must be > 0, got {self.breakpoint_scale}")
        if not self.init_std >= 0.0:
            raise ValueError(f"init_std must be >= 0, got {self.init_std}")
        if self.objective is not None and self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES} or None, got {self.objective!r}")
        if self.pass_k is not None and self.pass_k < 1:
            raise ValueError(f"pass_k must be >= 1, got {self.pass_k}")

    @property
    def num_head_parameters(self) -> int:
        """``(d + 3)·w + w`` (first layer) ``+ 3w + 3`` (output layer)."""
        w = self.head_hidden_size
        return (self.hidden_size + 3) * w + w + 3 * w + 3


__all__ = ["LogitMLPConfig"]
