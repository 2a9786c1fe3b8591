"""Robustness to corrupted input (the MER-NOISE question): how scores fall with the noise level.

Heads are trained on clean features only; each *condition* (:mod:`.conditions`) swaps some
modalities' stores for stores extracted from corrupted media, and the models are scored on
those features. Modalities a condition does not name keep their clean store (text, for
instance, is never corrupted).

Protocol. Without a test split, every modality set is cross-validated on the clean features
(one fold assignment shared by all sets, as in the ablation), and a condition is scored on the
*held-out* predictions (:meth:`~mer_heads.protocol.CrossValidatedHead.predict_held_out`): each
clip is predicted, from its corrupted copy, by the fold model that never saw the clip. The clean
condition therefore reproduces the cross-validated scores of ``mer-heads fit`` exactly. With
``test_split``, the fold ensemble trained on the other clips predicts the test clips of each
condition.

Multi-condition training (``augment``): corrupted copies of the clean stores (extracted with
noise draws other than the conditions', e.g. ``make robustness TRAIN_LEVELS=... TRAIN_SEED=1``)
train a second head per modality set, whose folds train on their clips' corrupted copies too
(held-out clips are never augmented; the same folds as the clean-trained heads); every
condition is scored for both, as two row groups (column ``training``: ``clean`` and
``multi-condition``). A modality set that no copy corrupts trains no second head: its
multi-condition rows are the clean-trained head's. Copies whose noise draws are a condition's
(same store, or same spec and seed) are refused.

Writes ``robustness.csv`` (one row per training x condition x modality set), ``robustness.md``
(tables: rows conditions, columns modality sets), ``robustness.json`` (byte-identical for the
same seed and stores) and ``robustness.png`` (F1 against SNR, one line per modality set; other
corruptions in a second panel; a second row of panels for the multi-condition heads).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_heads.config import DataConfig, HeadConfig, split_options
from mer_heads.data.dataset import (SETS, MultimodalData, load_copy, load_dataset,
                                    modality_sets, split_rows, store_key)
from mer_heads.errors import DataError
from mer_heads.experiments.conditions import (CLEAN, Condition, StoreArg, check_disjoint_draws,
                                              load_augment, parse_conditions,
                                              read_sweep, resolve_conditions)
from mer_heads.folds import n_folds_shown, shared_folds
from mer_heads.heads import get_head
from mer_heads.experiments.ablation import published_column
from mer_heads.metrics import Scores, resolve_metric
from mer_heads.outputs import dump_json, output_folder, write_csv, write_text
from mer_heads.progress import plan as plan_fits
from mer_heads.progress import skip as skip_fits
from mer_heads.progress import tracking, unit
from mer_heads.protocol import CrossValidatedHead
from mer_heads.reports.result import ReportResult
from mer_heads.reports.figure import basis, chance_weighted_f1
from mer_heads.reports.robustness import (CSV_COLUMNS, corruption_text, markdown_tables,
                                          robustness_figure)


MULTI = "multi-condition"
"""The ``training`` of rows scored with the heads trained with ``augment`` copies."""


@dataclass(kw_only=True)
class RobustnessResult(ReportResult):
    """``rows``: one dict per training x condition x modality set, as in the CSV;
    ``conditions`` and ``sets``: the conditions (clean first) and modality sets scored."""

    stem = "robustness"

    rows: list[dict[str, Any]]
    conditions: list[Condition]
    sets: list[tuple[str, ...]]


def robustness(features: Sequence[StoreArg], conditions: Sequence[Any], out: str | Path,
               head: HeadConfig | None = None, loading: DataConfig | None = None, *,
               sweep: str | Path | None = None, augment: Sequence[StoreArg] = (),
               train_split: str | None = None, test_split: str | None = None, sets: str = "all",
               overwrite: bool = False, progress: bool | None = None,
               **options: Any) -> RobustnessResult:
    """Train on the clean ``features`` and score every condition; write ``out/robustness.*``.

    Parameters
    ----------
    features : the clean stores, as for :func:`mer_heads.data.load_dataset`.
    conditions : one item per condition, ``(label or None, [(key or None, path), ...])`` or the
        command line's token list ``["20 dB", "audio=a20.h5"]``.
    head, loading : the head's hyper-parameters and how the stores are loaded; ``options``
        are fields of either, by keyword (``model="logreg"``, ``input="frames"``).
    sweep : a sweep file of ``mer-features sweep``: its levels are conditions too (labelled as
        the file says), and its clean store is the swept modality's unless ``features`` names
        that modality.
    augment : corrupted training copies (``"audio=A-train-snr05-10.h5"``, one per copy): a
        multi-condition head per modality set is trained with them and scored beside the
        clean-trained one.
    test_split : score the fold ensemble on this split's clips instead of held-out folds
        (training on ``train_split``, or on every other clip).
    sets : modality sets to score, ``all`` combinations or ``minimal`` (singles and all).
    overwrite : replace an earlier sweep in ``out`` (else refused before any work).
    progress : False: nothing on stderr while it works (:mod:`mer_heads.progress`).
    """
    start = time.perf_counter()
    head, loading = split_options(head, loading, options)
    get_head(head.model).check_runtime(head)
    features = list(features)
    conditions = parse_conditions(conditions)
    if sweep is not None:
        plan = read_sweep(sweep)
        if not any(store_key(spec) == plan.modality for spec in features):
            features.insert(0, (plan.modality, plan.clean))
        conditions += plan.conditions
    if not conditions:
        raise DataError("No condition given; add --condition [LABEL] KEY=STORE for each "
                        "corrupted version of the features, or --sweep FILE.")
    if sets not in SETS:
        raise DataError(f"sets must be one of {', '.join(SETS)}; got '{sets}'.")
    with output_folder(out, marker=f"{RobustnessResult.stem}.json", overwrite=overwrite,
                       what="robustness sweep") as out, \
            tracking("mer-heads robustness", 0, progress):
        return _robustness(features, conditions, out, start, head, loading, augment=augment,
                           train_split=train_split, test_split=test_split, sets=sets)


def _robustness(features, conditions, out: Path, start: float, head: HeadConfig,
                loading: DataConfig, *, augment, train_split, test_split, sets
                ) -> RobustnessResult:
    clean = load_dataset(features, loading)
    conds = resolve_conditions(conditions, clean)
    augment_conds, copies = load_augment(augment, clean, loading)
    check_disjoint_draws(augment_conds, conds)
    combos = modality_sets(clean.keys, sets)
    train_mask, test_mask = _split_masks(clean, train_split, test_split)
    train = clean.subset(train_mask)
    fold_of = shared_folds(train.labels, train.present.any(axis=1), head.folds, head.seed,
                           groups=train.groups(head.groups), column=head.groups,
                           names=train.names, nothing="nothing to train on. Check the stores' "
                           "labels (or pass --manifest) and --train-split.",
                           classes=train.classes, published=published_column(train, head),
                           source=head.folds_from)
    heads: dict[tuple[str, tuple[str, ...]], CrossValidatedHead] = {}
    reused: list[str] = []
    plan_fits(len(combos) * (2 if copies else 1))
    for combo in combos:
        sub = train.select_modalities(combo)
        with unit("+".join(combo) + (", clean training" if copies else "")):
            heads[(CLEAN, combo)] = CrossValidatedHead.from_config(head).fit(sub,
                                                                             fold_of=fold_of)
        if not copies:
            continue
        mine = [c.subset(train_mask).select_modalities(combo)
                for c, cond in zip(copies, augment_conds) if set(cond.stores) & set(combo)]
        if not mine:  # no copy corrupts these modalities: the copies would repeat clean clips
            heads[(MULTI, combo)] = heads[(CLEAN, combo)]
            reused.append("+".join(combo))
            skip_fits()
            continue
        with unit("+".join(combo) + ", multi-condition training"):
            heads[(MULTI, combo)] = CrossValidatedHead.from_config(head).fit(
                sub, fold_of=fold_of, augment=mine)
    trainings = [CLEAN] + ([MULTI] if copies else [])
    notes = sorted({n for est in heads.values() for n in est.notes_})
    if reused:
        notes.append(f"no --augment store corrupts {', '.join(reused)}: their multi-condition "
                     "rows are the clean-trained heads'")

    rows: list[dict[str, Any]] = []
    for cond in conds:
        data = clean if cond.is_clean else load_copy(clean, cond.stores, loading)
        for training in trainings:
            for combo in combos:
                est = heads[(training, combo)]
                if test_split is None:
                    part = data.subset(train_mask).select_modalities(combo)
                    scored, lost = _score_held_out(est, part, train.select_modalities(combo))
                else:
                    scored, lost = _score_test(
                        est, data.subset(test_mask).select_modalities(combo),
                        clean.subset(test_mask).select_modalities(combo))
                rows.append({"training": training, "condition": cond.label,
                             "snr_db": cond.snr_db, "corruption": cond.corruption or CLEAN,
                             "modalities": "+".join(combo), **scored, "lost": lost})

    result = RobustnessResult(out=out, rows=rows, conditions=conds, sets=combos, notes=notes)
    metric = resolve_metric(head.metric, clean.classes)
    headline = headline_key(head.metric, metric)
    write_csv(result.csv_path, csv_columns(rows), rows)
    protocol = "held-out folds" if test_split is None else f"test split '{test_split}'"
    any_est = heads[(CLEAN, combos[0])]
    report = {"params": head.to_json(), "input": loading.input, "layers": loading.layers,
              "normalize_by": loading.normalize_by, "folds": any_est.fold_plan_.to_json(),
              "protocol": protocol, "train_split": train_split, "test_split": test_split,
              "modalities": [m.to_json() for m in clean.modalities],
              "sets": ["+".join(c) for c in combos], "trainings": trainings,
              "conditions": [c.to_json() for c in conds],
              "cv": {"+".join(c): heads[(CLEAN, c)].cv_scores_.to_json() for c in combos},
              "best_epochs": {"+".join(c): heads[(CLEAN, c)].best_epochs_.tolist()
                              for c in combos},
              "classes": list(clean.classes), "metric": metric, "headline": headline}
    if copies:
        report[MULTI] = {
            "augment": [c.to_json() for c in augment_conds],
            "statistics": "each fold's training clips and their copies",
            "cv": {"+".join(c): heads[(MULTI, c)].cv_scores_.to_json() for c in combos},
            "best_epochs": {"+".join(c): heads[(MULTI, c)].best_epochs_.tolist()
                            for c in combos},
            "copies_per_model": {"+".join(c): heads[(MULTI, c)].n_augmented_.tolist()
                                 for c in combos}}
    dump_json({**report, "rows": rows, "notes": notes}, result.json_path)
    has_valence = any(r["mse"] is not None for r in rows)
    from mer_heads.reports.robustness import interval_table

    write_text(result.markdown_path, markdown_tables(
        rows, conds, combos, head, loading.input, protocol, has_valence, notes,
        trainings=trainings, folds=any_est.fold_plan_.describe(head.folds),
        augment=augment_conds, normalize_by=loading.normalize_by, headline=headline,
        n_folds=n_folds_shown(head.folds, any_est.fold_plan_.to_json()))
        + interval_table(rows, headline))
    widest = max(combos, key=lambda c: len(heads[(CLEAN, c)].train_names_))
    if test_split is None:
        scored = train.labels[train.rows_of(heads[(CLEAN, widest)].train_names_)]
    else:
        scored = clean.labels[test_mask & (clean.labels >= 0)]
    seeds = list(range(head.seed, head.seed + head.seeds))
    robustness_figure(
        rows, conds, combos, result.png_path,
        f"{head.model} trained on clean features"
        + (" (second row: with the corrupted training copies)" if copies else "")
        + f", scored on {protocol}; corrupted: "
        f"{corruption_text(conds)}\n"
        f"{basis(len(scored), n_folds_shown(head.folds, any_est.fold_plan_.to_json()), seeds)}",
        metric=headline, trainings=trainings, chance=chance_weighted_f1(np.bincount(scored)))
    result.seconds = time.perf_counter() - start
    return result


def _split_masks(data: MultimodalData, train_split: str | None, test_split: str | None
                 ) -> tuple[np.ndarray, np.ndarray]:
    train, test = split_rows(data, train_split, test_split)
    if test_split is not None and not (data.labels[test] >= 0).any():
        raise DataError(f"No clip of the test split '{test_split}' is labelled, so no condition "
                        "can be scored on it; drop --test-split to score held-out folds.")
    return train, test


def _lost(data: MultimodalData, reference: MultimodalData) -> int:
    """Clips with a modality usable in the clean features but not in the corrupted ones."""
    return int((reference.present & ~data.present).any(axis=1).sum())


def headline_key(given: str, metric: str) -> str:
    """The row key of the robustness headline (first table, the figure): weighted F1 with the
    default ``--metric auto`` on MER 2023's classes (as the figure always showed), ``metric``
    (F1 - 0.25 MSE) for an explicit ``--metric mer``, else the metric itself."""
    if metric == "mer":
        return "f1" if given == "auto" else "metric"
    return metric


def csv_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """CSV_COLUMNS, then the MSE and CCC of every continuous target some row scored
    (``ccc:valence``, ``mse:arousal``, ``ccc:arousal`` ...; valence's MSE is ``mse``)."""
    extra = list(dict.fromkeys(k for r in rows for k in r if ":" in k
                               and not k.endswith(("_low", "_high"))))
    bounds = list(dict.fromkeys(k for r in rows for k in r if k.endswith(("_low", "_high"))))
    return (*CSV_COLUMNS, *extra, *bounds)


def _scores_json(s: Scores, imputed: int) -> dict[str, Any]:
    out = {"clips": s.n, "imputed": imputed, "f1": s.f1, "accuracy": s.accuracy, "mse": s.mse,
           "metric": s.metric, "ua": s.ua, "wa": s.wa, "macro_f1": s.macro_f1}
    for target, values in s.targets.items():
        if target != "valence":
            out[f"mse:{target}"] = values["mse"]
        out[f"ccc:{target}"] = values["ccc"]
    return out


def _score_held_out(est: CrossValidatedHead, data: MultimodalData, clean: MultimodalData
                    ) -> tuple[dict[str, Any], int]:
    proba, outputs, imputed = est.predict_held_out_outputs(data)
    at = clean.rows_of(est.train_names_)
    s = est.score_predictions(clean, at, proba, outputs)
    return ({**_scores_json(s, int(imputed.sum())),
             **_intervals(est, clean, at, proba, outputs)},
            _lost(data.subset(data.rows_of(est.train_names_)), clean.subset(at)))


def _score_test(est: CrossValidatedHead, data: MultimodalData, clean: MultimodalData
                ) -> tuple[dict[str, Any], int]:
    proba, outputs, imputed = est.predict_outputs(data)
    labelled = clean.labels >= 0
    rows = np.flatnonzero(labelled)
    s = est.score_predictions(clean, rows, proba[rows], outputs[rows])
    return ({**_scores_json(s, int(imputed[labelled].sum())),
             **_intervals(est, clean, rows, proba[rows], outputs[rows])},
            _lost(data.subset(labelled), clean.subset(labelled)))


INTERVAL_KEYS = {"f1": "f1", "accuracy": "wa", "metric": "mer", "ua": "ua", "wa": "wa",
                 "macro_f1": "macro_f1"}
"""Row score -> the scalar metric whose 95% interval the row gives (``<score>_low``,
``<score>_high``)."""


def _intervals(est: CrossValidatedHead, clean: MultimodalData, rows: np.ndarray,
               proba: np.ndarray, outputs: np.ndarray) -> dict[str, Any]:
    """95% bootstrap intervals of a row's scores (:func:`mer_heads.stats.runs.run_intervals`:
    1000 resamples of the scored clips, or of whole groups with ``--groups``, seeded with
    ``--seed``), as ``<score>_low``/``<score>_high`` (``f1_low`` ...; ``ccc:<target>_low``)
    and ``bootstrap`` (unit, n, seed ...)."""
    from mer_heads.stats.runs import run_intervals, target_pairs

    true, pred = target_pairs(est, clean, rows, outputs)
    groups = clean.groups(est.groups)
    r = run_intervals(clean.labels[rows], proba.argmax(1), classes=est.classes_,
                      true_targets=true, pred_targets=pred,
                      groups=None if groups is None else groups[rows], groups_column=est.groups,
                      seed=est.seed)
    out: dict[str, Any] = {"bootstrap": r["bootstrap"]}
    keys = {**INTERVAL_KEYS, **{f"ccc:{t}": f"ccc:{t}" for t in pred},
            "mse": "mse:valence"}
    for score, name in keys.items():
        ci = r["ci"].get(name)
        out[f"{score}_low"], out[f"{score}_high"] = (None, None) if ci is None else ci
    return out


__all__ = ["RobustnessResult", "robustness"]
