"""How mer_heads writes any file, and checks an output before the work that fills it.

Every file goes through :func:`atomic_write`, built on the toolkit's one atomic-write helper
(:func:`mer_features.files.atomic_open`: a temporary name in the file's folder, synced and
renamed into place when complete, the temporary file removed on any failure). Here an
``OSError`` (read-only folder, disk full, a folder in the way) becomes one
:class:`~mer_heads.errors.OutputError` naming the file. Output folders and files are checked by
:func:`output_folder` and :func:`check_out_file` before any work starts; JSON is written
deterministically (sorted keys, floats rounded to 6 decimals), so the same run writes the same
bytes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
    is untouched; an ``OSError`` becomes an :class:`OutputError` naming ``path``."""
    path = Path(path)
    try:
        with atomic_open(path, mode) as f:
            yield f
            if path.is_dir():
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
        ["" if row[c] is None else (f"{row[c]:.6f}" if isinstance(row[c], float) else row[c])
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


@contextmanager
def output_folder(out: str | Path, *, marker: str, overwrite: bool, what: str
                  ) -> Iterator[Path]:
    """The block that fills the output folder ``out`` (checked first by
    :func:`prepare_out_dir`); a folder created for it is removed again if the block fails
    before writing into it."""
    out = Path(out)
    created = prepare_out_dir(out, marker=marker, overwrite=overwrite, what=what)
    try:
        yield out
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
    """Remove the files ``names`` of an earlier result in ``out`` (``--overwrite``)."""
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


def check_out_file(path: str | Path, *, inputs: Sequence[str | Path] = (), flag: str = "--out"
                   ) -> Path:
    """Check, before any work, that the file ``path`` can be written: not a folder, not one of
    ``inputs``, its folder creatable and writable. Returns ``path``."""
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



__all__ = ["atomic_write", "check_out_file", "dump_json", "output_folder", "prepare_out_dir",
           "remove_if_empty", "remove_outputs", "save_figure", "save_npz", "write_csv",
           "write_rows", "write_text"]
