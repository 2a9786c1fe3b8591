"""A store on disk: its real path (through symlinks), its writer lock, and the one-line
errors of a failed write (what, where, what was kept, what to do)."""

from __future__ import annotations

import errno
import fcntl
import os
import re
import shutil
from pathlib import Path

from mer_features.errors import StoreError, StoreLockedError, first_line

WRITE_ERRORS = (OSError, RuntimeError)


def _errno(e: Exception) -> int | None:
    if getattr(e, "errno", None) is not None:
        return e.errno
    found = re.search(r"errno = (\d+)", str(e))  # HDF5 puts the C errno in its message
    return int(found.group(1)) if found else None


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def write_error(e: Exception, folder: Path, doing: str, kept: str) -> StoreError:
    """One line for a failed write (an OSError, or the RuntimeError h5py raises when HDF5
    cannot flush): what, where, what was kept, what to do."""
    code = _errno(e)
    if code in (errno.ENOSPC, errno.EDQUOT):
        try:
            free = f"{_size(shutil.disk_usage(folder).free)} free"
        except OSError:
            free = "free space unknown"
        return StoreError(f"No space left on the disk holding '{folder}' ({free}) while {doing}. "
                          f"{kept} Free space on that disk, or give an `out` on another disk, "
                          "and re-run: the run resumes from what was kept.")
    if code in (errno.EROFS, errno.EACCES, errno.EPERM):
        return StoreError(f"Cannot write in '{folder}' ({os.strerror(code)}) while {doing}. {kept} "
                          "Give an `out` in a writable folder.")
    reason = os.strerror(code) if code else first_line(e)
    return StoreError(f"Writing in '{folder}' failed while {doing} ({reason}). {kept} Check the "
                      "disk, then re-run: the run resumes from what was kept.")


# --------------------------------------------------------------------------------------------
# Paths and the lock


def store_path(path: str | Path, parameter: str = "out") -> Path:
    """The real path of a store: through symlinks (so a symlinked store is written through,
    never replaced), refusing a directory; errors name it as the parameter ``parameter``."""
    given = Path(path).expanduser()
    real = Path(os.path.realpath(given))
    if real.is_dir():
        raise StoreError(f"`{parameter}` '{given}' is a directory; a store is one file: give a file "
                         f"path such as '{given / 'features.h5'}'.")
    for folder in real.parents:
        if folder.exists():
            if not folder.is_dir():
                raise StoreError(f"`{parameter}` '{given}' lies under '{folder}', which is a file, not a "
                                 f"folder; give a `{parameter}` in a folder.")
            break
    return real


def listing(names: list[str], limit: int = 5) -> str:
    return ", ".join(f"'{n}'" for n in names[:limit]) + (", ..." if len(names) > limit else "")


def acquire_lock(path: Path) -> int:
    """An exclusive flock on STORE.lock; the kernel drops it when the process dies."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise write_error(e, path.parent, f"creating the lock file '{lock_path}'",
                           "Nothing was written.") from e
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise StoreLockedError(
            f"Store '{path}' is being written by another process (pid {holder}; lock "
            f"'{lock_path}'). Wait for it to finish, or write to another `out`."
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:
        pass  # the pid is only shown to a second writer; the lock itself holds
    return fd
