"""Opening a store's HDF5 metadata within a time bound.

A damaged HDF5 file can make the HDF5 library loop forever inside C code, where no signal
reaches Python: a zeroed block in a global heap collection (where variable-length strings such
as the store's attributes and ``/clips/*`` columns live) decodes as an object of size 0, and
HDF5 2.0's heap loader never advances past it. So before any reader touches a store,
:func:`check_metadata` walks everything a reader may touch in the metadata (the attributes,
every object's header, every chunk index and every variable-length string) in a child process
that reports its progress through a pipe. A child that stops making progress for
:data:`STALL_SECONDS`, dies, or meets an HDF5 error marks the store as damaged: one
:class:`~mer_features.errors.StoreError` line naming the file and what to do. The parent never
enters HDF5 for that file, so it stays responsive to SIGINT and SIGTERM.

Fixed-size numeric data is not read here: HDF5's fletcher32 checksums and ``/clips/checksum``
guard it when a reader reads it (:mod:`.checksums`). A file that passed is remembered by its
(path, device, inode, size, mtime, ctime) for the life of the process, so opening it again
costs nothing (and a damaged one is refused at once); any write to it makes it checked again.
Files this process wrote itself (parts, merged stores) are remembered the same way
(:func:`trust`), so a run does not check its own parts.

The child is forked when this process runs no other Python thread (fast: a few
milliseconds); otherwise it is a fresh interpreter, since a fork taken while another thread
holds h5py's lock would stall the child and look like a damaged file.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from mer_features.errors import StoreError, first_line

STALL_SECONDS = float(os.environ.get("MER_FEATURES_STORE_STALL_SECONDS", "5"))
"""A child that reports no progress for this long (seconds; the environment variable
MER_FEATURES_STORE_STALL_SECONDS changes it) is stopped and the store called damaged.
Progress comes at least every few thousand strings read, so a healthy store on a slow disk
keeps it far below this."""

_STRING_BLOCK = 4096  # variable-length strings read between two progress reports
_checked: set[tuple] = set()
_damaged: dict[tuple, str] = {}


def _identity(path: Path) -> tuple:
    st = os.stat(path)
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns)


def check_metadata(path: str | Path) -> None:
    """Raise a one-line StoreError when the HDF5 metadata of the store at ``path`` cannot be
    walked within the time bound (see the module's docstring); return quietly otherwise."""
    path = Path(path)
    try:
        key = _identity(path)
    except OSError:
        return  # the caller reports a missing or unreadable file in its own words
    if key in _checked:
        return
    if key in _damaged:
        verdict = _damaged[key]
    elif hasattr(os, "fork") and threading.active_count() == 1:
        verdict = _run_forked(path)
    else:
        verdict = _run_spawned(path)
    if verdict is not None:
        _damaged[key] = verdict  # a second reader of the same file is told at once
        raise StoreError(
            f"Store '{path}' is damaged: its HDF5 metadata {verdict}. Restore the file from a "
            "backup, or move it away (or pass `overwrite`) and re-run the same extraction to "
            f"extract it again ('mer-features verify {path}' gives the same verdict).")
    _checked.add(key)


def trust(path: str | Path) -> None:
    """Remember ``path`` as checked: a store file this process has just written whole (a part,
    a merged store), whose metadata HDF5 itself laid out. Any later write changes its
    identity, so it is checked again then."""
    try:
        _checked.add(_identity(Path(path)))
    except OSError:
        pass


def walk(path: str | Path, ping: Callable[[], None]) -> None:
    """Touch every piece of HDF5 metadata a reader may touch, calling ``ping()`` as it goes;
    raises whatever HDF5 raises on damaged metadata (this is what the child runs)."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except OSError as e:  # not HDF5, or cut short: the reader's own open says so in its words
        raise _OpenError(str(e)) from e
    with f:
        _attributes(f)
        ping()
        found: list[str] = []
        f.visit(found.append)
        ping()
        for name in found:
            obj = f[name]
            _attributes(obj)
            if isinstance(obj, h5py.Dataset):
                _dataset(obj, ping)
            ping()


class _OpenError(Exception):
    """HDF5 refused to open the file at all (no hang possible there)."""


def _attributes(obj: object) -> None:
    for key in obj.attrs:  # type: ignore[attr-defined]
        obj.attrs[key]  # type: ignore[attr-defined]  # a string value lives in a global heap


def _dataset(ds: object, ping: Callable[[], None]) -> None:
    import h5py

    ds.shape, ds.dtype, ds.chunks  # type: ignore[attr-defined]  # the object header
    if ds.chunks:  # type: ignore[attr-defined]
        ds.id.get_num_chunks()  # type: ignore[attr-defined]  # walks the chunk index
    dtype = ds.dtype  # type: ignore[attr-defined]
    if h5py.check_string_dtype(dtype) is not None and dtype.kind == "O":  # variable length
        n = ds.shape[0] if ds.shape else 0  # type: ignore[attr-defined]
        for lo in range(0, n, _STRING_BLOCK):
            ds[lo:lo + _STRING_BLOCK]  # type: ignore[index]  # vlen strings: global heaps
            ping()


# --------------------------------------------------------------------------------------------
# The child and the parent's watch over it


def _child(path: str, out: int) -> None:
    """Walk ``path``, writing one byte per step to ``out``; finish with ``ok`` or the error."""
    def ping() -> None:
        os.write(out, b".")

    try:
        walk(path, ping)
        message = b"\nok"
    except _OpenError:
        message = b"\nunopened"
    except BaseException as e:  # noqa: BLE001 - every failure is a verdict on the file
        text = f"{type(e).__name__}: {first_line(e)}" if first_line(e) else type(e).__name__
        message = b"\nerror " + text.encode("utf-8", "backslashreplace")
    os.write(out, message)


def _run_forked(path: Path) -> str | None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        code = 0
        try:
            os.close(read_end)
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)  # a killed job takes its children along
            _child(str(path), write_end)
        except BaseException:  # noqa: BLE001
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    try:
        output = _watch(read_end)
    finally:
        os.close(read_end)
        status = _reap(pid, output is None)
    return _verdict(output, status)


def _run_spawned(path: Path) -> str | None:
    code = ("import os, sys; from mer_features.store.guard import _child; "
            "_child(sys.argv[1], sys.stdout.fileno())")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, env=env)
    try:
        # a fresh interpreter imports h5py first: allow for that before watching for stalls
        output = _watch(proc.stdout.fileno(), first_wait=STALL_SECONDS + 30.0)
    finally:
        if proc.poll() is None and output is None:
            proc.kill()
        proc.stdout.close()
        returncode = proc.wait()
    status = -returncode if returncode < 0 else returncode << 8
    return _verdict(output, status)


def _watch(fd: int, first_wait: float | None = None) -> bytes | None:
    """Everything the child writes until it closes the pipe; None when it stalls."""
    chunks: list[bytes] = []
    wait = STALL_SECONDS if first_wait is None else first_wait
    while True:
        ready, _, _ = select.select([fd], [], [], wait)
        if not ready:
            return None
        data = os.read(fd, 65536)
        if not data:
            return b"".join(chunks)
        chunks.append(data)
        wait = STALL_SECONDS


def _reap(pid: int, kill: bool) -> int:
    if kill:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    while True:
        try:
            return os.waitpid(pid, 0)[1]
        except ChildProcessError:
            return 0
        except InterruptedError:
            continue


def _verdict(output: bytes | None, status: int) -> str | None:
    """None when the child walked everything; else what went wrong, in words."""
    if output is None:
        return (f"cannot be read: the HDF5 library stopped making progress reading it (no "
                f"progress in {STALL_SECONDS:g} s; a damaged file can make it loop forever)")
    last = output.rsplit(b"\n", 1)[-1].decode("utf-8", "replace") if b"\n" in output else ""
    if last in ("ok", "unopened"):  # unopened: the reader's open fails with its own message
        return None
    if last.startswith("error "):
        return f"cannot be read ({last[6:]})"
    if os.WIFSIGNALED(status):
        name = signal.Signals(os.WTERMSIG(status)).name
        return f"crashes the HDF5 library when read ({name})"
    return "cannot be read (the reading process ended without a verdict)"
