"""What a user sees while a command runs: output that survives any locale, progress that suits
a terminal or a log file, and third-party chatter kept out of both.

* :func:`utf8_mode`, :func:`safe_streams`: under a non-UTF-8 locale (``LC_ALL=C
  PYTHONUTF8=0``) a command restarts itself in Python's UTF-8 mode, so file names and text are
  UTF-8 whatever the locale; where that is not possible (``main()`` called from Python), the
  streams are switched to an error handler that writes undecodable file-name bytes back as they
  were and escapes every other character it cannot encode (``\\xe7``) instead of raising
  UnicodeEncodeError.
* :func:`progress`: a tqdm bar on a terminal; when stderr is a file or a pipe (a SLURM log), one
  line every :data:`LOG_EVERY_SECONDS` (and at the end) with done/total, rate and ETA, since a
  bar's carriage returns only show up in a log as one line at the end.
* :func:`quiet_third_party`: transformers' "Loading weights" bars off; :func:`quiet_native_stderr`
  keeps what ffmpeg and decord print from C (``moov atom not found``, ``partial file``) out of
  the terminal, since the clip's failure reason already says it in words.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

LOG_EVERY_SECONDS = 30.0
"""Seconds between two progress lines when stderr is not a terminal."""

_HANDLER = "mer_features.escape"


def _escape(error: UnicodeError) -> tuple[str | bytes, int]:
    """surrogateescape for undecodable bytes (file names as the OS gave them), backslashreplace
    for every other character the stream's encoding lacks."""
    if isinstance(error, UnicodeEncodeError):
        text = error.object[error.start:error.end]
        if all(0xDC80 <= ord(c) <= 0xDCFF for c in text):
            return bytes(ord(c) - 0xDC00 for c in text), error.end
        return codecs.backslashreplace_errors(error)
    raise error


codecs.register_error(_HANDLER, _escape)


def utf8_mode() -> None:
    """Restart this command in Python's UTF-8 mode when the locale is not UTF-8 (``LC_ALL=C
    PYTHONUTF8=0``): file names are then bytes read as ASCII, so a manifest's ``café.wav``
    could be neither opened nor remembered in the hash cache. Called only by a program's
    entry point (it replaces the process, keeping its pid, arguments and streams)."""
    if sys.flags.utf8_mode or sys.getfilesystemencoding().lower().replace("-", "") == "utf8":
        return
    if os.environ.get("PYTHONUTF8") == "1" or not getattr(sys, "orig_argv", None):
        return  # already asked for, or no command line to restart with
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    try:
        os.execve(sys.executable, sys.orig_argv, {**os.environ, "PYTHONUTF8": "1"})
    except OSError:
        pass  # go on as we are: safe_streams still keeps printing safe


def safe_streams() -> None:
    """Make stdout and stderr print any text under any locale (see the module's docstring)."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding in ("utf8", "utf_8"):
            continue
        with contextlib.suppress(AttributeError, ValueError, io.UnsupportedOperation):
            stream.reconfigure(errors=_HANDLER)  # type: ignore[union-attr]


def quiet_third_party() -> None:
    """Turn off the progress bars of transformers and huggingface_hub ("Loading weights"), now
    if they are imported, else when they are (their warnings still show)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    if "transformers" in sys.modules:
        with contextlib.suppress(Exception):
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
    if "huggingface_hub" in sys.modules:
        with contextlib.suppress(Exception):
            from huggingface_hub.utils import disable_progress_bars

            disable_progress_bars()


_native_lock = threading.Lock()


@contextlib.contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Send what C code writes to file descriptor 2 (ffmpeg's av_log, decord's LOG) to a
    temporary file for the duration of the block, and drop it: the caller turns the decoder's
    error into a clip's reason. Python's own sys.stderr is flushed first and left alone where
    it is not fd 2 (a test's capture). Threads share fd 2, so the blocks take turns."""
    try:
        fd = sys.__stderr__.fileno() if sys.__stderr__ is not None else 2
    except (AttributeError, ValueError, OSError, io.UnsupportedOperation):
        fd = 2
    with _native_lock:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        try:
            saved = os.dup(fd)
        except OSError:
            yield
            return
        try:
            with tempfile.TemporaryFile() as sink:
                os.dup2(sink.fileno(), fd)
                try:
                    _quiet_decord()
                    yield
                finally:
                    os.dup2(saved, fd)
        finally:
            os.close(saved)


_decord_quiet = False


def _quiet_decord() -> None:
    """decord's ffmpeg logs only errors that matter to nobody reading a terminal."""
    global _decord_quiet
    if _decord_quiet:
        return
    _decord_quiet = True
    with contextlib.suppress(Exception):
        import decord.logging

        decord.logging.set_level(decord.logging.QUIET)


# --------------------------------------------------------------------------------------------
# Progress


def progress(total: int, desc: str, enabled: bool | None = None, *,
             stream: TextIO | None = None) -> Any:
    """A progress display with tqdm's ``update(n)``, ``write(text)`` and ``close()``.

    ``enabled``: False shows nothing, True always shows it, None shows it unless stderr is
    neither a terminal nor a file (tqdm's rule). On a terminal it is a tqdm bar; elsewhere a
    :class:`LineProgress`.
    """
    stream = stream or sys.stderr
    if enabled is False:
        return LineProgress(total, desc, stream=stream, enabled=False)
    if is_tty(stream):
        from tqdm.auto import tqdm

        return tqdm(total=total, unit="clip", desc=desc, dynamic_ncols=True, smoothing=0.1,
                    file=stream)
    return LineProgress(total, desc, stream=stream)


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class LineProgress:
    """Progress as lines, for logs: ``audio/egemaps: 256/10000 clips (2.6%), 4.1 clips/s,
    ETA 39m 40s``, at most every ``every`` seconds, and a last line at the end."""

    def __init__(self, total: int, desc: str, *, stream: TextIO | None = None,
                 every: float | None = None, enabled: bool = True,
                 clock: Any = time.monotonic):
        self.total = total
        self.desc = desc
        self.stream = stream or sys.stderr
        self.every = LOG_EVERY_SECONDS if every is None else every
        self.enabled = enabled and total > 0
        self.clock = clock
        self.n = 0
        self.start = clock()
        self.last = self.start
        self.closed = False

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if self.enabled and now - self.last >= self.every and self.n < self.total:
            self.last = now
            self._print(now)

    def write(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.enabled and self.n:
            self._print(self.clock())

    def line(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.n / elapsed
        share = f" ({100 * self.n / self.total:.1f}%)" if self.total else ""
        left = self.total - self.n
        if left <= 0:
            tail = f"done in {format_duration(elapsed)}"
        elif rate > 0:
            tail = f"ETA {format_duration(left / rate)}"
        else:
            tail = "ETA unknown"
        return f"{self.desc}: {self.n}/{self.total} clips{share}, {rate:.2f} clips/s, {tail}"

    def _print(self, now: float) -> None:
        print(self.line(now), file=self.stream, flush=True)

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def format_duration(seconds: float) -> str:
    """``3725`` -> ``1h 02m``, ``125`` -> ``2m 05s``, ``9`` -> ``9s``."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"
