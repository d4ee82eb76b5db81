"""`DecodingHeadConfig`: what every head repo's ``config.json`` holds, whatever the decoding policy.

A decoding head maps the frozen base model's final hidden state and logits to the distribution tokens are sampled
from. Each policy (LogitMLP, AutoDeco, the learned decoding adapters) subclasses this config with its own
``model_type`` and fields; the fields here are the ones the shared machinery reads: which base the head sits on, the
sizes that must match that base, and what the head was trained for.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

from ..errors import InvalidHeadConfigError


OBJECTIVES = ("pass@1", "pass@k")
# Upper bounds on the sizes a config may claim: well above every released model (hidden sizes up to 16384,
# vocabularies up to ~262k), and low enough that a damaged or hostile config.json cannot make loading allocate
# terabytes before the head's file or the base is looked at.
MAX_HIDDEN_SIZE = 1 << 18
MAX_VOCAB_SIZE = 1 << 24
MAX_HEAD_HIDDEN_SIZE = 1 << 16


# ------------------------------------------------------------------------------------------ field checks
# `@strict`'s own type checks do not run on these configs (their annotations are strings under
# `from __future__ import annotations`), and it would not check ranges or finiteness; these do, and each raises
# `InvalidHeadConfigError` naming the field, the value and what it may hold. Head types outside the package can use
# them in their own `validate_architecture`.


def check_int(name: str, value: Any, low: int = 1, high: int | None = None, optional: bool = False) -> None:
    """``value`` is an ``int`` (not a ``bool``) in ``[low, high]`` (``None`` too when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        allowed = f"an integer in [{low}, {high}]" if high is not None else f"an integer >= {low}"
        raise InvalidHeadConfigError(name, value, allowed + (" or null" if optional else ""))


def check_number(
    name: str,
    value: Any,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    optional: bool = False,
) -> None:
    """``value`` is a finite real number (``int`` or ``float``, not ``bool``) within the given bounds."""
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (above is None or value > above) and (at_least is None or value >= at_least)
    ok = ok and (below is None or value < below) and (at_most is None or value <= at_most)
    if not ok:
        lower = f"({above:g}" if above is not None else f"[{at_least:g}" if at_least is not None else None
        upper = f"{below:g})" if below is not None else f"{at_most:g}]" if at_most is not None else None
        if lower and upper:
            allowed = f"a finite number in {lower}, {upper}"
        elif lower:
            allowed = f"a finite number {'>' if above is not None else '>='} {lower[1:]}"
        elif upper:
            allowed = f"a finite number {'<' if below is not None else '<='} {upper[:-1]}"
        else:
            allowed = "a finite number"
        raise InvalidHeadConfigError(name, value, allowed + (" or null" if optional else ""))


def check_choice(name: str, value: Any, choices: Sequence[str], optional: bool = False) -> None:
    """``value`` is one of ``choices`` (or ``None`` when ``optional``)."""
    if (value is None and optional) or (isinstance(value, str) and value in choices):
        return
    raise InvalidHeadConfigError(name, value, f"one of {tuple(choices)}" + (" or null" if optional else ""))


def check_str(name: str, value: Any, optional: bool = False) -> None:
    """``value`` is a non-empty string (or ``None`` when ``optional``)."""
    if (value is None and optional) or (isinstance(value, str) and value):
        return
    raise InvalidHeadConfigError(name, value, "a non-empty string" + (" or null" if optional else ""))


def check_bool(name: str, value: Any) -> None:
    """``value`` is ``True`` or ``False`` (not ``0``/``1``)."""
    if not isinstance(value, bool):
        raise InvalidHeadConfigError(name, value, "true or false")


def check_list(name: str, value: Any, max_length: int | None = None, optional: bool = False) -> None:
    """``value`` is a non-empty list (or ``None`` when ``optional``); its items are checked by the caller."""
    if value is None and optional:
        return
    if not isinstance(value, (list, tuple)) or not value or (max_length is not None and len(value) > max_length):
        bound = f" of at most {max_length} items" if max_length is not None else ""
        raise InvalidHeadConfigError(name, value, f"a non-empty list{bound}" + (" or null" if optional else ""))


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

    def __post_init__(self, **kwargs: Any) -> None:
        super().__post_init__(**kwargs)
        # Checked here as well as by `@strict` (which calls `validate_architecture` after `__init__` and on save): an
        # error from here reaches the caller as the `InvalidHeadConfigError` it is, not wrapped in `@strict`'s type.
        self.validate_architecture()

    def validate_architecture(self) -> None:
        """Part of `@strict` validation: every field's type, range and finiteness.

        Subclasses check their own fields after calling this. Raises :class:`~logitmlp_hf.InvalidHeadConfigError`.
        """
        for name in (
            "base_model_name_or_path",
            "base_model_revision",
            "base_adapter_name_or_path",
            "base_adapter_revision",
        ):
            check_str(name, getattr(self, name), optional=True)
        check_int("hidden_size", self.hidden_size, 1, MAX_HIDDEN_SIZE)
        check_int("vocab_size", self.vocab_size, 1, MAX_VOCAB_SIZE)
        check_int("head_hidden_size", self.head_hidden_size, 1, MAX_HEAD_HIDDEN_SIZE)
        check_choice("objective", self.objective, OBJECTIVES, optional=True)
        check_int("pass_k", self.pass_k, 1, optional=True)

    @property
    def num_head_parameters(self) -> int:
        """Parameter count of the head this config describes (each policy's config knows its own shape)."""
        raise NotImplementedError


__all__ = [
    "MAX_HEAD_HIDDEN_SIZE",
    "MAX_HIDDEN_SIZE",
    "MAX_VOCAB_SIZE",
    "OBJECTIVES",
    "DecodingHeadConfig",
    "check_bool",
    "check_choice",
    "check_int",
    "check_list",
    "check_number",
    "check_str",
]
