"""The statistics every run reports (issue 26): 95% bootstrap intervals of the held-out metrics
in metrics.json and report.md (over clips, or over groups), ECE/Brier/NLL and the reliability
diagram, ``--calibrate temperature`` fitted on training clips only, and the leaderboard's
intervals and "not significantly worse than the best" mark. Each figure is recomputed here
independently (plain loops, scikit-learn), from the run's own files."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mer_features import EMOTIONS
from mer_heads.cli import main
from mer_heads.config import HeadConfig
from mer_heads.data import load_dataset
from mer_heads.errors import ParameterError
from mer_heads.experiments.fit import fit_run, predict_run
from mer_heads.protocol import CrossValidatedHead
from mer_heads.stats.calibration import apply_temperature, fit_temperature

from .synthetic_stores import FAST, clip_labels, write_store

N = 240
ACTORS = 10


@pytest.fixture(scope="module")
def actor_stores(tmp_path_factory) -> dict[str, Path]:
    """Two stores of N clips by ACTORS actors (column ``actor``), weakly separable classes."""
    folder = tmp_path_factory.mktemp("run-stats")
    names, y, valence = clip_labels(N, seed=3)
    actors = [f"actor{i % ACTORS:02d}" for i in range(N)]
    return {key: write_store(folder / f"{key}.h5", key, names, y, valence, dim=dim, frame_dim=3,
                             seed=seed, strength=0.6, extra={"actor": actors})
            for key, dim, seed in (("audio", 12, 1), ("text", 10, 2))}


def _oof(run: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """The held-out truth, predictions, probabilities (classes in EMOTIONS order) and clip
    names of a run, read back from oof_predictions.csv."""
    rows = list(csv.DictReader(open(run / "oof_predictions.csv")))
    index = {c: i for i, c in enumerate(EMOTIONS)}
    y = np.array([index[r["discrete"]] for r in rows])
    pred = np.array([index[r["pred_discrete"]] for r in rows])
    proba = np.array([[float(r[f"p_{c}"]) for c in EMOTIONS] for r in rows])
    return y, pred, proba, [r["name"] for r in rows]


def _percentile(values: list[float]) -> list[float]:
    return [float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))]


@pytest.fixture(scope="module")
def clip_run(actor_stores, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clip-run") / "run"
    fit_run([actor_stores["audio"], actor_stores["text"]], out, model="logreg", folds=4, seed=5)
    return out


@pytest.mark.slow
def test_intervals_are_a_plain_bootstrap_of_the_held_out_predictions(clip_run):
    m = json.loads((clip_run / "metrics.json").read_text())
    y, pred, _, _ = _oof(clip_run)
    n = len(y)
    assert m["bootstrap"] == {"unit": "clip", "groups": None, "n": 1000, "seed": 5,
                              "n_units": n, "strata": None, "n_strata": None,
                              "method": "percentile", "confidence": 0.95}
    rng = np.random.default_rng(5)  # the documented draws: rng.integers(0, n, n) per resample
    f1s, accs = [], []
    for idx in rng.integers(0, n, (1000, n)):
        f1s.append(f1_score(y[idx], pred[idx], average="weighted", zero_division=0))
        accs.append(float(np.mean(y[idx] == pred[idx])))
    assert m["ci"]["f1"] == pytest.approx(_percentile(f1s), abs=2e-6)
    assert m["ci"]["wa"] == pytest.approx(_percentile(accs), abs=2e-6)
    low, high = m["ci"]["f1"]
    assert low < m["cv"]["f1"] < high and high - low > 0.02  # a real interval around the F1
    report = (clip_run / "report.md").read_text()
    assert (f"| F1 (weighted) | {m['scores']['pooled']['f1']:.3f} [{low:.3f}, {high:.3f}] |"
            in report)
    assert "1000 bootstrap resamples of 240 clips, seed 5" in report
    assert "![reliability diagram](reliability.png)" in report
    assert (clip_run / "reliability.png").stat().st_size > 1000


@pytest.mark.slow
def test_calibration_metrics_recomputed_independently(clip_run):
    m = json.loads((clip_run / "metrics.json").read_text())
    y, _, proba, _ = _oof(clip_run)  # probabilities as written (6 decimals)
    confidence, top = proba.max(axis=1), proba.argmax(axis=1)
    ece = 0.0
    for b in range(15):  # bins ((b)/15, (b+1)/15], the first one holding 0 too
        low, high = b / 15, (b + 1) / 15
        inside = [i for i in range(len(y))
                  if (low < confidence[i] <= high) or (b == 0 and confidence[i] == 0)]
        if inside:
            gap = np.mean(confidence[inside]) - np.mean(top[inside] == y[inside])
            ece += len(inside) / len(y) * abs(gap)
    brier = np.mean([sum((proba[i, k] - (y[i] == k)) ** 2 for k in range(6))
                     for i in range(len(y))])
    nll = np.mean([-np.log(proba[i, y[i]]) for i in range(len(y))])
    assert m["ece"] == pytest.approx(ece, abs=1e-4)
    assert m["brier"] == pytest.approx(brier, abs=1e-4)
    assert m["nll"] == pytest.approx(nll, abs=1e-4)
    assert "calibration" not in m  # off by default
    assert "temperatures" not in json.loads((clip_run / "run.json").read_text())


@pytest.mark.slow
def test_groups_are_resampled_whole(actor_stores, tmp_path):
    out = tmp_path / "run"
    fit_run([actor_stores["audio"], actor_stores["text"]], out, model="logreg", folds=5,
            groups="actor", seed=2)
    m = json.loads((out / "metrics.json").read_text())
    assert m["bootstrap"]["unit"] == "group" and m["bootstrap"]["groups"] == "actor"
    assert m["bootstrap"]["n_units"] == ACTORS
    y, pred, _, names = _oof(out)
    actor = np.array([f"actor{int(name[4:]) % ACTORS:02d}" for name in names])
    units = np.unique(actor)  # groups numbered in sorted order
    members = [np.flatnonzero(actor == u) for u in units]
    rng = np.random.default_rng(2)
    accs = []
    for drawn in rng.integers(0, len(units), (1000, len(units))):
        idx = np.concatenate([members[g] for g in drawn])
        accs.append(float(np.mean(y[idx] == pred[idx])))
    assert m["ci"]["wa"] == pytest.approx(_percentile(accs), abs=2e-6)
    assert "10 'actor' groups (whole groups resampled)" in (out / "report.md").read_text()


def _data(stores: dict[str, Path]):
    return load_dataset([stores["audio"], stores["text"]])


def test_cross_fitted_temperature_never_sees_the_folds_held_out_clips(actor_stores):
    from mer_heads.stats.runs import cross_fitted_temperatures

    data = _data(actor_stores)
    fold_of = np.arange(len(data)) % 4
    est = CrossValidatedHead(model="attention", folds=4, calibrate="temperature",
                             **{k: v for k, v in FAST.items() if k != "folds"}).fit(
        data, fold_of=fold_of)
    t, raw, y = est.temperatures_, est.oof_proba_uncalibrated_, data.labels
    for f in range(4):  # independently: the other folds' held-out predictions
        other = fold_of != f
        assert t[f] == pytest.approx(fit_temperature(raw[other], y[other]), rel=1e-6)
        held = fold_of == f
        assert np.allclose(est.oof_proba_[held], apply_temperature(raw[held], t[f]))
    # The labels of fold 0's held-out clips do not reach T_0 (they reach the others').
    changed = y.copy()
    changed[fold_of == 0] = (changed[fold_of == 0] + 1) % 6
    again = cross_fitted_temperatures(raw, changed, fold_of, 4)
    assert again[0] == t[0] and not np.allclose(again[1:], t[1:])
    assert (est.oof_proba_.argmax(1) == raw.argmax(1)).all()


def test_temperature_train_is_fitted_on_each_folds_training_clips_only(actor_stores,
                                                                       tmp_path):
    data = _data(actor_stores)
    fold_of = np.arange(len(data)) % 4
    est = CrossValidatedHead(model="logreg", folds=4, calibrate="temperature-train").fit(
        data, fold_of=fold_of)
    t = est.temperatures_
    assert t.shape == (4,) and (t > 0).all()
    # Independently: fold f's models' predictions of the clips outside fold f.
    fold_proba = est.predict_fold_proba(data)
    for f in range(4):
        own = fold_of != f
        assert t[f] == pytest.approx(fit_temperature(fold_proba[f, own], data.labels[own]),
                                     rel=1e-6)
        held = fold_of == f
        assert np.allclose(est.oof_proba_[held],
                           apply_temperature(est.oof_proba_uncalibrated_[held], t[f]))
    assert (est.oof_proba_.argmax(1) == est.oof_proba_uncalibrated_.argmax(1)).all()
    # Changing only the labels of fold 0's clips (held out by fold 0) leaves T_0 as it was;
    # the other folds trained on those clips, so theirs move.
    discrete = data.discrete.copy()
    rows = np.flatnonzero(fold_of == 0)
    discrete[rows] = np.array(EMOTIONS, dtype=object)[(data.labels[rows] + 1) % 6]
    changed = CrossValidatedHead(model="logreg", folds=4, calibrate="temperature-train").fit(
        replace(data, discrete=discrete), fold_of=fold_of)
    assert changed.temperatures_[0] == t[0]
    assert not np.allclose(changed.temperatures_[1:], t[1:])
    # predict_held_out applies the same temperatures: it reproduces oof_proba_.
    proba, _, _ = est.predict_held_out(data)
    assert np.allclose(proba, est.oof_proba_)


@pytest.mark.slow
def test_calibrated_run_records_and_applies_temperatures(actor_stores, tmp_path):
    out = tmp_path / "run"
    result = fit_run([actor_stores["audio"], actor_stores["text"]], out, calibrate="temperature",
                     seed=1, **FAST)
    m = json.loads((out / "metrics.json").read_text())
    temps = result.estimator.temperatures_
    assert json.loads((out / "run.json").read_text())["temperatures"] == pytest.approx(
        temps.tolist(), abs=1e-6)
    cal = m["calibration"]
    assert cal["method"] == "temperature" and cal["temperatures"] == pytest.approx(temps, abs=1e-6)
    y = np.asarray(result.estimator.oof_proba_.argmax(1))  # any labels work for the check
    assert set(cal["before"]) == set(cal["after"]) == {"ece", "brier", "nll"}
    assert m["ece"] == cal["after"]["ece"] and cal["before"]["ece"] != cal["after"]["ece"]
    assert "| before |" in (out / "report.md").read_text() and len(y) == N
    # predict: each fold's probabilities calibrated with its temperature, then averaged.
    predicted = predict_run(out, tmp_path / "p.csv")
    assert predicted.n == N
    est = result.estimator
    data = _data(actor_stores)
    folds = est.predict_fold_proba(data)
    expected = np.mean([apply_temperature(folds[f], temps[f]) for f in range(len(temps))],
                       axis=0)
    from mer_heads.rundir import load_run

    loaded, _ = load_run(out)
    assert np.allclose(loaded.predict_proba(data)[0], expected, atol=1e-6)
    plain = CrossValidatedHead.from_state(loaded.config, replace(loaded.state_,
                                                                  temperatures=None))
    assert not np.allclose(plain.predict_proba(data)[0], expected, atol=1e-4)


def test_calibrate_option_is_checked(actor_stores, tmp_path, capsys):
    with pytest.raises(ParameterError, match="calibrate must be one of none, temperature"):
        HeadConfig(calibrate="platt")
    with pytest.raises(SystemExit) as exit:
        main(["fit", "--features", str(actor_stores["audio"]), "--calibrate", "platt",
              "--out", str(tmp_path / "r")])
    assert exit.value.code == 2
    assert "argument --calibrate: invalid choice: 'platt'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_leaderboard_marks_rows_not_significantly_worse_than_the_best(tmp_path):
    from mer_heads import leaderboard

    names, y, valence = clip_labels(120)
    good = {n: write_store(tmp_path / f"{n}.h5", "audio", names, y, valence, dim=12,
                           frame_dim=3, seed=1, strength=1.5) for n in ("good", "twin")}
    noise = write_store(tmp_path / "noise.h5", "audio", names, y, valence, dim=12, frame_dim=3,
                        seed=2, strength=0.0)
    result = leaderboard([f"audio={good['good']}", f"audio={good['twin']}", f"audio={noise}"],
                         tmp_path / "lb", seeds=1, top_n=1, model="logreg", folds=3,
                         fusion="attention", epochs=3, hidden=8)
    single = {r["name"]: r for r in result.rows if r["section"] == "single"}
    best, twin, worse = (single[f"toy-audio:{n}"] for n in ("good", "twin", "noise"))
    assert best["statistics"]["best"] and best["vs_best_mark"] == "best"
    # The twin store gives the same predictions: difference 0, p = 1: marked as not worse.
    assert twin["statistics"]["vs_best"]["delta"] == 0 and twin["vs_best_p"] == 1
    assert twin["vs_best_mark"] == "≈"
    # Features of pure noise: far worse, p at its floor 1/(1+2000).
    v = worse["statistics"]["vs_best"]
    assert v["delta"] < -0.3 and v["ci"][1] < 0 and v["p_value"] == pytest.approx(1 / 2001)
    # Holm over the 3 other rows (the top-1 fusion: the best store through the attention head)
    assert v["p_value"] < v["p_adjusted"] <= 3 / 2001 + 1e-12 and worse["vs_best_mark"] == ""
    for row in result.rows:  # each row's own first-seed predictions (not another head's)
        assert row["statistics"]["value"] == pytest.approx(row["per_seed"][0]["metric"],
                                                           abs=1e-9)
    fused = next(r for r in result.rows if r["section"] == "fusion")
    assert fused["name"] == "toy-audio:good" and fused["per_seed"][0]["metric"] != \
        best["per_seed"][0]["metric"]
    # The interval of each row: a plain bootstrap of its held-out metric on seed 0.
    lo, hi = best["statistics"]["ci"]
    assert lo < best["statistics"]["value"] < hi
    assert best["statistics"]["value"] == pytest.approx(best["per_seed"][0]["metric"], abs=1e-9)
    md = result.markdown()
    assert "| 1 | toy-audio:good ★ |" in md and "| 2 | toy-audio:twin ≈ |" in md
    assert "| 3 | toy-audio:noise |" in md and "Holm-adjusted p >= 0.05" in md
    csv_rows = list(csv.DictReader(open(result.csv_path)))
    assert [r["vs_best_mark"] for r in csv_rows if r["section"] == "single"] == ["best", "≈", ""]


@pytest.mark.slow
def test_robustness_rows_carry_intervals_of_their_own_predictions(actor_stores, tmp_path):
    from mer_heads.experiments.robustness import robustness

    from .synthetic_stores import write_noisy

    noisy = write_noisy(actor_stores["audio"], tmp_path / "audio5.h5", 5)
    result = robustness([f"audio={actor_stores['audio']}"], [[f"audio={noisy}"]], tmp_path / "r",
                        model="logreg", folds=4, seed=5, groups="actor")
    clean, five = result.rows
    # The clean row's predictions are the cross-validated ones: the interval is the fit's.
    fit = fit_run([actor_stores["audio"]], tmp_path / "fit", model="logreg", folds=4, seed=5,
                  groups="actor").metrics
    assert clean["f1"] == pytest.approx(fit["cv"]["f1"], abs=1e-12)
    assert [clean["f1_low"], clean["f1_high"]] == pytest.approx(fit["ci"]["f1"], abs=1e-12)
    assert [clean["ua_low"], clean["ua_high"]] == pytest.approx(fit["ci"]["ua"], abs=1e-12)
    assert clean["bootstrap"]["unit"] == "group" and clean["bootstrap"]["n_units"] == ACTORS
    for r in (clean, five):
        assert r["f1_low"] <= r["f1"] <= r["f1_high"]
    rows = list(csv.DictReader(open(result.csv_path)))
    assert float(rows[1]["f1_low"]) == pytest.approx(five["f1_low"], abs=1e-6)
    md = (tmp_path / "r" / "robustness.md").read_text()
    assert "## 95% intervals of f1" in md and "whole 'actor' groups (10)" in md


def test_test_split_gets_intervals_of_its_own_clips(tmp_path):
    names, y, valence = clip_labels(100)
    splits = ["test" if i % 4 == 0 else "train" for i in range(100)]
    path = write_store(tmp_path / "a.h5", "audio", names, y, valence, dim=8, frame_dim=2, seed=0,
                       splits=splits, strength=0.7)
    m = fit_run([path], tmp_path / "run", train_split="train", test_split="test",
                model="logreg", folds=3, seed=4, figures=False).metrics
    assert m["test_bootstrap"]["n_units"] == 25 and m["test_bootstrap"]["seed"] == 4
    rows = list(csv.DictReader(open(tmp_path / "run" / "test_predictions.csv")))
    pred = np.array([EMOTIONS.index(r["discrete"]) for r in rows])
    index = {n: i for i, n in enumerate(names)}
    truth = np.array([y[index[r["name"]]] for r in rows])
    rng = np.random.default_rng(4)
    accs = [float(np.mean(truth[i] == pred[i])) for i in rng.integers(0, 25, (1000, 25))]
    assert m["test_ci"]["wa"] == pytest.approx(_percentile(accs), abs=2e-6)
    assert m["test_ci"]["wa"][0] <= m["test"]["accuracy"] <= m["test_ci"]["wa"][1]
    assert set(m["test_calibration"]) == {"ece", "brier", "nll"}
    assert "test split `test` (25 clips; 1000 resamples of clips): F1 " in (tmp_path / "run" / "report.md").read_text()
