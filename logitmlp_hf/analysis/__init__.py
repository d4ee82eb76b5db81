"""Where a head acts, token by token.

- :mod:`.per_token` — teacher-forced analysis of rollouts: KL(head ‖ base), effective temperature, candidates,
  following words, concentration;
- :mod:`.report` — plots and the Markdown/HTML report;
- :mod:`.viewer` — the interactive per-token page (tokens coloured by KL or T*, candidates and decisions on click).
"""

from .per_token import (
    TokenAnalysis,
    analyze_rollouts,
    effective_temperature,
    generate_arithmetic_rollouts,
    load_rollouts,
)
from .report import write_report
from .viewer import write_viewer


__all__ = [
    "TokenAnalysis",
    "analyze_rollouts",
    "effective_temperature",
    "generate_arithmetic_rollouts",
    "load_rollouts",
    "write_report",
    "write_viewer",
]
