"""Progress bars of the package's long-running work (evaluation, analysis, fitting): tqdm on stderr, with an ETA.

Every function that shows one takes ``progress: bool`` (``False`` turns it off); ``TQDM_DISABLE=1`` in the
environment turns off all of them (tqdm's own switch). On a terminal the bar redraws as usual. Elsewhere (a log
file, CI, a pipe) tqdm would append a new state every 0.1 s; here it writes one at most every
:data:`NON_TTY_MININTERVAL` seconds (and at the end), so a log stays readable and still shows the rate and ETA.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


# Seconds between two states of a bar written to something other than a terminal.
NON_TTY_MININTERVAL = 15.0


def progress_bar(
    iterable: Iterable | None = None,
    *,
    total: int | None = None,
    desc: str | None = None,
    unit: str = "it",
    disable: bool = False,
    **tqdm_kwargs: Any,
) -> tqdm:
    """A tqdm bar on ``sys.stderr`` (as found now, so a redirected stream is honoured) with the settings above.

    Args:
        iterable (`Iterable`, *optional*): What to iterate over (or ``None`` and call ``update``).
        total (`int`, *optional*): Number of units (default: ``len(iterable)``).
        desc (`str`, *optional*): The bar's label.
        unit (`str`, *optional*, defaults to `"it"`): Name of a unit.
        disable (`bool`, *optional*, defaults to `False`): No bar at all.
        tqdm_kwargs: Other tqdm options (they win over the defaults here).
    """
    stream = sys.stderr
    on_terminal = bool(getattr(stream, "isatty", lambda: False)())
    if not on_terminal:
        tqdm_kwargs.setdefault("mininterval", NON_TTY_MININTERVAL)
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, file=stream, **tqdm_kwargs)


__all__ = ["NON_TTY_MININTERVAL", "progress_bar"]
