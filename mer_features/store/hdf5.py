"""Writing one complete store file from records (layout: :mod:`.schema`), atomically: under a
temporary name (:func:`mer_features.files.atomic_path`), then renamed into place.

On a full disk or an unwritable folder the temporary file is dropped without letting HDF5
flush it (which would fail again, and crash in a finalizer), and the file it was to replace
is untouched; :mod:`.disk` turns the error into one line.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mer_features.errors import StoreError
from mer_features.files import atomic_path
from mer_features.store.checksums import (CHECKSUM, CLIP_CHUNK, STR_COLUMNS, checksum_columns,
                                          little_endian, row_crcs, string_crcs)
from mer_features.store.guard import trust
from mer_features.store.schema import BLOCK, STATUSES, ClipRecord, StoreHeader

_STR = h5py.string_dtype("utf-8")

_FRAME_CHUNK = 65536
"""Values per chunk of the per-frame datasets (at most 16384 frames)."""


def _write_store(path: Path, header: StoreHeader, n: int, rows: Iterable[ClipRecord]) -> None:
    """Write ``n`` records (in the order given) as a complete store file at ``path``.

    On any error the file is closed without being flushed (see :func:`_discard`); the caller
    removes it.
    """
    f = h5py.File(path, "w")
    try:
        fd = f.id.get_vfd_handle()  # now: after a failed write HDF5 may crash when asked
    except Exception:  # noqa: BLE001 - a driver without a descriptor
        fd = None
    try:
        _fill(f, header, n, rows, path)
        f.close()
    except BaseException:
        _discard(f, fd)
        raise


def _discard(f: h5py.File, fd: int | None) -> None:
    """Close an HDF5 file that is being abandoned, without writing anything more to it.

    After a failed write (a full disk), HDF5 still holds dirty chunks and metadata; closing the
    file tries to write them, fails again, leaves the file open, and a finalizer fails once
    more later (a segfault with HDF5 2.0). Pointing the file's descriptor ``fd`` at /dev/null
    first makes those writes succeed into nothing, so the close completes; the caller removes
    the file.
    """
    if fd is not None:
        try:
            null = os.open(os.devnull, os.O_RDWR)
            try:
                os.dup2(null, fd)
            finally:
                os.close(null)
        except OSError:
            pass
    try:
        f.close()
    except Exception:  # noqa: BLE001 - nothing left to save in a file being removed
        pass


def _fill(f: h5py.File, header: StoreHeader, n: int, rows: Iterable[ClipRecord],
          path: Path) -> None:
    utt_shape = tuple(header.utterance_shape)
    dtype = np.dtype(header.storage_dtype).newbyteorder("<")
    for key, value in header.attrs().items():
        f.attrs[key] = value

    def per_clip(group: h5py.Group, name: str, shape: tuple[int, ...], dt: Any,
                 chunk: int) -> h5py.Dataset:
        return group.create_dataset(name, (n, *shape), dtype=dt, maxshape=(None, *shape),
                                    chunks=(max(1, min(n, chunk)), *shape), fletcher32=True)

    def per_frame(group: h5py.Group, name: str, shape: tuple[int, ...], dt: Any) -> h5py.Dataset:
        rows = max(1, min(16384, _FRAME_CHUNK // max(1, int(np.prod(shape)))))
        return group.create_dataset(name, (0, *shape), maxshape=(None, *shape), dtype=dt,
                                    chunks=(rows, *shape), fletcher32=True)

    # Every dataset is held here until the file is closed: a dataset object dropped mid-write
    # makes HDF5 flush it from a finalizer, where a full disk cannot be reported (and crashes).
    clips = f.create_group("clips")
    strings = {name: clips.create_dataset(name, (n,), dtype=_STR) for name in STR_COLUMNS[1:]}
    names: list[bytes] = []  # /clips/name is written at the end, at the longest name's width
    clips_duration = per_clip(clips, "duration", (), "<f8", CLIP_CHUNK)
    clips_valence = per_clip(clips, "valence", (), "<f4", CLIP_CHUNK)
    utt = per_clip(f, "utterance", utt_shape, dtype, BLOCK)
    frames = f.create_group("frames")
    offset = per_clip(frames, "offset", (), "<i8", CLIP_CHUNK)
    length = per_clip(frames, "length", (), "<i8", CLIP_CHUNK)
    data = per_frame(frames, "data", (header.frame_dim,), dtype)
    ftime = per_frame(frames, "time", (), "<f4")
    extra_dtypes = {name: np.dtype(dt).newbyteorder("<") for name, _, dt in header.frame_extras}
    extras = {name: per_frame(frames, name, tuple(shape), extra_dtypes[name])
              for name, shape, _ in header.frame_extras}
    columns = checksum_columns(extras)
    crc_ds = per_clip(f, CHECKSUM, (len(columns),), "<u4", CLIP_CHUNK)
    crc_ds.attrs["columns"] = json.dumps(columns)
    col = {c: k for k, c in enumerate(columns)}

    total = 0
    block: list[ClipRecord] = []

    def flush_block(start: int) -> None:
        nonlocal total
        m = len(block)
        sl = slice(start, start + m)
        crc = np.zeros((m, len(columns)), np.uint32)
        for name in STR_COLUMNS:
            values = [json_cell(getattr(r, name)) if name in ("info", "extra")
                      else getattr(r, name) for r in block]
            if name == "name":
                names.extend(v.encode("utf-8") for v in values)
            else:
                strings[name][sl] = np.array(values, dtype=object)
            crc[:, col[f"clips/{name}"]] = string_crcs(values)
        duration = little_endian([r.duration for r in block], "f8")
        valence = little_endian([r.valence for r in block], "f4")
        clips_duration[sl] = duration
        clips_valence[sl] = valence
        crc[:, col["clips/duration"]] = row_crcs(duration)
        crc[:, col["clips/valence"]] = row_crcs(valence)
        u = np.zeros((m, *utt_shape), dtype)
        lens = np.zeros(m, np.int64)
        stacked: dict[str, list[np.ndarray]] = {"data": [], "time": [], **{k: [] for k in extras}}
        for j, r in enumerate(block):
            if r.utterance is not None:
                u[j] = r.utterance
            if r.frames is None:
                continue
            lens[j] = len(r.frames)
            cells = {"data": little_endian(r.frames, dtype),
                     "time": little_endian(r.frame_times, "f4"),
                     **{k: little_endian(r.frame_extras[k], extra_dtypes[k])
                        for k in extras if lens[j]}}
            for key, cell in cells.items():
                crc[j, col[f"frames/{key}"]] = zlib.crc32(cell)
                if lens[j]:
                    stacked[key].append(cell)
        utt[sl] = u
        crc[:, col["utterance"]] = row_crcs(u)
        offset[sl] = total + np.concatenate([[0], np.cumsum(lens)[:-1]])
        length[sl] = lens
        added = int(lens.sum())
        if added:
            for key, ds in (("data", data), ("time", ftime), *extras.items()):
                ds.resize(total + added, axis=0)
                ds[total:total + added] = np.concatenate(stacked[key])
        crc_ds[sl] = crc
        total += added
        block.clear()

    i = 0
    for rec in rows:
        _check_record(rec, header)
        block.append(rec)
        if len(block) == BLOCK:
            flush_block(i)
            i += BLOCK
    if block:
        i_last = len(block)
        flush_block(i)
        i += i_last
    if i != n:
        raise StoreError(f"internal error: wrote {i} clips into '{path}', expected {n}")
    # Fixed width, unlike the other string columns: one fletcher32-checked read of a few
    # bytes per clip when a store is opened (variable-length strings cannot be checksummed by
    # HDF5 and read 4x slower); readers of schema 1 read it the same way.
    width = max([1, *map(len, names)])
    fixed = h5py.string_dtype("utf-8", width)
    clips.create_dataset("name", data=np.array(names, dtype=fixed), dtype=fixed, maxshape=(None,),
                         chunks=(max(1, min(n, CLIP_CHUNK)),), fletcher32=True)
    # Written out while every dataset is still held, so a full disk shows here as an error
    # (not in a finalizer when the datasets are dropped on return).
    f.flush()


def json_cell(value: dict[str, Any]) -> str:
    """A per-clip dict (clips/info, clips/extra) as one JSON cell; "" when empty."""
    return json.dumps(value, sort_keys=True, default=_jsonable) if value else ""


def _jsonable(value: Any) -> Any:
    """numpy values in per-clip info become plain JSON numbers and lists."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"cannot store a {type(value).__name__} in clips/info")


def _check_record(rec: ClipRecord, header: StoreHeader) -> None:
    if rec.status not in STATUSES:
        raise StoreError(f"Clip '{rec.name}': unknown status '{rec.status}'.")
    for column in ("name", "stage", "input_hash", "discrete", "split"):
        if "\x00" in getattr(rec, column):
            raise StoreError(f"Clip {rec.name!r}: its {column} holds a NUL character, which a "
                             "store cannot hold; remove it from the manifest.")
    if rec.utterance is not None and tuple(rec.utterance.shape) != tuple(header.utterance_shape):
        raise StoreError(f"Clip '{rec.name}': utterance has shape {rec.utterance.shape}, the store "
                         f"holds {tuple(header.utterance_shape)}.")
    if rec.frames is not None:
        if rec.frames.ndim != 2 or rec.frames.shape[1] != header.frame_dim:
            raise StoreError(f"Clip '{rec.name}': frames have shape {rec.frames.shape}, the store "
                             f"holds (n_frames, {header.frame_dim}).")
        if rec.frame_times is None or len(rec.frame_times) != len(rec.frames):
            raise StoreError(f"Clip '{rec.name}': frame times do not match the frames.")
        for name, shape, _ in header.frame_extras:
            extra = rec.frame_extras.get(name)
            if len(rec.frames) and (extra is None or tuple(extra.shape) != (len(rec.frames), *shape)):
                raise StoreError(f"Clip '{rec.name}': per-frame '{name}' must have shape "
                                 f"{(len(rec.frames), *shape)}; got "
                                 f"{None if extra is None else tuple(extra.shape)}.")


def storage_problem(header: StoreHeader, *arrays: np.ndarray | None) -> str | None:
    """Why finite feature values cannot be stored in the store's dtype (they exceed its range
    and would become inf), or None when they can."""
    dtype = np.dtype(header.storage_dtype)
    limit = float(np.finfo(dtype).max)
    peak = 0.0
    for a in arrays:
        if a is None or a.size == 0 or a.dtype.kind != "f":
            continue
        if a.dtype.itemsize <= dtype.itemsize:
            continue  # already representable
        peak = max(peak, float(np.max(np.abs(a), initial=0.0, where=np.isfinite(a))))
    if peak <= limit:
        return None
    return (f"features reach {peak:.6g}, beyond {dtype.name}'s range (+-{limit:.6g}), and would be "
            f"stored as inf; extract again into a store of storage dtype float32")


def write_store_file(path: Path, header: StoreHeader, n: int, rows: Iterable[ClipRecord]) -> None:
    """Write ``n`` records (in the order given) as a complete store file at ``path``,
    atomically; on any error ``path`` is untouched. OSError (disk full, read-only) and the
    RuntimeError h5py raises when HDF5 cannot flush propagate (see :mod:`.disk`)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        _write_store(tmp, header, n, rows)
    trust(path)  # written whole by this process: readers need not walk its metadata again
