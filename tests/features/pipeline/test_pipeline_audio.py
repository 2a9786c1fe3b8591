"""Audio extraction end to end on generated clips: resume, failures, fingerprints, batching."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from synthetic_media import make_tiny_hf_audio, voiced, write_manifest
from mer_features.errors import FingerprintMismatchError, ManifestError, ParameterError
from mer_features.pipeline import ClipFailedError, extract
from mer_features.store import FeatureStore


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


def run(manifest, out, **kw):
    kw.setdefault("encoder", "egemaps")
    kw.setdefault("workers", 0)
    kw.setdefault("progress", False)
    return extract(manifest, out, modality="audio", **kw)


@pytest.mark.slow
def test_egemaps_store_has_functionals_llds_labels_and_resumes(audio_corpus: Path, tmp_path: Path):
    out = tmp_path / "a.h5"
    s = run(audio_corpus, out, workers=2)
    assert (s.total, s.done, s.failed, s.skipped) == (8, 8, 0, 0)
    with FeatureStore(out) as store:
        assert len(store) == 8 and store.utterance_shape == (88,) and store.frame_dim == 25
        assert np.isfinite(store.utterances()).all()
        times, frames = store.frames("c02")
        assert frames.shape[0] == pytest.approx(100 * 1.5, abs=6)
        assert np.all(np.diff(times) > 0)
        labels = store.labels()
        assert labels["discrete"][store.index("c01")] == "angry"
        assert labels["valence"][store.index("c01")] == -1.5
        assert labels["split"][store.index("c07")] == "test"
        assert store.attrs["encoder"] == "egemaps"
        first = store.utterances()

    again = run(audio_corpus, out)
    assert (again.done, again.skipped) == (0, 8)

    # An edited input is re-extracted, the others are reused.
    sf.write(tmp_path / "clips" / "clip 2.wav", voiced(1.5, f0=300, seed=9), 16000)
    third = run(audio_corpus, out)
    assert (third.done, third.skipped) == (1, 7)
    with FeatureStore(out) as store:
        after = store.utterances()
    changed = [n for n, a, b in zip(store.names, first, after) if not np.array_equal(a, b)]
    assert changed == ["c02"]


@pytest.mark.slow
def test_workers_do_not_change_the_numbers(audio_corpus: Path, tmp_path: Path):
    run(audio_corpus, tmp_path / "w0.h5", workers=0)
    run(audio_corpus, tmp_path / "w2.h5", workers=2)
    with FeatureStore(tmp_path / "w0.h5") as a, FeatureStore(tmp_path / "w2.h5") as b:
        assert a.fingerprint == b.fingerprint
        np.testing.assert_array_equal(a.utterances(), b.utterances())


@pytest.mark.slow
def test_bad_clips_are_recorded_and_the_run_goes_on(audio_corpus: Path, tmp_path: Path):
    clips = tmp_path / "clips"
    (clips / "empty.wav").write_bytes(b"")
    (clips / "text.wav").write_text("this is not audio")
    (clips / "fake.mp4").write_text("this is not a video either")
    sf.write(clips / "short.wav", voiced(0.03), 16000)
    sf.write(clips / "silent.wav", np.zeros(16000, np.float32), 16000)
    good = (audio_corpus.read_text().splitlines()[1:])
    rows = [dict(zip(["name", "video", "audio", "text", "discrete", "valence", "split"], line.split(",")))
            for line in good]
    rows += [{"name": n, "audio": f"clips/{f}"} for n, f in
             [("empty", "empty.wav"), ("text", "text.wav"), ("short", "short.wav"),
              ("silent", "silent.wav")]]
    rows += [{"name": "fake", "video": "clips/fake.mp4"}]
    manifest = write_manifest(tmp_path / "bad.csv", rows)
    s = run(manifest, tmp_path / "b.h5")
    assert (s.done, s.failed) == (8, 5)
    reasons = {n: (stage, reason) for n, stage, reason in s.failures}
    assert reasons["empty"] == ("decode", f"file '{clips / 'empty.wav'}' is empty (0 bytes)")
    assert reasons["text"][0] == "decode" and "cannot" in reasons["text"][1]
    assert reasons["fake"][0] == "decode" and "fake.mp4" in reasons["fake"][1]
    assert reasons["short"] == ("encode", "clip is 0.030 s long; egemaps needs at least 0.1 s of audio")
    assert "digital silence" in reasons["silent"][1]
    with FeatureStore(tmp_path / "b.h5") as store:
        assert sorted(n for n, *_ in store.failures()) == ["empty", "fake", "short", "silent", "text"]
    # failed clips are not retried unless asked
    assert run(manifest, tmp_path / "b.h5").skipped == 13
    assert run(manifest, tmp_path / "b.h5", retry_failed=True).failed == 5


@pytest.mark.slow
def test_fail_fast_stops_and_keeps_finished_clips(audio_corpus: Path, tmp_path: Path):
    (tmp_path / "clips" / "zz.wav").write_bytes(b"")
    rows = [{"name": "a", "audio": "clips/clip 0.wav"}, {"name": "zz", "audio": "clips/zz.wav"}]
    manifest = write_manifest(tmp_path / "ff.csv", rows)
    with pytest.raises(ClipFailedError, match="Clip 'zz' failed at stage 'decode'.*`fail_fast`"):
        run(manifest, tmp_path / "ff.h5", fail_fast=True, batch_size=1)
    with FeatureStore(tmp_path / "ff.h5") as store:
        assert "a" in store


def test_missing_files_refused_before_work_unless_skipped(audio_corpus: Path, tmp_path: Path):
    rows = [{"name": "a", "audio": "clips/clip 0.wav"}, {"name": "gone", "audio": "clips/gone.wav"}]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    with pytest.raises(ManifestError, match="gone.wav' not found"):
        run(manifest, tmp_path / "m.h5")
    assert not (tmp_path / "m.h5").exists()
    s = run(manifest, tmp_path / "m.h5", skip_missing=True)
    assert (s.done, s.missing) == (1, 1)
    with FeatureStore(tmp_path / "m.h5") as store:
        assert store.failures()[0][:3] == ("gone", "missing", "input")


@pytest.mark.slow
def test_fingerprint_follows_config_not_batch_size(audio_corpus: Path, tmp_path: Path, tiny_hubert: Path):
    enc = f"hf:{tiny_hubert}"
    a = tmp_path / "a.h5"
    run(audio_corpus, a, encoder=enc, batch_size=1)
    run(audio_corpus, tmp_path / "b.h5", encoder=enc, batch_size=8, batch_seconds=1000)
    with FeatureStore(a) as sa, FeatureStore(tmp_path / "b.h5") as sb:
        assert sa.fingerprint == sb.fingerprint
        assert np.abs(sa.utterances() - sb.utterances()).max() <= 1e-4
        for name in sa.names:
            assert np.abs(sa.frames(name)[1] - sb.frames(name)[1]).max() <= 1e-4
    for changed in ({"encoder_options": {"layer": "last"}}, {"storage_dtype": "float16"},
                    {"dtype": "bf16"}):
        with pytest.raises(FingerprintMismatchError):
            run(audio_corpus, a, encoder=enc, **changed)
    # new weights, same architecture -> another fingerprint
    other = make_tiny_hf_audio(tmp_path / "other", "hubert-group", seed=1)
    with pytest.raises(FingerprintMismatchError, match="weights"):
        run(audio_corpus, a, encoder=f"hf:{other}")
    # the eGeMAPS store ignores --dtype: it does not change its numbers
    run(audio_corpus, tmp_path / "e.h5")
    assert run(audio_corpus, tmp_path / "e.h5", dtype="bf16").skipped == 8


def test_unknown_encoder_lists_the_known_ones(audio_corpus: Path, tmp_path: Path, tiny_hubert: Path):
    with pytest.raises(ParameterError, match="Known audio encoders: compare, egemaps, hf:<path or id>, whisper"):
        run(audio_corpus, tmp_path / "x.h5", encoder="wav2vec9")
    with pytest.raises(ParameterError, match="fp16 needs a GPU"):
        run(audio_corpus, tmp_path / "x.h5", encoder=f"hf:{tiny_hubert}", dtype="fp16",
            device="cpu")


@pytest.mark.shared_data
def test_real_ravdess_and_truncated_mead(tmp_path: Path):
    from real_data import shared_data

    ravdess = shared_data("ravdess")
    truncated = shared_data("mead", "_truncated", "eamm_sad_truncated.mp4")
    mer = shared_data("mer2023", "videos_sample", "sample_00000167.mp4")
    files = sorted(ravdess.glob("Actor_01/*.flac"))[:6]
    rows = [{"name": f.stem, "audio": str(f)} for f in files]
    rows += [{"name": "truncated", "video": str(truncated)}, {"name": "mer", "video": str(mer)}]
    manifest = write_manifest(tmp_path / "m.csv", rows)
    s = run(manifest, tmp_path / "r.h5", workers=2)
    assert (s.done, s.failed) == (7, 1)
    assert s.failures[0][0] == "truncated"
    with FeatureStore(tmp_path / "r.h5") as store:
        assert np.isfinite(store.utterances()).all()
        assert store.record("mer").duration == pytest.approx(2.4, abs=0.1)


@pytest.mark.slow
def test_noise_injection_is_fingerprinted_recorded_and_reproducible(audio_corpus: Path, tmp_path: Path):
    clean = tmp_path / "clean.h5"
    run(audio_corpus, clean)
    noisy = tmp_path / "noisy.h5"
    run(audio_corpus, noisy, noise="snr=5:10,source=pink", seed=7, workers=2)
    with pytest.raises(FingerprintMismatchError, match="noise"):
        run(audio_corpus, clean, noise="snr=5:10,source=pink", seed=7)
    with pytest.raises(FingerprintMismatchError, match="seed"):
        run(audio_corpus, noisy, noise="snr=5:10,source=pink", seed=8)
    again = tmp_path / "again.h5"
    run(audio_corpus, again, noise="snr=5:10,source=pink", seed=7, workers=0)
    babble = tmp_path / "babble.h5"
    run(audio_corpus, babble, noise="snr=0,source=babble", seed=7)
    with FeatureStore(clean) as c, FeatureStore(noisy) as n, FeatureStore(again) as a, \
            FeatureStore(babble) as b:
        assert not np.allclose(c.utterances(), n.utterances())
        np.testing.assert_array_equal(n.utterances(), a.utterances())
        for name in n.names:
            drawn = n.record(name, with_arrays=False).info["noise"]
            assert 5 <= drawn["snr_db"] <= 10 and abs(drawn["measured_snr_db"] - drawn["snr_db"]) < 0.1
            assert drawn == a.record(name, with_arrays=False).info["noise"]
            talkers = b.record(name, with_arrays=False).info["noise"]["talkers"]
            own = f"clip {int(name[1:])}.wav"
            assert len(talkers) == 5 and all(not t["file"].endswith(own) for t in talkers)
        assert n.fields["noise"] == {"spec": "snr=5:10,source=pink", "seed": 7}
        assert c.fields["noise"] is None
