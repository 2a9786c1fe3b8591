"""The locked :class:`StoreWriter` that extraction appends through: crash-safe parts merged
into the store (layout: :mod:`.schema`; files: :mod:`.hdf5`; merging: :mod:`.merge`).

Faults end in one :class:`StoreError` line and leave the store whole: a full disk or an
unwritable folder while a part or a merge is written (the store and earlier parts are
untouched), parts deleted while a run goes on (the store keeps what is left and the error
counts the clips lost), and damaged data in an existing store (its clips are extracted again
instead of being copied on).
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from mer_features.errors import FingerprintMismatchError, StoreError
from mer_features.fingerprint import diff_fields, same_features, with_added_fields
from mer_features.store.disk import WRITE_ERRORS, acquire_lock, listing, store_path, write_error
from mer_features.store.hdf5 import _check_record, json_cell, storage_problem, write_store_file
from mer_features.store.merge import LabelMap, _merge, _Source, apply_labels
from mer_features.store.reader import FeatureStore, parts_dir, pending_parts
from mer_features.store.schema import ClipRecord, StoreHeader


class StoreWriter:
    """Adds clips to a store, crash-safely; one writer per store at a time (a file lock).

    Parameters
    ----------
    path : path of the store file; a symlink is followed (the real file is written).
    header : what the store holds; an existing store with another fingerprint is refused
        unless ``overwrite`` (one that lacks only fields added to the fingerprint later, with
        the values it was made with, is accepted and re-stamped when the writer closes).
    part_clips, part_bytes, part_seconds : a part file is written once this many clips or bytes
        are buffered, or this many seconds have passed; this bounds the memory a run holds
        whatever the corpus size, and the work a kill can lose.

    On opening, the existing store and parts are checked against their checksums; clips that
    fail are left out of ``done`` (so extraction does them again), listed in ``damaged``, and
    never copied into the merged store. A store of format 1 (no checksums) is rewritten with
    them when the writer closes.
    """

    def __init__(self, path: str | Path, header: StoreHeader, *, overwrite: bool = False,
                 part_clips: int = 256, part_bytes: int = 64 << 20, part_seconds: float = 60.0):
        self.given = Path(path)
        self.path = store_path(path)
        self.header = header
        self.part_clips = part_clips
        self.part_bytes = part_bytes
        self.part_seconds = part_seconds
        self._last_flush = time.monotonic()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise write_error(e, self.path.parent, f"creating the folder of store '{self.path}'",
                               "Nothing was written.") from e
        self._lock: int | None = acquire_lock(self.path)
        self.done: dict[str, tuple[str, str]] = {}
        """name -> (input_hash, status) of every clip already stored or in a part."""
        self.damaged: list[str] = []
        """Clips of the existing store or parts that fail their checksums (done again)."""
        self.dropped = 0
        """Clips removed by :meth:`restrict_to` with ``prune``."""
        self._stored_labels: dict[str, tuple[str, float, str, str]] = {}
        """name -> (discrete, valence, split, extra as its JSON cell) of what is stored."""
        self._skip: dict[Path, set[int]] = {}
        self._in_store: set[str] = set()
        self._in_parts: set[str] = set()
        self._rewrite = False
        self._keep: set[str] | None = None
        self._lost: list[str] = []
        self._broken = False
        try:
            self._clean_temporaries()
            if overwrite:
                self._remove_existing()
            for source_path in self._source_paths():
                self._open_source(source_path)
        except BaseException:
            self._release()
            raise
        self._buffer: list[ClipRecord] = []
        self._buffer_bytes = 0
        self._labels: dict[str, tuple] = {}
        self._seq = 0
        self.parts_written = 0

    # ------------------------------------------------------------------------------------
    def _source_paths(self) -> list[Path]:
        return ([self.path] if self.path.exists() else []) + pending_parts(self.path)

    def _open_source(self, path: Path) -> None:
        with FeatureStore(path, check=False) as store:
            self._check_compatible(store)
            if path == self.path and (store.recorded_classes or ()) != tuple(self.header.classes):
                self._rewrite = True  # the label set changed: the store records the new one
        source = _Source(path, scan=True)
        try:
            self._skip[path] = source.skip
            if source.damage:
                self._rewrite = True  # a failed chunk sum is repaired even when its rows are fine
            if not source.store.checksummed:
                self._rewrite = True  # format 1: add the checksums
            self.damaged.extend(n for n in source.damaged() if n not in self.damaged)
            c = source.cols
            for i, name in enumerate(source.names):
                if i in source.skip:
                    continue
                self.done[name] = (c["input_hash"][i], c["status"][i])
                self._stored_labels[name] = (c["discrete"][i], float(c["valence"][i]),
                                             c["split"][i], c["extra"][i])
                (self._in_store if path == self.path else self._in_parts).add(name)
        finally:
            source.close()

    def _check_compatible(self, store: FeatureStore) -> None:
        if store.fingerprint == self.header.fingerprint:
            return
        if same_features(store.fields, self.header.fields):
            self._rewrite = True  # stamped before a field joined the fingerprint: re-stamp it
            return
        diffs = diff_fields(with_added_fields(store.fields), self.header.fields)
        shown = "; ".join(diffs[:6]) + (" ..." if len(diffs) > 6 else "")
        raise FingerprintMismatchError(
            f"Store '{store.path}' holds features made with another configuration "
            f"(fingerprint {store.fingerprint}, this run {self.header.fingerprint}; differences: "
            f"{shown}). Write to another `out`, or pass `overwrite` to replace it."
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
        if self.path.is_dir():  # never: store_path refuses directories; kept as a guard
            raise StoreError(f"'{self.path}' is a directory; `overwrite` replaces store files "
                             "only.")
        try:
            self.path.unlink(missing_ok=True)
        except OSError as e:
            raise write_error(e, self.path.parent, f"removing '{self.path}' for `overwrite`",
                               "Nothing was removed.") from e

    # ------------------------------------------------------------------------------------
    def is_done(self, name: str, input_hash: str, *, retry_failed: bool = False) -> bool:
        """True when ``name`` is stored from the same input (and not failed, if retrying)."""
        entry = self.done.get(name)
        if entry is None or entry[0] != input_hash:
            return False
        return not (retry_failed and entry[1] == "failed")

    def restrict_to(self, names: Iterable[str], *, prune: bool = False, source: str = "") -> int:
        """Keep the store to ``names`` (the clips of the manifest being extracted).

        When the store or its parts hold other clips, raise a StoreError naming them, or, with
        ``prune``, drop them from the store when it is next merged. Returns how many are dropped.
        """
        keep = set(names)
        extra = sorted(set(self.done) - keep)
        if not extra:
            return 0
        if not prune:
            raise StoreError(
                f"Store '{self.given}' holds {len(extra)} clip(s) that {source or 'the manifest'} "
                f"does not list ({listing(extra)}); a store holds only the clips of the manifest "
                "it was last extracted from. Pass `prune` to drop them, or write to another `out`.")
        for name in extra:
            del self.done[name]
            self._stored_labels.pop(name, None)
        self._keep = keep
        self._rewrite = True
        self.dropped = len(extra)
        return self.dropped

    def set_labels(self, labels: LabelMap) -> None:
        """Labels to copy into the store for these clips: name -> (discrete, valence, split)
        or (discrete, valence, split, extra), ``extra`` the manifest's other columns (a dict of
        str; without it the stored ones are kept). A store whose stored labels or extra columns
        differ is rewritten when the writer closes (no encoder work)."""
        self._labels.update(labels)

    def storage_problem(self, *arrays: np.ndarray | None) -> str | None:
        """Why these feature arrays cannot be stored in this store's dtype, or None."""
        return storage_problem(self.header, *arrays)

    def add(self, rec: ClipRecord) -> None:
        if rec.name in self._labels:
            apply_labels(rec, self._labels[rec.name])
        rec.reason = rec.reason.replace("\x00", "\\0")
        _check_record(rec, self.header)
        if rec.status == "ok":
            problem = storage_problem(self.header, rec.utterance, rec.frames)
            if problem is not None:
                rec = ClipRecord(name=rec.name, status="failed", stage="store", reason=problem,
                                 input_hash=rec.input_hash, duration=rec.duration, info=rec.info,
                                 discrete=rec.discrete, valence=rec.valence, split=rec.split,
                                 extra=rec.extra)
        self._buffer.append(rec)
        self._buffer_bytes += rec.nbytes
        self.done[rec.name] = (rec.input_hash, rec.status)
        if (len(self._buffer) >= self.part_clips or self._buffer_bytes >= self.part_bytes
                or time.monotonic() - self._last_flush >= self.part_seconds):
            self.flush()

    def _kept(self, unwritten: int) -> str:
        parts = len(pending_parts(self.path))
        return (f"Kept: {len(self._in_store | self._in_parts)} clip(s) in '{self.given}'"
                + (f" and its {parts} part file(s)" if parts else "")
                + (f"; the {unwritten} clip(s) not yet written will be extracted again."
                   if unwritten else "."))

    def flush(self) -> None:
        """Write the buffered clips as one complete part file."""
        self._last_flush = time.monotonic()
        if not self._buffer:
            return
        d = parts_dir(self.path)
        stem = f"part-{time.time_ns():020d}-{os.getpid()}-{self._seq:06d}"
        self._seq += 1
        rows = sorted(self._buffer, key=lambda r: r.name)
        try:
            d.mkdir(exist_ok=True)
            write_store_file(d / f"{stem}.h5", self.header, len(rows), rows)
        except WRITE_ERRORS as e:
            self._broken = True
            raise write_error(e, d, f"writing a part file of {len(rows)} clip(s)",
                               self._kept(len(rows))) from e
        self._in_parts.update(r.name for r in rows)
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
        """Merge the store and all parts into a new store file, sorted by clip name.

        Clips that were stored or written in parts but are gone (parts deleted while the run
        went on) are counted; :meth:`close` then raises.
        """
        parts = pending_parts(self.path)
        if not parts and not (self.path.exists() and (self._labels_changed() or self._rewrite)):
            self._count_lost(self._in_store if self.path.exists() else set())
            return
        sources = ([self.path] if self.path.exists() else []) + parts
        try:
            names = _merge(self.path, self.header, [(p, self._skip.get(p)) for p in sources],
                           self._labels, keep=self._keep)
        except WRITE_ERRORS as e:
            self._broken = True
            raise write_error(
                e, self.path.parent, f"merging {len(parts)} part file(s) into '{self.given}'",
                f"The store and its part files are unchanged "
                f"({len(self._in_store | self._in_parts)} clip(s) kept); "
                "the parts are merged when the run is repeated.") from e
        for part in parts:
            part.unlink(missing_ok=True)
        self._skip = {}
        self._rewrite = False
        self._stored_labels.update({n: _stored_form(v, self._stored_labels.get(n))
                                    for n, v in self._labels.items()})
        self._count_lost(set(names))

    def _count_lost(self, present: set[str]) -> None:
        lost = sorted(set(self.done) - present - {r.name for r in self._buffer})
        for name in lost:
            del self.done[name]
        self._lost.extend(lost)
        self._in_store = set(present)
        self._in_parts = set()

    def close(self) -> None:
        """Write what is buffered, merge the parts into the store, release the lock.

        Raises a StoreError when clips this writer knew to be written are not in the merged
        store (their part files were deleted while it ran); the store is consistent then.
        """
        try:
            self.flush()
            self.consolidate()
            d = parts_dir(self.path)
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        finally:
            self._release()
        if self._lost:
            raise StoreError(
                f"{len(self._lost)} clip(s) written to '{parts_dir(self.given)}' or the store are "
                f"gone ({listing(self._lost)}): files there were deleted while the run went on. "
                f"The store '{self.given}' is consistent and holds {len(self._in_store)} clip(s); "
                "re-run the same extraction to extract the lost clips again.")

    def abort(self) -> None:
        """Keep what was written in parts (a later run merges it) and release the lock.

        Called while another error stops the run: a write that fails here (the disk that just
        filled up) is not retried and is left to that error to report.
        """
        try:
            if not self._broken:
                self.flush()
        except StoreError:
            pass
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


def _stored_form(given: tuple, stored: tuple | None) -> tuple[str, float, str, str]:
    """A :data:`LabelMap` value as ``_stored_labels`` keeps it (extra as its JSON cell; kept
    from ``stored`` when not given)."""
    if len(given) > 3 and given[3] is not None:
        extra = json_cell(dict(given[3]))
    else:
        extra = stored[3] if stored is not None else ""
    return (*given[:3], extra)


def _same_label(a: tuple[str, float, str, str] | None, b: tuple) -> bool:
    if a is None:
        return False
    both_nan = math.isnan(a[1]) and math.isnan(b[1])
    same_extra = len(b) <= 3 or b[3] is None or a[3] == json_cell(dict(b[3]))
    return a[0] == b[0] and a[2] == b[2] and (both_nan or a[1] == b[1]) and same_extra
