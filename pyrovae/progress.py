"""Progress of long loops: a rate-limited line with the stage, done/total and the time left.

A :class:`Progress` counts units of work (training steps, data chunks, AIS
temperatures, SBC replications, NUTS iterations) and reports

    label: done/total (pct%)  elapsed E, left L

at most once every ``interval`` seconds, and always once at the end (when ``done``
reaches ``total``, or at :meth:`Progress.close`).  The time left is the linear
extrapolation of the rate so far,

    L = E · (total − done) / done,

exact for loops whose units all take the same time.  On a terminal the line is
rewritten in place (``\\r``); on any other stream (a log file, a notebook cell, CI)
it is silent unless ``force=True``, and then each report is one full line; a
callable sink receives each line as a string.  Long functions take an explicit
``progress: Progress | None = None`` argument (``None``: silent) and call it with
the units they finished; :func:`expect` tells it the total when the caller did not.

This module imports nothing heavy (no torch, numpy or Pyro), so the command line
can build one before choosing what to import.

References:
    da Costa-Luis et al., *tqdm: a fast, extensible progress bar for Python* (the
    ``mininterval`` rule: at most one report per interval, the last one always).
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from pyrovae.errors import PyrovaeError

__all__ = ["Progress", "expect", "format_seconds", "from_flag", "tick"]

#: Where the lines go: a text stream, or a callable receiving each line.
Sink = TextIO | Callable[[str], Any]


def format_seconds(seconds: float) -> str:
    """``seconds`` as ``"42s"``, ``"3:07"`` (minutes) or ``"1:02:03"`` (hours); ``"?"``
    when unknown (NaN or infinite)."""
    if not math.isfinite(seconds):
        return "?"
    s = max(0, round(seconds))
    if s < 60:
        return f"{s}s"
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def _monotonic() -> float:
    """The default clock (a module function, so that tests can replace it)."""
    return time.monotonic()


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


class Progress:
    """A rate-limited progress reporter (see the module text).

    Args:
        total: the units of work expected (``None``: unknown until :meth:`expect`;
            then no percentage and no time left are shown).
        label: the stage named at the start of each line.
        sink: a text stream (default ``sys.stderr``) or a callable taking each line.
        interval: least seconds between two lines (the final line is always shown);
            ``None``: 0.5 s on a terminal or a callable sink, 10 s on another stream
            (a log file gets a line every 10 s, not a flood).
        enabled: ``False``: never report anything.
        force: report on a stream that is not a terminal too (one line per report).
        final: report the final line (``False`` where the caller prints its own
            summary at the end, e.g. ``fit``'s per-epoch line).
        clock: a monotonic clock in seconds (default ``time.monotonic``; tests pass a
            fake one).

    A :class:`Progress` is a callable ``progress(n)`` (advance by ``n`` units), so it
    can be given wherever a plain ``Callable[[int], None]`` is expected.

    References:
        da Costa-Luis et al., *tqdm: a fast, extensible progress bar for Python*.
    """

    def __init__(self, total: int | None = None, label: str = "", *,
                 sink: Sink | None = None, interval: float | None = None,
                 enabled: bool = True, force: bool = False, final: bool = True,
                 clock: Callable[[], float] | None = None) -> None:
        if total is not None and (isinstance(total, bool) or int(total) != total or total < 0):
            raise PyrovaeError(f"progress total: expected a non-negative integer, got {total!r}")
        if interval is not None and not interval >= 0:
            raise PyrovaeError(f"progress interval: expected seconds >= 0, got {interval!r}")
        self.total = None if total is None else int(total)
        self.label = label
        self.sink: Sink = sys.stderr if sink is None else sink
        self.final = bool(final)
        self.clock = clock if clock is not None else _monotonic
        self.done = 0
        self.lines = 0  #: lines reported so far
        self.start = self.clock()
        self._last = -math.inf
        self._finished = False
        self._tty = not callable(self.sink) and _is_tty(self.sink)
        self._width = 0
        self.enabled = bool(enabled) and (callable(self.sink) or self._tty or bool(force))
        if interval is None:
            interval = 0.5 if callable(self.sink) or self._tty else 10.0
        self.interval = float(interval)

    # ------------------------------------------------------------------ numbers
    @property
    def elapsed(self) -> float:
        """Seconds since the reporter was made (or last :meth:`reset`)."""
        return self.clock() - self.start

    @property
    def eta(self) -> float:
        """Seconds left, elapsed · (total − done) / done; NaN while unknown (no total,
        nothing done yet)."""
        return self._eta(self.elapsed)

    def _eta(self, elapsed: float) -> float:
        if self.total is None or self.done <= 0:
            return math.nan
        return elapsed * max(self.total - self.done, 0) / self.done

    def line(self, now: float | None = None) -> str:
        """The report at clock reading ``now`` (default: the clock now):
        ``label: done/total (pct%)  elapsed E, left L``."""
        elapsed = (self.clock() if now is None else now) - self.start
        head = f"{self.label}: " if self.label else ""
        if self.total:
            pct = 100.0 * min(self.done, self.total) / self.total
            count = f"{self.done}/{self.total} ({pct:.0f}%)"
        else:
            count = f"{self.done}"
        text = f"{head}{count}  elapsed {format_seconds(elapsed)}"
        if self.total and self.done < self.total:
            text += f", left {format_seconds(self._eta(elapsed))}"
        return text

    # ------------------------------------------------------------------ updates
    def expect(self, total: int) -> None:
        """Set the total if none was given (a caller's own total wins)."""
        if self.total is None:
            self.total = int(total)

    def reset(self, total: int | None = None, label: str | None = None) -> None:
        """Start counting again (a new stage) with a new total and label."""
        self.total = None if total is None else int(total)
        if label is not None:
            self.label = label
        self.done, self.start = 0, self.clock()
        self._last, self._finished = -math.inf, False

    def update(self, n: int = 1) -> None:
        """Advance by ``n`` units; report if ``interval`` seconds passed since the last
        report (none is due at the start), or if the total is reached."""
        self.done += int(n)
        if not self.enabled or self._finished:
            return
        now = self.clock()  # one reading per update
        if self.total is not None and self.done >= self.total:
            self._emit(now, final=True)
        elif now - max(self._last, self.start) >= self.interval:
            self._emit(now, final=False)

    __call__ = update

    def close(self) -> None:
        """Report the final line (if not yet reported) and end the terminal line."""
        if self.enabled and not self._finished:
            self._emit(self.clock(), final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _emit(self, now: float, final: bool) -> None:
        self._last = now
        self._finished = final
        if final and not self.final:
            if self._tty and self._width:  # clear the live line for the caller's own
                self.sink.write("\r" + " " * self._width + "\r")
                self.sink.flush()
            return
        text = self.line(now)
        self.lines += 1
        if callable(self.sink):
            self.sink(text)
            return
        if self._tty:
            pad = " " * max(0, self._width - len(text))
            self._width = len(text)
            self.sink.write("\r" + text + pad + ("\n" if final else ""))
        else:
            self.sink.write(text + "\n")
        self.sink.flush()


def expect(progress: Callable[[int], Any] | None, total: int) -> None:
    """Tell ``progress`` its total when it is a :class:`Progress` without one (a plain
    callable or ``None``: nothing to do)."""
    if isinstance(progress, Progress):
        progress.expect(total)


def tick(progress: Callable[[int], Any] | None, n: int = 1) -> None:
    """Advance ``progress`` by ``n`` units (``None``: silent)."""
    if progress is not None:
        progress(n)


def from_flag(flag: bool | None, label: str = "", total: int | None = None, *,
              sink: Sink | None = None) -> Progress | None:
    """The reporter a command-line switch asks for: ``False`` (``--no-progress``):
    ``None``, silent; ``None`` (neither switch): a :class:`Progress` shown only when
    the stream (default ``sys.stderr``) is a terminal; ``True`` (``--progress``): one
    shown on any stream, a line every 10 s off a terminal."""
    if flag is False:
        return None
    return Progress(total, label, sink=sink, force=bool(flag))
