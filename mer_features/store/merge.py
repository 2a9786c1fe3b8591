"""Merging stores and parts into one store file, sorted by clip name, leaving out clips that
fail their checksums (:mod:`.checksums`), and ``mer-features merge`` of shard stores."""

from __future__ import annotations

import fcntl
import json
import math
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mer_features.errors import FingerprintMismatchError, StoreError
from mer_features.fingerprint import diff_fields, same_features, with_added_fields
from mer_features.store.checksums import (STR_COLUMNS, Checker, Damage, damaged_names, decode,
                                          read_rows, read_strings)
from mer_features.store.disk import WRITE_ERRORS, acquire_lock, listing, store_path, write_error
from mer_features.store.hdf5 import write_store_file
from mer_features.store.reader import FeatureStore, pending_parts
from mer_features.store.schema import BLOCK, ClipRecord, StoreHeader


class _Source:
    """An open store or part file being read for a merge: its small columns read once,
    tolerating damaged cells, and the rows not to copy.

    ``scan`` checks every clip against its checksums first (:class:`.checksums.Checker`);
    ``skip`` are rows already known to be damaged (from a scan when the writer opened). Rows
    in a chunk that fails its check are read from the chunk's raw bytes only when a scan has
    vouched for them; otherwise such a chunk is an error.
    """

    def __init__(self, path: Path, *, scan: bool = False, skip: set[int] | None = None):
        self.path = path
        self.store = FeatureStore(path, check=False)
        try:
            f = self.store._file
            n = len(self.store.names)
            raw = {c: read_strings(f["clips"][c]) if c in f["clips"] else [b""] * n
                   for c in STR_COLUMNS}  # an optional column this store predates: empty
            self.damage = Damage()
            if scan and self.store.checksummed:
                self.damage = Checker(f, raw["name"]).scan()
            self.vouched = self.store.checksummed and (scan or skip is not None)
            self.skip = set(self.damage.rows) | set(skip or ())
            self.cols: dict[str, Any] = {c: decode(v) for c, v in raw.items()}
            self.cols["duration"] = read_rows(f["clips/duration"], 0, n)[0]
            self.cols["valence"] = read_rows(f["clips/valence"], 0, n)[0]
            self.offset = read_rows(f["frames/offset"], 0, n)[0]
            self.length = read_rows(f["frames/length"], 0, n)[0]
            self.utt = f["utterance"]
            self.data = f["frames/data"]
            self.time = f["frames/time"]
            self.extras = {name: f["frames"][name] for name in self.store.frame_extra_names}
        except BaseException:
            self.store.close()
            raise

    @property
    def names(self) -> list[str]:
        return self.cols["name"]

    def damaged(self) -> list[str]:
        return damaged_names(self.damage, self.names)

    def close(self) -> None:
        self.store.close()

    def _rows(self, ds: h5py.Dataset, lo: int, hi: int) -> np.ndarray:
        block, bad = read_rows(ds, lo, hi)
        if bad and not self.vouched:  # unchecked rows (format 1, or damaged since the scan)
            raise StoreError(f"'{self.path}' cannot be read: /{ds.name[1:]} is damaged. Move it "
                             "away and re-run the same extraction (finished parts are kept).")
        return block

    def read(self, rows: list[int], with_arrays: bool = True) -> Iterator[ClipRecord]:
        """Records at increasing row indices, reading each array range once."""
        if not rows:
            return
        lo, hi = rows[0], rows[-1] + 1
        if with_arrays:
            utt = self._rows(self.utt, lo, hi)
            f_lo = int(self.offset[lo])
            f_hi = int(self.offset[hi - 1] + self.length[hi - 1])
            data, times = self._rows(self.data, f_lo, f_hi), self._rows(self.time, f_lo, f_hi)
            extras = {name: self._rows(ds, f_lo, f_hi) for name, ds in self.extras.items()}
        for i in rows:
            c = self.cols
            rec = ClipRecord(
                name=c["name"][i], status=c["status"][i], stage=c["stage"][i],
                reason=c["reason"][i], input_hash=c["input_hash"][i],
                duration=float(c["duration"][i]), info=json.loads(c["info"][i] or "{}"),
                discrete=c["discrete"][i], valence=float(c["valence"][i]), split=c["split"][i],
                extra=json.loads(c["extra"][i] or "{}"),
            )
            if with_arrays:
                rec.utterance = utt[i - lo]
                s = int(self.offset[i]) - f_lo
                rec.frames = data[s:s + int(self.length[i])]
                rec.frame_times = times[s:s + int(self.length[i])]
                rec.frame_extras = {name: a[s:s + int(self.length[i])] for name, a in extras.items()}
            yield rec


LabelMap = Mapping[str, tuple]
"""Clip name -> (discrete, valence, split) or (discrete, valence, split, extra): the labels, and
the manifest's other columns (a dict; None or left out: keep the stored ones)."""


def apply_labels(rec: ClipRecord, labels: tuple) -> None:
    """Set ``rec``'s labels (and extra columns, when given) from a :data:`LabelMap` value."""
    rec.discrete, rec.valence, rec.split = labels[:3]
    if len(labels) > 3 and labels[3] is not None:
        rec.extra = dict(labels[3])


def _merge(path: Path, header: StoreHeader, sources: list[tuple[Path, set[int] | None]],
           labels: LabelMap | None = None, *, keep: set[str] | None = None,
           overlap_ok: bool = True) -> list[str]:
    """Write the clips of ``sources`` as one store at ``path``, sorted by name.

    Each source is (path, rows to leave out, or None when the file was not scanned). A clip in
    several sources is taken from the last one (parts are newer than the store), unless
    ``overlap_ok`` is false, which refuses overlaps. ``labels`` override the stored labels of
    the clips they name; ``keep``, when given, drops every other clip. Returns the names written.
    """
    opened: list[_Source] = []
    try:
        where: dict[str, tuple[int, int]] = {}
        for si, (source_path, skip) in enumerate(sources):
            opened.append(_Source(source_path, skip=skip))
            source = opened[-1]
            for ri, name in enumerate(source.names):
                if ri in source.skip or (keep is not None and name not in keep):
                    continue
                if not overlap_ok and name in where:
                    raise StoreError(f"Clip '{name}' is in both '{sources[where[name][0]][0]}' and "
                                     f"'{source_path}'; shards must not overlap.")
                where[name] = (si, ri)
        names = sorted(where)
        write_store_file(path, header, len(names), _merged_rows(opened, where, names, labels or {}))
    finally:
        for src in opened:
            src.close()
    return names


def _merged_rows(sources: list[_Source], where: dict[str, tuple[int, int]], names: list[str],
                 labels: LabelMap) -> Iterator[ClipRecord]:
    for start in range(0, len(names), BLOCK):
        block = names[start:start + BLOCK]
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
                apply_labels(rec, labels[name])
            yield rec


def merge_stores(out: str | Path, shards: list[str | Path], *, overwrite: bool = False) -> int:
    """Merge shard stores into one, refusing different fingerprints, overlapping clips and
    damaged shards (shards stamped before a field joined the fingerprint count as equal, and
    the merged store carries the full fields).

    The result equals, clip for clip, the store one process would have written (both are
    sorted by name). Returns the number of clips.
    """
    out = store_path(out)
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
        if fp != first_fp and not same_features(first_fields, fields):
            diffs = "; ".join(diff_fields(with_added_fields(first_fields),
                                          with_added_fields(fields))[:6])
            raise FingerprintMismatchError(
                f"Shard '{shard}' was made with another configuration than '{shards[0]}' "
                f"(fingerprint {fp} vs {first_fp}; differences: {diffs}). Only shards of one "
                "extraction can be merged.")
    for shard in shards:
        source = _Source(shard, scan=True)
        source.close()
        if source.damage.rows:
            lost = source.damaged()
            raise StoreError(f"Shard '{shard}' is damaged: {len(lost)} clip(s) fail their "
                             f"checksums ({listing(lost)}). Re-run that shard's extraction (it "
                             "extracts them again), then merge.")
    if out.exists() and not overwrite:
        raise StoreError(f"'{out}' exists; pass `overwrite` to replace it, or another `out`.")
    lock = acquire_lock(out)
    try:
        try:
            return len(_merge(out, header, [(s, set()) for s in shards], overlap_ok=False))
        except WRITE_ERRORS as e:
            raise write_error(e, out.parent, f"merging {len(shards)} shard(s) into '{out}'",
                               "The shards are unchanged.") from e
    finally:
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)


def _header_of(store: FeatureStore) -> StoreHeader:
    a = store.attrs
    extras = tuple((n, tuple(shape), dt) for n, shape, dt in json.loads(a.get("frame_extras", "[]")))
    rate = float(a["frame_rate"])
    return StoreHeader(modality=a["modality"], encoder=a["encoder"],
                       encoder_version=a["encoder_version"],
                       fields=with_added_fields(store.fields),
                       utterance_shape=store.utterance_shape, frame_dim=store.frame_dim,
                       frame_rate=None if math.isnan(rate) else rate,
                       storage_dtype=a["storage_dtype"], frame_extras=extras,
                       classes=store.recorded_classes or ())
