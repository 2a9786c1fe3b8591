"""Fault injection: every kind of bad input, per modality, through the real CLI.

Each run must complete, record every bad clip with its stage and reason, store every good
clip, exit with 3 (completed with recorded failures) and say so in its summary; --fail-fast
must stop at the first bad clip with a clear message and keep what was done.
"""

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from synthetic_media import voiced, write_manifest
from mer_features.cli import main
from mer_features.store import FeatureStore


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good and bad media under a folder whose name has spaces and non-ASCII characters."""
    import imageio_ffmpeg

    from mer_features.demo import write_demo

    root = tmp_path_factory.mktemp("faults") / "données d'essai ✓"
    demo = write_demo(root / "demo", n_clips=6).parent / "clips"
    good = root / "good clip é.mp4"
    shutil.copy(demo / "demo_0000.mp4", good)
    shutil.copy(demo / "demo_0001.mp4", root / "good 2.mp4")
    data = (demo / "demo_0002.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(data[: len(data) * 2 // 3])
    (root / "empty.mp4").write_bytes(b"")
    (root / "text.mp4").write_text("this is a text file, renamed")
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(demo / "demo_0003.mp4"), "-an", "-c:v",
                    "copy", str(root / "no audio.mp4")], check=True)
    subprocess.run([ffmpeg, "-loglevel", "error", "-f", "lavfi", "-i", "color=c=gray:s=96x96:d=1.2",
                    "-f", "lavfi", "-i", "sine=f=220:d=1.2", "-shortest", "-pix_fmt", "yuv420p",
                    str(root / "no face.mp4")], check=True)
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", str(demo / "demo_0004.mp4"), "-vf",
                    "format=gray", "-pix_fmt", "yuv420p", str(root / "grey.mp4")], check=True)
    sf.write(root / "speech ü.wav", voiced(1.5, seed=1), 16000)
    sf.write(root / "silent.wav", np.zeros(16000, np.float32), 16000)
    sf.write(root / "short.wav", voiced(0.05, seed=2), 16000)
    sf.write(root / "long.flac", np.tile(voiced(3.0, seed=3), 40), 16000)  # 2 minutes
    return root


def run_cli(manifest: Path, out: Path, modality: str, *extra: str) -> tuple[int, dict]:
    encoder = ["--encoder", "egemaps"] if modality == "audio" else []
    code = main(["extract", "--modality", modality, "--manifest", str(manifest), "--out", str(out),
                 "--no-progress", "--workers", "2", *encoder, *extra])
    with FeatureStore(out) as store:
        status = dict(zip(store.names, store.status))
        reasons = {n: (s, st, r) for n, s, st, r in store.failures()}
        assert np.isfinite(store.utterances()).all()
    return code, {"status": status, "reasons": reasons}


@pytest.mark.slow
def test_audio_faults(media: Path, tmp_path: Path, capsys):
    rows = [
        {"name": "good", "video": str(media / "good clip é.mp4")},
        {"name": "wav", "audio": str(media / "speech ü.wav")},
        {"name": "long", "audio": str(media / "long.flac")},
        {"name": "truncated", "video": str(media / "truncated.mp4")},
        {"name": "zero_bytes", "video": str(media / "empty.mp4")},
        {"name": "text_as_mp4", "video": str(media / "text.mp4")},
        {"name": "no_audio_track", "video": str(media / "no audio.mp4")},
        {"name": "silent", "audio": str(media / "silent.wav")},
        {"name": "short", "audio": str(media / "short.wav")},
    ]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    code, got = run_cli(manifest, tmp_path / "a.h5", "audio")
    assert code == 3
    assert "failed" in capsys.readouterr().out
    status, reasons = got["status"], got["reasons"]
    assert {n for n, s in status.items() if s == "ok"} >= {"good", "wav", "long"}
    assert reasons["zero_bytes"][1:] == ("decode", f"file '{media / 'empty.mp4'}' is empty (0 bytes)")
    assert reasons["text_as_mp4"][1] == "decode"
    assert "no audio track" in reasons["no_audio_track"][2]
    assert "digital silence" in reasons["silent"][2]
    assert reasons["short"][1:] == ("encode", "clip is 0.050 s long; egemaps needs at least 0.1 s of audio")
    assert status["truncated"] in ("ok", "failed")  # the cut may or may not reach the audio
    with FeatureStore(tmp_path / "a.h5") as store:
        assert store.record("long").duration == pytest.approx(120, abs=0.1)

    # --fail-fast stops at the first bad clip, keeping the good ones done before it
    code = main(["extract", "--modality", "audio", "--manifest", str(manifest), "--out",
                 str(tmp_path / "ff.h5"), "--no-progress", "--workers", "0", "--fail-fast",
                 "--batch-size", "1", "--encoder", "egemaps"])
    assert code == 1
    assert "--fail-fast" in capsys.readouterr().err


@pytest.mark.slow
def test_long_audio_is_chunked_for_neural_encoders(media: Path, tmp_path: Path, tiny_hubert: Path):
    """A 2-minute clip goes through the model in chunks, so memory stays bounded."""
    from mer_features.decode.inputs import AudioInput
    from mer_features.encoders import create_encoder
    from mer_features.decode.audio import load_audio

    enc = create_encoder("audio", f"hf:{tiny_hubert}", {"chunk_seconds": "10"})
    enc.load("cpu", "fp32")
    seen = []
    original = enc.model.forward
    enc.model.forward = lambda x, **kw: (seen.append(x.shape[1]), original(x, **kw))[1]
    (out,) = enc.encode_batch([AudioInput("long", load_audio(media / "long.flac", 16000), 16000)])
    assert max(seen) <= 10 * 16000 and len(out.frames) == pytest.approx(120 * 50, abs=20)


@pytest.mark.slow
def test_text_faults(tmp_path: Path):
    path = tmp_path / "t.csv"
    long_text = " ".join(["word"] * 2000)
    path.write_bytes(("name,text\n"
                      "good,une phrase en français ✓\n"
                      "empty,\n"
                      "blank,   \n"
                      f"long,{long_text}\n").encode("utf-8") + b"latin,caf\xe9\n")
    code, got = run_cli(path, tmp_path / "t.h5", "text")
    assert code == 3
    assert got["status"] == {"blank": "empty", "empty": "empty", "good": "ok", "latin": "failed",
                             "long": "ok"}
    assert "not valid UTF-8" in got["reasons"]["latin"][2]
    with FeatureStore(tmp_path / "t.h5") as store:
        # e5 (the default text encoder) encodes a long text whole, window by window
        info = store.record("long", with_arrays=False).info
        assert info["windowed"] is True and info["windows"] >= 4 and "truncated" not in info


@pytest.mark.slow
def test_video_faults(media: Path, tmp_path: Path):
    rows = [
        {"name": "good", "video": str(media / "good clip é.mp4")},
        {"name": "grey", "video": str(media / "grey.mp4")},
        {"name": "no_audio_track", "video": str(media / "no audio.mp4")},
        {"name": "truncated", "video": str(media / "truncated.mp4")},
        {"name": "zero_bytes", "video": str(media / "empty.mp4")},
        {"name": "text_as_mp4", "video": str(media / "text.mp4")},
        {"name": "audio_as_video", "video": str(media / "speech ü.wav")},
        {"name": "no_face", "video": str(media / "no face.mp4")},
    ]
    manifest = write_manifest(tmp_path / "v.csv", rows)
    code, got = run_cli(manifest, tmp_path / "v.h5", "video", "--fps", "2", "--max-frames", "6")
    assert code == 3
    status, reasons = got["status"], got["reasons"]
    assert {n for n, s in status.items() if s == "ok"} == {"good", "grey", "no_audio_track", "truncated"}
    for name in ("zero_bytes", "text_as_mp4", "audio_as_video"):
        assert reasons[name][1] == "decode", reasons[name]
    assert reasons["no_face"][1:] == ("faces", "no face detected in any frame")
    with FeatureStore(tmp_path / "v.h5") as store:
        info = store.record("truncated", with_arrays=False).info
        assert info.get("truncation") or info.get("n_failed_frames") or info["decoder"] == "ffmpeg"


@pytest.mark.slow
def test_missing_files_refused_unless_skipped(media: Path, tmp_path: Path, capsys):
    rows = [{"name": "good", "audio": str(media / "speech ü.wav")},
            {"name": "gone", "audio": str(media / "gone.wav")}]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    assert main(["extract", "--modality", "audio", "--manifest", str(manifest), "--out",
                 str(tmp_path / "m.h5"), "--no-progress", "--encoder", "egemaps"]) == 1
    assert "gone.wav' not found" in capsys.readouterr().err and not (tmp_path / "m.h5").exists()
    code, got = run_cli(manifest, tmp_path / "m.h5", "audio", "--skip-missing")
    assert code == 3 and got["status"] == {"good": "ok", "gone": "missing"}


@pytest.mark.slow
def test_two_writers_are_refused(media: Path, tmp_path: Path):
    import sys

    rows = [{"name": f"c{i}", "audio": str(media / "long.flac")} for i in range(3)]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    cmd = [sys.executable, "-m", "mer_features.cli", "extract", "--modality", "audio", "--manifest",
           str(manifest), "--out", str(tmp_path / "x.h5"), "--no-progress", "--workers", "0",
           "--encoder", "egemaps"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    import time

    deadline = time.monotonic() + 30
    while not (tmp_path / "x.h5.lock").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(1.0)  # the first run holds the lock while it imports and works
    second = subprocess.run(cmd, capture_output=True, text=True)
    first.wait()
    if first.returncode == 0 and second.returncode == 0:
        pytest.skip("the first run finished before the second started")
    assert second.returncode == 1 and "being written by another process" in second.stderr
    assert first.returncode == 0
    info = json.loads(subprocess.run([sys.executable, "-m", "mer_features.cli", "info",
                                      str(tmp_path / "x.h5"), "--json"],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["clips"] == 3
