"""One line of progress on stderr for long commands (``verify``, ``export``, ``import``).

Drawn only when stderr is a terminal, so scripts, pipes and ``--json`` see
exactly what they saw before. A few lines of our own rather than a library:
the display is one ``\\r`` line with three numbers, and a dependency (even an
optional extra) would give the CLI two code paths to test for that.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO

__all__ = ("Progress",)

#: Seconds between redraws: ~10 a second reads as live and costs nothing.
INTERVAL = 0.1
#: Seconds before the first draw: a command that ends sooner shows nothing.
DELAY = 0.5

_CLEAR = "\r\x1b[K"


def _bytes(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    return f"{count:.1f} TB"


def _records(count: float) -> str:
    return f"{count:,.0f}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """``label: done of total (pct), rate, time left``, redrawn in place, cleared at the end.

    :param total: the amount of work, in ``unit``; ``0`` if unknown (no percentage
        or time left, only what is done and the rate).
    :param unit: ``"bytes"`` or ``"records"``.
    :param stream: where to draw (default stderr); nothing is drawn unless it is a terminal.
    :param show: ``False`` draws nothing even then (stdout on the same terminal).
    """

    def __init__(
        self,
        label: str,
        total: int = 0,
        unit: str = "records",
        stream: TextIO | None = None,
        *,
        show: bool = True,
    ) -> None:
        self._stream = sys.stderr if stream is None else stream
        self.enabled = show and self._stream.isatty()
        self.label = label
        self.total = total
        self.done = 0
        self._format = _bytes if unit == "bytes" else _records
        self._unit = "" if unit == "bytes" else " records"
        self._start = time.monotonic()
        self._next = self._start + DELAY
        self._drawn = False

    def restart(self, label: str, total: int) -> None:
        """A new phase: new label and total, counted from zero again."""
        self.label, self.total, self.done = label, total, 0
        self._start = time.monotonic()

    def advance(self, count: int = 1) -> None:
        """Count ``count`` more units done; redraw if the last draw is old enough."""
        self.done += count
        if self.enabled:
            now = time.monotonic()
            if now >= self._next:
                self._next = now + INTERVAL
                self._draw(now)

    def line(self, now: float) -> str:
        """The text of the progress line at ``now`` (``time.monotonic``)."""
        elapsed = max(now - self._start, 1e-9)
        rate = self.done / elapsed
        text = f"{self.label}: {self._format(self.done)}"
        if self.total:
            text += f" of {self._format(self.total)}{self._unit} ({self.done / self.total:.0%})"
        else:
            text += self._unit
        text += f", {self._format(rate)}{self._unit}/s"
        if self.total and rate > 0:
            text += f", {_duration(max(self.total - self.done, 0) / rate)} left"
        return text

    def _draw(self, now: float) -> None:
        self._stream.write(_CLEAR + self.line(now))
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """Erase the line, so what the command prints next starts clean."""
        if self._drawn:
            self._stream.write(_CLEAR)
            self._stream.flush()
            self._drawn = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
