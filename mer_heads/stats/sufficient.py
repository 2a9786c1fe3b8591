"""Every metric as a function of sums over clips, so that resamples cost one matrix product.

Each clip contributes a row of terms (its cell of the confusion matrix, its target sums, its
calibration bin ...); the metrics of any weighted set of clips (a bootstrap resample: each clip
counted as often as it was drawn; a group resample: each clip of a group counted as often as its
group was drawn; a permutation: some clips' rows taken from the other system) are functions of
the weighted sums of these rows. ``counts (B, n_units) @ rows (n_units, S)`` gives B resamples'
sums at once, and :meth:`Layout.metrics` turns them into metrics with the same formulas as
:func:`mer_heads.metrics.all_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mer_heads.metrics import (TARGET_SUMS, ScoringInputs, classification_from_confusion,
                               target_sums, target_from_sums)
from mer_heads.stats.calibration import calibration_from_sums, calibration_terms


@dataclass(frozen=True)
class Layout:
    """Which columns of a row of terms hold what, for one system's predictions."""

    classes: tuple[str, ...]
    targets: tuple[str, ...]
    n_bins: int | None  # None: no probabilities
    shifts: tuple[float, ...]  # per target, the truth mean subtracted before summing

    @property
    def width(self) -> int:
        k = len(self.classes)
        return k * k + len(TARGET_SUMS) * len(self.targets) + (
            0 if self.n_bins is None else 3 * self.n_bins + 2)

    @classmethod
    def of(cls, data: ScoringInputs, n_bins: int | None) -> "Layout":
        shifts = tuple(float(np.nanmean(t)) if np.isfinite(t).any() else 0.0
                       for t in data.true_targets.values())
        return cls(data.classes, tuple(data.true_targets), n_bins if data.proba is not None
                   else None, shifts)

    def rows(self, data: ScoringInputs) -> np.ndarray:
        """Per-clip terms, shape (n, width), float64."""
        k, n = len(self.classes), data.n
        out = np.zeros((n, self.width))
        out[np.arange(n), data.y_true * k + data.y_pred] = 1.0
        at = k * k
        for target, shift in zip(self.targets, self.shifts):
            out[:, at:at + len(TARGET_SUMS)] = target_sums(data.true_targets[target],
                                                          data.pred_targets[target], shift)
            at += len(TARGET_SUMS)
        if self.n_bins is not None:
            out[:, at:] = calibration_terms(data.y_true, data.proba, self.n_bins)
        return out

    def metric_names(self) -> list[str]:
        """The scalar metrics :meth:`metrics` gives, in :func:`~mer_heads.metrics.scalar_metrics`
        order."""
        names = ["ua", "wa", "macro_f1", "f1"]
        names += [f"recall:{c}" for c in self.classes] + [f"f1:{c}" for c in self.classes]
        for target in self.targets:
            names += [f"mse:{target}", f"ccc:{target}"]
        if "valence" in self.targets:
            names.append("mer")
        if self.n_bins is not None:
            names += ["ece", "brier", "nll"]
        return names

    def metrics(self, sums: np.ndarray) -> dict[str, np.ndarray]:
        """Scalar metrics of summed rows of shape (..., width): name -> array (...); NaN where
        undefined (a class without true clips in a resample, a target without scored clips)."""
        from mer_heads.metrics import VALENCE_WEIGHT

        k = len(self.classes)
        c = classification_from_confusion(sums[..., : k * k].reshape(*sums.shape[:-1], k, k))
        out = {name: c[name] for name in ("ua", "wa", "macro_f1", "f1")}
        for i, name in enumerate(self.classes):
            out[f"recall:{name}"] = c["recall"][..., i]
        for i, name in enumerate(self.classes):
            out[f"f1:{name}"] = c["class_f1"][..., i]
        at = k * k
        for target in self.targets:
            t = target_from_sums(sums[..., at:at + len(TARGET_SUMS)])
            out[f"mse:{target}"], out[f"ccc:{target}"] = t["mse"], t["ccc"]
            at += len(TARGET_SUMS)
        if "valence" in self.targets:
            out["mer"] = out["f1"] - VALENCE_WEIGHT * out["mse:valence"]
        if self.n_bins is not None:
            out.update(calibration_from_sums(sums[..., at:], self.n_bins))
        return out


def unit_sums(rows: np.ndarray, units: np.ndarray, n_units: int) -> np.ndarray:
    """Rows (n, S) summed per unit (``units`` (n,) in [0, n_units)): shape (n_units, S)."""
    order = np.argsort(units, kind="stable")
    sorted_units = units[order]
    starts = np.searchsorted(sorted_units, np.arange(n_units))
    return np.add.reduceat(rows[order], starts, axis=0)
