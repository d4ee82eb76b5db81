"""Decoding heads: learned policies that map a frozen LM's final hidden state and logits to a sampling distribution.

- :mod:`.base` — :class:`DecodingHead`, the interface every policy implements (decide, sampling/policy logits,
  per-token log-probs from cached features);
- :mod:`.configuration` — :class:`DecodingHeadConfig`, the fields every head repo's ``config.json`` shares;
- :mod:`.registry` — :func:`register_decoding_head`, the one table of head types (Auto classes, head-repo loading,
  model cards, trainability);
- one folder or module per head type, each ending with its registration call: :mod:`.logitmlp`, :mod:`.autodeco`,
  :mod:`.decoding_adapter`, :mod:`.sequence_adapter`.

A new head type is a new folder here (config, head, wrapper, card template in ``model_cards/``) whose ``__init__``
calls :func:`register_decoding_head`, plus its name in the import line below.
"""

# The built-in head types; importing each registers it.
from . import autodeco, decoding_adapter, logitmlp, sequence_adapter  # noqa: E402, F401, I001
from .base import Decisions, DecodingContext, DecodingHead, HeadTokenStats
from .configuration import OBJECTIVES, DecodingHeadConfig
from .registry import (
    DecodingHeadType,
    decoding_head_type,
    find_decoding_head_type,
    register_decoding_head,
    registered_head_types,
)


__all__ = [
    "OBJECTIVES",
    "Decisions",
    "DecodingContext",
    "DecodingHead",
    "DecodingHeadConfig",
    "DecodingHeadType",
    "HeadTokenStats",
    "decoding_head_type",
    "find_decoding_head_type",
    "register_decoding_head",
    "registered_head_types",
]
