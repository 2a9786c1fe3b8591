"""Adversarial inputs for ``mer-features`` (issue 13, inputs / CLI / lifecycle).

Every hostile input or argument must end in exactly one of: success; a per-clip failure recorded
in the store with its stage and reason; or a one-line ``error: ...`` (exit 1) or argparse usage
error (exit 2) that names the problem. Never a traceback, never a hang, never lost work.

Two tables:

* ``CASES``: one command each. A case builds its hostile input, gives the command line, and
  states the exit code and the words stderr must hold; some check more (files left untouched,
  rows of the store, names of the copies). Cases that could hang (FIFOs) run under an alarm.
* ``MEDIA_CASES``: one odd media file each, extracted together per modality (one run per
  modality, so the table stays fast); each case states its clip's status, stage and reason.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from synthetic_media import voiced, write_manifest
from mer_features.cli import main
from mer_features.store import FeatureStore

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------------------------
# Media, built once


def _ffmpeg(*args: str) -> None:
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", *args], check=True)


def _test_pattern(path: Path, size: str) -> Path:
    """A 1 s test-pattern video of WxH pixels (4:4:4, so odd and tiny sizes encode)."""
    _ffmpeg("-f", "lavfi", "-i", f"testsrc=s={size}:d=1:r=8", "-c:v", "libx264",
            "-pix_fmt", "yuv444p", str(path))
    return path


def _face_strip(path: Path, length: int = 13_000, vertical: bool = False) -> Path:
    """A LENGTHx192 (or 192xLENGTH) video with the demo's upright face at its centre. Scaled to
    1280 px long, as frames used to be, it would be 19 px across, too small for a face;
    decoded at 10517x155 it holds one."""
    import imageio_ffmpeg

    from mer_features.demo.signals import _render_frames

    faces = _render_frames("neutral", 4, np.random.default_rng(0))
    side = faces.shape[1]
    start = length // 2 - side // 2
    if vertical:
        frames = np.zeros((4, length, side, 3), np.uint8)
        frames[:, start:start + side] = faces
    else:
        frames = np.zeros((4, side, length, 3), np.uint8)
        frames[:, :, start:start + side] = faces
    writer = imageio_ffmpeg.write_frames(str(path), (frames.shape[2], frames.shape[1]), fps=4,
                                         codec="libx264", pix_fmt_out="yuv420p",
                                         macro_block_size=1, output_params=["-loglevel", "error"])
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("trust-media")
    sf.write(root / "good.wav", voiced(1.0, seed=1), 16000)
    sf.write(root / "good2.wav", voiced(1.2, seed=2), 16000)
    sf.write(root / "noise.wav", 0.1 * np.random.default_rng(0).standard_normal(32000), 16000)
    sf.write(root / "zero.wav", np.zeros(0, np.float32), 16000)
    sf.write(root / "one.wav", np.array([0.1], np.float32), 16000)
    sf.write(root / "8k.wav", voiced(1.0, rate=8000, seed=3), 8000)
    sf.write(root / "96k8ch.wav", np.stack([voiced(1.0, rate=96000, seed=k) * (1 + 0.1 * k)
                                            for k in range(8)], axis=1), 96000)
    sf.write(root / "pcm16.wav", voiced(1.0, seed=4), 16000, subtype="PCM_16")
    raw = (root / "pcm16.wav").read_bytes()
    at = raw.find(b"data")
    n = int.from_bytes(raw[at + 4:at + 8], "little")  # the data chunk claims 10x its bytes
    (root / "lying.wav").write_bytes(raw[:at + 4] + (n * 10).to_bytes(4, "little") + raw[at + 8:])
    sf.write(root / "new\nline.wav", voiced(1.0, seed=5), 16000)
    for suffix in ("wav", "flac"):  # a copy or download stopped half way
        sf.write(root / f"whole.{suffix}", voiced(2.0, seed=6), 16000)
        whole = (root / f"whole.{suffix}").read_bytes()
        (root / f"half.{suffix}").write_bytes(whole[:len(whole) // 2])
    _ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64:d=4:r=8", "-f", "lavfi", "-i",
            "sine=frequency=220:duration=4:sample_rate=16000", "-c:v", "libx264", "-pix_fmt",
            "yuv420p", "-c:a", "aac", "-movflags", "+faststart", str(root / "whole.mp4"))
    whole = (root / "whole.mp4").read_bytes()  # the index first, so a cut keeps it
    (root / "cut.mp4").write_bytes(whole[:len(whole) * 2 // 5])
    speech = voiced(1.0, seed=7)  # the same speech, and 0.4 above the zero line
    sf.write(root / "speech.wav", speech, 16000, subtype="FLOAT")
    sf.write(root / "offset.wav", speech + np.float32(0.4), 16000, subtype="FLOAT")
    sf.write(root / "flat.wav", np.full(16000, 0.3, np.float32), 16000)
    (root / "sub.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    _ffmpeg("-i", str(root / "sub.srt"), "-c:s", "mov_text", str(root / "subtitles only.mp4"))
    for size in ("1x1", "2x2", "17x13", "4000x60"):
        _test_pattern(root / f"pattern {size}.mp4", size)
    _face_strip(root / "face strip.mp4")
    _face_strip(root / "face column.mp4", vertical=True)
    return root


@dataclass
class Ctx:
    """What a case's builder gets: a fresh folder, the shared media, pytest's monkeypatch."""

    tmp: Path
    media: Path
    monkeypatch: pytest.MonkeyPatch

    def manifest(self, rows: list[dict[str, object]], name: str = "m.csv") -> str:
        return str(write_manifest(self.tmp / name, rows))

    def raw(self, text: str | bytes, name: str = "m.csv") -> str:
        path = self.tmp / name
        path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
        return str(path)

    def good(self, name: str = "clip") -> str:
        return self.manifest([{"name": name, "audio": str(self.media / "good.wav")}])

    def extract(self, manifest: str, *extra: str, modality: str = "audio") -> list[str]:
        encoder = ["--encoder", "egemaps"] if modality == "audio" else []
        return ["extract", "--modality", modality, "--manifest", manifest,
                "--out", str(self.tmp / "s.h5"), "--no-progress", "--workers", "0", *encoder,
                *extra]


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Ctx], list[str]]
    code: int
    err: tuple[str, ...] = ()
    check: Callable[[Ctx, str, str], None] | None = None
    hangs_possible: bool = False


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _tree_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# --- builders that need more than one line ------------------------------------------------------

def _fifo_row(c: Ctx) -> list[str]:
    fifo = _fifo(c.tmp / "pipe.wav")
    return c.extract(c.manifest([{"name": "a", "audio": str(c.media / "good.wav")},
                                 {"name": "p", "audio": str(fifo)}]))


def _fifo_row_skip_missing(c: Ctx) -> list[str]:
    return _fifo_row(c) + ["--skip-missing"]


def _check_fifo_recorded_missing(c: Ctx, out: str, err: str) -> None:
    with FeatureStore(c.tmp / "s.h5") as store:
        rec = store.record("p", with_arrays=False)
        assert (rec.status, rec.stage) == ("missing", "input")
        assert "is not a regular file (a FIFO, named pipe)" in rec.reason
        assert store.record("a", with_arrays=False).status == "ok"


def _broken_link_row(c: Ctx) -> list[str]:
    os.symlink(c.tmp / "gone.wav", c.tmp / "link.wav")
    return c.extract(c.manifest([{"name": "l", "audio": str(c.tmp / "link.wav")}]))


def _noise_folder(c: Ctx, odd: Callable[[Path], object]) -> list[str]:
    folder = c.tmp / "noises"
    folder.mkdir()
    (folder / "n.wav").write_bytes((c.media / "noise.wav").read_bytes())
    odd(folder)
    return c.extract(c.good(), "--noise", f"snr=5,source={folder}")


def _corpus(c: Ctx, names: list[str], sub: str = "") -> Path:
    """Clips under c.tmp/corpus[/sub] and a manifest c.tmp/corpus/m.csv naming them."""
    root = c.tmp / "corpus"
    clips = root / sub if sub else root
    clips.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, name in enumerate(names):
        sf.write(clips / f"c{i}.wav", voiced(0.6, seed=10 + i), 16000)
        rows.append({"name": name, "audio": f"{sub + '/' if sub else ''}c{i}.wav"})
    return write_manifest(root / "m.csv", rows)


def _corrupt_into_own_folder(c: Ctx) -> list[str]:
    manifest = _corpus(c, ["a", "b"])
    c.before = _tree_bytes(manifest.parent)  # type: ignore[attr-defined]
    return ["corrupt", "--manifest", str(manifest), "--noise", "snr=5", "--out",
            str(manifest.parent)]


def _corrupt_into_clips_parent(c: Ctx) -> list[str]:
    # Clips in corpus/x/clips/, manifest in corpus/: --out corpus/x puts copies in x/clips/.
    manifest = _corpus(c, ["a", "b"], sub="x/clips")
    c.before = _tree_bytes(manifest.parent)  # type: ignore[attr-defined]
    return ["corrupt", "--manifest", str(manifest), "--noise", "snr=5", "--out",
            str(manifest.parent / "x")]


def _check_corpus_untouched(c: Ctx, out: str, err: str) -> None:
    assert _tree_bytes(c.tmp / "corpus") == c.before  # type: ignore[attr-defined]


COLLIDING = ["a b", "a_b", "a/b", "A_B", ".", "x" * 10_000]


def _corrupt_colliding(c: Ctx) -> list[str]:
    manifest = _corpus(c, COLLIDING)
    return ["corrupt", "--manifest", str(manifest), "--noise", "snr=5", "--out",
            str(c.tmp / "noisy")]


def _check_unique_copies(c: Ctx, out: str, err: str) -> None:
    from mer_features.corpora.manifest import read_manifest

    copies = read_manifest(c.tmp / "noisy" / "manifest.csv")
    assert [clip.name for clip in copies] == COLLIDING
    files = [clip.audio for clip in copies]
    assert len({f.name.casefold() for f in files}) == len(COLLIDING)  # distinct on any FS
    assert all(len(f.name.encode()) <= 255 and f.parent.name == "clips" for f in files)
    written = sorted(p.name for p in (c.tmp / "noisy" / "clips").iterdir())
    assert written == sorted(f.name for f in files)
    clean = {n: sf.read(c.tmp / "corpus" / f"c{i}.wav")[0] for i, n in enumerate(COLLIDING)}
    for clip in copies:  # each copy is its own clip's audio plus noise, not another clip's
        noisy = sf.read(clip.audio)[0]
        assert noisy.shape == clean[clip.name].shape
        assert np.corrcoef(noisy, clean[clip.name])[0, 1] > 0.8


def _internal_error(c: Ctx, debug: bool = False) -> list[str]:
    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("boom\nsecond line")

    c.monkeypatch.setattr("mer_features.pipeline.execute", boom)
    return (["--debug"] if debug else []) + c.extract(c.good())


def _bom_crlf(c: Ctx) -> list[str]:
    text = (f"name,audio,note\r\nwindows,{c.media / 'good.wav'},\"two\r\nlines\"\r\n")
    return c.extract(c.raw(b"\xef\xbb\xbf" + text.encode()))


def _check_stored(*names: str) -> Callable[[Ctx, str, str], None]:
    def check(c: Ctx, out: str, err: str) -> None:
        with FeatureStore(c.tmp / "s.h5") as store:
            assert list(store.names) == sorted(names) and set(store.status) == {"ok"}
    return check


def _mer2023_valence_7(c: Ctx) -> list[str]:
    root = c.tmp / "mer"
    (root / "train").mkdir(parents=True)
    (root / "train-label.csv").write_text("name,discrete,valence\na,happy,7\n")
    (root / "transcription.csv").write_text("name,chinese,english\na,,hello\n")
    return ["manifest", "mer2023", "--root", str(root), "--out", str(c.tmp / "m.csv")]


def _every_problem_of_every_row(c: Ctx) -> list[str]:
    good = c.media / "good.wav"
    return c.extract(c.raw(f"name,audio,discrete,valence\n"
                           f"a,{good},happy,0_5\n"        # line 2: valence with an underscore
                           f"a,{good},joyful,abc\n"       # line 3: a duplicate AND a bad valence
                           f"b,{c.tmp / 'gone.wav'},sad,\n"))  # line 4: a missing file


def _quoted_newline_then_bad_valence(c: Ctx) -> list[str]:
    good = c.media / "good.wav"
    return c.extract(c.raw(f'name,audio,text,valence\na,{good},"two\nlines",1\n'
                           f"b,{good},x,abc\n"))  # the second row starts on line 4


def _field_over_the_csv_limit(c: Ctx) -> list[str]:
    good = c.media / "good.wav"
    return c.extract(c.raw(f"name,audio,text,valence\na,{good},{'x' * 200_000},1\n"
                           f"b,{good},fine,abc\n"))


def _stored_failure_rerun(c: Ctx) -> list[str]:
    manifest = c.manifest([{"name": "good", "audio": str(c.media / "good.wav")},
                           {"name": "empty", "audio": str(c.media / "zero.wav")}])
    capture = c.capsys  # type: ignore[attr-defined]
    assert main(c.extract(manifest)) == 3  # the first run records the failure
    capture.readouterr()
    return c.extract(manifest)  # the re-run: nothing to do, yet the store holds a failure


def _check_rerun_counts_stored_failures(c: Ctx, out: str, err: str) -> None:
    assert "0 extracted, 2 already stored, 1 failed (1 stored by an earlier run; " \
           "--retry-failed tries them again)" in out, out


def _interrupted_before_any_clip(c: Ctx) -> list[str]:
    def stop(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # SIGTERM while the encoder loads: no store yet

    c.monkeypatch.setattr("mer_features.pipeline.execute", stop)
    return c.extract(c.good())


def _interrupted_with_empty_store(c: Ctx) -> list[str]:
    from mer_features.errors import ExtractionInterrupted

    def stop(plan: object, **_: object) -> None:
        raise ExtractionInterrupted(plan.store, kept=0, extracted=0)

    c.monkeypatch.setattr("mer_features.pipeline.execute", stop)
    return c.extract(c.good())


def _check_nothing_created(c: Ctx, out: str, err: str) -> None:
    assert not (c.tmp / "s.h5").exists() and "kept in" not in err


def _garbage_launcher_env(c: Ctx) -> list[str]:
    c.monkeypatch.setenv("WORLD_SIZE", "four")
    return c.extract(c.good())


def _noise(spec: str) -> Callable[[Ctx], list[str]]:
    return lambda c: c.extract(c.good(), "--noise", spec)


def _arg(*extra: str, modality: str = "audio") -> Callable[[Ctx], list[str]]:
    return lambda c: c.extract(c.good(), *extra, modality=modality)


NOISE_USAGE = "Noise spec"
CASES = [
    # --- arguments out of range: argparse usage errors (exit 2) -----------------------------
    Case("demo-clips-below-6", lambda c: ["demo", "--out", str(c.tmp / "d"), "--clips", "5"], 2,
         ("--clips: must be at least 6, got 5",)),
    Case("demo-seed-negative", lambda c: ["demo", "--out", str(c.tmp / "d"), "--seed", "-1"], 2,
         ("--seed: must be at least 0",)),
    Case("batch-size-zero", _arg("--batch-size", "0"), 2, ("--batch-size must be an integer >= 1",)),
    Case("batch-size-negative", _arg("--batch-size", "-3"), 2, ("--batch-size",)),
    Case("workers-negative", _arg("--workers", "-1"), 2, ("--workers must be an integer from 0",)),
    Case("workers-above-256", _arg("--workers", "257"), 2, ("--workers must be an integer from 0 "
                                                           "to 256; got 257",)),
    Case("commit-every-zero", _arg("--commit-every", "0"), 2,
         ("--commit-every must be an integer >= 1",)),
    Case("batch-seconds-nan", _arg("--batch-seconds", "nan"), 2, ("--batch-seconds",)),
    Case("fps-zero", _arg("--fps", "0", modality="video"), 2, ("--fps must be a number in (0, 60]",)),
    Case("fps-inf", _arg("--fps", "inf", modality="video"), 2, ("--fps",)),
    Case("max-frames-zero", _arg("--max-frames", "0", modality="video"), 2, ("--max-frames",)),
    Case("face-size-tiny", _arg("--face-size", "4", modality="video"), 2, ("--face-size",)),
    Case("face-margin-nan", _arg("--face-margin", "nan", modality="video"), 2, ("--face-margin",)),
    Case("seed-negative", _arg("--seed", "-1"), 2, ("--seed must be an integer >= 0",)),
    Case("seed-not-integer", _arg("--seed", "1.5"), 2, ("--seed: invalid int value",)),
    Case("shard-out-of-range", _arg("--shard", "3/2"), 2, ("Shard 3/2 does not exist",)),
    Case("shard-garbage", _arg("--shard", "a/b"), 2, ("--shard must look like I/N",)),
    Case("option-without-equals", _arg("-o", "bad"), 2, ("'bad' must look like KEY=VALUE",)),
    Case("device-garbage", _arg("--device", "cuda:x"), 2, ("--device must be auto, cpu",)),
    Case("corrupt-seed-negative", lambda c: ["corrupt", "--manifest", c.good(), "--noise", "snr=5",
                                             "--seed", "-2", "--out", str(c.tmp / "o")], 2,
         ("--seed",)),
    Case("merge-no-shards", lambda c: ["merge", "--out", str(c.tmp / "m.h5")], 2,
         ("the following arguments are required: shards",)),
    Case("option-unknown", _arg("-o", "nope=1"), 2, ("has no option(s) nope",)),
    # --- arguments that parse but cannot be used: one line, exit 1 --------------------------
    Case("text-column-missing", _arg("--text-column", "nope", modality="text"), 1,
         ("has no 'nope' column",)),
    Case("text-modality-without-text-column", lambda c: c.extract(c.raw(
        f"name,audio\na,{c.media / 'good.wav'}\n"), modality="text"), 1, ("has no 'text' column",)),
    Case("text-column-empty-in-every-row", lambda c: c.extract(c.raw(
        f"name,audio,text,english\na,{c.media / 'good.wav'},,hello\n"), modality="text"), 1,
        ("Column 'text'", "is empty in all 1 rows", "--text-column (english)")),
    Case("demo-out-is-a-file", lambda c: ["demo", "--out", c.raw("x"), "--clips", "6"], 1,
         ("exists and is not a folder",)),
    Case("merge-shard-not-a-store",
         lambda c: ["merge", "--out", str(c.tmp / "m.h5"), c.raw("not hdf5", "x.h5")], 1,
         ("x.h5",)),
    Case("merge-shard-missing", lambda c: ["merge", "--out", str(c.tmp / "m.h5"),
                                           str(c.tmp / "none.h5")], 1, ("does not exist",)),
    Case("info-not-a-store", lambda c: ["info", c.raw("not hdf5", "x.h5")], 1, ("x.h5",)),
    Case("ravdess-root-empty", lambda c: ["manifest", "ravdess", "--root", str(c.tmp), "--out",
                                          str(c.tmp / "r.csv")], 1, ("No .wav or .flac files",)),
    Case("ravdess-root-a-file", lambda c: ["manifest", "ravdess", "--root", c.raw("x"), "--out",
                                           str(c.tmp / "r.csv")], 1, ("is not a folder",)),
    Case("mer2023-root-empty", lambda c: ["manifest", "mer2023", "--root", str(c.tmp), "--out",
                                          str(c.tmp / "r.csv")], 1,
         ("train-label.csv' not found",)),
    Case("mer2023-root-missing", lambda c: ["manifest", "mer2023", "--root", str(c.tmp / "no"),
                                            "--out", str(c.tmp / "r.csv")], 1, ("not found",)),
    Case("mer2023-valence-off-scale", _mer2023_valence_7, 1,
         ("1 valence value(s) that are not numbers in [-5, 5]: a='7'", "(v - 5) * 1.25")),
    Case("launcher-env-garbage", _garbage_launcher_env, 1,
         ("WORLD_SIZE='four' is not an integer",)),
    Case("corrupt-out-is-a-file", lambda c: ["corrupt", "--manifest", c.good(), "--noise", "snr=5",
                                             "--out", c.raw("x", "out.txt")], 1,
         ("exists and is not a folder",)),
    Case("internal-error-is-one-line", _internal_error, 1,
         ("error: internal error: RuntimeError: boom second line (re-run with --debug",)),
    # --- manifests ---------------------------------------------------------------------------
    Case("manifest-bom-crlf-quoted-newline", _bom_crlf, 0, (), check=_check_stored("windows")),
    Case("manifest-empty-file", lambda c: c.extract(c.raw("")), 1, ("is empty",)),
    Case("manifest-header-only", lambda c: c.extract(c.raw("name,audio\n")), 1,
         ("has a header but no clip rows",)),
    Case("manifest-is-a-directory", lambda c: c.extract(str(c.tmp)), 1, ("is a directory",)),
    Case("manifest-nul-in-name", lambda c: c.extract(c.raw("name,audio\nn\x00ul,x.wav\n")), 1,
         ("line 2", "'name' holds a NUL byte (U+0000)")),
    Case("manifest-nul-in-split", lambda c: c.extract(c.raw(
        f"name,audio,split\na,{c.media / 'good.wav'},tr\x00ain\n")), 1,
        ("line 2 (clip 'a')", "'split' holds a NUL byte")),
    Case("manifest-newline-in-name",
         lambda c: c.extract(c.raw('name,audio\n"two\nlines",x.wav\n')), 1,
         ("'name' holds a line break (U+000A)",)),
    Case("manifest-control-in-label", lambda c: c.extract(c.raw(
        f"name,audio,discrete\na,{c.media / 'good.wav'},ha\x07ppy\n")), 1, ("'discrete' holds",)),
    Case("manifest-nul-in-path", lambda c: c.extract(c.raw("name,audio\na,x\x00.wav\n")), 1,
         ("holds a NUL byte, which no file path can hold",)),
    Case("manifest-unicode-twins", lambda c: c.extract(c.manifest(
        [{"name": "caf\u00e9", "audio": str(c.media / "good.wav")},
         {"name": "cafe\u0301", "audio": str(c.media / "good.wav")}])), 1,
        ("once Unicode-normalised (NFC)", "line 3")),
    Case("manifest-valence-sam-scale", lambda c: c.extract(c.raw(
        f"name,audio,valence\na,{c.media / 'good.wav'},7\n")), 1,
        ("valence 7 is outside MER's scale [-5, 5]", "(v - 5) * 1.25")),
    Case("manifest-row-is-a-directory", lambda c: c.extract(c.manifest(
        [{"name": "d", "audio": str(c.tmp)}])), 1, ("line 2 (clip 'd')", "is a directory")),
    Case("manifest-row-is-a-fifo", _fifo_row, 1, ("is not a regular file (a FIFO, named pipe)",),
         hangs_possible=True),
    Case("manifest-fifo-skip-missing", _fifo_row_skip_missing, 3, (),
         check=_check_fifo_recorded_missing, hangs_possible=True),
    Case("manifest-row-is-a-device", lambda c: c.extract(c.manifest(
        [{"name": "z", "audio": "/dev/zero"}])), 1, ("is not a regular file (a character device)",),
        hangs_possible=True),
    Case("manifest-row-broken-symlink", _broken_link_row, 1, ("is a broken symbolic link",)),
    Case("manifest-every-problem-of-every-row", _every_problem_of_every_row, 1,
         ("has 4 problem(s)", "line 2 (clip 'a'): valence '0_5' is not a finite number",
          "line 3 (clip 'a'): duplicate name (first used on line 2)",
          "line 3 (clip 'a'): valence 'abc' is not a finite number",
          "line 4 (clip 'b'): file", "gone.wav' not found", "--skip-missing")),
    *[Case(f"manifest-valence-{label}", lambda c, v=value: c.extract(c.raw(
        f"name,audio,valence\na,{c.media / 'good.wav'},{v}\n")), 1,
        (f"valence '{value.strip(chr(34))}' is not a finite number; write a decimal number "
         "such as -2.5",))
      for label, value in [("underscore", "0_5"), ("inf", "inf"), ("nan", "NaN"),
                           ("hex", "0x1"), ("arabic-digit", "\u0665"), ("comma", '"1,5"')]],
    Case("manifest-capitalised-headers", lambda c: c.extract(c.raw(
        f"name,audio,Discrete,Valence,Split\na,{c.media / 'good.wav'},happy,1,train\n")), 1,
        ("has 3 problem(s)", "header: column 'Discrete' differs from the column 'discrete' only "
         "in letter case", "rename it to 'discrete'", "column 'Split'")),
    Case("manifest-capitalised-name-header", lambda c: c.extract(c.raw(
        f"Name,audio\na,{c.media / 'good.wav'}\n")), 1, ("column 'Name' differs from the "
                                                          "column 'name' only in letter case",)),
    Case("manifest-utf16-with-bom", lambda c: c.extract(c.raw(
        f"name,audio\na,{c.media / 'good.wav'}\n".encode("utf-16"))), 1,
        ("is UTF-16 text (it starts with a UTF-16 byte-order mark), not UTF-8; save it as UTF-8",)),
    Case("manifest-utf16-without-bom", lambda c: c.extract(c.raw(
        f"name,audio\na,{c.media / 'good.wav'}\n".encode("utf-16-le"))), 1,
        ("bytes are NUL", "save it as UTF-8")),
    Case("manifest-quoted-newline-line-numbers", _quoted_newline_then_bad_valence, 1,
         ("has 1 problem(s)", "line 4 (clip 'b'): valence 'abc' is not a finite number")),
    Case("manifest-empty-header-names", lambda c: c.extract(c.raw(
        f"name,,audio,\na,x,{c.media / 'good.wav'},\n")), 1,
        ("header: column(s) 2, 4 of the header have no name",)),
    Case("manifest-field-over-the-csv-limit", _field_over_the_csv_limit, 1,
         ("has 2 problem(s)", "line 2: cannot be read as CSV: a field is longer than the CSV "
          "reader's limit of 131072 characters", "line 3 (clip 'b'): valence 'abc'")),
    Case("text-column-is-the-name-column", lambda c: c.extract(c.raw(
        f"name,audio,text,english\na,{c.media / 'good.wav'},hi,hello\n"), "--text-column",
        "name", modality="text"), 1,
        ("Column 'name' of manifest", "holds the clip names, not transcripts; pick a "
         "transcript column with --text-column (text, english)",)),
    # --- a re-run and interruptions -----------------------------------------------------------
    Case("rerun-over-stored-failures-exits-3", _stored_failure_rerun, 3, (),
         check=_check_rerun_counts_stored_failures),
    Case("interrupted-before-any-clip", _interrupted_before_any_clip, 130,
         ("interrupted (SIGINT) before any clip was finished: nothing was written",),
         check=_check_nothing_created),
    Case("interrupted-with-no-store-file", _interrupted_with_empty_store, 130,
         ("interrupted (SIGINT) before any clip was finished: nothing was written (",
          "s.h5 was not created)"), check=_check_nothing_created),
    # --- noise specs -------------------------------------------------------------------------
    *[Case(f"noise-{label}", _noise(spec), 2, (NOISE_USAGE, words)) for label, spec, words in [
        ("snr-text", "snr=abc", "snr takes a finite number"),
        ("snr-reversed", "snr=10:5", "LOW <= HIGH"),
        ("snr-inf", "snr=inf", "bad value 'inf'"),
        ("snr-nan", "snr=nan", "bad value 'nan'"),
        ("snr-open-range", "snr=5:", "bad value '5:'"),
        ("snr-empty", "snr=", "is not key=value"),
        ("blur-0", "blur=0", "distinct factors from 1, 2, 4, 8"),
        ("blur-3", "blur=3", "bad value '3' for 'blur'"),
        ("blur-repeated", "blur=2|2", "distinct factors"),
        ("scale-0", "scale=0", "scale takes a number in (0, 1]"),
        ("scale-2", "scale=2", "bad value '2' for 'scale'"),
        ("jpeg-0", "jpeg=0", "quality from 1 to 100"),
        ("jpeg-101", "jpeg=101", "bad value '101' for 'jpeg'"),
        ("unknown-key", "snr=5,colour=red", "unknown key 'colour'"),
        ("duplicate-key", "snr=5,snr=6", "'snr' is given twice"),
        ("nothing", ",", "corrupts nothing"),
        ("source-without-snr", "source=pink", "'source' needs an 'snr'"),
    ]],
    Case("noise-folder-fifo", lambda c: _noise_folder(c, lambda f: _fifo(f / "pipe.wav")), 2,
         ("pipe.wav is not a regular file (a FIFO, named pipe)",), hangs_possible=True),
    Case("noise-folder-device", lambda c: _noise_folder(
        c, lambda f: os.symlink("/dev/zero", f / "zero.wav")), 2,
        ("zero.wav is not a regular file (a character device)",), hangs_possible=True),
    Case("noise-folder-broken-symlink", lambda c: _noise_folder(
        c, lambda f: os.symlink(f / "gone.wav", f / "gone link.flac")), 2,
        ("gone link.flac is a broken symbolic link",)),
    Case("noise-folder-subfolder-named-wav", lambda c: _noise_folder(
        c, lambda f: ((f / "sub.wav").mkdir(), (f / "sub.wav" / "more.wav").write_bytes(
            (c.media / "noise.wav").read_bytes()))), 0, ()),
    # --- corrupt --out -----------------------------------------------------------------------
    Case("corrupt-out-is-the-corpus-folder", _corrupt_into_own_folder, 1,
         ("holds the source manifest", "Give a folder of its own"), check=_check_corpus_untouched),
    Case("corrupt-out-clips-is-a-source-folder", _corrupt_into_clips_parent, 1,
         ("holds source clips",), check=_check_corpus_untouched),
    Case("corrupt-colliding-names", _corrupt_colliding, 0, (), check=_check_unique_copies),
]


def _run_main(args: list[str], capsys: pytest.CaptureFixture, guard: bool) -> tuple[int, str, str]:
    """main(args) in this process; with ``guard``, an alarm turns a hang into a failure."""
    hung = []

    def on_alarm(*_: object) -> None:
        hung.append(True)
        raise TimeoutError("hang")

    previous = signal.signal(signal.SIGALRM, on_alarm) if guard else None
    if guard:
        signal.alarm(60)
    try:
        code = main(args)
    except SystemExit as e:
        code = e.code
    finally:
        if guard:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, previous)
    assert not hung, f"{args} hung"
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_command(case: Case, media: Path, tmp_path: Path, monkeypatch, capsys):
    ctx = Ctx(tmp_path, media, monkeypatch)
    ctx.capsys = capsys  # type: ignore[attr-defined]
    args = case.build(ctx)
    capsys.readouterr()
    code, out, err = _run_main(args, capsys, case.hangs_possible)
    assert code == case.code, err
    for words in case.err:
        assert words in err, err
    assert "Traceback" not in err
    if code == 2:
        assert "usage: mer-features" in err and err.strip().splitlines()[-1].count("error:") == 1
    elif code == 1:
        lines = err.splitlines()  # one error; a manifest's problems are listed below it
        assert lines[0].startswith("error: "), err
        assert sum(line.startswith("error") for line in lines) == 1, err
    if case.check is not None:
        case.check(ctx, out, err)


def test_debug_flag_reraises(media: Path, tmp_path: Path, monkeypatch):
    ctx = Ctx(tmp_path, media, monkeypatch)
    with pytest.raises(RuntimeError, match="boom"):
        main(_internal_error(ctx, debug=True))
    with pytest.raises(RuntimeError, match="boom"):  # also after the command
        main(_internal_error(ctx) + ["--debug"])


# ---------------------------------------------------------------------------------------------
# Odd media: one extraction per modality, one row per case


@dataclass(frozen=True)
class MediaCase:
    id: str
    modality: str
    row: Callable[[Path], dict[str, object]]  # media folder -> manifest row (without name)
    status: str
    stage: str = ""
    reason: tuple[str, ...] = ()
    check: Callable[[object], None] | None = None


def _audio(file: str) -> Callable[[Path], dict[str, object]]:
    return lambda m: {"audio": str(m / file)}


def _video(file: str) -> Callable[[Path], dict[str, object]]:
    return lambda m: {"video": str(m / file)}


def _short(rec) -> None:
    assert rec.duration < 2.0  # what the file holds, not the 10 s its header claims


def _cut(*words: str) -> Callable[[object], None]:
    def check(rec) -> None:
        for w in words:
            assert w in rec.info["truncation"], rec.info
        assert "the file was cut short" in rec.info["truncation"]
    return check


def _dc_removed(rec) -> None:
    assert rec.info["dc_offset"] == pytest.approx(0.4, abs=1e-3)


def _faces_found(rec) -> None:
    assert rec.info["face_fraction"] > 0 and rec.frame_extras["has_face"].any()


def _no_flags(rec) -> None:
    assert not {"truncation", "dc_offset", "level"} & set(rec.info), rec.info


TOO_SMALL = "too small to hold a face: the detector finds faces of at least 20 pixels"
MEDIA_CASES = [
    MediaCase("audio-zero-samples", "audio", _audio("zero.wav"), "failed", "decode",
              ("holds no samples",)),
    MediaCase("audio-one-sample", "audio", _audio("one.wav"), "failed", "encode",
              ("egemaps needs at least 0.1 s of audio",)),
    MediaCase("audio-8khz-mono", "audio", _audio("8k.wav"), "ok"),
    MediaCase("audio-96khz-8-channels", "audio", _audio("96k8ch.wav"), "ok"),
    MediaCase("audio-lying-wav-header", "audio", _audio("lying.wav"), "ok",
              check=lambda rec: (_short(rec), _cut("the WAV header declares")(rec))),
    MediaCase("audio-wav-cut-in-half", "audio", _audio("half.wav"), "ok",
              check=_cut("the WAV header declares 64000 bytes of audio (2.00 s)", "(1.00 s)")),
    MediaCase("audio-flac-cut-in-half", "audio", _audio("half.flac"), "ok",
              check=_cut("the file declares 2.00 s of audio")),
    MediaCase("audio-mp4-cut-short", "audio", _video("cut.mp4"), "ok",
              check=_cut("the file declares 4.0")),
    MediaCase("audio-mp4-whole", "audio", _video("whole.mp4"), "ok",
              check=lambda rec: _no_flags(rec)),
    MediaCase("audio-dc-offset", "audio", _audio("offset.wav"), "ok", check=_dc_removed),
    MediaCase("audio-speech-without-offset", "audio", _audio("speech.wav"), "ok",
              check=lambda rec: _no_flags(rec)),
    MediaCase("audio-flat-line", "audio", _audio("flat.wav"), "failed", "decode",
              ("the audio track is a flat line (every sample is 0.3",)),
    MediaCase("audio-newline-in-file-name", "audio", _audio("new\nline.wav"), "ok"),
    MediaCase("audio-path-with-dotdot", "audio",
              lambda m: {"audio": f"../{m.name}/good2.wav"}, "ok"),
    MediaCase("audio-subtitle-only-mp4", "audio", _video("subtitles only.mp4"), "failed", "decode",
              ("has no audio track",)),
    MediaCase("audio-name-of-10k-characters", "audio", _audio("good.wav"), "ok"),
    MediaCase("audio-name-differing-in-case", "audio", _audio("good2.wav"), "ok"),
    MediaCase("video-1x1", "video", _video("pattern 1x1.mp4"), "failed", "faces",
              ("frames are 1x1 pixels", TOO_SMALL)),
    MediaCase("video-2x2", "video", _video("pattern 2x2.mp4"), "failed", "faces",
              ("frames are 2x2 pixels", TOO_SMALL)),
    MediaCase("video-17x13", "video", _video("pattern 17x13.mp4"), "failed", "faces",
              ("frames are 17x13 pixels", TOO_SMALL)),
    MediaCase("video-4000x60-no-face", "video", _video("pattern 4000x60.mp4"), "failed", "faces",
              ("no face detected in any frame",)),
    MediaCase("video-13000x192-strip-with-face", "video", _video("face strip.mp4"), "ok",
              check=_faces_found),
    MediaCase("video-192x13000-column-with-face", "video", _video("face column.mp4"), "ok",
              check=_faces_found),
    MediaCase("video-subtitle-only-mp4", "video", _video("subtitles only.mp4"), "failed", "decode",
              ("has no video stream",)),
]
_NAMES = {"audio-name-of-10k-characters": "n" * 10_000,
          "audio-name-differing-in-case": "AUDIO-8KHZ-MONO"}


@pytest.fixture(scope="module")
def media_runs(media: Path, tmp_path_factory: pytest.TempPathFactory):
    """One extraction per modality over its cases: (exit code, records by case id)."""
    runs = {}
    for modality in ("audio", "video"):
        cases = [c for c in MEDIA_CASES if c.modality == modality]
        folder = tmp_path_factory.mktemp(f"trust-{modality}")
        rows = [{"name": _NAMES.get(c.id, c.id), **c.row(media)} for c in cases]
        manifest = write_manifest(folder / "m.csv", rows)
        out = folder / "s.h5"
        # eGeMAPS for audio: the cases' reasons and the DC-offset check are written for it
        encoder = ["--encoder", "egemaps"] if modality == "audio" else []
        code = main(["extract", "--modality", modality, "--manifest", str(manifest), "--out",
                     str(out), "--no-progress", "--workers", "2", "--fps", "2", *encoder])
        with FeatureStore(out) as store:
            records = {c.id: store.record(_NAMES.get(c.id, c.id)) for c in cases}
            assert len(store) == len(cases)
        runs[modality] = (code, records, out)
    return runs


@pytest.mark.slow
def test_a_dc_offset_does_not_change_the_features(media_runs):
    """The same speech 0.4 above the zero line: its eGeMAPS vector equals the clean one's,
    where before it was stored ok with features far off."""
    import opensmile

    _, records, _ = media_runs["audio"]
    offset, clean = records["audio-dc-offset"], records["audio-speech-without-offset"]
    np.testing.assert_allclose(offset.utterance, clean.utterance, rtol=1e-2, atol=1e-3)
    smile = opensmile.Smile(opensmile.FeatureSet.eGeMAPSv02)  # what the offset did before
    before = smile.process_signal(voiced(1.0, seed=7) + np.float32(0.4), 16000).to_numpy()[0]
    far = np.abs(before - clean.utterance) > 0.1 * np.abs(clean.utterance) + 1e-3
    assert far.sum() > 10


@pytest.mark.slow
@pytest.mark.parametrize("case", MEDIA_CASES, ids=[c.id for c in MEDIA_CASES])
def test_odd_media(case: MediaCase, media_runs):
    code, records, _ = media_runs[case.modality]
    assert code == 3  # every group holds failures: completed, with recorded failures
    rec = records[case.id]
    assert (rec.status, rec.stage) == (case.status, case.stage), rec.reason
    for words in case.reason:
        assert words in rec.reason
    if case.status == "ok":
        assert rec.utterance is not None and np.isfinite(rec.utterance).all()
        assert np.abs(rec.utterance).sum() > 0
    if case.check is not None:
        case.check(rec)


# ---------------------------------------------------------------------------------------------
# Processes: signals and broken pipes, through the real console entry point


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "mer_features.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


SIGNAL_CASES = [("SIGTERM", signal.SIGTERM, 143), ("SIGINT", signal.SIGINT, 130)]


@pytest.mark.slow
@pytest.mark.parametrize("name,signum,code", SIGNAL_CASES, ids=[c[0] for c in SIGNAL_CASES])
def test_signal_keeps_finished_clips(name: str, signum: int, code: int, tmp_path: Path, capsys):
    """A run stopped by SIGTERM (a SLURM time limit, docker stop) or Ctrl-C keeps every committed
    clip, says so in one line, and the next run does not extract them again. The signal goes to
    the whole process group, as SLURM and a terminal send it, so the DataLoader workers get it
    too and must stay quiet."""
    rows = []
    for i in range(16):
        sf.write(tmp_path / f"c{i}.wav", voiced(3.0, seed=i), 16000)
        rows.append({"name": f"c{i:02d}", "audio": f"c{i}.wav"})
    manifest = write_manifest(tmp_path / "m.csv", rows)
    out = tmp_path / "s.h5"
    args = ["extract", "--modality", "audio", "--manifest", str(manifest), "--out", str(out),
            "--no-progress", "--workers", "1", "--commit-every", "1"]
    proc = _cli(*args, start_new_session=True)
    parts = out.with_name(out.name + ".parts")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if parts.is_dir() and len(list(parts.glob("part-*.h5"))) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, stderr
    match = re.fullmatch(rf"interrupted \({name}\): (\d+) clips kept in {re.escape(str(out))}; "
                         r"run the same command again to resume\n", stderr)
    assert match, stderr  # one line: no traceback from the main process or the workers
    kept = int(match.group(1))
    assert 2 <= kept < 16
    with FeatureStore(out) as store:
        assert len(store) == kept and set(store.status) == {"ok"}
        assert not list(parts.glob("*.h5"))  # merged into the store
    capsys.readouterr()
    assert main(args) == 0
    assert f"{16 - kept} extracted, {kept} already stored" in capsys.readouterr().out


@pytest.mark.slow
def test_broken_pipe_is_quiet(media_runs):
    """`mer-features info STORE | head -1`: the reader goes away; exit 141, nothing on stderr."""
    proc = _cli("info", str(media_runs["audio"][2]))
    proc.stdout.close()  # before the child writes anything: it takes a second to start
    stderr = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 141, stderr
    assert stderr == ""
