"""Conditions of a robustness sweep: which corrupted stores replace which clean ones, checked.

A *condition* swaps some modalities' stores for stores extracted from corrupted media
(``mer-features extract --noise SPEC --seed N``, or every level at once with
``mer-features sweep``); the modalities it does not name keep their clean store. A corrupted
store must come from the same clips (names and input-file hashes) and the same encoder,
weights, configuration, preprocessing and dtypes as the clean store of its modality, differing
only in the noise spec and seed; anything else is refused with the differing fields named.
Conditions are labelled from the noise spec recorded in the store header
(``snr=10,source=pink`` -> ``10 dB pink``, by :func:`mer_features.noise.describe_noise`)
unless a label is given, and are ordered clean first, then by decreasing SNR, then the other
corruptions (blur, scale, jpeg) in the order given.

Conditions come from ``--condition [LABEL] KEY=STORE ...`` (:func:`parse_condition`) and from
the JSON file ``mer-features sweep`` writes (:func:`read_sweep`). The corrupted *training* copies
of multi-condition training (``--augment KEY=STORE``, :func:`load_augment`) are checked the same
way, one store per copy, and must not hold a test condition's noise draws
(:func:`check_disjoint_draws`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mer_features.fingerprint import with_added_fields
from mer_features.noise import describe_noise
from mer_features.store import FeatureStore, StoreError
from mer_heads.data.dataset import guard_read, load_copy, parse_store_arg
from mer_heads.errors import DataError, listed

if TYPE_CHECKING:
    from mer_heads.config import DataConfig
    from mer_heads.data.dataset import MultimodalData

CLEAN = "clean"
"""The label of the clean condition (the training features themselves)."""
SWEEP_FORMAT = 1

StoreArg = str | Path | tuple[str, str | Path]


@dataclass
class Condition:
    """One corrupted version of the data set.

    stores : modality key -> corrupted store (the other modalities use their clean store).
    noise : modality key -> the store's recorded noise fields (``{"spec": ..., "seed": ...}``).
    snr_db : its position on the SNR axis (the middle of an SNR range); None without audio noise.
    source : the additive noise (white, pink, babble, a folder's name); None without audio noise.
    series : the plot line it joins on the SNR axis: its source, plus its other corruptions
        when it has some (``white + blur 2``).
    """

    label: str
    stores: dict[str, Path] = field(default_factory=dict)
    noise: dict[str, dict[str, Any]] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    snr_db: float | None = None
    source: str | None = None
    series: str | None = None
    corruption: str = ""

    @property
    def is_clean(self) -> bool:
        return not self.stores

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "snr_db": self.snr_db, "source": self.source,
                "series": self.series,
                "corruption": self.corruption,
                "stores": {k: {"path": str(p), "fingerprint": self.fingerprints[k],
                               "noise": self.noise[k]} for k, p in self.stores.items()}}


# --------------------------------------------------------------------------------------------
# Corrupted stores against their clean twin


def _flatten(fields: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(fields, dict):
        out: dict[str, Any] = {}
        for key, value in fields.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): fields}


def differing_fields(clean: dict[str, Any], noisy: dict[str, Any]) -> list[str]:
    """Dotted names of the fingerprinted fields that differ, the noise fields excepted (fields
    added to the fingerprint later count with the value older stores were made with)."""
    a = _flatten({k: v for k, v in with_added_fields(clean).items() if k != "noise"})
    b = _flatten({k: v for k, v in with_added_fields(noisy).items() if k != "noise"})
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


def check_corrupted_store(clean: FeatureStore, noisy: FeatureStore, *, key: str,
                          label: str | None, names: Sequence[str]) -> dict[str, Any]:
    """Refuse a corrupted store that is not the clean store's twin; return its noise fields.

    ``names`` are the clips the heads are trained on (from the clean stores); the corrupted store
    must hold every one of them, extracted from the same input file.
    """
    where = f"The {key} store '{noisy.path}'" + (f" of condition '{label}'" if label else "")
    clean_fields, noisy_fields = clean.fields, noisy.fields
    differ = differing_fields(clean_fields, noisy_fields)
    if differ:
        a, b = _flatten(clean_fields), _flatten(noisy_fields)
        shown = listed((f"{k}: {_short(b.get(k, '<absent>'))} (clean: "
                        f"{_short(a.get(k, '<absent>'))})" for k in differ), sep="; ")
        raise DataError(
            f"{where} was not extracted like the clean store '{clean.path}': "
            f"{len(differ)} field(s) differ besides the noise spec and seed ({shown}). "
            "Extract it with the same --encoder, "
            "options, --dtype and --storage-dtype as the clean store, changing only --noise and "
            "--seed.")
    noise = noisy_fields.get("noise")
    if noise and not isinstance(noise, dict):
        noise = {"spec": str(noise), "seed": None}
    if not noise:
        raise DataError(
            f"{where} records no noise spec: it is a clean extraction. Extract the corrupted "
            "features with `mer-features extract ... --noise SPEC --seed N`.")
    present = set(noisy.names)
    lacking = [n for n in names if n not in present]
    if lacking:
        raise DataError(
            f"{where} lacks {len(lacking)} of the {len(names)} clips of the clean store "
            f"'{clean.path}' ({listed(lacking)})."
            " Extract it from the same manifest as the clean store.")
    clean_hash = dict(zip(clean.names, clean.column("input_hash")))
    noisy_hash = dict(zip(noisy.names, noisy.column("input_hash")))
    other = [n for n in names if clean_hash.get(n) and noisy_hash.get(n)
             and "missing" not in (clean_hash[n], noisy_hash[n]) and clean_hash[n] != noisy_hash[n]]
    if other:
        raise DataError(
            f"{where} was extracted from other input files than the clean store for "
            f"{len(other)} clip(s) ({listed(other)}"
            "); the files changed between the two extractions. Re-extract both from the same "
            "media.")
    return dict(noise)


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _check_expected_noise(noise: dict[str, Any], expected: dict[str, Any] | None, *,
                          where: str) -> None:
    """Refuse a store whose recorded noise spec or seed is not the one a sweep file lists."""
    if not expected:
        return
    differ = [k for k in ("spec", "seed") if expected.get(k) is not None
              and str(noise.get(k)) != str(expected[k])]
    if differ:
        shown = ", ".join(f"{k} {noise.get(k)!r} (the sweep file: {expected[k]!r})" for k in differ)
        raise DataError(f"{where} records noise {shown}: it is not the store the sweep made. "
                        "Run `mer-features sweep` again, or fix the sweep file.")


# --------------------------------------------------------------------------------------------
# Conditions


def parse_condition(tokens: Sequence[str]) -> tuple[str | None, list[tuple[str | None, Path]]]:
    """``["20 dB", "audio=A20.h5"]`` -> ``("20 dB", [("audio", Path("A20.h5"))])``.

    A token holding ``=`` or naming an existing file is a store (``[KEY=]STORE``); the one other
    token, if any, is the label.
    """
    label, stores = None, []
    for token in tokens:
        if "=" in token or Path(token).is_file():
            stores.append(parse_store_arg(token))
        elif label is None:
            label = token
        else:
            raise DataError(f"Condition {' '.join(tokens)!r} has two labels ('{label}' and "
                            f"'{token}'); give at most one LABEL and then KEY=STORE pairs (a "
                            "store that does not exist is read as a label: check the path).")
    if not stores:
        missing = f" ('{label}' is not an existing file)" if label and (
            label.endswith(".h5") or "/" in label) else ""
        raise DataError(f"Condition {' '.join(tokens)!r} names no store{missing}; write it as "
                        "[LABEL] KEY=STORE [KEY=STORE ...], e.g. --condition '20 dB' audio=a20.h5.")
    return label, stores


@dataclass
class Sweep:
    """What a sweep file (``mer-features sweep``) holds: the swept ``modality``, its ``clean``
    store and one condition per level, in :func:`resolve_conditions`' item form."""

    path: Path
    modality: str
    clean: Path
    conditions: list[tuple[str | None, list[tuple[str, Path]], dict[str, Any]]]


def read_sweep(path: str | Path) -> Sweep:
    """Read the JSON file ``mer-features sweep`` writes::

        {"format": 1, "modality": "audio", "manifest": ..., "encoder": ..., "seed": N,
         "clean": "<store>", "conditions": [{"level": "20", "spec": "snr=20,source=white",
                                             "label": "20 dB", "store": "<store>"}, ...]}

    Store paths are relative to the file's folder. Each condition keeps its label, and its
    store must record the listed spec and seed.
    """
    path = Path(path)
    redo = "write it with `mer-features sweep`"
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"The sweep file '{path}' (--sweep) does not exist; {redo}.") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise DataError(f"The sweep file '{path}' (--sweep) cannot be read ({e}); {redo}.") from e

    def bad(what: str) -> DataError:
        return DataError(f"The sweep file '{path}' (--sweep) {what}; {redo}.")

    if not isinstance(obj, dict) or obj.get("format") != SWEEP_FORMAT:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise bad(f"has format {got!r}; this mer_heads reads format {SWEEP_FORMAT}")
    modality, clean, items = obj.get("modality"), obj.get("clean"), obj.get("conditions")
    if not isinstance(modality, str) or not modality:
        raise bad("names no modality")
    if not isinstance(clean, str) or not clean:
        raise bad("names no clean store")
    if not isinstance(items, list) or not items:
        raise bad("lists no condition")
    folder = path.parent
    conditions = []
    for i, item in enumerate(items):
        store = item.get("store") if isinstance(item, dict) else None
        if not isinstance(store, str) or not store:
            raise bad(f"has no store for condition {i + 1}")
        label = item.get("label") or None
        conditions.append((None if label is None else str(label), [(modality, folder / store)],
                           {"spec": item.get("spec"), "seed": obj.get("seed")}))
    return Sweep(path, modality, folder / clean, conditions)


def resolve_conditions(conditions: Sequence[Any], clean: MultimodalData, *,
                       what: str = "Condition") -> list[Condition]:
    """Check every corrupted store against the clean store of its modality and label it.

    ``conditions`` : items of :func:`parse_condition`'s form ``(label, [(key, path), ...])``
    (optionally a third element: the noise fields ``{"spec": ..., "seed": ...}`` its stores
    must record, as a sweep file says), or token lists for it. ``what`` names them in errors
    (``--augment`` stores are checked here too). Returns the clean condition first, then the
    others in table order.
    """
    paths = {m.key: Path(m.path) for m in clean.modalities}
    resolved: list[Condition] = []
    for item in parse_conditions(conditions):
        label, specs = item[0], list(item[1])
        expected = item[2] if len(item) > 2 else None
        cond = Condition(label=label or "")
        parts = []
        for spec in specs:
            key, path = parse_store_arg(spec)
            try:
                noisy = FeatureStore(path)
            except StoreError as e:
                raise DataError(f"Cannot read the corrupted store '{path}': {e}") from e
            with noisy:
                key = key or noisy.modality
                if key not in paths:
                    raise DataError(
                        f"{what} '{label or path}' names modality '{key}' ('{path}'), which "
                        f"is not among the clean --features ({', '.join(paths)}). Name it as "
                        "KEY=STORE with a key of --features.")
                if key in cond.stores:
                    raise DataError(f"{what} '{label or path}' gives two stores for '{key}'.")
                with FeatureStore(paths[key]) as original:
                    noise = guard_read([original, noisy], lambda: check_corrupted_store(
                        original, noisy, key=key, label=label, names=clean.names))
                _check_expected_noise(noise, expected, where=f"The {key} store '{path}' of "
                                      f"{what.lower()} '{label or path}'")
                cond.stores[key] = Path(path)
                cond.noise[key] = noise
                cond.fingerprints[key] = noisy.fingerprint
                noisy_modality = noisy.modality
            described = describe_noise(str(noise.get("spec", "")), noisy_modality)
            parts.append(described["label"])
            if described["snr_db"] is not None:
                if cond.snr_db is not None and cond.snr_db != described["snr_db"]:
                    raise DataError(f"{what} '{label or path}' mixes two SNRs; give each its "
                                    "own --condition.")
                cond.snr_db, cond.source = described["snr_db"], described["source"]
        cond.corruption = " + ".join(dict.fromkeys(parts))
        if cond.snr_db is not None:
            others = [p for p in dict.fromkeys(parts) if "dB" not in p]
            cond.series = " + ".join([cond.source or "", *others])
        resolved.append(cond)
    _name_conditions(resolved)
    order = sorted(range(len(resolved)), key=lambda i: (
        resolved[i].snr_db is None, -(resolved[i].snr_db or 0.0), i))
    return [Condition(label=CLEAN)] + [resolved[i] for i in order]


def parse_augment(specs: Sequence[StoreArg]) -> list[tuple[None, list[tuple[str | None, Path]]]]:
    """``--augment KEY=STORE`` arguments as conditions of one store each (checked like a
    condition's by :func:`resolve_conditions`); a store given twice is refused."""
    items, seen = [], []
    for spec in specs:
        key, path = parse_store_arg(spec)
        shown = f"{key}={path}" if key else str(path)
        for other, other_shown in seen:
            if path.exists() and other.exists() and path.samefile(other):
                raise DataError(f"--augment {shown} and --augment {other_shown} are the same "
                                "store; give each corrupted copy once.")
        seen.append((path, shown))
        items.append((None, [(key, path)]))
    return items


def load_augment(specs: Sequence[StoreArg], clean: MultimodalData, loading: DataConfig
                 ) -> tuple[list[Condition], list[MultimodalData]]:
    """The corrupted training copies of ``--augment KEY=STORE ...``: each store checked against
    the clean store of its modality (same clips, input files, encoder and configuration; only
    the noise differs) and loaded as a copy of ``clean``
    (:func:`~mer_heads.data.dataset.load_copy`). Returns the copies' conditions (labels, noise
    specs) and data, in table order."""
    if not specs:
        return [], []
    conds = resolve_conditions(parse_augment(specs), clean, what="--augment")[1:]
    return conds, [load_copy(clean, c.stores, loading) for c in conds]


def check_disjoint_draws(augment: Sequence[Condition], conditions: Sequence[Condition]) -> None:
    """Refuse training copies whose noise draws are a test condition's: the same store, or a
    store recording the same spec and seed for the same modality (multi-condition heads must
    never train on the very noise they are scored on)."""
    for a in augment:
        for c in conditions:
            for key, path in a.stores.items():
                if key not in c.stores:
                    continue
                same_file = Path(path).exists() and Path(c.stores[key]).exists() and \
                    Path(path).samefile(c.stores[key])
                same_draws = (str(a.noise[key].get("spec")) == str(c.noise[key].get("spec"))
                              and str(a.noise[key].get("seed")) == str(c.noise[key].get("seed")))
                if same_file or same_draws:
                    raise DataError(
                        f"--augment {key}={path} has the noise draws of condition '{c.label}' "
                        f"({a.noise[key].get('spec')}, seed {a.noise[key].get('seed')}): the "
                        "multi-condition heads would train on the noise they are scored on. "
                        "Extract the training copies with another --seed (make robustness: "
                        "TRAIN_SEED).")


def parse_conditions(conditions: Sequence[Any]) -> list[tuple]:
    """Every item of ``conditions`` in :func:`resolve_conditions`' tuple form (token lists
    parsed by :func:`parse_condition`), so bad ones are refused before any work."""
    return [parse_condition(item) if _is_tokens(item) else tuple(item) for item in conditions]


def _is_tokens(item: Any) -> bool:
    return isinstance(item, (list, tuple)) and all(isinstance(t, str) for t in item) and not (
        len(item) == 2 and isinstance(item[1], (list, tuple)))


def _name_conditions(conditions: list[Condition]) -> None:
    taken = {CLEAN}
    for cond in conditions:
        if cond.label:
            if cond.label in taken:
                raise DataError(f"Two conditions are labelled '{cond.label}'; labels must be "
                                f"unique (and '{CLEAN}' is the clean features').")
            taken.add(cond.label)
    for cond in conditions:
        if cond.label:
            continue
        label = cond.corruption
        if label in taken:
            seeds = sorted({str(n.get("seed")) for n in cond.noise.values()})
            label = f"{label} (seed {','.join(seeds)})"
        base, k = label, 2
        while label in taken:
            label, k = f"{base} #{k}", k + 1
        cond.label = label
        taken.add(label)



__all__ = ["CLEAN", "Condition", "Sweep", "check_corrupted_store", "check_disjoint_draws",
           "differing_fields", "load_augment", "parse_augment", "parse_condition",
           "parse_conditions", "read_sweep", "resolve_conditions"]
