"""The statistics every run reports beside its point estimates: 95% bootstrap intervals of the
held-out metrics, calibration of the held-out probabilities, and the temperature calibration of
``--calibrate temperature`` (docs/statistics.md, "Statistics of a run").

* Intervals: :func:`~mer_heads.stats.bootstrap_metrics` over the pooled held-out predictions of
  the run, seeded with the run's ``--seed``; the unit is the group when ``--groups`` says who is
  who (whole groups resampled), else the clip. With ``--folds-from`` the published folds are
  strata (each fold keeps its number of units). What was resampled is recorded beside the
  intervals (``bootstrap``: unit, groups column, n, seed, n_units, strata, method, confidence).
* Calibration: ECE (15 equal-width bins of the top-class probability), Brier and NLL of the
  held-out probabilities (:func:`~mer_heads.stats.calibration_metrics`).
* Temperature: one T per fold, fitted on the fold's *training* clips only (never one of its
  held-out clips), applied to the fold's held-out predictions and, at predict time, to each
  fold's predictions before the fold ensemble averages them. ``temperature`` fits T_f on the
  held-out predictions of the other folds' clips (cross-fitted: predictions by models that did
  not train on them, as new clips will be); ``temperature-train`` on fold f's own models'
  predictions of their training clips (nothing fold f's held-out clips influence reaches T_f,
  not even through the other folds' training; but a model is surer of its training clips than
  of new ones, so T comes out too small when the models fit their training clips closely).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mer_heads.stats.bootstrap import CONFIDENCE, bootstrap_metrics
from mer_heads.stats.calibration import (N_BINS, apply_temperature, calibration_metrics,
                                         fit_temperature)

RUN_RESAMPLES = 1000
"""Bootstrap resamples of a run's intervals (metrics.json ``bootstrap.n``): 0.5 s of CPU for
5,000 clips of 8 classes with probabilities and one target (docs/statistics.md, speed)."""


def _number(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def run_intervals(y_true: Any, y_pred: Any, *, classes: Sequence[str], proba: Any = None,
                  true_targets: Mapping[str, Any] | None = None,
                  pred_targets: Mapping[str, Any] | None = None, groups: Any = None,
                  groups_column: str | None = None, strata: Any = None,
                  strata_column: str | None = None, seed: int = 0,
                  n_resamples: int = RUN_RESAMPLES) -> dict[str, Any]:
    """``{"bootstrap": {...}, "ci": {metric: [low, high] or None}}`` of held-out predictions
    (the arguments of :func:`~mer_heads.stats.bootstrap_metrics`); ``ci`` is keyed by the
    scalar metric names (``f1``, ``ua``, ``wa``, ``macro_f1``, ``recall:<class>``,
    ``f1:<class>``, ``mse:<target>``, ``ccc:<target>``, ``mer``, ``ece``, ``brier``, ``nll``).
    """
    b = bootstrap_metrics(y_true, y_pred, classes=list(classes), proba=proba,
                          true_targets=true_targets, pred_targets=pred_targets, groups=groups,
                          strata=strata, n_resamples=n_resamples, seed=seed)
    ci = {name: None if m["low"] is None else [m["low"], m["high"]]
          for name, m in b["metrics"].items()}
    return {"bootstrap": {"unit": "group" if groups is not None else "clip",
                          "groups": groups_column if groups is not None else None,
                          "n": b["n_resamples"], "seed": b["seed"], "n_units": b["n_units"],
                          "strata": strata_column if strata is not None else None,
                          "n_strata": b["n_strata"], "method": b["method"],
                          "confidence": b["confidence"]},
            "ci": ci}


def calibration_json(y_true: Any, proba: Any) -> dict[str, float]:
    """``{"ece", "brier", "nll"}`` of held-out probabilities (15 bins)."""
    return {k: float(v) for k, v in calibration_metrics(y_true, proba, N_BINS).items()}


def fold_temperatures(train_proba: np.ndarray, labels: np.ndarray, fold: np.ndarray
                      ) -> np.ndarray:
    """One temperature per fold f: fitted on ``train_proba[f]`` (fold f's models' predictions,
    shape (K, n, classes)) of the clips whose fold is not f (f's training clips) and their
    ``labels`` (n,). A held-out clip of fold f never reaches T_f."""
    k = train_proba.shape[0]
    out = np.empty(k)
    for f in range(k):
        own = np.flatnonzero(fold != f)
        out[f] = fit_temperature(train_proba[f, own], labels[own])
    return out


def cross_fitted_temperatures(held_out_proba: np.ndarray, labels: np.ndarray, fold: np.ndarray,
                              n_folds: int) -> np.ndarray:
    """One temperature per fold f: fitted on the held-out predictions ``held_out_proba`` (n,
    classes) of the clips of the *other* folds (each predicted by a model that never trained
    on it) and their ``labels``; fold f's own held-out clips never reach T_f."""
    out = np.empty(n_folds)
    for f in range(n_folds):
        other = np.flatnonzero(fold != f)
        out[f] = fit_temperature(held_out_proba[other], labels[other])
    return out


def calibrate_held_out(proba: np.ndarray, fold: np.ndarray, temperatures: np.ndarray
                       ) -> np.ndarray:
    """Held-out probabilities (n, classes) with each clip's fold temperature applied."""
    out = np.array(proba, np.float64, copy=True)
    for f, t in enumerate(temperatures):
        rows = np.flatnonzero(fold == f)
        if len(rows):
            out[rows] = apply_temperature(out[rows], float(t))
    return out


def calibrated_ensemble(fold_proba: np.ndarray, temperatures: np.ndarray) -> np.ndarray:
    """The fold ensemble (n, classes) of per-fold probabilities (K, n, classes), each fold's
    calibrated with its temperature before the mean."""
    return np.mean([apply_temperature(p, float(t)) for p, t in zip(fold_proba, temperatures)],
                   axis=0)


def interval_text(value: float | None, ci: Sequence[float] | None, digits: int = 3) -> str:
    """``0.612 [0.571, 0.650]`` (``-`` without a value; no brackets without an interval)."""
    if value is None:
        return "-"
    text = f"{value:.{digits}f}"
    return text if not ci else f"{text} [{ci[0]:.{digits}f}, {ci[1]:.{digits}f}]"


__all__ = ["CONFIDENCE", "RUN_RESAMPLES", "calibrate_held_out", "cross_fitted_temperatures",
           "calibrated_ensemble", "calibration_json", "fold_temperatures", "interval_text",
           "run_intervals"]


# ---------------------------------------------------------------------------------------------
# Tables of several systems (leaderboard rows)

TABLE_PERMUTATIONS = 2000
"""Permutations of the leaderboard's paired test of each row against the best (p resolves to
5e-4; before Holm's correction over the rows)."""
ALPHA = 0.05
"""A row whose Holm-adjusted p against the best is at least this is marked ``≈``."""
MARK = "≈"


def target_pairs(est: Any, data: Any, rows: Any, outputs: Any
                 ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The targets a fitted head learnt (those its training clips had values of), as
    ``(true, pred)`` dicts by name: ``data``'s values at ``rows`` and column ``j`` of
    ``outputs`` (N, T) for target ``j``."""
    learnt = [(j, t) for j, t in enumerate(est.targets_) if np.isfinite(est.target_means_[j])]
    return ({t: data.target(t)[rows] for _, t in learnt},
            {t: outputs[:, j] for j, t in learnt})


def held_out_of(est: Any, data: Any) -> dict[str, Any]:
    """A fitted head's pooled held-out predictions on ``data`` (its training data): clip
    names, truth, class probabilities and the learnt targets (truth and prediction), what
    :func:`table_statistics` needs of one row."""
    rows = data.rows_of(est.train_names_)
    true, pred = target_pairs(est, data, rows, est.oof_targets_)
    return {"names": list(est.train_names_), "y": data.labels[rows],
            "proba": np.asarray(est.oof_proba_), "classes": tuple(est.classes_),
            "true_targets": true, "pred_targets": pred}


def _subset(h: Mapping[str, Any], names: Sequence[str]) -> dict[str, Any]:
    where = {n: i for i, n in enumerate(h["names"])}
    idx = np.array([where[n] for n in names], np.int64)
    return {"y": h["y"][idx], "proba": h["proba"][idx],
            "true_targets": {t: v[idx] for t, v in h["true_targets"].items()},
            "pred_targets": {t: v[idx] for t, v in h["pred_targets"].items()}}


def table_statistics(held: Sequence[Mapping[str, Any]], scores: Sequence[float], metric: str,
                     *, groups: Mapping[str, str] | None = None, seed: int = 0,
                     n_resamples: int = RUN_RESAMPLES,
                     n_permutations: int = TABLE_PERMUTATIONS) -> list[dict[str, Any]]:
    """Per row of a table (``held``: :func:`held_out_of` of each row's first seed;
    ``scores``: the value it is ranked by, higher better): the 95% bootstrap interval of the
    scalar ``metric`` (``f1``, ``ua``, ``mer`` ...) on the row's held-out clips, and the paired
    comparison with the best row (the highest score; the first on ties) on the clips both
    scored (:func:`~mer_heads.stats.compare_pair`: paired bootstrap interval of the
    difference, two-sided permutation p), Holm-adjusted over the rows compared. ``groups``:
    clip name -> group, resampled and permuted whole. Returns one dict per row: ``value``,
    ``ci``, ``clips``, ``best`` (True for the best row) and, for the others, ``vs_best``:
    ``{"delta", "ci", "p_value", "p_adjusted", "clips", "mark"}`` (``mark`` ``≈``: not
    significantly worse than the best at ``ALPHA`` after Holm)."""
    from mer_heads.stats.compare import compare_pair
    from mer_heads.stats.bootstrap import Predictions
    from mer_heads.stats.multiple import adjust_p_values

    def group_of(names: Sequence[str]) -> np.ndarray | None:
        return None if groups is None else np.array([groups[n] for n in names], dtype=object)

    out = []
    for h in held:
        b = bootstrap_metrics(h["y"], h["proba"].argmax(1), classes=list(h["classes"]),
                              true_targets=h["true_targets"], pred_targets=h["pred_targets"],
                              groups=group_of(h["names"]), n_resamples=n_resamples, seed=seed)
        m = b["metrics"].get(metric) or {}
        out.append({"metric": metric, "value": m.get("estimate"),
                    "ci": None if m.get("low") is None else [m["low"], m["high"]],
                    "clips": len(h["names"]), "unit": b["unit"], "n_units": b["n_units"],
                    "best": False})
    finite = [(-s if s is not None and np.isfinite(s) else np.inf, i)
              for i, s in enumerate(scores)]
    best = min(finite)[1]
    out[best]["best"] = True
    others = [i for i in range(len(held)) if i != best]
    p_values = []
    for i in others:
        common = [n for n in held[best]["names"] if n in set(held[i]["names"])]
        a, c = _subset(held[best], common), _subset(held[i], common)
        result = compare_pair(a["y"], Predictions(a["proba"].argmax(1), None, a["pred_targets"]),
                              Predictions(c["proba"].argmax(1), None, c["pred_targets"]),
                              classes=list(held[i]["classes"]), true_targets=a["true_targets"],
                              groups=group_of(common), seed=seed, n_resamples=n_resamples,
                              n_permutations=n_permutations)
        r = result["metrics"].get(metric) or {}
        out[i]["vs_best"] = {"delta": r.get("delta"), "ci": r.get("ci"),
                             "p_value": r.get("p_value"), "clips": len(common)}
        p_values.append(np.nan if r.get("p_value") is None else r["p_value"])
    adjusted = adjust_p_values(p_values, "holm") if p_values else []
    for i, q in zip(others, adjusted):
        v = out[i]["vs_best"]
        v["p_adjusted"] = _number(q)
        v["mark"] = MARK if np.isfinite(q) and q >= ALPHA else ""
    return out


__all__ += ["ALPHA", "MARK", "TABLE_PERMUTATIONS", "held_out_of", "table_statistics",
            "target_pairs"]
