"""95% bootstrap intervals for every metric of one system's predictions.

The resampling unit is the clip, or the group (speaker, actor ...) when ``groups`` are given: a
cluster bootstrap that draws whole groups with replacement and takes all their clips, because
clips of one speaker are not independent (a held-out speaker the model gets wrong pulls all
their clips down together) and a clip bootstrap would then give intervals that are too narrow.
Folds are ignored by default (the pooled metric treats every held-out prediction alike; folds
drawn at random are not a population structure, and folds by group are already respected by
resampling groups); ``strata`` (e.g. published folds of different sessions or recording
conditions) resamples within each stratum, keeping its number of units. docs/statistics.md
says what the interval means and what it does not.

Intervals are percentile intervals by default (the 2.5th and 97.5th percentiles of the B
resampled metrics, numpy's linear interpolation), or BCa (``method="bca"``, bias-corrected and
accelerated, the jackknife over units as in scipy.stats.bootstrap, strata ignored by the
jackknife); both agree with ``scipy.stats.bootstrap`` on the same resamples
(tests/heads/test_stats.py). A BCa interval that cannot be computed (the estimate lies outside
every resample's value) is None, as scipy's is NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mer_heads.errors import DataError, ParameterError, listed
from mer_heads.metrics import ScoringInputs, scoring_inputs
from mer_heads.stats.calibration import N_BINS, check_bins
from mer_heads.stats.resample import bootstrap_indices, chunk_rows, counts_of
from mer_heads.stats.sufficient import Layout, unit_sums

N_RESAMPLES = 1000
"""Bootstrap resamples by default."""
CONFIDENCE = 0.95
METHODS = ("percentile", "bca")


@dataclass(frozen=True)
class Predictions:
    """One system's outputs on the scored clips: class ``labels`` (n,) (indices or names; the
    argmax of ``proba`` when None), class probabilities ``proba`` (n, K) and continuous
    ``targets`` (name -> (n,) floats)."""

    labels: Any = None
    proba: Any = None
    targets: Mapping[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Parameters and the resampling design


def check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ParameterError(f"{name} must be an integer >= 1; got {value!r}.")
    return int(value)


def check_confidence(confidence: Any) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.number)) \
            or not 0 < confidence < 1:
        raise ParameterError(f"confidence must be a number in (0, 1), e.g. 0.95; got "
                             f"{confidence!r}.")
    return float(confidence)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ParameterError(f"seed must be an integer >= 0 (the resamples are drawn from "
                             f"numpy.random.default_rng(seed)); got {seed!r}.")
    return int(seed)


def check_method(method: Any) -> str:
    if method not in METHODS:
        raise ParameterError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    return method


def _codes(values: Any, n: int, name: str) -> tuple[np.ndarray, list[str]]:
    """Values (n,) as int codes into their sorted distinct string forms."""
    array = np.asarray(values, dtype=object)
    if array.shape != (n,):
        raise DataError(f"{name} must have shape ({n},) like y_true; got {array.shape}.")
    missing = [i for i, v in enumerate(array)
               if v is None or (isinstance(v, float) and not np.isfinite(v)) or v == ""]
    if missing:
        raise DataError(f"{name} is missing for {len(missing)} clip(s) (first at position "
                        f"{missing[0]}); every scored clip needs one.")
    strings = np.array([str(v) for v in array], dtype=object)
    names, codes = np.unique(strings, return_inverse=True)
    return codes.astype(np.int64), [str(s) for s in names]


@dataclass(frozen=True)
class Design:
    """What is resampled: ``units`` (n,) each clip's unit (itself, or its group), and each
    unit's stratum (None: no strata)."""

    units: np.ndarray
    n_units: int
    unit: str  # "clip" or "group"
    strata: np.ndarray | None
    n_strata: int | None

    @classmethod
    def of(cls, n: int, groups: Any = None, strata: Any = None) -> "Design":
        if groups is None:
            units, n_units, unit = np.arange(n), n, "clip"
        else:
            units, group_names = _codes(groups, n, "groups")
            n_units, unit = len(group_names), "group"
        if n_units < 2:
            raise DataError(f"a bootstrap over {unit}s needs at least 2 {unit}s; got {n_units}.")
        unit_strata, n_strata = None, None
        if strata is not None:
            clip_strata, strata_names = _codes(strata, n, "strata")
            n_strata = len(strata_names)
            unit_strata = np.full(n_units, -1, np.int64)
            unit_strata[units] = clip_strata
            split = np.flatnonzero(unit_strata[units] != clip_strata)
            if len(split):
                spread = sorted({str(np.asarray(groups, dtype=object)[i]) for i in split})
                raise DataError(f"strata must hold whole groups; {len(spread)} group(s) lie in "
                                f"several strata ({listed(spread)}).")
        return cls(units, n_units, unit, unit_strata, n_strata)

    def describe(self) -> dict[str, Any]:
        return {"unit": self.unit, "n_units": self.n_units, "n_strata": self.n_strata}


# ---------------------------------------------------------------------------------------------
# Intervals


def resampled_sums(rows: np.ndarray, rng: np.random.Generator, n_resamples: int,
                   design: Design) -> np.ndarray:
    """Summed rows of each resample, shape (n_resamples, S): ``rows`` (n_units, S) per unit."""
    out = np.empty((n_resamples, rows.shape[1]))
    at = 0
    for indices in bootstrap_indices(rng, n_resamples, design.n_units, design.strata):
        out[at:at + len(indices)] = counts_of(indices, design.n_units) @ rows
        at += len(indices)
    return out


def jackknife_sums(rows: np.ndarray) -> np.ndarray:
    """Summed rows with each unit left out in turn, shape (n_units, S)."""
    return rows.sum(axis=0)[None, :] - rows


def interval(values: np.ndarray, estimate: float, confidence: float, method: str,
             jackknife: np.ndarray | None = None) -> tuple[float | None, float | None, int]:
    """(low, high, n_undefined) of resampled ``values`` (B,); NaN resamples (metric undefined
    there) are left out and counted. BCa needs the ``jackknife`` values (n_units,)."""
    finite = values[np.isfinite(values)]
    undefined = len(values) - len(finite)
    if not len(finite) or not np.isfinite(estimate):
        return None, None, undefined
    alpha = (1 - confidence) / 2
    levels = np.array([alpha, 1 - alpha])
    if method == "bca":
        from scipy.special import ndtr, ndtri

        share = (np.count_nonzero(finite < estimate) + np.count_nonzero(finite <= estimate)) / (
            2 * len(finite))
        z0 = ndtri(share)
        jack = jackknife[np.isfinite(jackknife)]
        u = (len(jack) - 1) * (jack.mean() - jack)
        denominator = (u ** 2).sum() / len(jack) ** 2
        a = (u ** 3).sum() / len(jack) ** 3 / 6 / denominator ** 1.5 if denominator > 0 else 0.0
        z = ndtri(levels)
        levels = ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))
        if not np.isfinite(levels).all():
            return None, None, undefined
    low, high = np.quantile(finite, levels)
    return float(low), float(high), undefined


def _intervals(metrics: Mapping[str, np.ndarray], estimates: Mapping[str, np.ndarray],
               confidence: float, method: str,
               jackknife: Mapping[str, np.ndarray] | None) -> dict[str, dict[str, Any]]:
    out = {}
    for name, values in metrics.items():
        estimate = float(estimates[name])
        low, high, undefined = interval(values, estimate, confidence, method,
                                        None if jackknife is None else jackknife[name])
        out[name] = {"estimate": estimate if np.isfinite(estimate) else None, "low": low,
                     "high": high, "n_undefined": undefined}
    return out


def bootstrap_metrics(y_true: Any, y_pred: Any = None, *, classes: int | Sequence[str],
                      proba: Any = None, true_targets: Mapping[str, Any] | None = None,
                      pred_targets: Mapping[str, Any] | None = None, groups: Any = None,
                      strata: Any = None, n_resamples: int = N_RESAMPLES,
                      confidence: float = CONFIDENCE, seed: int = 0,
                      method: str = "percentile", n_bins: int = N_BINS) -> dict[str, Any]:
    """Bootstrap intervals of every scalar metric of one system (the arguments of
    :func:`mer_heads.metrics.all_metrics`, plus the design).

    Parameters
    ----------
    groups : optional (n,) group of each clip (speaker, actor); resamples whole groups.
    strata : optional (n,) stratum of each clip (e.g. its published fold); resamples within
        each stratum (with groups, a group must lie in one stratum).
    n_resamples, confidence, seed, method : B resamples from numpy.random.default_rng(seed);
        ``"percentile"`` or ``"bca"`` intervals at ``confidence``.

    Returns
    -------
    ``{"method", "confidence", "n_resamples", "seed", "unit", "n_units", "n_strata",
    "metrics": {name: {"estimate", "low", "high", "n_undefined"}}}`` with the names of
    :func:`mer_heads.metrics.scalar_metrics`; ``n_undefined`` counts resamples where the metric
    was undefined (a class's recall when no clip of it was drawn), left out of its interval.
    """
    n_resamples = check_count("n_resamples", n_resamples)
    confidence, seed, method = check_confidence(confidence), check_seed(seed), \
        check_method(method)
    n_bins = check_bins(n_bins)
    data = scoring_inputs(y_true, y_pred, classes=classes, proba=proba,
                          true_targets=true_targets, pred_targets=pred_targets)
    design = Design.of(data.n, groups, strata)
    layout = Layout.of(data, n_bins)
    rows = unit_sums(layout.rows(data), design.units, design.n_units)
    sums = resampled_sums(rows, np.random.default_rng(seed), n_resamples, design)
    jackknife = layout.metrics(jackknife_sums(rows)) if method == "bca" else None
    return {"method": method, "confidence": confidence, "n_resamples": n_resamples,
            "seed": seed, **design.describe(),
            "metrics": _intervals(layout.metrics(sums), layout.metrics(rows.sum(axis=0)),
                                  confidence, method, jackknife)}


def _inputs(y_true: Any, system: Predictions, classes: Any,
            true_targets: Mapping[str, Any] | None, name: str) -> ScoringInputs:
    if not isinstance(system, Predictions):
        raise DataError(f"system '{name}' must be a mer_heads.stats.Predictions (labels, "
                        f"proba, targets); got {type(system).__name__}.")
    try:
        return scoring_inputs(y_true, system.labels, classes=classes, proba=system.proba,
                              true_targets=true_targets, pred_targets=system.targets)
    except DataError as e:
        raise type(e)(f"system '{name}': {e}") from e


__all__ = ["CONFIDENCE", "Design", "METHODS", "N_RESAMPLES", "Predictions",
           "bootstrap_metrics", "chunk_rows", "interval", "jackknife_sums", "resampled_sums"]
