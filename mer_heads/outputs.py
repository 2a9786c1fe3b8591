"""How mer_heads writes any file, and checks an output before the work that fills it.

Every file goes through :func:`atomic_write`, built on the toolkit's one atomic-write helper
(:func:`mer_features.files.atomic_open`: a temporary name in the file's folder, synced and
renamed into place when complete, the temporary file removed on any failure). Here an
``OSError`` (read-only folder, disk full, a folder in the way) becomes one
:class:`~mer_heads.errors.OutputError` naming the file. Output folders and files are checked by
:func:`output_folder` and :func:`check_out_file` before any work starts; JSON is written
deterministically (sorted keys, floats rounded to 6 decimals), so the same run writes the same
bytes.

Nothing is lost (issue 22):

* An output folder is locked while a command fills it (:func:`lock_folder`: ``flock`` on
  ``.<name>.lock`` beside it; the kernel drops it when the process dies): a second command
  with the same ``--out`` stops at once, naming the first one's pid.
* A result is built in a hidden sibling folder (``.<name>.new-<pid>``): inside
  :func:`output_folder` every write aimed at ``--out`` lands there. Only when the command has
  written everything is the new folder swapped with ``--out`` in one atomic rename
  (``renameat2(RENAME_EXCHANGE)``; two renames where the kernel or file system lacks it, with
  :func:`recover` finishing or undoing them at the next command). Files in ``--out`` that are
  not the command's (another command's result, a user's notes) are hard-linked into the new
  folder first, so a kill at any moment leaves the old result or the new one, never a mix and
  never neither. A folder that holds other files and no earlier result (a data folder given as
  ``--out``) is written into in place, file by file, and none of its files is moved.
* A file ``--out`` (``predict``) replaces only what the command itself writes: a prediction
  file made by mer-heads (:func:`is_prediction_file`), never a store, a manifest or a label file.
"""

from __future__ import annotations

import contextvars
import csv
import errno
import io
import json
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, IO, Any

from mer_features.files import atomic_open
from mer_heads.errors import OutputError

if TYPE_CHECKING:
    import numpy as np


def os_reason(e: OSError) -> str:
    return e.strerror or str(e) or type(e).__name__


@contextmanager
def atomic_write(path: str | Path, mode: str = "w") -> Iterator[IO]:
    """An open file (text: UTF-8, newlines as written; or ``mode="wb"``) that replaces ``path``
    only when the block completes. On any failure the temporary file is removed and ``path``
    is untouched; an ``OSError`` becomes an :class:`OutputError` naming ``path``. Inside
    :func:`output_folder`, a path in the output folder is written to its staging folder."""
    path = Path(path)
    target = _staged(path)
    try:
        if target != path:
            target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_open(target, mode) as f:
            yield f
            if target.is_dir():
                raise IsADirectoryError(21, "it is a folder", str(path))
    except OSError as e:
        raise OutputError(f"Cannot write '{path}': {os_reason(e)}. Check that the folder exists, "
                          "is writable and has free space, and that no folder has the "
                          "file's name.") from e


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path) as f:
        f.write(text)
    return Path(path)


def dump_json(obj: Any, path: Path) -> None:
    """Deterministic JSON (sorted keys, floats rounded to 6 decimals), written atomically."""
    write_text(path, json.dumps(_rounded(obj), indent=2, sort_keys=True, allow_nan=False) + "\n")


def write_rows(path: str | Path, header: Sequence[str], rows: Any) -> Path:
    """A CSV of ``header`` and the (already formatted) ``rows``, written atomically."""
    with atomic_write(path) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return Path(path)


def write_csv(path: Path, columns: Sequence[str], rows: list[dict[str, Any]]) -> None:
    """Rows (dicts keyed by column) as CSV: floats with 6 decimals, None as an empty cell."""
    write_rows(path, columns, (
        ["" if row.get(c) is None else (f"{row[c]:.6f}" if isinstance(row[c], float) else row[c])
         for c in columns] for row in rows))


def save_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    import numpy as np

    with atomic_write(path, "wb") as f:
        np.savez(f, **arrays)


def save_figure(fig: Any, path: str | Path, **kwargs: Any) -> Path:
    """A matplotlib figure as PNG (no software tag, so the bytes depend only on the data);
    ``kwargs`` go to ``savefig``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None}, **kwargs)
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())
    return Path(path)


def _probe(folder: Path) -> None:
    """Create ``folder`` (and its parents) and write and remove a file in it: OSError if not."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()


# --------------------------------------------------------------------------------------------
# Locks


def _lock_path(out: Path) -> Path:
    """``.<name>.lock`` beside ``out`` (in ``out`` when its parent cannot be written)."""
    beside = out.parent / f".{out.name}.lock"
    return beside if os.access(out.parent, os.W_OK) else out / ".mer-heads.lock"


@contextmanager
def lock_folder(out: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on the output folder ``out`` during the block: a second command
    given the same folder gets an :class:`OutputError` at once, naming the pid (and command
    line) of the first. An ``flock``: the kernel releases it when the process ends, even by
    SIGKILL, so a killed command never leaves a folder locked. The lock file is removed after."""
    import fcntl

    out = Path(os.path.abspath(out))
    path = _lock_path(out)
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"Cannot lock --out '{out}': creating '{path}' failed "
                              f"({os_reason(e)}). Give a folder you can write to.") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 400, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise OutputError(f"--out '{out}' is being written by another mer-heads command "
                              f"(pid {holder}). Wait for it to finish, or give another "
                              "--out.") from None
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its last holder unlinked while we waited to open it
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}: {' '.join(sys.argv)}"[:400].encode(), 0)
    except OSError:
        pass  # the pid is only shown to a second command; the lock itself holds
    try:
        yield
    finally:
        try:
            path.unlink()  # while locked: the next command opens a new file
        except OSError:
            pass
        os.close(fd)


# --------------------------------------------------------------------------------------------
# Staging: a result is built beside --out and swapped in whole


@dataclass
class _Stage:
    final: Path
    staging: Path
    given: Path
    """The output folder as the command was given it (absolute; a symbolic link to ``final``)."""
    owned: set[str] = field(default_factory=set)
    """Names of the folder's entries that are this command's outputs: an earlier result's
    entry of such a name is replaced or dropped, never kept (:func:`remove_outputs`)."""


_STAGES: contextvars.ContextVar[tuple[_Stage, ...]] = contextvars.ContextVar(
    "mer_heads_stages", default=())
JOURNAL = ".mer-heads-carried"
"""In a staging folder: the names of entries moved in from the output folder, which
:func:`recover` moves back if the command died before the swap."""
RENAME_EXCHANGE = 2


def _stage_of(path: Path) -> tuple[_Stage, Path] | None:
    absolute = Path(os.path.abspath(path))
    for stage in reversed(_STAGES.get()):
        for folder in (stage.given, stage.final):
            try:
                return stage, absolute.relative_to(folder)
            except ValueError:
                continue
    return None


def _staged(path: Path) -> Path:
    """Where a write aimed at ``path`` goes: its place in the staging folder when ``path`` is
    inside an output folder being built, else ``path``."""
    found = _stage_of(path)
    return path if found is None else found[0].staging / found[1]


def _siblings(final: Path, kind: str) -> list[Path]:
    """Leftover ``.<name>.<kind>-<pid>`` folders of ``final`` (kind ``new`` or ``old``)."""
    pattern = re.compile(rf"\.{re.escape(final.name)}\.{kind}-\d+")
    try:
        return sorted(p for p in final.parent.iterdir() if pattern.fullmatch(p.name))
    except OSError:
        return []


def _exchange(a: Path, b: Path) -> bool:
    """Swap the folders ``a`` and ``b`` atomically (Linux ``renameat2``); False where the
    kernel, C library or file system cannot, and OSError for any other failure."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _carry(stage: _Stage) -> None:
    """Give the staging folder the output folder's entries that are not this command's: as
    hard links (the originals stay where they are until the swap), or, where the file system
    has none, moved one by one after a journal that lets :func:`recover` move them back."""
    names = sorted(e.name for e in os.scandir(stage.final)
                   if e.name not in stage.owned and not (stage.staging / e.name).exists()
                   and not e.name.startswith(".write-test-"))
    if not names:
        return
    try:
        for name in names:
            source, target = stage.final / name, stage.staging / name
            if source.is_dir() and not source.is_symlink():
                shutil.copytree(source, target, symlinks=True, copy_function=os.link)
            else:
                os.link(source, target, follow_symlinks=False)
        return
    except OSError:
        for name in names:
            shutil.rmtree(stage.staging / name, ignore_errors=True)
            if (stage.staging / name).is_symlink() or (stage.staging / name).exists():
                (stage.staging / name).unlink()
    (stage.staging / JOURNAL).write_text("\n".join(names) + "\n", encoding="utf-8")
    for name in names:
        os.rename(stage.final / name, stage.staging / name)


def _commit(stage: _Stage) -> None:
    """Put the complete result of ``stage.staging`` at ``stage.final``: carry over what is not
    the command's, swap the two folders, remove the old one."""
    from mer_features.files import fsync_dir

    final, staging = stage.final, stage.staging
    if final.is_dir():
        _carry(stage)
        if not _exchange(staging, final):
            old = final.with_name(f".{final.name}.old-{os.getpid()}")
            os.rename(final, old)
            os.rename(staging, final)  # between the two renames: recover() puts old back
            staging = old
        try:
            (final / JOURNAL).unlink(missing_ok=True)
        except OSError:
            pass
        shutil.rmtree(staging, ignore_errors=True)
    else:
        os.rename(staging, final)
    fsync_dir(final.parent)


def recover(out: str | Path) -> None:
    """Finish or undo what a command killed while writing ``out`` left beside it (call it
    holding the lock): an old result moved aside goes back if ``out`` is missing, entries
    carried into an unfinished new result go back into ``out``, and both leftovers are removed.
    The result: the folder as it was before that command, or as that command left it."""
    final = Path(os.path.abspath(out))
    for old in _siblings(final, "old"):
        if not final.exists():
            os.rename(old, final)
        else:
            shutil.rmtree(old, ignore_errors=True)
    for new in _siblings(final, "new"):
        journal = new / JOURNAL
        if journal.is_file() and final.is_dir():
            for name in journal.read_text(encoding="utf-8").split():
                if (new / name).exists() and not (final / name).exists():
                    os.rename(new / name, final / name)
        shutil.rmtree(new, ignore_errors=True)
    if final.is_dir():
        (final / JOURNAL).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# Output folders


def prepare_out_dir(out: str | Path, *, marker: str, overwrite: bool, what: str) -> bool:
    """Check, before any work, that the output folder ``out`` can take a result: it is not a
    file, it can be created and written, and it does not hold an earlier result (its
    ``marker`` file) unless ``overwrite``. Returns whether the folder was created here (the
    caller removes it again if the command fails before writing into it)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out '{out}' is an existing file; the {what} is a folder. Give "
                          "the path of a new or existing folder.")
    if (out / marker).exists() and not overwrite:
        raise OutputError(f"--out '{out}' already holds a {what} ({out / marker}); pass "
                          "--overwrite to replace it, or give another --out.")
    created = not out.exists()
    try:
        _probe(out)
    except OSError as e:
        if created:
            remove_if_empty(out)
        raise OutputError(f"Cannot write into --out '{out}': {os_reason(e)}. Give a folder you can "
                          "write to.") from e
    return created


def _can_stage(final: Path) -> bool:
    """Whether a result for ``final`` can be built beside it and swapped in: its parent is
    writable, it is not a mount point, and the working directory is not inside it (a shell
    there would be left in the removed old folder)."""
    cwd = Path(os.path.realpath(os.getcwd()))
    return (os.access(final.parent, os.W_OK) and not os.path.ismount(final)
            and cwd != final and final not in cwd.parents)


def _holds_only_results(final: Path, marker: str) -> bool:
    """Whether ``final`` is new, empty or holds an earlier result of the command (``marker``):
    a folder of other files (a data folder given as --out) is written into in place, its files
    never moved."""
    return not final.is_dir() or (final / marker).exists() or not any(
        not e.name.startswith((".write-test-", ".mer-heads.lock")) for e in os.scandir(final))


@contextmanager
def output_folder(out: str | Path, *, marker: str, overwrite: bool, what: str
                  ) -> Iterator[Path]:
    """The block that fills the output folder ``out``, which is locked meanwhile
    (:func:`lock_folder`) and checked first (:func:`prepare_out_dir`). Every file the block
    writes into ``out`` through this module is built in a staging folder beside it and the
    whole result is swapped in when the block completes (see the module docstring); if the
    block fails, ``out`` is as it was (a folder created for it is removed again). Where ``out``
    cannot be staged (its parent is read-only, it is the working directory or a mount point),
    files are written into it one by one, each atomically."""
    out = Path(out)
    created = prepare_out_dir(out, marker=marker, overwrite=overwrite, what=what)
    final = Path(os.path.realpath(out))  # a symbolic link to a folder: swap the folder
    try:
        with lock_folder(final):
            recover(final)
            if (out / marker).exists() and not overwrite:  # another command finished meanwhile
                prepare_out_dir(out, marker=marker, overwrite=overwrite, what=what)
            if not (_can_stage(final) and _holds_only_results(final, marker)):
                yield out
                return
            staging = final.with_name(f".{final.name}.new-{os.getpid()}")
            try:
                staging.mkdir()
            except OSError as e:
                raise OutputError(f"Cannot write beside --out '{out}' ('{staging}'): "
                                  f"{os_reason(e)}. Give a folder you can write to.") from e
            stage = _Stage(final, staging, Path(os.path.abspath(out)))
            token = _STAGES.set((*_STAGES.get(), stage))
            try:
                yield out
                _STAGES.reset(token)
                token = None
                try:
                    _commit(stage)
                except OSError as e:
                    raise OutputError(f"Cannot put the new {what} into --out '{out}': "
                                      f"{os_reason(e)}; the earlier content of the folder is "
                                      "kept.") from e
            finally:
                if token is not None:
                    _STAGES.reset(token)
                if staging.exists():
                    shutil.rmtree(staging, ignore_errors=True)
                recover(final)  # a swap that failed half-way is undone
    except BaseException:
        if created:
            remove_if_empty(out)
        raise


def remove_if_empty(folder: Path) -> None:
    """Remove ``folder`` (and an empty ``models/`` in it) if nothing else is there."""
    try:
        models = folder / "models"
        if models.is_dir() and not any(models.iterdir()):
            models.rmdir()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    except OSError:
        pass


def remove_outputs(out: Path, names: Sequence[str]) -> None:
    """Remove the files ``names`` of an earlier result in ``out`` (``--overwrite``). Inside
    :func:`output_folder` of ``out`` the earlier result stays until the new one is swapped in;
    these names are then the command's own, and an earlier file of such a name is dropped."""
    found = _stage_of(out)
    if found is not None:
        stage, rel = found
        stage.owned.update((rel / name).parts[0] for name in names)
        out = stage.staging / rel
    for name in names:
        path = out / name
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        except OSError as e:
            raise OutputError(f"Cannot remove '{path}' of the earlier result in --out: "
                              f"{os_reason(e)}.") from e


# --------------------------------------------------------------------------------------------
# Output files


PREDICTION_HEADER = "name,discrete,valence"
_SIX_DECIMALS = re.compile(r"-?[0-9]+\.[0-9]{6}")


def is_prediction_file(path: str | Path) -> bool:
    """Whether ``path`` reads as a prediction file mer-heads wrote (``write_predictions``):
    the MER 2023 submission (the header ``name,discrete,valence``, then rows of a name, one of
    the six classes and a valence with six decimals, or empty), or the predictions of another
    label set (``name,discrete``, target columns, two or more ``p_<class>`` columns; rows of a
    name, one of those classes and numbers with six decimals). MER 2023's ``train-label.csv``
    has the same header but shorter valences; a manifest, a store or an empty file fail at the
    first line."""
    from mer_features import EMOTIONS

    try:
        with open(path, encoding="utf-8", newline="") as f:
            header = f.readline().rstrip("\r\n")
            if header == PREDICTION_HEADER:
                classes, width = set(EMOTIONS), 3
            else:
                names = header.split(",")
                probabilities = [n for n in names if n.startswith("p_")]
                if (names[:2] != ["name", "discrete"] or len(probabilities) < 2
                        or names[len(names) - len(probabilities):] != probabilities):
                    return False
                classes, width = {n[2:] for n in probabilities}, len(names)
            for row in csv.reader(f):
                if (len(row) != width or not row[0] or row[1] not in classes
                        or any(cell and not _SIX_DECIMALS.fullmatch(cell) for cell in row[2:])):
                    return False
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return True


def check_out_file(path: str | Path, *, inputs: Sequence[str | Path] = (), flag: str = "--out",
                   replaces: Callable[[Path], bool] = is_prediction_file,
                   kind: str = "a prediction file written by mer-heads (header "
                   f"{PREDICTION_HEADER}, six-decimal valence; or name,discrete,...,p_<class> "
                   "columns)") -> Path:
    """Check, before any work, that the file ``path`` can be written: not a folder, not one of
    ``inputs``, not an existing file that ``replaces`` does not recognise as the command's own
    kind of output (``kind`` says what that is), its folder creatable and writable. Returns
    ``path``."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{flag} '{path}' is a folder; give the path of a file to write, "
                          f"e.g. '{path / 'predictions.csv'}'.")
    if path.exists():
        for item in inputs:
            try:
                if Path(item).exists() and path.samefile(item):
                    raise OutputError(f"{flag} '{path}' is one of the command's inputs; it would "
                                      "be overwritten. Give another path.")
            except OSError:
                continue
        if not replaces(path):
            raise OutputError(f"{flag} '{path}' exists and is not {kind}; it is not replaced. "
                              "Give another path, or move the file away.")
    try:
        _probe(path.parent)
    except OSError as e:
        raise OutputError(f"Cannot write {flag} '{path}': {os_reason(e)} (folder '{path.parent}'). "
                          "Give a path in a folder you can write to.") from e
    return path


def _rounded(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _rounded(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_rounded(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _rounded(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        if not np.isfinite(value):
            return None
        value = round(value, 6)
        return 0.0 if value == 0 else value  # no "-0.0"
    return obj



__all__ = ["PREDICTION_HEADER", "atomic_write", "check_out_file", "dump_json",
           "is_prediction_file", "lock_folder", "output_folder", "prepare_out_dir", "recover",
           "remove_if_empty", "remove_outputs", "save_figure", "save_npz", "write_csv",
           "write_rows", "write_text"]
