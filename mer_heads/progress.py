"""Progress of long mer-heads commands on stderr: fits over folds and seeds, ablations,
robustness sweeps, leaderboards, semi-supervised rounds and sweeps.

A command's work is a number of *fits* (cross-validated heads) known before it starts; a fit
reports its own progress in *steps* (the epochs of a neural stack, the fold models of a
scikit-learn head). :func:`tracking` opens a :class:`Progress` for a command, :func:`unit`
wraps each fit, and :func:`step` is called by the training loops; outside :func:`tracking`
both do nothing, so the estimator and the trainers know nothing of where their output goes.

What shows (the rule of :mod:`mer_features.console`'s progress):

* stderr a terminal: one line rewritten in place (``\\r``), at most every half second, cleared
  when the command ends;
* stderr a file or a pipe (a SLURM log, ``2> log``): one line at most every
  :data:`LOG_EVERY_SECONDS` seconds, at the end of a fit or between epochs, so a log shows
  where a long run is and when it will end; a last line when the command ends if any was
  written::

    mer-heads leaderboard: 5/18 fits (fit 6: text e5:demo-text, seed 1; epoch 60/100),
    2m 10s elapsed, ETA 5m 02s

* ``progress=False`` (``--no-progress``): nothing.

:func:`route_warnings` (the ``mer-heads`` program's) prints Python warnings of the libraries
underneath (scikit-learn, torch, joblib) as one ``warning: ...`` line each, once per message,
instead of Python's two lines with a file name and a source line, and without breaking the
progress line.

The ETA assumes the remaining fits take as long as the finished ones did on average (steps
of the fit in progress count as fractions of it; the time before the first fit, loading the
stores, does not count).
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

from mer_features.console import LOG_EVERY_SECONDS, format_duration, is_tty

TTY_EVERY_SECONDS = 0.5
"""Seconds between two rewrites of the terminal line."""

_CURRENT: contextvars.ContextVar[Progress | None] = contextvars.ContextVar(
    "mer_heads_progress", default=None)


class Progress:
    """The progress of one command: ``total`` fits, each with steps.

    ``enabled``: False shows nothing; True or None shows it (a line rewritten in place on a
    terminal, lines every ``every`` seconds elsewhere). ``clock`` is injectable for tests.
    """

    def __init__(self, desc: str, total: int, *, enabled: bool | None = None,
                 stream: TextIO | None = None, every: float | None = None,
                 clock: Any = time.monotonic):
        self.desc = desc
        self.total = max(0, int(total))
        self.stream = stream or sys.stderr
        self.enabled = enabled is not False
        self.tty = self.enabled and is_tty(self.stream)
        self.every = (TTY_EVERY_SECONDS if self.tty else LOG_EVERY_SECONDS) if every is None \
            else every
        self.clock = clock
        self.start = clock()
        self.work_start: float | None = None  # the first fit's start: loading is not a fit
        self.last = self.start
        self.done = 0
        self.label = ""
        self.fraction = 0.0
        self.detail = ""
        self.printed = 0
        self._width = 0

    # ------------------------------------------------------------------------------------
    def begin(self, label: str) -> None:
        """A fit starts (``label`` says which: a store, a modality set, a round)."""
        self.label, self.fraction, self.detail = label, 0.0, ""
        if self.work_start is None:
            self.work_start = self.clock()

    def step(self, done: int, total: int, what: str) -> None:
        """``done`` of ``total`` steps (``what``: epoch, fold model) of the current fit."""
        if total > 0:
            self.fraction = min(1.0, done / total)
            self.detail = f"{what} {done}/{total}"
        self._maybe_show()

    def end(self) -> None:
        """The current fit is finished."""
        self.done = min(self.total, self.done + 1) if self.total else self.done + 1
        self.label, self.fraction, self.detail = "", 0.0, ""
        self._maybe_show()

    def plan(self, total: int) -> None:
        """The command now knows how many fits it will run."""
        self.total = max(0, int(total))

    def skip(self, n: int = 1) -> None:
        """``n`` planned fits will not run (their result is reused): the total shrinks."""
        self.total = max(self.done, self.total - n)

    def write(self, text: str) -> None:
        """A line of text (a warning) on the stream, without breaking the terminal's line."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
            self.last = self.start  # draw the progress line again at the next event
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if not self.enabled:
            return
        if self.tty:
            if self._width:
                self.stream.write("\r" + " " * self._width + "\r")
                self.stream.flush()
        elif self.printed:
            self._print(self.clock())

    # ------------------------------------------------------------------------------------
    def line(self, now: float) -> str:
        """What the display says at time ``now``."""
        elapsed = max(0.0, now - self.start)
        total = max(self.total, 1)
        share = (self.done + self.fraction) / total
        text = f"{self.desc}: {self.done}/{self.total} fit{'s' if self.total != 1 else ''}"
        if self.label or self.detail:
            current = "; ".join(p for p in (self.label, self.detail) if p)
            text += f" (fit {self.done + 1}: {current})"
        text += f", {format_duration(elapsed)} elapsed"
        if self.done >= self.total and not self.label:
            return text + ", done"
        working = now - (self.start if self.work_start is None else self.work_start)
        if share > 0 and working > 0:
            return text + f", ETA {format_duration(working * (1 - share) / share)}"
        return text + ", ETA unknown"

    def _maybe_show(self) -> None:
        if not self.enabled:
            return
        now = self.clock()
        if now - self.last < self.every:
            return
        self.last = now
        self._print(now)

    def _print(self, now: float) -> None:
        text = self.line(now)
        if self.tty:
            pad = max(0, self._width - len(text))
            self.stream.write("\r" + text + " " * pad)
            self._width = len(text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.printed += 1


@contextlib.contextmanager
def tracking(desc: str, total: int, enabled: bool | None = None, *,
             stream: TextIO | None = None, every: float | None = None,
             clock: Any = time.monotonic) -> Iterator[Progress]:
    """``with tracking("mer-heads fit", fits, progress):`` the :class:`Progress` that
    :func:`unit` and :func:`step` report to inside the block. A tracking opened inside
    another one (a library function called by another) adds nothing: the outer one counts."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    shown = Progress(desc, total, enabled=enabled, stream=stream, every=every, clock=clock)
    token = _CURRENT.set(shown)
    try:
        yield shown
    finally:
        _CURRENT.reset(token)
        shown.close()


def current() -> Progress | None:
    """The progress of the command running, or None."""
    return _CURRENT.get()


@contextlib.contextmanager
def unit(label: str = "") -> Iterator[None]:
    """One fit of the command: ``with unit("audio+text"):``. Does nothing outside
    :func:`tracking`; a fit inside another fit's unit (a helper fit) is not counted again."""
    shown = _CURRENT.get()
    if shown is None or shown.label:
        yield
        return
    shown.begin(label or "fit")
    try:
        yield
    finally:
        shown.end()


def step(done: int, total: int, what: str = "epoch") -> None:
    """``done`` of ``total`` steps of the fit in progress (a no-op outside :func:`tracking`)."""
    shown = _CURRENT.get()
    if shown is not None:
        shown.step(done, total, what)


def plan(total: int) -> None:
    """The command in progress will run ``total`` fits (a no-op outside :func:`tracking`)."""
    shown = _CURRENT.get()
    if shown is not None:
        shown.plan(total)


def skip(n: int = 1) -> None:
    """``n`` planned fits are left out (a no-op outside :func:`tracking`)."""
    shown = _CURRENT.get()
    if shown is not None:
        shown.skip(n)


def _show_warning(message: Any, category: type, filename: str, lineno: int, file: Any = None,
                  line: str | None = None) -> None:
    text = " ".join(str(message).split())
    if text in _SHOWN:
        return
    _SHOWN.add(text)
    origin = filename.replace("\\", "/")
    package = next((p for p in ("sklearn", "torch", "joblib", "numpy", "scipy", "matplotlib",
                                "h5py", "mer_features", "mer_heads") if f"/{p}/" in origin),
                   origin.rsplit("/", 1)[-1])
    line_text = f"warning: {text} ({category.__name__} from {package})"
    shown = _CURRENT.get()
    if shown is not None and file is None:
        shown.write(line_text)
    else:
        print(line_text, file=file or sys.stderr, flush=True)


_SHOWN: set[str] = set()


def route_warnings() -> None:
    """Show Python warnings as one line each, once per message (see the module docstring)."""
    import warnings

    _SHOWN.clear()
    warnings.showwarning = _show_warning


__all__ = ["LOG_EVERY_SECONDS", "Progress", "current", "plan", "route_warnings", "skip", "step",
           "tracking", "unit"]
