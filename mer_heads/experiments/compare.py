"""``mer-heads compare``: are two (or more) runs really different on the same clips?

Each run is a ``mer-heads fit`` run directory (its held-out predictions ``oof_predictions.csv``,
its classes, targets and ``--groups`` from ``run.json``; a run without recorded classes has
MER 2023's six), or such an ``oof_predictions.csv`` alone (classes from its ``p_<class>``
columns). The runs must hold the same clips with the same labels and the same folds (the same
partition of the clips, whatever the folds are called); runs whose clips differ are refused
unless ``common_clips``, which compares the clips they share and counts the others.

For every metric of :func:`mer_heads.metrics.scalar_metrics` that both runs of a pair have
(UA, WA, macro and weighted F1, per-class recall and F1, MSE and CCC per target, the MER
metric, ECE, Brier and NLL with probabilities): the values ``a`` and ``b``, ``delta = b - a``,
its 95% paired-bootstrap interval and a two-sided paired permutation p-value
(:func:`mer_heads.stats.compare_systems`: resamples and permutations over clips, or over
whole groups when the runs were fitted with ``--groups COL`` or ``groups`` names a column).
With more than two runs, each run is compared with the first (``pairs="first"``) or every pair
(``"all"``), with Holm-adjusted p-values per metric across the comparisons.

Writes ``compare.md`` (printed), ``compare.json``, ``compare.csv`` (one row per comparison and
metric) and ``compare.png`` (each main metric's deltas with their intervals).
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_features import EMOTIONS
from mer_heads.config import CompareSettings
from mer_heads.errors import DataError, ParameterError, RunError, listed
from mer_heads.outputs import dump_json, output_folder, write_csv, write_text
from mer_heads.reports.result import ReportResult

OOF_FILE = "oof_predictions.csv"
DELTA = "b - a"
"""How every difference is taken: the second run of a pair minus the first."""
MAIN_METRICS = ("ua", "wa", "macro_f1", "f1", "mer", "mse", "ccc", "ece", "brier", "nll")
"""The metrics compare.md and compare.png show (``mse``/``ccc``: of every target); per-class
recall and F1 are in compare.json and compare.csv."""
CSV_COLUMNS = ("a", "b", "metric", "value_a", "value_b", "delta", "ci_low", "ci_high",
               "p_value", "p_adjusted", "n_undefined")


@dataclass(kw_only=True)
class CompareResult(ReportResult):
    """``stats``: the JSON written to compare.json."""

    stem = "compare"

    stats: dict[str, Any]


@dataclass
class RunPredictions:
    """One run's held-out predictions, as read from its folder or CSV."""

    name: str
    path: Path
    clips: list[str]
    truth: np.ndarray  # (n,) object: class names
    pred: np.ndarray  # (n,) object: predicted class names
    proba: np.ndarray | None  # (n, K) in ``classes`` order
    classes: tuple[str, ...]
    folds: np.ndarray | None  # (n,) object; None: the CSV has no fold column
    true_targets: dict[str, np.ndarray] = field(default_factory=dict)
    pred_targets: dict[str, np.ndarray] = field(default_factory=dict)
    groups: str | None = None  # the column its folds were grouped by (fit --groups)
    info: dict[str, Any] | None = None  # run.json

    def describe(self) -> dict[str, Any]:
        info = self.info or {}
        return {"name": self.name, "path": str(self.path), "clips": len(self.clips),
                "model": info.get("model"),
                "features": [m.get("key") for m in info.get("modalities", [])] or None,
                "classes": list(self.classes), "targets": list(self.pred_targets),
                "probabilities": self.proba is not None, "groups": self.groups}


# ---------------------------------------------------------------------------------------------
# Reading runs


def _number(cell: str, path: Path, row: int, column: str) -> float:
    if cell == "":
        return math.nan
    try:
        value = float(cell)
    except ValueError:
        value = math.nan
        cell = cell or "(empty)"
    else:
        if math.isfinite(value):
            return value
    raise DataError(f"'{path}' row {row}: column '{column}' holds {cell!r}, not a finite "
                    "number; the predictions are damaged (fit the run again).")


def _read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise RunError(f"Cannot read the predictions '{path}' ({e}); give a run directory of "
                       "`mer-heads fit` or its oof_predictions.csv.") from e
    if not rows:
        raise RunError(f"The predictions '{path}' are empty; fit the run again.")
    header, body = [c.strip() for c in rows[0]], [r for r in rows[1:] if any(r)]
    twice = sorted({c for c in header if header.count(c) > 1})
    if twice:
        raise RunError(f"The predictions '{path}' name the column(s) {', '.join(twice)} twice.")
    missing = [c for c in ("name", "discrete", "pred_discrete") if c not in header]
    if missing:
        raise RunError(f"'{path}' is not a file of held-out predictions (no column "
                       f"{', '.join(missing)}); give a run directory of `mer-heads fit` or its "
                       f"{OOF_FILE}.")
    short = [i + 2 for i, r in enumerate(body) if len(r) != len(header)]
    if short:
        raise RunError(f"'{path}': {len(short)} row(s) do not have the header's "
                       f"{len(header)} cells (rows {listed(str(i) for i in short)}); the file "
                       "is damaged (fit the run again).")
    if not body:
        raise RunError(f"The predictions '{path}' hold no clip.")
    return header, body


def read_run(path: str | Path, name: str) -> RunPredictions:
    """The held-out predictions of a run directory (``run.json`` + ``oof_predictions.csv``)
    or of an ``oof_predictions.csv``; anything missing or damaged is one :class:`RunError`."""
    path = Path(path)
    info = None
    if path.is_dir():
        run_file = path / "run.json"
        if not run_file.is_file():
            raise RunError(f"'{path}' is not a run directory (no run.json); give the --out of a "
                           f"finished `mer-heads fit`, or its {OOF_FILE}.")
        try:
            info = json.loads(run_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise RunError(f"'{run_file}' cannot be read ({e}); the run is damaged, fit it "
                           "again.") from e
        if not isinstance(info, dict):
            raise RunError(f"'{run_file}' is not a run's JSON object; fit the run again.")
        csv_path = path / OOF_FILE
        if not csv_path.is_file():
            raise RunError(f"Run '{path}' has no {OOF_FILE} (held-out predictions); fit it again "
                           "with this version.")
    elif path.is_file():
        csv_path = path
    else:
        raise RunError(f"'{path}' does not exist; give run directories of `mer-heads fit` (or "
                       f"their {OOF_FILE}).")
    header, body = _read_csv(csv_path)
    col = {c: i for i, c in enumerate(header)}
    cells = np.array(body, dtype=object)

    def column(c: str) -> np.ndarray:
        return np.array([s.strip() for s in cells[:, col[c]]], dtype=object)

    clips = [str(s) for s in column("name")]
    if len(set(clips)) < len(clips):
        seen: set[str] = set()
        twice = sorted({c for c in clips if c in seen or seen.add(c)})
        raise RunError(f"'{csv_path}' lists {len(twice)} clip(s) twice ({listed(twice)}); the "
                       "file is damaged (fit the run again).")
    truth, pred = column("discrete"), column("pred_discrete")
    p_columns = [c for c in header if c.startswith("p_")]
    if info is not None:
        classes = tuple(info.get("classes") or EMOTIONS)  # runs before label sets: MER's six
        params = info.get("params") if isinstance(info.get("params"), dict) else {}
        groups = params.get("groups")
        targets = list(info.get("targets", ["valence"]))  # runs before --targets: valence
        if p_columns and sorted(p_columns) != sorted(f"p_{c}" for c in classes):
            raise RunError(f"'{csv_path}' has the probability columns {', '.join(p_columns)}; "
                           f"run.json's classes are {', '.join(classes)}. The run is damaged "
                           "(fit it again).")
    else:
        from mer_features.corpora.classes import label_set

        classes = (tuple(c[2:] for c in p_columns) if p_columns
                   else tuple(label_set(str(v) for v in (*truth, *pred) if v)))
        groups = None
        targets = (["valence"] if "pred_valence" in col else []) + [
            c[5:] for c in header if c.startswith("pred_") and c[5:] in col
            and c not in ("pred_discrete", "pred_valence")]
    proba = None
    if p_columns:
        proba = np.array([[_number(r[col[f"p_{c}"]].strip(), csv_path, i + 2, f"p_{c}")
                           for c in classes] for i, r in enumerate(body)], np.float64)
    true_targets, pred_targets = {}, {}
    for target in targets:
        if target not in col or f"pred_{target}" not in col:
            continue
        t = np.array([_number(v, csv_path, i + 2, target) for i, v in enumerate(column(target))])
        p = np.array([_number(v, csv_path, i + 2, f"pred_{target}")
                      for i, v in enumerate(column(f"pred_{target}"))])
        if (np.isfinite(t) & np.isfinite(p)).any():  # a target the run predicted and can score
            true_targets[target], pred_targets[target] = t, p
    folds = column("fold") if "fold" in col else None
    return RunPredictions(name=name, path=path, clips=clips, truth=truth, pred=pred, proba=proba,
                          classes=classes, folds=folds, true_targets=true_targets,
                          pred_targets=pred_targets, groups=groups, info=info)


def run_names(paths: list[Path]) -> list[str]:
    """Short names of the runs: each folder's name (a CSV's folder, or its stem when it is not
    oof_predictions.csv); the paths as given where two names would be the same."""
    def short(p: Path) -> str:
        if p.is_file():
            return (p.resolve().parent.name or p.stem) if p.name == OOF_FILE else p.stem
        return p.resolve().name or str(p)

    names = [short(p) for p in paths]
    if len(set(names)) < len(names):
        names = [str(p) for p in paths]
    return names


# ---------------------------------------------------------------------------------------------
# Pairing the runs


def _common_clips(runs: list[RunPredictions], common: bool) -> tuple[list[str], dict[str, Any]]:
    """The clips every run has, in the first run's order, and how many each run had more."""
    sets = [set(r.clips) for r in runs]
    shared = set.intersection(*sets)
    extra = {r.name: len(s - shared) for r, s in zip(runs, sets)}
    if any(extra.values()) and not common:
        a = runs[0]
        for r, s in zip(runs[1:], sets[1:]):
            only_a, only_r = len(sets[0] - s), len(s - sets[0])
            if only_a or only_r:
                example = sorted(sets[0] - s)[:1] or sorted(s - sets[0])[:1]
                raise DataError(
                    f"Runs '{a.name}' ({len(a.clips)} clips) and '{r.name}' ({len(r.clips)} "
                    f"clips) are not on the same clips: {only_a} of '{a.name}' are not in "
                    f"'{r.name}' and {only_r} of '{r.name}' are not in '{a.name}' (e.g. "
                    f"'{example[0]}'); a paired comparison needs the same clips. Pass "
                    f"--common-clips to compare the {len(shared)} clips all runs share.")
    if not shared:
        raise DataError(f"The runs {', '.join(repr(r.name) for r in runs)} share no clip; "
                        "they are runs of different corpora and cannot be compared.")
    order = [c for c in runs[0].clips if c in shared]
    return order, {"n": len(order), "more": extra}


def _check_same(runs: list[RunPredictions], rows: list[np.ndarray]) -> None:
    """Refuse runs scored against different labels, classes or folds on the same clips."""
    a, ra = runs[0], rows[0]
    for r, rr in zip(runs[1:], rows[1:]):
        if set(r.classes) != set(a.classes):
            raise DataError(f"Runs '{a.name}' and '{r.name}' have different classes "
                            f"({', '.join(a.classes)} vs {', '.join(r.classes)}); compare runs "
                            "of the same label set.")
        differ = np.flatnonzero(a.truth[ra] != r.truth[rr])
        if len(differ):
            shown = listed(f"'{a.clips[ra[i]]}' ({a.truth[ra[i]]} vs {r.truth[rr[i]]})"
                           for i in differ)
            raise DataError(f"Runs '{a.name}' and '{r.name}' were scored against different "
                            f"labels on {len(differ)} clip(s): {shown}. Fit both on the same "
                            "labels (the same --manifest, --classes and --label-map).")
        for target in set(a.true_targets) & set(r.true_targets):
            x, y = a.true_targets[target][ra], r.true_targets[target][rr]
            bad = ~((np.isnan(x) & np.isnan(y)) | (np.abs(x - y) <= 1e-5))
            if bad.any():
                raise DataError(f"Runs '{a.name}' and '{r.name}' have different true "
                                f"{target} on {int(bad.sum())} clip(s) (e.g. "
                                f"'{a.clips[ra[np.flatnonzero(bad)[0]]]}'); fit both on the "
                                "same labels.")
        if a.folds is None or r.folds is None:
            continue
        fa, fr = a.folds[ra], r.folds[rr]
        pairs = set(zip(fa, fr))  # the same partition: each fold of one is one fold of the other
        if len(pairs) != len(set(fa)) or len(pairs) != len(set(fr)):
            matched: dict[Any, Any] = {}
            for x, y in zip(fa, fr):
                matched.setdefault(x, {}).setdefault(y, 0)
                matched[x][y] += 1
            moved = sum(sum(c.values()) - max(c.values()) for c in matched.values())
            raise DataError(f"Runs '{a.name}' and '{r.name}' held out the clips in different "
                            f"folds (at least {moved} of {len(fa)} clips are in another fold's "
                            "company): each clip's two predictions come from models trained on "
                            "different clips. Fit them with the same --seed, --folds and "
                            "--groups (or --folds-from).")


def _group_values(runs: list[RunPredictions], clips: list[str], column: str,
                  manifest: str | None) -> tuple[np.ndarray, str]:
    """Each clip's value of ``column``: from ``manifest``, else the first run whose recorded
    manifest or stores have it for every clip."""
    sources: list[tuple[str, Any]] = []
    if manifest is not None:
        sources.append(("manifest", Path(manifest)))
    else:
        for r in runs:
            info = r.info or {}
            if info.get("manifest"):
                sources.append(("manifest", Path(info["manifest"])))
            for m in info.get("modalities", []):
                if m.get("path"):
                    sources.append(("store", Path(m["path"])))
    tried = []
    for kind, path in sources:
        values = _read_column(kind, path, column, clips, given=manifest is not None)
        if values is None:
            tried.append(f"{kind} '{path}'")
            continue
        missing = [c for c, v in zip(clips, values) if v == ""]
        if missing:
            raise DataError(f"--groups {column}: {len(missing)} clip(s) have no '{column}' in "
                            f"the {kind} '{path}' ({listed(missing)}); every compared clip needs "
                            "one.")
        return values, f"{kind} '{path}'"
    raise DataError(f"--groups {column}: no source has the column '{column}' for the compared "
                    f"clips (tried {', '.join(tried) or 'nothing: the runs are CSVs'}). Pass "
                    f"--manifest CSV with name and {column} columns, or --groups none to "
                    "resample single clips.")


def _read_column(kind: str, path: Path, column: str, clips: list[str], *, given: bool
                 ) -> np.ndarray | None:
    try:
        if kind == "manifest":
            from mer_heads.data.labels import read_label_table

            table = read_label_table(path, what="manifest", classes=None)
            names, extra = table.names, table.extra
        else:
            from mer_features.store import FeatureStore

            with FeatureStore(path) as store:
                names, extra = store.names, store.extra_columns()
    except Exception as e:  # a moved or damaged source: try the next one, or name it
        if given:
            raise DataError(f"--manifest '{path}' cannot be read: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
        return None
    if column not in extra:
        if given:
            raise DataError(f"--manifest '{path}' has no column '{column}' (it has "
                            f"{', '.join(sorted(extra)) or 'no other column'}).")
        return None
    where = {n: i for i, n in enumerate(names)}
    values = extra[column]
    if given and not any(c in where for c in clips):
        raise DataError(f"--manifest '{path}' lists none of the compared clips (e.g. "
                        f"'{clips[0]}'); is it the manifest of another corpus?")
    return np.array([str(values[where[c]]).strip() if c in where else "" for c in clips],
                    dtype=object)


def _groups(runs: list[RunPredictions], clips: list[str], settings: CompareSettings
            ) -> tuple[np.ndarray | None, dict[str, Any] | None]:
    unused = ParameterError(f"--manifest '{settings.manifest}' is read only for the --groups "
                            "column, and no groups are resampled here; add --groups COL or drop "
                            "--manifest.", "manifest")
    if settings.groups == "none":
        if settings.manifest is not None:
            raise unused
        return None, None
    column = settings.groups
    if column is None:
        recorded = sorted({r.groups for r in runs if r.groups})
        if len(recorded) > 1:
            raise DataError(f"The runs' folds were grouped by different columns "
                            f"({', '.join(recorded)}); pass --groups COL to say which groups to "
                            "resample (or --groups none for single clips).")
        if not recorded:
            if settings.manifest is not None:
                raise unused
            return None, None
        column = recorded[0]
    values, source = _group_values(runs, clips, column, settings.manifest)
    return values, {"column": column, "n_groups": len(set(values)), "source": source}


# ---------------------------------------------------------------------------------------------
# The command


def compare_runs(runs: list[str | Path], out: str | Path,
                 settings: CompareSettings | None = None, *, overwrite: bool = False
                 ) -> CompareResult:
    """Compare the held-out predictions of ``runs`` (run directories or oof_predictions.csv
    files, two or more) on their clips and write ``out/compare.{md,json,csv,png}`` (module
    docstring). ``settings``: :class:`~mer_heads.config.CompareSettings`."""
    start = time.perf_counter()
    settings = settings or CompareSettings()
    paths = [Path(r) for r in runs]
    if len(paths) < 2:
        raise ParameterError(f"compare needs at least two runs; got {len(paths)}.", "runs")
    real = [os.path.realpath(p) for p in paths]
    twice = sorted({str(p) for p, q in zip(paths, real) if real.count(q) > 1})
    if twice:
        raise ParameterError(f"The run(s) {', '.join(twice)} are given twice; give each run "
                             "once.", "runs")
    out_real = os.path.realpath(out)
    if any(out_real == q or out_real == os.path.dirname(q) and Path(q).is_file() for q in real):
        raise ParameterError(f"--out '{out}' is one of the runs; give a new folder for the "
                             "comparison.", "out")
    names = run_names(paths)
    loaded = [read_run(p, n) for p, n in zip(paths, names)]
    with output_folder(out, marker=f"{CompareResult.stem}.json", overwrite=overwrite,
                       what="comparison") as out:
        stats = compare_predictions(loaded, settings)
        result = CompareResult(out=out, stats=stats, notes=list(stats["notes"]))
        write_csv(result.csv_path, CSV_COLUMNS, csv_rows(stats))
        dump_json(stats, result.json_path)
        from mer_heads.reports.compare import compare_figure, markdown_comparison

        write_text(result.markdown_path, markdown_comparison(stats))
        compare_figure(stats, result.png_path)
        result.seconds = time.perf_counter() - start
        return result


def compare_predictions(runs: list[RunPredictions], settings: CompareSettings
                        ) -> dict[str, Any]:
    """compare.json's content for loaded runs (see :func:`compare_runs`)."""
    from mer_heads.metrics import resolve_metric
    from mer_heads.stats import Predictions, compare_systems

    clips, counts = _common_clips(runs, settings.common_clips)
    where = [{c: i for i, c in enumerate(r.clips)} for r in runs]
    rows = [np.array([w[c] for c in clips], np.int64) for w in where]
    _check_same(runs, rows)
    notes = []
    if not all(r.folds is not None for r in runs):
        notes.append("some predictions have no fold column: their folds were not checked")
    groups, group_info = _groups(runs, clips, settings)
    first = runs[0]
    classes = first.classes
    targets = [t for t in first.true_targets if all(t in r.pred_targets for r in runs)]
    left = sorted({t for r in runs for t in r.pred_targets} - set(targets))
    if left:
        notes.append(f"target(s) {', '.join(left)} are not predicted by every run and are not "
                     "compared")
    systems = {}
    for r, rr in zip(runs, rows):
        proba = None
        if r.proba is not None:
            order = [r.classes.index(c) for c in classes]
            proba = r.proba[rr][:, order]
        systems[r.name] = Predictions(labels=r.pred[rr], proba=proba,
                                      targets={t: r.pred_targets[t][rr] for t in targets})
    if any(r.proba is None for r in runs) and any(r.proba is not None for r in runs):
        notes.append("calibration (ECE, Brier, NLL) is compared only between runs that both "
                     "have probabilities")
    try:
        result = compare_systems(
            first.truth[rows[0]], systems, classes=classes,
            true_targets={t: first.true_targets[t][rows[0]] for t in targets},
            reference=first.name if settings.pairs == "first" else None, groups=groups,
            n_resamples=settings.resamples, n_permutations=settings.permutations,
            seed=settings.seed, correction=settings.correction)
    except ParameterError:
        raise
    except DataError as e:
        raise DataError(f"The runs cannot be scored: {e}") from e
    metric = resolve_metric(settings.metric, classes)
    headline = "f1" if metric == "mer" and "valence" not in targets else metric
    several = len(result["comparisons"]) > 1
    for c in result["comparisons"]:
        for m in c["metrics"].values():
            if not several:
                m.pop("p_adjusted", None)
    n_more = {k: v for k, v in counts["more"].items()}
    stats = {
        "runs": [r.describe() for r in runs],
        "clips": {"n": counts["n"], "more": n_more,
                  "text": clips_text(counts["n"], n_more)},
        "delta": DELTA,
        "metric": headline,
        "pairs": settings.pairs if len(runs) > 2 else "first",
        "correction": settings.correction if several else None,
        "n_resamples": result["n_resamples"], "n_permutations": result["n_permutations"],
        "seed": result["seed"], "confidence": result["confidence"], "method": result["method"],
        "unit": result["unit"], "n_units": result["n_units"],
        "groups": group_info,
        "targets": targets,
        "comparisons": result["comparisons"],
        "notes": notes,
    }
    if not several:
        stats["metrics"] = result["comparisons"][0]["metrics"]
    return stats


def clips_text(n: int, more: dict[str, int]) -> str:
    """``528 clips`` or ``520 clips in common; A had 8 more, B had 0 more``."""
    if not any(more.values()):
        return f"{n} clips (the same in every run)"
    return f"{n} clips in common; " + ", ".join(f"{k} had {v} more" for k, v in more.items())


def csv_rows(stats: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in stats["comparisons"]:
        for metric, m in c["metrics"].items():
            rows.append({"a": c["a"], "b": c["b"], "metric": metric, "value_a": m["a"],
                         "value_b": m["b"], "delta": m["delta"],
                         "ci_low": None if m["ci"] is None else m["ci"][0],
                         "ci_high": None if m["ci"] is None else m["ci"][1],
                         "p_value": m["p_value"], "p_adjusted": m.get("p_adjusted"),
                         "n_undefined": m["n_undefined"]})
    return rows


__all__ = ["CSV_COLUMNS", "CompareResult", "DELTA", "MAIN_METRICS", "RunPredictions",
           "clips_text", "compare_predictions", "compare_runs", "read_run", "run_names"]
