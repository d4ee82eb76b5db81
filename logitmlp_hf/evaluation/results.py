"""Evaluation results: one policy's samples, answers and metrics (:class:`PolicyResults`), a whole evaluation
(:class:`EvalResults`), their JSON files and text tables."""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .metrics import MetricValue
from .policies import DecodingPolicy


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Write ``payload`` as indented UTF-8 JSON, creating parent directories; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path


@dataclass
class PolicyResults:
    """One policy's evaluation.

    Args:
        policy ([`DecodingPolicy`]): What was evaluated.
        metrics (`dict[str, MetricValue]`): See [`~logitmlp_hf.evaluation.metrics.compute_metrics`].
        problems (`list[dict]`): Per problem: ``problem_id``, ``question``, ``reference``, ``correct`` (per sample),
            ``answers`` (extracted), ``grouped_answers`` (math-equivalence representatives), ``completion_tokens``.
        generation_seconds (`float`): Wall time spent in ``generate``.
        grading_seconds (`float`): Wall time spent grading and grouping answers.
        generated_tokens (`int`): Completion tokens generated (up to and including EOS).
    """

    policy: DecodingPolicy
    metrics: dict[str, MetricValue]
    problems: list[dict[str, Any]]
    generation_seconds: float = 0.0
    grading_seconds: float = 0.0
    generated_tokens: int = 0

    @property
    def name(self) -> str:
        return self.policy.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy.to_dict(),
            "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "timing": {
                "generation_seconds": self.generation_seconds,
                "grading_seconds": self.grading_seconds,
                "generated_tokens": self.generated_tokens,
            },
            "problems": self.problems,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyResults:
        timing = data.get("timing", {})
        return cls(
            policy=DecodingPolicy(**data["policy"]),
            metrics={k: MetricValue(**v) for k, v in data["metrics"].items()},
            problems=data["problems"],
            **timing,
        )


@dataclass
class EvalResults:
    """An evaluation of several policies on the same problems.

    Args:
        config (`dict[str, Any]`): Run configuration (model, dataset, ``n_samples``, seed, ...).
        policies (`dict[str, PolicyResults]`): Policy name → results, in evaluation order.
        versions (`dict[str, str]`): Library versions of the run.
    """

    config: dict[str, Any]
    policies: dict[str, PolicyResults]
    versions: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, name: str) -> PolicyResults:
        return self.policies[name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "versions": self.versions,
            "policies": {name: result.to_dict() for name, result in self.policies.items()},
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the results as JSON (creating parent directories) and return the path."""
        return write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvalResults:
        return cls(
            config=data["config"],
            policies={name: PolicyResults.from_dict(p) for name, p in data["policies"].items()},
            versions=data.get("versions", {}),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> EvalResults:
        """Read a ``results.json`` written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def format_table(self, columns: Sequence[str] | None = None) -> str:
        """The metrics of every policy as a text table with CIs (see [`format_metrics_table`])."""
        return format_metrics_table(self, columns)


_TABLE_COLUMNS = ("best@k", "mean_accuracy", "worst@k", "answer_entropy", "uniq/k", "accuracy_std", "maj@k")
_COLUMN_TITLES = {"mean_accuracy": "mean acc", "answer_entropy": "entropy", "accuracy_std": "acc std"}


def format_metrics_table(results: EvalResults, columns: Sequence[str] | None = None) -> str:
    """A fixed-width table: one row per policy, ``value [ci_low, ci_high]`` per metric (Table 1's columns)."""
    k = results.config.get("n_samples", "k")
    columns = list(columns or _TABLE_COLUMNS)
    titles = [_COLUMN_TITLES.get(c, c).replace("@k", f"@{k}").replace("/k", f"/{k}") for c in columns]
    confidence = results.config.get("confidence", 0.95)
    name_width = max([len("policy")] + [len(n) for n in results.policies])
    cell = 21
    lines = [f"{'policy':<{name_width}}  " + "  ".join(f"{t:>{cell}}" for t in titles)]
    lines.append("-" * len(lines[0]))
    for name, result in results.policies.items():
        cells = [f"{result.metrics[c]:.3f}" if c in result.metrics else "-" for c in columns]
        lines.append(f"{name:<{name_width}}  " + "  ".join(f"{c:>{cell}}" for c in cells))
    lines.append(
        f"(value [{100 * confidence:.0f}% bootstrap CI over {results.config.get('n_problems', '?')} problems])"
    )
    return "\n".join(lines)


def library_versions(extra: Sequence[str] = ()) -> dict[str, str]:
    """Versions of the libraries that determine the samples and the grading (plus ``extra`` installed packages)."""
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    out = {"python": platform.python_version(), "logitmlp_hf": __version__}
    for package in ("torch", "transformers", "math-verify", "numpy", "datasets", *extra):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            pass
    return out


__all__ = ["EvalResults", "PolicyResults", "format_metrics_table", "library_versions", "write_json"]
