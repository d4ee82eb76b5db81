"""Seeded, batch-independent sampling: every sample draws its token noise from its own generator.

``generate`` runs in greedy mode and :class:`SeededGumbelSampler`, the last logits processor, adds seeded Gumbel noise
to the final (warped, temperature-scaled, truncated) scores, so the argmax is an exact sample from the distribution
``do_sample=True`` would draw from (the Gumbel-max trick), with noise that does not depend on which other rows share
the batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from transformers import LogitsProcessor


def sample_seed(seed: int, problem_id: int, sample: int) -> int:
    """The 63-bit seed of one sample's noise stream (a hash of the three numbers, not a simple sum)."""
    return int(
        np.random.SeedSequence([seed, problem_id, sample]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1)
    )


class SeededGumbelSampler(LogitsProcessor):
    """Adds per-row seeded Gumbel noise, turning greedy decoding into exact sampling from ``softmax(scores)``.

    ``argmax(scores + G)`` with ``G`` i.i.d. standard Gumbel is distributed as ``softmax(scores)`` (the Gumbel-max
    trick); ``-inf`` scores stay ``-inf``. Each row owns a generator, so its samples do not depend on the other rows.
    Must be the last processor (after temperature, top-k, top-p, min-p).

    Args:
        row_seeds (`Sequence[int]`): One seed per batch row (see [`sample_seed`]).
        device (`torch.device`): Where the scores live.
    """

    def __init__(self, row_seeds: Sequence[int], device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in row_seeds]

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if scores.shape[0] != len(self.generators):
            raise ValueError(f"SeededGumbelSampler was built for {len(self.generators)} rows, got {scores.shape[0]}")
        # Each row's noise is drawn straight into its row of one buffer (a stack of per-row draws cost a full extra
        # copy per step); the values are the same draws, so samples do not change.
        noise = torch.empty(scores.shape, dtype=torch.float32, device=self.device)
        for row, generator in zip(noise, self.generators):
            torch.rand(row.shape, generator=generator, device=self.device, dtype=torch.float32, out=row)
        # Clamp away from 0 and 1 so the double log is finite (float32: the extreme Gumbel values are ~±4.5 and 16).
        # In place: -log(-log(u)), three passes over one buffer.
        tiny = torch.finfo(torch.float32).tiny
        gumbel = noise.clamp_(min=tiny, max=1.0 - 2**-24).log_().neg_().log_().neg_()
        return gumbel.add_(scores.float())


__all__ = ["SeededGumbelSampler", "sample_seed"]
