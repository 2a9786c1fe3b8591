"""The HDF5 feature store: one file per (corpus, modality, encoder configuration).

Layout (schema version 1; ``n`` clips, ``T`` frames over all clips)::

    /                     attrs: schema_version, fingerprint, fingerprint_fields (JSON),
                                 modality, encoder, encoder_version, weights (JSON),
                                 config (JSON), package_version, utterance_shape (JSON),
                                 frame_dim, frame_rate, storage_dtype, frame_extras (JSON)
    /clips/name           (n,) str     sorted, unique
    /clips/status         (n,) str     "ok", "failed", "empty" or "missing"
    /clips/stage          (n,) str     where a failure happened ("" when ok)
    /clips/reason         (n,) str     why ("" when ok)
    /clips/input_hash     (n,) str     content hash of the clip's input (media file or text)
    /clips/duration       (n,) f8      seconds of decoded input (NaN when unknown)
    /clips/info           (n,) str     JSON with per-clip extras (noise draws, face stats...)
    /clips/discrete       (n,) str     label copied from the manifest ("" when none)
    /clips/valence        (n,) f4      label copied from the manifest (NaN when none)
    /clips/split          (n,) str     copied from the manifest ("" when none)
    /utterance            (n, *utterance_shape)   zeros for clips that are not "ok"
    /frames/offset        (n,) i8      first row of the clip in /frames/data
    /frames/length        (n,) i8      its number of frames
    /frames/data          (T, frame_dim)
    /frames/time          (T,) f4      frame centre times in seconds
    /frames/<extra>       (T, ...)     optional per-frame extras named in the frame_extras
                                       attribute (video: face box, detection prob, has_face)

Columns of one clip share one row index, so reading all utterance vectors is one slice and
never touches the frame matrices.

Crash safety: the store file is only ever replaced whole, by renaming a complete temporary file
over it. While a run goes on, finished clips are written in small *parts*
(``STORE.parts/part-*.h5``, each itself written to a temporary name and renamed), which are
merged into the store at the end of the run, and along the way when they grow as large as the
store. A killed run therefore leaves the last complete store plus complete parts; the next run
merges them, and merging the same part twice gives the same result.
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mer_features import __version__
from mer_features.errors import FingerprintMismatchError, StoreError, StoreLockedError
from mer_features.fingerprint import diff_fields, fingerprint

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "empty", "missing")
_STR = h5py.string_dtype("utf-8")
_STR_COLUMNS = ("name", "status", "stage", "reason", "input_hash", "info", "discrete", "split")
_BLOCK = 1024


@dataclass(frozen=True)
class StoreHeader:
    """Store-level description; ``fields`` are the fingerprinted fields."""

    modality: str
    encoder: str
    encoder_version: str
    fields: dict[str, Any]
    utterance_shape: tuple[int, ...]
    frame_dim: int
    frame_rate: float | None
    storage_dtype: str = "float32"
    frame_extras: tuple[tuple[str, tuple[int, ...], str], ...] = ()
    """Per-frame extras: (name, trailing shape, dtype), stored as /frames/<name> (T, *shape)."""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.fields)

    def attrs(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "fingerprint": self.fingerprint,
            "fingerprint_fields": json.dumps(self.fields, sort_keys=True),
            "modality": self.modality,
            "encoder": self.encoder,
            "encoder_version": self.encoder_version,
            "weights": json.dumps(self.fields.get("weights"), sort_keys=True),
            "config": json.dumps(self.fields.get("config"), sort_keys=True),
            "package_version": __version__,
            "utterance_shape": json.dumps(list(self.utterance_shape)),
            "frame_dim": int(self.frame_dim),
            "frame_rate": float("nan") if self.frame_rate is None else float(self.frame_rate),
            "storage_dtype": self.storage_dtype,
            "frame_extras": json.dumps([[n, list(shape), dt] for n, shape, dt in self.frame_extras]),
        }


@dataclass
class ClipRecord:
    """One clip's result, as written to a store.

    ``utterance`` has shape ``utterance_shape``; ``frames`` has shape (n_frames, frame_dim) and
    ``frame_times`` (n_frames,). Clips that are not ``ok`` may leave all three None.
    """

    name: str
    status: str = "ok"
    stage: str = ""
    reason: str = ""
    utterance: np.ndarray | None = None
    frames: np.ndarray | None = None
    frame_times: np.ndarray | None = None
    frame_extras: dict[str, np.ndarray] = field(default_factory=dict)
    input_hash: str = ""
    duration: float = math.nan
    info: dict[str, Any] = field(default_factory=dict)
    discrete: str = ""
    valence: float = math.nan
    split: str = ""

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.utterance, self.frames, self.frame_times) if a is not None)


# --------------------------------------------------------------------------------------------
# Reading


class FeatureStore:
    """Read-only view of a feature store.

    >>> with FeatureStore("audio.h5") as store:            # doctest: +SKIP
    ...     X = store.utterances()                          # (n, dim) float32
    ...     times, frames = store.frames(store.names[0])    # (n_frames,), (n_frames, frame_dim)
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            parts = pending_parts(self.path)
            extra = (f" {len(parts)} part file(s) of an interrupted run are waiting in "
                     f"'{parts_dir(self.path)}': re-run the same extraction to complete it."
                     if parts else "")
            raise StoreError(f"Feature store '{self.path}' does not exist.{extra}")
        self._file = _open_h5(self.path)
        try:
            self.attrs = _check_schema(self._file, self.path)
            clips = self._file["clips"]
            self.names: list[str] = list(clips["name"].asstr()[()])
        except (KeyError, OSError, ValueError) as e:
            self._file.close()
            raise StoreError(f"Feature store '{self.path}' is damaged or incomplete ({e}). "
                             "Move it away and extract again.") from e
        except BaseException:
            self._file.close()
            raise
        self._index = {name: i for i, name in enumerate(self.names)}

    # context manager -------------------------------------------------------------------
    def __enter__(self) -> FeatureStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    # header ----------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        return self.attrs["fingerprint"]

    @property
    def modality(self) -> str:
        return self.attrs["modality"]

    @property
    def encoder(self) -> str:
        return self.attrs["encoder"]

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.attrs["config"])

    @property
    def fields(self) -> dict[str, Any]:
        return json.loads(self.attrs["fingerprint_fields"])

    @property
    def utterance_shape(self) -> tuple[int, ...]:
        return tuple(json.loads(self.attrs["utterance_shape"]))

    @property
    def frame_dim(self) -> int:
        return int(self.attrs["frame_dim"])

    # rows --------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def index(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise StoreError(f"Clip '{name}' is not in store '{self.path}'.") from None

    def column(self, name: str) -> np.ndarray:
        """A per-clip column of /clips (str columns as an object array of str)."""
        ds = self._file["clips"][name]
        if name in _STR_COLUMNS:
            return np.asarray(ds.asstr()[()], dtype=object)
        return ds[()]

    @property
    def status(self) -> np.ndarray:
        return self.column("status")

    def utterances(self, names: Iterable[str] | None = None) -> np.ndarray:
        """Utterance vectors as float32, shape (n, *utterance_shape), in store or ``names`` order."""
        ds = self._file["utterance"]
        if names is None:
            return ds[()].astype(np.float32, copy=False)
        idx = np.array([self.index(n) for n in names], dtype=np.int64)
        if len(idx) == 0:
            return np.zeros((0, *ds.shape[1:]), np.float32)
        order = np.argsort(idx)
        out = np.empty((len(idx), *ds.shape[1:]), np.float32)
        out[order] = ds[idx[order]]  # h5py wants increasing indices
        return out

    def frames(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Frame times (n_frames,) and frame matrix (n_frames, frame_dim) of one clip, float32."""
        i = self.index(name)
        start = int(self._file["frames/offset"][i])
        stop = start + int(self._file["frames/length"][i])
        return (self._file["frames/time"][start:stop].astype(np.float32),
                self._file["frames/data"][start:stop].astype(np.float32))

    @property
    def frame_extra_names(self) -> list[str]:
        return [entry[0] for entry in json.loads(self.attrs.get("frame_extras", "[]"))]

    def frame_extra(self, name: str, key: str) -> np.ndarray:
        """One clip's per-frame extra ``key`` (see ``frame_extra_names``), shape (n_frames, ...)."""
        if key not in self.frame_extra_names:
            raise StoreError(f"Store '{self.path}' has no per-frame '{key}'; it has "
                             f"{', '.join(self.frame_extra_names) or 'none'}.")
        i = self.index(name)
        start = int(self._file["frames/offset"][i])
        stop = start + int(self._file["frames/length"][i])
        return self._file["frames"][key][start:stop]

    def labels(self) -> dict[str, np.ndarray]:
        """``discrete`` (str, "" when none), ``valence`` (float, NaN when none), ``split``."""
        return {c: self.column(c) for c in ("discrete", "valence", "split")}

    def record(self, name: str, *, with_arrays: bool = True) -> ClipRecord:
        i = self.index(name)
        clips = self._file["clips"]
        rec = ClipRecord(
            name=name,
            status=clips["status"].asstr()[i], stage=clips["stage"].asstr()[i],
            reason=clips["reason"].asstr()[i], input_hash=clips["input_hash"].asstr()[i],
            duration=float(clips["duration"][i]), info=json.loads(clips["info"].asstr()[i] or "{}"),
            discrete=clips["discrete"].asstr()[i], valence=float(clips["valence"][i]),
            split=clips["split"].asstr()[i],
        )
        if with_arrays:
            rec.utterance = self._file["utterance"][i].astype(np.float32)
            rec.frame_times, rec.frames = self.frames(name)
            rec.frame_extras = {k: self.frame_extra(name, k) for k in self.frame_extra_names}
        return rec

    def failures(self) -> list[tuple[str, str, str, str]]:
        """``(name, status, stage, reason)`` of every clip that is not ``ok``."""
        status = self.status
        bad = np.flatnonzero(status != "ok")
        stage, reason = self.column("stage"), self.column("reason")
        return [(self.names[i], status[i], stage[i], reason[i]) for i in bad]

    def summary(self) -> dict[str, Any]:
        """What ``mer-features info`` prints."""
        status = self.status
        counts = {s: int((status == s).sum()) for s in STATUSES}
        return {
            "path": str(self.path),
            "clips": len(self),
            "status": counts,
            "modality": self.modality,
            "encoder": self.encoder,
            "encoder_version": self.attrs["encoder_version"],
            "utterance_shape": list(self.utterance_shape),
            "frame_dim": self.frame_dim,
            "frame_rate": None if math.isnan(self.attrs["frame_rate"]) else self.attrs["frame_rate"],
            "frames_total": int(self._file["frames/data"].shape[0]),
            "frame_extras": self.frame_extra_names,
            "storage_dtype": self.attrs["storage_dtype"],
            "fingerprint": self.fingerprint,
            "schema_version": int(self.attrs["schema_version"]),
            "package_version": self.attrs["package_version"],
            "weights": json.loads(self.attrs["weights"]),
            "config": self.config,
            "fingerprint_fields": self.fields,
            "labelled": int((self.column("discrete") != "").sum()),
            "pending_parts": len(pending_parts(self.path)),
            "failures": [
                {"name": n, "status": s, "stage": st, "reason": r}
                for n, s, st, r in self.failures()
            ],
        }


def _open_h5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise StoreError(
            f"'{path}' cannot be opened as an HDF5 feature store ({e}). It may be truncated or "
            "not a store: move it away, or extract again with --overwrite."
        ) from e


def _check_schema(f: h5py.File, path: Path) -> dict[str, Any]:
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    if "schema_version" not in attrs or "fingerprint" not in attrs:
        raise StoreError(f"'{path}' is an HDF5 file but not a mer_features store (no schema "
                         "attributes). Move it away or pick another --out.")
    version = int(attrs["schema_version"])
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"Store '{path}' has schema version {version}; this mer_features "
            f"({__version__}) reads version {SCHEMA_VERSION}. Extract again with --overwrite, or "
            "use the mer_features release that wrote it."
        )
    for name in ("clips/name", "utterance", "frames/offset", "frames/data", "frames/time"):
        if name not in f:
            raise StoreError(f"Store '{path}' lacks '/{name}'; it is damaged. Move it away and "
                             "extract again.")
    return attrs


# --------------------------------------------------------------------------------------------
# Writing


def parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def pending_parts(path: Path) -> list[Path]:
    """Complete part files waiting to be merged into the store at ``path``, oldest first."""
    d = parts_dir(Path(path))
    return sorted(d.glob("part-*.h5")) if d.is_dir() else []


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
