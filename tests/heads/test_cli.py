"""Adversarial table for `mer-heads` (issue 13, "Trust"): every argument, bad data, bad label
files and unwritable outputs end in exactly one of a correct result (checked against a direct
scikit-learn / numpy computation) or a one-line error (exit 1; exit 2 for argparse usage
errors) that names the problem and what to do. Never a traceback, and no temporary file left.

Each case is a row of CASES: the argv (``{name}`` placeholders are paths built once by the
``world`` fixture, ``{tmp}`` the test's own folder), an optional ``setup`` that prepares the
test's folder, the expected exit code, and the words the error line must hold, or a ``check``
of the result.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import f1_score

from mer_features import EMOTIONS
from mer_features.store import ClipRecord, FeatureStore, StoreWriter
from mer_heads.cli import main
from mer_heads.experiments.fit import fit_run

from .synthetic_stores import FAST, header, write_noisy, write_store

FIT = "--folds 3 --epochs 2 --hidden 8 --batch-size 32 --precision fp32"


# --------------------------------------------------------------------------------------------
# The data the cases run on, built once


def counted(counts: dict[str, int], seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Clip names, class indices with exactly ``counts`` clips per class, and valence."""
    y = np.concatenate([np.full(n, EMOTIONS.index(e)) for e, n in counts.items()])
    rng = np.random.default_rng(seed)
    y = y[rng.permutation(len(y))]
    valence = np.clip(np.array([0.0, -2.5, 1.8, -2.4, -1.0, -0.4])[y]
                      + 0.5 * rng.standard_normal(len(y)), -5, 5)
    return [f"c{i:03d}" for i in range(len(y))], y, valence


def write_rows(path: Path, modality: str, names: list[str], y: np.ndarray, valence: np.ndarray,
               utterances: np.ndarray, storage_dtype: str = "float32") -> Path:
    """A store holding exactly ``utterances`` (n, d) (no randomness), every clip ok."""
    head = replace(header(modality, utterances.shape[1], 2), storage_dtype=storage_dtype)
    with StoreWriter(path, head) as w:
        w.set_labels({n: (EMOTIONS[c], float(v), "train") for n, c, v in zip(names, y, valence)})
        for name, u in zip(names, utterances):
            w.add(ClipRecord(name=name, utterance=u.astype(np.float32),
                             frames=np.ones((3, 2), np.float32),
                             frame_times=np.arange(3, dtype=np.float32), input_hash=name,
                             duration=0.3))
    return path


def old_store_with(path: Path, names: list[str], y: np.ndarray, valence: np.ndarray, *,
                   row: int, value: float, storage_dtype: str = "float32") -> Path:
    """A store whose clip ``row`` holds ``value`` (inf, NaN) with status ok, as stores written
    before mer_features checked its features did (e.g. `--storage-dtype float16` with ComParE
    functionals beyond float16's 65504). Those stores predate per-clip checksums, so this one
    is made a store of that format (checksum table and format mark removed) before the value
    goes in."""
    import h5py

    values = np.random.default_rng(0).standard_normal((len(names), 5))
    write_rows(path, "audio", names, y, valence, values, storage_dtype=storage_dtype)
    with h5py.File(path, "r+") as f:
        if "format_version" in f.attrs:
            f.attrs["format_version"] = 1
        if "clips/checksum" in f:
            del f["clips/checksum"]
        f["utterance"][row, 1] = value
    return path


def write_csv(path: Path, text: str, *, bom: bool = False, crlf: bool = False) -> Path:
    if crlf:
        text = text.replace("\n", "\r\n")
    path.write_bytes(("\ufeff" if bom else "").encode() + text.encode("utf-8"))
    return path


TRUTH = [("t00", "neutral", 0.5), ("t01", "angry", -3.0), ("t02", "happy", 2.0),
         ("t03", "sad", -2.5), ("t04", "worried", -1.0), ("t05", "surprise", 0.0),
         ("t06", "neutral", 1.0), ("t07", "angry", -2.0), ("t08", "happy", 3.0),
         ("t09", "sad", -4.0), ("t10", "worried", -0.5), ("t11", "surprise", 1.5)]
PRED = [("t00", "neutral", 0.0), ("t01", "angry", -2.0), ("t02", "sad", 1.0),
        ("t03", "sad", -2.0), ("t04", "neutral", -1.5), ("t05", "surprise", 0.5),
        ("t06", "neutral", 0.5), ("t07", "worried", -1.0), ("t08", "happy", 2.5),
        ("t09", "sad", -3.0), ("t10", "worried", 0.0), ("t11", "happy", 1.0)]


def table(rows, columns: str = "name,discrete,valence") -> str:
    return columns + "\n" + "".join(",".join(str(v) for v in r) + "\n" for r in rows)


@pytest.fixture(scope="module")
def world(stores, tmp_path_factory) -> dict[str, str]:
    """Paths of every store, label file and run the cases use."""
    d = tmp_path_factory.mktemp("trust")
    p: dict[str, Path] = {k: Path(v) for k, v in stores.items()}
    six = {e: 8 for e in EMOTIONS}
    for key, counts in (("few", {**six, "neutral": 10, "surprise": 3}),
                        ("single", {**{e: 6 for e in EMOTIONS}, "surprise": 1}),
                        ("svm", {**six, "surprise": 4}),
                        ("oneclass", {"sad": 20})):
        names, y, valence = counted(counts)
        p[key] = write_store(d / f"{key}.h5", "audio", names, y, valence, dim=6, frame_dim=2,
                             seed=1)
    names, y, valence = counted(six)
    p["unlabelled"] = write_store(d / "unlabelled.h5", "audio", names, y, valence, dim=6,
                                  frame_dim=2, seed=1, with_labels=False)
    p["failed"] = write_store(d / "failed.h5", "audio", names, y, valence, dim=6, frame_dim=2,
                              seed=1, failed=set(names))
    p["nan"] = old_store_with(d / "nan.h5", names, y, valence, row=4, value=np.nan)
    bad_valence = valence.copy()
    bad_valence[2] = 7.0
    p["valence7"] = write_store(d / "valence7.h5", "audio", names, y, bad_valence, dim=6,
                                frame_dim=2, seed=1)
    p["constant"] = write_rows(d / "constant.h5", "audio", names, y, valence,
                               np.full((len(names), 5), 0.25))
    p["f16inf"] = old_store_with(d / "f16inf.h5", names, y, valence, row=3, value=np.inf,
                                 storage_dtype="float16")
    split_names, split_y, split_v = counted({e: 12 for e in EMOTIONS}, seed=2)
    p["split"] = write_store(d / "split.h5", "audio", split_names, split_y, split_v, dim=8,
                             frame_dim=2, seed=2, splits=["test" if i % 4 == 0 else "train"
                                                          for i in range(len(split_names))])
    # label files
    p["truth"] = write_csv(d / "truth.csv", table(TRUTH))
    p["pred"] = write_csv(d / "pred.csv", table(PRED + [("extra1", "sad", 0.0),
                                                        ("extra2", "happy", 1.0)]),
                          bom=True, crlf=True)
    p["pred_novalence"] = write_csv(d / "pred_novalence.csv", table(
        [r[:2] for r in PRED], "name,discrete"))
    p["pred_dupcol"] = write_csv(d / "pred_dupcol.csv", table(
        [(n, c, "neutral", v) for n, c, v in PRED], "name,discrete,discrete,valence"))
    p["truth_dupcol"] = write_csv(d / "truth_dupcol.csv", table(
        [(n, c, c, v) for n, c, v in TRUTH], "name,discrete,discrete,valence"))
    p["truth_scale"] = write_csv(d / "truth_scale.csv", table(
        [(n, c, v + 10 if i == 3 else v) for i, (n, c, v) in enumerate(TRUTH)]))
    p["pred_nan"] = write_csv(d / "pred_nan.csv", table(
        [(n, c, "nan" if i == 2 else v) for i, (n, c, v) in enumerate(PRED)]))
    p["pred_inf"] = write_csv(d / "pred_inf.csv", table(
        [(n, c, "-inf" if i == 5 else v) for i, (n, c, v) in enumerate(PRED)]))
    p["pred_joy"] = write_csv(d / "pred_joy.csv", table(
        [(n, "joy" if i == 1 else c, v) for i, (n, c, v) in enumerate(PRED)]))
    p["pred_dupname"] = write_csv(d / "pred_dupname.csv", table(PRED + [PRED[4]]))
    p["pred_part"] = write_csv(d / "pred_part.csv", table(PRED[:9]))
    p["empty"] = write_csv(d / "empty.csv", "")
    p["header_only"] = write_csv(d / "header_only.csv", "name,discrete,valence\n")
    # manifests for --manifest (names of the session stores are clip0000..clip0119)
    clips = [(f"clip{i:04d}", EMOTIONS[i % 6], 0.0, "train") for i in range(120)]
    p["manifest_dupcol"] = write_csv(d / "manifest_dupcol.csv", table(
        [(n, c, c, v, s) for n, c, v, s in clips], "name,discrete,discrete,valence,split"))
    p["manifest_other"] = write_csv(d / "manifest_other.csv", table(
        [(f"other{i}", c, v, s) for i, (_, c, v, s) in enumerate(clips)],
        "name,discrete,valence,split"))
    p["manifest_scale"] = write_csv(d / "manifest_scale.csv", table(
        [(n, c, 9.0 if i == 7 else v, s) for i, (n, c, v, s) in enumerate(clips)],
        "name,discrete,valence,split"))
    p["noisy"] = write_noisy(p["audio"], d / "noisy.h5", 5)
    p["noisy_other"] = write_noisy(p["audio"], d / "noisy_other.h5", 5, seed=1,
                                   fields={"config": {"dim": 99}})
    # issue 16: stores whose manifest had an actor column (4 actors), one with a gap
    names, y, valence = counted(six)
    actors = [f"actor{i % 4}" for i in range(len(names))]
    p["grouped"] = write_store(d / "grouped.h5", "audio", names, y, valence, dim=6,
                               frame_dim=2, seed=1, extra={"actor": actors})
    p["grouped_gap"] = write_store(d / "grouped_gap.h5", "audio", names, y, valence, dim=6,
                                   frame_dim=2, seed=1,
                                   extra={"actor": ["" if i == 3 else a
                                                    for i, a in enumerate(actors)]})
    p["grouped_run"] = fit_run([p["grouped"]], d / "grouped_run", model="logreg", folds=3,
                               groups="actor", normalize_by="actor", figures=False).run_dir
    svm_names = counted({**six, "surprise": 4})[0]
    p["svm_actors"] = write_csv(d / "svm_actors.csv", table(
        [(n, "", f"actor{i % 4}") for i, n in enumerate(svm_names)], "name,discrete,actor"))
    p["sweep"] = write_csv(d / "audio.sweep.json", json.dumps(
        {"format": 1, "modality": "audio", "manifest": "m.csv", "encoder": "toy-audio", "seed": 0,
         "clean": os.path.relpath(p["audio"], d),
         "conditions": [{"level": "5", "spec": "snr=5,source=white", "label": "five",
                         "store": "noisy.h5"}]}))
    p["run"] = fit_run([p["audio"], p["text"]], d / "run", model="logreg", folds=3,
                       figures=False).run_dir
    # issue 22: strict numbers and headers, stores being written, joins, lonely groups
    p["pred_underscore"] = write_csv(d / "pred_underscore.csv", table(
        [(n, c, "0_5" if i == 2 else v) for i, (n, c, v) in enumerate(PRED)]))
    p["pred_huge"] = write_csv(d / "pred_huge.csv", table(
        [(n, c, "1e999" if i == 3 else v) for i, (n, c, v) in enumerate(PRED)]))
    p["pred_fullwidth"] = write_csv(d / "pred_fullwidth.csv", table(
        [(n, c, "\uff11.\uff15" if i == 4 else v) for i, (n, c, v) in enumerate(PRED)]))
    p["truth_caps"] = write_csv(d / "truth_caps.csv", table(TRUTH, "Name,Discrete,Valence"))
    p["manifest_caps"] = write_csv(d / "manifest_caps.csv", table(
        clips, "name,Discrete,valence,Split"))
    names, y, valence = counted(six)
    p["join_all"] = write_store(d / "join_all.h5", "audio", names, y, valence, dim=6,
                                frame_dim=2, seed=1)
    p["join_part"] = write_store(d / "join_part.h5", "text", names[4:], y[4:], valence[4:],
                                 dim=5, frame_dim=2, seed=2)
    p["one_actor"] = write_store(d / "one_actor.h5", "audio", names, y, valence, dim=6,
                                 frame_dim=2, seed=1, extra={"actor": ["actor0"] * len(names)})
    p["lonely_actor"] = write_csv(d / "lonely_actor.csv", table(
        [(n, "", "actor9" if i == 0 else f"actor{i % 4}") for i, n in enumerate(svm_names)],
        "name,discrete,actor"))
    return {k: str(v) for k, v in p.items()}


# --------------------------------------------------------------------------------------------
# Setups: prepare the test's own folder (placeholders they return join the world's)


def out_is_a_file(tmp: Path, w: dict[str, str]) -> dict[str, str]:
    (tmp / "out").write_text("not a folder")
    return {}


def out_below_a_file(tmp: Path, w: dict[str, str]) -> dict[str, str]:
    (tmp / "plain").write_text("a file")
    return {"out": str(tmp / "plain" / "run")}


def read_only_folder(tmp: Path, w: dict[str, str]) -> dict[str, str]:
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders (out_below_a_file covers the class)")
    (tmp / "ro").mkdir()
    (tmp / "ro").chmod(0o555)
    return {"out": str(tmp / "ro" / "run")}


def earlier_run(tmp: Path, w: dict[str, str]) -> dict[str, str]:
    shutil.copytree(w["run"], tmp / "out")
    (tmp / "out" / "test_predictions.csv").write_text("name,discrete,valence\nstale,sad,0\n")
    return {}


def damaged(name: str, content: bytes) -> Callable:
    def setup(tmp: Path, w: dict[str, str]) -> dict[str, str]:
        shutil.copytree(w["run"], tmp / "run")
        (tmp / "run" / name).write_bytes(content)
        return {"run": str(tmp / "run")}
    return setup


def flipped_bit(tmp: Path, w: dict[str, str]) -> dict[str, str]:
    """A copy of the audio store with one bit of its utterance data flipped on disk."""
    import h5py

    path = tmp / "flipped.h5"
    shutil.copy(w["audio"], path)
    with h5py.File(path, "r") as f:
        ds = f["utterance"]
        if not ds.fletcher32:
            pytest.skip("this mer_features writes stores without checksums")
        offset = ds.id.get_chunk_info(0).byte_offset + 40
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([byte ^ 0x10]))
    return {"flipped": str(path)}


def folder(tmp: Path, w: dict[str, str]) -> dict[str, str]:
    (tmp / "out").mkdir()
    return {}


# --------------------------------------------------------------------------------------------
# Checks of correct results


def _reference(truth, pred) -> tuple[float, float]:
    by_name = {n: (c, v) for n, c, v in pred}
    true = [c for _, c, _ in truth]
    guess = [by_name[n][0] for n, _, _ in truth]
    f1 = f1_score(true, guess, labels=list(EMOTIONS), average="weighted", zero_division=0)
    mse = float(np.mean([(v - by_name[n][1]) ** 2 for n, _, v in truth]))
    return f1, mse


def evaluated_like_sklearn(w, tmp, out, err) -> None:
    scores = json.loads(out)
    f1, mse = _reference(TRUTH, PRED)
    assert scores["n"] == 12 and scores["n_valence"] == 12
    assert scores["f1"] == pytest.approx(f1, abs=1e-12)
    assert scores["mse"] == pytest.approx(mse, abs=1e-12)
    assert scores["metric"] == pytest.approx(f1 - 0.25 * mse, abs=1e-12)
    assert "2 predicted clip(s) have no label and were not scored" in " ".join(scores["notes"])


def evaluated_f1_only(w, tmp, out, err) -> None:
    scores = json.loads(out)
    f1, _ = _reference(TRUTH, PRED)
    assert scores["f1"] == pytest.approx(f1, abs=1e-12) and scores["metric"] == scores["f1"]
    assert scores["mse"] is None and "scored on F1 alone" in " ".join(scores["notes"])


def split_scored_like_sklearn(w, tmp, out, err) -> None:
    metrics = json.loads((tmp / "out" / "metrics.json").read_text())
    preds = list(csv.DictReader(open(tmp / "out" / "test_predictions.csv", encoding="utf-8")))
    from mer_features.store import FeatureStore

    with FeatureStore(w["split"]) as store:
        labels = dict(zip(store.names, store.labels()["discrete"]))
        split = dict(zip(store.names, store.labels()["split"]))
    assert sorted(r["name"] for r in preds) == sorted(n for n, s in split.items() if s == "test")
    f1 = f1_score([labels[r["name"]] for r in preds], [r["discrete"] for r in preds],
                  labels=list(EMOTIONS), average="weighted", zero_division=0)
    assert metrics["test"]["n"] == len(preds) == 18
    assert metrics["test"]["f1"] == pytest.approx(f1, abs=1e-6)


def replaced_earlier_run(w, tmp, out, err) -> None:
    run = tmp / "out"
    info = json.loads((run / "run.json").read_text())
    assert info["model"] == "attention" and info["modalities"][0]["key"] == "audio"
    assert not (run / "test_predictions.csv").exists()       # the earlier run's, now stale
    assert not (run / "models" / "sklearn.joblib").exists()  # the earlier run's model kind
    assert (run / "models" / "heads.pt").is_file()


def swept_like_the_file(w, tmp, out, err) -> None:
    report = json.loads((tmp / "out" / "robustness.json").read_text())
    assert [c["label"] for c in report["conditions"]] == ["clean", "five"]
    assert [Path(m["path"]).samefile(w["audio"]) for m in report["modalities"]] == [True]
    assert report["conditions"][1]["stores"]["audio"]["noise"]["spec"] == "snr=5,source=white"
    assert "| five | 5 |" in out


def predicted_every_clip(w, tmp, out, err) -> None:
    rows = list(csv.DictReader(open(tmp / "p.csv", encoding="utf-8")))
    assert len(rows) == 120 and all(r["discrete"] in EMOTIONS for r in rows)


def predicted_with_the_manifests_groups(w, tmp, out, err) -> None:
    rows = list(csv.DictReader(open(tmp / "p.csv", encoding="utf-8")))
    assert len(rows) == 44 and all(r["discrete"] in EMOTIONS for r in rows)



def joined_with_a_count(w, tmp, out, err) -> None:  # issue 22
    note = ("the inner join (--join inner) kept the 44 clips common to all stores and left out "
            f"4 of '{w['join_all']}'")
    assert f"note: {note}" in err
    assert note in json.loads((tmp / "out" / "metrics.json").read_text())["notes"]
    assert note in (tmp / "out" / "report.md").read_text()


def lonely_group_noted(w, tmp, out, err) -> None:  # issue 22
    assert "note: 1 'actor' group(s) have one clip (actor9): normalised within itself, that " \
           "clip's features are all zero" in err
    assert len(list(csv.DictReader(open(tmp / "p.csv", encoding="utf-8")))) == 44


def pending_parts(tmp: Path, w: dict[str, str]) -> dict[str, str]:
    """A copy of a store with a part file of an extraction that has not finished."""
    store = tmp / "writing.h5"
    shutil.copy(w["few"], store)
    (tmp / "writing.h5.parts").mkdir()
    shutil.copy(w["few"], tmp / "writing.h5.parts" / "part-000001.h5")
    return {"writing": str(store)}


def not_ours(name: str, content: bytes | None = None) -> Callable:
    """A file at {tmp}/NAME that predict --out must not replace (a store's bytes if None)."""
    def setup(tmp: Path, w: dict[str, str]) -> dict[str, str]:
        if content is None:
            shutil.copy(w["audio"], tmp / name)
        else:
            (tmp / name).write_bytes(content)
        return {"target": str(tmp / name)}
    return setup


def nothing_on_stderr(w, tmp, out, err) -> None:  # issue 22: --no-progress
    assert "mer-heads fit:" not in err and "ETA" not in err and "\r" not in err


def same_run_without_figures(w, tmp, out, err) -> None:  # --no-figures
    """No PNG and no image link, and every other file as a run with its figures writes."""
    run, full = tmp / "out", tmp / "with-figures"
    assert not list(run.glob("*.png")) and "confusion.png" not in out
    assert "![" not in (run / "report.md").read_text(encoding="utf-8")
    assert main(shlex.split(FIT_DRAWN.format(audio=w["audio"], out=full))) == 0
    assert sorted(p.name for p in full.glob("*.png")) == ["confusion.png", "reliability.png"]
    assert (run / "metrics.json").read_bytes() == (full / "metrics.json").read_bytes()
    assert ((run / "oof_predictions.csv").read_bytes()
            == (full / "oof_predictions.csv").read_bytes())


def folds_from_the_column(w, tmp, out, err) -> None:  # issue 23
    """Each clip is held out in the fold its 'actor' value names, and the report says so."""
    assert "4 published folds from 'actor'" in out
    assert "speaker-like" not in err  # the folds are the actors: no speaker crosses them
    with FeatureStore(w["grouped"]) as store:
        actor = dict(zip(store.names, store.extra_columns()["actor"]))
    with open(tmp / "out" / "oof_predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["fold"] == actor[r["name"]] for r in rows)
    metrics = json.loads((tmp / "out" / "metrics.json").read_text())
    assert metrics["params"]["folds_from"] == "actor" and metrics["classes"] == list(EMOTIONS)


def ranked_and_fused(w, tmp, out, err) -> None:  # issue 17
    report = json.loads((tmp / "out" / "leaderboard.json").read_text())
    assert [(r["section"], r["name"]) for r in report["rows"]] == [
        ("single", "toy-audio:audio"), ("single", "toy-text:text"),
        ("fusion", "toy-audio:audio+toy-text:text")]
    assert report["joined_clips"] == 120 and "## top-K fusion (logreg)" in out


def described_like_numpy(w, tmp, out, err) -> None:  # issue 17
    stats = json.loads((tmp / "out" / "describe.json").read_text())
    happy = np.array([v for _, c, v in TRUTH if c == "happy"])
    assert stats["classes"]["happy"]["count"] == len(happy) > 1
    assert stats["classes"]["happy"]["mean"] == pytest.approx(happy.mean(), abs=1e-6)
    assert stats["classes"]["happy"]["median"] == pytest.approx(np.median(happy), abs=1e-6)
    assert "eta² =" in out and (tmp / "out" / "describe.png").is_file()

# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    argv: str
    rc: int
    words: tuple[str, ...] = ()
    setup: Callable | None = None
    check: Callable | None = None
    needs_no_gpu: bool = False
    slow: bool = False
    absent: tuple[str, ...] = ()
    """Words the error line must not hold (a wrong flag, impossible advice)."""


def E(name: str, argv: str, *words: str, rc: int = 1, **kw) -> Case:
    return Case(name, argv, rc, words, **kw)


FIT_DRAWN = "fit --features {audio} --out {out} " + FIT
A = FIT_DRAWN + " --no-figures"  # the figures cost ~0.8 s a fit; "fit-no-figures" draws them
CASES = [
    # ---- every numeric hyper-parameter out of range: one line naming flag, value and range
    E("lr-inf", A + " --lr inf", "lr must be a finite number > 0", "got inf", "(--lr)", rc=2),
    E("lr-nan", A + " --lr nan", "lr must be a finite number > 0", "got nan", "(--lr)", rc=2),
    E("lr-zero", A + " --lr 0", "lr must be a finite number > 0", "got 0.0", rc=2),
    E("lr-negative", A + " --lr -0.1", "lr must be a finite number > 0", "got -0.1", rc=2),
    E("lr-diverges", A + " --lr 1e9", "Training diverged", "3 of 3 fold models", "Lower --lr"),
    E("valence-weight-nan", A + " --valence-weight nan", "valence_weight must be a finite "
      "number >= 0", "(--valence-weight)", rc=2),
    E("valence-weight-inf", A + " --valence-weight inf", "valence_weight", "got inf", rc=2),
    E("valence-weight-negative", A + " --valence-weight -1", "valence_weight", ">= 0", rc=2),
    E("C-zero", A + " --model logreg -C 0", "C must be a finite number > 0", "got 0.0", "(-C)",
      rc=2),
    E("C-negative", A + " --model svm -C -2", "C must be a finite number > 0", "got -2.0", rc=2),
    E("C-nan", A + " --model logreg -C nan", "C must be a finite number > 0", "got nan", rc=2),
    E("weight-decay-negative", A + " --weight-decay=-1e-5", "weight_decay must be a finite "
      "number >= 0", "(--weight-decay)", rc=2),
    E("threads-negative", A + " --threads -1", "threads must be an integer >= 1", "got -1",
      "(--threads)", rc=2),
    E("threads-zero", A + " --threads 0", "threads must be an integer >= 1", "got 0", rc=2),
    E("threads-not-an-integer", A + " --threads 1.5", "argument --threads: must be an integer",
      "'1.5'", rc=2),
    E("folds-one", A + " --folds 1", "folds must be an integer >= 2", "got 1", "(--folds)", rc=2),
    E("folds-zero", A + " --folds 0", "folds must be an integer >= 2", "got 0", rc=2),
    E("epochs-zero", A + " --epochs 0", "epochs must be an integer >= 1", "(--epochs)", rc=2),
    E("seeds-zero", A + " --seeds 0", "seeds must be an integer >= 1", "(--seeds)", rc=2),
    E("seed-negative", A + " --seed -1", "seed must be an integer >= 0", "(--seed)", rc=2),
    E("hidden-zero", A + " --hidden 0", "hidden must be an integer >= 1", "(--hidden)", rc=2),
    E("dropout-one", A + " --dropout 1", "dropout must be a number in [0, 1)", "got 1.0", rc=2),
    E("dropout-negative", A + " --dropout -0.1", "dropout must be a number in [0, 1)", rc=2),
    E("dropout-nan", A + " --dropout nan", "dropout must be a number in [0, 1)", "got nan", rc=2),
    E("batch-size-zero", A + " --batch-size 0", "batch_size must be an integer >= 1",
      "(--batch-size)", rc=2),
    E("max-frames-zero", A + " --max-frames 0", "max_frames must be an integer >= 1",
      "(--max-frames)", rc=2),
    E("device-unknown", A + " --device tpu", "device must be cpu, cuda, cuda:N or auto",
      "'tpu'", rc=2),
    E("device-cuda-without-gpu", A + " --device cuda", "torch sees no GPU", "--device cpu",
      needs_no_gpu=True),
    E("model-unknown", A + " --model transformer", "argument --model: invalid choice", rc=2),
    E("precision-unknown", A + " --precision fp8", "argument --precision: invalid choice",
      rc=2),
    E("calibrate-unknown", A + " --calibrate platt", "argument --calibrate: invalid choice",
      rc=2),
    # ---- semi-supervised options
    E("semi-unknown", A + " --semi co-training", "strategy must be one of none, threshold",
      "'co-training' (--semi)", rc=2),
    E("semi-teacher-unknown", A + " --semi threshold --semi-teacher oracle",
      "teacher must be one of fold, ensemble", "(--semi-teacher)", rc=2),
    E("semi-threshold-zero", A + " --semi threshold --semi-threshold 0",
      "threshold must be in (0, 1]", "(--semi-threshold)", rc=2),
    E("semi-threshold-above-one", A + " --semi threshold --semi-threshold 1.5",
      "threshold must be in (0, 1]", "1.5", rc=2),
    E("semi-quantile-negative", A + " --semi class-quantile --semi-quantile -1",
      "quantile must be in [0, 1]", "(--semi-quantile)", rc=2),
    E("semi-rounds-zero", A + " --semi threshold --semi-rounds 0",
      "rounds must be an integer >= 1", "(--semi-rounds)", rc=2),
    E("semi-option-without-semi", A + " --semi-threshold 0.9",
      "--semi-threshold only act(s) with --semi STRATEGY", rc=2),
    E("hide-labels-zero", A + " --hide-labels 0", "fraction of labels to hide must be in "
      "(0, 1)", "(--hide-labels)", rc=2),
    E("hide-labels-one", A + " --hide-labels 1", "must be in (0, 1)", "got 1.0", rc=2),
    E("hide-labels-above-one", A + " --hide-labels 1.5", "must be in (0, 1)", "got 1.5", rc=2),
    E("semi-without-pool", A + " --semi threshold", "needs unlabelled clips", "--hide-labels"),
    E("input-frames-with-logreg", A + " --input frames --model logreg",
      "takes utterance vectors", "input='utterance'", "(--input)"),
    E("layers-unknown", A + " --layers sideways", "argument --layers: invalid choice", rc=2),
    E("join-inner-nothing-common", "fit --features {audio} --features other={few} --join inner "
      "--out {out}", "no clip name in common"),
    E("join-exact-names-differ", "fit --features {audio} --features other={few} --join exact "
      "--out {out}", "disagree on clip names", "--join inner"),
    # ---- --features
    E("features-missing", "fit --features {tmp}/nope.h5 --out {out}", "nope.h5",
      "does not exist"),
    E("features-folder", "fit --features {tmp} --out {out}", "is a folder",
      "give the feature store file"),
    E("features-same-store-twice", "fit --features {audio} --features speech={audio} "
      "--out {out}", "is given twice", "give each modality's store once"),
    E("features-key-twice", "fit --features audio={audio} --features audio={few} --out {out}",
      "the modality key 'audio'", "Name them"),
    E("features-empty-key", "fit --features ={audio} --out {out}", "has an empty KEY",
      "KEY=STORE"),
    E("features-other-modality-under-key", "fit --features audio={text} --out {out}",
      "the store holds text features, not audio"),
    # ---- data-dependent limits
    E("folds-above-smallest-class", "fit --features {few} --out {out} --model logreg --folds 5",
      "--folds 5 needs at least 5 labelled training clips of each class", "'surprise' has 3",
      "lower --folds to 3"),
    E("folds-after-hide-labels", "fit --features {few} --out {out} --model logreg --folds 3 "
      "--hide-labels 0.7", "--folds 3 needs at least 3", "after --hide-labels 0.7"),
    E("class-with-one-clip", "fit --features {single} --out {out} --model logreg --folds 2",
      "'surprise' has 1", "one labelled clip cannot be cross-validated"),
    E("svm-tiny-class", "fit --features {svm} --out {out} --model svm --folds 2",
      "--model svm calibrates its probabilities", "'surprise' has 2 in fold",
      "--model logreg"),
    E("one-class-only", "fit --features {oneclass} --out {out} --model logreg",
      "All 20 labelled training clips have the class 'sad'"),
    E("no-labelled-clip", "fit --features {unlabelled} --out {out} --model logreg",
      "has a discrete label", "--manifest"),
    E("no-ok-clip", "fit --features {failed} --out {out} --model logreg",
      "None of the 48 labelled clips has a usable modality", "mer-features info"),
    E("zero-variance-store", "fit --features {constant} --out {out} --model logreg",
      "zero variance", "mer-features verify"),
    E("float16-inf-store", "fit --features {f16inf} --out {out} --model logreg",
      "infinite features for 1 usable clip", "float16", "mer-features verify",
      "--storage-dtype float32"),
    E("store-with-a-flipped-bit", "fit --features {flipped} --out {out} --model logreg",
      "flipped.h5'", "mer-features verify", setup=flipped_bit),
    E("nan-store", "fit --features {nan} --out {out} --model logreg", "NaN or infinite",
      "mer-features verify"),
    E("train-split-matches-nothing", A + " --train-split dev", "No clip has split 'dev'",
      "(--train-split)"),
    E("test-split-matches-nothing", A + " --test-split dev", "No clip has split 'dev'",
      "(--test-split)"),
    E("test-split-takes-every-clip", A + " --test-split train", "No clip is left to train on",
      "(--test-split)"),
    E("train-split-is-test-split", A + " --train-split train --test-split train",
      "train_split and test_split are both 'train'"),
    E("manifest-of-another-corpus", A + " --manifest {manifest_other}",
      "No clip of the stores is listed in the manifest"),
    E("manifest-duplicated-column", A + " --manifest {manifest_dupcol}",
      "names column(s) discrete more than once"),
    E("manifest-valence-off-scale", A + " --manifest {manifest_scale}",
      "valence 9 of 'clip0007' is outside the MER scale [-5, 5]", "(v - 5) * 1.25"),
    E("store-valence-off-scale", "fit --features {valence7} --out {out} --model logreg",
      "valence label(s) outside the MER scale", "=7", "--manifest"),
    Case("test-split-scored-like-sklearn", "fit --features {split} --out {out} --model logreg "
         "--folds 3 --train-split train --test-split test --no-figures", 0,
         check=split_scored_like_sklearn),
    # ---- label files of `evaluate`
    Case("evaluate-bom-crlf-extra-predictions", "evaluate --pred {pred} --labels {truth} --json",
         0, check=evaluated_like_sklearn),
    Case("evaluate-predictions-without-valence", "evaluate --pred {pred_novalence} --labels "
         "{truth} --json", 0, check=evaluated_f1_only),
    E("evaluate-duplicated-column-pred", "evaluate --pred {pred_dupcol} --labels {truth}",
      "prediction file", "names column(s) discrete more than once"),
    E("evaluate-duplicated-column-labels", "evaluate --pred {pred} --labels {truth_dupcol}",
      "label file", "names column(s) discrete more than once"),
    E("evaluate-labels-off-scale", "evaluate --pred {pred} --labels {truth_scale}",
      "valence 7.5 of 't03' is outside the MER scale", "Rescale valence"),
    E("evaluate-nan-valence", "evaluate --pred {pred_nan} --labels {truth}",
      "valence 'nan' of 't02' is not a finite number"),
    E("evaluate-inf-valence", "evaluate --pred {pred_inf} --labels {truth}",
      "valence '-inf' of 't05' is not a finite number"),
    E("evaluate-unknown-class", "evaluate --pred {pred_joy} --labels {truth}",
      "discrete label 'joy' of 't01' is not one of"),
    E("evaluate-duplicate-name", "evaluate --pred {pred_dupname} --labels {truth}",
      "name 't04' repeats line 6"),
    E("evaluate-part-of-the-labels", "evaluate --pred {pred_part} --labels {truth}",
      "lacks 3 of the 12 labelled clips", "predict every clip"),
    E("evaluate-empty-file", "evaluate --pred {empty} --labels {truth}",
      "lacks column(s) name, discrete; it has no header"),
    E("evaluate-header-only", "evaluate --pred {header_only} --labels {truth}",
      "lacks 12 of the 12 labelled clips"),
    E("evaluate-labels-header-only", "evaluate --pred {pred} --labels {header_only}",
      "has no labelled clip"),
    E("evaluate-labels-folder", "evaluate --pred {pred} --labels {tmp}", "is a folder"),
    # ---- outputs
    E("out-is-a-file", A, "is an existing file", "the run is a folder", setup=out_is_a_file),
    E("out-below-a-file", A, "Cannot write into --out", setup=out_below_a_file),
    E("out-read-only", A, "Cannot write into --out", setup=read_only_folder),
    E("out-holds-a-run", A, "already holds a run", "--overwrite", setup=earlier_run),
    Case("out-holds-a-run-overwrite", A + " --overwrite", 0, setup=earlier_run,
         check=replaced_earlier_run),
    E("predict-out-is-a-folder", "predict --run {run} --out {out}", "--out", "is a folder",
      setup=folder),
    E("predict-out-is-a-store", "predict --run {run} --out {audio}", "exists and is not a "
      "prediction file written by mer-heads", "it is not replaced"),
    E("predict-features-other-order", "predict --run {run} --features {text} --features "
      "{audio} --out {tmp}/p.csv", "trained on modalities ['audio', 'text']"),
    E("predict-join-unknown", "predict --run {run} --join outer --out {tmp}/p.csv",
      "argument --join: invalid choice", rc=2),
    E("predict-run-not-a-run", "predict --run {tmp} --out {tmp}/p.csv",
      "is not a run directory"),
    E("predict-run-damaged-model", "predict --run {run} --out {tmp}/p.csv",
      "is incomplete or damaged", "fit it again",
      setup=damaged("models/sklearn.joblib", b"\x80\x04garbage")),
    E("predict-run-damaged-run-json", "predict --run {run} --out {tmp}/p.csv",
      "cannot be read", "fit it again", setup=damaged("run.json", b"{not json")),
    E("predict-run-damaged-standardizer", "predict --run {run} --out {tmp}/p.csv",
      "is incomplete or damaged", setup=damaged("standardizer.npz", b"PK\x03\x04 truncated")),
    Case("predict-writes-every-clip", "predict --run {run} --out {tmp}/p.csv", 0,
         check=predicted_every_clip),
    # ---- ablate and robustness
    E("ablate-one-modality", "ablate --features {audio} --out {out} " + FIT,
      "needs at least two modalities"),
    E("ablate-train-split", "ablate --features {audio} --features {text} --out {out} "
      "--train-split dev " + FIT, "No clip has split 'dev' (--train-split)"),
    E("ablate-lr-inf", "ablate --features {audio} --features {text} --out {out} --lr inf",
      "lr must be a finite number > 0", rc=2),
    E("robustness-no-condition", "robustness --features {audio} --out {out}",
      "No condition given"),
    E("robustness-condition-label-only", "robustness --features {audio} --out {out} "
      "--condition loud", "names no store"),
    E("robustness-condition-missing-store", "robustness --features {audio} --out {out} "
      "--condition {tmp}/gone.h5", "names no store", "is not an existing file"),
    E("robustness-condition-empty-key", "robustness --features {audio} --out {out} "
      "--condition =x.h5", "has an empty KEY"),
    E("robustness-condition-clean-store", "robustness --features {audio} --out {out} "
      "--condition audio={audio} " + FIT, "records no noise spec"),
    E("robustness-condition-unknown-modality", "robustness --features {audio} --out {out} "
      "--condition video={video} " + FIT, "modality 'video'", "not among the clean"),
    E("robustness-test-split-matches-nothing", "robustness --features {audio} --out {out} "
      "--condition audio={noisy} --test-split dev " + FIT, "No clip has split 'dev' "
      "(--test-split)"),
    E("robustness-lr-nan", "robustness --features {audio} --out {out} --condition "
      "audio={noisy} --lr nan", "lr must be a finite number > 0", rc=2),
    Case("robustness-sweep-file", "robustness --sweep {sweep} --out {out} --model logreg "
         "--folds 3", 0, check=swept_like_the_file),
    E("robustness-sweep-missing", "robustness --sweep {tmp}/gone.json --out {out}",
      "gone.json' (--sweep) does not exist", "mer-features sweep"),
    E("robustness-sweep-not-json", "robustness --sweep {truth} --out {out}",
      "(--sweep) cannot be read", "mer-features sweep"),
    # ---- issue 16: group folds, per-group normalisation, multi-condition, modality dropout
    E("groups-unknown-column", A + " --groups actor", "--groups actor: the clips have no column "
      "'actor'", "re-run the extraction", "--manifest"),
    E("groups-empty", A + " --groups ''", "groups must be the name of a manifest column",
      "(--groups)", rc=2),
    E("groups-control-character", A + " --groups 'ac\ttor'", "groups must be the name of a "
      "manifest column", rc=2),
    E("groups-fewer-than-folds", "fit --features {grouped} --out {out} --model logreg --folds 5 "
      "--groups actor", "--folds 5 needs at least 5 groups of --groups actor", "have 4",
      "lower --folds to 4"),
    E("groups-clip-without-group", "fit --features {grouped_gap} --out {out} --model logreg "
      "--folds 3 --groups actor", "1 labelled training clip(s) have no 'actor' value", "c003"),
    E("groups-after-hide-labels", "fit --features {grouped} --out {out} --model logreg "
      "--folds 5 --groups actor --hide-labels 0.3", "needs at least 5 groups",
      "after --hide-labels 0.3"),
    E("normalize-by-unknown-column", A + " --normalize-by speaker", "--normalize-by speaker: "
      "the clips have no column 'speaker'"),
    E("normalize-by-clip-without-group", "fit --features {grouped_gap} --out {out} --model "
      "logreg --folds 3 --normalize-by actor", "--normalize-by actor: 1 clip(s) have no "
      "'actor' value (c003)"),
    E("normalize-by-empty", A + " --normalize-by ''", "normalize_by must be the name of a "
      "manifest column", "(--normalize-by)", rc=2),
    E("modality-dropout-one", A + " --modality-dropout 1", "modality_dropout must be a number "
      "in [0, 1)", "got 1.0", "(--modality-dropout)", rc=2),
    E("modality-dropout-negative", A + " --modality-dropout -0.2", "modality_dropout must be a "
      "number in [0, 1)", rc=2),
    E("modality-dropout-nan", A + " --modality-dropout nan", "modality_dropout", "got nan", rc=2),
    E("modality-dropout-sklearn", A + " --model logreg --modality-dropout 0.2",
      "modality_dropout masks modalities inside the neural heads", "logreg",
      "(--modality-dropout)", rc=2),
    E("augment-clean-store", A + " --augment audio={audio}", "records no noise spec"),
    E("augment-unknown-modality", A + " --augment video={noisy}", "--augment", "names modality "
      "'video'", "not among the clean --features"),
    E("augment-same-store-twice", A + " --augment {noisy} --augment audio={noisy}",
      "are the same store"),
    E("augment-other-configuration", A + " --augment audio={noisy_other}", "was not extracted "
      "like the clean store", "config.dim"),
    E("augment-missing-store", A + " --augment audio={tmp}/gone.h5", "Cannot read the "
      "corrupted store", "does not exist"),
    E("augment-empty-key", A + " --augment =x.h5", "has an empty KEY"),
    E("robustness-augment-same-draws", "robustness --features {audio} --out {out} --condition "
      "audio={noisy} --augment audio={noisy} " + FIT, "has the noise draws of condition",
      "TRAIN_SEED"),
    E("predict-normalized-run-store-without-column", "predict --run {grouped_run} --features "
      "{svm} --out {tmp}/p.csv", "--normalize-by actor: the clips have no column 'actor'",
      "--manifest"),
    Case("predict-normalized-run-column-from-manifest", "predict --run {grouped_run} "
         "--features {svm} --manifest {svm_actors} --out {tmp}/p.csv", 0,
         check=predicted_with_the_manifests_groups),
    E("predict-manifest-missing", "predict --run {run} --manifest {tmp}/nope.csv --out "
      "{tmp}/p.csv", "nope.csv' does not exist"),
    E("robustness-sets-unknown", "robustness --features {audio} --out {out} --condition "
      "audio={audio} --sets some", "argument --sets: invalid choice", rc=2),
    # ---- issue 17: leaderboard, semi-sweep, describe
    Case("leaderboard-ranks-and-fuses", "leaderboard --features audio={audio} --features "
         "text={text} --out {out} --model logreg --fusion logreg --folds 3 --seeds 1 --top-n 2",
         0, check=ranked_and_fused, slow=True),  # four cross-validations: over 1 s
    E("leaderboard-seeds-zero", "leaderboard --features {audio} --out {out} --seeds 0",
      "argument --seeds: must be an integer >= 1", rc=2),
    E("leaderboard-top-n-zero", "leaderboard --features {audio} --out {out} --top-n 0",
      "argument --top-n: must be an integer >= 1", rc=2),
    E("leaderboard-fusion-unknown", "leaderboard --features {audio} --out {out} --fusion nope",
      "argument --fusion: invalid choice", rc=2),
    E("leaderboard-store-under-another-modality", "leaderboard --features text={audio} --out "
      "{out}", "holds audio features, not text"),
    E("leaderboard-store-twice", "leaderboard --features audio={audio} --features a2={audio} "
      "--out {out}", "is given twice"),
    E("leaderboard-missing-store", "leaderboard --features audio={tmp}/gone.h5 --out {out}",
      "gone.h5' does not exist"),
    E("leaderboard-learned-layers-sklearn", "leaderboard --features {audio} --out {out} --model "
      "logreg --layers learned", "layers='learned' learns layer weights inside the neural heads",
      "(--layers)", rc=2),
    E("fit-learned-layers-sklearn", A + " --model svm --layers learned", "the scikit-learn model "
      "'svm' has no such step", rc=2),
    E("fit-learned-layers-frames", A + " --layers learned --input frames", "frame matrices have "
      "no layers", rc=2),
    E("semi-sweep-values-not-numbers", "semi-sweep --features {audio} --out {out} --semi "
      "threshold --values 0.5,abc", "--values must be comma-separated numbers", "'abc'", rc=2),
    E("semi-sweep-value-twice", "semi-sweep --features {audio} --out {out} --semi threshold "
      "--values 0.5,0.5", "lists a value twice", rc=2),
    E("semi-sweep-threshold-zero", "semi-sweep --features {audio} --out {out} --semi threshold "
      "--values 0,0.5", "--values: 0 is not a confidence threshold in (0, 1]",
      "(--semi threshold)", rc=2, absent=("--semi-threshold",)),
    E("semi-sweep-quantile-above-one", "semi-sweep --features {audio} --out {out} --semi "
      "class-quantile --values 1.2", "--values: 1.2 is not a class quantile in [0, 1]", rc=2),
    # ---- issue 23: label sets, targets, published folds, metric (every command that has them)
    E("fit-classes-one", A + " --classes happy", "classes must name at least two classes",
      "(--classes)", rc=2),
    E("fit-label-map-missing", A + " --label-map {tmp}/gone.json", "--label-map",
      "gone.json' not found"),
    E("fit-folds-from-unknown-column", "fit --features {audio} --out {out} --folds-from nosuch",
      "--folds-from nosuch: the clips have no column 'nosuch'"),
    E("fit-targets-not-numbers", "fit --features {grouped} --out {out} --model logreg --folds 3 "
      "--targets actor", "--targets actor", "not a finite decimal number"),
    E("fit-metric-unknown", A + " --metric accuracy", "argument --metric: invalid choice", rc=2),
    Case("fit-folds-from-column", "fit --features {grouped} --out {out} --model logreg "
         "--folds-from actor --targets none --no-figures", 0, check=folds_from_the_column),
    E("ablate-classes-miss-labels", "ablate --features {audio} --features {text} --out {out} "
      "--classes happy,sad", "outside the classes --classes happy,sad", "'neutral'"),
    E("ablate-label-map-not-a-map", "ablate --features {audio} --features {text} --out {out} "
      "--label-map {truth}", "line 1 must be the header 'from,to'"),
    E("ablate-folds-from-and-folds", "ablate --features {audio} --features {text} --out {out} "
      "--folds-from actor --folds 3", "--folds-from takes the folds from the column",
      "--folds would draw others", "Give one of the two", rc=2),
    E("ablate-targets-labels-column", "ablate --features {audio} --features {text} --out {out} "
      "--targets discrete", "targets must be numeric columns; 'discrete' is not one", rc=2),
    E("ablate-metric-unknown", "ablate --features {audio} --features {text} --out {out} "
      "--metric f2", "argument --metric: invalid choice", rc=2),
    E("robustness-classes-twice", "robustness --features {audio} --out {out} --condition "
      "audio={noisy} --classes happy,sad,happy", "names happy twice", rc=2),
    E("robustness-label-map-missing", "robustness --features {audio} --out {out} --condition "
      "audio={noisy} --label-map {tmp}/gone.csv", "gone.csv' not found"),
    E("robustness-folds-from-unknown-column", "robustness --features {audio} --out {out} "
      "--condition audio={noisy} --folds-from nosuch", "the clips have no column 'nosuch'"),
    E("robustness-targets-twice", "robustness --features {audio} --out {out} --condition "
      "audio={noisy} --targets valence,valence", "targets must be distinct columns", rc=2),
    E("robustness-metric-unknown", "robustness --features {audio} --out {out} --condition "
      "audio={noisy} --metric auc", "argument --metric: invalid choice", rc=2),
    E("leaderboard-classes-miss-labels", "leaderboard --features {audio} --out {out} --classes "
      "happy,sad", "outside the classes --classes happy,sad"),
    E("leaderboard-label-map-not-a-map", "leaderboard --features {audio} --out {out} "
      "--label-map {truth}", "line 1 must be the header 'from,to'"),
    E("leaderboard-folds-from-clip-without-fold", "leaderboard --features {grouped_gap} --out "
      "{out} --folds-from actor --model logreg", "--folds-from actor: 1 labelled training "
      "clip(s) have no 'actor' value"),
    E("leaderboard-targets-unknown-column", "leaderboard --features {audio} --out {out} "
      "--targets arousal", "the clips have no column 'arousal'"),
    E("leaderboard-metric-unknown", "leaderboard --features {audio} --out {out} --metric mse",
      "argument --metric: invalid choice", rc=2),
    E("semi-sweep-classes-one", "semi-sweep --features {audio} --out {out} --semi threshold "
      "--values 0.5 --classes sad", "classes must name at least two classes", rc=2),
    E("semi-sweep-label-map-missing", "semi-sweep --features {audio} --out {out} --semi "
      "threshold --values 0.5 --label-map {tmp}/gone.json", "gone.json' not found"),
    E("semi-sweep-folds-from-unknown-column", "semi-sweep --features {audio} --out {out} --semi "
      "threshold --values 0.5 --folds-from nosuch", "the clips have no column 'nosuch'"),
    E("semi-sweep-targets-labels-column", "semi-sweep --features {audio} --out {out} --semi "
      "threshold --values 0.5 --targets split", "'split' is not one", rc=2),
    E("semi-sweep-metric-unknown", "semi-sweep --features {audio} --out {out} --semi threshold "
      "--values 0.5 --metric top5", "argument --metric: invalid choice", rc=2),
    E("semi-sweep-strategy-none", "semi-sweep --features {audio} --out {out} --semi none "
      "--values 0.5", "argument --semi: invalid choice", rc=2),
    E("semi-sweep-hide-everything", "semi-sweep --features {audio} --out {out} --semi threshold "
      "--values 0.5 --hide-labels 1", "labels to hide must be in (0, 1)", rc=2),
    E("semi-sweep-no-pool", "semi-sweep --features {audio} --out {out} --semi weak-reinforce "
      "--values 0.8 --semi-rounds 1 --semi-teacher fold " + FIT + " --model logreg",
      "needs unlabelled clips", "--hide-labels"),
    # ---- issue 22: the command line
    E("misspelt-option-named-first", "fit --featrues {audio}", "unrecognized argument: "
      "--featrues (did you mean --features?)", rc=2),
    E("prefix-of-an-option", "fit --feature {audio} --out {out}", "unrecognized argument: "
      "--feature (did you mean --features?)", rc=2),
    E("prefix-of-folds", A + " --fold 3", "--fold (did you mean --folds?)", rc=2),
    E("unknown-options-all-named", A + " --lrr 0.1 --bogus", "unrecognized arguments: --lrr "
      "(did you mean --lr?), --bogus", rc=2),
    E("unknown-command", "fitt --features {audio}", "unknown command 'fitt'; did you mean "
      "'fit'?", rc=2),
    E("lr-with-underscore", A + " --lr 1_0", "argument --lr: must be a number; got '1_0'", rc=2),
    E("folds-with-underscore", A + " --folds 1_0", "argument --folds: must be an integer; got "
      "'1_0'", rc=2),
    E("semi-sweep-values-underscore", "semi-sweep --features {audio} --out {out} --semi "
      "threshold --values 0_5", "--values must be comma-separated numbers", "'0_5'", rc=2),
    # ---- issue 22: strict numbers and headers in label files
    E("evaluate-valence-with-underscore", "evaluate --pred {pred_underscore} --labels {truth}",
      "valence '0_5' of 't02' is not a number"),
    E("evaluate-valence-overflows", "evaluate --pred {pred_huge} --labels {truth}",
      "valence '1e999' of 't03' is not a finite number"),
    E("evaluate-valence-fullwidth-digits", "evaluate --pred {pred_fullwidth} --labels {truth}",
      "of 't04' is not a number"),
    E("evaluate-capitalised-header", "evaluate --pred {pred} --labels {truth_caps}",
      "has column(s) 'Name', 'Discrete', 'Valence'", "only in letter case",
      "Rename them to name, discrete, valence"),
    E("manifest-capitalised-header", A + " --manifest {manifest_caps}", "'Discrete', 'Split'",
      "only in letter case"),
    # ---- issue 22: progress, held-out scoring, the semi-sweep's noise
    Case("fit-no-progress", A + " --no-progress", 0, check=nothing_on_stderr),
    Case("fit-no-figures", FIT_DRAWN + " --no-figures", 0, check=same_run_without_figures,
         slow=True),  # two fits, over 1 CPU s
    E("ablate-no-progress", "ablate --features {audio} --out {out} --no-progress",
      "needs at least two modalities"),
    E("robustness-no-progress", "robustness --features {audio} --out {out} --no-progress",
      "No condition given"),
    E("leaderboard-no-progress", "leaderboard --features audio={tmp}/gone.h5 --out {out} "
      "--no-progress", "gone.h5' does not exist"),
    E("semi-sweep-baseline-seeds-zero", "semi-sweep --features {audio} --out {out} --semi "
      "threshold --values 0.5 --baseline-seeds 0 --no-progress",
      "argument --baseline-seeds: must be an integer >= 1", rc=2),
    E("evaluate-split-absent", "evaluate --pred {pred} --labels {truth} --split test",
      "has split 'test' (--split)"),
    E("evaluate-run-not-a-run", "evaluate --pred {pred} --labels {truth} --run {tmp}",
      "--run", "give the --out of a finished `mer-heads fit`"),
    # ---- issue 22: nothing lost, nothing silent
    E("predict-out-is-a-copy-of-a-store", "predict --run {run} --out {target}",
      "exists and is not a prediction file written by mer-heads", setup=not_ours("copy.csv")),
    E("predict-out-is-a-manifest", "predict --run {run} --out {target}", "is not a prediction "
      "file", setup=not_ours("m.csv", b"name,video,discrete\nx,x.mp4,sad\n")),
    E("predict-out-is-a-label-file", "predict --run {run} --out {target}", "is not a "
      "prediction file", setup=not_ours("train-label.csv", b"name,discrete,valence\n"
                                        b"a,sad,-2.5\n")),
    E("predict-out-is-empty", "predict --run {run} --out {target}", "is not a prediction file",
      setup=not_ours("empty.csv", b"")),
    E("store-being-written", "fit --features {writing} --out {out} --model logreg",
      "has 1 part file(s) of an unfinished extraction", "writing.h5.parts",
      "re-run the same `mer-features extract` command", setup=pending_parts),
    Case("join-inner-counts-what-it-left-out", "fit --features {join_all} --features "
         "{join_part} --join inner --out {out} --model logreg --folds 2 --no-figures", 0,
         check=joined_with_a_count),
    Case("predict-normalized-group-of-one", "predict --run {grouped_run} --features {svm} "
         "--manifest {lonely_actor} --out {tmp}/p.csv", 0, check=lonely_group_noted),
    E("groups-one-group-at-two-folds", "fit --features {one_actor} --out {out} --model logreg "
      "--folds 2 --groups actor", "have 1 (actor0): one group cannot be cross-validated",
      absent=("lower --folds",)),
    Case("describe-labels-like-numpy", "describe --labels {truth} --out {out}", 0,
         check=described_like_numpy),
    E("describe-two-sources", "describe --labels {truth} --manifest {truth} --out {out}",
      "Give exactly one source of labels", "got --manifest, --labels"),
    E("describe-no-source", "describe --out {out}", "Give exactly one source", "got none"),
    E("describe-no-valence", "describe --labels {pred_novalence} --out {out}",
      "has both a discrete class and a valence label"),
    E("describe-missing-labels", "describe --labels {tmp}/nope.csv --out {out}",
      "nope.csv' does not exist"),
    E("describe-stores-disagree", "describe --features {audio} --features a2={svm} --join exact "
      "--out {out}", "disagree on clip names"),
    E("describe-earlier-result", "describe --labels {truth} --out {tmp}", "already holds a "
      "description", "--overwrite", setup=lambda tmp, w: _described(tmp, w)),
    # ---- compare (issue 26; more in tests/heads/test_compare.py)
    E("compare-one-run", "compare {run} --out {out}", "compare needs at least two runs", rc=2),
    E("compare-resamples-zero", "compare {run} {grouped_run} --resamples 0 --out {out}",
      "resamples must be an integer >= 1", "(--resamples)", rc=2),
    E("compare-permutations-negative", "compare {run} {grouped_run} --permutations -5 "
      "--out {out}", "permutations must be an integer >= 1", "(--permutations)", rc=2),
    E("compare-seed-negative", "compare {run} {grouped_run} --seed -1 --out {out}",
      "seed must be an integer >= 0", rc=2),
    E("compare-pairs-unknown", "compare {run} {grouped_run} --pairs some --out {out}",
      "argument --pairs: invalid choice", rc=2),
    E("compare-correction-unknown", "compare {run} {grouped_run} --correction bonferroni "
      "--out {out}", "argument --correction: invalid choice", rc=2),
    E("compare-metric-unknown", "compare {run} {grouped_run} --metric auc --out {out}",
      "argument --metric: invalid choice", rc=2),
    E("compare-missing-run", "compare {run} {tmp}/nope --out {out}", "nope' does not exist"),
    E("compare-unknown-groups", "compare {run} {twin} --groups speaker --out {out}",
      "no source has the column 'speaker'", setup=lambda tmp, w: _twins(tmp, w)),
    E("compare-manifest-unused", "compare {run} {twin} --groups none --manifest {truth} "
      "--out {out}", "add --groups COL or drop --manifest", "(--manifest)",
      setup=lambda tmp, w: _twins(tmp, w)),
    Case("compare-three-common-clips", "compare {run} {twin} {twin2} --common-clips --seed 1 "
         "--resamples 20 --permutations 20 --metric ua --pairs all --correction bh "
         "--overwrite --out {out}", 0, setup=lambda tmp, w: _twins(tmp, w),
         check=lambda w, tmp, out, err: _compared(tmp)),
]


def _twins(tmp: Path, w: dict[str, str]) -> dict[str, str]:
    """Two copies of the run {run}: the second without its first clip."""
    shutil.copytree(w["run"], tmp / "twin")
    shutil.copytree(w["run"], tmp / "twin2")
    oof = tmp / "twin2" / "oof_predictions.csv"
    lines = oof.read_text(encoding="utf-8").splitlines(keepends=True)
    oof.write_text("".join([lines[0], *lines[2:]]), encoding="utf-8")
    return {"twin": str(tmp / "twin"), "twin2": str(tmp / "twin2")}


def _compared(tmp: Path) -> None:
    stats = json.loads((tmp / "out" / "compare.json").read_text())
    assert len(stats["comparisons"]) == 3 and stats["correction"] == "bh"
    assert stats["metric"] == "ua" and stats["seed"] == 1
    assert stats["clips"]["more"] == {"run": 1, "twin": 1, "twin2": 0}


def _described(tmp: Path, w: dict[str, str]) -> dict[str, str]:
    (tmp / "describe.json").write_text("{}")
    return {}


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if not line.startswith("note: ")]


@pytest.mark.parametrize("case", [pytest.param(c, id=c.name, marks=[pytest.mark.slow] * c.slow)
                                  for c in CASES])
def test_adversarial(case: Case, world: dict[str, str], tmp_path: Path, capsys) -> None:
    if case.needs_no_gpu:
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is visible")
    paths = {**world, "tmp": str(tmp_path), "out": str(tmp_path / "out")}
    if case.setup is not None:
        paths.update(case.setup(tmp_path, world))
    argv = [arg.format(**paths) for arg in shlex.split(case.argv)]
    if case.rc == 2:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        line = err.strip().splitlines()[-1]
    else:
        rc = main(argv)
        captured = capsys.readouterr()
        err = captured.err
        assert rc == case.rc, err
        lines = _error_lines(err)
        if case.rc == 0:
            assert not any(line.startswith("error") for line in lines), err
            case.check(world, tmp_path, captured.out, err)
            line = ""
        else:
            assert len(lines) == 1 and lines[0].startswith("error: "), err
            line = lines[0]
            assert "internal error" not in line
    assert "Traceback" not in err
    for words in case.words:
        assert words in line, f"{words!r} not in {line!r}"
    for words in case.absent:
        assert words not in line, f"{words!r} in {line!r}"
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp-" in p.name or ".write-test" in p.name]
    assert not leftovers
    if case.rc and not case.setup:
        assert not (tmp_path / "out").exists()  # a failed command leaves no empty --out behind


def test_the_table_uses_every_mer_heads_option() -> None:
    """Every option of every command appears in at least one case."""
    from mer_heads.cli import build_parser

    used = " ".join(c.argv.replace("=-", " -") for c in CASES) + " " + FIT + " "
    commands = build_parser()._subparsers._group_actions[0].choices
    lacking = [f"{name} {action.option_strings[0]}" for name, command in commands.items()
               for action in command._actions
               if action.option_strings and action.dest not in ("help", "debug")
               and not any(flag + " " in used for flag in action.option_strings)]
    assert lacking == []
    assert all(any(c.argv.startswith(name + " ") for c in CASES) for name in commands)


# --------------------------------------------------------------------------------------------
# The command line's last line of defence


def test_unexpected_exceptions_are_one_line_and_debug_shows_them(world, tmp_path, capsys,
                                                                  monkeypatch) -> None:
    import mer_heads.metrics

    def boom(*args, **kwargs):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(mer_heads.metrics, "evaluate_files", boom)
    argv = ["evaluate", "--pred", world["pred"], "--labels", world["truth"]]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err == ("error: internal error: RuntimeError: boom second line (re-run with --debug "
                   "for the traceback, and please report it)\n")
    with pytest.raises(RuntimeError, match="boom"):
        main(["--debug", *argv])
    with pytest.raises(RuntimeError, match="boom"):
        main([*argv, "--debug"])


def test_store_errors_from_mer_features_are_one_line(world, monkeypatch, capsys) -> None:
    from mer_features.store import StoreError
    import mer_heads.metrics

    def damaged(*args, **kwargs):
        raise StoreError("Store 'x.h5' is damaged.\nMove it away.")

    monkeypatch.setattr(mer_heads.metrics, "evaluate_files", damaged)
    assert main(["evaluate", "--pred", world["pred"], "--labels", world["truth"]]) == 1
    assert capsys.readouterr().err == "error: Store 'x.h5' is damaged. Move it away.\n"


@pytest.mark.slow
@pytest.mark.parametrize("unbuffered", [False, True])
def test_a_closed_output_pipe_exits_quietly(world, unbuffered: bool) -> None:
    code = ("import sys; from mer_heads.cli import main; sys.exit(main(sys.argv[1:]))")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if unbuffered:  # the print itself fails, not the flush at the end
        env["PYTHONUNBUFFERED"] = "1"
    proc = subprocess.Popen([sys.executable, "-c", code, "evaluate", "--pred", world["pred"],
                             "--labels", world["truth"], "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # the reader is gone before the command prints
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 141 and b"Traceback" not in err and err == b""


def test_damaged_store_reads_become_one_data_error(world, tmp_path, monkeypatch) -> None:
    """A store that fails while its features are read (a bad chunk, a checksum) is named."""
    from mer_features.store import FeatureStore
    from mer_heads.data.dataset import load_dataset
    from mer_heads.errors import DataError

    def bad_chunk(self, names=None):
        raise OSError("Can't read data (filter returned failure during read)")

    monkeypatch.setattr(FeatureStore, "utterances", bad_chunk)
    with pytest.raises(DataError, match=r"audio.h5' cannot be read \(OSError: Can't read data.*"
                                        r"mer-features verify"):
        load_dataset([world["audio"]])


def test_writes_are_atomic_and_leave_nothing_behind(tmp_path) -> None:
    from mer_heads.errors import OutputError
    from mer_heads.outputs import atomic_write, write_text

    target = tmp_path / "a.txt"
    write_text(target, "first\n")
    with pytest.raises(ZeroDivisionError):
        with atomic_write(target) as f:
            f.write("half")
            1 / 0
    assert target.read_text() == "first\n" and sorted(tmp_path.iterdir()) == [target]
    (tmp_path / "d").mkdir()
    with pytest.raises(OutputError, match=r"Cannot write '.*d': it is a folder"):
        write_text(tmp_path / "d", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "d"]


def test_predict_removes_a_stale_imputed_list(world, tmp_path) -> None:
    """The list of imputed clips always describes the prediction file beside it."""
    from mer_heads.experiments.fit import predict_run

    out = tmp_path / "p.csv"
    (tmp_path / "p.imputed.txt").write_text("clip9999\n")
    assert predict_run(world["run"], out).imputed == ["clip0119"]
    assert (tmp_path / "p.imputed.txt").read_text() == "clip0119\n"
    # stores of the same configuration (fingerprints) where every clip is usable
    names, y, valence = counted({e: 2 for e in EMOTIONS})
    usable = [write_store(tmp_path / f"{key}.h5", key, names, y, valence, dim=dim, frame_dim=fd,
                          seed=5) for key, dim, fd in (("audio", 12, 5), ("text", 10, 4))]
    result = predict_run(world["run"], out, usable)
    assert result.n == 12 and result.imputed == []
    assert not (tmp_path / "p.imputed.txt").exists()


def test_diverging_late_keeps_the_best_finite_epoch(world) -> None:
    """A model whose outputs turn non-finite after a finite epoch keeps that epoch (a note)."""
    import torch

    from mer_heads.data.dataset import load_dataset
    from mer_heads.heads import training
    from mer_heads.protocol import CrossValidatedHead

    calls = {"n": 0}
    real = training.predict_rows

    def nan_after_first_epoch(module, tensors, folds, rows):
        proba, valence = real(module, tensors, folds, rows)
        calls["n"] += 1
        if calls["n"] > 1:
            proba = torch.full_like(proba, float("nan"))
        return proba, valence

    data = load_dataset([world["audio"]])
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(training, "predict_rows", nan_after_first_epoch)
        est = CrossValidatedHead(**{**FAST, "epochs": 3}).fit(data)
    assert est.best_epochs_.tolist() == [1, 1, 1]
    assert np.isfinite(est.oof_proba_).all()
    assert any("diverged" in n and "after their best epoch" in n for n in est.notes_)


def test_semi_never_adds_a_class_the_fold_has_no_labelled_clip_of(tmp_path, monkeypatch) -> None:
    """A teacher's top class that no labelled training clip of the fold has is not used."""
    import mer_heads.experiments.semi as semi
    from mer_heads.data.dataset import load_dataset

    counts = {e: 6 for e in EMOTIONS if e != "surprise"}
    names, y, valence = counted({**counts, "neutral": 16})
    pool = {n: "" for n in names[-10:]}  # ten neutral clips become the unlabelled pool
    path = write_store(tmp_path / "a.h5", "audio", names, y, valence, dim=6, frame_dim=2,
                       seed=3, labels_override=pool)
    data = load_dataset([path])
    monkeypatch.setattr(semi, "select", lambda settings, proba, counts: np.where(
        np.arange(len(proba)) % 2 == 0, EMOTIONS.index("surprise"), EMOTIONS.index("happy")))
    result = semi.fit_semi(data, semi.SemiSettings("threshold"), {"model": "logreg", "folds": 3})
    added = result.rounds[1]["added"]
    assert added["surprise"] == 0 and added["happy"] == 5  # half the pool, in every fold
    assert (result.selected[0] != EMOTIONS.index("surprise")).all()


# --------------------------------------------------------------------------------------------
# issue 22: the command line's surface, exit codes, and outputs that are never lost


def test_version(capsys) -> None:
    from mer_heads import __version__

    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out == f"mer-heads {__version__}\n"


def test_every_option_has_help_and_shows_its_default() -> None:
    """--help is the reference a user reads: every option says what it does, and every option
    that takes a value and may be left out says what happens then."""
    from mer_heads.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    lacking = []
    for name, command in [("", parser), *commands.items()]:
        for action in command._actions:
            if not action.option_strings or action.help == argparse.SUPPRESS:
                continue
            flag = f"{name} {action.option_strings[0]}".strip()
            if not action.help:
                lacking.append(f"{flag}: no help")
            elif (action.nargs != 0 and not action.required and "default" not in action.help
                  and action.dest not in ("help", "version")):
                lacking.append(f"{flag}: no default shown")
    assert lacking == []


def test_no_parser_takes_abbreviations() -> None:
    from mer_heads.cli import build_parser

    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    assert not parser.allow_abbrev and not any(c.allow_abbrev for c in commands.values())


def test_a_locked_out_folder_refuses_a_second_command_at_once(world, tmp_path, capsys) -> None:
    from mer_heads.outputs import lock_folder

    out = tmp_path / "run"
    with lock_folder(out):
        rc = main(["fit", "--features", world["few"], "--out", str(out), "--model", "logreg"])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith(f"error: --out '{out}' is being written by another "
                                      f"mer-heads command (pid {os.getpid()}")
    assert not out.exists() and list(tmp_path.iterdir()) == []  # lock file removed, no --out


@pytest.mark.slow
def test_two_fits_into_one_new_out_at_once(world, tmp_path) -> None:
    """The second of two concurrent fits into one new --out fails at once, naming the first;
    the first finishes and its result is complete."""
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "mer_heads.cli", "fit", "--features", world["audio"],
            "--out", str(out), *shlex.split(FIT)]
    slow = [*argv, "--epochs", "1000"]  # still training when the second one starts
    first = subprocess.Popen(slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lock = tmp_path / ".run.lock"
    for _ in range(600):
        if lock.exists() and lock.read_text().strip() or first.poll() is not None:
            break
        time.sleep(0.05)
    second = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    _, first_err = first.communicate(timeout=600)
    assert first.returncode == 0, first_err
    assert second.returncode == 1
    assert second.stderr.startswith(f"error: --out '{out}' is being written by another "
                                    f"mer-heads command (pid {first.pid}")
    assert json.loads((out / "run.json").read_text())["model"] == "attention"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


KILLER = """
import os, signal, sys
from mer_heads import outputs
from mer_heads.experiments.fit import fit_run

kill_at, exchange = int(sys.argv[1]), sys.argv[2] == "exchange"
steps = []

def step(kind, fn):
    def wrapped(*args, **kwargs):
        steps.append(kind)
        if len(steps) == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return fn(*args, **kwargs)
    return wrapped

os.replace = step("write", os.replace)   # every file written into the staging folder
os.rename = step("rename", os.rename)    # carrying a user's file, the two-rename swap
outputs._exchange = step("exchange", outputs._exchange if exchange else lambda a, b: False)
outputs.shutil.rmtree = step("rmtree", outputs.shutil.rmtree)
fit_run([sys.argv[3]], sys.argv[4], model="logreg", folds=3, seed=7, overwrite=True)
print(" ".join(steps))
"""


@pytest.mark.slow
@pytest.mark.parametrize("swap", ["exchange", "two-renames"])
def test_a_kill_at_any_step_of_overwrite_leaves_the_old_run_or_the_new(world, tmp_path,
                                                                       swap) -> None:
    """SIGKILL while `fit --overwrite` writes its first and its last file, and at every step of
    the swap (carrying a user's file over, the rename(s), removing the old run): the folder
    then holds the old run or the new one, complete (after the next command's recovery where
    the swap takes two renames), and the user's file in it survives."""
    from mer_heads.outputs import recover
    from mer_heads.rundir import load_run

    out = tmp_path / "run"
    fit_run([world["few"]], out, model="logreg", folds=3, seed=1)
    old = (out / "run.json").read_bytes()
    (out / "notes.txt").write_text("mine\n")
    script = tmp_path / "killer.py"
    script.write_text(KILLER)

    def fit_killed_at(step: int) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(step), swap, world["few"],
                               str(out)], capture_output=True, text=True, timeout=600)

    steps = fit_killed_at(0).stdout.split()  # the steps of an overwrite, in order
    writes = [i + 1 for i, kind in enumerate(steps) if kind == "write"]
    assert len(writes) >= 5 and steps[len(writes):][-1] == "rmtree"
    fit_run([world["few"]], out, model="logreg", folds=3, seed=1, overwrite=True)
    # every step of the swap, and (once) the first and the last file of the new run
    points = [*([writes[0], writes[-1]] if swap == "exchange" else []),
              *range(len(writes) + 1, len(steps) + 1)]
    outcomes = []
    for kill_at in points:
        proc = fit_killed_at(kill_at)
        assert proc.returncode == -9, proc.stderr
        if swap == "exchange":  # nothing to recover: the swap is one atomic rename
            assert (out / "run.json").is_file(), kill_at
        recover(out)
        info = (out / "run.json").read_bytes()
        new = json.loads(info)["params"]["seed"] == 7
        assert new or info == old, kill_at
        load_run(out)  # complete: every file of the run reads back
        assert (out / "notes.txt").read_text() == "mine\n", kill_at
        left = sorted(p.name for p in tmp_path.iterdir() if p.name != ".run.lock")
        assert left == ["killer.py", "run"], (kill_at, left)  # the lock file of a killed fit
        outcomes.append("new" if new else "old")              # goes with the next command
        if new:  # killed after the swap: start the next try from an old run again
            fit_run([world["few"]], out, model="logreg", folds=3, seed=1, overwrite=True)
            assert (out / "run.json").read_bytes() == old
    assert "old" in outcomes and outcomes[-1] == "new", outcomes


@pytest.mark.slow
def test_a_failed_overwrite_leaves_the_earlier_run_untouched(world, tmp_path,
                                                              monkeypatch) -> None:
    import mer_heads.experiments.fit as fit

    out = tmp_path / "run"
    fit_run([world["few"]], out, model="logreg", folds=3, seed=1)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fit, "markdown_report", broken)
    with pytest.raises(OSError):
        fit_run([world["few"]], out, model="logreg", folds=3, seed=2, overwrite=True)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_predict_replaces_its_own_prediction_file(world, tmp_path) -> None:
    from mer_heads.experiments.fit import predict_run
    from mer_heads.outputs import is_prediction_file

    out = tmp_path / "p.csv"
    predict_run(world["run"], out)
    first = out.read_bytes()
    assert is_prediction_file(out)
    out.write_bytes(first.replace(b"clip0000,", b"renamed,", 1))  # still of its kind
    predict_run(world["run"], out)  # a file it wrote is replaced
    assert out.read_bytes() == first
    assert not is_prediction_file(world["truth"])  # MER 2023's label format: short valences


@pytest.mark.slow
def test_a_swap_that_fails_half_way_keeps_the_earlier_run(world, tmp_path, monkeypatch) -> None:
    """Without RENAME_EXCHANGE the swap takes two renames; when the second fails, the earlier
    run goes back in place, and the error says so."""
    from mer_heads import outputs
    from mer_heads.errors import OutputError

    out = tmp_path / "run"
    fit_run([world["few"]], out, model="logreg", folds=3, seed=1)
    before = (out / "run.json").read_bytes()
    real = os.rename
    calls = []

    def second_fails(a, b):
        calls.append((a, b))
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(a, b)

    monkeypatch.setattr(outputs, "_exchange", lambda a, b: False)
    monkeypatch.setattr(outputs.os, "rename", second_fails)
    with pytest.raises(OutputError, match=r"Cannot put the new run into --out .*No space left "
                                          r"on device; the earlier content of the folder is kept"):
        fit_run([world["few"]], out, model="logreg", folds=3, seed=2, overwrite=True)
    assert (out / "run.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
