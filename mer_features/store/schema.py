"""The HDF5 feature store's layout (this docstring), its header and its records.

One file per (corpus, modality, encoder configuration).

Layout (schema version 1, file format 2; ``n`` clips, ``T`` frames over all clips)::

    /                     attrs: schema_version, format_version, fingerprint,
                                 fingerprint_fields (JSON), modality, encoder, encoder_version,
                                 weights (JSON), config (JSON), package_version,
                                 utterance_shape (JSON), frame_dim, frame_rate, storage_dtype,
                                 frame_extras (JSON), classes (JSON; only for a label set
                                 other than MER 2023's six: the manifest's classes in order)
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
    /clips/extra          (n,) str     JSON object of the manifest's other columns (name ->
                                       text, e.g. RAVDESS's actor), "" when none; copied and
                                       refreshed like the labels. Stores written before it
                                       lack the dataset and read as having no such column
    /utterance            (n, *utterance_shape)   zeros for clips that are not "ok"
    /frames/offset        (n,) i8      first row of the clip in /frames/data
    /frames/length        (n,) i8      its number of frames
    /frames/data          (T, frame_dim)
    /frames/time          (T,) f4      frame centre times in seconds
    /frames/<extra>       (T, ...)     optional per-frame extras named in the frame_extras
                                       attribute (video: face box, detection prob, has_face)
    /clips/checksum       (n, k) u4    CRC-32 of each clip's cells; attr ``columns`` names them

Every numeric dataset is chunked with HDF5's fletcher32 filter, which HDF5 checks on every
read; with /clips/checksum it makes a flipped bit anywhere a clean :class:`StoreError` instead
of a wrong number (:mod:`.checksums`). Format 1 (schema 1 before checksums) lacks both; such
stores are read unchecked and gain checksums when a writer next rewrites them. The format is
not part of the fingerprint, since it never changes a number.

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
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mer_features import __version__
from mer_features.fingerprint import fingerprint
from mer_features.store.checksums import FORMAT_VERSION

SCHEMA_VERSION = 1
STATUSES = ("ok", "failed", "empty", "missing")
BLOCK = 1024
"""Clips per chunk of /utterance, and per block when a store file is written or merged."""


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
    classes: tuple[str, ...] = ()
    """The label set of the manifest's labels, in order (:mod:`mer_features.corpora.classes`),
    written as the ``classes`` attribute; empty (no attribute) for MER 2023's six, so a MER
    store is the file it always was. Not part of the fingerprint: labels change no feature."""

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.fields)

    def attrs(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "format_version": FORMAT_VERSION,
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
            **({"classes": json.dumps(list(self.classes))} if self.classes else {}),
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
    extra: dict[str, str] = field(default_factory=dict)
    """The manifest's other columns for this clip (name -> text), as /clips/extra keeps them."""

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.utterance, self.frames, self.frame_times) if a is not None)
