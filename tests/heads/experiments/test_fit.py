"""`mer-heads fit / predict / evaluate / ablate` end to end on small generated stores."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mer_heads.cli import main
from mer_heads.errors import FingerprintMismatchError
from mer_heads.experiments.fit import fit_run, predict_run
from ..synthetic_stores import FAST, clip_labels, make_stores, write_store

FIT_ARGS = ["--folds", "3", "--epochs", "8", "--hidden", "16", "--batch-size", "32",
            "--precision", "fp32"]


def _features(stores: dict[str, Path]) -> list[str]:
    return [a for key in ("audio", "text", "video") for a in ("--features", str(stores[key]))]


@pytest.fixture(scope="module")
def run(stores, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    assert main(["fit", *_features(stores), "--out", str(out), *FIT_ARGS]) == 0
    return out


@pytest.mark.slow
def test_fit_writes_a_complete_run(run, capsys):
    for name in ("metrics.json", "run.json", "report.md", "confusion.png", "standardizer.npz",
                 "models/heads.pt", "oof_predictions.csv"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["clips"]["train"] == 119 and metrics["clips"]["dropped_no_modality"] == 1
    assert len(metrics["models"]) == 3 and sum(map(sum, metrics["confusion"])) == 119
    assert [m["key"] for m in metrics["modalities"]] == ["audio", "text", "video"]
    info = json.loads((run / "run.json").read_text())
    assert all(len(m["fingerprint"]) >= 16 for m in info["modalities"])
    report = (run / "report.md").read_text()
    assert "| CV, pooled held-out predictions |" in report and "left out): 1" in report
    assert (run / "confusion.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_same_seed_same_data_gives_byte_identical_metrics(stores, run, tmp_path):
    again = tmp_path / "again"
    assert main(["fit", *_features(stores), "--out", str(again), *FIT_ARGS]) == 0
    assert (again / "metrics.json").read_bytes() == (run / "metrics.json").read_bytes()


def test_predict_then_evaluate(stores, run, tmp_path, capsys):
    preds = tmp_path / "preds.csv"
    assert main(["predict", "--run", str(run), *_features(stores), "--out", str(preds)]) == 0
    rows = list(csv.DictReader(open(preds)))
    assert list(rows[0]) == ["name", "discrete", "valence"] and len(rows) == 120
    info = json.loads((run / "run.json").read_text())
    prior = ["neutral", "angry", "happy", "sad", "worried", "surprise"][int(np.argmax(info["prior"]))]
    assert rows[-1]["discrete"] == prior
    assert float(rows[-1]["valence"]) == pytest.approx(info["mean_valence"], abs=1e-5)
    assert "1 clip(s) have no usable modality" in capsys.readouterr().err
    assert (tmp_path / "preds.imputed.txt").read_text().split() == ["clip0119"]
    # the run's own stores are the default
    assert main(["predict", "--run", str(run), "--out", str(tmp_path / "p2.csv")]) == 0
    assert (tmp_path / "p2.csv").read_bytes() == preds.read_bytes()
    names, y, valence = clip_labels(120)
    labels = tmp_path / "labels.csv"
    with open(labels, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", "discrete", "valence"])
        for n, c, v in zip(names, y, valence):
            w.writerow([n, ["neutral", "angry", "happy", "sad", "worried", "surprise"][c], v])
    capsys.readouterr()
    assert main(["evaluate", "--pred", str(preds), "--labels", str(labels), "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["n"] == 120 and scores["metric"] == pytest.approx(
        scores["f1"] - 0.25 * scores["mse"])


@pytest.mark.slow
def test_predict_refuses_stores_with_other_fingerprints(run, tmp_path, capsys):
    other = make_stores(tmp_path, version="2")
    with pytest.raises(FingerprintMismatchError, match=r"another feature configuration.*audio: "
                                                       r".*audio.h5' has fingerprint"):
        predict_run(run, tmp_path / "p.csv", [str(other[k]) for k in ("audio", "text", "video")])
    assert main(["predict", "--run", str(run), *_features(other), "--out",
                 str(tmp_path / "p.csv")]) == 1
    assert "error: The stores were made with another feature configuration" in capsys.readouterr().err
    with pytest.raises(FingerprintMismatchError, match=r"trained on modalities \['audio', 'text', "
                                                       r"'video'\].*got \['audio', 'text'\]"):
        predict_run(run, tmp_path / "p.csv", [str(other[k]) for k in ("audio", "text")])


@pytest.mark.slow
def test_sklearn_run_round_trips_through_joblib(stores, tmp_path):
    result = fit_run([stores["audio"], stores["text"]], tmp_path / "lr", model="logreg",
                     folds=3)
    assert (tmp_path / "lr" / "models" / "sklearn.joblib").is_file()
    out = predict_run(tmp_path / "lr", tmp_path / "lr.csv")
    rows = list(csv.DictReader(open(out.path)))
    oof = list(csv.DictReader(open(tmp_path / "lr" / "oof_predictions.csv")))
    assert len(rows) == 120 and result.metrics["cv"]["f1"] > 0.8
    assert sum(r["discrete"] == o["discrete"] for r, o in zip(rows, oof)) > 90


@pytest.mark.slow
def test_splits_pick_training_and_test_clips(tmp_path):
    names, y, valence = clip_labels(100)
    splits = ["test" if i % 5 == 0 else "train" for i in range(100)]
    path = write_store(tmp_path / "a.h5", "audio", names, y, valence, dim=8, frame_dim=2, seed=0,
                       splits=splits)
    result = fit_run([path], tmp_path / "run", train_split="train", test_split="test",
                     model="logreg", folds=3)
    assert result.metrics["clips"]["train"] == 80 and result.metrics["clips"]["test"] == 20
    assert result.metrics["test"]["n"] == 20 and result.metrics["test"]["f1"] > 0.5
    assert len(list(csv.DictReader(open(tmp_path / "run" / "test_predictions.csv")))) == 20
    assert main(["fit", "--features", str(path), "--out", str(tmp_path / "x"),
                 "--train-split", "dev"]) == 1


@pytest.mark.slow
def test_classification_only_run_writes_empty_valence(tmp_path):
    names, y, valence = clip_labels(60)
    path = write_store(tmp_path / "a.h5", "audio", names, y, valence, dim=6, frame_dim=2,
                       seed=0, with_valence=False)
    result = fit_run([path], tmp_path / "run", **FAST)
    assert result.metrics["cv"]["mse"] is None and not result.metrics["has_valence"]
    out = predict_run(tmp_path / "run", tmp_path / "p.csv")
    assert {r["valence"] for r in csv.DictReader(open(out.path))} == {""}


@pytest.mark.slow
def test_figures_must_be_a_bool_and_are_checked_before_any_work(stores, tmp_path):
    from mer_heads.errors import ParameterError

    with pytest.raises(ParameterError, match="figures must be True or False; got 'no'"):
        fit_run([stores["audio"]], tmp_path / "run", figures="no", **FAST)
    assert not (tmp_path / "run").exists()


def test_ablate_covers_every_combination(stores, tmp_path, capsys):
    out = tmp_path / "ablation"
    assert main(["ablate", "--features", f"audio={stores['audio']}", "--features",
                 f"text={stores['text']}", "--features", f"video={stores['video']}",
                 "--out", str(out), *FIT_ARGS]) == 0
    rows = list(csv.DictReader(open(out / "ablation.csv")))
    assert [r["modalities"] for r in rows] == ["audio", "text", "video", "audio+text",
                                               "audio+video", "text+video", "audio+text+video"]
    video = rows[2]
    assert int(video["clips"]) == 107 and int(video["left_out"]) == 13
    assert "| audio+text+video |" in (out / "ablation.md").read_text()
    assert "± " in capsys.readouterr().out


def test_help_is_instant_and_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["fit", "--out", "x"])
    assert e.value.code == 2


def test_cli_imports_no_torch_until_a_command_runs():
    import subprocess
    import sys

    code = "import sys, mer_heads.cli; sys.exit('torch' in sys.modules or 'sklearn' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
