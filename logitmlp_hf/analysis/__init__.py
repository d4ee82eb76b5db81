"""Where a head acts, token by token.

- :mod:`.per_token` — teacher-forced analysis of rollouts: KL(head ‖ base), effective temperature, candidates,
  following words, concentration;
- :mod:`.report` — plots and the Markdown/HTML report.
"""

from .per_token import (
    TokenAnalysis,
    analyze_rollouts,
    effective_temperature,
    generate_arithmetic_rollouts,
    load_rollouts,
)
from .report import write_report


__all__ = [
    "TokenAnalysis",
    "analyze_rollouts",
    "effective_temperature",
    "generate_arithmetic_rollouts",
    "load_rollouts",
    "write_report",
]
