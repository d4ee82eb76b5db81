"""GLOBAL-T*: the best fixed temperature of the base model, chosen on a validation split and reported on test.

The strongest static baseline of the source's Table 1 (docs/method.md §4): sweep temperatures of the base model on
validation problems, keep the one with the best selection metric (mean accuracy by default, or ``best@k``), and
evaluate it on held-out test problems, so the reported number was not tuned on the problems it is reported on.

[`pareto_plot`] draws the source's Figure 2: best@1 (= mean accuracy) against best@k, the temperature sweep as a
connected line labelled with T, and heads or stacked checkpoints as labelled markers. A head that sits above and to
the right of the whole sweep is better than every fixed temperature at both precision and coverage.

Command line (wired into the ``logitmlp`` console script)::

    logitmlp sweep --temperatures 0.2 0.4 0.6 0.8 1.0 1.2 --head outputs/demo-head --dataset arithmetic \\
        --n-validation 50 --n-problems 100
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .policies import DecodingPolicy
from .results import EvalResults, PolicyResults, write_json
from .runner import evaluate


logger = logging.getLogger(__name__)

__all__ = ["SELECTION_METRICS", "SweepResults", "global_temperature_sweep", "pareto_plot", "temperature_policy"]

SELECTION_METRICS = ("mean_accuracy", "best@k", "maj@k", "worst@k")


def temperature_policy(temperature: float) -> DecodingPolicy:
    """The base model at a fixed temperature, named ``T=<t>``."""
    return DecodingPolicy(name=f"T={temperature:g}", kind="temperature", temperature=float(temperature))


@dataclass
class SweepResults:
    """A GLOBAL-T* run.

    Args:
        temperatures (`list[float]`): The swept temperatures.
        selection_metric (`str`): Metric maximised on validation.
        best_temperature (`float`): The selected T* (ties → the lower temperature).
        validation ([`EvalResults`]): Every temperature on the validation split.
        test ([`EvalResults`], *optional*): T* on the test split (every temperature if the sweep was also run on
            test, for the Pareto plot).
        markers (`dict[str, PolicyResults]`): Other policies (heads) on the test split, for the plot.
    """

    temperatures: list[float]
    selection_metric: str
    best_temperature: float
    validation: EvalResults
    test: EvalResults | None = None
    markers: dict[str, PolicyResults] = field(default_factory=dict)

    @property
    def best(self) -> PolicyResults | None:
        """T*'s results on the test split."""
        if self.test is None:
            return None
        return self.test.policies.get(temperature_policy(self.best_temperature).name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "temperatures": self.temperatures,
            "selection_metric": self.selection_metric,
            "best_temperature": self.best_temperature,
            "validation": self.validation.to_dict(),
            "test": self.test.to_dict() if self.test is not None else None,
            "markers": {name: r.to_dict() for name, r in self.markers.items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SweepResults:
        """Read a ``sweep.json`` written by :meth:`save`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(
            temperatures=data["temperatures"],
            selection_metric=data["selection_metric"],
            best_temperature=data["best_temperature"],
            validation=EvalResults.from_dict(data["validation"]),
            test=EvalResults.from_dict(data["test"]) if data["test"] is not None else None,
            markers={name: PolicyResults.from_dict(p) for name, p in data.get("markers", {}).items()},
        )


def global_temperature_sweep(
    model,
    tokenizer,
    validation,
    test,
    temperatures: Sequence[float],
    selection_metric: str = "mean_accuracy",
    sweep_on_test: bool = False,
    **evaluate_kwargs: Any,
) -> SweepResults:
    """Sweep fixed temperatures on ``validation``, pick T* by ``selection_metric``, evaluate T* on ``test``.

    Args:
        model: The base model (a `LogitMLPForCausalLM` is evaluated through its base).
        tokenizer: Its tokenizer.
        validation (`datasets.Dataset`): Problems for selecting T (disjoint from ``test``).
        test (`datasets.Dataset`, *optional*): Problems to report T* on; ``None`` skips the test evaluation.
        temperatures (`Sequence[float]`): Temperatures to try (> 0 for a meaningful best@k).
        selection_metric (`str`, *optional*, defaults to `"mean_accuracy"`): One of ``"mean_accuracy"``,
            ``"best@k"``, ``"maj@k"``, ``"worst@k"``. Ties go to the lowest temperature.
        sweep_on_test (`bool`, *optional*, defaults to `False`): Also evaluate every temperature on test (what the
            Pareto plot compares heads against), not only T*.
        evaluate_kwargs: Passed to [`~logitmlp_hf.evaluation.runner.evaluate`] (``n_samples``, ``seed``,
            ``max_new_tokens``, ``batch_size``, ...).

    Returns:
        [`SweepResults`].
    """
    if selection_metric not in SELECTION_METRICS:
        raise ValueError(f"selection_metric must be one of {SELECTION_METRICS}, got {selection_metric!r}")
    if not temperatures:
        raise ValueError("no temperatures to sweep")
    temperatures = sorted({float(t) for t in temperatures})
    policies = [temperature_policy(t) for t in temperatures]
    evaluate_kwargs.pop("rollouts_path", None)
    evaluate_kwargs.pop("results_path", None)
    logger.info("Sweeping %d temperatures on %d validation problems", len(temperatures), len(validation))
    val = evaluate(model, tokenizer, validation, policies, **evaluate_kwargs)
    scores = [val[p.name].metrics[selection_metric].value for p in policies]
    # Strictly greater keeps the first (lowest) temperature among ties: the least random of equally good ones.
    best_index = max(range(len(scores)), key=lambda i: (scores[i], -i))
    best = temperatures[best_index]
    logger.info("T* = %g (%s %.3f on validation)", best, selection_metric, scores[best_index])
    test_results = None
    if test is not None:
        test_policies = policies if sweep_on_test else [policies[best_index]]
        test_results = evaluate(model, tokenizer, test, test_policies, **evaluate_kwargs)
    return SweepResults(temperatures, selection_metric, best, val, test_results)


def _point(result: PolicyResults | EvalResults | tuple[float, float], k_key: str) -> tuple[float, float]:
    if isinstance(result, tuple):
        return result
    if isinstance(result, EvalResults):
        result = next(iter(result.policies.values()))
    return result.metrics["mean_accuracy"].value, result.metrics[k_key].value


def pareto_plot(
    sweep_results: SweepResults | EvalResults | Mapping[float, PolicyResults],
    markers: Mapping[str, PolicyResults | EvalResults | tuple[float, float]] | None = None,
    *,
    k_key: str = "best@k",
    title: str | None = None,
    path: str | os.PathLike | None = None,
    ax=None,
    other_sweeps: Mapping[str, Mapping[float, PolicyResults]] | None = None,
):
    """Best@1 (mean accuracy) vs best@k: the temperature sweep as a labelled line, heads as labelled markers.

    Args:
        sweep_results ([`SweepResults`], [`EvalResults`] or `Mapping[float, PolicyResults]`): The sweep. From a
            [`SweepResults`], the test-split sweep is drawn if every temperature was run on test, else the
            validation sweep (the title says which). An [`EvalResults`] is read policy by policy (temperature
            policies only).
        markers (`Mapping[str, ...]`, *optional*): Name → results (or an ``(x, y)`` point) for heads or stacked
            checkpoints. Defaults to ``sweep_results.markers`` for a [`SweepResults`].
        k_key (`str`, *optional*, defaults to `"best@k"`): The y metric (e.g. ``"pass@4"`` for another k).
        title (`str`, *optional*): Plot title.
        path (`str` or `os.PathLike`, *optional*): Save the figure here (PNG by extension).
        ax (`matplotlib.axes.Axes`, *optional*): Draw into these axes instead of a new figure.
        other_sweeps (`Mapping[str, Mapping[float, PolicyResults]]`, *optional*): Further temperature sweeps on the
            same problems, e.g. of a LoRA-tuned checkpoint, drawn as labelled lines (label → temperature → results).

    Returns:
        `matplotlib.figure.Figure`.
    """
    # A bare Figure (not pyplot) needs no GUI backend and is not kept alive by pyplot's figure registry.
    from matplotlib.figure import Figure

    split = None
    if isinstance(sweep_results, SweepResults):
        if markers is None:
            markers = sweep_results.markers
        on_test = sweep_results.test is not None and all(
            temperature_policy(t).name in sweep_results.test.policies for t in sweep_results.temperatures
        )
        source, split = (sweep_results.test, "test") if on_test else (sweep_results.validation, "validation")
        sweep = {t: source[temperature_policy(t).name] for t in sweep_results.temperatures}
    elif isinstance(sweep_results, EvalResults):
        sweep = {r.policy.temperature: r for r in sweep_results.policies.values() if r.policy.kind == "temperature"}
    else:
        sweep = dict(sweep_results)
    if not sweep:
        raise ValueError("no temperature results to plot")
    k = None
    for result in sweep.values():
        k = len(result.problems[0]["correct"]) if result.problems else None
        break
    y_label = k_key.replace("@k", f"@{k}") if k else k_key

    if ax is None:
        fig = Figure(figsize=(6, 4.5))
        ax = fig.subplots()
    else:
        fig = ax.figure
    # The base's sweep first (solid grey), then any other sweeps (dashed, coloured); styles are all that differ.
    lines = [("base", sweep, "-o", "0.45", (4, -10))]
    lines += [
        (label, other, "--o", f"C{(i + 6) % 10}", (4, 4))
        for i, (label, other) in enumerate((other_sweeps or {}).items())
    ]
    for label, results, style, color, text_offset in lines:
        temps = sorted(results)
        xs = [results[t].metrics["mean_accuracy"].value for t in temps]
        ys = [results[t].metrics[k_key].value for t in temps]
        ax.plot(xs, ys, style, color=color, markersize=4, label=f"temperature sweep ({label})", zorder=2)
        for t, x, y in zip(temps, xs, ys):
            ax.annotate(f"T={t:g}", (x, y), textcoords="offset points", xytext=text_offset, fontsize=7, color="0.3")
    for i, (name, result) in enumerate((markers or {}).items()):
        x, y = _point(result, k_key)
        ax.scatter([x], [y], marker="*^sDvP"[i % 6], s=120, zorder=3, label=name)
    ax.set_xlabel("best@1 (mean accuracy)")
    ax.set_ylabel(y_label)
    if split == "validation" and markers:  # never let a reader compare points from different problems unawares
        split = "sweep on validation, markers on test"
    ax.set_title(title or f"{y_label} vs best@1" + (f" ({split} split)" if split else ""))
    ax.grid(True, alpha=0.3)
    # Markers are named by the legend only: heads often land close together, where text labels would collide.
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150)
    return fig
