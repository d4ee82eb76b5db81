"""`LogitMLPConfig`: what a head repo's ``config.json`` holds."""

from __future__ import annotations

from huggingface_hub.dataclasses import strict

from ..configuration import OBJECTIVES, DecodingHeadConfig, check_number


# Beyond these the warp's slopes and breakpoint overflow float32 on ordinary logits (and no trained head comes near).
MAX_SLOPE_BOUND = 1e3
MAX_BREAKPOINT_SCALE = 1e3


@strict
class LogitMLPConfig(DecodingHeadConfig):
    r"""
    Configuration of a LogitMLP head and of the base it sits on.

    The base model, the sizes and the objective are :class:`~logitmlp_hf.DecodingHeadConfig`'s fields (shared by
    every decoding head); the LogitMLP head adds:

    Args:
        slope_bound (`float`, *optional*, defaults to `4.0`):
            Slopes lie in ``(1/slope_bound, slope_bound)``.
        breakpoint_scale (`float`, *optional*, defaults to `4.0`):
            The breakpoint lies in ``(max − breakpoint_scale·std, max)`` of the logits.
        init_std (`float`, *optional*, defaults to `2.5e-4`):
            Std of the output layer's initial weights: a near-identity warp at step 0, but not zero (zero would kill
            the gradient into the first layer). The source's 1e-3 gives a mean KL(warp‖base) of 1.1–3.5e-4 at init on
            SmolLM2 (its post-norm hidden states have norm ≈ 47), above the < 1e-4 near-identity target; 2.5e-4
            gives ≤ 2.3e-5 (8 seeds, sampled arithmetic answers). KL grows with the square of this value.

    Example:

    ```python
    >>> from logitmlp_hf import LogitMLPConfig
    >>> config = LogitMLPConfig(base_model_name_or_path="Qwen/Qwen3-1.7B-Base", hidden_size=2048, vocab_size=151936)
    >>> config.head_hidden_size
    256
    ```
    """

    model_type = "logitmlp"

    slope_bound: float = 4.0
    breakpoint_scale: float = 4.0
    init_std: float = 2.5e-4

    def validate_architecture(self) -> None:
        """Part of `@strict` validation: reject values the transform is undefined for."""
        super().validate_architecture()
        check_number("slope_bound", self.slope_bound, above=1.0, at_most=MAX_SLOPE_BOUND)  # slopes in (1/b, b)
        check_number("breakpoint_scale", self.breakpoint_scale, above=0.0, at_most=MAX_BREAKPOINT_SCALE)
        check_number("init_std", self.init_std, at_least=0.0, at_most=1.0)

    @property
    def num_head_parameters(self) -> int:
        """``(d + 3)·w + w`` (first layer) ``+ 3w + 3`` (output layer)."""
        w = self.head_hidden_size
        return (self.hidden_size + 3) * w + w + 3 * w + 3


__all__ = ["OBJECTIVES", "LogitMLPConfig"]
