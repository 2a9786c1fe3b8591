"""What a user sees while a command runs (:mod:`mer_features.console`): line-based progress in
logs, output under a non-UTF-8 locale, third-party output kept out."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from synthetic_media import voiced, write_manifest
from mer_features import console
from mer_features.cli import main


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


REPO = Path(__file__).resolve().parents[2]


def _env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), **extra}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_line_progress_prints_done_total_rate_and_eta_every_interval():
    stream, clock = io.StringIO(), Clock()
    bar = console.LineProgress(1000, "audio/egemaps", stream=stream, every=30, clock=clock)
    for _ in range(10):
        clock.now += 1.0
        bar.update(10)  # 10 clips a second
    assert stream.getvalue() == ""  # nothing before the first interval
    clock.now = 30.0
    bar.update(200)
    clock.now = 45.0
    bar.update(100)  # within the interval: no line
    bar.write("failed: clip 'x' at decode: ...")
    clock.now = 60.0
    bar.update(100)
    bar.update(500)
    bar.close()
    bar.close()
    assert stream.getvalue().splitlines() == [
        "audio/egemaps: 300/1000 clips (30.0%), 10.00 clips/s, ETA 1m 10s",
        "failed: clip 'x' at decode: ...",
        "audio/egemaps: 500/1000 clips (50.0%), 8.33 clips/s, ETA 1m 00s",
        "audio/egemaps: 1000/1000 clips (100.0%), 16.67 clips/s, done in 1m 00s",
    ]


def test_progress_is_a_bar_on_a_terminal_lines_elsewhere_and_nothing_when_off():
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    from tqdm import tqdm

    bar = console.progress(10, "x", None, stream=Tty())
    assert isinstance(bar, tqdm)
    bar.close()
    assert isinstance(console.progress(10, "x", None, stream=io.StringIO()),
                      console.LineProgress)
    quiet = console.progress(10, "x", False, stream=io.StringIO())
    quiet.update(10)
    quiet.close()
    assert quiet.stream.getvalue() == ""


def test_an_extraction_logged_to_a_file_gets_progress_lines(tmp_path: Path, capsys,
                                                             monkeypatch):
    """stderr is not a terminal under pytest, as in a SLURM log: lines, not a bar."""
    monkeypatch.setattr(console, "LOG_EVERY_SECONDS", 0.0)
    rows = []
    for i in range(3):
        sf.write(tmp_path / f"c{i}.wav", voiced(0.5, seed=i), 16000)
        rows.append({"name": f"c{i}", "audio": f"c{i}.wav"})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    args = ["extract", "--modality", "audio", "--manifest", str(manifest), "--out",
            str(tmp_path / "s.h5"), "--workers", "0", "--encoder", "egemaps"]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "audio/egemaps: 1/3 clips (33.3%)" in err and "ETA" in err
    assert "audio/egemaps: 3/3 clips (100.0%)" in err and "\r" not in err
    assert main([*args, "--overwrite", "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


@pytest.mark.slow
def test_a_non_utf8_locale_prints_every_name(tmp_path: Path):
    """LC_ALL=C PYTHONUTF8=0: ASCII streams and file names, where an accented file name could
    not be opened and printing a clip name raised UnicodeEncodeError. The command restarts in
    UTF-8 mode: accented clip names, paths and messages work, and an error is one line."""
    sf.write(tmp_path / "café.wav", voiced(0.5, seed=1), 16000)
    write_manifest(tmp_path / "m.csv", [{"name": "çlip—1", "audio": "café.wav",
                                         "text": "héllo"}])
    env = _env(LC_ALL="C", LANG="C", PYTHONUTF8="0", PYTHONIOENCODING="")
    cli = [sys.executable, "-m", "mer_features.cli"]
    store = tmp_path / "s.h5"
    for args in (["extract", "--modality", "audio", "--manifest", str(tmp_path / "m.csv"),
                  "--out", str(store), "--workers", "0"], ["info", str(store)],
                 ["verify", str(store)]):
        proc = subprocess.run(cli + args, env=env, capture_output=True, timeout=300)
        err = proc.stderr.decode("utf-8")
        assert proc.returncode == 0, err
        assert "Error" not in err and "internal error" not in err
    assert b"ok (1 clips" in proc.stdout
    (tmp_path / "bad.csv").write_text("name,audio,discrete\nçlip,café.wav,jöy\n",
                                      encoding="utf-8")
    proc = subprocess.run(cli + ["extract", "--modality", "audio", "--manifest",
                                 str(tmp_path / "bad.csv"), "--out", str(store),
                                 "--classes", "mer2023"],
                          env=env, capture_output=True, timeout=300)
    err = proc.stderr.decode("utf-8")  # the command restarted in UTF-8 mode
    assert proc.returncode == 1 and "internal error" not in err
    assert "line 2 (clip 'çlip'): unknown discrete label 'jöy'" in err
    assert err.startswith("error: ")


@pytest.mark.slow
def test_transformers_loading_bars_are_silenced(tmp_path: Path):
    from transformers import HubertConfig, HubertModel

    config = HubertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, conv_dim=(32, 32), conv_stride=(5, 2),
                          conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                          num_conv_pos_embedding_groups=2)
    HubertModel(config).save_pretrained(tmp_path / "tiny")
    load = f"from transformers import HubertModel; HubertModel.from_pretrained({str(tmp_path / 'tiny')!r})"
    quiet = "from mer_features.console import quiet_third_party; quiet_third_party(); " + load
    env = _env()
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
    loud = subprocess.run([sys.executable, "-c", load], env=env, capture_output=True,
                          text=True, timeout=300)
    assert loud.returncode == 0 and "Loading weights" in loud.stderr  # what leaked before
    silent = subprocess.run([sys.executable, "-c", quiet], env=env, capture_output=True,
                            text=True, timeout=300)
    assert silent.returncode == 0 and "Loading weights" not in silent.stderr, silent.stderr


def test_ffmpeg_and_decord_lines_stay_out_of_stderr(tmp_path: Path, capfd):
    import imageio_ffmpeg

    from mer_features.decode.audio import decode_audio
    from mer_features.decode.video import load_frames
    from mer_features.errors import ClipError

    whole = tmp_path / "whole.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc=s=64x64:d=3:r=8", "-f", "lavfi", "-i",
                    "sine=frequency=220:duration=3:sample_rate=16000", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", "-movflags", "+faststart",
                    str(whole)], check=True)
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[:len(data) // 2])  # index kept, data cut
    moov = data.find(b"moov") - 4
    (tmp_path / "no-index.mp4").write_bytes(data[:moov] + data[moov + 8:])  # no moov atom
    probe = ("import decord; decord.AudioReader({!r}, ctx=decord.cpu(0), sample_rate=16000, "
             "mono=True)[:]").format(str(tmp_path / "cut.mp4"))
    raw = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert "audio_reader.cc" in raw.stderr  # what leaked before
    capfd.readouterr()
    decoded = decode_audio(tmp_path / "cut.mp4", 16000)
    assert "was cut short" in decoded.info["truncation"]
    assert "truncation" in load_frames(tmp_path / "cut.mp4", fps=4).info
    for path in (tmp_path / "no-index.mp4",):
        with pytest.raises(ClipError):
            decode_audio(path, 16000)
        try:
            load_frames(path, fps=4)
        except ClipError:
            pass
    out, err = capfd.readouterr()
    for line in ("partial file", "Fail to get packet", "moov atom", "audio_reader.cc",
                 "video_reader.cc", "Invalid data"):
        assert line not in err, err
    assert out == ""


def test_safe_streams_print_any_text_on_an_ascii_stream(monkeypatch):
    """main() called from Python under LC_ALL=C cannot restart: it prints escaped instead."""
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii", errors="strict")
    monkeypatch.setattr(sys, "stdout", stream)
    console.safe_streams()
    print("clip '\u00e7lip\u20141' in", b"caf\xe9.wav".decode("utf-8", "surrogateescape"))
    stream.flush()  # a file name's undecodable bytes go out as they came in
    assert raw.getvalue() == b"clip '\\xe7lip\\u20141' in caf\xe9.wav\n"
