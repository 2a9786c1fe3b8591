"""Checksums of a feature store (format 2) and finding the clips a damaged file lost.

Two layers, because neither alone covers everything:

* HDF5's **fletcher32** filter on every numeric dataset. HDF5 checks a chunk each time it reads
  it, so every reader (:class:`~mer_features.store.FeatureStore`, merging, ``verify``) refuses a
  damaged number without a second pass over the data. It cannot cover variable-length strings
  (their bytes live in a heap outside the chunks) and cannot say which row of a chunk is bad.
* **/clips/checksum**, an ``(n, k)`` uint32 table: the CRC-32 of each clip's cells, one column
  per entry of its ``columns`` attribute (every string cell, duration, valence, the utterance
  row, the clip's frames, frame times and per-frame extras), each over the little-endian bytes
  as stored. It covers the strings, catches values rewritten through HDF5 (which recomputes
  fletcher32), and names the exact clip(s) in a damaged chunk: that chunk's raw bytes are read
  past the filter and each row compared with its CRC. A clip is intact when every one of its
  cells matches its CRC.

Stores of format 1 (written before checksums) have neither; they are read unchecked and gain
both the next time a writer rewrites them.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import h5py
import numpy as np

FORMAT_VERSION = 2
"""File format: 1 = schema 1 without checksums; 2 = schema 1 plus the checksums above (old
readers still read it: the additions are a dataset they ignore and a standard HDF5 filter)."""

CHECKSUM = "clips/checksum"
STR_COLUMNS = ("name", "status", "stage", "reason", "input_hash", "info", "discrete", "split",
               "extra")
OPTIONAL_COLUMNS = ("extra",)
"""String columns that stores written before them lack (read as "" for every clip); a store that
has one also has its CRC column."""
CLIP_CHUNK = 8192
"""Rows per chunk of the small per-clip datasets (durations, offsets, checksums)."""
_BATCH_BYTES = 32 << 20


def checksum_columns(frame_extras: Iterable[str]) -> list[str]:
    """Names of the columns of /clips/checksum, in order."""
    return ([f"clips/{c}" for c in STR_COLUMNS] + ["clips/duration", "clips/valence", "utterance",
            "frames/data", "frames/time"] + [f"frames/{name}" for name in frame_extras])


def little_endian(values: object, dtype: object) -> np.ndarray:
    """``values`` as a C-contiguous little-endian array of ``dtype``: the bytes a CRC covers."""
    return np.ascontiguousarray(values, dtype=np.dtype(dtype).newbyteorder("<"))


def row_crcs(rows: np.ndarray) -> np.ndarray:
    """CRC-32 of each row of a C-contiguous array, shape (n,) uint32."""
    flat = np.ascontiguousarray(rows).reshape(len(rows), -1).view(np.uint8)
    return np.fromiter((zlib.crc32(r) for r in flat), np.uint32, len(rows))


def string_crcs(values: Sequence[str | bytes | None]) -> np.ndarray:
    """CRC-32 of each string's UTF-8 bytes; None (unreadable) gets a value no string has here
    only by chance, so compare with :func:`crc_ok`."""
    return np.fromiter((zlib.crc32(v if isinstance(v, bytes) else v.encode("utf-8"))
                        if v is not None else 0 for v in values), np.uint32, len(values))


# --------------------------------------------------------------------------------------------
# Reading past damaged chunks


def read_rows(ds: h5py.Dataset, lo: int, hi: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Rows ``[lo, hi)`` of a chunked dataset, and the row ranges whose chunk failed its check.

    Rows of a failed chunk come from the chunk's raw bytes (unchecked: compare them with their
    CRCs), or are zeros where even those cannot be read. Without any failure this is one read.
    """
    try:
        return ds[lo:hi], []
    except OSError:
        pass
    out = np.zeros((hi - lo, *ds.shape[1:]), ds.dtype)
    bad: list[tuple[int, int]] = []
    step = ds.chunks[0] if ds.chunks else max(1, hi - lo)
    for start in range(lo - lo % step, hi, step):
        a, b = max(lo, start), min(hi, start + step)
        try:
            out[a - lo:b - lo] = ds[a:b]
            continue
        except OSError:
            bad.append((a, b))
        raw = _raw_chunk(ds, start)
        if raw is not None:
            out[a - lo:b - lo] = raw[a - start:b - start]
    return out, bad


def _raw_chunk(ds: h5py.Dataset, start: int) -> np.ndarray | None:
    if not ds.chunks:
        return None
    try:
        _, data = ds.id.read_direct_chunk((start,) + (0,) * (ds.ndim - 1))
    except Exception:  # noqa: BLE001 - a chunk index too damaged to find the chunk
        return None
    need = int(np.prod(ds.chunks)) * ds.dtype.itemsize
    if len(data) < need:
        return None
    # fletcher32 appends its 4-byte sum to the chunk's data
    return np.frombuffer(data[:need], ds.dtype).reshape(ds.chunks)


def read_strings(ds: h5py.Dataset, lo: int = 0, hi: int | None = None) -> list[bytes | None]:
    """The UTF-8 bytes of string cells ``[lo, hi)``; None where a cell cannot be read."""
    hi = ds.shape[0] if hi is None else hi
    if ds.dtype.kind == "S":  # fixed width (clip names): chunked, so read past a bad chunk
        return read_rows(ds, lo, hi)[0].tolist()
    try:
        return list(ds[lo:hi])
    except (OSError, ValueError, RuntimeError):
        pass
    out: list[bytes | None] = []
    for i in range(lo, hi):
        try:
            out.append(ds[i])
        except (OSError, ValueError, RuntimeError):
            out.append(None)
    return out


def decode(values: Sequence[bytes | None]) -> list[str]:
    """Cells as str; unreadable or non-UTF-8 cells (damaged, and caught by their CRC) as ''."""
    out = []
    for v in values:
        try:
            out.append(v.decode("utf-8") if v is not None else "")
        except UnicodeDecodeError:
            out.append("")
    return out


# --------------------------------------------------------------------------------------------
# Finding damage


@dataclass
class Damage:
    """What a scan found. ``rows``: clip row -> the datasets whose CRC it fails (such a clip
    must be extracted again); ``bad_chunks``: datasets -> number of chunks that failed
    fletcher32 (their rows may all be intact: a flip in the sum itself)."""

    rows: dict[int, list[str]] = field(default_factory=dict)
    bad_chunks: dict[str, int] = field(default_factory=dict)

    def flag(self, rows: Iterable[int], dataset: str) -> None:
        for i in rows:
            listed = self.rows.setdefault(int(i), [])
            if dataset not in listed:
                listed.append(dataset)

    def chunks(self, dataset: str, ranges: list[tuple[int, int]]) -> None:
        if ranges:
            self.bad_chunks[dataset] = self.bad_chunks.get(dataset, 0) + len(ranges)

    def __bool__(self) -> bool:
        return bool(self.rows or self.bad_chunks)


class Checker:
    """Checks the cells of an open format-2 store against /clips/checksum.

    ``full`` compares every cell with its CRC (``verify``); otherwise numeric cells are compared
    only in chunks that fail fletcher32, which HDF5 checks anyway while reading (writers).
    """

    def __init__(self, f: h5py.File, names: Sequence[bytes | None], *, full: bool = False):
        self.f = f
        self.n = len(names)
        self.full = full
        self.names = names
        ds = f[CHECKSUM]
        self.columns: list[str] = json.loads(ds.attrs["columns"])
        self.table, bad = read_rows(ds, 0, self.n)
        self.damage = Damage()
        self.damage.chunks(CHECKSUM, bad)

    def crc(self, column: str) -> np.ndarray:
        return self.table[:, self.columns.index(column)]

    def scan(self) -> Damage:
        """Check every clip; returns the damage found."""
        self.check_strings(STR_COLUMNS, self.names)
        for name in ("clips/duration", "clips/valence", "utterance"):
            self.check_rows(name, 0, self.n)
        offset, length = self.frame_index()
        for name in self.frame_datasets():
            self.check_frames(name, offset, length, range(self.n))
        return self.damage

    def check_strings(self, columns: Sequence[str], names: Sequence[bytes | None] | None = None,
                      lo: int = 0, hi: int | None = None) -> None:
        hi = self.n if hi is None else hi
        for column in columns:
            if f"clips/{column}" not in self.columns:
                continue  # an optional column written after this store
            values = names if column == "name" and names is not None else \
                read_strings(self.f["clips"][column], lo, hi)
            got = string_crcs(values)
            want = self.crc(f"clips/{column}")[lo:hi]
            bad = (got != want) | np.array([v is None for v in values], bool)
            self.damage.flag(lo + np.flatnonzero(bad), f"clips/{column}")

    def check_rows(self, name: str, lo: int, hi: int) -> None:
        """A per-clip dataset (one row per clip), rows ``[lo, hi)``."""
        ds = self.f[name]
        want = self.crc(name)
        chunk = ds.chunks[0] if ds.chunks else 1
        row_bytes = max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:])))
        step = max(chunk, _BATCH_BYTES // row_bytes // chunk * chunk)
        for start in range(lo, hi, step):
            stop = min(hi, start + step)
            block, bad = read_rows(ds, start, stop)
            self.damage.chunks(name, bad)
            rows = range(start, stop) if self.full else [i for a, b in bad for i in range(a, b)]
            rows = np.asarray(list(rows), np.int64)
            if len(rows):
                got = row_crcs(little_endian(block[rows - start], ds.dtype))
                self.damage.flag(rows[got != want[rows]], name)

    def frame_index(self) -> tuple[np.ndarray, np.ndarray]:
        """Offsets and lengths of the clips' frames; clips whose entries are out of place are
        flagged (a damaged chunk read raw may hold garbage there)."""
        offset, bad_o = read_rows(self.f["frames/offset"], 0, self.n)
        length, bad_l = read_rows(self.f["frames/length"], 0, self.n)
        self.damage.chunks("frames/offset", bad_o)
        self.damage.chunks("frames/length", bad_l)
        total = self.f["frames/data"].shape[0]
        ends = np.append(offset[1:], total) if self.n else offset
        wrong = (length < 0) | (offset < 0) | (offset + length > total) | (offset + length != ends)
        self.damage.flag(np.flatnonzero(wrong), "frames/offset")
        return offset, length

    def frame_datasets(self) -> list[str]:
        return [c for c in self.columns if c.startswith("frames/")]

    def check_frames(self, name: str, offset: np.ndarray, length: np.ndarray,
                     rows: Iterable[int]) -> None:
        """A per-frame dataset, for the clips at ``rows`` (in increasing order)."""
        ds = self.f[name]
        total = ds.shape[0]
        want = self.crc(name)
        row_bytes = max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:])))
        batch: list[int] = []
        frames = 0

        def flush() -> None:
            valid = [i for i in batch if 0 <= offset[i] and offset[i] + length[i] <= total
                     and length[i] >= 0]
            self.damage.flag(sorted(set(batch) - set(valid)), name)
            if not valid:
                return
            lo = int(min(offset[i] for i in valid))
            hi = int(max(offset[i] + length[i] for i in valid))
            block, bad = read_rows(ds, lo, hi) if hi > lo else (ds[0:0], [])
            self.damage.chunks(name, bad)
            for i in valid:
                s, e = int(offset[i]) - lo, int(offset[i] + length[i]) - lo
                hit = any(a < e + lo and s + lo < b for a, b in bad)
                if (self.full or hit) and \
                        zlib.crc32(little_endian(block[s:e], ds.dtype)) != want[i]:
                    self.damage.flag([i], name)

        for i in rows:
            batch.append(i)
            frames += max(0, int(length[i]))
            if frames * row_bytes >= _BATCH_BYTES:
                flush()
                batch, frames = [], 0
        if batch:
            flush()


def damaged_names(damage: Damage, names: Sequence[str | bytes | None]) -> list[str]:
    """The clips of ``damage``, named (a damaged name cell shows as its row)."""
    out = []
    for i in sorted(damage.rows):
        name = names[i]
        if isinstance(name, bytes):
            name = decode([name])[0]
        out.append(f"row {i}" if not name or "clips/name" in damage.rows[i] else name)
    return out
