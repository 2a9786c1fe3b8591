"""Writing the HDF5 feature store: atomic whole-file writes, crash-safe parts, merging, and
the locked :class:`StoreWriter` that extraction appends through (layout: :mod:`.reader`)."""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mer_features.errors import FingerprintMismatchError, StoreError, StoreLockedError
from mer_features.fingerprint import diff_fields
from mer_features.store.reader import (_BLOCK, _STR, _STR_COLUMNS, STATUSES, ClipRecord,
                                       FeatureStore, StoreHeader, parts_dir, pending_parts)


def _write_store(path: Path, header: StoreHeader, n: int, rows: Iterable[ClipRecord]) -> None:
    """Write ``n`` records (in the order given) as a complete store file at ``path``."""
    utt_shape = tuple(header.utterance_shape)
    dtype = np.dtype(header.storage_dtype)
    with h5py.File(path, "w") as f:
        for key, value in header.attrs().items():
            f.attrs[key] = value
        clips = f.create_group("clips")
        for name in _STR_COLUMNS:
            clips.create_dataset(name, (n,), dtype=_STR)
        clips.create_dataset("duration", (n,), dtype="f8")
        clips.create_dataset("valence", (n,), dtype="f4")
        utt = f.create_dataset("utterance", (n, *utt_shape), dtype=dtype,
                               chunks=(max(1, min(n, _BLOCK)), *utt_shape) if n else None)
        frames = f.create_group("frames")
        offset = frames.create_dataset("offset", (n,), dtype="i8")
        length = frames.create_dataset("length", (n,), dtype="i8")
        fdim = max(1, header.frame_dim)
        data = frames.create_dataset("data", (0, header.frame_dim), maxshape=(None, header.frame_dim),
                                     dtype=dtype, chunks=(max(1, 65536 // fdim), header.frame_dim))
        ftime = frames.create_dataset("time", (0,), maxshape=(None,), dtype="f4", chunks=(16384,))
        extras = {name: frames.create_dataset(name, (0, *shape), maxshape=(None, *shape), dtype=dt,
                                              chunks=(4096, *shape))
                  for name, shape, dt in header.frame_extras}

        total = 0
        block: list[ClipRecord] = []

        def flush_block(start: int) -> None:
            nonlocal total
            m = len(block)
            sl = slice(start, start + m)
            for col in _STR_COLUMNS:
                values = [(json.dumps(r.info, sort_keys=True, default=_jsonable) if r.info else "")
                          if col == "info"
                          else getattr(r, col) for r in block]
                clips[col][sl] = np.array(values, dtype=object)
            clips["duration"][sl] = [r.duration for r in block]
            clips["valence"][sl] = [r.valence for r in block]
            u = np.zeros((m, *utt_shape), dtype)
            lens = np.zeros(m, np.int64)
            for j, r in enumerate(block):
                if r.utterance is not None:
                    u[j] = r.utterance
                if r.frames is not None:
                    lens[j] = len(r.frames)
            utt[sl] = u
            offset[sl] = total + np.concatenate([[0], np.cumsum(lens)[:-1]])
            length[sl] = lens
            added = int(lens.sum())
            if added:
                with_frames = [r for r in block if r.frames is not None and len(r.frames)]
                data.resize(total + added, axis=0)
                ftime.resize(total + added, axis=0)
                data[total:total + added] = np.concatenate([r.frames for r in with_frames]).astype(dtype)
                ftime[total:total + added] = np.concatenate([r.frame_times for r in with_frames])
                for name, ds in extras.items():
                    ds.resize(total + added, axis=0)
                    ds[total:total + added] = np.concatenate([r.frame_extras[name] for r in with_frames])
            total += added
            block.clear()

        i = 0
        for rec in rows:
            _check_record(rec, header)
            block.append(rec)
            if len(block) == _BLOCK:
                flush_block(i)
                i += _BLOCK
        if block:
            i_last = len(block)
            flush_block(i)
            i += i_last
        if i != n:
            raise StoreError(f"internal error: wrote {i} clips into '{path}', expected {n}")


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


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, header: StoreHeader, n: int, rows: Iterable[ClipRecord]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        _write_store(tmp, header, n, rows)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


class _Source:
    """An open store or part file, with its small columns read once."""

    def __init__(self, path: Path):
        self.store = FeatureStore(path)
        f = self.store._file
        self.cols = {c: self.store.column(c) for c in (*_STR_COLUMNS, "duration", "valence")}
        self.offset = f["frames/offset"][()]
        self.length = f["frames/length"][()]
        self.utt = f["utterance"]
        self.data = f["frames/data"]
        self.time = f["frames/time"]
        self.extras = {name: f["frames"][name] for name in self.store.frame_extra_names}

    def read(self, rows: list[int], with_arrays: bool = True) -> Iterator[ClipRecord]:
        """Records at increasing row indices, reading each array range once."""
        if not rows:
            return
        lo, hi = rows[0], rows[-1] + 1
        if with_arrays:
            utt = self.utt[lo:hi]
            f_lo = int(self.offset[lo])
            f_hi = int(self.offset[hi - 1] + self.length[hi - 1])
            data, times = self.data[f_lo:f_hi], self.time[f_lo:f_hi]
            extras = {name: ds[f_lo:f_hi] for name, ds in self.extras.items()}
        for i in rows:
            c = self.cols
            rec = ClipRecord(
                name=c["name"][i], status=c["status"][i], stage=c["stage"][i],
                reason=c["reason"][i], input_hash=c["input_hash"][i],
                duration=float(c["duration"][i]), info=json.loads(c["info"][i] or "{}"),
                discrete=c["discrete"][i], valence=float(c["valence"][i]), split=c["split"][i],
            )
            if with_arrays:
                rec.utterance = utt[i - lo]
                s = int(self.offset[i]) - f_lo
                rec.frames = data[s:s + int(self.length[i])]
                rec.frame_times = times[s:s + int(self.length[i])]
                rec.frame_extras = {name: a[s:s + int(self.length[i])] for name, a in extras.items()}
            yield rec


LabelMap = Mapping[str, tuple[str, float, str]]


def _merge(path: Path, header: StoreHeader, source_paths: list[Path],
           labels: LabelMap | None = None, *, overlap_ok: bool = True) -> int:
    """Write the clips of ``source_paths`` as one store at ``path``, sorted by name.

    A clip in several sources is taken from the last one (parts are newer than the store),
    unless ``overlap_ok`` is false, which refuses overlaps. ``labels`` override the stored
    labels of the clips they name. Returns the number of clips.
    """
    sources: list[_Source] = []
    try:
        where: dict[str, tuple[int, int]] = {}
        for si, source_path in enumerate(source_paths):
            sources.append(_Source(source_path))
            for ri, name in enumerate(sources[-1].cols["name"]):
                if not overlap_ok and name in where:
                    raise StoreError(f"Clip '{name}' is in both '{source_paths[where[name][0]]}' and "
                                     f"'{source_path}'; shards must not overlap.")
                where[name] = (si, ri)
        names = sorted(where)
        _atomic_write(path, header, len(names), _merged_rows(sources, where, names, labels or {}))
    finally:
        for src in sources:
            src.store.close()
    return len(names)


def _merged_rows(sources: list[_Source], where: dict[str, tuple[int, int]], names: list[str],
                 labels: LabelMap) -> Iterator[ClipRecord]:
    for start in range(0, len(names), _BLOCK):
        block = names[start:start + _BLOCK]
        by_source: dict[int, list[int]] = {}
        for name in block:
            si, ri = where[name]
            by_source.setdefault(si, []).append(ri)
        got: dict[str, ClipRecord] = {}
        for si, rows in by_source.items():
            for rec in sources[si].read(sorted(rows)):
                got[rec.name] = rec
        for name in block:
            rec = got[name]
            if name in labels:
                rec.discrete, rec.valence, rec.split = labels[name]
            yield rec


def merge_stores(out: str | Path, shards: list[str | Path], *, overwrite: bool = False) -> int:
    """Merge shard stores into one, refusing different fingerprints and overlapping clips.

    The result equals, clip for clip, the store one process would have written (both are
    sorted by name). Returns the number of clips.
    """
    out = Path(out)
    shards = [Path(s) for s in shards]
    if not shards:
        raise StoreError("Nothing to merge: give at least one shard store.")
    headers = []
    for shard in shards:
        if not shard.exists():
            raise StoreError(f"Shard store '{shard}' does not exist.")
        with FeatureStore(shard) as store:
            if pending_parts(shard):
                raise StoreError(f"Shard '{shard}' has unmerged parts of an interrupted run; "
                                 "re-run its extraction to complete it first.")
            headers.append((store.fingerprint, store.fields, _header_of(store)))
    first_fp, first_fields, header = headers[0]
    for shard, (fp, fields, _) in zip(shards[1:], headers[1:]):
        if fp != first_fp:
            diffs = "; ".join(diff_fields(first_fields, fields)[:6])
            raise FingerprintMismatchError(
                f"Shard '{shard}' was made with another configuration than '{shards[0]}' "
                f"(fingerprint {fp} vs {first_fp}; differences: {diffs}). Only shards of one "
                "extraction can be merged.")
    if out.exists() and not overwrite:
        raise StoreError(f"'{out}' exists; pass --overwrite to replace it, or another --out.")
    lock = _acquire_lock(out)
    try:
        return _merge(out, header, shards, overlap_ok=False)
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)


def _header_of(store: FeatureStore) -> StoreHeader:
    a = store.attrs
    extras = tuple((n, tuple(shape), dt) for n, shape, dt in json.loads(a.get("frame_extras", "[]")))
    rate = float(a["frame_rate"])
    return StoreHeader(modality=a["modality"], encoder=a["encoder"],
                       encoder_version=a["encoder_version"], fields=store.fields,
                       utterance_shape=store.utterance_shape, frame_dim=store.frame_dim,
                       frame_rate=None if math.isnan(rate) else rate,
                       storage_dtype=a["storage_dtype"], frame_extras=extras)


class StoreWriter:
    """Adds clips to a store, crash-safely; one writer per store at a time (a file lock).

    Parameters
    ----------
    path : path of the store file.
    header : what the store holds; an existing store with another fingerprint is refused
        unless ``overwrite``.
    part_clips, part_bytes, part_seconds : a part file is written once this many clips or bytes
        are buffered, or this many seconds have passed; this bounds the memory a run holds
        whatever the corpus size, and the work a kill can lose.
    """

    def __init__(self, path: str | Path, header: StoreHeader, *, overwrite: bool = False,
                 part_clips: int = 256, part_bytes: int = 64 << 20, part_seconds: float = 60.0):
        self.path = Path(path)
        self.header = header
        self.part_clips = part_clips
        self.part_bytes = part_bytes
        self.part_seconds = part_seconds
        self._last_flush = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = _acquire_lock(self.path)
        try:
            self._clean_temporaries()
            if overwrite:
                self._remove_existing()
            self.done: dict[str, tuple[str, str]] = {}
            """name -> (input_hash, status) of every clip already stored or in a part."""
            self._stored_labels: dict[str, tuple[str, float, str]] = {}
            for source in self._sources():
                self._check_compatible(source)
                for name, h, s, d, v, sp in zip(source.names, source.column("input_hash"),
                                                source.status, source.column("discrete"),
                                                source.column("valence"), source.column("split")):
                    self.done[name] = (h, s)
                    self._stored_labels[name] = (d, float(v), sp)
                source.close()
        except BaseException:
            self._release()
            raise
        self._buffer: list[ClipRecord] = []
        self._buffer_bytes = 0
        self._labels: dict[str, tuple[str, float, str]] = {}
        self._seq = 0
        self.parts_written = 0

    # ------------------------------------------------------------------------------------
    def _sources(self) -> Iterator[FeatureStore]:
        if self.path.exists():
            yield FeatureStore(self.path)
        for part in pending_parts(self.path):
            yield FeatureStore(part)

    def _check_compatible(self, store: FeatureStore) -> None:
        if store.fingerprint == self.header.fingerprint:
            return
        diffs = diff_fields(store.fields, self.header.fields)
        store.close()
        shown = "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else "")
        raise FingerprintMismatchError(
            f"Store '{store.path}' holds features made with another configuration "
            f"(fingerprint {store.fingerprint}, this run {self.header.fingerprint}; differences: "
            f"{shown}). Write to another --out, or pass --overwrite to replace it."
        )

    def _clean_temporaries(self) -> None:
        # Safe: we hold the lock, so any temporary file is a leftover of a killed run.
        for tmp in self.path.parent.glob(f".{self.path.name}.tmp-*"):
            tmp.unlink(missing_ok=True)
        d = parts_dir(self.path)
        if d.is_dir():
            for tmp in d.glob(".part-*"):
                tmp.unlink(missing_ok=True)

    def _remove_existing(self) -> None:
        for part in pending_parts(self.path):
            part.unlink()
        self.path.unlink(missing_ok=True)

    # ------------------------------------------------------------------------------------
    def is_done(self, name: str, input_hash: str, *, retry_failed: bool = False) -> bool:
        """True when ``name`` is stored from the same input (and not failed, if retrying)."""
        entry = self.done.get(name)
        if entry is None or entry[0] != input_hash:
            return False
        return not (retry_failed and entry[1] == "failed")

    def set_labels(self, labels: LabelMap) -> None:
        """Labels to copy into the store for these clips: name -> (discrete, valence, split)."""
        self._labels.update(labels)

    def add(self, rec: ClipRecord) -> None:
        if rec.name in self._labels:
            rec.discrete, rec.valence, rec.split = self._labels[rec.name]
        _check_record(rec, self.header)
        self._buffer.append(rec)
        self._buffer_bytes += rec.nbytes
        self.done[rec.name] = (rec.input_hash, rec.status)
        if (len(self._buffer) >= self.part_clips or self._buffer_bytes >= self.part_bytes
                or time.monotonic() - self._last_flush >= self.part_seconds):
            self.flush()

    def flush(self) -> None:
        """Write the buffered clips as one complete part file."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        d = parts_dir(self.path)
        d.mkdir(exist_ok=True)
        stem = f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}"
        self._seq += 1
        tmp, final = d / f".{stem}.h5", d / f"{stem}.h5"
        rows = sorted(self._buffer, key=lambda r: r.name)
        try:
            _write_store(tmp, self.header, len(rows), rows)
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        _fsync_dir(d)
        self._buffer.clear()
        self._buffer_bytes = 0
        self.parts_written += 1
        store_size = self.path.stat().st_size if self.path.exists() else 0
        pending = sum(p.stat().st_size for p in pending_parts(self.path))
        # Geometric merging: total copying stays within a small multiple of the final size.
        if pending > max(4 * self.part_bytes, store_size):
            self.consolidate()

    def _labels_changed(self) -> bool:
        return any(not _same_label(self._stored_labels[name], value)
                   for name, value in self._labels.items() if name in self._stored_labels)

    def consolidate(self) -> None:
        """Merge the store and all parts into a new store file, sorted by clip name."""
        parts = pending_parts(self.path)
        if not parts and not (self.path.exists() and self._labels_changed()):
            return
        sources = ([self.path] if self.path.exists() else []) + parts
        _merge(self.path, self.header, sources, self._labels)
        for part in parts:
            part.unlink(missing_ok=True)
        self._stored_labels.update({n: v for n, v in self._labels.items()})

    def close(self) -> None:
        """Write what is buffered, merge the parts into the store, release the lock."""
        try:
            self.flush()
            self.consolidate()
            d = parts_dir(self.path)
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        finally:
            self._release()

    def abort(self) -> None:
        """Keep what was written in parts (a later run merges it) and release the lock."""
        try:
            self.flush()
        finally:
            self._release()

    def _release(self) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            os.close(self._lock)
            self._lock = None

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _same_label(a: tuple[str, float, str] | None, b: tuple[str, float, str]) -> bool:
    if a is None:
        return False
    both_nan = math.isnan(a[1]) and math.isnan(b[1])
    return a[0] == b[0] and a[2] == b[2] and (both_nan or a[1] == b[1])


def _acquire_lock(path: Path) -> int:
    """An exclusive flock on STORE.lock; the kernel drops it when the process dies."""
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        finally:
            os.close(fd)
        raise StoreLockedError(
            f"Store '{path}' is being written by another process (pid {holder}; lock "
            f"'{lock_path}'). Wait for it to finish, or write to another --out."
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    return fd
