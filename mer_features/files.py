"""Writing files that survive a crash: the one atomic-write helper of the toolkit.

Every file mer_features writes (stores, their parts, manifests, demo clips and their stamp,
corrupted copies, sweep files) is written under a temporary name in its own folder, synced to
disk, renamed over the final name, and the folder synced, so a reader (or a run killed at any
moment) sees the old file or the new one, never half of one. A failure removes the temporary
file and leaves the final name untouched. mer_heads may use the same helper.

Temporary files have one naming scheme, ``.<final name>.tmp-<pid>`` in the final file's
folder, so leftovers of killed runs can be recognised (:func:`parse_temporary`) and removed.

Example::

    with atomic_path("out/manifest.csv") as tmp:      # a Path to write to
        tmp.write_text(text, encoding="utf-8")
    with atomic_open("out/report.txt") as f:          # an open file
        f.write(text)
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO

__all__ = ["atomic_open", "atomic_path", "fsync_dir", "parse_temporary", "temporary_path",
           "write_bytes", "write_text"]

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def temporary_path(path: str | Path) -> Path:
    """Where :func:`atomic_path` writes ``path`` before renaming it: ``.<name>.tmp-<pid>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def parse_temporary(name: str) -> tuple[str, int] | None:
    """(final name, writer's pid) of a temporary file's name (``.x.h5.tmp-123`` -> ("x.h5",
    123)), None for any other name."""
    found = _TEMPORARY.match(name)
    return (found.group("name"), int(found.group("pid"))) if found else None


def fsync_dir(folder: str | Path) -> None:
    """Sync a folder's entries to disk (a rename is durable once its folder is synced); a
    folder that cannot be opened (some file systems) is left as it is."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in ``path``'s folder that replaces ``path`` when the block completes.

    The block writes the file (with any library: h5py, ffmpeg, soundfile, ...). On success the
    file is synced, renamed over ``path`` and the folder synced; on any exception (including
    KeyboardInterrupt) the temporary file is removed, ``path`` is untouched and the exception
    propagates. OSErrors are not translated: callers say what they were writing.
    """
    path = Path(path)
    tmp = temporary_path(path)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # nothing more can be done; the name marks it as a leftover
    fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """An open file (``"w"``: UTF-8 text, newlines as written; ``"wb"``: bytes) that replaces
    ``path`` when the block completes; see :func:`atomic_path`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb'; got {mode!r}")
    kwargs = {} if mode == "wb" else {"encoding": "utf-8", "newline": ""}
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as f:
        yield f


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns ``path``."""
    with atomic_open(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically; returns ``path``."""
    with atomic_open(path) as f:
        f.write(text)
    return Path(path)
