"""Calibration: do the probabilities mean what they say?

* **ECE** (expected calibration error): the clips are put into ``n_bins`` (default 15)
  equal-width bins of their top-class probability (confidence) c = max_k p_k, bin m holding
  ((m-1)/M, m/M] (the first bin also holds 0); ECE = sum over bins of
  (clips in the bin / n) * |mean confidence - accuracy| in the bin, where accuracy is the share
  of the bin's clips whose top class (argmax, first on ties) is the true class. 0 is perfect;
  it is biased upwards on few clips (each bin's gap carries sampling noise).
* **Brier score**: the mean over clips of sum_k (p_k - [y = k])^2, the original multi-class
  score of Brier (1950), in [0, 2] (not the one-vs-rest mean over classes, which is this
  divided by K).
* **NLL**: the mean of -log p_y over clips, probabilities floored at
  :data:`~mer_heads.metrics.MIN_PROBABILITY`.
* **Reliability diagram**: per bin the count, mean confidence and accuracy
  (:func:`reliability`), drawn by :func:`reliability_figure`.
* **Temperature scaling** (Guo et al. 2017): one temperature T > 0 divides the logits (log
  probabilities when given probabilities) before the softmax; T is fitted by minimising the
  NLL on *training* clips (:func:`fit_temperature`) and applied to others
  (:func:`apply_temperature`). It changes confidence, never the argmax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np

from mer_heads.errors import DataError, ParameterError
from mer_heads.metrics import MIN_PROBABILITY, check_probabilities

N_BINS = 15
"""Confidence bins of the ECE and the reliability diagram."""
TEMPERATURE_BOUNDS = (0.05, 20.0)
"""The range the fitted temperature is searched in (a bounded search over log T)."""


def check_bins(n_bins: Any) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ParameterError(f"n_bins must be an integer >= 1; got {n_bins!r}.")
    return int(n_bins)


def _labels(y_true: Any, n: int, n_classes: int) -> np.ndarray:
    from mer_heads.metrics import class_indices

    labels = class_indices(y_true, tuple(str(i) for i in range(n_classes)), "y_true")
    if len(labels) != n:
        raise DataError(f"y_true and proba must have the same number of clips; got {len(labels)} "
                        f"and {n}.")
    if n == 0:
        raise DataError("y_true is empty: there are no clips to score.")
    return labels


def _checked(y_true: Any, proba: Any) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba)
    if p.ndim != 2 or p.shape[1] < 2:
        raise DataError(f"proba must have shape (n clips, n classes >= 2); got {p.shape}.")
    labels = _labels(y_true, len(p), p.shape[1])
    return labels, check_probabilities(p, len(p), p.shape[1])


def confidence_bins(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The bin (0 .. n_bins-1) of each confidence in [0, 1]: bin m holds (m/M, (m+1)/M], bin 0
    also 0."""
    return np.clip(np.ceil(np.asarray(confidence) * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def calibration_terms(y_true: np.ndarray, proba: np.ndarray, n_bins: int = N_BINS
                      ) -> np.ndarray:
    """Per-clip terms whose sums give every calibration metric, shape (n, 3 * n_bins + 2):
    for each bin [in bin, confidence if in bin, correct if in bin], then the clip's Brier
    term and -log p_y. (Checked inputs: class indices and probabilities.)"""
    n = len(y_true)
    confidence = proba.max(axis=1)
    correct = (proba.argmax(axis=1) == y_true).astype(np.float64)
    bins = confidence_bins(confidence, n_bins)
    out = np.zeros((n, 3 * n_bins + 2))
    rows = np.arange(n)
    out[rows, 3 * bins] = 1.0
    out[rows, 3 * bins + 1] = confidence
    out[rows, 3 * bins + 2] = correct
    onehot = np.zeros_like(proba)
    onehot[rows, y_true] = 1.0
    out[:, -2] = ((proba - onehot) ** 2).sum(axis=1)
    out[:, -1] = -np.log(np.maximum(proba[rows, y_true], MIN_PROBABILITY))
    return out


def calibration_from_sums(sums: np.ndarray, n_bins: int = N_BINS) -> dict[str, np.ndarray]:
    """``ece``, ``brier`` and ``nll`` from summed :func:`calibration_terms`, shape (..., 3M+2)
    (any leading axes, e.g. bootstrap resamples)."""
    s = np.asarray(sums, np.float64)
    bins = s[..., : 3 * n_bins].reshape(*s.shape[:-1], n_bins, 3)
    n = bins[..., 0].sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        ece = np.abs(bins[..., 1] - bins[..., 2]).sum(axis=-1) / n
        return {"ece": ece, "brier": s[..., -2] / n, "nll": s[..., -1] / n}


def calibration_metrics(y_true: Any, proba: Any, n_bins: int = N_BINS) -> dict[str, float]:
    """``{"ece", "brier", "nll"}`` of probabilities ``proba`` (n, K) for classes ``y_true``
    (n,) (indices)."""
    n_bins = check_bins(n_bins)
    labels, p = _checked(y_true, proba)
    values = calibration_from_sums(calibration_terms(labels, p, n_bins).sum(axis=0), n_bins)
    return {k: float(v) for k, v in values.items()}


def expected_calibration_error(y_true: Any, proba: Any, n_bins: int = N_BINS) -> float:
    """The ECE (module docstring) of ``proba`` (n, K) for ``y_true`` (n,)."""
    return calibration_metrics(y_true, proba, n_bins)["ece"]


def brier_score(y_true: Any, proba: Any) -> float:
    """The multi-class Brier score (module docstring), in [0, 2]."""
    return calibration_metrics(y_true, proba)["brier"]


def reliability(y_true: Any, proba: Any, n_bins: int = N_BINS) -> dict[str, Any]:
    """Reliability-diagram data: ``{"n_bins", "edges" (n_bins + 1), "count", "confidence",
    "accuracy" (per bin; None for an empty bin), "ece", "n"}``."""
    n_bins = check_bins(n_bins)
    labels, p = _checked(y_true, proba)
    sums = calibration_terms(labels, p, n_bins).sum(axis=0)
    bins = sums[: 3 * n_bins].reshape(n_bins, 3)
    count = bins[:, 0].astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        confidence, accuracy = bins[:, 1] / bins[:, 0], bins[:, 2] / bins[:, 0]
    return {"n_bins": n_bins, "edges": np.linspace(0, 1, n_bins + 1).tolist(),
            "count": count.tolist(),
            "confidence": [float(c) if k else None for c, k in zip(confidence, count)],
            "accuracy": [float(a) if k else None for a, k in zip(accuracy, count)],
            "ece": float(calibration_from_sums(sums, n_bins)["ece"]), "n": len(labels)}


def reliability_figure(diagrams: Mapping[str, Mapping[str, Any]] | Mapping[str, Any],
                       path: str | Path, *, title: str | None = None) -> Path:
    """Draw reliability diagrams (:func:`reliability` dicts; one, or several by name) as a PNG
    at ``path``: accuracy against mean confidence per bin over the diagonal of perfect
    calibration, and below it the share of clips per bin. Returns the path."""
    from mer_heads.reports.figure import figure  # matplotlib, imported on first use

    named = {"": diagrams} if isinstance(diagrams.get("n_bins"), int) else dict(diagrams)
    if not named:
        raise DataError("reliability_figure needs at least one reliability diagram.")
    with figure(path, nrows=2, ncols=1, figsize=(5.5, 6.5), dpi=120, sharex=True,
                gridspec_kw={"height_ratios": [3, 1]}) as (_, (top, bottom)):
        top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1,
                 label="perfect calibration")
        width = 1 / max(d["n_bins"] for d in named.values())
        for i, (name, d) in enumerate(named.items()):
            shown = [(c, a) for c, a in zip(d["confidence"], d["accuracy"]) if c is not None]
            label = f"{name + ': ' if name else ''}ECE {d['ece']:.3f} (n={d['n']})"
            top.plot([c for c, _ in shown], [a for _, a in shown], marker="o", markersize=4,
                     label=label)
            centres = np.asarray(d["edges"][:-1]) + 0.5 / d["n_bins"]
            share = np.asarray(d["count"]) / max(d["n"], 1)
            offset = (i - (len(named) - 1) / 2) * width / max(len(named), 1)
            bottom.bar(centres + offset, share, width=width / max(len(named), 1), alpha=0.8)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy in bin")
        top.legend(fontsize=8, loc="upper left")
        top.grid(alpha=0.3)
        top.set_title(title or "reliability (top-class probability)", fontsize=10)
        bottom.set_xlabel("confidence (top-class probability)")
        bottom.set_ylabel("share of clips")
        bottom.grid(alpha=0.3)
    return Path(path)


def _log_scores(scores: Any, logits: bool, name: str) -> np.ndarray:
    """Logits (n, K) from logits or from probabilities (their logs, floored)."""
    if logits:
        z = np.asarray(scores, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] < 2:
            raise DataError(f"{name} must have shape (n clips, n classes >= 2); got {z.shape}.")
        if not np.isfinite(z).all():
            raise DataError(f"{name} holds NaN or infinite logits.")
        return z
    p = np.asarray(scores)
    if p.ndim != 2 or p.shape[1] < 2:
        raise DataError(f"{name} must have shape (n clips, n classes >= 2); got {p.shape}.")
    p = check_probabilities(p, len(p), p.shape[1], name)
    return np.log(np.maximum(p, MIN_PROBABILITY))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _check_temperature(temperature: Any) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float, np.number)) \
            or not np.isfinite(temperature) or temperature <= 0:
        raise ParameterError(f"temperature must be a finite number > 0; got {temperature!r}.")
    return float(temperature)


def fit_temperature(scores: Any, y_true: Any, *, logits: bool = False,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS) -> float:
    """The temperature T in ``bounds`` that minimises the mean NLL of softmax(z / T) for the
    classes ``y_true`` (n,), z the logits ``scores`` (n, K) (``logits=True``) or the log of
    probabilities ``scores``. Fit it on training clips only (the folds' training side, never
    the clips it will be judged on). A result at a bound means the NLL still falls beyond it.
    """
    from scipy.optimize import minimize_scalar

    low, high = bounds
    if not (0 < low < high) or not np.isfinite(high):
        raise ParameterError(f"bounds must be 0 < low < high < inf; got {bounds!r}.")
    z = _log_scores(scores, logits, "scores")
    labels = _labels(y_true, len(z), z.shape[1])
    rows = np.arange(len(z))

    def nll(log_t: float) -> float:
        scaled = z / np.exp(log_t)
        scaled = scaled - scaled.max(axis=1, keepdims=True)
        lse = np.log(np.exp(scaled).sum(axis=1))
        return float(np.mean(lse - scaled[rows, labels]))

    found = minimize_scalar(nll, bounds=(np.log(low), np.log(high)), method="bounded",
                            options={"xatol": 1e-6})
    return float(np.exp(found.x))


def apply_temperature(scores: Any, temperature: float, *, logits: bool = False) -> np.ndarray:
    """Probabilities softmax(z / T) of shape (n, K), z the logits ``scores``
    (``logits=True``) or the log of probabilities ``scores`` (floored at MIN_PROBABILITY, so a
    probability of 0 becomes a tiny positive one)."""
    t = _check_temperature(temperature)
    return _softmax(_log_scores(scores, logits, "scores") / t)


__all__ = ["N_BINS", "TEMPERATURE_BOUNDS", "apply_temperature", "brier_score",
           "calibration_from_sums", "calibration_metrics", "calibration_terms",
           "confidence_bins", "expected_calibration_error", "fit_temperature", "reliability",
           "reliability_figure"]
