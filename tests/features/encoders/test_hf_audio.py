"""hf: audio encoders on tiny checkpoints of the real architectures (save_pretrained -> load)."""

from pathlib import Path

import numpy as np
import pytest

from synthetic_media import make_tiny_hf_audio, voiced
from mer_features.decode.inputs import AudioInput
from mer_features.encoders import create_encoder
from mer_features.errors import ClipError, EncoderError


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


LENGTHS = (16000, 9000, 23000, 4000, 401)


def clips():
    return [AudioInput(f"c{i}", voiced(n / 16000, f0=100 + 30 * i, seed=i), 16000)
            for i, n in enumerate(LENGTHS)]


@pytest.mark.parametrize("conv_path", ["unfolded", "stock"])
@pytest.mark.parametrize("kind", ["wav2vec2-group", "hubert-group", "wavlm-group",
                                  "wav2vec2-layer", "data2vec-audio"])
@pytest.mark.slow
def test_batched_equals_one_by_one(tmp_path: Path, kind: str, conv_path: str):
    """Both feature-encoder paths: the unfolded CPU one (folded masked group norm) and the
    stock convolutions with the masked group norm module (GPUs, unusual conv stacks, and CPUs
    where the compute-path probe finds them faster)."""
    folder = make_tiny_hf_audio(tmp_path / kind, kind)
    enc = create_encoder("audio", f"hf:{folder}", {"layer": "mean-last-4"})
    enc.impl = "fast" if conv_path == "unfolded" else "stock"
    enc.load("cpu", "fp32")
    unfolded = type(enc.model.feature_extractor).__name__ == "UnfoldedFeatureEncoder"
    assert unfolded == (conv_path == "unfolded")
    items = clips()
    batched = enc.encode_batch(items)
    for item, b in zip(items, batched):
        (one,) = enc.encode_batch([item])
        assert b.frames.shape == one.frames.shape == (enc.model._get_feat_extract_output_lengths(len(item.waveform)), 32)
        assert np.abs(b.frames - one.frames).max() <= 1e-4
        assert np.abs(b.utterance - one.utterance).max() <= 1e-4
        np.testing.assert_allclose(b.utterance, b.frames.mean(0), atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hubert-group", "wav2vec2-layer"])
def test_unfolded_feature_encoder_equals_transformers(tmp_path: Path, kind: str):
    """One unpadded clip: our CPU feature encoder gives the model's own outputs."""
    import torch
    from transformers import AutoModel

    folder = make_tiny_hf_audio(tmp_path / kind, kind)
    enc = create_encoder("audio", f"hf:{folder}", {"layer": "last"})
    enc.load("cpu", "fp32")
    assert type(enc.model.feature_extractor).__name__ == "UnfoldedFeatureEncoder"
    wave = voiced(1.3, seed=3)
    (ours,) = enc.encode_batch([AudioInput("a", wave, 16000)])
    if enc.normalize:  # what the checkpoint's feature extractor does before the model
        wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
    model = AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        theirs = model(torch.from_numpy(wave[None]), output_hidden_states=True).hidden_states[-1][0].numpy()
    assert np.abs(ours.frames - theirs).max() <= 1e-4


@pytest.mark.slow
def test_group_norm_models_do_differ_without_the_masked_norm(tmp_path: Path):
    """The control: plain transformers padding changes a group-norm model's output."""
    import torch
    from transformers import AutoModel

    folder = make_tiny_hf_audio(tmp_path / "g", "wav2vec2-group")
    model = AutoModel.from_pretrained(folder).eval()
    a, b = voiced(1.0, seed=1), voiced(0.5, seed=2)
    batch = np.zeros((2, len(a)), np.float32)
    batch[0], batch[1, : len(b)] = a, b
    mask = torch.tensor([[1] * len(a), [1] * len(b) + [0] * (len(a) - len(b))])
    with torch.no_grad():
        padded = model(torch.from_numpy(batch), attention_mask=mask).last_hidden_state[1]
        alone = model(torch.from_numpy(b[None])).last_hidden_state[0]
    n = alone.shape[0]
    assert (padded[:n] - alone).abs().max() > 1e-3


@pytest.mark.slow
def test_layer_choices_and_shapes(tmp_path: Path, tiny_hubert: Path):
    item = clips()[:1]
    outs = {}
    for layer in ("last", "mean-last-4", "all"):
        enc = create_encoder("audio", f"hf:{tiny_hubert}", {"layer": layer})
        spec = enc.output_spec()
        (outs[layer],) = enc.encode_batch(item)
        assert outs[layer].utterance.shape == spec.utterance_shape
        assert spec.frame_rate == 50.0 and spec.frame_dim == 32
    assert outs["all"].utterance.shape == (4, 32)  # embeddings + 3 layers
    np.testing.assert_allclose(outs["all"].utterance[-1], outs["last"].utterance, atol=1e-5)
    np.testing.assert_allclose(outs["all"].utterance[-4:].mean(0), outs["mean-last-4"].utterance, atol=1e-5)
    times = outs["last"].frame_times
    assert times[0] == pytest.approx(0.0125) and np.allclose(np.diff(times), 0.02)


def test_long_clips_are_chunked(tiny_hubert: Path):
    enc = create_encoder("audio", f"hf:{tiny_hubert}", {"chunk_seconds": "1.0", "layer": "last"})
    (out,) = enc.encode_batch([AudioInput("long", voiced(3.3, seed=3), 16000)])
    # four chunks: 1 s, 1 s, 1 s, 0.3 s -> 49 + 49 + 49 + 14 frames
    assert out.frames.shape == (49 * 3 + 14, 32)
    assert np.all(np.diff(out.frame_times) > 0) and out.frame_times[-1] < 3.3
    # a tail shorter than a tenth of a chunk joins the chunk before it: 1 s, 1 s, 1.05 s
    (out,) = enc.encode_batch([AudioInput("long", voiced(3.05, seed=3), 16000)])
    assert out.frames.shape == (49 + 49 + 52, 32)


def test_too_short_and_wrong_rate_are_per_clip_failures(tiny_hubert: Path):
    enc = create_encoder("audio", f"hf:{tiny_hubert}")
    ok, short, rate = enc.encode_batch([AudioInput("a", voiced(1.0), 16000),
                                        AudioInput("b", voiced(0.01), 16000),
                                        AudioInput("c", voiced(1.0, rate=8000), 8000)])
    assert not isinstance(ok, ClipError)
    assert isinstance(short, ClipError) and "needs at least 0.025 s (400 samples" in short.reason
    assert isinstance(rate, ClipError) and "needs 16000 Hz" in rate.reason


@pytest.mark.slow
def test_bf16_stays_close_to_fp32(tiny_hubert: Path):
    items = clips()[:3]
    fp32 = create_encoder("audio", f"hf:{tiny_hubert}")
    bf16 = create_encoder("audio", f"hf:{tiny_hubert}")
    bf16.load("cpu", "bf16")
    for a, b in zip(fp32.encode_batch(items), bf16.encode_batch(items)):
        cos = a.utterance @ b.utterance / np.linalg.norm(a.utterance) / np.linalg.norm(b.utterance)
        assert cos > 0.99


def test_bad_model_specs(tmp_path: Path):
    with pytest.raises(EncoderError, match="not a folder"):
        create_encoder("audio", "hf:./no/such/dir")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EncoderError, match="no config.json"):
        create_encoder("audio", f"hf:{tmp_path / 'empty'}")
    with pytest.raises(EncoderError, match="needs an argument"):
        create_encoder("audio", "hf")
    with pytest.raises(EncoderError, match="layer must be one of"):
        create_encoder("audio", f"hf:{tmp_path}", {"layer": "first"})
    with pytest.raises(EncoderError, match="has no option"):
        create_encoder("audio", "egemaps", {"depth": "3"})
