"""mer_heads.stats: bootstrap intervals, paired comparisons and calibration, checked against
independent computations (scipy.stats.bootstrap on the same resamples, plain Python loops over
the documented draws, scikit-learn, hand computations), and docs/statistics.md's examples."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import balanced_accuracy_score, f1_score, log_loss

from mer_heads.errors import DataError, ParameterError
from mer_heads.metrics import all_metrics, concordance, scalar_metrics, scoring_inputs
from mer_heads.stats import (Predictions, adjust_p_values, apply_temperature,
                             bootstrap_metrics, brier_score, calibration_metrics, compare_pair,
                             compare_systems, expected_calibration_error, fit_temperature,
                             reliability, reliability_figure)
from mer_heads.stats.bootstrap import Design, resampled_sums
from mer_heads.stats.compare import TIE_TOLERANCE, permutation_rng
from mer_heads.stats.sufficient import Layout, unit_sums

ROOT = Path(__file__).resolve().parents[2]


def ua(t, p):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return balanced_accuracy_score(t, p)


def weighted_f1(t, p, k):
    return f1_score(t, p, labels=list(range(k)), average="weighted", zero_division=0)


def system(rng, y_true, k, skill):
    """Predictions right with probability ``skill``, else a random class, and probabilities."""
    n = len(y_true)
    pred = np.where(rng.random(n) < skill, y_true, rng.integers(0, k, n))
    logits = rng.normal(size=(n, k)) + 2.5 * np.eye(k)[pred]
    proba = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return pred, proba


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(42)
    n, k = 120, 4
    y_true = rng.integers(0, k, n)
    a, pa = system(rng, y_true, k, 0.55)
    b, pb = system(rng, y_true, k, 0.65)
    tv = rng.normal(size=n)
    va, vb = tv + rng.normal(scale=0.8, size=n), tv + rng.normal(scale=0.6, size=n)
    groups = np.array([f"spk{g:02d}" for g in rng.integers(0, 15, n)])
    return dict(n=n, k=k, y_true=y_true, a=a, b=b, pa=pa, pb=pb, tv=tv, va=va, vb=vb,
                groups=groups)


# ---------------------------------------------------------------------------------------------
# Intervals of one system


@pytest.mark.slow
@pytest.mark.parametrize("method", ["percentile", "BCa"])
def test_clip_intervals_equal_scipy_bootstrap_on_the_same_resamples(case, method):
    y, a, n, k = case["y_true"], case["a"], case["n"], case["k"]
    tv, va = case["tv"], case["va"]
    got = bootstrap_metrics(y, a, classes=k, true_targets={"valence": tv},
                            pred_targets={"valence": va}, n_resamples=400, seed=7,
                            method=method.lower())
    assert got["unit"] == "clip" and got["n_units"] == n and got["n_resamples"] == 400
    independent = {  # scikit-learn and numpy on the resampled clips, one resample at a time
        "ua": lambda i: ua(y[i], a[i]),
        "f1": lambda i: weighted_f1(y[i], a[i], k),
        "mse:valence": lambda i: np.mean((tv[i] - va[i]) ** 2),
        "ccc:valence": lambda i: concordance(tv[i], va[i]),
    }
    for name, statistic in independent.items():
        res = sps.bootstrap((np.arange(n),), statistic, vectorized=False, n_resamples=400,
                            method=method, rng=np.random.default_rng(7))
        ci = got["metrics"][name]
        assert ci["low"] == pytest.approx(res.confidence_interval.low, rel=1e-9, abs=1e-12), name
        assert ci["high"] == pytest.approx(res.confidence_interval.high, rel=1e-9,
                                           abs=1e-12), name
        assert ci["estimate"] == pytest.approx(statistic(np.arange(n)), abs=1e-12)


def test_estimates_are_all_metrics_values(case):
    y, k = case["y_true"], case["k"]
    kwargs = dict(classes=k, proba=case["pa"], true_targets={"valence": case["tv"]},
                  pred_targets={"valence": case["va"]})
    want = scalar_metrics(all_metrics(y, case["a"], **kwargs))
    got = bootstrap_metrics(y, case["a"], **kwargs, n_resamples=20)["metrics"]
    assert list(got) == list(want)
    for name, value in want.items():
        assert got[name]["estimate"] == pytest.approx(value, abs=1e-12), name
        assert got[name]["low"] <= got[name]["estimate"] + 1e-12 or name in ("ece", "nll")


@pytest.mark.slow
def test_group_intervals_equal_a_plain_cluster_bootstrap_loop(case):
    y, a, k, groups = case["y_true"], case["a"], case["k"], case["groups"]
    got = bootstrap_metrics(y, a, classes=k, groups=groups, n_resamples=300, seed=3)
    assert got["unit"] == "group" and got["n_units"] == 15
    names = sorted(set(groups))  # groups are numbered in sorted order
    members = [np.flatnonzero(groups == g) for g in names]
    draws = np.random.default_rng(3).integers(0, len(names), (300, len(names)))
    values = {"ua": [], "f1": []}
    for row in draws:
        rows = np.concatenate([members[g] for g in row])
        values["ua"].append(ua(y[rows], a[rows]))
        values["f1"].append(weighted_f1(y[rows], a[rows], k))
    for name, v in values.items():
        low, high = np.quantile(v, [0.025, 0.975])
        assert got["metrics"][name]["low"] == pytest.approx(low, abs=1e-12)
        assert got["metrics"][name]["high"] == pytest.approx(high, abs=1e-12)


def test_group_bootstrap_resamples_whole_groups():
    # 20 speakers x 10 clips; all clips of a speaker share label and prediction, so the clips
    # carry only 20 independent outcomes: the group interval must be much wider.
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(20), 10)
    y = np.repeat(rng.integers(0, 3, 20), 10)
    pred = np.where(np.repeat(rng.random(20) < 0.6, 10), y, (y + 1) % 3)
    clip = bootstrap_metrics(y, pred, classes=3, n_resamples=1000, seed=1)["metrics"]["wa"]
    group = bootstrap_metrics(y, pred, classes=3, groups=groups, n_resamples=1000,
                              seed=1)["metrics"]["wa"]
    assert group["estimate"] == clip["estimate"]
    assert group["high"] - group["low"] > 2 * (clip["high"] - clip["low"])
    # Groups of 1, 3, 9 and 27 clips, each group its own class: in every resample a class's
    # clip count is a whole number of its group's clips.
    sizes = [1, 3, 9, 27]
    y = np.repeat(np.arange(4), sizes)
    data = scoring_inputs(y, y, classes=4)
    design = Design.of(len(y), groups=y.astype(str))
    layout = Layout.of(data, None)
    rows = unit_sums(layout.rows(data), design.units, design.n_units)
    sums = resampled_sums(rows, np.random.default_rng(0), 500, design)
    support = sums[:, :16].reshape(-1, 4, 4).sum(axis=2)
    assert (support.sum(axis=1) > 0).all()
    for c, size in enumerate(sizes):
        assert np.array_equal(support[:, c] % size, np.zeros(500))
    assert set(np.unique(support[:, 3])) <= {0, 27, 54, 81, 108}
    # seen from outside: a class is missing from a resample when its one group is not drawn,
    # which happens in (3/4)^4 = 32% of group resamples and almost never for the clips
    out = bootstrap_metrics(y, y, classes=4, groups=y, n_resamples=2000, seed=0)["metrics"]
    assert abs(out["recall:3"]["n_undefined"] / 2000 - 0.75 ** 4) < 0.04
    clips = bootstrap_metrics(y, y, classes=4, n_resamples=2000, seed=0)["metrics"]
    assert clips["recall:3"]["n_undefined"] == 0


def test_strata_keep_each_stratum_size_and_hold_whole_groups():
    y = np.array([0] * 30 + [1] * 70)
    strata = np.array(["fold1"] * 30 + ["fold2"] * 70)
    data = scoring_inputs(y, y, classes=2)
    design = Design.of(100, strata=strata)
    layout = Layout.of(data, None)
    sums = resampled_sums(layout.rows(data), np.random.default_rng(0), 200, design)
    support = sums[:, :4].reshape(-1, 2, 2).sum(axis=2)
    assert (support == [30, 70]).all()  # every resample keeps 30 clips of fold1, 70 of fold2
    free = resampled_sums(layout.rows(data), np.random.default_rng(0), 200,
                          Design.of(100))[:, :4].reshape(-1, 2, 2).sum(axis=2)
    assert free[:, 0].std() > 1  # without strata the split varies
    groups = np.arange(100) // 10
    out = bootstrap_metrics(y, y, classes=2, groups=groups, strata=strata, n_resamples=50)
    assert out["n_units"] == 10 and out["n_strata"] == 2
    bad_strata = strata.copy()
    bad_strata[35] = "fold1"  # group 3 now spans both strata
    with pytest.raises(DataError, match=r"strata must hold whole groups; 1 group\(s\) lie in "
                                        r"several strata \(3\)"):
        bootstrap_metrics(y, y, classes=2, groups=groups, strata=bad_strata)


def test_same_seed_same_intervals_other_seed_other_intervals(case):
    args = (case["y_true"], case["a"])
    one = bootstrap_metrics(*args, classes=4, n_resamples=200, seed=11)
    assert one == bootstrap_metrics(*args, classes=4, n_resamples=200, seed=11)
    assert one != bootstrap_metrics(*args, classes=4, n_resamples=200, seed=12)


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(n_resamples=0), ParameterError, "n_resamples must be an integer >= 1; got 0"),
    (dict(n_resamples=2.5), ParameterError, "n_resamples must be an integer"),
    (dict(confidence=1.5), ParameterError, "confidence must be a number in"),
    (dict(seed=-1), ParameterError, "seed must be an integer >= 0"),
    (dict(seed=None), ParameterError, "seed must be an integer >= 0"),
    (dict(method="basic"), ParameterError, "method must be one of percentile, bca"),
    (dict(groups=["a"] * 6), DataError, "at least 2 groups; got 1"),
    (dict(groups=["a", "b", None, "a", "b", "a"]), DataError, "groups is missing for 1 clip"),
    (dict(groups=["a", "b"]), DataError, r"groups must have shape \(6,\)"),
    (dict(strata=["x"] * 5), DataError, r"strata must have shape \(6,\)"),
    (dict(n_bins=0, proba=np.full((6, 2), 0.5)), ParameterError, "n_bins must be"),
])
def test_bootstrap_parameters_are_checked(kwargs, error, match):
    with pytest.raises(error, match=match) as info:
        bootstrap_metrics([0, 1, 0, 1, 0, 1], [0, 1, 1, 1, 0, 0], classes=2, **kwargs)
    assert "\n" not in str(info.value)


def test_one_clip_and_empty_inputs_are_refused():
    with pytest.raises(DataError, match="at least 2 clips; got 1"):
        bootstrap_metrics([0], [0], classes=2)
    with pytest.raises(DataError, match="y_true is empty"):
        bootstrap_metrics([], [], classes=2)


# ---------------------------------------------------------------------------------------------
# Paired comparisons


def permutation_loop(y, a, b, units, n_units, metric, n_permutations, seed):
    """The paired permutation p-value, one permutation at a time, from the documented draws."""
    d = metric(y, b) - metric(y, a)
    width = 4 * -(-n_units // 32)
    drawn = permutation_rng(seed).integers(0, 256, (n_permutations, width), dtype=np.uint8)
    flips = np.unpackbits(drawn, axis=1, count=n_units, bitorder="little")
    extreme = 0
    for row in flips:
        swap = row[units] == 1
        a2, b2 = np.where(swap, b, a), np.where(swap, a, b)
        if abs(metric(y, b2) - metric(y, a2)) >= abs(d) - TIE_TOLERANCE * max(1, abs(d)):
            extreme += 1
    return (1 + extreme) / (1 + n_permutations)


@pytest.mark.slow
def test_permutation_p_values_equal_a_plain_loop(case):
    y, a, b, k, n = case["y_true"], case["a"], case["b"], case["k"], case["n"]
    out = compare_pair(y, Predictions(a), Predictions(b), classes=k, n_resamples=50,
                       n_permutations=300, seed=5)
    assert out["n_permutations"] == 300 and out["seed"] == 5
    for name, metric in (("ua", ua), ("f1", lambda t, p: weighted_f1(t, p, k))):
        want = permutation_loop(y, a, b, np.arange(n), n, metric, 300, 5)
        assert out["metrics"][name]["p_value"] == want, name
        assert out["metrics"][name]["delta"] == pytest.approx(metric(y, b) - metric(y, a))
    # groups: a speaker's clips are swapped together
    groups = case["groups"]
    names = sorted(set(groups))
    units = np.array([names.index(g) for g in groups])
    out = compare_pair(y, Predictions(a), Predictions(b), classes=k, groups=groups,
                       n_resamples=50, n_permutations=300, seed=6)
    assert out["metrics"]["ua"]["p_value"] == permutation_loop(y, a, b, units, len(names), ua,
                                                               300, 6)


@pytest.mark.slow
def test_permutation_p_value_of_a_continuous_target_equals_a_plain_loop(case):
    y, tv, va, vb = case["y_true"], case["tv"], case["va"], case["vb"]
    out = compare_pair(y, Predictions(case["a"], targets={"valence": va}),
                       Predictions(case["a"], targets={"valence": vb}), classes=4,
                       true_targets={"valence": tv}, n_resamples=50, n_permutations=200, seed=1)
    for name, metric in (("mse:valence", lambda t, p: np.mean((t - p) ** 2)),
                         ("ccc:valence", concordance)):
        assert out["metrics"][name]["p_value"] == permutation_loop(
            tv, va, vb, np.arange(len(tv)), len(tv), metric, 200, 1), name
    assert out["metrics"]["ua"]["delta"] == 0 and out["metrics"]["ua"]["p_value"] == 1.0


@pytest.mark.slow
def test_paired_bootstrap_interval_equals_a_loop_over_the_same_resamples(case):
    y, a, b, k, n = case["y_true"], case["a"], case["b"], case["k"], case["n"]
    out = compare_pair(y, Predictions(a), Predictions(b), classes=k, n_resamples=300,
                       n_permutations=10, seed=9)
    draws = np.random.default_rng(9).integers(0, n, (300, n))
    deltas = [ua(y[i], b[i]) - ua(y[i], a[i]) for i in draws]
    low, high = np.quantile(deltas, [0.025, 0.975])
    assert out["metrics"]["ua"]["ci"] == pytest.approx([low, high], abs=1e-12)
    assert out["metrics"]["ua"]["a"] == pytest.approx(ua(y, a))
    assert out["metrics"]["ua"]["b"] == pytest.approx(ua(y, b))
    # the same resamples as the single-system bootstrap with that seed
    single = bootstrap_metrics(y, a, classes=k, n_resamples=300, seed=9)["metrics"]["ua"]
    want = np.quantile([ua(y[i], a[i]) for i in draws], [0.025, 0.975])
    assert [single["low"], single["high"]] == pytest.approx(list(want), abs=1e-12)


def test_identical_systems_and_a_clear_winner():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 3, 400)
    same = compare_pair(y, Predictions(y), Predictions(y.copy()), classes=3, n_resamples=100,
                        n_permutations=200)
    assert same["metrics"]["ua"]["delta"] == 0 and same["metrics"]["ua"]["p_value"] == 1.0
    assert same["metrics"]["ua"]["ci"] == [0.0, 0.0]
    noisy = np.where(rng.random(400) < 0.5, y, (y + 1) % 3)
    clear = compare_pair(y, Predictions(noisy), Predictions(y), classes=3, n_resamples=100,
                         n_permutations=200)["metrics"]["wa"]
    assert clear["delta"] > 0.4 and clear["p_value"] == 1 / 201 and clear["ci"][0] > 0.3


def test_several_systems_get_holm_adjusted_p_values(case):
    y, k = case["y_true"], case["k"]
    rng = np.random.default_rng(8)
    c, _ = system(rng, y, k, 0.6)
    systems = {"A": Predictions(case["a"]), "B": Predictions(case["b"]), "C": Predictions(c)}
    out = compare_systems(y, systems, classes=k, n_resamples=100, n_permutations=500, seed=0)
    assert [(x["a"], x["b"]) for x in out["comparisons"]] == [("A", "B"), ("A", "C"),
                                                              ("B", "C")]
    assert out["correction"] == "holm"
    for metric in ("ua", "f1", "recall:0"):
        raw = [x["metrics"][metric]["p_value"] for x in out["comparisons"]]
        adjusted = [x["metrics"][metric]["p_adjusted"] for x in out["comparisons"]]
        assert adjusted == pytest.approx(list(adjust_p_values(raw, "holm")))
        assert all(q >= p for p, q in zip(raw, adjusted))
    pair = compare_pair(y, systems["A"], systems["C"], classes=k, n_resamples=100,
                        n_permutations=500, seed=0)
    assert pair["metrics"]["ua"]["p_value"] == out["comparisons"][1]["metrics"]["ua"]["p_value"]
    versus = compare_systems(y, systems, classes=k, reference="B", n_resamples=20,
                             n_permutations=20, correction="bh")
    assert [(x["a"], x["b"]) for x in versus["comparisons"]] == [("B", "A"), ("B", "C")]


def test_calibration_is_compared_only_when_both_systems_have_probabilities(case):
    y, k = case["y_true"], case["k"]
    both = compare_pair(y, Predictions(proba=case["pa"]), Predictions(proba=case["pb"]),
                        classes=k, n_resamples=50, n_permutations=50)
    assert {"ece", "brier", "nll"} <= set(both["metrics"])
    assert both["metrics"]["ece"]["a"] == pytest.approx(
        expected_calibration_error(y, case["pa"]))
    one = compare_pair(y, Predictions(proba=case["pa"]), Predictions(case["b"]), classes=k,
                       n_resamples=50, n_permutations=50)
    assert "ece" not in one["metrics"]


def test_p_value_corrections_by_hand_and_against_scipy():
    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan])
    # Holm: sorted 0.01, 0.03, 0.04, 0.5 times 4, 3, 2, 1 -> 0.04, 0.09, 0.08 -> 0.09, 0.5
    assert adjust_p_values(p, "holm")[:4] == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert np.isnan(adjust_p_values(p, "holm")[4])
    rng = np.random.default_rng(0)
    q = rng.random(30) ** 3
    assert adjust_p_values(q, "bh") == pytest.approx(sps.false_discovery_control(q))
    assert list(adjust_p_values(q, "none")) == list(q)
    with pytest.raises(ParameterError, match="correction must be one of holm, bh, none"):
        adjust_p_values(q, "bonferroni")
    with pytest.raises(DataError, match=r"p_values must lie in \[0, 1\]"):
        adjust_p_values([0.2, 1.5])


@pytest.mark.parametrize("call,error,match", [
    (lambda y, s: compare_systems(y, {"A": s}, classes=2), DataError, "at least two names"),
    (lambda y, s: compare_systems(y, {"A": s, "B": s}, classes=2, reference="Z"),
     ParameterError, "reference must be one of the systems"),
    (lambda y, s: compare_systems(y, {"A": s, "B": [0, 1]}, classes=2), DataError,
     "system 'B' must be a mer_heads.stats.Predictions"),
    (lambda y, s: compare_systems(y, {"A": s, "B": Predictions([0, 1])}, classes=2), DataError,
     "system 'B': y_true and y_pred must have the same length"),
    (lambda y, s: compare_pair(y, s, s, classes=2, n_permutations=0), ParameterError,
     "n_permutations must be an integer >= 1"),
    (lambda y, s: compare_pair(y, s, s, classes=2, correction="x") if False else
     compare_systems(y, {"A": s, "B": s}, classes=2, correction="x"), ParameterError,
     "correction must be one of"),
])
def test_comparison_inputs_are_checked(call, error, match):
    y = np.array([0, 1, 0, 1])
    with pytest.raises(error, match=match):
        call(y, Predictions(y))


# ---------------------------------------------------------------------------------------------
# Calibration


def dirichlet_case(n, k, seed, sharpen=1.0):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 0.7), size=n)
    y = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)  # y ~ Categorical(p)
    shown = p ** sharpen / (p ** sharpen).sum(axis=1, keepdims=True)
    return y, shown


def test_ece_of_calibrated_and_overconfident_probabilities():
    y, p = dirichlet_case(50_000, 5, 0)
    assert expected_calibration_error(y, p) < 0.01
    y, sharp = dirichlet_case(50_000, 5, 0, sharpen=3.0)
    assert expected_calibration_error(y, sharp) > 0.05
    assert brier_score(y, sharp) > brier_score(y, p)


def test_ece_brier_nll_and_reliability_by_hand():
    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.55, 0.45]])
    y = np.array([0, 1, 1, 1])
    # confidences 0.9 (bin 13: (13/15, 14/15]), 0.8 (bin 11), 0.7 (bin 10), 0.55 (bin 8);
    # right: yes, no, yes, no
    ece = (abs(0.9 - 1) + abs(0.8 - 0) + abs(0.7 - 1) + abs(0.55 - 0)) / 4
    assert expected_calibration_error(y, p) == pytest.approx(ece)
    brier = ((0.1 ** 2 * 2) + (0.8 ** 2 * 2) + (0.3 ** 2 * 2) + (0.55 ** 2 * 2)) / 4
    assert brier_score(y, p) == pytest.approx(brier)
    m = calibration_metrics(y, p)
    assert m["nll"] == pytest.approx(log_loss(y, p))
    r = reliability(y, p)
    assert r["count"][13] == r["count"][11] == r["count"][10] == r["count"][8] == 1
    assert sum(r["count"]) == 4 and r["accuracy"][11] == 0.0 and r["confidence"][8] == 0.55
    assert r["accuracy"][0] is None and len(r["edges"]) == 16 and r["ece"] == pytest.approx(ece)
    # three bins: 0.55 in (1/3, 2/3]; 0.9, 0.8 and 0.7 in (2/3, 1] (mean 0.8, 2 of 3 right)
    three = reliability(y, p, n_bins=3)
    assert three["count"] == [0, 1, 3]
    assert three["ece"] == pytest.approx((0.55 + 3 * abs(0.8 - 2 / 3)) / 4)


def test_multiclass_brier_equals_sklearn_unscaled():
    from sklearn.metrics import brier_score_loss

    y, p = dirichlet_case(500, 4, 1)
    assert brier_score(y, p) == pytest.approx(
        brier_score_loss(y, p, labels=list(range(4)), scale_by_half=False))


@pytest.mark.slow
def test_temperature_scaling_recovers_a_known_temperature():
    rng = np.random.default_rng(4)
    n, k, true_t = 20_000, 6, 2.5
    z = rng.normal(scale=3.0, size=(n, k))
    soft = np.exp(z / true_t) / np.exp(z / true_t).sum(1, keepdims=True)
    y = (rng.random(n)[:, None] > np.cumsum(soft, axis=1)).sum(axis=1)
    proba = np.exp(z) / np.exp(z).sum(1, keepdims=True)  # overconfident by a factor 2.5
    t = fit_temperature(proba, y)
    assert t == pytest.approx(true_t, rel=0.05)
    assert fit_temperature(z, y, logits=True) == pytest.approx(t, rel=1e-3)
    calibrated = apply_temperature(proba, t)
    assert (calibrated.argmax(1) == proba.argmax(1)).all()
    assert calibrated == pytest.approx(apply_temperature(z, t, logits=True), abs=1e-9)
    assert expected_calibration_error(y, calibrated) < 0.3 * expected_calibration_error(y, proba)
    assert apply_temperature(proba, 1.0) == pytest.approx(proba, abs=1e-9)


@pytest.mark.parametrize("call,error,match", [
    (lambda: apply_temperature(np.full((2, 2), 0.5), 0), ParameterError, "temperature must be"),
    (lambda: apply_temperature(np.full((2, 2), 0.5), float("nan")), ParameterError,
     "temperature must be"),
    (lambda: fit_temperature(np.full((2, 2), 0.5), [0, 1], bounds=(2, 1)), ParameterError,
     "bounds must be"),
    (lambda: fit_temperature(np.full((2, 2), 0.5), [0, 2]), DataError, "outside the class"),
    (lambda: fit_temperature(np.full((2, 2), 0.5), [0]), DataError, "same number of clips"),
    (lambda: fit_temperature([[np.nan, 1.0], [0, 1]], [0, 1], logits=True), DataError,
     "NaN or infinite logits"),
    (lambda: expected_calibration_error([0, 1], [[0.5, 0.5], [np.nan, 0.5]]), DataError,
     "proba holds NaN"),
    (lambda: expected_calibration_error([0, 1], np.full((2, 2), 0.5), n_bins=0), ParameterError,
     "n_bins must be"),
    (lambda: reliability([], np.zeros((0, 2))), DataError, "empty"),
])
def test_calibration_inputs_are_checked(call, error, match):
    with pytest.raises(error, match=match):
        call()


@pytest.mark.slow
def test_reliability_figure_is_written(tmp_path):
    y, p = dirichlet_case(2000, 4, 2, sharpen=2.0)
    one = reliability_figure(reliability(y, p), tmp_path / "one.png")
    two = reliability_figure({"raw": reliability(y, p),
                              "calibrated": reliability(y, apply_temperature(
                                  p, fit_temperature(p, y)))}, tmp_path / "two.png",
                             title="two systems")
    for path in (one, two):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000


def test_importing_the_statistics_loads_no_heavy_library():
    code = ("import sys, mer_heads.stats, mer_heads.metrics; print(sorted(m for m in "
            "('scipy', 'sklearn', 'torch', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


# ---------------------------------------------------------------------------------------------
# The statistics page's examples


@pytest.mark.slow
def test_statistics_md_examples_run(tmp_path):
    """The Python blocks run in order, and print what the text blocks after them show."""
    text = (ROOT / "docs" / "statistics.md").read_text(encoding="utf-8")
    worked = text[text.index("## Worked example"):text.index("## Speed")]
    blocks = re.findall(r"^```python\n(.*?)^```", worked, re.M | re.S)
    shown = re.findall(r"^```python\n.*?^```\s*```text\n(.*?)^```", worked, re.M | re.S)
    assert len(blocks) >= 4 and len(shown) == len(blocks), "the worked example lost its parts"
    (tmp_path / "examples.py").write_text("\n".join(blocks), encoding="utf-8")
    done = subprocess.run([sys.executable, "examples.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-4000:]
    assert done.stdout == "".join(shown)
    assert (tmp_path / "reliability.png").stat().st_size > 10_000
