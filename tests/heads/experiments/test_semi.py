"""Semi-supervised training: selection rules, no leakage, determinism, the CLI, the simulation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mer_features import EMOTIONS
from mer_heads.cli import main
from mer_heads.data.dataset import load_dataset
from mer_heads.errors import DataError
from mer_heads.protocol import CrossValidatedHead
from mer_heads.experiments.semi import (SemiSettings, fit_semi, hide_labels, select_class_quantile,
                            select_threshold, select_weak_reinforce, under_represented)
from ..synthetic_stores import FAST, clip_labels, write_store

PARAMS = {**FAST, "epochs": 30, "lr": 3e-3}
FIT_ARGS = ["--folds", "3", "--epochs", "30", "--lr", "0.003", "--hidden", "16", "--batch-size",
            "32", "--precision", "fp32"]


@pytest.fixture(scope="module")
def semi_stores(tmp_path_factory) -> dict[str, Path]:
    """Audio and text stores of 200 clips: the first 120 labelled, the other 80 not."""
    folder = tmp_path_factory.mktemp("semi-stores")
    names, y, valence = clip_labels(200, seed=3)
    unlabelled = {n: "" for n in names[120:]}
    return {key: write_store(folder / f"{key}.h5", key, names, y, valence, dim=dim, frame_dim=2,
                             seed=30 + j, labels_override=unlabelled)
            for j, (key, dim) in enumerate((("audio", 12), ("text", 10)))}


@pytest.fixture(scope="module")
def data(semi_stores):
    d = load_dataset([semi_stores["audio"], semi_stores["text"]])
    d.valence[d.labels < 0] = np.nan
    return d


def _proba(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, np.float64)


# ---------------------------------------------------------------- selection rules


def test_threshold_keeps_confident_clips_with_their_top_class():
    proba = _proba([[0.9, 0.1, 0, 0, 0, 0], [0.5, 0.5, 0, 0, 0, 0], [0, 0, 0, 0, 0.2, 0.8],
                    [0, 0, 0.79, 0.21, 0, 0]])
    assert select_threshold(proba, 0.8).tolist() == [0, -1, 5, -1]
    assert select_threshold(proba, 1.0).tolist() == [-1, -1, -1, -1]
    assert select_threshold(proba, 0.5).tolist() == [0, 0, 5, 2]


def test_class_quantile_thresholds_each_predicted_class_by_its_own_quantile():
    # class 0 confidences 0.9, 0.7, 0.5, 0.3 (median 0.6); class 1 confidences 0.4, 0.35
    conf0 = [0.9, 0.7, 0.5, 0.3]
    rows = [[c, (1 - c) / 5, (1 - c) / 5, (1 - c) / 5, (1 - c) / 5, (1 - c) / 5] for c in conf0]
    rows += [[0.3, 0.4, 0.1, 0.1, 0.05, 0.05], [0.25, 0.35, 0.2, 0.1, 0.05, 0.05]]
    proba = _proba(rows)
    assert select_class_quantile(proba, 0.5).tolist() == [0, 0, -1, -1, 1, -1]
    # Q = 0 keeps every clip with its predicted class; Q = 1 the most confident of each class
    assert select_class_quantile(proba, 0.0).tolist() == [0, 0, 0, 0, 1, 1]
    assert select_class_quantile(proba, 1.0).tolist() == [0, -1, -1, -1, 1, -1]
    # a low-confidence class still gets its top clips: the threshold is per class
    assert select_threshold(proba, 0.6).tolist()[4:] == [-1, -1]


def test_weak_reinforce_labels_only_classes_below_the_mean_frequency():
    counts = np.array([871, 822, 689, 383, 462, 146])          # MER 2023's train/val classes
    assert [EMOTIONS[c] for c in np.flatnonzero(under_represented(counts))] == \
        ["sad", "worried", "surprise"]
    eye = np.eye(6) * 0.9 + 0.1 / 6
    proba = np.concatenate([eye, eye * 0.5 + 0.5 / 6])            # confident, then unsure
    assert select_threshold(proba, 0.8).tolist() == [0, 1, 2, 3, 4, 5] + [-1] * 6
    assert select_weak_reinforce(proba, 0.8, counts).tolist() == \
        [-1, -1, -1, 3, 4, 5] + [-1] * 6


# ---------------------------------------------------------------- fitting


@pytest.fixture(scope="module")
def fitted(data):
    return fit_semi(data, SemiSettings("class-quantile", rounds=2, quantile=0.5), PARAMS)


@pytest.mark.slow
def test_pseudo_labels_only_join_training_parts_and_keep_the_held_out_folds(fitted, data):
    result = fitted
    pool = set(result.pool)
    assert pool == set(data.names[120:]) and len(result.rounds) == 3
    supervised_names = None
    for r, labels in enumerate(result.selected, start=1):
        assert labels.shape == (3, 80) and (labels >= 0).any()
        assert result.rounds[r]["added_total"] == pytest.approx((labels >= 0).sum(1).mean())
    est = result.estimator
    # training clips (and so every held-out fold) are the labelled clips only
    assert set(est.train_names_).isdisjoint(pool)
    assert len(est.train_names_) == 120
    assert (est.n_pseudo_ == (result.selected[-1] >= 0).sum(1)).all()
    supervised = CrossValidatedHead(**PARAMS).fit(data)
    supervised_names = supervised.train_names_
    assert est.train_names_ == supervised_names
    assert (est.fold_ == supervised.fold_).all()
    # round 0 is exactly the plain supervised fit
    assert result.rounds[0]["cv"] == supervised.cv_scores_.to_json()
    assert result.rounds[0]["delta_metric"] == 0


def test_fit_refuses_pseudo_labels_on_labelled_clips(data):
    with pytest.raises(DataError, match="pseudo_rows must be unlabelled clips"):
        CrossValidatedHead(**PARAMS).fit(data, pseudo_rows=np.array([0]),
                                         pseudo_labels=np.zeros((3, 1), np.int64))


@pytest.mark.slow
def test_hidden_labels_are_removed_before_folds_and_never_used_for_training(data):
    labelled = data.subset(np.arange(120))
    hidden_data, hidden = hide_labels(labelled, np.ones(120, bool), 0.6, seed=0)
    counts = np.bincount(labelled.labels, minlength=6)
    kept = np.bincount(hidden_data.labels[hidden_data.labels >= 0], minlength=6)
    assert (np.abs(kept - counts * 0.4) <= 1).all() and (kept >= 1).all()   # stratified
    assert np.isnan(hidden_data.valence[hidden_data.labels < 0]).all()
    settings = SemiSettings("class-quantile", rounds=1, quantile=0.5, hide_labels=0.6)
    a = fit_semi(hidden_data, settings, PARAMS, hidden=hidden)
    assert set(a.pool) == set(hidden.names)
    assert set(a.estimator.train_names_).isdisjoint(hidden.names)
    # other "true" labels for the hidden clips change nothing but the accuracy
    wrong = replace(hidden, labels=(hidden.labels + 1) % 6)
    b = fit_semi(hidden_data, settings, PARAMS, hidden=wrong)
    assert [r["cv"] for r in a.rounds] == [r["cv"] for r in b.rounds]
    assert all((x == y).all() for x, y in zip(a.selected, b.selected))
    acc_a, acc_b = a.rounds[1]["pseudo_accuracy"], b.rounds[1]["pseudo_accuracy"]
    assert acc_a["assigned"] == acc_b["assigned"] > 0 and acc_a["overall"] != acc_b["overall"]
    labels = a.selected[0]
    truth = hidden.labels[[hidden.names.index(n) for n in a.pool]]
    assigned = labels >= 0
    assert acc_a["overall"] == pytest.approx((labels == truth)[assigned].mean())


@pytest.mark.slow
def test_chunked_pool_prediction_equals_unchunked(fitted, data):
    est = fitted.estimator
    pool = np.arange(120, 200)
    whole = est.predict_fold_proba(data, rows=pool, chunk=10_000)
    chunked = est.predict_fold_proba(data, rows=pool, chunk=7)
    assert whole.shape == (3, 80, 6)
    np.testing.assert_allclose(chunked, whole, atol=1e-6)
    # the fold predictions average to the ensemble prediction
    proba, _, _ = est.predict_proba(data.subset(pool))
    np.testing.assert_allclose(whole.mean(0), proba, atol=1e-5)


def test_settings_and_pool_errors(data):
    for bad, match in (({"strategy": "co-training"}, r"strategy must be one of none, threshold"),
                       ({"threshold": 0.0}, r"threshold must be in \(0, 1\]"),
                       ({"threshold": 1.5}, r"threshold must be in \(0, 1\]"),
                       ({"quantile": -0.1}, r"quantile must be in \[0, 1\]"),
                       ({"hide_labels": 1.0}, r"labels to hide must be in \(0, 1\)"),
                       ({"rounds": 0}, r"rounds must be an integer >= 1"),
                       ({"teacher": "oracle"}, r"teacher must be one of fold, ensemble")):
        with pytest.raises(DataError, match=match):
            SemiSettings(**{"strategy": "threshold", **bad}).check()
    labelled = data.subset(np.arange(120))
    with pytest.raises(DataError, match=r"needs unlabelled clips.*--hide-labels"):
        fit_semi(labelled, SemiSettings("threshold"), PARAMS)
    # `none` needs no pool: it is the supervised run
    assert len(fit_semi(labelled, SemiSettings("none"), PARAMS).rounds) == 1


# ---------------------------------------------------------------- command line


def _features(semi_stores) -> list[str]:
    return ["--features", str(semi_stores["audio"]), "--features", str(semi_stores["text"])]


@pytest.mark.slow
def test_cli_end_to_end_is_deterministic_and_reports_rounds(semi_stores, tmp_path, capsys):
    args = [*_features(semi_stores), *FIT_ARGS, "--semi", "weak-reinforce", "--semi-rounds", "2",
            "--semi-threshold", "0.5"]
    assert main(["fit", *args, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "semi-supervised: weak-reinforce" in printed and "delta" in printed
    assert main(["fit", *args, "--out", str(tmp_path / "b")]) == 0
    a = (tmp_path / "a" / "metrics.json").read_bytes()
    assert a == (tmp_path / "b" / "metrics.json").read_bytes()
    semi = json.loads(a)["semi"]
    assert semi["settings"]["strategy"] == "weak-reinforce" and semi["pool"] == 80
    assert [r["round"] for r in semi["rounds"]] == [0, 1, 2]
    classes = json.loads(a)["clips"]["classes"]
    weak = under_represented(np.array([classes[e] for e in EMOTIONS]))
    assert not weak.all() and weak.any()
    for r in semi["rounds"][1:]:
        assert r["added_total"] > 0
        assert all(r["added"][e] == 0 for e, w in zip(EMOTIONS, weak) if not w)
    report = (tmp_path / "a" / "report.md").read_text()
    assert "## Semi-supervised rounds" in report
    # the run predicts like any other
    assert main(["predict", "--run", str(tmp_path / "a"), "--out", str(tmp_path / "p.csv")]) == 0
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 201


@pytest.mark.slow
def test_cli_hide_labels_reports_pseudo_label_accuracy(semi_stores, tmp_path, capsys):
    out = tmp_path / "sim"
    assert main(["fit", *_features(semi_stores), *FIT_ARGS, "--out", str(out), "--semi",
                 "class-quantile", "--semi-quantile", "0.5", "--hide-labels", "0.5"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # 61 of the 120 labels hidden (stratified, rounded per class); the 80 clips that never had
    # a label are not in the pool: only hidden clips are, so every pseudo-label can be scored
    assert metrics["clips"]["labelled"] == metrics["clips"]["train"] == 59
    semi = metrics["semi"]
    assert semi["pool"] == 61 and semi["settings"]["hide_labels"] == 0.5
    acc = semi["rounds"][1]["pseudo_accuracy"]
    assert acc["assigned"] > 0 and 0 <= acc["overall"] <= 1 and 0 <= acc["teacher"] <= 1
    assert set(acc["per_class"]) == set(EMOTIONS)
    assert "pseudo-label accuracy" in (out / "report.md").read_text()
    assert "PL acc" in capsys.readouterr().out


def test_cli_semi_errors_are_clear(semi_stores, tmp_path, capsys):
    base = ["fit", *_features(semi_stores), *FIT_ARGS, "--out", str(tmp_path / "x")]
    for argv, words in (
            ([*base, "--semi", "mixmatch"],
             "strategy must be one of none, threshold, class-quantile, weak-reinforce"),
            ([*base, "--semi", "threshold", "--semi-threshold", "1.2"], "(0, 1]"),
            ([*base, "--hide-labels", "0"], "--hide-labels")):
        with pytest.raises(SystemExit) as exit_:  # a wrong command line: exit 2, before any work
            main(argv)
        assert exit_.value.code == 2 and words in capsys.readouterr().err
    names, y, valence = clip_labels(40)
    only_labelled = write_store(tmp_path / "l.h5", "audio", names, y, valence, dim=4,
                                frame_dim=2, seed=0)
    assert main(["fit", "--features", str(only_labelled), *FIT_ARGS, "--out",
                 str(tmp_path / "y"), "--semi", "threshold"]) == 1
    assert "needs unlabelled clips" in capsys.readouterr().err


def test_scikit_learn_heads_learn_pseudo_labels_too(data):
    result = fit_semi(data, SemiSettings("class-quantile", quantile=0.5),
                      {**PARAMS, "model": "logreg"})
    est = result.estimator
    assert (est.n_pseudo_ == (result.selected[0] >= 0).sum(1)).all() and est.n_pseudo_.min() > 0
    pool = np.arange(120, 200)
    folds = est.predict_fold_proba(data, rows=pool, chunk=11)
    proba, _, _ = est.predict_proba(data.subset(pool))
    np.testing.assert_allclose(folds.mean(0), proba, atol=1e-9)
