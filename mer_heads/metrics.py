"""The official MER 2023 scores.

* discrete emotions: weighted F1 over the six classes (sklearn's ``average="weighted"``: each
  class's F1 weighted by its number of true clips);
* valence: mean squared error;
* combined metric: ``F1 - 0.25 * MSE``, or F1 alone when there is no valence.

Accuracy is reported beside them (not an official score, but what RAVDESS papers quote).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from mer_features import EMOTIONS
from mer_heads.data.labels import VALENCE_SCALE, read_label_table
from mer_heads.errors import LabelError, listed

VALENCE_WEIGHT = 0.25
"""Weight of the valence MSE in the combined metric."""
VALENCE_RANGE = VALENCE_SCALE
"""The MER 2023 valence scale; predictions are clipped to it (a linear output extrapolates far
outside it on features unlike the training ones, e.g. under noise)."""


@dataclass(frozen=True)
class Scores:
    """Scores of ``n`` clips; ``mse`` is None when valence was not scored."""

    f1: float
    accuracy: float
    mse: float | None
    metric: float
    n: int
    n_valence: int

    def to_json(self) -> dict:
        return asdict(self)


def combined(f1: float, mse: float | None) -> float:
    """``F1 - 0.25 * MSE``, or F1 when ``mse`` is None."""
    return f1 if mse is None else f1 - VALENCE_WEIGHT * mse


def score(true: np.ndarray, pred: np.ndarray, true_valence: np.ndarray | None = None,
          pred_valence: np.ndarray | None = None) -> Scores:
    """Scores of class predictions (and valence where both arrays are given).

    Parameters
    ----------
    true, pred : arrays of shape (n,), class names or class indices (into EMOTIONS).
    true_valence, pred_valence : float arrays of shape (n,); clips whose true valence is NaN
        are left out of the MSE. No clip with a true valence -> ``mse`` is None.
    """
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error

    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape or true.ndim != 1:
        raise ValueError(f"true and pred must be 1-d arrays of equal length; got {true.shape} and "
                         f"{pred.shape}.")
    if len(true) == 0:
        raise LabelError("There are no labelled clips to score.")
    labels = list(EMOTIONS) if true.dtype.kind in "OUS" else list(range(len(EMOTIONS)))
    f1 = float(f1_score(true, pred, labels=labels, average="weighted", zero_division=0))
    accuracy = float(accuracy_score(true, pred))
    mse, n_valence = None, 0
    if true_valence is not None and pred_valence is not None:
        tv, pv = np.asarray(true_valence, np.float64), np.asarray(pred_valence, np.float64)
        scored = np.isfinite(tv)
        n_valence = int(scored.sum())
        if n_valence:
            mse = float(mean_squared_error(tv[scored], pv[scored]))
    return Scores(f1=f1, accuracy=accuracy, mse=mse, metric=combined(f1, mse), n=len(true),
                  n_valence=n_valence)


def evaluate_files(pred_path: str | Path, labels_path: str | Path) -> tuple[Scores, list[str]]:
    """Score a submission file (``name,discrete,valence``) against a label file.

    Every labelled clip of ``labels_path`` needs a prediction; predictions of other clips are
    ignored. Valence is scored when the labels have it; a submission with no valence at all is
    scored on F1 alone (and a note says so). Returns the scores and notes for the user.
    """
    preds = read_label_table(pred_path, what="prediction file", predictions=True)
    truth = read_label_table(labels_path, what="label file")
    notes: list[str] = []
    by_name = {n: i for i, n in enumerate(preds.names)}
    labelled = [i for i, d in enumerate(truth.discrete) if d]
    if not labelled:
        raise LabelError(f"The label file '{labels_path}' has no labelled clip (column "
                         "'discrete' is empty everywhere).")
    lacking = [truth.names[i] for i in labelled if truth.names[i] not in by_name]
    if lacking:
        raise LabelError(f"The prediction file '{pred_path}' lacks {len(lacking)} of the "
                         f"{len(labelled)} labelled clips ({listed(lacking)}); predict every "
                         "clip.")
    rows = np.array([by_name[truth.names[i]] for i in labelled], dtype=np.int64)
    pred = preds.discrete[rows]
    empty = [preds.names[r] for r, p in zip(rows, pred) if not p]
    if empty:
        raise LabelError(f"The prediction file '{pred_path}' has no discrete label for "
                         f"{len(empty)} clip(s) ({listed(empty)}).")
    true_v = truth.valence[labelled]
    pred_v = preds.valence[rows]
    if np.isfinite(true_v).any():
        if not np.isfinite(pred_v).any():
            notes.append("the predictions carry no valence: scored on F1 alone")
            true_v = pred_v = None
        else:
            gaps = [preds.names[r] for r, t, p in zip(rows, true_v, pred_v)
                    if math.isfinite(t) and not math.isfinite(p)]
            if gaps:
                raise LabelError(f"The prediction file '{pred_path}' has no valence for "
                                 f"{len(gaps)} clip(s) that have one in '{labels_path}' "
                                 f"({listed(gaps)}).")
    else:
        true_v = pred_v = None
        notes.append("the labels carry no valence: scored on F1 alone")
    if len(preds.names) > len(rows):
        notes.append(f"{len(preds.names) - len(rows)} predicted clip(s) have no label and were "
                     "not scored")
    return score(truth.discrete[labelled], pred, true_v, pred_v), notes


def confusion(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Confusion counts of shape (6, 6): rows true class, columns predicted, EMOTIONS order."""
    out = np.zeros((len(EMOTIONS), len(EMOTIONS)), np.int64)
    np.add.at(out, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
    return out
