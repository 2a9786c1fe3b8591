"""mer_heads.experiments.robustness: train clean, score corrupted copies of the held-out clips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from mer_features import EMOTIONS
from mer_features.noise import describe_noise
from mer_features.store import FeatureStore
from mer_heads.cli import main
from mer_heads.data.dataset import load_dataset
from mer_heads.errors import DataError
from mer_heads.experiments.conditions import differing_fields, parse_condition
from mer_heads.experiments.fit import fit_run
from mer_heads.experiments.robustness import robustness
from mer_heads.protocol import CrossValidatedHead

from ..synthetic_stores import FAST, clip_labels, write_noisy, write_store


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Clean audio and text stores of 90 clips and audio at 20, 5 and -10 dB."""
    folder = tmp_path_factory.mktemp("robust")
    names, y, valence = clip_labels(90, seed=3)
    paths = {"audio": write_store(folder / "audio.h5", "audio", names, y, valence, dim=12,
                                  frame_dim=5, seed=31, strength=1.2),
             "text": write_store(folder / "text.h5", "text", names, y, valence, dim=10,
                                 frame_dim=4, seed=32, strength=0.6)}
    for snr in (20, 5, -10):
        paths[f"audio{snr}"] = write_noisy(paths["audio"], folder / f"audio{snr}.h5", snr)
    return paths


def _row(result, condition: str, modalities: str) -> dict:
    return next(r for r in result.rows
                if r["condition"] == condition and r["modalities"] == modalities)


@pytest.mark.slow
def test_clean_equals_cross_validation_and_noise_lowers_audio(corpus, tmp_path: Path):
    params = dict(model="logreg", folds=3, seed=2)
    result = robustness(
        [f"audio={corpus['audio']}", f"text={corpus['text']}"],
        [[f"audio={corpus['audio5']}"], ["worst", f"audio={corpus['audio-10']}"],
         [f"audio={corpus['audio20']}"]], tmp_path / "out", **params)
    # Conditions labelled from the stores' noise specs, clean first, then by falling SNR.
    assert [c.label for c in result.conditions] == ["clean", "20 dB", "5 dB", "worst"]
    assert [c.snr_db for c in result.conditions] == [None, 20.0, 5.0, -10.0]
    assert ["+".join(s) for s in result.sets] == ["audio", "text", "audio+text"]
    for combo in result.sets:
        data = load_dataset([(k, corpus[k]) for k in combo])
        cv = CrossValidatedHead(**params).fit(data).cv_scores_
        clean = _row(result, "clean", "+".join(combo))
        assert (clean["f1"], clean["mse"], clean["clips"]) == (cv.f1, cv.mse, cv.n)
    # Text is never corrupted: its column does not move; audio falls with the SNR.
    assert len({_row(result, c.label, "text")["f1"] for c in result.conditions}) == 1
    audio = [_row(result, c, "audio")["f1"] for c in ("clean", "5 dB", "worst")]
    assert audio[0] > 0.85 and audio[0] > audio[1] > audio[2] + 0.3
    assert _row(result, "worst", "audio+text")["f1"] < _row(result, "clean", "audio+text")["f1"]
    assert all(r["lost"] == 0 and r["imputed"] == 0 for r in result.rows)


@pytest.mark.slow
def test_clean_equals_fit_run_for_the_neural_head(corpus, tmp_path: Path):
    features = [f"audio={corpus['audio']}", f"text={corpus['text']}"]
    result = robustness(features, [[f"audio={corpus['audio5']}"]], tmp_path / "out",
                        sets="minimal", **FAST)
    metrics = fit_run(features, tmp_path / "run", **FAST).metrics["cv"]
    clean = _row(result, "clean", "audio+text")
    assert (clean["f1"], clean["mse"], clean["clips"]) == (metrics["f1"], metrics["mse"],
                                                          metrics["n"])


@pytest.mark.parametrize("model", [pytest.param("attention", marks=pytest.mark.slow), "logreg"])
def test_held_out_predictions_on_training_features_reproduce_oof(corpus, model: str):
    data = load_dataset([corpus["audio"], corpus["text"]])
    est = CrossValidatedHead(model, **{**FAST, "folds": 3}).fit(data)
    proba, valence, imputed = est.predict_held_out(data.subset(np.arange(len(data))[::-1]))
    np.testing.assert_allclose(proba, est.oof_proba_, rtol=0, atol=1e-6)
    np.testing.assert_allclose(valence, est.oof_valence_, rtol=0, atol=1e-5)
    assert not imputed.any()


def test_refuses_corrupted_store_made_otherwise(corpus, tmp_path: Path):
    other = write_noisy(corpus["audio"], tmp_path / "other.h5", 10,
                        fields={"config": {"dim": 12, "layer": "last"}, "version": "2"})
    with pytest.raises(DataError, match=r"2 field\(s\) differ.*config\.layer.*version"):
        robustness([corpus["audio"]], [[f"audio={other}"]], tmp_path / "out", **FAST)
    assert differing_fields({"a": {"b": 1}, "noise": None}, {"a": {"b": 2}, "noise": {"x": 1}}) \
        == ["a.b"]


def test_refuses_missing_or_edited_clips_clean_store_and_unknown_key(corpus, tmp_path: Path):
    with FeatureStore(corpus["audio"]) as store:
        gone = set(store.names[:3])
    short = write_noisy(corpus["audio"], tmp_path / "short.h5", 10, drop=gone)
    with pytest.raises(DataError, match="lacks 3 of the 90 clips"):
        robustness([corpus["audio"]], [[f"audio={short}"]], tmp_path / "out", **FAST)
    edited = write_noisy(corpus["audio"], tmp_path / "edited.h5", 10, edited=gone)
    with pytest.raises(DataError, match="other input files than the clean store for 3 clip"):
        robustness([corpus["audio"]], [[f"audio={edited}"]], tmp_path / "out", **FAST)
    with pytest.raises(DataError, match="records no noise spec"):
        robustness([corpus["audio"]], [[f"audio={corpus['audio']}"]], tmp_path / "out", **FAST)
    with pytest.raises(DataError, match="modality 'video'.*not among the clean"):
        robustness([corpus["audio"]], [[f"video={corpus['audio5']}"]], tmp_path / "out", **FAST)
    with pytest.raises(DataError, match="No condition"):
        robustness([corpus["audio"]], [], tmp_path / "out", **FAST)


@pytest.mark.slow
def test_failed_corrupted_clips_are_masked_and_counted(corpus, tmp_path: Path):
    with FeatureStore(corpus["audio"]) as store:
        fail = set(store.names[:4])
    broken = write_noisy(corpus["audio"], tmp_path / "broken.h5", 20, fail=fail)
    result = robustness([f"audio={corpus['audio']}", f"text={corpus['text']}"],
                        [["broken", f"audio={broken}"]], tmp_path / "out", sets="minimal", **FAST)
    assert ["+".join(s) for s in result.sets] == ["audio", "text", "audio+text"]
    assert (_row(result, "broken", "audio")["lost"], _row(result, "broken", "audio")["imputed"]) \
        == (4, 4)
    assert (_row(result, "broken", "audio+text")["lost"],
            _row(result, "broken", "audio+text")["imputed"]) == (4, 0)


@pytest.mark.slow
def test_outputs_cli_and_determinism(corpus, tmp_path: Path, capsys):
    args = ["robustness", "--features", f"audio={corpus['audio']}", "--features",
            f"text={corpus['text']}", "--condition", f"audio={corpus['audio20']}",
            "--condition", "five", f"audio={corpus['audio5']}", "--folds", "3", "--epochs", "8",
            "--hidden", "16", "--batch-size", "32", "--precision", "fp32", "--seed", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    printed = capsys.readouterr().out
    assert "| condition | SNR (dB) | audio | text | audio+text |" in printed
    assert "| five | 5 |" in printed and "| 20 dB | 20 |" in printed
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "robustness.json").read_bytes() == (b / "robustness.json").read_bytes()
    assert (a / "robustness.csv").read_bytes() == (b / "robustness.csv").read_bytes()
    assert (a / "robustness.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((a / "robustness.json").read_text())
    assert [c["label"] for c in report["conditions"]] == ["clean", "20 dB", "five"]
    assert report["conditions"][2]["stores"]["audio"]["noise"] == {"spec": "snr=5,source=white",
                                                                  "seed": 0}
    assert report["cv"]["audio+text"]["f1"] == pytest.approx(
        next(r["f1"] for r in report["rows"]
             if r["condition"] == "clean" and r["modalities"] == "audio+text"), abs=1e-6)
    with open(a / "robustness.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and rows[0]["condition"] == "clean" and rows[0]["snr_db"] == ""
    md = (a / "robustness.md").read_text()
    assert "## Valence MSE" in md and "## F1 - 0.25 x MSE" in md and "snr=5,source=white" in md


@pytest.mark.slow
def test_blur_conditions_and_test_split(tmp_path: Path):
    names, y, valence = clip_labels(90, seed=5)
    splits = ["test" if i % 5 == 0 else "train" for i in range(90)]
    clean = write_store(tmp_path / "video.h5", "video", names, y, valence, dim=8, frame_dim=3,
                        seed=7, splits=splits)
    blur2 = write_noisy(clean, tmp_path / "blur2.h5", 6, spec="blur=2")
    blur4 = write_noisy(clean, tmp_path / "blur4.h5", -5, spec="blur=4", seed=1)
    params = dict(model="logreg", folds=3, seed=0)
    result = robustness([clean], [[str(blur2)], [f"video={blur4}"]], tmp_path / "out",
                        test_split="test", **params)
    assert [c.label for c in result.conditions] == ["clean", "blur 2", "blur 4"]
    assert all(c.snr_db is None for c in result.conditions)
    run = fit_run([clean], tmp_path / "run", test_split="test", **params)
    clean_row = _row(result, "clean", "video")
    assert (clean_row["f1"], clean_row["clips"]) == (run.metrics["test"]["f1"],
                                                     run.metrics["test"]["n"])
    assert _row(result, "blur 4", "video")["f1"] < clean_row["f1"]
    assert (tmp_path / "out" / "robustness.png").stat().st_size > 1000


def test_describe_noise_and_parse_condition(tmp_path: Path):
    assert describe_noise("snr=10,source=white") == {"label": "10 dB", "snr_db": 10.0,
                                                     "source": "white"}
    assert describe_noise("snr=5:10,source=pink")["label"] == "5-10 dB pink"
    assert describe_noise("snr=5:10,source=pink")["snr_db"] == 7.5
    assert describe_noise("snr=0,source=/data/musan/speech")["label"] == "0 dB speech"
    assert describe_noise("blur=1|2|4,jpeg=30") == {"label": "blur 1|2|4 + jpeg 30",
                                                    "snr_db": None, "source": None}
    # A store records the whole spec; only the keys acting on its modality name it.
    assert describe_noise("snr=10,source=white,blur=2", "audio")["label"] == "10 dB"
    assert describe_noise("snr=10,source=white,blur=2", "video") == {"label": "blur 2",
                                                                     "snr_db": None,
                                                                     "source": None}
    store = tmp_path / "a.h5"
    store.touch()
    assert parse_condition(["x", str(store), "video=v.h5"]) == ("x", [(None, store),
                                                                     ("video", Path("v.h5"))])
    with pytest.raises(DataError, match="names no store"):
        parse_condition(["only-a-label"])
    with pytest.raises(DataError, match="two labels"):
        parse_condition(["a", "b", "audio=x.h5"])


def _sweep_file(folder: Path, corpus: dict[str, Path], conditions: list[dict], **top) -> Path:
    """A sweep file as `mer-features sweep` writes it, store paths relative to its folder."""
    import os

    folder.mkdir(parents=True, exist_ok=True)
    rel = lambda p: os.path.relpath(p, folder)  # noqa: E731
    obj = {"format": 1, "modality": "audio", "manifest": "manifest.csv", "encoder": "toy-audio",
           "seed": 0, "clean": rel(corpus["audio"]),
           "conditions": [{**c, "store": rel(c["store"])} for c in conditions], **top}
    path = folder / "audio.sweep.json"
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.slow
def test_sweep_file_gives_the_conditions_and_the_clean_store(corpus, tmp_path: Path, capsys):
    levels = [{"level": "20", "spec": "snr=20,source=white", "label": "twenty",
               "store": corpus["audio20"]},
              {"level": "5", "spec": "snr=5,source=white", "label": "5 dB",
               "store": corpus["audio5"]}]
    sweep = _sweep_file(tmp_path / "sweeps", corpus, levels)
    params = dict(model="logreg", folds=3, seed=2)
    # The swept modality's clean store comes from the file; --condition works alongside.
    from_file = robustness([f"text={corpus['text']}"], [["worst", f"audio={corpus['audio-10']}"]],
                           tmp_path / "a", sweep=sweep, sets="minimal", **params)
    assert [c.label for c in from_file.conditions] == ["clean", "twenty", "5 dB", "worst"]
    assert ["+".join(s) for s in from_file.sets] == ["audio", "text", "audio+text"]
    by_hand = robustness([f"audio={corpus['audio']}", f"text={corpus['text']}"],
                         [["twenty", f"audio={corpus['audio20']}"],
                          ["5 dB", f"audio={corpus['audio5']}"],
                          ["worst", f"audio={corpus['audio-10']}"]],
                         tmp_path / "b", sets="minimal", **params)
    assert from_file.rows == by_hand.rows
    # --features naming the swept modality wins over the file's clean store.
    other = write_store(tmp_path / "audio-other.h5", "audio", *clip_labels(90, seed=3), dim=12,
                        frame_dim=5, seed=31, strength=1.2)
    named = robustness([str(other)], [], tmp_path / "c", sweep=sweep, **params)
    assert [m["path"] for m in json.loads(named.json_path.read_text())["modalities"]] == \
        [str(other)]
    # The command line takes the same file.
    assert main(["robustness", "--sweep", str(sweep), "--out", str(tmp_path / "d"), "--model",
                 "logreg", "--folds", "3", "--seed", "2"]) == 0
    assert "| twenty | 20 |" in capsys.readouterr().out


def test_sweep_file_errors(corpus, tmp_path: Path):
    good = {"level": "20", "spec": "snr=20,source=white", "label": "20 dB",
            "store": corpus["audio20"]}
    wrong_spec = _sweep_file(tmp_path / "w", corpus, [{**good, "spec": "snr=10,source=pink"}])
    with pytest.raises(DataError, match=r"records noise spec 'snr=20,source=white' \(the sweep "
                                        r"file: 'snr=10,source=pink'\).*mer-features sweep"):
        robustness([], [], tmp_path / "out", sweep=wrong_spec, model="logreg", folds=3)
    wrong_seed = _sweep_file(tmp_path / "s", corpus, [good], seed=4)
    with pytest.raises(DataError, match=r"records noise seed 0 \(the sweep file: 4\)"):
        robustness([], [], tmp_path / "out", sweep=wrong_seed, model="logreg", folds=3)
    future = _sweep_file(tmp_path / "f", corpus, [good], format=2)
    with pytest.raises(DataError, match=r"has format 2; this mer_heads reads format 1"):
        robustness([], [], tmp_path / "out", sweep=future, model="logreg", folds=3)
    empty = _sweep_file(tmp_path / "e", corpus, [])
    with pytest.raises(DataError, match=r"lists no condition"):
        robustness([], [], tmp_path / "out", sweep=empty, model="logreg", folds=3)
    with pytest.raises(DataError, match=r"'.*nope.json' \(--sweep\) does not exist"):
        robustness([], [], tmp_path / "out", sweep=tmp_path / "nope.json", model="logreg")
    assert not (tmp_path / "out").exists()


def _tone_corpus(folder: Path, n: int = 12) -> Path:
    """n one-second clips: angry ones high-pitched and loud, sad ones low and soft."""
    import soundfile as sf

    rate = 16000
    t = np.arange(rate) / rate
    rows = ["name,audio,discrete,valence,split"]
    (folder / "clips").mkdir()
    for i in range(n):
        emotion = EMOTIONS[1] if i % 2 else EMOTIONS[3]
        f0 = (230 if i % 2 else 110) + 7 * i
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))) / rate
        wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * (0.5 - 0.5 * np.cos(8 * np.pi * t))
        wave = (0.25 if i % 2 else 0.08) * wave / np.abs(wave).max()
        sf.write(folder / "clips" / f"{i}.wav", wave.astype(np.float32), rate)
        rows.append(f"t{i:02d},clips/{i}.wav,{emotion},{-2 if i % 2 else -3},train")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return folder / "manifest.csv"


@pytest.mark.slow
def test_end_to_end_with_real_extraction(tmp_path: Path):
    from mer_features.pipeline import extract

    manifest = _tone_corpus(tmp_path)
    common = dict(modality="audio", encoder="egemaps", workers=0, progress=False,
                  log=lambda message: None)
    extract(manifest, tmp_path / "clean.h5", **common)
    extract(manifest, tmp_path / "snr0.h5", noise="snr=0,source=pink", seed=3, **common)
    result = robustness([tmp_path / "clean.h5"], [[str(tmp_path / "snr0.h5")]],
                        tmp_path / "out", model="logreg", folds=3)
    assert [c.label for c in result.conditions] == ["clean", "0 dB pink"]
    assert result.conditions[1].noise["audio"] == {"spec": "snr=0,source=pink", "seed": 3}
    assert {r["clips"] for r in result.rows} == {12}
    assert all(0 <= r["f1"] <= 1 for r in result.rows)
    assert (tmp_path / "out" / "robustness.md").read_text().count("\n| ") >= 3


def test_stores_from_before_the_decoder_joined_the_fingerprint_stay_compatible():
    """An audio store written before 'preprocessing.decoder' entered the fingerprint is the same
    features as one written after: robustness compares them, predict accepts the run."""
    from mer_features.fingerprint import fingerprint, known_fingerprints
    from mer_heads.data.dataset import ModalityInfo
    from mer_heads.errors import FingerprintMismatchError
    from mer_heads.rundir import check_fingerprints

    new = {"modality": "audio", "encoder": "egemaps",
           "preprocessing": {"sample_rate": 16000, "decoder": "soundfile+soxr_hq|decord"}}
    old = {"modality": "audio", "encoder": "egemaps", "preprocessing": {"sample_rate": 16000}}
    assert differing_fields(old, {**new, "noise": {"spec": "snr=10", "seed": 0}}) == []
    assert differing_fields(old, {**new, "encoder": "compare"}) == ["encoder"]
    # A run fitted on the old store predicts the re-stamped one, and refuses other features.
    run = {"modalities": [{"key": "audio", "fingerprint": fingerprint(old), "path": "a.h5"}]}
    info = ModalityInfo("audio", "a.h5", fingerprint(new), "audio", "egemaps", (88,), 88,
                        frozenset(known_fingerprints(new)))
    check_fingerprints(run, [info])
    other = {**new, "encoder": "compare"}
    info = ModalityInfo("audio", "a.h5", fingerprint(other), "audio", "compare", (88,), 88,
                        frozenset(known_fingerprints(other)))
    with pytest.raises(FingerprintMismatchError):
        check_fingerprints(run, [info])
