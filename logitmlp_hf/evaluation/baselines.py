"""Baseline decoding policies (docs/method.md §6) as plain transformers ``LogitsProcessor`` objects.

Every policy here is a temperature policy: it divides the next-token scores by a temperature chosen per row and per
step, so it is passed to an ordinary ``generate`` call next to (never instead of) transformers' own warpers:

```python
>>> proc = make_baseline_processor("entropy_guided", t_low=0.6, t_high=1.2)
>>> out = model.generate(**inputs, do_sample=True, temperature=1.0, top_p=0.95, logits_processor=[proc])
```

``generate`` runs user processors *before* its own temperature/top-k/top-p/min-p warpers, so keep
``temperature=1.0`` (otherwise the two temperatures multiply) and let ``top_k``/``top_p``/``min_p`` act on the
re-tempered distribution, as they would after a static temperature. Note that in transformers 5 a sampling
``generate`` call falls back to ``top_k=50`` unless ``top_k`` is passed (``top_k=None`` or ``0`` disables it).
Static decoders (temperature, top-k, top-p, min-p) are transformers' warpers; :func:`static_warpers` only builds
the list, it reimplements nothing.

Policies and the papers they follow:

- :class:`EntropyGuidedTemperatureProcessor` — entropy-guided token-level temperature (arXiv:2510.08892).
- :class:`AnnealedTemperatureProcessor` — exploratory annealed decoding (temperature annealed from high to low along
  the generated sequence).
- :class:`MultiTemperatureProcessor`, :func:`split_samples_across_temperatures`, :func:`majority_vote` — temperature
  as a test-time scaling axis: one prompt's sample budget split across several temperatures (also the multi-temperature
  rollouts of arXiv:2510.08892), and majority voting over the pooled samples.

Stateful processors and ``generate`` calls: a processor object outlives the ``generate`` call it is passed to, so
per-call state (the entropy windows, the prompt length) must be dropped when a new call starts. ``generate`` appends
exactly one token per step, so a call is recognised as the *same* call iff the batch size is unchanged, the sequence
is exactly one token longer than at the previous step, and its first ``L-1`` tokens equal the previous step's
``input_ids``. Anything else (a new prompt, a new batch size, a shorter or much longer input) starts a new call. The
one ambiguity is feeding a call's output straight back into ``generate``: that *is* a one-token continuation of the
same sequences and is treated as one; call :meth:`reset` between the calls if that is not wanted.

Beam search reorders rows between steps, which the per-row state here does not follow: use these with sampling.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import torch
from transformers import LogitsProcessor, LogitsProcessorList

from ..sampling_rules import SamplingRule


logger = logging.getLogger(__name__)

__all__ = [
    "BASELINES",
    "AnnealedTemperatureProcessor",
    "EntropyGuidedTemperatureProcessor",
    "MultiTemperatureProcessor",
    "finite_entropy",
    "make_baseline_processor",
    "split_samples_across_temperatures",
    "static_warpers",
]


def _check_temperature(name: str, value: float) -> float:
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"`{name}` must be a finite, strictly positive float, got {value!r}")
    return value


def finite_entropy(scores: torch.Tensor) -> torch.Tensor:
    r"""
    Entropy (nats) of ``softmax(scores)`` over the finite entries of each row.

    Entries that are ``-inf`` (tokens masked by an earlier processor), ``+inf`` or NaN are left out of the
    distribution, so the result is the entropy of the distribution actually sampled from over the allowed tokens. A
    row with no finite entry gets entropy ``0`` rather than NaN.

    Args:
        scores (`torch.Tensor` of shape `(batch_size, vocab_size)`): next-token scores.

    Returns:
        `torch.Tensor` of shape `(batch_size,)`, float32 (computed in float32 whatever the input dtype, so that half
        precision scores do not lose the small tail probabilities).
    """
    finite = torch.isfinite(scores)
    masked = torch.where(finite, scores.float(), torch.tensor(float("-inf"), device=scores.device))
    logp = torch.log_softmax(masked, dim=-1)
    # p·log p is 0·(-inf) = NaN on masked entries and on all-masked rows; those contribute nothing by definition.
    plogp = torch.where(finite, logp.exp() * logp, torch.zeros((), device=scores.device))
    return torch.nan_to_num(-plogp.sum(dim=-1), nan=0.0)


class _GenerateCallTracker:
    """Tells whether a processor call continues the previous step of the same ``generate`` call (see module doc)."""

    def __init__(self) -> None:
        self._prev_ids: torch.Tensor | None = None

    def reset(self) -> None:
        self._prev_ids = None

    def step(self, input_ids: torch.Tensor) -> bool:
        """Record ``input_ids``; return `True` if this call starts a new ``generate`` call."""
        prev, self._prev_ids = self._prev_ids, input_ids
        if prev is None or prev.shape[0] != input_ids.shape[0] or input_ids.shape[1] != prev.shape[1] + 1:
            return True
        # The prefix check catches a new call whose prompt happens to be exactly one token longer than the last
        # step of the previous call. It costs one comparison of the ids per step, negligible next to a forward.
        return not torch.equal(input_ids[:, :-1], prev.to(input_ids.device))


class EntropyGuidedTemperatureProcessor(LogitsProcessor):
    r"""
    Entropy-guided two-temperature sampling (entropy-guided token-level temperature, arXiv:2510.08892).

    At every step the processor computes the entropy ``H_t`` of each row's incoming (untempered) next-token
    distribution, compares it to the ``percentile``-th percentile of the same row's entropies at the previous
    ``window`` steps, and divides the row's scores by ``t_high`` if ``H_t`` is strictly above that threshold,
    by ``t_low`` otherwise. ``H_t`` then enters the row's window. Rows are independent; the window is reset at the
    start of every ``generate`` call (see the module docstring) or by :meth:`reset`.

    Choices the paper leaves open, fixed here:

    - The window holds the *previous* steps' entropies; the current one is compared against them and added after
      (including it would make a one-entry window never fire).
    - Warm-up: while a row has fewer than ``min_history`` past entropies, the step uses ``t_low`` (no evidence that
      the position is unusually uncertain). From ``min_history`` entries on, the threshold is the percentile of the
      entries present, so a partly filled window is used as is. ``min_history`` defaults to ``window``: the rule only
      fires once the window has filled.
    - Percentile: linear interpolation between order statistics (``torch.quantile``, NumPy's default), and
      "above" is strict, so a constant-entropy stretch is sampled at ``t_low``.
    - Entropy in nats of the scores as this processor receives them (after generate's built-in processors such as
      repetition penalty, before any temperature/top-k/top-p), over finite entries only.
    - The prompt's own token entropies are not used (a ``LogitsProcessor`` never sees them); the window only holds
      generated positions.

    Use with ``do_sample=True, temperature=1.0``.

    Args:
        t_low (`float`): temperature for ordinary (not unusually uncertain) positions.
        t_high (`float`): temperature for positions whose entropy is above the window percentile.
        window (`int`, *optional*, defaults to `32`): number of past entropies kept per row.
        percentile (`float`, *optional*, defaults to `80.0`): percentile of the window, in ``[0, 100]``.
        min_history (`int`, *optional*): past entropies needed before the rule fires; defaults to ``window``.

    Example:

    ```python
    >>> proc = EntropyGuidedTemperatureProcessor(t_low=0.6, t_high=1.2, window=32, percentile=80)
    >>> out = model.generate(**inputs, do_sample=True, temperature=1.0, logits_processor=[proc])
    ```
    """

    def __init__(
        self,
        t_low: float,
        t_high: float,
        window: int = 32,
        percentile: float = 80.0,
        min_history: int | None = None,
    ) -> None:
        self.t_low = _check_temperature("t_low", t_low)
        self.t_high = _check_temperature("t_high", t_high)
        if int(window) < 1:
            raise ValueError(f"`window` must be >= 1, got {window!r}")
        if not 0.0 <= float(percentile) <= 100.0:
            raise ValueError(f"`percentile` must be in [0, 100], got {percentile!r}")
        self.window = int(window)
        self.percentile = float(percentile)
        self.min_history = self.window if min_history is None else int(min_history)
        if not 1 <= self.min_history <= self.window:
            raise ValueError(f"`min_history` must be in [1, window={self.window}], got {min_history!r}")
        if self.t_high < self.t_low:
            logger.warning("EntropyGuidedTemperatureProcessor: t_high=%s < t_low=%s", self.t_high, self.t_low)
        self._tracker = _GenerateCallTracker()
        self.reset()

    def reset(self) -> None:
        """Forget all per-row state; the next call starts a fresh window."""
        self._tracker.reset()
        # Ring buffer of past entropies, (batch, window). All rows of a generate call take the same number of steps
        # (finished rows are still processed), so one fill count serves every row.
        self._history: torch.Tensor | None = None
        self._count = 0
        #: Temperatures used at the last call, (batch,) — for inspection and tests.
        self.last_temperatures: torch.Tensor | None = None
        #: Thresholds used at the last call, (batch,); NaN during warm-up.
        self.last_thresholds: torch.Tensor | None = None

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._tracker.step(input_ids) or self._history is None:
            self._history = torch.zeros(scores.shape[0], self.window, dtype=torch.float32, device=scores.device)
            self._count = 0
        entropy = finite_entropy(scores)
        filled = min(self._count, self.window)
        if filled >= self.min_history:
            # Before the buffer wraps its entries sit at 0..filled-1; after, all slots are valid. Order is irrelevant.
            threshold = torch.quantile(self._history[:, :filled], self.percentile / 100.0, dim=1)
            high = entropy > threshold
        else:
            threshold = torch.full_like(entropy, float("nan"))
            high = torch.zeros_like(entropy, dtype=torch.bool)
        temperature = torch.where(
            high,
            torch.tensor(self.t_high, dtype=scores.dtype, device=scores.device),
            torch.tensor(self.t_low, dtype=scores.dtype, device=scores.device),
        )
        self._history[:, self._count % self.window] = entropy
        self._count += 1
        self.last_temperatures, self.last_thresholds = temperature, threshold
        return scores / temperature[:, None]


_SCHEDULES = ("linear", "cosine", "exponential")


class AnnealedTemperatureProcessor(LogitsProcessor):
    r"""
    Exploratory annealed decoding: temperature annealed from ``t_start`` to ``t_end`` along the generated sequence.

    The position ``p`` of a step is the number of tokens generated so far in the current ``generate`` call
    (``input_ids.shape[1]`` minus the prompt length recorded at the call's first step; 0 for the first generated
    token). With ``f = min(p / horizon, 1)``:

    - ``"linear"``: ``T = t_start + (t_end - t_start) * f``
    - ``"cosine"``: ``T = t_end + (t_start - t_end) * (1 + cos(pi * f)) / 2``
    - ``"exponential"``: ``T = t_start * (t_end / t_start) ** f`` (geometric interpolation: equal ratios per step)

    so ``T = t_start`` at the first generated token, ``T = t_end`` from position ``horizon`` on.

    Choices fixed here: the schedule shapes above (the idea fixes only "high early, low late"); position counted from
    the first *generated* token, the same for every row of a batch (left padding makes prompts equally long in
    ``input_ids``, so this is also each row's own generated length; finished rows keep counting but their samples are
    discarded by generate); ``horizon`` in tokens, with ``t_end`` held after it.

    Use with ``do_sample=True, temperature=1.0``.

    Args:
        t_start (`float`): temperature of the first generated token.
        t_end (`float`): temperature from position ``horizon`` on.
        horizon (`int`): number of generated tokens over which the temperature is annealed.
        schedule (`str`, *optional*, defaults to `"linear"`): one of ``"linear"``, ``"cosine"``, ``"exponential"``.

    Example:

    ```python
    >>> proc = AnnealedTemperatureProcessor(t_start=1.2, t_end=0.6, horizon=256, schedule="cosine")
    >>> out = model.generate(**inputs, do_sample=True, temperature=1.0, logits_processor=[proc])
    ```
    """

    def __init__(self, t_start: float, t_end: float, horizon: int, schedule: str = "linear") -> None:
        self.t_start = _check_temperature("t_start", t_start)
        self.t_end = _check_temperature("t_end", t_end)
        if int(horizon) < 1:
            raise ValueError(f"`horizon` must be >= 1, got {horizon!r}")
        if schedule not in _SCHEDULES:
            raise ValueError(f"`schedule` must be one of {_SCHEDULES}, got {schedule!r}")
        self.horizon = int(horizon)
        self.schedule = schedule
        self._tracker = _GenerateCallTracker()
        self.reset()

    def reset(self) -> None:
        """Forget the recorded prompt length; the next call is taken as the first step of a new ``generate``."""
        self._tracker.reset()
        self._prompt_length: int | None = None
        #: Temperature used at the last call (a float; the same for every row).
        self.last_temperature: float | None = None

    def temperature_at(self, position: int) -> float:
        """The schedule's temperature at generated position ``position`` (0-based)."""
        f = min(max(position, 0) / self.horizon, 1.0)
        if self.schedule == "linear":
            return self.t_start + (self.t_end - self.t_start) * f
        if self.schedule == "cosine":
            return self.t_end + (self.t_start - self.t_end) * (1.0 + math.cos(math.pi * f)) / 2.0
        return self.t_start * (self.t_end / self.t_start) ** f

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._tracker.step(input_ids) or self._prompt_length is None:
            self._prompt_length = input_ids.shape[1]
        temperature = self.temperature_at(input_ids.shape[1] - self._prompt_length)
        self.last_temperature = temperature
        # A Python float keeps the scores' dtype and device.
        return scores / temperature


def split_samples_across_temperatures(n: int, temperatures: Sequence[float]) -> list[float]:
    r"""
    Split one problem's ``n`` samples across ``temperatures`` as evenly as possible.

    Each temperature gets ``n // k`` samples (``k = len(temperatures)``) and the first ``n % k`` temperatures, in the
    order given, one more. The result lists the temperature of every sample, grouped by temperature in the given
    order, so it is deterministic and lines up with generate's ``num_return_sequences`` rows of one prompt.

    Args:
        n (`int`): number of samples for the problem (``>= 0``).
        temperatures (`Sequence[float]`): the temperatures, strictly positive, at least one.

    Returns:
        `list[float]` of length ``n``.

    Example:

    ```python
    >>> split_samples_across_temperatures(8, [0.6, 1.0, 1.2])
    [0.6, 0.6, 0.6, 1.0, 1.0, 1.0, 1.2, 1.2]
    ```
    """
    if int(n) < 0:
        raise ValueError(f"`n` must be >= 0, got {n!r}")
    temps = [_check_temperature("temperatures[i]", t) for t in temperatures]
    if not temps:
        raise ValueError("`temperatures` must not be empty")
    base, extra = divmod(int(n), len(temps))
    out: list[float] = []
    for i, t in enumerate(temps):
        out.extend([t] * (base + (1 if i < extra else 0)))
    return out


class MultiTemperatureProcessor(LogitsProcessor):
    r"""
    Divide each row's scores by its own temperature (multi-temperature sampling in one ``generate`` call).

    ``temperatures_per_row`` is either one temperature per row of the batch, or one per sample of a prompt, i.e. of
    length ``num_return_sequences``: generate lays rows out as ``[prompt0 sample0, prompt0 sample1, ...,
    prompt1 sample0, ...]``, so row ``i`` gets ``temperatures_per_row[i % len(temperatures_per_row)]``. The batch size
    must be a multiple of the length. Build the list with :meth:`from_split` to spread ``n`` samples over a set of
    temperatures.

    Use with ``do_sample=True, temperature=1.0``.

    Args:
        temperatures_per_row (`Sequence[float]` or `torch.Tensor`): strictly positive temperatures.

    Example:

    ```python
    >>> proc = MultiTemperatureProcessor.from_split(8, [0.6, 1.0, 1.2])
    >>> out = model.generate(
    ...     **inputs, do_sample=True, temperature=1.0, num_return_sequences=8, logits_processor=[proc]
    ... )
    ```
    """

    def __init__(self, temperatures_per_row: Sequence[float] | torch.Tensor) -> None:
        temps = torch.as_tensor(temperatures_per_row, dtype=torch.float64).flatten()
        if temps.numel() == 0:
            raise ValueError("`temperatures_per_row` must not be empty")
        if not bool(torch.all(torch.isfinite(temps) & (temps > 0))):
            raise ValueError(f"`temperatures_per_row` must be finite and > 0, got {temps.tolist()}")
        self.temperatures = temps
        self._cache: tuple[int, torch.dtype, torch.device, torch.Tensor] | None = None

    @classmethod
    def from_split(cls, n: int, temperatures: Sequence[float]) -> MultiTemperatureProcessor:
        """Per-sample temperatures of :func:`split_samples_across_temperatures` (``num_return_sequences=n``)."""
        return cls(split_samples_across_temperatures(n, temperatures))

    def row_temperatures(self, batch_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """The ``(batch_size,)`` temperatures applied to a batch of that size."""
        k = self.temperatures.numel()
        if batch_size % k:
            raise ValueError(
                f"MultiTemperatureProcessor has {k} temperatures, which does not divide the batch size {batch_size}: "
                "give one per row, or one per sample with num_return_sequences equal to their number"
            )
        # Cached so that the host-to-device copy happens once per generate call, not per step.
        if self._cache is None or self._cache[:3] != (batch_size, dtype, device):
            row = self.temperatures.repeat(batch_size // k).to(device=device, dtype=dtype)
            self._cache = (batch_size, dtype, device, row)
        return self._cache[3]

    @torch.no_grad()
    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        return scores / self.row_temperatures(scores.shape[0], scores.dtype, scores.device)[:, None]


def static_warpers(
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    min_p: float | None = None,
) -> LogitsProcessorList:
    r"""
    The static decoders as transformers' own warpers, in generate's order (temperature, top-k, top-p, min-p):
    :meth:`~logitmlp_hf.sampling_rules.SamplingRule.warpers` of the same rule (``top_k=0`` means no top-k, as in
    ``generate``). Arguments left at their neutral value add no warper.
    """
    return SamplingRule(temperature, top_k=top_k or None, top_p=top_p, min_p=min_p).warpers()


#: Baseline temperature policies by name, for :func:`make_baseline_processor`.
BASELINES: dict[str, type[LogitsProcessor]] = {
    "entropy_guided": EntropyGuidedTemperatureProcessor,
    "annealed": AnnealedTemperatureProcessor,
    "multi_temperature": MultiTemperatureProcessor,
}


def make_baseline_processor(name: str, **kwargs) -> LogitsProcessor:
    r"""
    Build the baseline processor registered as ``name`` in :data:`BASELINES`.

    Args:
        name (`str`): ``"entropy_guided"``, ``"annealed"`` or ``"multi_temperature"``.
        kwargs: the processor's constructor arguments. For ``"multi_temperature"``, ``n`` and ``temperatures``
            may be given instead of ``temperatures_per_row`` (see :meth:`MultiTemperatureProcessor.from_split`).

    Example:

    ```python
    >>> proc = make_baseline_processor("annealed", t_start=1.2, t_end=0.6, horizon=256)
    ```
    """
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; expected one of {sorted(BASELINES)}")
    if name == "multi_temperature" and "temperatures_per_row" not in kwargs and "temperatures" in kwargs:
        return MultiTemperatureProcessor.from_split(**kwargs)
    return BASELINES[name](**kwargs)
