"""Paired comparisons of systems scored on the same clips.

For two systems A and B and each metric: ``delta = metric(B) - metric(A)`` (positive: B
scores higher, which is better unless the metric is an error, see
:func:`mer_heads.metrics.higher_is_better`), its paired-bootstrap interval (each resample draws
the same clips, or groups, for both systems; the resamples of :func:`bootstrap_metrics` with the
same seed) and a two-sided paired permutation p-value: in each of N permutations every unit's
two predictions (all of a clip's outputs, or all of a group's clips') are swapped with
probability 1/2, and

    p = (1 + #{permutations with |delta_perm| >= |delta|}) / (1 + N),

ties counted within 1e-9 * max(1, |delta|), so p is never 0 and the observed assignment counts
as one of the permutations. Under the null hypothesis that the two systems' outputs are
exchangeable on each unit, p is the chance of a difference at least this large. Several
comparisons (more than two systems) get adjusted p-values per metric across the comparisons
(:func:`~mer_heads.stats.multiple.adjust_p_values`, Holm by default).

Resamples come from ``numpy.random.default_rng(seed)`` and permutations from
``numpy.random.default_rng([seed, 1])`` (mer_heads.stats.resample gives the order of the
draws); every pair uses the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from mer_heads.errors import DataError, ParameterError
from mer_heads.metrics import ScoringInputs
from mer_heads.stats.bootstrap import (CONFIDENCE, N_RESAMPLES, Design, Predictions, _inputs,
                                       check_confidence, check_count, check_method, check_seed,
                                       interval, jackknife_sums, resampled_sums)
from mer_heads.stats.calibration import N_BINS, check_bins
from mer_heads.stats.multiple import CORRECTIONS, adjust_p_values
from mer_heads.stats.resample import permutation_flips
from mer_heads.stats.sufficient import Layout, unit_sums

N_PERMUTATIONS = 10_000
"""Permutations of the paired test by default (p-values resolve to 1e-4)."""
TIE_TOLERANCE = 1e-9
"""A permuted |delta| within this (times max(1, |delta|)) of the observed one counts as at least
as large: metrics on counts tie exactly, and two ways of summing may differ in the last bit."""


def permutation_rng(seed: int) -> np.random.Generator:
    """The generator of the permutation flips for ``seed``."""
    return np.random.default_rng([seed, 1])


class _Pair:
    """Two systems' per-unit rows side by side, and their metrics from summed rows."""

    def __init__(self, a: ScoringInputs, b: ScoringInputs, design: Design, n_bins: int) -> None:
        if (a.proba is None) != (b.proba is None):  # calibration only when both have it
            a, b = replace(a, proba=None), replace(b, proba=None)
        self.layout = Layout.of(a, n_bins)
        self.width = self.layout.width
        rows = np.concatenate([self.layout.rows(a), self.layout.rows(b)], axis=1)
        self.rows = unit_sums(rows, design.units, design.n_units)
        change = self.rows[:, self.width:] - self.rows[:, : self.width]  # B's rows minus A's
        self.used = np.flatnonzero(np.abs(change).sum(axis=0) > 0)  # columns where they differ
        self.change = change[:, self.used]

    def metrics(self, sums: np.ndarray) -> tuple[dict, dict]:
        return (self.layout.metrics(sums[..., : self.width]),
                self.layout.metrics(sums[..., self.width:]))

    def deltas(self, sums: np.ndarray) -> dict[str, np.ndarray]:
        a, b = self.metrics(sums)
        return {name: b[name] - a[name] for name in a}

    def permuted_deltas(self, flips: np.ndarray) -> dict[str, np.ndarray]:
        """Deltas with the units where ``flips`` (P, n_units) is 1 swapped between A and B."""
        w = self.width
        moved = np.zeros((len(flips), w))
        moved[:, self.used] = flips.astype(np.float64) @ self.change
        total = self.rows.sum(axis=0)
        sums = np.concatenate([total[:w] + moved, total[w:] - moved], axis=1)
        return self.deltas(sums)


def _p_values(pair: _Pair, observed: Mapping[str, float], rng: np.random.Generator,
              n_permutations: int, n_units: int) -> dict[str, float | None]:
    extreme = {name: 0 for name in observed}
    for flips in permutation_flips(rng, n_permutations, n_units):
        for name, values in pair.permuted_deltas(flips).items():
            d = observed[name]
            if np.isfinite(d):
                bar = abs(d) - TIE_TOLERANCE * max(1.0, abs(d))
                extreme[name] += int(np.count_nonzero(np.abs(values) >= bar))
    return {name: (1 + extreme[name]) / (1 + n_permutations) if np.isfinite(observed[name])
            else None for name in observed}


def _number(x: Any) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _compare(a: ScoringInputs, b: ScoringInputs, design: Design, *, n_resamples: int,
             n_permutations: int, confidence: float, seed: int, method: str,
             n_bins: int) -> dict[str, dict[str, Any]]:
    pair = _Pair(a, b, design, n_bins)
    total = pair.rows.sum(axis=0)
    est_a, est_b = pair.metrics(total)
    observed = {name: float(est_b[name] - est_a[name]) for name in est_a}
    boot = pair.deltas(resampled_sums(pair.rows, np.random.default_rng(seed), n_resamples,
                                      design))
    jack = pair.deltas(jackknife_sums(pair.rows)) if method == "bca" else None
    p = _p_values(pair, observed, permutation_rng(seed), n_permutations, design.n_units)
    out = {}
    for name in est_a:
        low, high, undefined = interval(boot[name], observed[name], confidence, method,
                                        None if jack is None else jack[name])
        out[name] = {"a": _number(est_a[name]), "b": _number(est_b[name]),
                     "delta": _number(observed[name]),
                     "ci": None if low is None else [low, high], "p_value": p[name],
                     "n_undefined": undefined}
    return out


def compare_systems(y_true: Any, systems: Mapping[str, Predictions], *,
                    classes: int | Sequence[str], true_targets: Mapping[str, Any] | None = None,
                    reference: str | None = None, groups: Any = None, strata: Any = None,
                    n_resamples: int = N_RESAMPLES, n_permutations: int = N_PERMUTATIONS,
                    confidence: float = CONFIDENCE, seed: int = 0, method: str = "percentile",
                    correction: str = "holm", n_bins: int = N_BINS) -> dict[str, Any]:
    """Paired comparisons of two or more systems on the same clips (module docstring).

    Parameters
    ----------
    y_true, classes, true_targets : the truth, as in :func:`mer_heads.metrics.all_metrics`.
    systems : name -> :class:`Predictions`, each of the same n clips in the same order.
    reference : compare every other system with this one (a = reference); by default every
        pair (a before b in the order of ``systems``).
    groups, strata, n_resamples, confidence, seed, method : as in :func:`bootstrap_metrics`.
    n_permutations : N of the permutation test.
    correction : ``"holm"`` (default), ``"bh"`` (Benjamini-Hochberg) or ``"none"``, applied per
        metric across the comparisons.

    Returns
    -------
    ``{"systems", "reference", "method", "confidence", "n_resamples", "n_permutations", "seed",
    "correction", "unit", "n_units", "n_strata", "comparisons": [{"a", "b", "metrics": {name:
    {"a", "b", "delta", "ci", "p_value", "p_adjusted", "n_undefined"}}}]}``.
    """
    n_resamples = check_count("n_resamples", n_resamples)
    n_permutations = check_count("n_permutations", n_permutations)
    confidence, seed, method = check_confidence(confidence), check_seed(seed), \
        check_method(method)
    n_bins = check_bins(n_bins)
    if correction not in CORRECTIONS:
        raise ParameterError(f"correction must be one of {', '.join(CORRECTIONS)}; got "
                             f"{correction!r}.")
    if not isinstance(systems, Mapping) or len(systems) < 2:
        raise DataError("systems must map at least two names to Predictions; got "
                        f"{len(systems) if isinstance(systems, Mapping) else systems!r}.")
    if reference is not None and reference not in systems:
        raise ParameterError(f"reference must be one of the systems ({', '.join(systems)}); "
                             f"got {reference!r}.")
    inputs = {name: _inputs(y_true, s, classes, true_targets, str(name))
              for name, s in systems.items()}
    n = next(iter(inputs.values())).n
    design = Design.of(n, groups, strata)
    names = list(systems)
    pairs = ([(reference, other) for other in names if other != reference]
             if reference is not None else
             [(x, y) for i, x in enumerate(names) for y in names[i + 1:]])
    comparisons = [{"a": x, "b": y, "metrics": _compare(
        inputs[x], inputs[y], design, n_resamples=n_resamples, n_permutations=n_permutations,
        confidence=confidence, seed=seed, method=method, n_bins=n_bins)} for x, y in pairs]
    for metric in comparisons[0]["metrics"]:
        raw = [c["metrics"][metric]["p_value"] for c in comparisons]
        adjusted = adjust_p_values([np.nan if p is None else p for p in raw], correction)
        for c, q in zip(comparisons, adjusted):
            c["metrics"][metric]["p_adjusted"] = _number(q)
    return {"systems": names, "reference": reference, "method": method,
            "confidence": confidence, "n_resamples": n_resamples,
            "n_permutations": n_permutations, "seed": seed, "correction": correction,
            **design.describe(), "comparisons": comparisons}


def compare_pair(y_true: Any, a: Predictions, b: Predictions, *, classes: int | Sequence[str],
                 true_targets: Mapping[str, Any] | None = None, groups: Any = None,
                 strata: Any = None, n_resamples: int = N_RESAMPLES,
                 n_permutations: int = N_PERMUTATIONS, confidence: float = CONFIDENCE,
                 seed: int = 0, method: str = "percentile", n_bins: int = N_BINS
                 ) -> dict[str, Any]:
    """:func:`compare_systems` of two systems ``a`` and ``b``: its result with the one
    comparison's ``metrics`` at the top level (``delta`` = b - a; ``p_adjusted`` = ``p_value``).
    """
    result = compare_systems(y_true, {"a": a, "b": b}, classes=classes,
                             true_targets=true_targets, groups=groups, strata=strata,
                             n_resamples=n_resamples, n_permutations=n_permutations,
                             confidence=confidence, seed=seed, method=method,
                             correction="none", n_bins=n_bins)
    metrics = result.pop("comparisons")[0]["metrics"]
    for m in metrics.values():
        m["p_adjusted"] = m["p_value"]
    return {**result, "metrics": metrics}


__all__ = ["N_PERMUTATIONS", "TIE_TOLERANCE", "compare_pair", "compare_systems",
           "permutation_rng"]
