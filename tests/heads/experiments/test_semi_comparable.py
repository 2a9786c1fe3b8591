"""Semi-supervised rounds are comparable with the supervised run (issue 22): a round that adds
no clip is the supervised fit, bit for bit; a round that adds clips trains with the supervised
run's batch size; semi-sweep measures how far training seeds alone move the CV metric and
marks the values whose change is within that spread."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mer_heads import HeadConfig, semi_sweep
from mer_heads.data.dataset import load_dataset
from mer_heads.experiments import semi as semi_module
from mer_heads.experiments.semi import SemiSettings, fit_semi, same_training
from mer_heads.heads.training import auto_batch_size
from mer_heads.protocol import CrossValidatedHead

from ..synthetic_stores import clip_labels, write_store

AUTO = dict(folds=3, epochs=12, hidden=16, precision="fp32", lr=3e-3)
"""A neural head whose batch size is left to the data (the automatic size)."""


@pytest.fixture(scope="module")
def pooled(tmp_path_factory) -> Path:
    """A store of 420 clips, the last 120 unlabelled: 200 labelled training clips per fold,
    enough for the automatic batch size to grow with pseudo-labelled clips."""
    folder = tmp_path_factory.mktemp("semi-comparable")
    names, y, valence = clip_labels(420, seed=5)
    return write_store(folder / "audio.h5", "audio", names, y, valence, dim=8, frame_dim=2,
                       seed=51, labels_override={n: "" for n in names[300:]})


@pytest.fixture(scope="module")
def data(pooled):
    d = load_dataset([pooled])
    d.valence[d.labels < 0] = np.nan
    return d


@pytest.mark.slow
def test_a_round_that_adds_no_clip_is_the_supervised_fit(data, monkeypatch) -> None:
    def nothing(settings, proba, class_counts):
        return np.full(len(proba), -1, np.int64)

    monkeypatch.setattr(semi_module, "select", nothing)
    result = fit_semi(data, SemiSettings("threshold", rounds=2), AUTO)
    supervised = CrossValidatedHead(**AUTO).fit(data.subset(np.flatnonzero(data.labels >= 0)))
    assert [r["added_clips"] for r in result.rounds] == [0, 0, 0]
    est = result.estimator
    assert est is not supervised and (est.n_pseudo_ == 0).all()
    # the same models: the same held-out predictions and scores, and the same predictions of
    # every clip (the pool included), to the last bit
    assert est.oof_proba_.tobytes() == supervised.oof_proba_.tobytes()
    assert est.oof_valence_.tobytes() == supervised.oof_valence_.tobytes()
    assert est.best_epochs_.tolist() == supervised.best_epochs_.tolist()
    proba, valence, _ = est.predict_proba(data)
    proba0, valence0, _ = supervised.predict_proba(data)
    assert proba.tobytes() == proba0.tobytes() and valence.tobytes() == valence0.tobytes()
    assert result.rounds[1]["cv"] == result.rounds[0]["cv"] == supervised.cv_scores_.to_json()
    assert result.rounds[2]["delta_metric"] == 0.0


@pytest.mark.slow
def test_a_round_that_adds_clips_keeps_the_supervised_batch_size(data) -> None:
    params = {**AUTO, "epochs": 100}  # 4 steps per epoch: the size follows the clips
    result = fit_semi(data, SemiSettings("threshold", threshold=0.3), params)
    supervised_rounds = result.rounds[0]
    est = result.estimator
    assert result.rounds[1]["added_clips"] > 0 and est.n_pseudo_.max() > 0
    trained = 200 + int(est.n_pseudo_.max())  # a fold's labelled and pseudo-labelled clips
    # the automatic size would have grown with the pseudo-labelled clips ...
    assert auto_batch_size(trained, epochs=100) > auto_batch_size(200, epochs=100)
    # ... the round trained with the supervised run's
    supervised = CrossValidatedHead(**params).fit(data.subset(np.flatnonzero(data.labels >= 0)))
    assert est.batch_size_ == supervised.batch_size_ == auto_batch_size(200, epochs=100)
    assert supervised_rounds["cv"] == supervised.cv_scores_.to_json()


def test_same_training_fixes_only_a_size_left_to_the_data() -> None:
    class Fitted:
        batch_size_ = 48

    head = HeadConfig(**AUTO)
    assert same_training(head, Fitted()).batch_size == 48
    assert same_training(replace(head, batch_size=16), Fitted()).batch_size == 16

    class Linear:
        batch_size_ = 0  # scikit-learn heads are not batched

    assert same_training(replace(head, model="logreg"), Linear()).batch_size is None


@pytest.mark.slow
def test_semi_sweep_reports_the_spread_of_training_seeds(stores, tmp_path) -> None:
    params = dict(folds=3, epochs=6, hidden=8, batch_size=32, precision="fp32")
    result = semi_sweep([stores["audio"]], tmp_path / "sw", strategy="threshold",
                        values="0.4,0.9", hide_labels=0.5, baseline_seeds=3, **params)
    report = json.loads((tmp_path / "sw" / "semi_sweep.json").read_text())
    baseline = report["baseline"]
    assert baseline["seeds"] == [0, 1, 2]
    assert baseline["metric"][0] == pytest.approx(report["supervised"]["metric"], abs=1e-6)
    # the other seeds are the supervised head with another training seed on the same folds
    data = load_dataset([stores["audio"]])
    from mer_heads.experiments.semi import hide_training_labels

    hidden_data, _ = hide_training_labels(data, np.ones(len(data), bool), 0.5, 0, folds=3)
    labelled = hidden_data.subset(np.flatnonzero(hidden_data.labels >= 0))
    first = CrossValidatedHead(**params).fit(labelled)
    fold_of = np.zeros(len(labelled), np.int64)
    fold_of[labelled.rows_of(first.train_names_)] = first.fold_
    second = CrossValidatedHead(**{**params, "seed": 1}).fit(labelled, fold_of=fold_of)
    assert baseline["metric"][1] == pytest.approx(second.cv_scores_.metric, abs=1e-6)
    values = np.array(baseline["metric"])
    assert baseline["metric_mean"] == pytest.approx(values.mean(), abs=1e-6)
    assert baseline["metric_std"] == pytest.approx(values.std(ddof=1), abs=1e-6)
    assert baseline["metric_std"] > 0  # training seeds move a neural head's CV metric
    for row in result.rows:
        inside = abs(row["cv_metric"] - values.mean()) <= 2 * values.std(ddof=1) + 1e-9
        assert row["within_noise"] is bool(inside)
    markdown = result.markdown()
    assert "Noise: the supervised head fitted with 3 training seeds (0..2)" in markdown
    assert markdown.count("| noise |") + markdown.count("| beyond noise |") == 2
    import csv

    with (tmp_path / "sw" / "semi_sweep.csv").open(newline="") as f:
        table = list(csv.DictReader(f))
    assert [r["within_noise"] for r in table] == [str(r["within_noise"]) for r in result.rows]


@pytest.mark.slow
def test_one_baseline_seed_marks_nothing(stores, tmp_path) -> None:
    result = semi_sweep([stores["audio"]], tmp_path / "sw", strategy="threshold", values="0.5",
                        hide_labels=0.5, baseline_seeds=1, model="logreg", folds=3)
    assert [r["within_noise"] for r in result.rows] == [None]
    assert "no spread to tell a change from noise" in result.markdown()
