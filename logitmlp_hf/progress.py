"""Progress bars of the package's long-running work (evaluation, analysis, fitting): tqdm on stderr, with an ETA.

Every function that shows one takes ``progress: bool`` (``False`` turns it off); ``TQDM_DISABLE=1`` in the
environment turns off all of them (tqdm's own switch). On a terminal the bar redraws as usual. Elsewhere (a log
file, CI, a pipe) tqdm would append a new state every 0.1 s; here it writes one at most every
:data:`NON_TTY_MININTERVAL` seconds (and at the end), so a log stays readable and still shows the rate and ETA. It also
writes one at least that often: a unit of work (a batch of problems) can take longer than the interval, and tqdm only
writes when a unit ends, so a heartbeat thread redraws a bar that has been quiet for an interval (elapsed time moving;
on a terminal, every second).
"""

from __future__ import annotations

import sys
import threading
import weakref
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm


# Seconds between two states of a bar written to something other than a terminal.
NON_TTY_MININTERVAL = 15.0
# On a terminal a bar quiet for this long is redrawn (its elapsed time would otherwise freeze).
TERMINAL_HEARTBEAT = 1.0


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
    mininterval = tqdm_kwargs.get("mininterval", 0.1)
    heartbeat = max(mininterval, TERMINAL_HEARTBEAT) if on_terminal else mininterval
    return _Bar(
        iterable, total=total, desc=desc, unit=unit, disable=disable, file=stream, heartbeat=heartbeat, **tqdm_kwargs
    )


class _Bar(tqdm):
    """tqdm, plus a redraw whenever the bar has been quiet for ``heartbeat`` seconds (elapsed time and ETA keep
    moving while one long unit runs), from a daemon thread that stops when the bar closes or is garbage-collected
    (it holds only a weak reference, so a bar abandoned by an exception does not redraw forever)."""

    def __init__(self, *args: Any, heartbeat: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._closed = threading.Event()
        if not self.disable:
            threading.Thread(
                target=_heartbeat,
                args=(weakref.ref(self), self._closed, heartbeat),
                name="logitmlp-progress",
                daemon=True,
            ).start()

    def close(self) -> None:
        if hasattr(self, "_closed"):
            self._closed.set()
        super().close()


def _heartbeat(bar_ref: weakref.ref, closed: threading.Event, interval: float) -> None:
    while not closed.wait(interval / 2):
        bar = bar_ref()
        if bar is None:
            return
        if bar._time() - bar.last_print_t >= interval:
            with bar._lock:  # tqdm's own lock: no redraw interleaves with an update's
                if closed.is_set() or bar.disable:
                    return
                bar.refresh(nolock=True)
                bar.last_print_t = bar._time()
        del bar  # no strong reference while waiting


__all__ = ["NON_TTY_MININTERVAL", "TERMINAL_HEARTBEAT", "progress_bar"]
