"""Decoding policies: what ``logitmlp eval`` compares — a fixed temperature (with optional top-p/top-k/min-p), a
decoding head, or a baseline logits processor — and the ``generate()`` processors each one needs."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import LogitsProcessor

from ..sampling_rules import SamplingRule


POLICY_KINDS = ("temperature", "head", "baseline")
_GENERATION_KEYS = ("temperature", "top_p", "top_k", "min_p")


@dataclass
class DecodingPolicy:
    """One way of decoding from the model, as compared in an evaluation.

    Args:
        name (`str`): Label in tables, plots, results and rollouts (defaults to the policy string).
        kind (`str`): ``"temperature"`` (the base model), ``"head"`` (any decoding head: LogitMLP, AutoDeco, an adapter) or ``"baseline"`` (a
            processor from ``logitmlp_hf.evaluation.baselines`` on the base model).
        temperature (`float`, *optional*, defaults to `1.0`): Sampling temperature; 0 means greedy (one sample,
            repeated ``n`` times). For heads, the temperature applied on top of the warp.
        top_p (`float`, *optional*): Nucleus sampling, as transformers' ``TopPLogitsWarper``.
        top_k (`int`, *optional*): Top-k sampling, as ``TopKLogitsWarper``.
        min_p (`float`, *optional*): Min-p sampling, as ``MinPLogitsWarper``.
        head (`str`, *optional*): Head repo (directory or Hub id) for ``kind="head"``; ``None`` uses the head of
            the model passed to [`evaluate`] (which must then be a `DecodingHeadForCausalLM`, e.g. a `LogitMLPForCausalLM`).
        baseline (`str`, *optional*): Baseline name for ``kind="baseline"`` (``"entropy_guided"``, ``"annealed"``,
            ``"multi_temperature"``).
        baseline_kwargs (`dict[str, Any]`, *optional*): Keyword arguments of the baseline's processor. For
            ``multi_temperature``, ``temperatures`` (a list) splits each problem's samples across temperatures.

    Example:

    ```python
    >>> parse_policy("baseline:entropy_guided:t_low=0.6,t_high=1.2")
    DecodingPolicy(name='baseline:entropy_guided:t_low=0.6,t_high=1.2', kind='baseline', temperature=1.0, ...)
    ```
    """

    name: str
    kind: str = "temperature"
    temperature: float = 1.0
    top_p: float | None = None
    top_k: int | None = None
    min_p: float | None = None
    head: str | None = None
    baseline: str | None = None
    baseline_kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"policy kind must be one of {POLICY_KINDS}, got {self.kind!r}")
        self.rule  # noqa: B018 - validates temperature / top-k / top-p / min-p as the one sampling rule does
        if self.kind == "baseline" and not self.baseline:
            raise ValueError("a baseline policy needs a baseline name")

    @property
    def rule(self) -> SamplingRule:
        """The static sampling rule applied after the model (or its head): temperature, then truncation."""
        return SamplingRule(self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p)

    @property
    def greedy(self) -> bool:
        """Temperature 0: argmax decoding, so all ``n`` samples are the same."""
        return self.temperature == 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _parse_value(text: str) -> Any:
    """``"3"`` → 3, ``"0.5"`` → 0.5, ``"true"`` → True, ``"none"`` → None, ``"0.5|1.0"`` → [0.5, 1.0], else text."""
    if "|" in text:
        return [_parse_value(part) for part in text.split("|")]
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_kwargs(text: str, spec: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"policy {spec!r}: expected key=value, got {item!r}")
        kwargs[key.strip()] = _parse_value(value.strip())
    return kwargs


def parse_policy(spec: str) -> DecodingPolicy:
    """Parse a policy string.

    Forms (``key=value`` lists are comma-separated; a list value is written ``a|b|c``)::

        temperature:0.7                       the base model at T = 0.7
        temperature:0.7:top_p=0.95,min_p=0.05 with transformers' top-p / top-k / min-p
        head:outputs/demo-head                a decoding head repo (directory or Hub id, any head type) at T = 1
        head:outputs/demo-head:temperature=0.8
        head                                  the head of the model passed to evaluate()
        baseline:entropy_guided:t_low=0.6,t_high=1.2
        baseline:multi_temperature:temperatures=0.6|1.0|1.4

    A ``name=...`` entry sets the label (default: the string itself). ``temperature``, ``top_p``, ``top_k`` and
    ``min_p`` entries always configure generation; other entries of a baseline go to its processor.

    Args:
        spec (`str`): The policy string.

    Returns:
        [`DecodingPolicy`].
    """
    kind, _, rest = spec.strip().partition(":")
    if kind not in POLICY_KINDS:
        raise ValueError(f"policy {spec!r}: kind must be one of {POLICY_KINDS}")
    fields: dict[str, Any] = {"name": spec.strip(), "kind": kind}
    if kind == "temperature":
        value, _, extra = rest.partition(":")
        if not value:
            raise ValueError(f"policy {spec!r}: expected temperature:<T>")
        fields["temperature"] = float(value)
        kwargs = _parse_kwargs(extra, spec)
    elif kind == "head":
        # Only split off a trailing key=value list, so a head path may itself contain ':' (e.g. hf://, C:\).
        head, sep, extra = rest.rpartition(":")
        if not sep or "=" not in extra:
            head, extra = rest, ""
        fields["head"] = head or None
        kwargs = _parse_kwargs(extra, spec)
    else:
        baseline, _, extra = rest.partition(":")
        if not baseline:
            raise ValueError(f"policy {spec!r}: expected baseline:<name>[:key=value,...]")
        fields["baseline"] = baseline
        kwargs = _parse_kwargs(extra, spec)
    if "name" in kwargs:
        fields["name"] = str(kwargs.pop("name"))
    for key in _GENERATION_KEYS:
        if key in kwargs:
            fields[key] = kwargs.pop(key)
    if kwargs and kind != "baseline":
        raise ValueError(f"policy {spec!r}: unknown options {sorted(kwargs)} (allowed: {_GENERATION_KEYS}, name)")
    if kind == "baseline":
        fields["baseline_kwargs"] = kwargs
    return DecodingPolicy(**fields)


def policy_warpers(policy: DecodingPolicy, head_absorbs: bool = False) -> list[LogitsProcessor]:
    """transformers' own warpers for the policy's sampling rule, in the order ``generate(do_sample=True)`` applies
    them; without temperature and top-p when the policy's head composes those with its own (``head_absorbs``)."""
    rule = policy.rule
    if head_absorbs:
        rule = SamplingRule(1.0, top_k=rule.top_k, min_p=rule.min_p)
    return list(rule.warpers())


def baseline_processors(
    policy: DecodingPolicy, n_samples: int, rows: Sequence[tuple[int, int]], device: torch.device
) -> list[LogitsProcessor]:
    if policy.kind != "baseline":
        return []
    if policy.baseline == "multi_temperature" and "temperatures" in policy.baseline_kwargs:
        # The row layout is ours, so the per-sample temperatures are applied here rather than by a processor that
        # would have to guess it: sample s of every problem gets the s-th of the split.
        from .baselines import MultiTemperatureProcessor, split_samples_across_temperatures

        temps = policy.baseline_kwargs["temperatures"]
        split = split_samples_across_temperatures(n_samples, list(temps if isinstance(temps, list) else [temps]))
        return [MultiTemperatureProcessor([split[s] for _, s in rows])]
    from .baselines import make_baseline_processor

    return [make_baseline_processor(policy.baseline, **policy.baseline_kwargs)]


__all__ = ["POLICY_KINDS", "DecodingPolicy", "baseline_processors", "parse_policy", "policy_warpers"]
