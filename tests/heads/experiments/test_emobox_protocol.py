"""EmoBox's protocol through the heads: the manifest an EmoBox folder becomes, its published
folds (``--folds-from fold``) on fit and leaderboard, and UA / WA / macro F1 recomputed
independently with scikit-learn from the run's ``oof_predictions.csv``.

Two corpora: EmoBox's own RAVDESS files with the actors of ../shared/data (the manifest is the
importer's; the features are a small synthetic store of its clips, so the test stays fast), and
generated EmoBox folders shaped like IEMOCAP (five sessions, a label map merging ``exc`` into
happy) and EmoDB (seven classes of its own, folds that mix speakers), run end to end: import,
extract (eGeMAPS), fit.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from real_data import shared_data
from synthetic_media import voiced
from mer_features import EMOTIONS
from mer_features.cli import main as features_main
from mer_features.store import ClipRecord, StoreWriter
from mer_heads.cli import main as heads_main

from ..synthetic_stores import header


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def sklearn_scores(rows: list[dict[str, str]]) -> dict[str, float]:
    """UA, WA and macro F1 of held-out rows (``discrete`` true, ``pred_discrete`` predicted)."""
    y_true = [r["discrete"] for r in rows]
    y_pred = [r["pred_discrete"] for r in rows]
    return {"ua": balanced_accuracy_score(y_true, y_pred), "wa": accuracy_score(y_true, y_pred),
            "macro_f1": f1_score(y_true, y_pred, average="macro", labels=sorted(set(y_true)),
                                 zero_division=0)}


def recomputed(oof: Path) -> tuple[dict[str, float], dict[str, float], dict[str, float]]:
    """Pooled scores, and the mean and spread (ddof 0) over folds of the per-fold scores."""
    rows = read_csv(oof)
    by_fold: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in rows:
        by_fold[r["fold"]].append(r)
    per_fold = [sklearn_scores(f) for f in by_fold.values()]
    keys = ("ua", "wa", "macro_f1")
    return (sklearn_scores(rows), {k: float(np.mean([p[k] for p in per_fold])) for k in keys},
            {k: float(np.std([p[k] for p in per_fold])) for k in keys})


def write_store(path: Path, rows: list[dict[str, str]], extra: tuple[str, ...], *,
                seed: int = 0, dim: int = 16) -> Path:
    """A small audio store of the manifest ``rows`` as extraction writes one: features from the
    class (plus a speaker offset and noise), the labels and the extra columns ``extra``."""
    rng = np.random.default_rng(seed)
    classes = sorted({r["discrete"] for r in rows})
    centres = {c: 1.2 * rng.standard_normal(dim) for c in classes}
    speakers = {s: 0.8 * rng.standard_normal(dim) for s in sorted({r["speaker"] for r in rows})}
    with StoreWriter(path, header("audio", dim, 3)) as w:
        w.set_labels({r["name"]: (r["discrete"], float("nan"), "", {k: r[k] for k in extra})
                      for r in rows})
        for r in rows:
            u = centres[r["discrete"]] + speakers[r["speaker"]] + rng.standard_normal(dim)
            w.add(ClipRecord(name=r["name"], utterance=u.astype(np.float32),
                             frames=np.zeros((2, 3), np.float32),
                             frame_times=np.arange(2, dtype=np.float32) / 10,
                             input_hash=r["name"], duration=0.2))
    return path


@pytest.mark.shared_data
def test_emobox_ravdess_folds_scores_equal_sklearn_on_the_held_out_predictions(tmp_path, capsys):
    data, root = shared_data("emobox", "ravdess"), shared_data("ravdess")
    manifest = tmp_path / "ravdess-emobox.csv"
    assert features_main(["manifest", "emobox", "--data", str(data), "--root", str(root),
                          "--audio-ext", "flac", "--skip-missing", "--out", str(manifest)]) == 0
    rows = read_csv(manifest)
    classes = sorted({r["discrete"] for r in rows})
    assert len(rows) == 720 and len(classes) == 8
    store = write_store(tmp_path / "ravdess-audio.h5", rows, ("emo", "speaker", "fold"))
    capsys.readouterr()

    run = tmp_path / "fit"
    assert heads_main(["fit", "--features", str(store), "--folds-from", "fold", "--model",
                       "logreg", "--targets", "none", "--out", str(run)]) == 0
    out = "".join(capsys.readouterr())
    assert "6 published folds from 'fold'" in out
    assert "speaker" not in out  # EmoBox's RAVDESS folds never split an actor: no warning
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["classes"] == classes
    pooled, mean, std = recomputed(run / "oof_predictions.csv")
    oof = read_csv(run / "oof_predictions.csv")
    assert len(oof) == 720 and {r["fold"] for r in oof} == {str(k) for k in range(1, 7)}
    assert {r["name"]: r["fold"] for r in oof} == {r["name"]: r["fold"] for r in rows}
    for key in ("ua", "wa", "macro_f1"):
        assert metrics["cv"][key] == pytest.approx(pooled[key], abs=1e-6), key
        assert metrics["mean"][key] == pytest.approx(mean[key], abs=1e-6), key
        assert metrics["std"][key] == pytest.approx(std[key], abs=1e-6), key
    assert 0.3 < pooled["ua"] < 1  # the synthetic classes are learnable, not perfectly
    assert pooled["ua"] != pytest.approx(pooled["wa"])  # neutral has half the clips
    report = (run / "report.md").read_text()
    assert f"{pooled['ua']:.4f}" in report and f"{pooled['macro_f1']:.4f}" in report

    board = tmp_path / "board"
    assert heads_main(["leaderboard", "--features", f"audio={store}", "--folds-from", "fold",
                       "--model", "logreg", "--fusion", "logreg", "--targets", "none",
                       "--seeds", "1", "--out", str(board)]) == 0
    table = json.loads((board / "leaderboard.json").read_text())
    assert table["metric"] == "ua" and table["classes"] == classes
    row = next(r for r in table["rows"] if r["section"] == "single")
    for key in ("ua", "wa", "macro_f1"):  # the same seed and folds: the same held-out scores
        assert row[f"{key}_mean"] == pytest.approx(pooled[key], abs=1e-6), key
        assert row[f"{key}_fold_mean"] == pytest.approx(mean[key], abs=1e-6), key
        assert row[f"{key}_fold_std"] == pytest.approx(std[key], abs=1e-6), key
    assert {r["name"] for r in read_csv(board / "leaderboard.csv")} == {row["name"]}


# --------------------------------------------------------------------------------------------
# Generated EmoBox folders of other corpora, end to end

IEMOCAP_EMOS = {"neu": 110, "hap": 170, "exc": 180, "ang": 240, "sad": 90}
IEMOCAP_MAP = {"neu": "Neutral", "hap": "Happy", "exc": "Happy", "ang": "Angry", "sad": "Sad"}
EMODB_EMOS = {"W": ("anger", 240), "L": ("boredom", 95), "E": ("disgust", 140),
              "A": ("fear", 200), "F": ("happiness", 175), "T": ("sadness", 80),
              "N": ("neutral", 120)}


def _iemocap() -> tuple[str, list[dict], dict[str, str]]:
    records = []
    for session in range(1, 6):
        for gender in "FM":
            for i, (emo, f0) in enumerate(IEMOCAP_EMOS.items()):
                stem = f"Ses0{session}{gender}_impro0{i + 1}_{gender}00{i}"
                wav = (f"downloads/iemocap/IEMOCAP_full_release/Session{session}/sentences/wav/"
                       f"{stem.rsplit('_', 1)[0]}/{stem}.wav")
                records.append({"key": f"iemocap-{stem}", "wav": wav, "emo": emo,
                                "fold": session, "f0": f0 + (15 if gender == "F" else 0)})
    return "iemocap", records, IEMOCAP_MAP


def _emodb() -> tuple[str, list[dict], dict[str, str]]:
    records = []
    for s, speaker in enumerate(("03", "08", "09", "10", "11")):
        for e, (code, (emo, f0)) in enumerate(EMODB_EMOS.items()):
            stem = f"{speaker}a0{e}{code}a"
            records.append({"key": f"emodb-{stem}", "wav": f"downloads/emodb/wav/{stem}.wav",
                            "emo": emo, "fold": (s + e) % 5 + 1, "f0": f0 + 5 * s})
    return "emodb", records, {v: v.capitalize() for v, _ in EMODB_EMOS.values()}


def make_corpus(tmp_path: Path, corpus: str, records: list[dict], label_map: dict[str, str]
                ) -> tuple[Path, Path]:
    """data/<corpus> in EmoBox's layout (jsonl, label_map.json, fold_K train/test files) and its
    audio under root/downloads/...: voiced clips whose pitch depends on the class."""
    data, root = tmp_path / "data" / corpus, tmp_path / "root"
    data.mkdir(parents=True)
    lines = []
    for i, r in enumerate(records):
        path = root / r["wav"]
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, voiced(0.8, f0=r["f0"], seed=i), 16000, subtype="PCM_16")
        lines.append({"key": r["key"], "dataset": corpus, "wav": r["wav"], "type": "raw",
                      "sample_rate": 16000, "length": 0.8, "task": "category", "emo": r["emo"],
                      "channel": 1})
    by_key = {r["key"]: r for r in records}

    def jsonl(path: Path, chosen: list[dict]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps(c) + "\n" for c in chosen))

    jsonl(data / f"{corpus}.jsonl", lines)
    (data / "label_map.json").write_text(json.dumps(label_map, indent=4))
    for k in sorted({r["fold"] for r in records}):
        test = [c for c in lines if by_key[c["key"]]["fold"] == k]
        jsonl(data / f"fold_{k}" / f"{corpus}_test_fold_{k}.jsonl", test)
        jsonl(data / f"fold_{k}" / f"{corpus}_train_fold_{k}.jsonl",
              [c for c in lines if c not in test])
    return data, root


@pytest.mark.slow
@pytest.mark.parametrize("make", [_iemocap, _emodb], ids=["iemocap", "emodb"])
def test_a_generated_emobox_corpus_from_import_to_fit(tmp_path, capsys, make):
    corpus, records, label_map = make()
    data, root = make_corpus(tmp_path, corpus, records, label_map)
    manifest, store, run = tmp_path / "m.csv", tmp_path / "audio.h5", tmp_path / "run"
    assert features_main(["manifest", "emobox", "--data", str(data), "--root", str(root),
                          "--out", str(manifest)]) == 0
    rows = read_csv(manifest)
    assert len(rows) == len(records) and all(r["fold"] for r in rows)
    assert features_main(["extract", "--modality", "audio", "--encoder", "egemaps",
                          "--manifest", str(manifest), "--out", str(store), "--workers", "0",
                          "--no-progress"]) == 0
    capsys.readouterr()
    assert heads_main(["fit", "--features", str(store), "--folds-from", "fold", "--model",
                       "logreg", "--out", str(run)]) == 0
    out = "".join(capsys.readouterr())
    metrics = json.loads((run / "metrics.json").read_text())
    n_folds = len({r["fold"] for r in records})
    assert f"{n_folds} published folds from 'fold'" in out
    if corpus == "iemocap":
        # angry, happy (hap and exc merged by label_map.json), neutral, sad: a subset of MER
        # 2023's classes, so the run has MER 2023's six in their order and its metric
        assert [r["discrete"] for r in rows].count("happy") == 20
        assert metrics["classes"] == list(EMOTIONS)
        assert "speaker" not in out  # one session per fold: speakers never straddle folds
    else:
        # EmoDB's own seven classes, sorted; its folds mix speakers, and the run says so
        assert metrics["classes"] == sorted(v for v, _ in EMODB_EMOS.values())
        assert "folds ignore the speaker-like column 'speaker' (5 values)" in out
    pooled, mean, _ = recomputed(run / "oof_predictions.csv")
    assert len(read_csv(run / "oof_predictions.csv")) == len(records)
    for key in ("ua", "wa", "macro_f1"):
        assert metrics["cv"][key] == pytest.approx(pooled[key], abs=1e-6), key
        assert metrics["mean"][key] == pytest.approx(mean[key], abs=1e-6), key
    chance = 1 / len({r["discrete"] for r in rows})
    assert pooled["ua"] > chance + 0.2  # the pitch of each class is learnt from the audio
