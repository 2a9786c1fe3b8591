"""Metrics for any label set (mer_heads.metrics.all_metrics and friends), checked against
scikit-learn and hand computations, with the hostile inputs refused in one line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from sklearn.metrics import (accuracy_score, balanced_accuracy_score, f1_score,
                             precision_score, recall_score)
from sklearn.metrics import confusion_matrix as sk_confusion

from mer_features import EMOTIONS
from mer_heads.errors import DataError, ParameterError
from mer_heads.metrics import (all_metrics, class_names, concordance, higher_is_better,
                               metrics_by_fold, scalar_metrics, score)


def random_case(rng: np.random.Generator, k: int, n: int, absent: int = 0):
    """Labels of k classes where the last ``absent`` classes are never true (but predicted)."""
    y_true = rng.integers(0, k - absent, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, k, n))
    return y_true, y_pred


@pytest.mark.parametrize("k,absent", [(2, 0), (4, 1), (6, 0), (8, 2)])
def test_class_metrics_equal_sklearn(k, absent):
    rng = np.random.default_rng(k)
    for _ in range(10):
        n = int(rng.integers(5, 200))
        y_true, y_pred = random_case(rng, k, n, absent)
        m = all_metrics(y_true, y_pred, classes=k)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # 'y_pred contains classes not in y_true'
            assert m["ua"] == pytest.approx(balanced_accuracy_score(y_true, y_pred), abs=1e-12)
        assert m["wa"] == pytest.approx(accuracy_score(y_true, y_pred), abs=1e-12)
        assert m["macro_f1"] == pytest.approx(
            f1_score(y_true, y_pred, average="macro", zero_division=0), abs=1e-12)
        assert m["f1"] == pytest.approx(f1_score(y_true, y_pred, labels=list(range(k)),
                                                 average="weighted", zero_division=0), abs=1e-12)
        labels = list(range(k))
        recall = recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
        precision = precision_score(y_true, y_pred, labels=labels, average=None,
                                    zero_division=np.nan)
        f1 = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
        for c in range(k):
            got = m["per_class"][str(c)]
            for name, want in (("recall", recall[c]), ("precision", precision[c]),
                               ("f1", f1[c])):
                if np.isnan(want):
                    assert got[name] is None, (name, c)
                else:
                    assert got[name] == pytest.approx(want, abs=1e-12), (name, c)
            assert got["support"] == int((y_true == c).sum())
        assert m["confusion"] == sk_confusion(y_true, y_pred, labels=labels).tolist()


def test_hand_computed_case_and_the_absent_class_rules():
    # 3 classes; class 2 is never true but predicted once; class 1 never predicted.
    y_true = np.array([0, 0, 0, 1, 1])
    y_pred = np.array([0, 0, 2, 0, 0])
    m = all_metrics(y_true, y_pred, classes=["a", "b", "c"])
    # recall a = 2/3, recall b = 0; UA over the classes with true clips (a, b) = 1/3
    assert m["ua"] == pytest.approx(1 / 3)
    assert m["wa"] == pytest.approx(2 / 5)
    # F1 a = 2*2/(3+4) = 4/7, b = 0 (true, never predicted), c = 0 (predicted, never true)
    assert m["macro_f1"] == pytest.approx((4 / 7 + 0 + 0) / 3)
    assert m["f1"] == pytest.approx(3 / 5 * 4 / 7)
    assert m["per_class"]["c"] == {"support": 0, "predicted": 1, "recall": None,
                                   "precision": 0.0, "f1": 0.0}
    assert m["per_class"]["b"]["precision"] is None
    # a class neither true nor predicted is left out of macro F1
    four = all_metrics(y_true, y_pred, classes=["a", "b", "c", "d"])
    assert four["macro_f1"] == pytest.approx(m["macro_f1"])
    assert four["per_class"]["d"]["f1"] is None
    json.dumps(four, allow_nan=False)  # None, never NaN: valid JSON


def test_one_class_in_the_truth_is_scored_by_the_rules():
    y_true = np.zeros(6, np.int64)
    y_pred = np.array([0, 0, 0, 1, 1, 0])
    m = all_metrics(y_true, y_pred, classes=2)
    assert m["ua"] == pytest.approx(4 / 6) and m["wa"] == pytest.approx(4 / 6)
    # F1 of class 0 = 2*4/(6+4) = 0.8; class 1 predicted but never true: 0
    assert m["macro_f1"] == pytest.approx(0.4) and m["f1"] == pytest.approx(0.8)


def test_class_names_as_labels_and_argmax_of_probabilities():
    names = ["calm", "happy", "sad"]
    m = all_metrics(np.array(["calm", "sad", "sad"]), np.array(["calm", "sad", "happy"]),
                    classes=names)
    idx = all_metrics([0, 2, 2], [0, 2, 1], classes=names)
    assert m == idx and m["classes"] == names
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.2, 0.5, 0.3]])
    from_proba = all_metrics([0, 2, 2], classes=names, proba=proba)
    assert {k: from_proba[k] for k in ("ua", "wa", "confusion")} == \
        {k: idx[k] for k in ("ua", "wa", "confusion")}
    assert {"ece", "brier", "nll"} <= set(from_proba)


def test_ccc_against_hand_computation_and_degenerate_cases():
    rng = np.random.default_rng(3)
    t = rng.normal(size=500)
    p = 0.7 * t + rng.normal(scale=0.5, size=500) + 0.3
    cov = np.mean((t - t.mean()) * (p - p.mean()))
    want = 2 * cov / (t.var() + p.var() + (t.mean() - p.mean()) ** 2)
    assert concordance(t, p) == pytest.approx(want, abs=1e-12)
    x = np.array([1.0, 2.0, 3.0])
    assert concordance(x, x) == pytest.approx(1.0)
    assert concordance(x, x + 1) == pytest.approx(4 / 7)  # 2(2/3) / (2/3 + 2/3 + 1)
    assert concordance(x, np.full(3, 2.0)) == 0.0  # constant predictions
    assert concordance(np.full(3, 2.0), x) == 0.0  # constant targets
    assert concordance(np.full(3, 2.0), np.full(3, 5.0)) == 0.0  # both constant, different
    assert concordance(np.full(3, 0.1), np.full(3, 0.1)) == 1.0  # identical constants
    assert concordance(-(x - 2), x - 2) == pytest.approx(-1.0)  # mirrored about a common mean


def test_targets_mse_ccc_and_the_mer_metric_equal_todays_score():
    rng = np.random.default_rng(5)
    n = 300
    y_true, y_pred = random_case(rng, 6, n)
    tv = rng.uniform(-5, 5, n)
    tv[::7] = np.nan  # clips without valence are not scored on it
    pv = np.clip(tv + rng.normal(size=n), -5, 5)
    pv[::7] = rng.uniform(-5, 5, len(pv[::7]))
    m = all_metrics(y_true, y_pred, classes=list(EMOTIONS), true_targets={"valence": tv},
                    pred_targets={"valence": pv, "arousal": pv})  # extra predictions: ignored
    s = score(y_true, y_pred, tv, pv)
    assert m["f1"] == pytest.approx(s.f1, abs=1e-12)
    assert m["wa"] == pytest.approx(s.accuracy, abs=1e-12)
    assert m["targets"]["valence"]["mse"] == pytest.approx(s.mse, abs=1e-12)
    assert m["targets"]["valence"]["n"] == s.n_valence
    assert m["mer"] == pytest.approx(s.metric, abs=1e-12)
    ok = np.isfinite(tv)
    assert m["targets"]["valence"]["ccc"] == pytest.approx(concordance(tv[ok], pv[ok]))
    names = all_metrics(np.asarray(EMOTIONS, object)[y_true], np.asarray(EMOTIONS, object)[y_pred],
                        classes=list(EMOTIONS))
    assert names["f1"] == pytest.approx(score(np.asarray(EMOTIONS, object)[y_true],
                                              np.asarray(EMOTIONS, object)[y_pred]).f1, abs=1e-12)
    # several targets; one with no scored clip has None and the MER metric needs valence
    m = all_metrics(y_true, y_pred, classes=6,
                    true_targets={"arousal": tv, "dominance": np.full(n, np.nan)},
                    pred_targets={"arousal": pv, "dominance": pv})
    assert m["targets"]["dominance"] == {"n": 0, "mse": None, "ccc": None}
    assert "mer" not in m
    assert set(scalar_metrics(m)) >= {"mse:arousal", "ccc:arousal", "mse:dominance"}


def test_scalar_metric_names_and_direction():
    m = all_metrics([0, 1, 1], [0, 1, 0], classes=["x", "y"], proba=[[.9, .1], [.2, .8],
                                                                          [.6, .4]],
                    true_targets={"valence": [0.0, 1.0, 2.0]},
                    pred_targets={"valence": [0.0, 1.0, 1.0]})
    assert list(scalar_metrics(m)) == ["ua", "wa", "macro_f1", "f1", "recall:x", "recall:y",
                                       "f1:x", "f1:y", "mse:valence", "ccc:valence", "mer",
                                       "ece", "brier", "nll"]
    assert [higher_is_better(k) for k in ("ua", "f1:x", "ccc:valence", "mer")] == [True] * 4
    assert [higher_is_better(k) for k in ("mse:valence", "ece", "brier", "nll")] == [False] * 4


def test_folds_pooled_and_mean_std():
    rng = np.random.default_rng(9)
    n = 240
    y_true, y_pred = random_case(rng, 4, n)
    folds = np.repeat([1, 2, 3, 10], n // 4)
    y_true[folds == 10] = np.where(y_true[folds == 10] == 3, 0, y_true[folds == 10])  # no class 3
    tv, pv = rng.normal(size=n), rng.normal(size=n)
    out = metrics_by_fold(y_true, y_pred, folds=folds, classes=4, true_targets={"valence": tv},
                          pred_targets={"valence": pv})
    assert out["pooled"] == all_metrics(y_true, y_pred, classes=4, true_targets={"valence": tv},
                                        pred_targets={"valence": pv})
    assert list(out["folds"]) == ["1", "2", "3", "10"] and out["n_folds"] == 4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        uas = [balanced_accuracy_score(y_true[folds == f], y_pred[folds == f])
               for f in (1, 2, 3, 10)]
    assert out["mean"]["ua"] == pytest.approx(np.mean(uas))
    assert out["std"]["ua"] == pytest.approx(np.std(uas))  # population (ddof 0)
    assert out["folds"]["10"]["per_class"]["3"]["recall"] is None
    assert out["n_folds_defined"]["recall:3"] == 3  # the fold without class 3 left out
    with pytest.raises(DataError, match="folds must have shape"):
        metrics_by_fold(y_true, y_pred, folds=folds[:-1], classes=4)
    holes = folds.astype(object)
    holes[5] = None
    with pytest.raises(DataError, match=r"folds is missing for 1 clip\(s\) \(first at position 5\)"):
        metrics_by_fold(y_true, y_pred, folds=holes, classes=4)
    with pytest.raises(DataError, match="folds is missing"):
        metrics_by_fold(y_true, y_pred, folds=np.where(folds == 10, np.nan, folds), classes=4)


@pytest.mark.parametrize("call,error,match", [
    (lambda: all_metrics([0, 1], [0, 1], classes=1), ParameterError, "classes must be at least 2"),
    (lambda: all_metrics([0, 1], [0, 1], classes=["a"]), ParameterError, "at least 2 classes"),
    (lambda: all_metrics([0, 1], [0, 1], classes=["a", "a"]), ParameterError, "distinct"),
    (lambda: all_metrics([0, 1], [0, 1], classes="ab"), ParameterError, "classes must be"),
    (lambda: all_metrics([], [], classes=2), DataError, "y_true is empty"),
    (lambda: all_metrics([0, 1, 2], [0, 1], classes=3), DataError, "same length; got 3 and 2"),
    (lambda: all_metrics([0, 5], [0, 1], classes=3), DataError, r"y_true holds 1 value\(s\) outside"),
    (lambda: all_metrics([0, 1], [0, -1], classes=3), DataError, "y_pred holds"),
    (lambda: all_metrics([0.0, 1.0], [0, 1], classes=2), DataError, "integer class indices"),
    (lambda: all_metrics(["a", "z"], [0, 1], classes=["a", "b"]), DataError, r"not classes \(z\)"),
    (lambda: all_metrics([[0, 1]], [0, 1], classes=2), DataError, "1-d array"),
    (lambda: all_metrics([0, 1], classes=2), DataError, "give y_pred"),
    (lambda: all_metrics([0, 1], classes=2, proba=[[np.nan, 1], [0, 1]]), DataError,
     "proba holds NaN"),
    (lambda: all_metrics([0, 1], classes=2, proba=[[0.5, 0.4], [0, 1]]), DataError,
     "rows must sum to 1"),
    (lambda: all_metrics([0, 1], classes=2, proba=[[2.0, -1.0], [0, 1]]), DataError, "logits"),
    (lambda: all_metrics([0, 1], classes=2, proba=[[1.0, 0.0, 0.0]]), DataError, "shape"),
    (lambda: all_metrics([0, 1], [0, 1], classes=2, true_targets={"valence": [1, 2]}),
     DataError, "pred_targets has no 'valence'"),
    (lambda: all_metrics([0, 1], [0, 1], classes=2, true_targets={"valence": [1, 2]},
                         pred_targets={"valence": [1, np.nan]}), DataError, "NaN or infinite"),
    (lambda: all_metrics([0, 1], [0, 1], classes=2, true_targets={"valence": [1, 2, 3]},
                         pred_targets={"valence": [1, 2, 3]}), DataError, r"shape \(2,\)"),
    (lambda: all_metrics([0, 1], [0, 1], classes=2, true_targets={"valence": [1, np.inf]},
                         pred_targets={"valence": [1, 2]}), DataError, "infinite"),
])
def test_hostile_inputs_are_refused_in_one_line(call, error, match):
    with pytest.raises(error, match=match) as info:
        call()
    assert "\n" not in str(info.value)


def test_class_names_helper():
    assert class_names(3) == ("0", "1", "2")
    assert class_names(("neg", "pos")) == ("neg", "pos")


@pytest.mark.slow
def test_a_runs_held_out_predictions_give_its_metrics(stores, tmp_path):
    """all_metrics on a run's oof_predictions.csv (names, rounded probabilities) reproduces the
    run's metrics.json: the format the integration will read."""
    import csv

    from mer_heads import fit_run
    from mer_heads.stats import bootstrap_metrics

    run = fit_run([stores["audio"], stores["text"]], tmp_path / "run", model="logreg",
                  folds=3, figures=False).run_dir
    rows = list(csv.DictReader((run / "oof_predictions.csv").open()))
    cv = json.loads((run / "metrics.json").read_text())["cv"]
    proba = np.array([[float(r[f"p_{e}"]) for e in EMOTIONS] for r in rows])
    tv = np.array([float(r["valence"]) if r["valence"] else np.nan for r in rows])
    pv = np.array([float(r["pred_valence"]) for r in rows])
    kwargs = dict(classes=list(EMOTIONS), proba=proba, true_targets={"valence": tv},
                  pred_targets={"valence": pv})
    m = all_metrics([r["discrete"] for r in rows], [r["pred_discrete"] for r in rows], **kwargs)
    assert m["f1"] == pytest.approx(cv["f1"], abs=1e-12)
    assert m["wa"] == pytest.approx(cv["accuracy"], abs=1e-12)
    assert m["targets"]["valence"]["mse"] == pytest.approx(cv["mse"], abs=1e-5)  # 6 decimals
    folds = metrics_by_fold([r["discrete"] for r in rows], [r["pred_discrete"] for r in rows],
                            folds=[r["fold"] for r in rows], **kwargs)
    assert folds["n_folds"] == 3 and folds["pooled"] == m
    ci = bootstrap_metrics([r["discrete"] for r in rows], [r["pred_discrete"] for r in rows],
                           **kwargs, n_resamples=200)["metrics"]["f1"]
    assert ci["low"] <= m["f1"] <= ci["high"]
