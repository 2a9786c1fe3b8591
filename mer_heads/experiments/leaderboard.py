"""Encoder leaderboard (as MERBench ranks encoders): every store alone, ranked per modality, then
the top-K stores of each modality fused.

``--features KEY=STORE`` names a *modality* with KEY (audio, text, video or a name of yours), and
several stores per modality are the point: each store is told apart by its display name,
``ENCODER:STEM`` (the store's encoder, short for ``hf:`` folders, and its file name without
``.h5``), with ``#2``, ``#3`` ... appended to names that would repeat.

Protocol. The stores are joined by clip name as ``mer-heads fit`` joins them (``--join exact``
refuses stores whose clips differ; ``inner`` keeps the common clips: the table says how many).
For each seed ``s`` in ``seed, seed+1, ..., seed+N-1`` one fold assignment is drawn over the
joined labelled clips that have any usable modality (stratified, or stratified group folds with
``--groups COL``) and shared by every row, so rows differ only by their features. Each store is
cross-validated alone on it with ``--model``; its score for that seed is the pooled held-out
score (what ``mer-heads fit`` reports as CV). A row gives the mean and the standard deviation
(population, ddof 0) of those N scores. Stores are ranked within their modality by the mean
metric (F1 - 0.25 x MSE; F1 when there is no valence), ties by name. Then for K = 1..``top_n``
the K best stores of every modality (all of a modality's stores when it has fewer) are fused
with ``fusion`` (``attention``: one encoder per store, attention over them) and scored the same
way; a K that would repeat the previous set is left out (a note says so).

Writes ``leaderboard.md``, ``.csv``, ``.json`` (byte-identical for the same inputs, options and
seeds) and ``leaderboard.png`` (one panel per modality and one for the fusions: mean metric
with the standard deviation as error bars).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from mer_heads.config import DataConfig, HeadConfig, split_options
from mer_heads.data.dataset import (STORE_MODALITIES, MultimodalData, load_dataset,
                                    parse_store_arg)
from mer_heads.errors import DataError, ParameterError
from mer_heads.folds import shared_folds
from mer_heads.heads import get_head
from mer_heads.heads.layers import check_learned
from mer_heads.experiments.ablation import published_column
from mer_heads.experiments.fit import fold_scores
from mer_heads.metrics import resolve_metric
from mer_heads.outputs import dump_json, output_folder, write_csv, write_text
from mer_heads.progress import skip as skip_fits
from mer_heads.progress import tracking, unit
from mer_heads.protocol import CrossValidatedHead
from mer_heads.reports.figure import chance_weighted_f1
from mer_heads.reports.result import ReportResult

SCORES = ("f1", "mse", "metric", "ua", "wa", "macro_f1")
CSV_COLUMNS = ("section", "modality", "rank", "name", "stores", "encoders", "clips",
               "f1_mean", "f1_std", "mse_mean", "mse_std", "metric_mean", "metric_std",
               "ua_mean", "ua_std", "wa_mean", "wa_std", "macro_f1_mean", "macro_f1_std")
MAX_SEEDS = 100
FOLD_SCORES = ("ua", "wa", "macro_f1", "f1")
"""Metrics whose fold mean and fold spread (std over folds, ddof 0) each row also gives: the
per-seed value of each, averaged over the seeds (``ua_fold_mean``, ``ua_fold_std`` ...)."""


@dataclass(frozen=True)
class Entry:
    """One store of the leaderboard: its modality KEY, display name, path and encoder."""

    modality: str
    name: str
    path: str
    encoder: str
    clips: int

    def to_json(self) -> dict[str, Any]:
        return {"modality": self.modality, "name": self.name, "path": self.path,
                "encoder": self.encoder, "clips": self.clips}


@dataclass(kw_only=True)
class LeaderboardResult(ReportResult):
    """``rows``: one dict per store (section ``single``) and per fusion (``fusion``), as in
    the CSV, with ``per_seed`` scores; ``joined``: the clips the stores were joined on."""

    stem = "leaderboard"

    rows: list[dict[str, Any]]
    entries: list[Entry]
    joined: int


def display_names(stores: Sequence[tuple[str, str]]) -> list[str]:
    """``ENCODER:STEM`` for each (encoder, path) pair, unique (``#2``, ``#3`` ... on repeats).
    An ``hf:`` encoder is shortened to ``hf:`` + its last path part."""
    from mer_features.encoders.base import parse_encoder_spec

    names: list[str] = []
    for encoder, path in stores:
        base = f"{parse_encoder_spec(encoder).short}:{Path(path).name.removesuffix('.h5')}"
        name, i = base, 1
        while name in names:
            i += 1
            name = f"{base}#{i}"
        names.append(name)
    return names


def _entries(features: Sequence[Any]) -> list[Entry]:
    """The stores of ``features`` with their modality key and display name."""
    from mer_features.errors import MerFeaturesError
    from mer_features.store import FeatureStore

    if not features:
        raise DataError("No feature store given; pass --features KEY=STORE once per store "
                        "(e.g. --features audio=a1.h5 --features audio=a2.h5).")
    found = []
    for spec in features:
        key, path = parse_store_arg(spec)
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "does not exist"
            raise DataError(f"--features '{spec}': '{path}' {what}; give a feature store file "
                            "(.h5) that `mer-features extract --out` wrote.")
        try:
            with FeatureStore(path) as store:
                modality, encoder, clips = store.modality, store.encoder, len(store)
        except (MerFeaturesError, OSError) as e:
            raise DataError(f"Cannot read feature store '{path}': {e}") from e
        if key in STORE_MODALITIES and key != modality:
            raise DataError(f"--features {key}={path}: the store holds {modality} features, not "
                            f"{key}. Give it under '{modality}', or under a modality name of "
                            "your own.")
        found.append((key or modality, str(path), encoder, clips))
    seen: dict[str, str] = {}
    for _, path, _, _ in found:
        resolved = str(Path(path).resolve())
        if resolved in seen:
            raise DataError(f"The store '{path}' is given twice (also as '{seen[resolved]}'); "
                            "give each store once.")
        seen[resolved] = path
    names = display_names([(e, p) for _, p, e, _ in found])
    return [Entry(k, n, p, e, c) for (k, p, e, c), n in zip(found, names)]


def leaderboard(features: Sequence[str | Path | tuple[str, str | Path]], out: str | Path,
                head: HeadConfig | None = None, loading: DataConfig | None = None, *,
                seeds: int = 3, top_n: int = 1, fusion: str = "attention",
                train_split: str | None = None, overwrite: bool = False,
                progress: bool | None = None, **options: Any) -> LeaderboardResult:
    """Rank every store of ``features`` alone per modality, then fuse the top-K of each
    modality for K = 1..``top_n``; write ``out/leaderboard.{md,csv,json,png}``.

    Parameters
    ----------
    features : ``"KEY=STORE"`` strings or ``(key, path)`` pairs; KEY is the modality (several
        stores per modality are expected); a bare path's modality is the store's.
    out : output folder (an earlier leaderboard in it is only replaced with ``overwrite``).
    head, loading, options : as for :func:`~mer_heads.experiments.fit.fit_run` (``model``,
        ``folds``, ``groups``, ``seed``, ``join``, ``manifest`` ...). ``head.seed`` is the
        first of the ``seeds`` seeds; ``head.seeds`` stays the models per fold.
    seeds : N >= 1 repetitions with seeds ``seed .. seed+N-1`` (folds and training).
    top_n : K >= 1, the largest number of stores per modality fused.
    fusion : the head that fuses the top-K stores (default ``attention``).
    train_split : use only the clips of this split.
    progress : False: nothing on stderr while it works (:mod:`mer_heads.progress`).
    """
    start = time.perf_counter()
    head, loading = split_options(head, loading, options)
    for name, value, high in (("seeds", seeds, MAX_SEEDS), ("top_n", top_n, None)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1 \
                or (high is not None and value > high):
            rule = f"an integer in [1, {high}]" if high else "an integer >= 1"
            raise ParameterError(f"{name} must be {rule}; got {value!r}.", name)
    fusion_head = replace(head, model=fusion)  # validates the name
    if head.seed + seeds - 1 + head.seeds > 2**32 - 1:
        raise ParameterError(f"seed must leave room for {seeds} seeds; got {head.seed}.", "seed")
    get_head(head.model).check_runtime(head)
    check_learned(head.model, loading.layers)
    get_head(fusion).check_runtime(fusion_head)
    check_learned(fusion, loading.layers)
    entries = _entries(features)
    with output_folder(out, marker=f"{LeaderboardResult.stem}.json", overwrite=overwrite,
                       what="leaderboard") as out, \
            tracking("mer-heads leaderboard", seeds * (len(entries) + top_n), progress):
        return _leaderboard(entries, out, start, head, fusion_head, loading, seeds, top_n,
                            train_split)


def _leaderboard(entries: list[Entry], out: Path, start: float, head: HeadConfig,
                 fusion_head: HeadConfig, loading: DataConfig, seeds: int, top_n: int,
                 train_split: str | None) -> LeaderboardResult:
    data = load_dataset([(e.name, e.path) for e in entries], loading)
    if train_split is not None:
        if train_split not in set(data.split):
            raise DataError(f"No clip has split '{train_split}' (--train-split); the splits "
                            f"present are {', '.join(map(repr, sorted(set(data.split))))}.")
        data = data.subset(data.split == train_split)
    notes: set[str] = set()
    folds = []
    groups = data.groups(head.groups)
    published = published_column(data, head)
    metric = resolve_metric(head.metric, data.classes)
    for s in range(seeds):
        folds.append(shared_folds(data.labels, data.present.any(axis=1), head.folds,
                                  head.seed + s, groups=groups, column=head.groups,
                                  names=data.names,
                                  nothing="nothing to rank. Check the stores' labels (or pass "
                                  "--manifest) and --train-split.", classes=data.classes,
                                  published=published, source=head.folds_from))
    rows: list[dict[str, Any]] = []
    plan: dict[str, Any] = {}
    done: dict[tuple[str, str], dict[str, Any]] = {}  # (head, stores) -> row: scored once
    held_out: dict[str, Any] = {}  # row name -> the first seed's held-out predictions
    for modality in dict.fromkeys(e.modality for e in entries):
        mine = [e for e in entries if e.modality == modality]
        scored = []
        for e in mine:
            row, plan = _score_set(data, [e], head, folds, notes, held_out)
            done[(head.model, row["name"])] = row
            scored.append(row)
        scored.sort(key=lambda r: (-_key(r, metric), r["name"]))
        for rank, row in enumerate(scored, 1):
            rows.append({"section": "single", "modality": modality, "rank": rank, **row})
    fused_sets: list[tuple[str, ...]] = []
    for k in range(1, top_n + 1):
        chosen = []
        for modality in dict.fromkeys(e.modality for e in entries):
            ranked = [r for r in rows if r["section"] == "single" and r["modality"] == modality]
            chosen += [r["name"] for r in ranked[:k]]
        if fused_sets and tuple(chosen) == fused_sets[-1]:
            notes.add(f"top-{k} fusion left out: no modality has more than {k - 1} store(s), so "
                      f"it is the top-{k - 1} fusion")
            skip_fits(seeds)
            continue
        fused_sets.append(tuple(chosen))
        by_name = {e.name: e for e in entries}
        row = done.get((fusion_head.model, "+".join(chosen)))
        if row is not None:
            skip_fits(seeds)
        else:  # one modality's top-1 with --fusion == --model is its single row
            row, plan = _score_set(data, [by_name[n] for n in chosen], fusion_head, folds,
                                   notes, held_out)
        rows.append({"section": "fusion", "modality": "+".join(
            dict.fromkeys(by_name[n].modality for n in chosen)), "rank": k, **row})
    statistics = _statistics(rows, held_out, data, head, metric)
    notes_list = sorted(notes)
    report = {"statistics": statistics, "params": head.to_json(), "fusion": fusion_head.model, "seeds":
              [head.seed + s for s in range(seeds)], "top_n": top_n, "input": loading.input,
              "layers": loading.layers, "join": loading.join, "joined_clips": len(data),
              "labelled_clips": int((data.labels >= 0).sum()),
              "train_split": train_split, "folds": plan, "stores": [e.to_json() for e in entries],
              "chance_f1": chance_weighted_f1(np.bincount(data.labels[data.labels >= 0])),
              "rows": rows, "notes": notes_list, "classes": list(data.classes),
              "metric": metric}
    from mer_heads.reports.leaderboard import leaderboard_figure, markdown_leaderboard

    result = LeaderboardResult(out=out, rows=rows, entries=entries, joined=len(data),
                               notes=notes_list)
    write_csv(result.csv_path, csv_columns(rows), rows)
    dump_json(report, result.json_path)
    write_text(result.markdown_path, markdown_leaderboard(report))
    leaderboard_figure(report, result.png_path)
    result.seconds = time.perf_counter() - start
    return result


def _key(row: dict[str, Any], metric: str = "mer") -> float:
    """The ranking value of a row: the mean of the resolved ``--metric`` over seeds (``mer``:
    F1 - 0.25 x MSE, F1 without valence)."""
    if metric == "mer":
        value = row["metric_mean"] if row["metric_mean"] is not None else row["f1_mean"]
    else:
        value = row[f"{metric}_mean"]
    return -np.inf if value is None else value


def csv_columns(rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """CSV_COLUMNS, the fold mean and spread of FOLD_SCORES, then the MSE and CCC of the
    continuous targets some row scored (``ccc:valence_mean`` ...), then the first seed's
    interval and the test against the best row (STAT_COLUMNS)."""
    folds = [f"{k}_fold_{s}" for k in FOLD_SCORES for s in ("mean", "std")]
    extra = list(dict.fromkeys(k for r in rows for k in r if ":" in k))
    return (*CSV_COLUMNS, *folds, *extra, *STAT_COLUMNS)


STAT_COLUMNS = ("seed0_value", "seed0_ci_low", "seed0_ci_high", "vs_best_delta",
                "vs_best_p", "vs_best_p_holm", "vs_best_mark")
"""The CSV's statistics of each row (:func:`_statistics`)."""


def _statistics(rows: list[dict[str, Any]], held_out: dict[str, Any], data: MultimodalData,
                head: HeadConfig, metric: str) -> dict[str, Any]:
    """Every row's 95% bootstrap interval of the ranking metric on the first seed's pooled
    held-out predictions, and its paired test against the best row (by the mean over seeds)
    on the clips both scored, Holm over the rows (:func:`mer_heads.stats.runs.
    table_statistics`); groups resampled with ``--groups``. Adds ``statistics`` to each row
    (and the STAT_COLUMNS); returns the leaderboard's ``statistics`` header."""
    from mer_heads.experiments.fit import scalar_name
    from mer_heads.stats.runs import (ALPHA, MARK, RUN_RESAMPLES, TABLE_PERMUTATIONS,
                                      table_statistics)

    held = [held_out[r["name"]] for r in rows]
    has_valence = all("valence" in h["true_targets"] for h in held)
    key = scalar_name(metric, {"mer": 0.0} if has_valence else {})
    groups = data.groups(head.groups)
    by_name = None if groups is None else dict(zip(data.names, groups))
    stats = table_statistics(held, [_key(r, metric) for r in rows], key, groups=by_name,
                             seed=head.seed)
    for row, st in zip(rows, stats):
        row["statistics"] = st
        vs = st.get("vs_best") or {}
        row.update({"seed0_value": st["value"],
                    "seed0_ci_low": st["ci"][0] if st["ci"] else None,
                    "seed0_ci_high": st["ci"][1] if st["ci"] else None,
                    "vs_best_delta": vs.get("delta"), "vs_best_p": vs.get("p_value"),
                    "vs_best_p_holm": vs.get("p_adjusted"),
                    "vs_best_mark": "best" if st["best"] else vs.get("mark")})
    return {"metric": key, "seed": head.seed, "n_resamples": RUN_RESAMPLES,
            "n_permutations": TABLE_PERMUTATIONS, "unit": "group" if groups is not None
            else "clip", "groups": head.groups, "correction": "holm", "alpha": ALPHA,
            "mark": MARK, "best": next(r["name"] for r in rows if r["statistics"]["best"])}


def _score_set(data: MultimodalData, chosen: list[Entry], head: HeadConfig,
               folds: list[np.ndarray], notes: set[str],
               held_out: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
    """Cross-validate the stores ``chosen`` together once per seed, on that seed's folds
    (``held_out``: receives the first seed's held-out predictions under the row's name)."""
    sub = data.select_modalities([e.name for e in chosen])
    per_seed, clips, plan = [], 0, {}
    for s, fold_of in enumerate(folds):
        with unit(f"{'+'.join(e.name for e in chosen)}, seed {head.seed + s}"):
            est = CrossValidatedHead.from_config(replace(head, seed=head.seed + s)).fit(
                sub, fold_of=fold_of)
        if s == 0 and held_out is not None:
            from mer_heads.stats.runs import held_out_of

            held_out["+".join(e.name for e in chosen)] = held_out_of(est, sub)
        notes.update(est.notes_)
        clips, plan = len(est.train_names_), est.fold_plan_.to_json()
        fold_stats = fold_scores(est, sub, sub.rows_of(est.train_names_))
        per_seed.append({"seed": head.seed + s, "precision": est.precision_,
                         **{k: getattr(est.cv_scores_, k) for k in SCORES},
                         **{f"ccc:{t}": v["ccc"] for t, v in est.cv_scores_.targets.items()},
                         **{f"mse:{t}": v["mse"] for t, v in est.cv_scores_.targets.items()
                            if t != "valence"},
                         "fold_mean": {k: fold_stats["mean"].get(k) for k in FOLD_SCORES},
                         "fold_std": {k: fold_stats["std"].get(k) for k in FOLD_SCORES}})
    row: dict[str, Any] = {"name": "+".join(e.name for e in chosen),
                           "stores": " ".join(e.path for e in chosen),
                           "encoders": " ".join(e.encoder for e in chosen), "clips": clips}
    targets = list(dict.fromkeys(k for p in per_seed for k in p if ":" in k))
    for k in (*SCORES, *targets):
        values = [p.get(k) for p in per_seed]
        ok = all(v is not None for v in values)
        row[f"{k}_mean"] = float(np.mean(values)) if ok else None
        row[f"{k}_std"] = float(np.std(values)) if ok else None
    for k in FOLD_SCORES:  # the fold mean and fold spread of each seed, averaged over seeds
        means = [p["fold_mean"][k] for p in per_seed]
        spreads = [p["fold_std"][k] for p in per_seed]
        ok = all(v is not None for v in means + spreads)
        row[f"{k}_fold_mean"] = float(np.mean(means)) if ok else None
        row[f"{k}_fold_std"] = float(np.mean(spreads)) if ok else None
    row["per_seed"] = per_seed
    return row, plan


__all__ = ["CSV_COLUMNS", "Entry", "LeaderboardResult", "display_names", "leaderboard"]
