"""Tests of the synthetic demo corpus (:mod:`mer_features.demo`).

Everything is generated under pytest's tmp_path; one 36-clip corpus is shared by the read-back
and learnability tests to keep the module at a few tens of seconds on two cores.
"""

from __future__ import annotations

import csv
import os
import re
import subprocess
import time
from collections import Counter
from pathlib import Path

import decord  # first, before anything that may import torch (the order known to be safe)
import numpy as np
import pytest

from mer_features import EMOTIONS
from mer_features.demo import corpus as demo
from mer_features.demo import FPS, FRAME_SIZE, SAMPLE_RATE, write_demo
from mer_features.cli import main
from mer_features.errors import MerFeaturesError

N_LEARN = 36  # 6 clips a class: the smallest corpus where 5-fold CV means something


def _rows(manifest: Path) -> list[dict[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder, relative path -> bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """A 36-clip demo corpus, written once for the module; returns its manifest path."""
    return write_demo(tmp_path_factory.mktemp("demo36"), n_clips=N_LEARN, seed=0)


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_clips", [0, 5, -3])
def test_too_few_clips_is_a_value_error(tmp_path, n_clips):
    with pytest.raises(ValueError, match="n_clips must be at least 6"):
        write_demo(tmp_path, n_clips=n_clips)
    assert not any(tmp_path.iterdir()), "nothing may be written for bad arguments"


def test_bad_seed_and_types(tmp_path):
    with pytest.raises(ValueError, match="seed"):
        write_demo(tmp_path, n_clips=6, seed=-1)
    with pytest.raises(TypeError):
        write_demo(tmp_path, n_clips=6.0)
    with pytest.raises(TypeError):
        write_demo(tmp_path, n_clips=True)
    with pytest.raises(TypeError):
        write_demo(tmp_path, n_clips=6, seed="0")


# --------------------------------------------------------------------------------------------
# Manifest
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_manifest_layout(corpus):
    root = corpus.parent
    assert corpus.name == "manifest.csv"
    assert corpus.read_text(encoding="utf-8").splitlines()[0] == (
        "name,video,audio,text,discrete,valence,split"
    )
    rows = _rows(corpus)
    assert [r["name"] for r in rows] == [f"demo_{i:04d}" for i in range(N_LEARN)]
    assert [r["discrete"] for r in rows] == [EMOTIONS[i % 6] for i in range(N_LEARN)]
    for r in rows:
        assert r["video"] == f"clips/{r['name']}.mp4"
        assert (root / r["video"]).is_file()
        assert r["audio"] == ""
        assert len(r["text"].split()) >= 4
        assert re.fullmatch(r"-?\d\.\d\d", r["valence"]), r["valence"]
        assert -5.0 <= float(r["valence"]) <= 5.0
    # Only the corpus lives there: no temporary files left behind.
    assert sorted(p.name for p in root.iterdir()) == ["clips", "demo.json", "manifest.csv"]
    assert sorted(p.name for p in (root / "clips").iterdir()) == [
        f"demo_{i:04d}.mp4" for i in range(N_LEARN)
    ]


@pytest.mark.slow
def test_splits_are_stratified(corpus):
    rows = _rows(corpus)
    assert {r["split"] for r in rows} == {"train", "test"}
    per_class = Counter((r["discrete"], r["split"]) for r in rows)
    for emotion in EMOTIONS:
        # 6 clips a class -> round(0.2 * 6) = 1 test clip.
        assert per_class[(emotion, "test")] == 1
        assert per_class[(emotion, "train")] == 5


def test_split_sizes_for_sixty_clips():
    plan = demo._plan(60, 0)
    counts = Counter((c.emotion, c.split) for c in plan)
    assert all(counts[(e, "test")] == 2 and counts[(e, "train")] == 8 for e in EMOTIONS)


def test_valence_follows_class():
    plan = demo._plan(120, 3)
    means = {e: np.mean([c.valence for c in plan if c.emotion == e]) for e in EMOTIONS}
    assert means["happy"] > means["surprise"] > means["neutral"] > means["worried"]
    assert means["worried"] > means["angry"] and means["worried"] > means["sad"]


# --------------------------------------------------------------------------------------------
# Media
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_decord_reads_both_tracks(corpus):
    root = corpus.parent
    plan = demo._plan(N_LEARN, 0)
    durations = []
    for clip in plan[:8]:
        path = str(root / "clips" / f"{clip.name}.mp4")
        vr = decord.VideoReader(path)
        expected_seconds = clip.n_frames / FPS
        assert abs(len(vr) - expected_seconds * FPS) <= 1
        assert vr.get_avg_fps() == pytest.approx(FPS)
        frames = vr.get_batch([0, len(vr) - 1]).asnumpy()
        assert frames.shape == (2, FRAME_SIZE, FRAME_SIZE, 3)
        assert frames.dtype == np.uint8 and frames.std() > 20  # a picture, not a flat field
        audio = decord.AudioReader(path, sample_rate=SAMPLE_RATE, mono=True)[:].asnumpy()
        assert audio.shape[0] == 1
        # AAC pads the last 1024-sample frame, hence a little extra, never 0.1 s.
        assert abs(audio.shape[1] / SAMPLE_RATE - expected_seconds) < 0.1
        assert 0.01 < np.abs(audio).max() < 0.9
        durations.append(expected_seconds)
    assert all(2.0 <= d <= 4.0 for d in durations)


def test_durations_spread_over_range():
    seconds = [c.n_frames / FPS for c in demo._plan(60, 0)]
    assert min(seconds) >= 2.0 and max(seconds) <= 4.0
    assert max(seconds) - min(seconds) > 1.0


@pytest.mark.slow
def test_codecs(corpus):
    """H.264 yuv420p at 25 fps and AAC mono 16 kHz, as ffmpeg itself reports them."""
    import imageio_ffmpeg

    clip = "clips/demo_0000.mp4"
    info = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(corpus.parent / clip)],
        capture_output=True,
        text=True,
    ).stderr
    video = next(line for line in info.splitlines() if "Video:" in line)
    audio = next(line for line in info.splitlines() if "Audio:" in line)
    assert "h264" in video and "yuv420p" in video and f"{FRAME_SIZE}x{FRAME_SIZE}" in video
    assert "25 fps" in video
    assert "aac" in audio and "16000 Hz" in audio and "mono" in audio


# --------------------------------------------------------------------------------------------
# Determinism, caching, atomicity
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def six(tmp_path_factory) -> Path:
    """A 6-clip corpus with seed 7; returns its manifest path."""
    return write_demo(tmp_path_factory.mktemp("six"), n_clips=6, seed=7)


@pytest.mark.slow
def test_byte_identical_and_cached(six, tmp_path):
    reference = _snapshot(six.parent)
    assert sorted(reference) == ["clips/" + f"demo_{i:04d}.mp4" for i in range(6)] + [
        "demo.json",
        "manifest.csv",
    ]
    again = write_demo(tmp_path / "b", n_clips=6, seed=7)
    assert _snapshot(again.parent) == reference

    # A second call with the same arguments is a no-op: instant, files untouched.
    mtimes = {p: p.stat().st_mtime_ns for p in six.parent.rglob("*")}
    start = time.perf_counter()
    assert write_demo(six.parent, n_clips=6, seed=7) == six
    assert time.perf_counter() - start < 0.5
    assert {p: p.stat().st_mtime_ns for p in six.parent.rglob("*")} == mtimes


def test_other_seed_other_corpus():
    assert [c.n_frames for c in demo._plan(6, 7)] != [c.n_frames for c in demo._plan(6, 8)]
    assert [c.text for c in demo._plan(6, 7)] != [c.text for c in demo._plan(6, 8)]


@pytest.mark.slow
def test_incomplete_or_other_corpus_is_rewritten(six, tmp_path):
    reference = _snapshot(six.parent)
    out = tmp_path / "out"
    write_demo(out, n_clips=7, seed=7)
    (out / "clips" / "keep_me.txt").write_text("a user's file")
    # Left by a killed run (no process has this pid): cleaned up.
    (out / "clips" / ".demo_0001.mp4.tmp-999999999").write_bytes(b"half a clip")
    # Fewer clips would delete demo_0006, another seed would change every clip: refused,
    # nothing touched, unless asked to overwrite.
    before = _snapshot(out)
    for n_clips, seed, words in ((6, 7, "writing 6 clips would delete 1 of its clips"),
                                 (7, 8, "writing seed 8 would change its clips")):
        with pytest.raises(MerFeaturesError, match=words) as info:
            write_demo(out, n_clips=n_clips, seed=seed)
        assert "holds a demo corpus of 7 clips (seed 7)" in str(info.value)
        assert "--overwrite" in str(info.value) and "\n" not in str(info.value)
    assert _snapshot(out) == before
    assert main(["demo", "--out", str(out), "--clips", "6", "--seed", "7"]) == 1
    assert _snapshot(out) == before
    # The stale demo_0006 goes, the user's file stays, the rest matches.
    manifest = write_demo(out, n_clips=6, seed=7, overwrite=True)
    snap = _snapshot(out)
    assert snap.pop("clips/keep_me.txt") == b"a user's file"
    assert snap == reference

    # A damaged corpus (a clip truncated, as by a crash) is detected and rewritten.
    clip = out / "clips" / "demo_0003.mp4"
    clip.write_bytes(clip.read_bytes()[:1000])
    write_demo(out, n_clips=6, seed=7)
    assert clip.read_bytes() == reference["clips/demo_0003.mp4"]
    assert manifest.read_bytes() == reference["manifest.csv"]


@pytest.mark.slow
def test_ffmpeg_failure_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / "fake-ffmpeg"
    fake.write_text("#!/bin/sh\necho 'Unknown encoder libx264 (fake)' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setattr(demo, "_ffmpeg_exe", lambda: str(fake))
    out = tmp_path / "out"
    with pytest.raises(MerFeaturesError, match=r"demo_\d{4}.*Unknown encoder libx264 \(fake\)"):
        write_demo(out, n_clips=6)
    # No half files and no manifest: nothing can be mistaken for a corpus.
    assert not (out / "manifest.csv").exists() and not (out / "demo.json").exists()
    assert list((out / "clips").iterdir()) == []


# --------------------------------------------------------------------------------------------
# Learnability: labels must be recoverable from each modality with trivial models
# --------------------------------------------------------------------------------------------


def _cv_accuracy(model, features, labels) -> float:
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    return float(cross_val_score(model, features, labels, cv=folds).mean())


@pytest.fixture(scope="module")
def decoded(corpus):
    """Per clip: audio (N,) float64 at 16 kHz and the mean grey frame (48, 48)."""
    root = corpus.parent
    rows = _rows(corpus)
    audio, grey = [], []
    for r in rows:
        path = str(root / r["video"])
        track = decord.AudioReader(path, sample_rate=SAMPLE_RATE, mono=True)[:].asnumpy()
        audio.append(track[0].astype(np.float64))
        vr = decord.VideoReader(path)
        frames = vr.get_batch(list(range(0, len(vr), 5))).asnumpy().astype(np.float64)
        frames = frames.mean(axis=-1).reshape(-1, 48, 4, 48, 4).mean(axis=(2, 4))
        grey.append(frames.mean(axis=0))
    return rows, audio, np.stack(grey)


@pytest.mark.slow
def test_audio_is_learnable(decoded):
    import librosa
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows, audio, _ = decoded
    features = []
    for x in audio:
        rms = librosa.feature.rms(y=x, frame_length=512, hop_length=256)[0]
        voiced = rms > 0.1 * rms.max()
        f0 = librosa.yin(x, fmin=60, fmax=500, sr=SAMPLE_RATE, frame_length=1024, hop_length=256)
        log_f0 = np.log(f0[: len(voiced)][voiced[: len(f0)]])
        quarter = max(1, len(log_f0) // 4)
        features.append(
            [
                np.log(rms[voiced].mean()),
                np.log(rms[voiced].std()),
                np.median(log_f0),
                log_f0.std(),
                log_f0[-quarter:].mean() - log_f0[:quarter].mean(),
            ]
        )
    labels = [r["discrete"] for r in rows]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    assert _cv_accuracy(model, np.array(features), labels) > 0.7  # chance: 1/6


@pytest.mark.slow
def test_video_is_learnable(decoded):
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows, _, grey = decoded
    labels = [r["discrete"] for r in rows]
    model = make_pipeline(StandardScaler(), PCA(20), LogisticRegression(max_iter=2000))
    assert _cv_accuracy(model, grey.reshape(len(grey), -1), labels) > 0.7


@pytest.mark.slow
def test_text_is_learnable_but_not_trivial(corpus):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    rows = _rows(corpus)
    texts = [r["text"] for r in rows]
    labels = [r["discrete"] for r in rows]
    model = make_pipeline(TfidfVectorizer(), LogisticRegression(C=10, max_iter=2000))
    # Only 30 training sentences a fold here; 60 clips give ~0.8.
    assert _cv_accuracy(model, texts, labels) > 0.5
    assert len(set(texts)) == len(texts)


@pytest.mark.skipif(
    os.environ.get("MER_DEMO_SLOW") != "1", reason="opt-in: set MER_DEMO_SLOW=1 (loads torch)"
)
@pytest.mark.slow
def test_mtcnn_finds_the_face(corpus):
    """Slow, opt-in: facenet-pytorch's MTCNN detects a face in every frame of a few clips."""
    pytest.importorskip("facenet_pytorch")
    from facenet_pytorch import MTCNN
    from PIL import Image

    detector = MTCNN(keep_all=False, device="cpu")
    for i in range(0, 6):
        vr = decord.VideoReader(str(corpus.parent / "clips" / f"demo_{i:04d}.mp4"))
        frames = vr.get_batch(list(range(0, len(vr), 4))).asnumpy()
        boxes, _ = detector.detect([Image.fromarray(f) for f in frames])
        assert all(b is not None for b in boxes)
        heights = [b[0][3] - b[0][1] for b in boxes]
        assert min(heights) >= 90
