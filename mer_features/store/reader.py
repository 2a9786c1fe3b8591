"""Reading the HDF5 feature store; its layout (this docstring) and header.

One file per (corpus, modality, encoder configuration).

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

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mer_features import __version__
from mer_features.errors import StoreError
from mer_features.fingerprint import fingerprint

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
