"""The LogitMLP head: a tiny MLP that picks a piecewise-linear warp ``(s1, s2, b)`` of the logits per token.

- :mod:`.configuration` — :class:`LogitMLPConfig`;
- :mod:`.transform` — the warp as pure tensor functions (``warp_parameters``, ``warp_logits``, ``warp_kl``);
- :mod:`.head` — :class:`LogitMLPHead`, the MLP;
- :mod:`.logprobs` — the analytic-gradient log-probs of the warped policy from cached features (training);
- :mod:`.modeling` — :class:`LogitMLPForCausalLM`, the wrapper with ``s1, s2, b`` as output fields;
- :mod:`.presets` — temperature / top-k / top-p / min-p written as warps.
"""

from ..registry import register_decoding_head
from .configuration import LogitMLPConfig
from .head import LogitMLPHead
from .modeling import LogitMLPCausalLMOutput, LogitMLPForCausalLM, LogitMLPPolicyOutput


register_decoding_head(LogitMLPForCausalLM, card_template="logitmlp_head.md")

__all__ = ["LogitMLPCausalLMOutput", "LogitMLPConfig", "LogitMLPForCausalLM", "LogitMLPHead", "LogitMLPPolicyOutput"]
