"""How valence relates to the discrete classes (open question 3 of the MER 2023 paper).

From the clips that have both a discrete class and a valence label (from feature stores, a
manifest or a MER 2023 ``train-label.csv``):

* per class: count, mean, standard deviation (ddof 1), minimum, quartiles (numpy's linear
  interpolation) and maximum of valence;
* the correlation ratio eta squared = SS_between / SS_total (the share of valence variance the
  class explains), with the one-way ANOVA F statistic and its p-value;
* per class the point-biserial correlation between the class indicator (1 for the class, 0
  otherwise) and valence (Pearson's r), with its two-sided p-value (t = r sqrt((n-2)/(1-r^2)),
  n - 2 degrees of freedom);
* where classes overlap: per pair of classes the intersection of their interquartile ranges
  (empty when they are disjoint), and overall the valence ranges where the interquartile
  ranges of more than one class meet (with the classes there);
* a figure: a violin per class with its box plot inside.

Writes ``describe.md`` (printed), ``describe.csv`` (one row per class), ``describe.json`` (all
of it) and ``describe.png``.
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_heads.errors import DataError, ParameterError
from mer_heads.outputs import dump_json, output_folder, write_csv, write_text
from mer_heads.reports.result import ReportResult

CSV_COLUMNS = ("class", "count", "mean", "std", "min", "q1", "median", "q3", "max",
               "point_biserial_r", "point_biserial_p")


@dataclass(kw_only=True)
class DescribeResult(ReportResult):
    """``stats``: the JSON written to describe.json."""

    stem = "describe"

    stats: dict[str, Any]


def eta_squared(classes: np.ndarray, valence: np.ndarray) -> float:
    """SS_between / SS_total of ``valence`` (n,) grouped by ``classes`` (n,); 0 when valence
    is constant."""
    total = float(((valence - valence.mean()) ** 2).sum())
    if total == 0:
        return 0.0
    between = sum(float((classes == c).sum()) * (valence[classes == c].mean() - valence.mean()) ** 2
                  for c in np.unique(classes))
    return between / total


def point_biserial(indicator: np.ndarray, valence: np.ndarray) -> tuple[float | None,
                                                                         float | None]:
    """Pearson's r between a 0/1 ``indicator`` and ``valence`` and its two-sided p-value
    (None when either is constant)."""
    from scipy.stats import t as student_t

    x = indicator.astype(np.float64) - indicator.mean()
    y = valence - valence.mean()
    denom = math.sqrt(float((x * x).sum()) * float((y * y).sum()))
    if denom == 0:
        return None, None
    r = float(np.clip((x * y).sum() / denom, -1.0, 1.0))
    dof = len(valence) - 2
    if dof < 1:
        return r, None
    if abs(r) == 1.0:
        return r, 0.0
    stat = r * math.sqrt(dof / (1.0 - r * r))
    return r, float(2 * student_t.sf(abs(stat), dof))


def anova(classes: np.ndarray, valence: np.ndarray) -> tuple[float | None, float | None]:
    """One-way ANOVA F statistic and p-value of ``valence`` across ``classes``."""
    from scipy.stats import f as fisher_f

    groups = np.unique(classes)
    k, n = len(groups), len(valence)
    if k < 2 or n <= k:
        return None, None
    grand = valence.mean()
    between = sum(float((classes == c).sum()) * (valence[classes == c].mean() - grand) ** 2
                  for c in groups)
    within = sum(float(((valence[classes == c] - valence[classes == c].mean()) ** 2).sum())
                 for c in groups)
    if within == 0:
        return None, None
    stat = (between / (k - 1)) / (within / (n - k))
    return float(stat), float(fisher_f.sf(stat, k - 1, n - k))


def overlap_ranges(iqr: dict[str, tuple[float, float]]) -> list[dict[str, Any]]:
    """The valence ranges where the intervals ``iqr`` (class -> (q1, q3)) of more than one
    class meet: maximal ranges with the same set of classes, in order."""
    points = sorted({v for lo_hi in iqr.values() for v in lo_hi})
    out: list[dict[str, Any]] = []
    for lo, hi in zip(points, points[1:]):
        mid = (lo + hi) / 2
        inside = [c for c, (a, b) in iqr.items() if a <= mid <= b]
        if len(inside) < 2:
            continue
        if out and out[-1]["high"] == lo and out[-1]["classes"] == inside:
            out[-1]["high"] = hi
        else:
            out.append({"low": lo, "high": hi, "classes": inside})
    return out


def _labels(features, manifest, labels, join: str) -> tuple[list[str], np.ndarray,
                                                             np.ndarray, str]:
    """Names, classes and valence of the chosen source, and its description."""
    given = [n for n, v in (("--features", features), ("--manifest", manifest),
                            ("--labels", labels)) if v]
    if len(given) != 1:
        raise ParameterError("Give exactly one source of labels: --features STORE (repeatable), "
                             "--manifest M.csv or --labels train-label.csv; got "
                             f"{', '.join(given) if given else 'none'}.")
    if features:
        from mer_heads.data.dataset import load_dataset

        data = load_dataset(list(features), join=join)
        return (data.names, data.discrete, data.valence,
                "stores " + ", ".join(m.path for m in data.modalities))
    from mer_heads.data.labels import read_label_table

    path = manifest or labels
    table = read_label_table(path, what="manifest" if manifest else "label file", classes=None)
    return table.names, table.discrete, table.valence, f"'{path}'"


def describe(out: str | Path, *, features=None, manifest: str | Path | None = None,
             labels: str | Path | None = None, join: str = "exact",
             overwrite: bool = False) -> DescribeResult:
    """Valence per discrete class of one source of labels; write ``out/describe.{md,csv,json,
    png}`` (see the module docstring).

    Parameters
    ----------
    out : output folder (an earlier description in it is only replaced with ``overwrite``).
    features : feature stores (their labels, joined as ``mer-heads fit`` joins them, ``join``);
        or ``manifest`` : a manifest CSV; or ``labels`` : a ``name,discrete,valence`` CSV such as
        MER 2023's ``train-label.csv``. Exactly one.
    """
    start = time.perf_counter()
    if join not in ("exact", "inner"):
        raise ParameterError(f"join must be one of exact, inner; got {join!r}.", "join")
    with output_folder(out, marker=f"{DescribeResult.stem}.json", overwrite=overwrite,
                       what="description") as out:
        names, discrete, valence, source = _labels(features, manifest, labels, join)
        stats = describe_labels(discrete, valence, source=source, n_clips=len(names))
        result = DescribeResult(out=out, stats=stats, notes=list(stats["notes"]))
        write_csv(result.csv_path, CSV_COLUMNS, [{"class": c, **row}
                                                 for c, row in stats["classes"].items()])
        dump_json(stats, result.json_path)
        from mer_heads.reports.describe import describe_figure, markdown_description

        write_text(result.markdown_path, markdown_description(stats))
        describe_figure(np.asarray(discrete, object), np.asarray(valence, np.float64), stats,
                        result.png_path)
        result.seconds = time.perf_counter() - start
        return result


def classes_of(discrete: np.ndarray) -> tuple[str, ...]:
    """The label set of ``discrete`` in order (:func:`mer_features.corpora.classes.label_set`:
    MER 2023's six when every label is one of them, else sorted)."""
    from mer_features.corpora.classes import label_set

    return label_set(str(d) for d in discrete)


def describe_labels(discrete: np.ndarray, valence: np.ndarray, *, source: str = "",
                    n_clips: int | None = None) -> dict[str, Any]:
    """The statistics of the module docstring for classes ``discrete`` (n,) str ("" when
    none) and ``valence`` (n,) float (NaN when none), as a JSON-ready dict."""
    discrete = np.asarray(discrete, object)
    valence = np.asarray(valence, np.float64)
    both = (discrete != "") & np.isfinite(valence)
    notes = []
    n_labelled = int((discrete != "").sum())
    if not both.any():
        raise DataError(f"No clip of {source or 'the labels'} has both a discrete class and a "
                        f"valence label ({n_labelled} have a class, "
                        f"{int(np.isfinite(valence).sum())} a valence); describe needs both "
                        "(e.g. MER 2023's train-label.csv).")
    if n_labelled > both.sum():
        notes.append(f"{n_labelled - int(both.sum())} clip(s) with a class but no valence are "
                     "left out")
    y, v = discrete[both], valence[both]
    label_set = classes_of(discrete)
    present = [e for e in label_set if (y == e).any()]
    classes: dict[str, dict[str, Any]] = {}
    for e in present:
        x = v[y == e]
        q1, median, q3 = (float(q) for q in np.quantile(x, [0.25, 0.5, 0.75]))
        r, p = point_biserial(y == e, v)
        classes[e] = {"count": int(len(x)), "mean": float(x.mean()),
                      "std": float(x.std(ddof=1)) if len(x) > 1 else None,
                      "min": float(x.min()), "q1": q1, "median": median, "q3": q3,
                      "max": float(x.max()), "point_biserial_r": r, "point_biserial_p": p}
    absent = [e for e in label_set if e not in classes]
    if absent:
        notes.append(f"no clip of class(es) {', '.join(absent)} has a valence label")
    iqr = {e: (c["q1"], c["q3"]) for e, c in classes.items()}
    pairs = []
    for a, b in itertools.combinations(classes, 2):
        lo, hi = max(iqr[a][0], iqr[b][0]), min(iqr[a][1], iqr[b][1])
        pairs.append({"classes": [a, b], "low": lo if lo <= hi else None,
                      "high": hi if lo <= hi else None, "width": max(0.0, hi - lo)})
    f_stat, f_p = anova(y, v)
    return {"source": source, "clips": n_clips if n_clips is not None else len(discrete),
            "with_both": int(both.sum()), "classes": classes,
            "eta_squared": eta_squared(y, v), "anova_f": f_stat, "anova_p": f_p,
            "valence": {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1
                        else None},
            "iqr_overlap_pairs": pairs, "iqr_overlap_ranges": overlap_ranges(iqr),
            "notes": notes}


__all__ = ["CSV_COLUMNS", "DescribeResult", "anova", "describe", "describe_labels",
           "eta_squared", "overlap_ranges", "point_biserial"]
