"""Reading a feature store (:class:`FeatureStore`; layout: :mod:`.schema`) and finding the
part files of an interrupted run."""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from mer_features import __version__
from mer_features.errors import StoreError, first_line
from mer_features.store.checksums import (CHECKSUM, OPTIONAL_COLUMNS, STR_COLUMNS, Checker,
                                          Damage, damaged_names, decode, little_endian,
                                          read_strings, string_crcs)
from mer_features.store.guard import check_metadata
from mer_features.store.schema import SCHEMA_VERSION, STATUSES, ClipRecord


class FeatureStore:
    """Read-only view of a feature store.

    >>> with FeatureStore("audio.h5") as store:            # doctest: +SKIP
    ...     X = store.utterances()                          # (n, dim) float32
    ...     times, frames = store.frames(store.names[0])    # (n_frames,), (n_frames, frame_dim)
    """

    def __init__(self, path: str | Path, *, check: bool = True):
        """``check=False`` skips checking the clip names against their checksums on opening
        (for ``verify`` and writers, which check every clip themselves)."""
        self.path = Path(path)
        if not self.path.exists():
            parts = pending_parts(self.path)
            extra = (f" {len(parts)} part file(s) of an interrupted run are waiting in "
                     f"'{parts_dir(self.path)}': re-run the same extraction to complete it."
                     if parts else "")
            raise StoreError(f"Feature store '{self.path}' does not exist.{extra}")
        if self.path.is_dir():
            raise StoreError(f"'{self.path}' is a directory, not a feature store; give the "
                             "store's .h5 file.")
        self._file = _open_h5(self.path)
        try:
            self.attrs = _check_schema(self._file, self.path)
            self.format_version = int(self.attrs.get("format_version", 1))
            self.checksummed = self.format_version >= 2 and CHECKSUM in self._file
            self._crc_columns: list[str] = (json.loads(self._file[CHECKSUM].attrs["columns"])
                                            if self.checksummed else [])
            names = self._file["clips"]["name"]
            self.names: list[str] = []
            if not check:  # a damaged cell must not stop those who check every clip themselves
                self.names = decode(read_strings(names))
            else:
                try:
                    self.names = _read_names(names)
                except (OSError, RuntimeError, UnicodeDecodeError) as e:
                    self.names = decode(read_strings(names))
                    raise self._damage_error("clips/name", self._locate("clips/name", None),
                                             e) from e
                if self.checksummed and names.dtype.kind != "S":  # not covered by fletcher32
                    self._check_strings("name", self.names, 0)
        except StoreError:
            self._file.close()
            raise
        except (KeyError, OSError, ValueError) as e:
            self._file.close()
            raise StoreError(f"Feature store '{self.path}' is damaged or incomplete "
                             f"({first_line(e)}). Move it away and extract again.") from e
        except BaseException:
            self._file.close()
            raise
        self._index = dict(zip(self.names, range(len(self.names))))

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

    @property
    def recorded_classes(self) -> tuple[str, ...] | None:
        """The label set the extraction recorded, in order (the ``classes`` attribute), or
        None: MER 2023's six, or a store written before label sets were recorded."""
        text = self.attrs.get("classes")
        return None if not text else tuple(json.loads(text))

    @property
    def classes(self) -> tuple[str, ...]:
        """The store's label set in order: the recorded one, else by the rule of
        :func:`mer_features.corpora.classes.label_set` from its labels."""
        from mer_features.corpora.classes import label_set

        return label_set(self.column("discrete"), recorded=self.recorded_classes)

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
        """A per-clip column of /clips (str columns as an object array of str; an optional
        column the store predates, such as ``extra``, as "" for every clip)."""
        if name in OPTIONAL_COLUMNS and name not in self._file["clips"]:
            return np.full(len(self), "", dtype=object)
        ds = self._file["clips"][name]
        if name in STR_COLUMNS:
            values = self._read(f"clips/{name}", lambda: ds.asstr()[()])
            if self.checksummed:
                self._check_strings(name, values, 0)
            return np.asarray(values, dtype=object)
        return self._read(f"clips/{name}", lambda: ds[()])

    @property
    def status(self) -> np.ndarray:
        return self.column("status")

    def utterances(self, names: Iterable[str] | None = None) -> np.ndarray:
        """Utterance vectors as float32, shape (n, *utterance_shape), in store or ``names`` order."""
        ds = self._file["utterance"]
        if names is None:
            return self._read("utterance", lambda: _read_float32(ds), (0, len(self)))
        idx = np.array([self.index(n) for n in names], dtype=np.int64)
        if len(idx) == 0:
            return np.zeros((0, *ds.shape[1:]), np.float32)
        order = np.argsort(idx)
        out = np.empty((len(idx), *ds.shape[1:]), np.float32)
        sorted_idx = idx[order]
        # h5py wants increasing indices
        out[order] = self._read("utterance", lambda: ds[sorted_idx],
                                (int(sorted_idx[0]), int(sorted_idx[-1]) + 1))
        return out

    def frames(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Frame times (n_frames,) and frame matrix (n_frames, frame_dim) of one clip, float32."""
        i = self.index(name)
        return (self._frame_rows(i, "frames/time").astype(np.float32),
                self._frame_rows(i, "frames/data").astype(np.float32))

    @property
    def frame_extra_names(self) -> list[str]:
        return [entry[0] for entry in json.loads(self.attrs.get("frame_extras", "[]"))]

    def frame_extra(self, name: str, key: str) -> np.ndarray:
        """One clip's per-frame extra ``key`` (see ``frame_extra_names``), shape (n_frames, ...)."""
        if key not in self.frame_extra_names:
            raise StoreError(f"Store '{self.path}' has no per-frame '{key}'; it has "
                             f"{', '.join(self.frame_extra_names) or 'none'}.")
        return self._frame_rows(self.index(name), f"frames/{key}")

    def labels(self) -> dict[str, np.ndarray]:
        """``discrete`` (str, "" when none), ``valence`` (float, NaN when none), ``split``."""
        return {c: self.column(c) for c in ("discrete", "valence", "split")}

    def extra_columns(self) -> dict[str, np.ndarray]:
        """The manifest's other columns copied at extraction (/clips/extra): column name ->
        object array (n,) of str, "" for a clip whose manifest row had no such column. Empty
        for a store written before /clips/extra existed (re-extracting from the manifest adds
        it without encoder work)."""
        rows = [json.loads(cell) if cell else {} for cell in self.column("extra")]
        names = sorted({k for row in rows for k in row})
        return {k: np.array([str(row.get(k, "")) for row in rows], dtype=object) for k in names}

    def record(self, name: str, *, with_arrays: bool = True) -> ClipRecord:
        """One clip's record, its cells checked against their checksums."""
        i = self.index(name)
        clips = self._file["clips"]
        cells = {c: self._read(f"clips/{c}", lambda c=c: clips[c].asstr()[i], (i, i + 1))
                 if c in clips else "" for c in STR_COLUMNS}
        numbers = {c: self._read(f"clips/{c}", lambda c=c: clips[c][i:i + 1], (i, i + 1))
                   for c in ("duration", "valence")}
        arrays: dict[str, np.ndarray] = {}
        if with_arrays:
            arrays["utterance"] = self._read("utterance", lambda: self._file["utterance"][i:i + 1],
                                             (i, i + 1))[0]
            for key in ["data", "time", *self.frame_extra_names]:
                arrays[f"frames/{key}"] = self._frame_rows(i, f"frames/{key}")
        if self.checksummed:
            want = dict(zip(self._crc_columns, self._read(CHECKSUM, lambda: self._file[CHECKSUM][i],
                                                          (i, i + 1))))
            got = {f"clips/{c}": zlib.crc32(v.encode("utf-8")) for c, v in cells.items()}
            got.update({f"clips/{c}": zlib.crc32(little_endian(v, v.dtype))
                        for c, v in numbers.items()})
            got.update({k: zlib.crc32(little_endian(v, v.dtype)) for k, v in arrays.items()})
            bad = [k for k, v in got.items() if k in want and want[k] != v]
            if bad:
                raise self._damage_error(", /".join(bad), [name])
        rec = ClipRecord(
            name=name, status=cells["status"], stage=cells["stage"], reason=cells["reason"],
            input_hash=cells["input_hash"], duration=float(numbers["duration"][0]),
            info=json.loads(cells["info"] or "{}"), discrete=cells["discrete"],
            valence=float(numbers["valence"][0]), split=cells["split"],
            extra=json.loads(cells["extra"] or "{}"),
        )
        if with_arrays:
            rec.utterance = arrays["utterance"].astype(np.float32)
            rec.frame_times = arrays["frames/time"].astype(np.float32)
            rec.frames = arrays["frames/data"].astype(np.float32)
            rec.frame_extras = {k: arrays[f"frames/{k}"] for k in self.frame_extra_names}
        return rec

    # checksums ---------------------------------------------------------------------------
    def _frame_rows(self, i: int, dataset: str) -> np.ndarray:
        start = int(self._read("frames/offset", lambda: self._file["frames/offset"][i], (i, i + 1)))
        stop = start + int(self._read("frames/length", lambda: self._file["frames/length"][i],
                                      (i, i + 1)))
        return self._read(dataset, lambda: self._file[dataset][start:stop], (i, i + 1))

    def _read(self, dataset: str, read: Any, rows: tuple[int, int] | None = None) -> Any:
        """``read()``, a failed checksum or unreadable cell turned into a StoreError naming the
        clips at ``rows`` (clip rows ``[lo, hi)``) whose cells in ``dataset`` are damaged."""
        try:
            return read()
        except (OSError, RuntimeError, UnicodeDecodeError) as e:
            raise self._damage_error(dataset, self._locate(dataset, rows), e) from e

    def _check_strings(self, column: str, values: Any, lo: int) -> None:
        crc = self._read(CHECKSUM, lambda: self._file[CHECKSUM][lo:lo + len(values)])
        want = crc[:, self._crc_columns.index(f"clips/{column}")]
        bad = np.flatnonzero(string_crcs(values) != want)
        if len(bad):
            names = [self.names[lo + j] if column != "name" and self.names[lo + j]
                     else f"row {lo + j}" for j in bad]  # a name read as "" is no name
            raise self._damage_error(f"clips/{column}", names)

    def _locate(self, dataset: str, rows: tuple[int, int] | None) -> list[str]:
        """The clips among ``rows`` whose cells in ``dataset`` fail their CRC (best effort: an
        error path, so it may read a lot; [] when it cannot tell)."""
        if not self.checksummed:
            return []
        lo, hi = rows if rows is not None else (0, len(self))
        try:
            checker = Checker(self._file, self.names)
            ds = self._file[dataset]
            if dataset.startswith("clips/") and dataset[6:] in STR_COLUMNS:
                checker.check_strings([dataset[6:]], None, lo, hi)
            elif dataset in checker.frame_datasets():
                # the clips sharing a chunk with the frames asked for: the damage may be theirs
                offset, length = checker.frame_index()
                step = ds.chunks[0]
                first = int(offset[lo]) // step * step
                last = int(offset[hi - 1] + length[hi - 1])
                last = -(-last // step) * step
                lo = int(np.searchsorted(offset + length, first, side="right"))
                hi = max(lo, int(np.searchsorted(offset, last, side="left")))
                checker.check_frames(dataset, offset, length, range(lo, hi))
            elif dataset in ("utterance", "clips/duration", "clips/valence"):
                step = ds.chunks[0]
                lo, hi = lo // step * step, min(len(self), -(-hi // step) * step)
                checker.check_rows(dataset, lo, hi)
            else:  # offsets, lengths, checksums: any clip may be concerned
                checker.scan()
                lo, hi = 0, len(self)
            damage: Damage = checker.damage
            return damaged_names(Damage({i: d for i, d in damage.rows.items() if lo <= i < hi}),
                                 self.names)
        except Exception:  # noqa: BLE001 - naming the clips is a courtesy of the error message
            return []

    def _damage_error(self, dataset: str, clips: list[str],
                      cause: BaseException | None = None) -> StoreError:
        where = ""
        if clips:
            shown = ", ".join(f"'{c}'" for c in clips[:5]) + (" ..." if len(clips) > 5 else "")
            where = f" in {len(clips)} clip(s) ({shown})"
        why = f" ({first_line(cause)})" if cause is not None and not clips else ""
        return StoreError(
            f"Store '{self.path}' is damaged: /{dataset} fails its checksum{where}{why}. Run "
            f"'mer-features verify {self.path}' to list every damaged clip, then re-run the same "
            "extraction: it extracts the damaged clips again (or move the store away).")

    def _class_counts(self) -> dict[str, int]:
        """Clips per class of the label set, in its order (classes without clips: 0)."""
        discrete = self.column("discrete")
        return {c: int((discrete == c).sum()) for c in self.classes}

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
            "format_version": self.format_version,
            "checksums": self.checksummed,
            "package_version": self.attrs["package_version"],
            "weights": json.loads(self.attrs["weights"]),
            "config": self.config,
            "fingerprint_fields": self.fields,
            "labelled": int((self.column("discrete") != "").sum()),
            "classes": self._class_counts(),
            "extra_columns": list(self.extra_columns()),
            "pending_parts": len(pending_parts(self.path)),
            "failures": [
                {"name": n, "status": s, "stage": st, "reason": r}
                for n, s, st, r in self.failures()
            ],
        }


def _open_h5(path: Path) -> h5py.File:
    check_metadata(path)  # bounded: a damaged file can make HDF5 loop forever
    try:
        return h5py.File(path, "r")
    except OSError as e:
        raise StoreError(
            f"'{path}' cannot be opened as an HDF5 feature store ({first_line(e)}). It may be "
            "truncated or not a store: move it away, or extract again with `overwrite`."
        ) from e


def _read_names(ds: h5py.Dataset) -> list[str]:
    if ds.dtype.kind == "S":  # fixed width (format 2)
        return [b.decode("utf-8") for b in ds[()].tolist()]
    return ds.asstr()[()].tolist()


def _read_float32(ds: h5py.Dataset) -> np.ndarray:
    """All of ``ds`` as float32. A float16 dataset is converted block by block in a thread
    while HDF5 reads (and checksums) the next block, so the conversion, the slowest step, runs
    beside the read instead of after it (numpy releases the GIL while casting)."""
    if ds.dtype == np.float32 or ds.shape[0] == 0 or not ds.chunks:
        return ds[()].astype(np.float32, copy=False)
    out = np.empty(ds.shape, np.float32)
    row_bytes = ds.dtype.itemsize * int(np.prod(ds.shape[1:])) or 1
    step = max(1, (8 << 20) // row_bytes // ds.chunks[0]) * ds.chunks[0]
    with ThreadPoolExecutor(1, thread_name_prefix="float32") as pool:
        pending = None
        for lo in range(0, ds.shape[0], step):
            block = ds[lo:lo + step]
            if pending is not None:
                pending.result()
            pending = pool.submit(np.copyto, out[lo:lo + len(block)], block)
        pending.result()
    return out


def _check_schema(f: h5py.File, path: Path) -> dict[str, Any]:
    attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    if "schema_version" not in attrs or "fingerprint" not in attrs:
        raise StoreError(f"'{path}' is an HDF5 file but not a mer_features store (no schema "
                         "attributes). Move it away or pick another `out`.")
    version = int(attrs["schema_version"])
    if version != SCHEMA_VERSION:
        raise StoreError(
            f"Store '{path}' has schema version {version}; this mer_features "
            f"({__version__}) reads version {SCHEMA_VERSION}. Extract again with `overwrite`, or "
            "use the mer_features release that wrote it."
        )
    for name in ("clips/name", "utterance", "frames/offset", "frames/data", "frames/time"):
        if name not in f:
            raise StoreError(f"Store '{path}' lacks '/{name}'; it is damaged. Move it away and "
                             "extract again.")
    return attrs


# --------------------------------------------------------------------------------------------
# Part files


def parts_dir(path: Path) -> Path:
    return path.with_name(path.name + ".parts")


def pending_parts(path: Path) -> list[Path]:
    """Complete part files waiting to be merged into the store at ``path``, oldest first."""
    d = parts_dir(Path(path))
    return sorted(d.glob("part-*.h5")) if d.is_dir() else []
