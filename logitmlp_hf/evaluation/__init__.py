"""Evaluating decoding policies side by side: ``n`` seeded samples per problem, graded, Table-1 metrics with CIs.

- :mod:`.policies` — :class:`DecodingPolicy` (a temperature, a head, a baseline) and its ``generate()`` processors;
- :mod:`.sampler` — seeded, batch-independent sampling (Gumbel-max with one generator per sample);
- :mod:`.runner` — :func:`evaluate` and the evaluation datasets;
- :mod:`.results` — :class:`EvalResults`, :class:`PolicyResults`, their files and tables;
- :mod:`.metrics` — best@k, worst@k, answer entropy, uniq/k, ... with bootstrap and paired CIs;
- :mod:`.baselines` — hand-designed sampling rules as logits processors;
- :mod:`.sweep` — GLOBAL-T*, the best fixed temperature, and the best@1-vs-best@k plot.
"""

from .metrics import MetricValue, compute_metrics, paired_difference
from .policies import DecodingPolicy, parse_policy
from .results import EvalResults, PolicyResults, format_metrics_table
from .runner import evaluate, load_eval_dataset
from .sweep import SweepResults, global_temperature_sweep, pareto_plot, temperature_policy


__all__ = [
    "DecodingPolicy",
    "EvalResults",
    "MetricValue",
    "PolicyResults",
    "SweepResults",
    "compute_metrics",
    "evaluate",
    "format_metrics_table",
    "global_temperature_sweep",
    "load_eval_dataset",
    "paired_difference",
    "parse_policy",
    "pareto_plot",
    "temperature_policy",
]
