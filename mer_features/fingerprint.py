"""Cache keys: what makes two feature arrays interchangeable.

A store's fingerprint is a hash of explicit fields (encoder name and version, weights identity,
resolved configuration, preprocessing, noise, dtypes, schema version), never of pickled code;
:func:`fingerprint_fields` is the one place that puts them together. Each clip additionally
records the content hash of its input, so an edited media file or transcript is re-extracted
while untouched clips are reused. Batch size, worker count and progress flags never enter a
fingerprint.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import sqlite3
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spacing: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot put a {type(value).__name__} into a fingerprint: {value!r}")


def fingerprint(fields: Mapping[str, Any]) -> str:
    """A 32-hex-digit hash of ``fields`` (a JSON-able mapping)."""
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()[:32]


def fingerprint_fields(encoder: Any, stage: Any, *, dtype: str,
                       storage_dtype: str) -> dict[str, Any]:
    """Every field of a store's fingerprint, for ``encoder`` fed by ``stage``.

    ``encoder`` declares its name, version, weights identity, resolved config and the input
    preparation it needs (:class:`~mer_features.encoders.base.Encoder`); ``stage``
    (:mod:`mer_features.pipeline.stages`) holds the modality's decoding options and the noise
    acting on it. Added here: the decoders' identities (audio and video), the face tracker's
    rules, the canonical noise spec and seed, the compute dtype (when it changes the output),
    the storage dtype and the store's schema version. Fields added to this list after stores
    were written are listed in :data:`ADDED_FIELDS`.
    """
    from mer_features.noise.spec import canonical
    from mer_features.store.schema import SCHEMA_VERSION

    preprocessing = dict(encoder.preprocessing())
    preprocessing.update(_stage_fields(stage))
    noise = stage.noise
    return {
        "schema_version": SCHEMA_VERSION,
        "modality": encoder.modality,
        "encoder": encoder.name,
        "encoder_version": encoder.version,
        "weights": encoder.weights_identity(),
        "config": dataclasses.asdict(encoder.config),
        "preprocessing": preprocessing,
        "noise": {"spec": canonical(noise), "seed": int(stage.seed)} if noise is not None else None,
        "compute_dtype": encoder.compute_dtype(dtype),
        "storage_dtype": storage_dtype,
    }


def _stage_fields(stage: Any) -> dict[str, Any]:
    """The modality's preprocessing: what the stage decodes with, and how."""
    if stage.name == "audio":
        from mer_features.decode.audio import AUDIO_DECODER

        return {"decoder": AUDIO_DECODER}
    if stage.name == "text":
        return {"text_column": stage.text_column}
    if stage.name == "video":
        from importlib.metadata import version

        from mer_features.decode.faces import ALIGNMENT, FACE_DETECTOR
        from mer_features.decode.video import VIDEO_DECODER

        tracker = stage.face_tracker()
        return {"fps": stage.options.fps, "max_frames": stage.options.max_frames,
                "decoder": VIDEO_DECODER, "face_detector": FACE_DETECTOR,
                "face_detector_version": version("facenet-pytorch"),
                "face_size": tracker.face_size, "margin": tracker.margin,
                "min_face_size": tracker.min_face_size, "thresholds": list(tracker.thresholds),
                "alignment": ALIGNMENT}
    return {}


# --------------------------------------------------------------------------------------------
# Fields added to the fingerprint later

ADDED_FIELDS: tuple[tuple[str, tuple[str, ...], Any], ...] = (
    # (modality, path of the field, the value every store written without it was made with)
    ("audio", ("preprocessing", "decoder"), "soundfile+soxr_hq|decord"),  # mer_features 0.1.0
)
"""Fields that joined the fingerprint after stores had been written without them.

Adding such a field changed no number: a store that lacks it holds features made with the
value given here. :func:`with_added_fields` fills it in before fingerprints are compared, so
such a store is still compatible (its clips are not extracted again) and is re-stamped with
the full fields when it is next written. When the value later changes (another decoder), old
stores then differ from new ones, as they should."""


def with_added_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` (a store's fingerprint fields) with every field of :data:`ADDED_FIELDS` that
    it lacks filled in with the value it was made with."""
    out = copy.deepcopy(dict(fields))
    for modality, path, value in ADDED_FIELDS:
        if out.get("modality") != modality:
            continue
        node: Any = out
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.setdefault(path[-1], value)
    return out


def same_features(stored: Mapping[str, Any], current: Mapping[str, Any]) -> bool:
    """Whether a store's fields and another's (or a run's) describe interchangeable features,
    once fields added later are filled in (:func:`with_added_fields`)."""
    return fingerprint(with_added_fields(stored)) == fingerprint(with_added_fields(current))


def known_fingerprints(fields: Mapping[str, Any]) -> set[str]:
    """Every fingerprint features with these fields have carried: the current one, and the
    one from before each field of :data:`ADDED_FIELDS` that holds its historic value (a
    re-stamped store is the same features as a run recorded under its older fingerprint)."""
    full = with_added_fields(fields)
    known = {fingerprint(full)}
    older = copy.deepcopy(full)
    for modality, path, value in reversed(ADDED_FIELDS):
        if older.get("modality") != modality:
            continue
        node: Any = older
        for key in path[:-1]:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict) and node.get(path[-1]) == value:
            del node[path[-1]]
            known.add(fingerprint(older))
    return known


def file_hash(path: str | Path) -> str:
    """Content hash of a file (BLAKE2b, 128 bits), independent of its name and times."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def cache_path() -> Path:
    """Where file hashes are remembered: $MER_FEATURES_CACHE, else ~/.cache/mer_features."""
    root = os.environ.get("MER_FEATURES_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mer_features")
    return Path(root) / "file-hashes.sqlite"


CACHE_TRUSTS = (
    "A file's remembered content hash is reused only while its absolute path, size, "
    "modification time, status-change time (ctime, in nanoseconds), inode and device are all "
    "unchanged; any write, chmod, rename or utime sets the ctime to the current time, and no "
    "program can set it back, so an edited file is always hashed again, even one edited in "
    "place with its size and modification time restored. Only setting the system clock back, "
    "or writing to the raw disk device, could fool it.")
"""What the file-hash cache trusts (quoted in docs/store.md)."""


def file_hashes(paths: Sequence[str | Path], *, threads: int = 8,
                cache: str | Path | None = None) -> list[str]:
    """Content hashes of many files, remembered by (path, size, mtime, ctime, inode, device).

    A re-run over tens of thousands of clips then costs one ``stat`` per file instead of
    reading every byte again (see :data:`CACHE_TRUSTS` for when a remembered hash is reused).
    Files that cannot be read get ``unreadable:<error>``. Without a writable cache folder,
    every file is hashed.
    """
    keys: list[tuple[str, int, int, int, int, int] | None] = []
    for p in paths:
        try:
            st = os.stat(p)
            keys.append((os.path.abspath(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                         st.st_ino, st.st_dev))
        except OSError:
            keys.append(None)
    db = _open_cache(Path(cache) if cache else cache_path())
    known: dict[tuple, str] = {}
    if db is not None:
        try:
            wanted = sorted({k[0] for k in keys if k is not None})
            for start in range(0, len(wanted), 500):
                chunk = wanted[start:start + 500]
                rows = db.execute("SELECT path, size, mtime_ns, ctime_ns, inode, device, hash "
                                  f"FROM {_TABLE} WHERE path IN ({','.join('?' * len(chunk))})",
                                  chunk)
                known.update((row[:6], row[6]) for row in rows)
        except sqlite3.Error:
            db = None

    def one(i: int) -> str:
        key = keys[i]
        if key is not None and key in known:
            return known[key]
        try:
            return file_hash(paths[i])
        except OSError as e:
            return f"unreadable:{type(e).__name__}"

    with ThreadPoolExecutor(max_workers=threads) as pool:
        result = list(pool.map(one, range(len(paths))))
    fresh = [(*k, h) for k, h in zip(keys, result)
             if k is not None and k not in known and not h.startswith("unreadable:")]
    if db is not None:
        try:
            with db:
                db.executemany(f"INSERT OR REPLACE INTO {_TABLE} VALUES (?, ?, ?, ?, ?, ?, ?)",
                               fresh)
        except sqlite3.Error:
            pass  # a cache that cannot be written only costs time
        db.close()
    return result


_TABLE = "file_hashes_v2"
"""v2 adds ctime and device to the key; the v1 table ("hashes") is dropped on first use."""


def _open_cache(path: Path) -> sqlite3.Connection | None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, timeout=30)
        with db:
            db.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (path TEXT PRIMARY KEY, size INTEGER, "
                       "mtime_ns INTEGER, ctime_ns INTEGER, inode INTEGER, device INTEGER, "
                       "hash TEXT)")
            db.execute("DROP TABLE IF EXISTS hashes")
        return db
    except (OSError, sqlite3.Error):
        return None


def text_hash(text: str) -> str:
    """Content hash of a transcript."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def diff_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two fingerprint field mappings."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(diff_fields(a, b, f"{prefix}{key}."))
        elif canonical_json(a) != canonical_json(b):
            out.append(f"{prefix}{key}: {canonical_json(a)} -> {canonical_json(b)}")
    return out
