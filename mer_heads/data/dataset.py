"""Load feature stores (one per modality) and join them by clip name into one dataset.

Only :class:`mer_features.store.FeatureStore` is used to read; media are never touched.

A modality of a clip is *present* when the store's ``status`` is ``ok`` (and, for frame input,
the clip has at least one frame). Absent modalities (failed decode, no face, empty transcript,
missing file) are masked by the heads, never fed to them as zero vectors to learn around.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from mer_features import EMOTIONS
from mer_features.errors import MerFeaturesError
from mer_features.fingerprint import known_fingerprints
from mer_features.store import FeatureStore, StoreError, parts_dir, pending_parts
from mer_heads.config import DataConfig, split_options
from mer_heads.data.labels import (normalise_label, outside_valence_scale, parse_number,
                                   read_label_table, valence_hint)
from mer_heads.errors import (SHOWN, DataError, LabelError, MerHeadsError, ParameterError,
                              listed)

STORE_MODALITIES = ("audio", "text", "video")
"""Modalities a store can hold; a --features KEY naming one must hold that one."""
SETS = ("all", "minimal")


@dataclass(frozen=True)
class ModalityInfo:
    """Where one modality's features came from; ``dim`` is the per-clip (or per-frame) width."""

    key: str
    path: str
    fingerprint: str
    store_modality: str
    encoder: str
    utterance_shape: tuple[int, ...]
    dim: int
    known_fingerprints: frozenset[str] = field(default=frozenset(), compare=False)
    """Every fingerprint these features have carried (a store re-stamped after a fingerprint
    field was added is still the features a run recorded under the older one)."""

    def to_json(self) -> dict:
        return {"key": self.key, "path": self.path, "fingerprint": self.fingerprint,
                "store_modality": self.store_modality, "encoder": self.encoder,
                "utterance_shape": list(self.utterance_shape), "dim": self.dim}


@dataclass
class MultimodalData:
    """``n`` clips with ``M`` modalities, joined by name.

    features : M arrays, each float32 of shape (n, d_m) for utterance input or (n, T_m, d_m)
        for frame input (zeros where absent or padded).
    present : bool array of shape (n, M); False where a modality is absent for a clip.
    frame_mask : for frame input, M bool arrays of shape (n, T_m) marking real frames; else None.
    discrete : object array (n,) of str, "" when unlabelled. valence : float64 (n,), NaN when none.
    split : object array (n,) of str.
    classes : the label set in index order (:mod:`mer_features.corpora.classes`: MER 2023's
        six when every label is one of them); ``labels`` are indices into it.
    extra : the manifest's other columns (e.g. ``actor``), name -> object array (n,) of str
        ("" where a clip has no value); from the stores (/clips/extra) and ``--manifest``.
    normalized_by : the column whose groups the features were z-scored within
        (:func:`mer_heads.data.normalize.normalize_groups`), or None.
    notes : what loading did that a report should mention (masked clips, label source...).
    """

    names: list[str]
    modalities: list[ModalityInfo]
    features: list[np.ndarray]
    present: np.ndarray
    discrete: np.ndarray
    valence: np.ndarray
    split: np.ndarray
    input: str = "utterance"
    frame_mask: list[np.ndarray] | None = None
    layers: str = "mean"
    notes: list[str] = field(default_factory=list)
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    normalized_by: str | None = None
    extra_conflicts: dict[str, str] = field(default_factory=dict)
    """Extra columns on which the stores disagree (column -> why), refused only when used."""
    classes: tuple[str, ...] = tuple(EMOTIONS)

    def __len__(self) -> int:
        return len(self.names)

    @property
    def keys(self) -> list[str]:
        return [m.key for m in self.modalities]

    @property
    def dims(self) -> list[int]:
        return [m.dim for m in self.modalities]

    @property
    def labels(self) -> np.ndarray:
        """Class indices into :attr:`classes`, shape (n,) int64; -1 when unlabelled."""
        index = {e: i for i, e in enumerate(self.classes)}
        return np.array([index.get(d, -1) for d in self.discrete], dtype=np.int64)

    def target(self, name: str) -> np.ndarray:
        """The continuous target ``name`` of every clip, float64 (n,), NaN where a clip has
        none: ``valence``, or a numeric column of the manifest (from the stores' extra columns
        or ``--manifest``), each cell read strictly as a decimal number."""
        if name == "valence":
            return self.valence
        values = self.column(name, "--targets")
        out = np.full(len(values), np.nan)
        bad = []
        for i, cell in enumerate(values):
            if cell == "":
                continue
            try:
                out[i] = parse_number(cell)
            except ValueError:
                bad.append(i)
        if bad:
            raise LabelError(
                f"--targets {name}: {len(bad)} clip(s) have a value that is not a finite "
                f"decimal number ({listed(f'{self.names[i]!r}={values[i]!r}' for i in bad)}); "
                "fix the column in the manifest (an empty cell is a clip without a value).")
        if not np.isfinite(out).any():
            raise LabelError(f"--targets {name}: no clip has a value in the column '{name}'; "
                             "give a numeric column of the manifest, or leave it out of "
                             "--targets.")
        return out

    def rows_of(self, names: Sequence[str]) -> np.ndarray:
        """Row indices (len(names),) of the clips called ``names`` (each must be present)."""
        where = {n: i for i, n in enumerate(self.names)}
        return np.array([where[n] for n in names], np.int64)

    def subset(self, rows: np.ndarray) -> MultimodalData:
        """The clips at ``rows`` (indices or a boolean mask), in that order."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else np.asarray(rows, np.int64)
        return replace(
            self, names=[self.names[i] for i in rows],
            features=[f[rows] for f in self.features], present=self.present[rows],
            discrete=self.discrete[rows], valence=self.valence[rows], split=self.split[rows],
            frame_mask=None if self.frame_mask is None else [m[rows] for m in self.frame_mask],
            notes=list(self.notes), extra={k: v[rows] for k, v in self.extra.items()})

    def column(self, name: str, option: str) -> np.ndarray:
        """The extra column ``name`` (object array (n,) of str) that ``option`` (a flag, for
        the message) names; an unknown one raises :class:`DataError` listing those there are."""
        if name in self.extra_conflicts:
            raise LabelError(f"{option} {name}: {self.extra_conflicts[name]}")
        if name in self.extra:
            return self.extra[name]
        have = ", ".join(sorted(self.extra)) or "none"
        raise DataError(
            f"{option} {name}: the clips have no column '{name}' (their manifest columns besides "
            f"the labels: {have}). Stores keep the manifest's other columns from extraction on "
            "(re-run the extraction with the manifest: only labels and columns are rewritten, "
            "no encoder work), or pass --manifest PATH with that column.")

    def groups(self, column: str | None) -> np.ndarray | None:
        """The group label of every clip (object array (n,) of str) from the extra column
        ``column`` (``--groups``), or None without a column; see :meth:`column`."""
        return None if column is None else self.column(column, "--groups")

    def select_modalities(self, keys: Sequence[str]) -> MultimodalData:
        """The same clips with only the modalities ``keys``, in that order."""
        where = {k: i for i, k in enumerate(self.keys)}
        unknown = [k for k in keys if k not in where]
        if unknown:
            raise DataError(f"Modality {', '.join(map(repr, unknown))} is not loaded; the "
                            f"dataset has {', '.join(self.keys)}.")
        idx = [where[k] for k in keys]
        return replace(
            self, modalities=[self.modalities[i] for i in idx],
            features=[self.features[i] for i in idx], present=self.present[:, idx],
            frame_mask=None if self.frame_mask is None else [self.frame_mask[i] for i in idx],
            notes=list(self.notes))


def stack_copies(data: MultimodalData, copies: Sequence[MultimodalData]) -> MultimodalData:
    """``data`` followed by the rows of each copy (same clips and modalities: corrupted versions
    of it, see :meth:`CrossValidatedHead.fit <mer_heads.protocol.CrossValidatedHead.fit>`), with
    ``data``'s labels on every copy: row ``a * n + i`` is clip ``i`` of copy ``a`` (copy 0 is
    ``data``). Copies are named ``NAME#aug1``, ``NAME#aug2`` ...; frame matrices are padded
    to the longest."""
    parts = [data, *copies]
    features = []
    for m in range(len(data.features)):
        xs = [p.features[m] for p in parts]
        if data.frame_mask is not None:
            t = max(x.shape[1] for x in xs)
            xs = [np.pad(x, ((0, 0), (0, t - x.shape[1]), (0, 0))) for x in xs]
        features.append(np.concatenate(xs))
    frame_mask = None
    if data.frame_mask is not None:
        frame_mask = []
        for m in range(len(data.features)):
            masks = [p.frame_mask[m] for p in parts]
            t = max(x.shape[1] for x in masks)
            frame_mask.append(np.concatenate([np.pad(x, ((0, 0), (0, t - x.shape[1])))
                                              for x in masks]))
    reps = len(parts)
    return replace(
        data, names=data.names + [f"{n}#aug{a}" for a in range(1, reps) for n in data.names],
        features=features, present=np.concatenate([p.present for p in parts]),
        discrete=np.tile(data.discrete, reps), valence=np.tile(data.valence, reps),
        split=np.tile(data.split, reps), frame_mask=frame_mask, notes=list(data.notes),
        extra={k: np.tile(v, reps) for k, v in data.extra.items()})


def split_rows(data: MultimodalData, train_split: str | None, test_split: str | None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Bool masks (n,) of the training and test clips chosen by split names."""
    if train_split is not None and train_split == test_split:
        raise ParameterError(f"train_split and test_split are both '{train_split}'; the test "
                             "clips would be trained on. Give two different splits.", "test_split")
    splits = sorted({s for s in data.split})
    for name, what in ((train_split, "--train-split"), (test_split, "--test-split")):
        if name is not None and name not in splits:
            have = ", ".join(repr(s) for s in splits)
            raise DataError(f"No clip has split '{name}' ({what}); the splits present are {have}. "
                            "Splits come from the manifest's 'split' column (at extraction, or "
                            "--manifest).")
    test = data.split == test_split if test_split is not None else np.zeros(len(data), bool)
    train = data.split == train_split if train_split is not None else ~test
    if not train.any():
        raise DataError(f"No clip is left to train on: all {len(data)} clips are in the test "
                        f"split '{test_split}' (--test-split). Give the clips of another split "
                        "to train on, or drop --test-split.")
    return train, test


def modality_sets(keys: Sequence[str], sets: str = "all") -> list[tuple[str, ...]]:
    """``all``: every non-empty subset of ``keys``, smallest first, in the order given;
    ``minimal``: each modality alone and all of them together."""
    if sets not in SETS:
        raise DataError(f"sets must be one of {', '.join(SETS)}; got '{sets}'.")
    if sets == "all":
        return [c for r in range(1, len(keys) + 1) for c in itertools.combinations(keys, r)]
    singles = [(k,) for k in keys]
    return singles + ([tuple(keys)] if len(keys) > 1 else [])


def parse_store_arg(spec: str | Path | tuple[str, str | Path]) -> tuple[str | None, Path]:
    """``"audio=A.h5"`` -> ``("audio", Path("A.h5"))``; ``"A.h5"`` -> ``(None, Path("A.h5"))``.

    A spec whose KEY or STORE is empty (``"=A.h5"``, ``"audio="``) is refused."""
    if isinstance(spec, tuple):
        key, path = spec
        if key == "" or not str(path):
            raise ParameterError(f"A store given as (key, path) needs a non-empty key (or None) "
                                 f"and a path; got {spec!r}.")
        return key, Path(path)
    text = str(spec)
    if not text:
        raise ParameterError("--features got an empty path; give [KEY=]STORE.")
    key, sep, rest = text.partition("=")
    if sep and "/" not in key and not Path(text).exists():
        if not key or not rest:
            empty = "KEY" if not key else "STORE"
            raise ParameterError(f"--features '{text}' has an empty {empty}; write KEY=STORE "
                                 "(e.g. audio=features/a.h5) or just STORE.")
        return key, Path(rest)
    return None, Path(text)


def load_dataset(stores: Sequence[str | Path | tuple[str, str | Path]],
                 config: DataConfig | None = None, **options) -> MultimodalData:
    """Read and join feature stores.

    Parameters
    ----------
    stores : paths, ``"key=path"`` strings or ``(key, path)`` pairs, one per modality, in the
        order the heads will see them. A bare path's key is the store's modality (audio, text...).
    config : how to load (:class:`~mer_heads.config.DataConfig`); ``options`` are its fields
        by keyword, applied over it:

        * ``input``: ``"utterance"`` (one vector per clip) or ``"frames"`` (frame matrices, each
          bounded to ``max_frames`` rows by averaging equal segments of the clip);
        * ``manifest``: a CSV whose ``discrete``/``valence``/``split`` replace the labels the
          stores copied at extraction; clips of the stores it does not list become unlabelled;
        * ``join``: ``"exact"`` refuses stores whose clip names differ; ``"inner"`` keeps the
          clips common to all stores;
        * ``layers``: utterance arrays of shape (layers, dim) (from ``--layer all`` stores) are
          averaged over layers (``"mean"``) or flattened to layers*dim (``"flatten"``, and
          ``"learned"``, whose layers the neural heads weigh: :mod:`mer_heads.heads.layers`).
    """
    config = replace(config or DataConfig(), **options)  # an unknown option: a TypeError
    if not stores:
        raise DataError("No feature store given; pass at least one --features STORE.h5.")
    specs = [parse_store_arg(s) for s in stores]
    _check_store_paths(specs)
    input, layers, max_frames = config.input, config.layers, config.max_frames
    opened: list[FeatureStore] = []
    try:
        for _, path in specs:
            try:
                opened.append(FeatureStore(path))
            except StoreError as e:
                raise DataError(f"Cannot read feature store '{path}': {e}") from e
            _refuse_unfinished(path)
        keys = _modality_keys(specs, opened)
        names = _joined_names(opened, config.join)
        notes = [note for note in [_left_out(opened, names) if config.join == "inner" else ""]
                 if note]
        extra, conflicts = guard_read(opened, lambda: _store_extra(opened, names))
        recorded = None
        if config.manifest is not None:
            discrete, valence, split = _manifest_labels(config.manifest, names, notes, extra)
        else:
            discrete, valence, split = guard_read(opened, lambda: _store_labels(opened, names))
            recorded = _recorded_classes(opened)
        if config.label_map is not None:
            keep, discrete = _apply_label_map(config.label_map, discrete, notes)
            if not keep.all():
                names = [n for n, k in zip(names, keep) if k]
                discrete, valence, split = discrete[keep], valence[keep], split[keep]
                extra = {k: v[keep] for k, v in extra.items()}
            recorded = None  # the map changed the classes
        classes = _resolve_classes(discrete, config.classes, recorded, notes,
                                   source=("the manifest" if config.manifest is not None
                                           else "the stores"))
        features, present, frame_mask, infos = [], [], [], []
        for key, store in zip(keys, opened):
            x, mask, ok = guard_read([store], lambda: _features(store, names, input, layers,
                                                           max_frames))
            _check_finite(x, ok, key, store, names)
            absent = int((~ok).sum())
            if absent:
                notes.append(f"{key}: {absent} of {len(names)} clips have no usable features "
                             f"(status not 'ok'{' or no frames' if input == 'frames' else ''}); "
                             "masked as a missing modality")
            features.append(x)
            present.append(ok)
            frame_mask.append(mask)
            infos.append(ModalityInfo(key, str(store.path), store.fingerprint, store.modality,
                                      store.encoder, tuple(store.utterance_shape), x.shape[-1],
                                      frozenset(known_fingerprints(store.fields))))
    finally:
        for s in opened:
            s.close()
    data = MultimodalData(
        names=names, modalities=infos, features=features, present=np.stack(present, axis=1),
        discrete=discrete, valence=valence, split=split, input=input,
        frame_mask=frame_mask if input == "frames" else None, layers=layers, notes=notes,
        extra=extra, extra_conflicts={k: v for k, v in conflicts.items() if k not in extra},
        classes=classes)
    if config.normalize_by is not None:
        data = _normalized(data, config.normalize_by)
    return data


def load_copy(clean: MultimodalData, stores: Mapping[str, str | Path], config: DataConfig
              ) -> MultimodalData:
    """``clean`` with the modalities of ``stores`` (key -> store, e.g. stores extracted from
    corrupted media) read from those stores: the same clips, order, labels and extra columns.
    With ``config.normalize_by`` the new features are normalised within their groups from their
    own clips (what a deployed system normalising each speaker would see)."""
    specs = [(m.key, stores.get(m.key, m.path)) for m in clean.modalities]
    data = load_dataset(specs, replace(config, join="inner", normalize_by=None, label_map=None,
                                       classes=None))
    data = data.subset(data.rows_of(clean.names))
    data = replace(data, discrete=clean.discrete, valence=clean.valence, split=clean.split,
                   extra=clean.extra, classes=clean.classes)
    if config.normalize_by is not None:
        data = _normalized(data, config.normalize_by)
    return data


def _normalized(data: MultimodalData, column: str) -> MultimodalData:
    from mer_heads.data.normalize import normalize_groups

    groups = data.column(column, "--normalize-by")
    return normalize_groups(data, groups, column)


def store_key(spec: str | Path | tuple[str, str | Path]) -> str | None:
    """The modality key a ``--features`` spec gets: its KEY, else the store's modality (None
    when the store cannot be opened: :func:`load_dataset` says why)."""
    key, path = parse_store_arg(spec)
    if key is not None:
        return key
    try:
        with FeatureStore(path) as store:
            return store.modality
    except (MerFeaturesError, OSError):
        return None


def _check_store_paths(specs: list[tuple[str | None, Path]]) -> None:
    """Every --features is an existing file, and no file is given twice (under any key)."""
    seen: list[tuple[Path, str]] = []
    for key, path in specs:
        shown = f"{key}={path}" if key else str(path)
        if path.is_dir():
            raise DataError(f"--features '{shown}' is a folder; give the feature store file "
                            "(.h5) that `mer-features extract --out` wrote.")
        if not path.exists():
            continue  # FeatureStore says so, with any pending parts of an interrupted run
        for other, other_shown in seen:
            try:
                same = path.samefile(other)
            except OSError:
                same = False
            if same:
                raise DataError(f"The store '{path}' is given twice (--features {other_shown} "
                                f"and --features {shown}); give each modality's store once.")
        seen.append((path, shown))


def guard_read(stores: list[FeatureStore], read):
    """``read()``, with a store that fails while being read (a damaged chunk, a checksum that
    does not match, a missing dataset) reported as one :class:`DataError`."""
    try:
        return read()
    except MerHeadsError:
        raise
    except MerFeaturesError as e:  # the store reader's own words say what to do
        raise DataError(str(e)) from e
    except (OSError, KeyError, ValueError) as e:
        where = ", ".join(f"'{s.path}'" for s in stores)
        raise DataError(f"Feature store {where} cannot be read ({type(e).__name__}: "
                        f"{_first_line(e)}). Run `mer-features verify` on it; if it is "
                        "damaged, move it away and extract again.") from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _features(store: FeatureStore, names: list[str], input: str, layers: str, max_frames: int
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """One store's features for ``names``, its frame mask (frame input) and presence (n,)."""
    ok = np.asarray(store.status == "ok")
    rows = np.array([store.index(n) for n in names], dtype=np.int64)
    ok = ok[rows]
    if input == "utterance":
        return _utterances(store, names, ok, layers), None, ok
    x, mask = _frames(store, names, ok, max_frames)
    return x, mask, ok & mask.any(axis=1)


# --------------------------------------------------------------------------------------------


def _modality_keys(specs: list[tuple[str | None, Path]], stores: list[FeatureStore]) -> list[str]:
    for (key, path), store in zip(specs, stores):
        if key in STORE_MODALITIES and key != store.modality:
            raise DataError(f"--features {key}={path}: the store holds {store.modality} features, "
                            f"not {key}. Give the {key} store under '{key}', or use another key "
                            f"for it (e.g. {store.modality}2={path}).")
    keys = [key or store.modality for (key, _), store in zip(specs, stores)]
    seen: dict[str, Path] = {}
    for key, store in zip(keys, stores):
        if key in seen:
            raise DataError(f"Two stores have the modality key '{key}' ('{seen[key]}' and "
                            f"'{store.path}'). Name them, e.g. --features {key}1={seen[key]} "
                            f"--features {key}2={store.path}.")
        seen[key] = store.path
    return keys


def _refuse_unfinished(path: Path) -> None:
    """A store whose extraction left part files (``STORE.parts/``: it is running, or was
    interrupted) does not hold every clip yet: refused, not read as if complete."""
    parts = pending_parts(path)
    if parts:
        raise DataError(f"Store '{path}' has {len(parts)} part file(s) of an unfinished "
                        f"extraction in '{parts_dir(Path(path))}' (still running, or "
                        "interrupted): it does not hold every clip yet. Let the extraction "
                        "finish, or re-run the same `mer-features extract` command to complete "
                        "it; then run this again.")


def _left_out(stores: list[FeatureStore], names: list[str]) -> str:
    """The note of an inner join: how many clips of each store it left out ("" if none)."""
    dropped = [(len(s) - len(names), s.path) for s in stores]
    if not any(n for n, _ in dropped):
        return ""
    return (f"the inner join (--join inner) kept the {len(names)} clips common to all stores "
            "and left out "
            + ", ".join(f"{n} of '{path}'" for n, path in dropped if n))


def _joined_names(stores: list[FeatureStore], join: str) -> list[str]:
    for store in stores:
        if len(store) == 0:
            raise DataError(f"Store '{store.path}' holds no clip; extract a manifest into it "
                            "(`mer-features extract --manifest ... --out STORE`).")
    first = stores[0]
    common = set(first.names)
    for other in stores[1:]:
        mine = set(other.names)
        if join == "exact" and mine != common:
            only_first = sorted(common - mine)
            only_other = sorted(mine - common)
            parts = []
            if only_first:
                parts.append(f"{len(only_first)} clip(s) of '{first.path}' are not in "
                             f"'{other.path}' ({listed(only_first)})")
            if only_other:
                parts.append(f"{len(only_other)} clip(s) of '{other.path}' are not in "
                             f"'{first.path}' ({listed(only_other)})")
            raise DataError(
                f"The stores disagree on clip names: {'; '.join(parts)}. Extract every modality "
                "from the same manifest (failed clips are recorded, so the names match), or use "
                "join='inner' (--join inner) to keep only the clips common to all stores.")
        common &= mine
    names = sorted(common)
    if not names:
        raise DataError("The stores have no clip name in common ("
                        + ", ".join(f"'{s.path}' {len(s)} clips" for s in stores)
                        + "); they were extracted from different corpora.")
    return names


def _store_labels(stores: list[FeatureStore], names: list[str]
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels copied into the stores at extraction; stores must agree on them."""
    result: tuple[np.ndarray, np.ndarray, np.ndarray, Path] | None = None
    for store in stores:
        rows = np.array([store.index(n) for n in names], dtype=np.int64)
        cols = store.labels()
        discrete = np.array([normalise_label(d) for d in cols["discrete"][rows]], dtype=object)
        valence = np.asarray(cols["valence"][rows], np.float64)
        split = np.asarray(cols["split"][rows], dtype=object)
        out = outside_valence_scale(valence)
        if len(out):
            shown = listed(f"'{names[i]}'={valence[i]:g}" for i in out)
            raise LabelError(
                f"Store '{store.path}' holds {len(out)} valence label(s) outside the MER scale "
                f"[-5, 5]: {shown}. {valence_hint()} in the manifest and re-extract (labels are "
                "refreshed without encoder work), or pass --manifest with rescaled labels.")
        if result is None:
            result = (discrete, valence, split, store.path)
            continue
        d0, v0, _, p0 = result
        same_v = (v0 == valence) | (np.isnan(v0) & np.isnan(valence))
        differ = np.flatnonzero((d0 != discrete) | ~same_v)
        if len(differ):
            shown = ", ".join(f"'{names[i]}' ({d0[i] or '-'}/{_fmt(v0[i])} vs "
                              f"{discrete[i] or '-'}/{_fmt(valence[i])})" for i in differ[:SHOWN])
            raise LabelError(
                f"Stores '{p0}' and '{store.path}' disagree on the labels of {len(differ)} "
                f"clip(s): {shown}. They were extracted from different manifests; pass "
                "--manifest PATH to take the labels from one file.")
    if result is None:
        raise DataError("No feature store given.")
    return result[0], result[1], result[2]


def _recorded_classes(stores: list[FeatureStore]) -> tuple[str, ...] | None:
    """The label set the stores recorded at extraction (the first store's; stores that
    recorded different orders leave it to the labels' rule), or None."""
    recorded = [s.recorded_classes for s in stores]
    first = next((r for r in recorded if r), None)
    if first is None or any(r and r != first for r in recorded):
        return None
    return first


def _apply_label_map(path: str | Path, discrete: np.ndarray, notes: list[str]
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``--label-map``: the mask of the clips kept (a dropped class's clips are left out) and
    the mapped labels; a note per rule says how many clips it touched."""
    from mer_features.corpora.labelmap import read_label_map

    try:
        label_map = read_label_map(path)
    except MerFeaturesError as e:
        raise LabelError(f"--label-map: {e}") from e
    result = label_map.apply([d or None for d in discrete])
    notes.extend(result.report())
    keep = np.array(result.keep, bool)
    if result.dropped:
        notes.append(f"label map {label_map.source}: {result.dropped} clip(s) of dropped "
                     f"classes left out, {int(keep.sum())} kept")
    if not keep.any():
        raise LabelError(f"--label-map '{path}' drops every clip; keep at least two classes.")
    mapped = np.array([label or "" for label in result.labels], dtype=object)
    return keep, mapped


def _resolve_classes(discrete: np.ndarray, declared: tuple[str, ...] | None,
                     recorded: tuple[str, ...] | None, notes: list[str], *, source: str
                     ) -> tuple[str, ...]:
    """The label set of ``discrete`` (:func:`mer_features.corpora.classes.label_set`): the
    ``declared`` classes (``--classes``; a label outside them is refused, with the class it
    resembles), the stores' ``recorded`` order, MER 2023's six, or sorted. A class rare enough
    to be a typo gets a warning in ``notes`` (labels outside MER's six only)."""
    from mer_features.corpora.classes import (class_counts, describe_outside, is_mer,
                                              label_set, outside, rare_class_warnings)

    counts = class_counts(discrete)
    classes = label_set(discrete, declared, recorded)
    if declared:
        unknown = outside(counts, classes)
        if unknown:
            raise LabelError(
                f"{sum(unknown.values())} label(s) of {source} are outside the classes "
                f"--classes {','.join(classes)}: {describe_outside(unknown, classes)}. Fix "
                "the labels (re-extract with the corrected manifest, or pass --manifest), map "
                "them with --label-map, or add the class to --classes.")
    elif not is_mer(classes):
        notes.extend(rare_class_warnings(counts, f"in {source}",
                                         fix="declare the classes with --classes (a label "
                                         "outside them is then refused) or map it with "
                                         "--label-map"))
    return classes


def _fmt(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:g}"


def _store_extra(stores: list[FeatureStore], names: list[str]
                 ) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The manifest's other columns the stores copied at extraction, joined (a clip's value
    comes from any store that has one), and the columns two stores disagree on (column -> the
    message; such a column is left out, and refused where it is used)."""
    merged: dict[str, np.ndarray] = {}
    source: dict[str, Path] = {}
    conflicts: dict[str, str] = {}
    for store in stores:
        rows = np.array([store.index(n) for n in names], dtype=np.int64)
        for column, values in store.extra_columns().items():
            values = values[rows]
            if column in conflicts:
                continue
            if column not in merged:
                merged[column], source[column] = values.copy(), store.path
                continue
            have = merged[column]
            differ = np.flatnonzero((have != "") & (values != "") & (have != values))
            if len(differ):
                shown = listed(f"'{names[i]}' ({have[i]} vs {values[i]})" for i in differ)
                conflicts[column] = (
                    f"the stores '{source[column]}' and '{store.path}' disagree on the "
                    f"'{column}' column of {len(differ)} clip(s): {shown}. They were extracted "
                    "from different manifests; pass --manifest PATH to take the columns from "
                    "one file.")
                del merged[column]
                continue
            merged[column] = np.where(have == "", values, have)
    return dict(sorted(merged.items())), conflicts


def _manifest_labels(path: str | Path, names: list[str], notes: list[str],
                     extra: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    table = read_label_table(path, what="manifest", classes=None)
    by_name = table.as_dict()
    hits = [n for n in names if n in by_name]
    if not hits:
        raise LabelError(f"No clip of the stores is listed in the manifest '{path}' (e.g. store "
                         f"clip '{names[0]}', manifest row '{table.names[0] if table.names else '-'}'"
                         "); is it the manifest of another corpus?")
    if len(hits) < len(names):
        notes.append(f"{len(names) - len(hits)} store clip(s) are not in the manifest "
                     f"'{path}' and are treated as unlabelled")
    notes.append(f"labels taken from the manifest '{path}'")
    # The manifest's other columns join (and override) those the stores copied.
    where = {n: i for i, n in enumerate(table.names)}
    at = np.array([where.get(n, -1) for n in names], np.int64)
    for column, values in table.extra.items():
        extra[column] = np.where(at >= 0, values[at.clip(min=0)], "").astype(object)
    empty = ("", math.nan, "")
    rows = [by_name.get(n, empty) for n in names]
    return (np.array([r[0] for r in rows], dtype=object), np.array([r[1] for r in rows], np.float64),
            np.array([r[2] for r in rows], dtype=object))


def _utterances(store: FeatureStore, names: list[str], ok: np.ndarray, layers: str) -> np.ndarray:
    x = store.utterances(names)
    if x.ndim > 2:
        # (n, layers, dim) from `--layer all` stores: averaging keeps the width of one layer.
        # "learned" keeps every layer, flattened: the neural heads weigh them (heads/layers.py).
        x = x.mean(axis=tuple(range(1, x.ndim - 1))) if layers == "mean" else x.reshape(len(x), -1)
    x = np.ascontiguousarray(x, dtype=np.float32)
    x[~ok] = 0.0
    return x


def _frames(store: FeatureStore, names: list[str], ok: np.ndarray, max_frames: int
            ) -> tuple[np.ndarray, np.ndarray]:
    """Frame matrices padded to (n, T, dim) with a (n, T) mask; T <= max_frames."""
    dim = store.frame_dim
    pooled: list[np.ndarray | None] = []
    for name, is_ok in zip(names, ok):
        if not is_ok:
            pooled.append(None)
            continue
        _, fr = store.frames(name)
        pooled.append(_bound_frames(fr, max_frames) if len(fr) else None)
    lengths = np.array([0 if p is None else len(p) for p in pooled], dtype=np.int64)
    if dim == 0 or not lengths.any():
        raise DataError(f"Store '{store.path}' ({store.modality}, encoder '{store.encoder}') "
                        "holds utterance vectors only: none of its usable clips has frames (e5 "
                        "gives one vector per transcript); use --input utterance "
                        "(input='utterance') with it.")
    t = int(lengths.max())
    x = np.zeros((len(names), t, dim), np.float32)
    mask = np.zeros((len(names), t), bool)
    for i, p in enumerate(pooled):
        if p is not None:
            x[i, :len(p)] = p
            mask[i, :len(p)] = True
    return x, mask


def _bound_frames(frames: np.ndarray, max_frames: int) -> np.ndarray:
    """At most ``max_frames`` rows: the means of equal segments of the clip.

    Segment means rather than every k-th frame, because 50-100 Hz descriptors alias when
    decimated, and the mean keeps every frame's contribution.
    """
    n = len(frames)
    if n <= max_frames:
        return frames.astype(np.float32, copy=False)
    bounds = np.linspace(0, n, max_frames + 1).astype(np.int64)
    sums = np.add.reduceat(frames.astype(np.float64), bounds[:-1], axis=0)
    return (sums / np.diff(bounds)[:, None]).astype(np.float32)


def _check_finite(x: np.ndarray, ok: np.ndarray, key: str, store: FeatureStore,
                  names: list[str]) -> None:
    finite = np.isfinite(x.reshape(len(x), -1)).all(axis=1)
    bad = np.flatnonzero(ok & ~finite)
    if len(bad):
        shown = listed(names[i] for i in bad)
        values = x[bad].reshape(-1)
        only_inf = not np.isnan(values).any()
        storage = str(store.attrs.get("storage_dtype", ""))
        where = (f"Store '{store.path}' ({key}) has {'infinite' if only_inf else 'NaN or infinite'}"
                 f" features for {len(bad)} usable clip(s) ({shown})")
        if only_inf and storage == "float16":
            raise DataError(
                f"{where}: the store keeps float16 (--storage-dtype float16), whose largest value "
                "is 65504, and these features overflowed it. Run `mer-features verify "
                f"{store.path}`, then extract again with --storage-dtype float32 (into a new "
                "--out, or with --overwrite).")
        raise DataError(
            f"{where}: the encoder produced non-finite values, or the store is damaged. Run "
            f"`mer-features verify {store.path}` to list them, then extract again (a neural "
            "encoder with --dtype fp32).")
    x[~finite] = 0.0  # only absent clips are left here; they are masked, keep them harmless


def summarise(data: MultimodalData) -> dict:
    """Counts a report shows: clips, labelled, per-modality presence, class counts."""
    labels = data.labels
    return {
        "clips": len(data),
        "labelled": int((labels >= 0).sum()),
        "with_valence": int(np.isfinite(data.valence).sum()),
        "present": {k: int(data.present[:, i].sum()) for i, k in enumerate(data.keys)},
        "classes": {e: int((labels == i).sum()) for i, e in enumerate(data.classes)},
    }


__all__ = ["SETS", "STORE_MODALITIES", "ModalityInfo", "MultimodalData", "guard_read",
           "load_copy", "load_dataset", "modality_sets", "parse_store_arg", "split_rows", "stack_copies",
           "store_key", "summarise"]
