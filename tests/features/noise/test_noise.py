"""Noise injection: spec parsing, exact SNR, reproducible draws, noise folders, video blur."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from synthetic_media import voiced
from mer_features.errors import ClipError
from mer_features.noise import (NoiseFolder, NoiseSpecError, canonical, corrupt_audio,
                                corrupt_frames, mix_at_snr, parse_noise, pyramid_blur, snr_db)


def test_parse_and_canonical_form():
    spec = parse_noise("snr=5:10, source=pink ,blur=1|2|4,jpeg=30")
    assert spec.snr == (5.0, 10.0) and spec.source == "pink" and spec.blur == (1, 2, 4)
    assert canonical(spec) == "snr=5:10,source=pink,blur=1|2|4,jpeg=30"
    assert parse_noise("snr=0").snr == (0.0, 0.0) and parse_noise("snr=0").source == "white"
    assert not parse_noise("blur=2").has_audio and parse_noise("blur=2").has_video


@pytest.mark.parametrize("text, match", [
    ("snr=ten", "bad value 'ten' for 'snr'"), ("snr=10:5", "bad value"), ("blur=3", "bad value"),
    ("jpeg=0", "bad value"), ("scale=2", "bad value"), ("level=3", "unknown key 'level'"),
    ("snr", "is not key=value"), ("source=pink", "'source' needs an 'snr'"), ("", "corrupts nothing"),
    ("snr=5,source=/no/such/folder", "neither white, pink, babble nor a folder"),
])
def test_bad_specs_are_clear_errors(text, match):
    with pytest.raises(NoiseSpecError, match=match):
        parse_noise(text)


@pytest.mark.parametrize("source", ["white", "pink"])
def test_measured_snr_equals_the_drawn_value(source):
    spec = parse_noise(f"snr=0:20,source={source}")
    for i in range(20):
        clean = voiced(1.0 + 0.1 * i, seed=i, amplitude=0.5)
        noisy, info = corrupt_audio(f"clip{i}", clean, 16000, spec, seed=3)
        assert 0 <= info["snr_db"] <= 20
        scale = 1.0  # no clipping at these levels: the clean part is unchanged
        assert np.max(np.abs(noisy)) <= 0.99 + 1e-6
        measured = snr_db(clean * scale, noisy - clean * scale)
        assert abs(measured - info["snr_db"]) < 0.1, (measured, info)


def test_no_clipping_keeps_the_snr():
    loud = voiced(1.0, amplitude=1.6)  # peaks above 1 once noise is added
    mixture, measured = mix_at_snr(loud, np.random.default_rng(0).standard_normal(16000), 5.0)
    assert np.max(np.abs(mixture)) <= 0.99 + 1e-6
    assert abs(measured - 5.0) < 1e-6
    with pytest.raises(ClipError, match="silent"):
        mix_at_snr(np.zeros(100), np.ones(100), 5.0)


def test_draws_depend_only_on_seed_name_and_spec():
    spec = parse_noise("snr=5:10,blur=1|2|4")
    clean = voiced(1.0)
    a1, i1 = corrupt_audio("a", clean, 16000, spec, seed=1)
    a2, i2 = corrupt_audio("a", clean, 16000, spec, seed=1)
    b, ib = corrupt_audio("b", clean, 16000, spec, seed=1)
    c, ic = corrupt_audio("a", clean, 16000, spec, seed=2)
    np.testing.assert_array_equal(a1, a2)
    assert i1 == i2 and i1["snr_db"] != ib["snr_db"] and i1["snr_db"] != ic["snr_db"]
    factors = {corrupt_frames(f"c{i}", np.zeros((1, 8, 8, 3), np.uint8), spec, 0)[1]["blur"]
               for i in range(30)}
    assert factors == {1, 2, 4}


def test_noise_folder_concatenates_and_crops(tmp_path: Path):
    (tmp_path / "n").mkdir()
    sf.write(tmp_path / "n" / "a.wav", np.full(8000, 0.1, np.float32), 16000)
    sf.write(tmp_path / "n" / "b.flac", np.full(12000, -0.2, np.float32), 8000)  # 1.5 s at 8 kHz
    folder = NoiseFolder(tmp_path / "n")
    assert folder.total == pytest.approx(2.0)
    spec = parse_noise(f"snr=10,source={tmp_path / 'n'}")
    for i in range(10):
        noisy, info = corrupt_audio(f"c{i}", voiced(1.2, seed=i), 16000, spec, seed=0)
        assert 0 <= info["offset_s"] <= 0.8 and info["pieces"]
        assert sum(p["seconds"] for p in info["pieces"]) == pytest.approx(1.2, abs=1e-3)
        assert abs(info["measured_snr_db"] - 10) < 0.1
    with pytest.raises(ClipError, match="holds 2.00 s of audio; the clip needs 3.00 s"):
        corrupt_audio("long", voiced(3.0), 16000, spec, seed=0)


def test_bad_noise_folders(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NoiseSpecError, match="holds no audio files"):
        parse_noise(f"snr=5,source={tmp_path / 'empty'}")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_text("not audio")
    with pytest.raises(NoiseSpecError, match="unreadable audio files: x.wav"):
        parse_noise(f"snr=5,source={tmp_path / 'bad'}")


def test_pyramid_blur_removes_detail_and_keeps_size():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (2, 37, 50, 3), dtype=np.uint8)
    assert pyramid_blur(frames, 1) is frames
    detail = [np.abs(np.diff(pyramid_blur(frames, f).astype(float), axis=2)).mean() for f in (1, 2, 4)]
    assert pyramid_blur(frames, 4).shape == frames.shape
    assert detail[0] > detail[1] > detail[2]
    smooth = np.tile(np.linspace(0, 255, 50, dtype=np.float32)[None, None, :, None], (1, 37, 1, 3))
    ramp = smooth.astype(np.uint8)
    assert np.abs(pyramid_blur(ramp, 2)[:, 4:-4, 4:-4].astype(int) - ramp[:, 4:-4, 4:-4]).max() <= 3
    out, info = corrupt_frames("x", frames, parse_noise("scale=0.5,jpeg=20"), seed=0)
    assert out.shape == frames.shape and info == {"scale": 0.5, "jpeg": 20}


@pytest.mark.slow
def test_corrupted_copies_use_the_pipelines_draws(tmp_path: Path, audio_corpus: Path):
    import json

    from mer_features.cli import main
    from mer_features.demo import write_demo
    from mer_features.corpora.manifest import read_manifest
    from mer_features.decode.audio import load_audio

    out = tmp_path / "noisy"
    assert main(["corrupt", "--manifest", str(audio_corpus), "--noise", "snr=5:10,source=pink",
                 "--seed", "3", "--out", str(out)]) == 0
    copies = read_manifest(out / "manifest.csv")
    originals = read_manifest(audio_corpus)
    spec = parse_noise("snr=5:10,source=pink")
    for clip, orig in zip(copies, originals):
        draws = json.loads(clip.extra["noise"])["audio"]
        _, pipeline = corrupt_audio(clip.name, voiced(0.5), 16000, spec, seed=3)
        assert draws["snr_db"] == pipeline["snr_db"]
        clean, _ = sf.read(orig.audio, dtype="float32", always_2d=True)
        noisy, _ = sf.read(clip.audio, dtype="float32")
        clean = clean.mean(axis=1)
        assert abs(snr_db(clean, noisy - clean) - draws["snr_db"]) < 0.1
        assert (clip.discrete, clip.valence) == (orig.discrete, orig.valence)
    # a video key does not change the audio draws (as in extract --noise)
    both = tmp_path / "both"
    assert main(["corrupt", "--manifest", str(audio_corpus), "--noise",
                 "snr=5:10,source=pink,blur=2", "--seed", "3", "--out", str(both)]) == 0
    for a, b in zip(copies, read_manifest(both / "manifest.csv")):
        np.testing.assert_array_equal(sf.read(a.audio)[0], sf.read(b.audio)[0])

    demo = write_demo(tmp_path / "demo", n_clips=6)
    vout = tmp_path / "vnoisy"
    assert main(["corrupt", "--manifest", str(demo), "--noise", "snr=5,blur=4", "--out", str(vout)]) == 0
    for clip, orig in zip(read_manifest(vout / "manifest.csv"), read_manifest(demo)):
        import decord

        a, b = decord.VideoReader(str(clip.video)), decord.VideoReader(str(orig.video))
        assert len(a) == len(b) and a[0].shape == b[0].shape
        draws = json.loads(clip.extra["noise"])
        assert draws["video"]["blur"] in (1, 2, 4) and draws["audio"]["snr_db"] == 5.0
        assert abs(len(load_audio(clip.video, 16000)) - len(load_audio(orig.video, 16000))) < 1600


def test_corrupted_copies_get_unique_file_names():
    """Sanitised names that collide ('a b' and 'a_b'), names equal but for case or Unicode
    normalisation, and names too long for a file system all get distinct, short file names;
    a name that is a safe file name already keeps it."""
    from mer_features.noise.corrupt import file_stems

    names = ["a b", "a_b", "a/b", "A_B", "caf\u00e9", "cafe\u0301", "..", "x" * 10_000, "plain-1"]
    stems = file_stems(names)
    assert len({s.casefold() for s in stems.values()}) == len(names)
    assert stems["plain-1"] == "plain-1" and stems["a b"].startswith("a_b-")
    assert all(len(s.encode()) <= 160 and not s.startswith(".") and "/" not in s
               for s in stems.values())
    assert file_stems(names) == stems  # deterministic: a re-run writes the same files
