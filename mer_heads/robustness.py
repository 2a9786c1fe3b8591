"""Robustness to corrupted input (the MER-NOISE question): how scores fall with the noise level.

Heads are trained on clean features only; each *condition* swaps some modalities' stores for
stores extracted from corrupted media (``mer-features extract --noise SPEC --seed N``), and
the models are scored on those features. Modalities a condition does not name keep their clean
store (text, for instance, is never corrupted).

Protocol. Without a test split, every modality set is cross-validated on the clean features
(one fold assignment shared by all sets, as in the ablation), and a condition is scored on the
*held-out* predictions: each clip is predicted, from its corrupted copy, by the fold model that
never saw the clip. The clean condition therefore reproduces the cross-validated scores of
``mer-heads fit`` exactly. With ``test_split``, the fold ensemble trained on the other clips
predicts the test clips of each condition.

A corrupted store must come from the same clips (names and input-file hashes) and the same
encoder, weights, configuration, preprocessing and dtypes as the clean store of its modality,
differing only in the noise spec and seed; anything else is refused with the differing fields
named. Conditions are labelled from the noise spec recorded in the store header
(``snr=10,source=pink`` -> ``10 dB pink``) unless a label is given, and are ordered clean first,
then by decreasing SNR, then the other corruptions (blur, scale, jpeg) in the order given.

Writes ``robustness.csv`` (one row per condition x modality set), ``robustness.md`` (tables:
rows conditions, columns modality sets), ``robustness.json`` (byte-identical for the same seed
and stores) and ``robustness.png`` (F1 against SNR, one line per modality set; other
corruptions in a second panel).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_features import EMOTIONS
from mer_features.store import FeatureStore, StoreError
from mer_heads.data import MAX_FRAMES, MultimodalData, guard_read, load_dataset, parse_store_arg
from mer_heads.errors import DataError
from mer_heads.experiment import check_params, split_rows
from mer_heads.metrics import Scores, score
from mer_heads.protocol import SKLEARN_MODELS, CrossValidatedHead, shared_folds
from mer_heads.robustness_report import (CLEAN, CSV_COLUMNS, markdown_tables,
                                         robustness_figure)
from mer_heads.rundir import dump_json, prepare_out_dir, remove_if_empty, write_csv, write_text

SETS = ("all", "minimal")
_SHOWN = 5

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


@dataclass
class RobustnessResult:
    rows: list[dict[str, Any]]
    conditions: list[Condition]
    sets: list[tuple[str, ...]]
    csv_path: Path
    markdown_path: Path
    json_path: Path
    png_path: Path
    seconds: float
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        return self.markdown_path.read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------
# Noise specs as recorded in store headers


def describe_noise(spec: str, modality: str | None = None) -> dict[str, Any]:
    """What a canonical noise spec (``snr=10,source=pink``, ``blur=1|2|4``) does, for labels.

    Returns ``label`` (``10 dB pink``, ``blur 1|2|4``), ``snr_db`` (middle of the SNR range or
    None) and ``source`` (None without additive noise). Reads the spec as
    :func:`mer_features.noise.canonical` writes it. A store records the whole spec it was
    extracted with; with ``modality``, only the keys acting on it count (snr and source on
    audio; blur, scale and jpeg on video).
    """
    values = {}
    for part in spec.split(","):
        key, _, value = part.partition("=")
        if key.strip():
            values[key.strip()] = value.strip()
    if modality is not None:
        acting = {"audio": ("snr", "source"), "video": ("blur", "scale", "jpeg")}.get(modality, ())
        values = {k: v for k, v in values.items() if k in acting}
    parts, snr, source = [], None, None
    if "snr" in values:
        low, _, high = values["snr"].partition(":")
        try:
            lo, hi = float(low), float(high or low)
        except ValueError:  # not a spec mer_features writes: label the condition by its text
            return {"label": spec, "snr_db": None, "source": None}
        snr = (lo + hi) / 2
        source = values.get("source", "white")
        if source not in ("white", "pink", "babble"):
            source = Path(source).name or source
        text = f"{lo:g} dB" if lo == hi else f"{lo:g}-{hi:g} dB"
        parts.append(text if source == "white" else f"{text} {source}")
    for key in ("blur", "scale", "jpeg"):
        if key in values:
            parts.append(f"{key} {values[key]}")
    return {"label": " + ".join(parts) or spec, "snr_db": snr, "source": source}


def _flatten(fields: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(fields, dict):
        out: dict[str, Any] = {}
        for key, value in fields.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix.rstrip("."): fields}


def differing_fields(clean: dict[str, Any], noisy: dict[str, Any]) -> list[str]:
    """Dotted names of the fingerprinted fields that differ, the noise fields excepted."""
    a = _flatten({k: v for k, v in clean.items() if k != "noise"})
    b = _flatten({k: v for k, v in noisy.items() if k != "noise"})
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
        shown = "; ".join(f"{k}: {_short(b.get(k, '<absent>'))} "
                          f"(clean: {_short(a.get(k, '<absent>'))})" for k in differ[:_SHOWN])
        raise DataError(
            f"{where} was not extracted like the clean store '{clean.path}': "
            f"{len(differ)} field(s) differ besides the noise spec and seed ({shown}"
            f"{' ...' if len(differ) > _SHOWN else ''}). Extract it with the same --encoder, "
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
            f"'{clean.path}' ({_listed(lacking)})."
            " Extract it from the same manifest as the clean store.")
    clean_hash = dict(zip(clean.names, clean.column("input_hash")))
    noisy_hash = dict(zip(noisy.names, noisy.column("input_hash")))
    other = [n for n in names if clean_hash.get(n) and noisy_hash.get(n)
             and "missing" not in (clean_hash[n], noisy_hash[n]) and clean_hash[n] != noisy_hash[n]]
    if other:
        raise DataError(
            f"{where} was extracted from other input files than the clean store for "
            f"{len(other)} clip(s) ({_listed(other)}"
            "); the files changed between the two extractions. Re-extract both from the same "
            "media.")
    return dict(noise)


def _listed(names: Sequence[str]) -> str:
    return ", ".join(names[:_SHOWN]) + (" ..." if len(names) > _SHOWN else "")


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


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


def resolve_conditions(conditions: Sequence[Any], clean: MultimodalData) -> list[Condition]:
    """Check every corrupted store against the clean store of its modality and label it.

    ``conditions`` : items of :func:`parse_condition`'s form ``(label, [(key, path), ...])``, or
    token lists for it. Returns the clean condition first, then the others in table order.
    """
    paths = {m.key: Path(m.path) for m in clean.modalities}
    resolved: list[Condition] = []
    for item in conditions:
        label, specs = parse_condition(item) if _is_tokens(item) else (item[0], list(item[1]))
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
                        f"Condition '{label or path}' names modality '{key}' ('{path}'), which "
                        f"is not among the clean --features ({', '.join(paths)}). Name it as "
                        "KEY=STORE with a key of --features.")
                if key in cond.stores:
                    raise DataError(f"Condition '{label or path}' gives two stores for '{key}'.")
                with FeatureStore(paths[key]) as original:
                    noise = guard_read([original, noisy], lambda: check_corrupted_store(
                        original, noisy, key=key, label=label, names=clean.names))
                cond.stores[key] = Path(path)
                cond.noise[key] = noise
                cond.fingerprints[key] = noisy.fingerprint
                noisy_modality = noisy.modality
            described = describe_noise(str(noise.get("spec", "")), noisy_modality)
            parts.append(described["label"])
            if described["snr_db"] is not None:
                if cond.snr_db is not None and cond.snr_db != described["snr_db"]:
                    raise DataError(f"Condition '{label or path}' mixes two SNRs; give each its "
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


# --------------------------------------------------------------------------------------------
# Held-out predictions of fitted fold models on other features of the same clips


def held_out_predictions(est: CrossValidatedHead, data: MultimodalData
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each training clip of ``est`` predicted by the fold models that never saw it.

    ``data`` holds the clips ``est`` was fitted on (any order, other clips allowed), with the
    same modalities, possibly from other stores (corrupted copies). Returns class probabilities
    (n_train, 6), valence (n_train,) (NaN without valence) and ``imputed`` (n_train,): clips
    with no usable modality in ``data``, given the training prior and mean valence. On the
    training features this reproduces ``est.oof_proba_`` / ``est.oof_valence_``.
    """
    est._check_fitted()
    if data.keys != est.keys_ or data.dims != est.dims_ or data.input != est.input_:
        raise DataError(f"The head was fitted on {est.input_} features of "
                        f"{list(zip(est.keys_, est.dims_))}; got {data.input} features of "
                        f"{list(zip(data.keys, data.dims))}.")
    where = {n: i for i, n in enumerate(data.names)}
    lacking = [n for n in est.train_names_ if n not in where]
    if lacking:
        raise DataError(f"{len(lacking)} training clip(s) are not in the data "
                        f"({', '.join(lacking[:_SHOWN])}).")
    sub = data.subset(np.array([where[n] for n in est.train_names_], np.int64))
    rows = [np.flatnonzero(est.fold_ == f) for f in est.model_folds_]
    if est.model in SKLEARN_MODELS:
        probas, valences = _held_out_sklearn(est, sub, rows)
    else:
        probas, valences = _held_out_neural(est, sub, rows)
    n = len(sub)
    proba, valence = np.zeros((n, len(EMOTIONS))), np.zeros(n)
    for r, p, v in zip(rows, probas, valences):
        proba[r] += p / est.seeds
        valence[r] += v / est.seeds
    imputed = ~sub.present.any(axis=1)
    proba[imputed] = est.prior_
    valence = valence if est.has_valence_ else np.full(n, np.nan)
    valence[imputed] = est.mean_valence_
    return proba, valence, imputed


def _held_out_neural(est: CrossValidatedHead, data: MultimodalData, rows: list[np.ndarray]
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    import torch

    from mer_heads.training import DeviceData, padded_rows, predict_rows

    # The same threads, dtype and row layout as the held-out pass during training, so the clean
    # features give the training's held-out predictions bit for bit.
    with est.stack_on_device(data, est.batch_size_) as (module, device, dtype):
        tensors = DeviceData(data, est.standardizer_, device, dtype)
        index, _ = padded_rows(rows, device)
        folds = torch.from_numpy(np.asarray(est.model_folds_, np.int64)).to(device)
        proba, valence = predict_rows(module, tensors, folds, index)
        proba, valence = proba.cpu().numpy(), valence.cpu().numpy()
    return ([proba[f, :len(r)].astype(np.float64) for f, r in enumerate(rows)],
            [valence[f, :len(r)].astype(np.float64) for f, r in enumerate(rows)])


def _held_out_sklearn(est: CrossValidatedHead, data: MultimodalData, rows: list[np.ndarray]
                      ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    from mer_heads.sklearn_models import design_matrix, full_proba, valence_predictions

    probas, valences = [], []
    designs: dict[int, np.ndarray] = {}
    for f, (fold, (classifier, regressor)) in enumerate(zip(est.model_folds_, est.estimators_)):
        if fold not in designs:
            designs = {fold: design_matrix(est.standardizer_.transform(data, fold), data.present)}
        Z = designs[fold][rows[f]]
        probas.append(full_proba(classifier, Z, len(EMOTIONS)))
        valences.append(valence_predictions(regressor, Z))
    return probas, valences


# --------------------------------------------------------------------------------------------


def modality_sets(keys: Sequence[str], sets: str = "all") -> list[tuple[str, ...]]:
    """``all``: every non-empty combination, smallest first; ``minimal``: each modality alone
    and all of them together."""
    if sets not in SETS:
        raise DataError(f"sets must be one of {', '.join(SETS)}; got '{sets}'.")
    if sets == "all":
        return [c for r in range(1, len(keys) + 1) for c in itertools.combinations(keys, r)]
    singles = [(k,) for k in keys]
    return singles + ([tuple(keys)] if len(keys) > 1 else [])


def robustness(features: Sequence[StoreArg], conditions: Sequence[Any], out: str | Path, *,
               manifest: str | Path | None = None, input: str = "utterance",
               join: str = "exact", layers: str = "mean", max_frames: int = MAX_FRAMES,
               train_split: str | None = None, test_split: str | None = None,
               sets: str = "all", overwrite: bool = False, **params: Any) -> RobustnessResult:
    """Train on the clean ``features`` and score every condition; write ``out/robustness.*``.

    Parameters
    ----------
    features : the clean stores, as for :func:`mer_heads.data.load_dataset`.
    conditions : one item per condition, ``(label or None, [(key or None, path), ...])`` or the
        command line's token list ``["20 dB", "audio=a20.h5"]``.
    test_split : score the fold ensemble on this split's clips instead of held-out folds
        (training on ``train_split``, or on every other clip).
    sets : modality sets to score, ``all`` combinations or ``minimal`` (singles and all).
    overwrite : replace an earlier sweep in ``out`` (else refused before any work).
    params : :class:`~mer_heads.protocol.CrossValidatedHead` hyper-parameters.
    """
    start = time.perf_counter()
    if not conditions:
        raise DataError("No condition given; add --condition [LABEL] KEY=STORE for each "
                        "corrupted version of the features.")
    check_params(params, input=input, join=join, layers=layers, max_frames=max_frames)
    modality_sets(["x"], sets)
    conditions = [parse_condition(c) if _is_tokens(c) else c for c in conditions]
    out = Path(out)
    created = prepare_out_dir(out, marker="robustness.json", overwrite=overwrite,
                              what="robustness sweep")
    try:
        return _robustness(features, conditions, out, start, manifest=manifest, input=input,
                           join=join, layers=layers, max_frames=max_frames,
                           train_split=train_split, test_split=test_split, sets=sets, **params)
    except BaseException:
        if created:
            remove_if_empty(out)
        raise


def _robustness(features, conditions, out: Path, start: float, *, manifest, input, join,
                layers, max_frames, train_split, test_split, sets, **params) -> RobustnessResult:
    load = dict(input=input, manifest=manifest, join=join, layers=layers, max_frames=max_frames)
    clean = load_dataset(features, **load)
    conds = resolve_conditions(conditions, clean)
    combos = modality_sets(clean.keys, sets)
    train_mask, test_mask = _split_masks(clean, train_split, test_split)
    train = clean.subset(train_mask)
    fold_of = shared_folds(train, params, "nothing to train on. Check the stores' labels (or "
                                          "pass --manifest) and --train-split.")
    heads = {combo: CrossValidatedHead(**params).fit(train.select_modalities(combo),
                                                     fold_of=fold_of)
             for combo in combos}
    notes = sorted({n for est in heads.values() for n in est.notes_})

    rows: list[dict[str, Any]] = []
    for cond in conds:
        data = clean if cond.is_clean else _condition_data(clean, cond, load)
        for combo, est in heads.items():
            if test_split is None:
                part = data.subset(train_mask).select_modalities(combo)
                scored, lost = _score_held_out(est, part, train.select_modalities(combo))
            else:
                scored, lost = _score_test(est, data.subset(test_mask).select_modalities(combo),
                                           clean.subset(test_mask).select_modalities(combo))
            rows.append({"condition": cond.label, "snr_db": cond.snr_db,
                         "corruption": cond.corruption or CLEAN, "modalities": "+".join(combo),
                         **scored, "lost": lost})

    example = CrossValidatedHead(**params)
    csv_path, md_path = out / "robustness.csv", out / "robustness.md"
    json_path, png_path = out / "robustness.json", out / "robustness.png"
    write_csv(csv_path, CSV_COLUMNS, rows)
    protocol = "held-out folds" if test_split is None else f"test split '{test_split}'"
    dump_json({"params": example.get_params(), "input": input, "layers": layers,
               "protocol": protocol, "train_split": train_split, "test_split": test_split,
               "modalities": [m.to_json() for m in clean.modalities],
               "sets": ["+".join(c) for c in combos],
               "conditions": [c.to_json() for c in conds],
               "cv": {"+".join(c): est.cv_scores_.to_json() for c, est in heads.items()},
               "best_epochs": {"+".join(c): est.best_epochs_.tolist() for c, est in heads.items()},
               "rows": rows, "notes": notes}, json_path)
    has_valence = any(r["mse"] is not None for r in rows)
    write_text(md_path, markdown_tables(rows, conds, combos, example.get_params(), input,
                                        protocol, has_valence, notes))
    robustness_figure(rows, conds, combos, png_path,
                      f"{example.model}, trained clean, scored on {protocol}")
    return RobustnessResult(rows, conds, combos, csv_path, md_path, json_path, png_path,
                            time.perf_counter() - start, notes)


def _split_masks(data: MultimodalData, train_split: str | None, test_split: str | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    train, test = split_rows(data, train_split, test_split)
    if test_split is not None and not (data.labels[test] >= 0).any():
        raise DataError(f"No clip of the test split '{test_split}' is labelled, so no condition "
                        "can be scored on it; drop --test-split to score held-out folds.")
    return train, test


def _condition_data(clean: MultimodalData, cond: Condition, load: dict[str, Any]) -> MultimodalData:
    """The clean data set with the condition's modalities read from its corrupted stores; same
    clips, order and labels as ``clean``."""
    from dataclasses import replace

    specs = [(m.key, cond.stores.get(m.key, m.path)) for m in clean.modalities]
    data = load_dataset(specs, **{**load, "join": "inner"})
    where = {n: i for i, n in enumerate(data.names)}
    data = data.subset(np.array([where[n] for n in clean.names], np.int64))
    return replace(data, discrete=clean.discrete, valence=clean.valence, split=clean.split)


def _lost(data: MultimodalData, reference: MultimodalData) -> int:
    """Clips with a modality usable in the clean features but not in the corrupted ones."""
    return int((reference.present & ~data.present).any(axis=1).sum())


def _scores_json(s: Scores, imputed: int) -> dict[str, Any]:
    return {"clips": s.n, "imputed": imputed, "f1": s.f1, "accuracy": s.accuracy, "mse": s.mse,
            "metric": s.metric}


def _score_held_out(est: CrossValidatedHead, data: MultimodalData, clean: MultimodalData
                    ) -> tuple[dict[str, Any], int]:
    proba, valence, imputed = held_out_predictions(est, data)
    where = {n: i for i, n in enumerate(clean.names)}
    at = np.array([where[n] for n in est.train_names_], np.int64)
    where_d = {n: i for i, n in enumerate(data.names)}
    at_d = np.array([where_d[n] for n in est.train_names_], np.int64)
    s = score(clean.labels[at], proba.argmax(1),
              clean.valence[at] if est.has_valence_ else None, valence)
    return _scores_json(s, int(imputed.sum())), _lost(data.subset(at_d), clean.subset(at))


def _score_test(est: CrossValidatedHead, data: MultimodalData, clean: MultimodalData
                ) -> tuple[dict[str, Any], int]:
    proba, valence, imputed = est.predict_proba(data)
    labelled = clean.labels >= 0
    s = score(clean.labels[labelled], proba[labelled].argmax(1),
              clean.valence[labelled] if est.has_valence_ else None, valence[labelled])
    return (_scores_json(s, int(imputed[labelled].sum())),
            _lost(data.subset(labelled), clean.subset(labelled)))


# --------------------------------------------------------------------------------------------


__all__ = ["CLEAN", "CSV_COLUMNS", "Condition", "RobustnessResult", "SETS", "check_corrupted_store",
           "describe_noise", "differing_fields", "held_out_predictions", "markdown_tables",
           "modality_sets", "parse_condition", "resolve_conditions", "robustness",
           "robustness_figure"]
