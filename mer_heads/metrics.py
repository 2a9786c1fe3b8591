"""The official MER 2023 scores, and the metrics of any label set.

MER 2023 (:func:`score`, :class:`Scores`, :func:`evaluate_files`, :func:`confusion`):

* discrete emotions: weighted F1 over the six classes (sklearn's ``average="weighted"``: each
  class's F1 weighted by its number of true clips);
* valence: mean squared error;
* combined metric: ``F1 - 0.25 * MSE``, or F1 alone when there is no valence.

Accuracy is reported beside them (not an official score, but what RAVDESS papers quote).

Any label set (:func:`all_metrics`, :func:`metrics_by_fold`, :func:`scalar_metrics`): UA, WA,
macro and weighted F1, per-class recall, precision and F1, the confusion matrix, MSE and CCC
per continuous target, the MER metric, and with probabilities the calibration measures of
:mod:`mer_heads.stats.calibration`; docs/statistics.md defines each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_features import EMOTIONS
from mer_heads.config import METRICS  # noqa: F401  (re-exported: the --metric names)
from mer_heads.data.labels import VALENCE_SCALE, read_label_table
from mer_heads.errors import DataError, LabelError, ParameterError, listed

VALENCE_WEIGHT = 0.25
"""Weight of the valence MSE in the combined metric."""
VALENCE_RANGE = VALENCE_SCALE
"""The MER 2023 valence scale; predictions are clipped to it (a linear output extrapolates far
outside it on features unlike the training ones, e.g. under noise)."""


@dataclass(frozen=True)
class Scores:
    """Scores of ``n`` clips; ``mse`` is None when valence was not scored.

    ``f1`` (weighted), ``accuracy``, ``mse`` and ``metric`` are the MER 2023 scores; ``ua``,
    ``wa`` and ``macro_f1`` the speech-emotion ones (:func:`all_metrics` defines them), over the
    run's classes; ``targets`` per continuous target scored (valence included): ``n``, ``mse``
    and ``ccc`` (empty when none)."""

    f1: float
    accuracy: float
    mse: float | None
    metric: float
    n: int
    n_valence: int
    ua: float | None = None
    wa: float | None = None
    macro_f1: float | None = None
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    def value(self, metric: str) -> float | None:
        """The value of a ``--metric`` name (:data:`METRICS`, resolved: not ``auto``)."""
        return metric_value(self.to_json(), metric)


METRIC_NAMES = {"mer": "F1 - 0.25 x MSE", "f1": "weighted F1", "ua": "UA", "wa": "WA",
                "macro_f1": "macro F1"}
"""How reports name each metric."""


def resolve_metric(metric: str, classes: Sequence[str] | None = None) -> str:
    """``metric`` with ``auto`` resolved for the run's ``classes`` (None: MER 2023's)."""
    if metric != "auto":
        return metric
    from mer_features.corpora.classes import is_mer

    return "mer" if classes is None or is_mer(classes) else "ua"


def metric_value(scores: Mapping[str, Any], metric: str) -> float | None:
    """The value of a resolved ``--metric`` in a :meth:`Scores.to_json` dict (``mer`` is
    ``metric``: F1 - 0.25 MSE, or F1 without valence)."""
    return scores.get("metric" if metric == "mer" else metric)


def combined(f1: float, mse: float | None) -> float:
    """``F1 - 0.25 * MSE``, or F1 when ``mse`` is None."""
    return f1 if mse is None else f1 - VALENCE_WEIGHT * mse


def score(true: np.ndarray, pred: np.ndarray, true_valence: np.ndarray | None = None,
          pred_valence: np.ndarray | None = None, *,
          classes: int | Sequence[str] | None = None,
          targets: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> Scores:
    """Scores of class predictions (and valence where both arrays are given).

    Parameters
    ----------
    true, pred : arrays of shape (n,), class names or class indices (into ``classes``).
    true_valence, pred_valence : float arrays of shape (n,); clips whose true valence is NaN
        are left out of the MSE. No clip with a true valence -> ``mse`` is None.
    classes : the run's classes (names in index order, or their number); None: MER 2023's six.
    targets : other continuous targets, name -> (true (n,), predicted (n,)), scored by MSE and
        CCC in ``Scores.targets`` (NaN truths left out).
    """
    from sklearn.metrics import accuracy_score, f1_score, mean_squared_error

    names = tuple(EMOTIONS) if classes is None else class_names(classes)
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape or true.ndim != 1:
        raise ValueError(f"true and pred must be 1-d arrays of equal length; got {true.shape} and "
                         f"{pred.shape}.")
    if len(true) == 0:
        raise LabelError("There are no labelled clips to score.")
    labels = list(names) if true.dtype.kind in "OUS" else list(range(len(names)))
    f1 = float(f1_score(true, pred, labels=labels, average="weighted", zero_division=0))
    accuracy = float(accuracy_score(true, pred))
    conf = confusion_matrix(class_indices(true, names, "true"), class_indices(pred, names, "pred"),
                            len(names))
    c = classification_from_confusion(conf)
    mse, n_valence = None, 0
    scored_targets: dict[str, dict[str, Any]] = {}
    pairs = dict(targets or {})
    if true_valence is not None and pred_valence is not None:
        tv, pv = np.asarray(true_valence, np.float64), np.asarray(pred_valence, np.float64)
        scored = np.isfinite(tv)
        n_valence = int(scored.sum())
        if n_valence:
            mse = float(mean_squared_error(tv[scored], pv[scored]))
        pairs = {"valence": (tv, pv), **{k: v for k, v in pairs.items() if k != "valence"}}
    for target, (t, p) in pairs.items():
        t, p = np.asarray(t, np.float64), np.asarray(p, np.float64)
        scored = np.isfinite(t)
        if scored.any():
            scored_targets[target] = {"n": int(scored.sum()),
                                      "mse": float(np.mean((t[scored] - p[scored]) ** 2)),
                                      "ccc": concordance(t[scored], p[scored])}
    return Scores(f1=f1, accuracy=accuracy, mse=mse, metric=combined(f1, mse), n=len(true),
                  n_valence=n_valence, ua=_number(c["ua"]), wa=_number(c["wa"]),
                  macro_f1=_number(c["macro_f1"]), targets=scored_targets)


def evaluate_files(pred_path: str | Path, labels_path: str | Path, *, split: str | None = None,
                   run: str | Path | None = None) -> tuple[Scores, list[str]]:
    """Score a prediction file against a label file.

    The prediction file is a MER 2023 submission (``name,discrete,valence``: MER 2023's six
    classes) or the predictions ``mer-heads predict`` writes for another label set
    (``name,discrete``, target columns and ``p_<class>`` columns: the classes, in order). Every
    labelled clip of ``labels_path`` (of its split ``split``, when given) needs a prediction,
    and its label must be one of the classes; predictions of other clips are ignored. Valence
    is scored when the labels have it, and every other target column both files have by MSE
    and CCC; a submission with no valence at all is scored on F1 alone (and a note says so).
    Returns the scores and notes for the user: a ``warning: ...`` note when scored clips are
    clips the run trained on (the run ``run``, or the one named by the file ``predict`` wrote
    beside the predictions: :mod:`mer_heads.provenance`).
    """
    from mer_heads.provenance import training_warning

    preds = read_label_table(pred_path, what="prediction file", predictions=True, classes=None)
    classes = prediction_classes(preds)
    # read again against its classes: a label outside them is named with its line
    preds = read_label_table(pred_path, what="prediction file", predictions=True,
                             classes=classes)
    truth = read_label_table(labels_path, what="label file", classes=classes)
    notes: list[str] = []
    by_name = {n: i for i, n in enumerate(preds.names)}
    if split is not None and split not in set(truth.split):
        present = ", ".join(repr(s) for s in sorted(set(truth.split)) if s) or "none"
        raise LabelError(f"No clip of the label file '{labels_path}' has split '{split}' "
                         f"(--split); the splits present are {present}.")
    labelled = [i for i, d in enumerate(truth.discrete)
                if d and (split is None or truth.split[i] == split)]
    if not labelled:
        raise LabelError(f"The label file '{labels_path}' has no labelled clip"
                         + (f" of split '{split}'" if split is not None else "")
                         + " (column 'discrete' is empty everywhere).")
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
        notes.append(f"{len(preds.names) - len(rows)} predicted clip(s) have no label"
                     + (f" of split '{split}'" if split is not None else "")
                     + " and were not scored")
    notes += training_warning([truth.names[i] for i in labelled], pred_path, run)[0]
    targets = {}
    for column in preds.extra:
        if column.startswith("p_") or column not in truth.extra:
            continue
        t = _numbers(truth.extra[column][labelled], column, labels_path)
        p = _numbers(preds.extra[column][rows], column, pred_path)
        if np.isfinite(t).any() and np.isfinite(p[np.isfinite(t)]).all():
            targets[column] = (t, p)
    return score(truth.discrete[labelled], pred, true_v, pred_v, classes=classes,
                 targets=targets), notes


def prediction_classes(preds: Any) -> tuple[str, ...]:
    """The classes of a prediction file: its ``p_<class>`` columns in order, else MER 2023's
    six (the submission format)."""
    columns = [c[2:] for c in preds.extra if c.startswith("p_")]
    return tuple(columns) if len(columns) >= 2 else tuple(EMOTIONS)


def _numbers(cells: np.ndarray, column: str, path: str | Path) -> np.ndarray:
    """A target column's cells as floats (NaN where empty), read strictly."""
    from mer_heads.data.labels import parse_number

    out = np.full(len(cells), np.nan)
    for i, cell in enumerate(cells):
        if cell:
            try:
                out[i] = parse_number(cell)
            except ValueError:
                raise LabelError(f"'{path}': the '{column}' value {cell!r} is not a finite "
                                 "decimal number.") from None
    return out


def confusion(true: np.ndarray, pred: np.ndarray, n_classes: int = len(EMOTIONS)) -> np.ndarray:
    """Confusion counts of shape (K, K) of class indices (K = ``n_classes``, MER 2023's six by
    default): rows true class, columns predicted."""
    out = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(out, (np.asarray(true, np.int64), np.asarray(pred, np.int64)), 1)
    return out


# ---------------------------------------------------------------------------------------------
# Metrics for any label set
#
# Everything below takes an explicit class list (``classes``: a number of classes, or their
# names in index order) instead of MER 2023's six. The functions above (``score``, ``Scores``,
# ``confusion``) are the MER 2023 path and stay as they are; on MER data ``all_metrics`` gives
# the same ``f1``, accuracy (``wa``), ``mse`` and ``mer`` (``Scores.metric``) up to the last bit
# of floating point (tests/heads/test_metrics_any.py checks it).
#
# Rules (docs/statistics.md gives them with their reasons):
# * UA (unweighted average recall, balanced accuracy): the mean recall over the classes that
#   have at least one true clip among the scored clips; a class absent from the truth (a fold
#   that lacks it, a bootstrap resample) has no recall and is left out, as in scikit-learn's
#   ``balanced_accuracy_score``.
# * macro F1: the mean F1 over the classes that occur in the truth or in the predictions
#   (scikit-learn's ``f1_score(average="macro")`` with its default labels); a class that is
#   predicted but never true has F1 0, a class neither true nor predicted is left out.
# * weighted F1 (``f1``): each class's F1 weighted by its number of true clips (scikit-learn's
#   ``average="weighted"``, today's ``f1``).
# * CCC: Lin's concordance correlation coefficient with population (1/n) moments,
#   2 cov(t, p) / (var t + var p + (mean t - mean p)^2); when the denominator is 0 (every
#   target and every prediction the same value) it is 1.


HIGHER_IS_WORSE = ("mse", "ece", "brier", "nll")
"""Metric families (the part of a scalar metric's name before ``:``) where lower is better."""
MIN_PROBABILITY = 1e-12
"""Probabilities are floored at this value where a logarithm is taken (``nll``, temperature
scaling): a true class given probability 0 would make the log-likelihood infinite."""
ROW_SUM_TOLERANCE = 1e-3
"""How far a row of probabilities may sum from 1 (float32 softmax outputs sum to 1 +- 1e-6)."""


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of the scalar metric ``metric`` (``ua``, ``mse:valence`` ...)
    is better."""
    return metric.partition(":")[0] not in HIGHER_IS_WORSE


def class_names(classes: int | Sequence[str]) -> tuple[str, ...]:
    """The class names of ``classes``: a number of classes K (names ``"0"`` .. ``"K-1"``) or
    the names in index order. At least two distinct, non-empty names."""
    if isinstance(classes, (int, np.integer)) and not isinstance(classes, bool):
        if classes < 2:
            raise ParameterError(f"classes must be at least 2 (a number of classes or their "
                                 f"names); got {classes}.")
        return tuple(str(i) for i in range(int(classes)))
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence | np.ndarray):
        raise ParameterError("classes must be a number of classes or a sequence of class names; "
                             f"got {classes!r}.")
    names = tuple(classes)
    bad = [n for n in names if not isinstance(n, str) or not n]
    if bad:
        raise ParameterError(f"classes must be non-empty strings; got {bad[0]!r}.")
    if len(names) < 2:
        raise ParameterError(f"classes must name at least 2 classes; got {list(names)}.")
    if len(set(names)) != len(names):
        twice = sorted({n for n in names if names.count(n) > 1})
        raise ParameterError(f"classes must be distinct; {listed(twice)} appear(s) twice.")
    return names


def class_indices(labels: Any, classes: tuple[str, ...], name: str) -> np.ndarray:
    """``labels`` (n,) as int64 class indices into ``classes``: integer indices in [0, K), or
    class names. ``name`` is the parameter's name for messages."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise DataError(f"{name} must be a 1-d array of class indices or names; got shape "
                        f"{array.shape}.")
    if array.dtype == object and len(array):
        kinds = {type(v) for v in array}
        if all(issubclass(k, str) for k in kinds):
            array = array.astype(str)
        elif all(issubclass(k, (int, np.integer)) and not issubclass(k, bool) for k in kinds):
            array = array.astype(np.int64)
    if array.dtype.kind in "US":
        position = {c: i for i, c in enumerate(classes)}
        unknown = sorted({str(v) for v in array if str(v) not in position})
        if unknown:
            raise DataError(f"{name} holds {len(unknown)} name(s) that are not classes "
                            f"({listed(unknown)}); the classes are {listed(classes, most=12)}.")
        return np.fromiter((position[str(v)] for v in array), np.int64, len(array))
    if array.dtype.kind not in "iu" or array.dtype == bool:
        if len(array) == 0:
            return np.zeros(0, np.int64)
        raise DataError(f"{name} must hold integer class indices (0 .. {len(classes) - 1}) or "
                        f"class names; got an array of {array.dtype}.")
    out = array.astype(np.int64)
    outside = np.flatnonzero((out < 0) | (out >= len(classes)))
    if len(outside):
        i = int(outside[0])
        raise DataError(f"{name} holds {len(outside)} value(s) outside the class indices 0 .. "
                        f"{len(classes) - 1} (e.g. {out[i]} at position {i}); pass classes= "
                        "with every class.")
    return out


def check_probabilities(proba: Any, n: int, n_classes: int, name: str = "proba") -> np.ndarray:
    """``proba`` as a float64 array of shape (n, n_classes): finite, in [0, 1], rows summing to
    1 (within ROW_SUM_TOLERANCE)."""
    array = np.asarray(proba)
    if array.dtype.kind not in "fiu":
        raise DataError(f"{name} must be an array of probabilities; got {array.dtype}.")
    array = array.astype(np.float64)
    if array.shape != (n, n_classes):
        raise DataError(f"{name} must have shape (n clips, n classes) = ({n}, {n_classes}); got "
                        f"{array.shape}.")
    bad = ~np.isfinite(array).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(f"{name} holds NaN or infinite values in {int(bad.sum())} row(s) "
                        f"(first at row {i}); score only clips with probabilities.")
    if (array < 0).any() or (array > 1).any():
        raise DataError(f"{name} must hold probabilities in [0, 1]; got values from "
                        f"{array.min():.4g} to {array.max():.4g} (logits? apply a softmax, or "
                        "use apply_temperature(..., logits=True)).")
    sums = array.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1) > ROW_SUM_TOLERANCE)
    if len(off):
        i = int(off[0])
        raise DataError(f"{name}'s rows must sum to 1; {len(off)} row(s) do not (row {i} sums "
                        f"to {sums[i]:.6g}).")
    return array


@dataclass(frozen=True)
class ScoringInputs:
    """Checked inputs of the metrics: int64 class indices, float64 probabilities and targets
    (true targets NaN where a clip is not scored on that target; predictions finite there)."""

    classes: tuple[str, ...]
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    true_targets: dict[str, np.ndarray]
    pred_targets: dict[str, np.ndarray]

    @property
    def n(self) -> int:
        return len(self.y_true)


def _check_targets(true_targets: Any, pred_targets: Any, n: int
                   ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    if true_targets is None:
        return {}, {}
    if not isinstance(true_targets, Mapping):
        raise DataError("true_targets must be a mapping from target name to an array of shape "
                        f"(n,); got {type(true_targets).__name__}.")
    pred_targets = {} if pred_targets is None else pred_targets
    if not isinstance(pred_targets, Mapping):
        raise DataError("pred_targets must be a mapping from target name to an array of shape "
                        f"(n,); got {type(pred_targets).__name__}.")
    truths, preds = {}, {}
    for target, values in true_targets.items():
        if not isinstance(target, str) or not target or ":" in target:
            raise DataError(f"target names must be non-empty strings without ':'; got "
                            f"{target!r}.")
        if target not in pred_targets:
            raise DataError(f"pred_targets has no '{target}', which true_targets scores; give "
                            "every scored target a prediction.")
        t = np.asarray(values, dtype=np.float64)
        p = np.asarray(pred_targets[target], dtype=np.float64)
        for what, a in (("true_targets", t), ("pred_targets", p)):
            if a.shape != (n,):
                raise DataError(f"{what}['{target}'] must have shape ({n},) like y_true; got "
                                f"{a.shape}.")
        if np.isinf(t).any():
            raise DataError(f"true_targets['{target}'] holds infinite values; NaN marks a clip "
                            "without a target.")
        gaps = np.flatnonzero(np.isfinite(t) & ~np.isfinite(p))
        if len(gaps):
            raise DataError(f"pred_targets['{target}'] is NaN or infinite for {len(gaps)} clip(s) "
                            f"with a true value (first at position {int(gaps[0])}).")
        truths[target], preds[target] = t, np.where(np.isfinite(t), p, np.nan)
    return truths, preds


def scoring_inputs(y_true: Any, y_pred: Any = None, *, classes: int | Sequence[str],
                   proba: Any = None, true_targets: Mapping[str, Any] | None = None,
                   pred_targets: Mapping[str, Any] | None = None) -> ScoringInputs:
    """Check the inputs every metric takes and convert them (see :func:`all_metrics`)."""
    names = class_names(classes)
    truth = class_indices(y_true, names, "y_true")
    n = len(truth)
    if n == 0:
        raise DataError("y_true is empty: there are no clips to score.")
    if proba is not None:
        proba = check_probabilities(proba, n, len(names))
    if y_pred is None:
        if proba is None:
            raise DataError("give y_pred (class predictions) or proba (probabilities, whose "
                            "argmax is the prediction).")
        pred = proba.argmax(axis=1).astype(np.int64)
    else:
        pred = class_indices(y_pred, names, "y_pred")
        if len(pred) != n:
            raise DataError(f"y_true and y_pred must have the same length; got {n} and "
                            f"{len(pred)}.")
    truths, preds = _check_targets(true_targets, pred_targets, n)
    return ScoringInputs(names, truth, pred, proba, truths, preds)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of shape (K, K), int64: rows the true class, columns the predicted one."""
    codes = np.asarray(y_true, np.int64) * n_classes + np.asarray(y_pred, np.int64)
    return np.bincount(codes, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def classification_from_confusion(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Every class metric from confusion counts of shape (..., K, K) (rows true, columns
    predicted; any leading axes, e.g. bootstrap resamples): ``ua``, ``wa``, ``macro_f1``,
    ``f1`` of shape (...), and ``recall``, ``precision``, ``class_f1`` of shape (..., K), NaN
    where undefined (recall: no true clip; precision: never predicted; F1: neither). ``n`` is
    the number of clips (...)."""
    conf = np.asarray(confusion, np.float64)
    hits = np.diagonal(conf, axis1=-2, axis2=-1)
    support, predicted = conf.sum(axis=-1), conf.sum(axis=-2)
    n = support.sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = np.where(support > 0, hits / support, np.nan)
        precision = np.where(predicted > 0, hits / predicted, np.nan)
        seen = support + predicted
        class_f1 = np.where(seen > 0, 2 * hits / seen, np.nan)
        present = support > 0
        ua = np.where(present, recall, 0).sum(-1) / present.sum(-1)
        wa = hits.sum(axis=-1) / n
        occurs = seen > 0
        macro = np.where(occurs, class_f1, 0).sum(-1) / occurs.sum(-1)
        weighted = (np.where(present, class_f1, 0) * support).sum(-1) / n
    return {"n": n, "ua": ua, "wa": wa, "macro_f1": macro, "f1": weighted, "recall": recall,
            "precision": precision, "class_f1": class_f1}


TARGET_SUMS = ("n", "t", "p", "tt", "pp", "tp", "dd")
"""The sums over clips from which MSE and CCC follow (targets t, predictions p, d = t - p)."""


def target_sums(true: np.ndarray, pred: np.ndarray, shift: float = 0.0) -> np.ndarray:
    """Per-clip terms of TARGET_SUMS, shape (n, 7); clips with a NaN truth contribute zeros.
    ``shift`` is subtracted from both (CCC and MSE do not change; sums of centred values lose
    fewer digits)."""
    scored = np.isfinite(true)
    t = np.where(scored, true - shift, 0.0)
    p = np.where(scored, pred - shift, 0.0)
    d = t - p
    return np.stack([scored.astype(np.float64), t, p, t * t, p * p, t * p, d * d], axis=1)


def target_from_sums(sums: np.ndarray) -> dict[str, np.ndarray]:
    """``n``, ``mse`` and ``ccc`` from summed TARGET_SUMS of shape (..., 7); NaN where no clip
    is scored. A CCC denominator at or below 1e-12 of the data's scale counts as 0 (every
    target and prediction equal): CCC 1."""
    s = np.asarray(sums, np.float64)
    n, t, p, tt, pp, tp, dd = (s[..., i] for i in range(7))
    with np.errstate(divide="ignore", invalid="ignore"):
        mt, mp = t / n, p / n
        var_t, var_p = tt / n - mt * mt, pp / n - mp * mp
        cov = tp / n - mt * mp
        denominator = var_t + var_p + (mt - mp) ** 2
        scale = (tt + pp) / n
        flat = denominator <= 1e-12 * np.maximum(scale, np.finfo(np.float64).tiny)
        ccc = np.where(flat, 1.0, 2 * cov / np.where(flat, 1.0, denominator))
        mse = dd / n
    empty = n == 0
    return {"n": n, "mse": np.where(empty, np.nan, mse), "ccc": np.where(empty, np.nan, ccc)}


def concordance(true: Any, pred: Any) -> float:
    """Lin's concordance correlation coefficient of two float arrays of shape (n,), n >= 1,
    with population moments; 1 when every value of both is the same (see the rules above)."""
    t, p = np.asarray(true, np.float64), np.asarray(pred, np.float64)
    if t.shape != p.shape or t.ndim != 1 or len(t) == 0:
        raise DataError(f"true and pred must be 1-d arrays of equal, non-zero length; got "
                        f"{t.shape} and {p.shape}.")
    dt, dp = t - t.mean(), p - p.mean()
    denominator = (dt @ dt + dp @ dp) / len(t) + (t.mean() - p.mean()) ** 2
    if denominator <= 1e-12 * max((t @ t + p @ p) / len(t), np.finfo(np.float64).tiny):
        return 1.0
    return float(2 * (dt @ dp) / len(t) / denominator)


def _number(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def all_metrics(y_true: Any, y_pred: Any = None, *, classes: int | Sequence[str],
                proba: Any = None, true_targets: Mapping[str, Any] | None = None,
                pred_targets: Mapping[str, Any] | None = None, n_bins: int = 15) -> dict:
    """Every metric of one set of predictions, as a plain (JSON-ready) dict.

    Parameters
    ----------
    y_true, y_pred : arrays of shape (n,), class indices (0 .. K-1) or class names. Without
        ``y_pred`` the prediction is the argmax of ``proba``.
    classes : the number of classes K, or their names in index order.
    proba : optional array of shape (n, K), probabilities; adds ``ece``, ``brier`` and ``nll``
        (:mod:`mer_heads.stats.calibration`, ``n_bins`` confidence bins for the ECE).
    true_targets, pred_targets : optional mappings target name -> float array (n,) (e.g.
        ``{"valence": ...}``); a NaN true value leaves that clip out of that target.

    Returns
    -------
    ``{"n", "classes", "ua", "wa", "macro_f1", "f1", "per_class": {name: {"support",
    "predicted", "recall", "precision", "f1"}}, "confusion": K x K list (rows true),
    "targets": {name: {"n", "mse", "ccc"}}, "mer"?, "ece"?, "brier"?, "nll"?}``; ``mer``
    (F1 - 0.25 MSE of valence) when a target ``valence`` has a scored clip. Undefined values
    (a class's recall without true clips, a target without scored clips) are None.
    """
    data = scoring_inputs(y_true, y_pred, classes=classes, proba=proba,
                          true_targets=true_targets, pred_targets=pred_targets)
    conf = confusion_matrix(data.y_true, data.y_pred, len(data.classes))
    c = classification_from_confusion(conf)
    out: dict[str, Any] = {"n": data.n, "classes": list(data.classes)}
    out.update({k: _number(c[k]) for k in ("ua", "wa", "macro_f1", "f1")})
    out["per_class"] = {
        name: {"support": int(conf[k].sum()), "predicted": int(conf[:, k].sum()),
               "recall": _number(c["recall"][k]), "precision": _number(c["precision"][k]),
               "f1": _number(c["class_f1"][k])}
        for k, name in enumerate(data.classes)}
    out["confusion"] = conf.tolist()
    out["targets"] = {}
    for target, t in data.true_targets.items():
        scored = np.isfinite(t)
        p = data.pred_targets[target]
        out["targets"][target] = {
            "n": int(scored.sum()),
            "mse": float(np.mean((t[scored] - p[scored]) ** 2)) if scored.any() else None,
            "ccc": concordance(t[scored], p[scored]) if scored.any() else None}
    valence = out["targets"].get("valence")
    if valence and valence["n"]:
        out["mer"] = combined(out["f1"], valence["mse"])
    if data.proba is not None:
        from mer_heads.stats.calibration import calibration_metrics

        out.update(calibration_metrics(data.y_true, data.proba, n_bins=n_bins))
    return out


def scalar_metrics(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """The scalar metrics of an :func:`all_metrics` dict under flat names: ``ua``, ``wa``,
    ``macro_f1``, ``f1``, ``recall:<class>``, ``f1:<class>``, ``mse:<target>``,
    ``ccc:<target>``, ``mer``, ``ece``, ``brier``, ``nll`` (those present): the names the
    bootstrap and the comparisons use."""
    out = {k: metrics[k] for k in ("ua", "wa", "macro_f1", "f1")}
    for kind in ("recall", "f1"):
        out.update({f"{kind}:{name}": v[kind] for name, v in metrics["per_class"].items()})
    for target, v in metrics["targets"].items():
        out[f"mse:{target}"], out[f"ccc:{target}"] = v["mse"], v["ccc"]
    out.update({k: metrics[k] for k in ("mer", "ece", "brier", "nll") if k in metrics})
    return out


def metrics_by_fold(y_true: Any, y_pred: Any = None, *, folds: Any,
                    classes: int | Sequence[str], proba: Any = None,
                    true_targets: Mapping[str, Any] | None = None,
                    pred_targets: Mapping[str, Any] | None = None, n_bins: int = 15) -> dict:
    """The metrics of held-out predictions combined both ways: ``pooled`` (:func:`all_metrics`
    of all clips together, the primary figure) and per fold (``folds``: each clip's held-out
    fold, an array of shape (n,) of ints or strings), with the ``mean`` and ``std`` (population,
    ddof 0, as the leaderboard's spread over seeds) over folds of every scalar metric
    (:func:`scalar_metrics`; folds where a metric is undefined are left out of its mean and
    counted in ``n_folds_defined``).

    Returns ``{"pooled": {...}, "folds": {fold: {...}}, "mean": {metric: float|None},
    "std": {...}, "n_folds": int, "n_folds_defined": {metric: int}}``.
    """
    data = scoring_inputs(y_true, y_pred, classes=classes, proba=proba,
                          true_targets=true_targets, pred_targets=pred_targets)
    fold_of = np.asarray(folds, dtype=object)
    if fold_of.shape != (data.n,):
        raise DataError(f"folds must have shape ({data.n},) like y_true; got {fold_of.shape}.")
    missing = [i for i, f in enumerate(fold_of)
               if f is None or f == "" or (isinstance(f, float) and not math.isfinite(f))]
    if missing:
        raise DataError(f"folds is missing for {len(missing)} clip(s) (first at position "
                        f"{missing[0]}): every clip needs its held-out fold.")
    keys = [str(f) for f in fold_of]
    order = list(dict.fromkeys(sorted(set(keys), key=_natural)))

    def subset(rows: np.ndarray) -> dict:
        return all_metrics(data.y_true[rows], data.y_pred[rows], classes=data.classes,
                           proba=None if data.proba is None else data.proba[rows],
                           true_targets={k: v[rows] for k, v in data.true_targets.items()},
                           pred_targets={k: v[rows] for k, v in data.pred_targets.items()},
                           n_bins=n_bins)

    pooled = subset(np.arange(data.n))
    key_array = np.array(keys, dtype=object)
    per_fold = {f: subset(np.flatnonzero(key_array == f)) for f in order}
    flat = [scalar_metrics(m) for m in per_fold.values()]
    mean, std, defined = {}, {}, {}
    for metric in scalar_metrics(pooled):
        values = [m[metric] for m in flat if m.get(metric) is not None]
        defined[metric] = len(values)
        mean[metric] = float(np.mean(values)) if values else None
        std[metric] = float(np.std(values)) if values else None
    return {"pooled": pooled, "folds": per_fold, "mean": mean, "std": std,
            "n_folds": len(order), "n_folds_defined": defined}


def _natural(key: str) -> tuple:
    """Sort fold names as numbers when they are ('2' before '10')."""
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)
