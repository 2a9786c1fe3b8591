"""hf: Whisper checkpoints and Qwen2-Audio's audio tower, on tiny random checkpoints of the real
architectures (save_pretrained -> load), and the same states as CTranslate2's conversion."""

from pathlib import Path

import numpy as np
import pytest

from synthetic_media import voiced
from features.encoders.tiny_models import make_tiny_qwen2_audio, make_tiny_whisper
from mer_features.decode.inputs import AudioInput
from mer_features.encoders import create_encoder
from mer_features.encoders.whisper_input import WINDOW_SAMPLES, log_mel
from mer_features.errors import ClipError, EncoderError


# Builds Hugging Face models: with the other such files on one test-quick worker
# (tests/conftest.py, pytest_xdist_make_scheduler).
pytestmark = pytest.mark.xdist_group("transformers")


RATE = 16000
LENGTHS = (32000, 12345, 32000, 480, 700000)  # the last is over 30 s: two windows


@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_whisper(tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="module")
def tiny_qwen2_audio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio"))


def clips(lengths=LENGTHS):
    return [AudioInput(f"c{i}", voiced(n / RATE, f0=100 + 20 * i, seed=i), RATE)
            for i, n in enumerate(lengths)]


@pytest.mark.slow
@pytest.mark.parametrize("input_kind", ["clip", "padded"])
def test_ctranslate2_conversion_gives_the_same_states(tiny_whisper: Path, tmp_path: Path,
                                                      input_kind: str):
    """The same checkpoint through transformers (hf:) and through CTranslate2 (whisper), both
    in fp32: the same frames within 1e-4 (measured: ~1e-6), windows and times alike."""
    import ctranslate2

    ct2_dir = tmp_path / "ct2"
    ctranslate2.converters.TransformersConverter(str(tiny_whisper)).convert(
        str(ct2_dir), quantization="float32")
    hf = create_encoder("audio", f"hf:{tiny_whisper}", {"input": input_kind})
    ct = create_encoder("audio", "whisper", {"model": str(ct2_dir), "compute_type": "fp32",
                                             "input": input_kind})
    assert type(hf).__name__ == "HFWhisperEncoder"
    assert (ct.shape.n_mels, ct.shape.dim, ct.shape.layers) == (80, 32, 3)
    assert hf.output_spec() == ct.output_spec()
    hf.load("cpu", "fp32")
    ct.load("cpu")
    items = clips()
    for a, b in zip(hf.encode_batch(items), ct.encode_batch(items)):
        assert a.frames.shape == b.frames.shape
        assert np.abs(a.frames - b.frames).max() <= 1e-4
        assert np.abs(a.utterance - b.utterance).max() <= 1e-4
        np.testing.assert_array_equal(a.frame_times, b.frame_times)
        assert a.info == b.info


@pytest.mark.slow
def test_padded_input_equals_transformers_own_forward(tiny_whisper: Path):
    import torch
    from transformers import WhisperModel

    enc = create_encoder("audio", f"hf:{tiny_whisper}", {"input": "padded"})
    enc.load("cpu", "fp32")
    model = WhisperModel.from_pretrained(tiny_whisper).eval()
    wave = voiced(2.0, seed=3)
    with torch.no_grad():
        theirs = model.encoder(torch.from_numpy(log_mel(wave, pad_to=WINDOW_SAMPLES)[None])
                               ).last_hidden_state[0].numpy()
    (ours,) = enc.encode_batch([AudioInput("a", wave, RATE)])
    assert ours.frames.shape == (100, 32)
    assert np.abs(ours.frames - theirs[:100]).max() <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("layer", ["last", "mean-last-4", "all"])
@pytest.mark.parametrize("input_kind", ["clip", "padded"])
def test_batched_equals_one_by_one(tiny_whisper: Path, layer: str, input_kind: str):
    """Windows of one length per forward pass (clip) or all padded to 30 s: a clip's features
    do not depend on its batch-mates (fp32 CPU products: within 1e-5)."""
    enc = create_encoder("audio", f"hf:{tiny_whisper}", {"layer": layer, "input": input_kind})
    enc.load("cpu", "fp32")
    items = clips()
    for item, b in zip(items, enc.encode_batch(items)):
        (one,) = enc.encode_batch([item])
        assert np.abs(b.frames - one.frames).max() <= 1e-5
        assert np.abs(b.utterance - one.utterance).max() <= 1e-5


@pytest.mark.slow
def test_layers_shapes_and_what_they_hold(tiny_whisper: Path):
    item = clips()[:1]
    outs = {}
    for layer in ("last", "mean-last-4", "all"):
        enc = create_encoder("audio", f"hf:{tiny_whisper}", {"layer": layer})
        enc.load("cpu", "fp32")
        (outs[layer],) = enc.encode_batch(item)
        assert enc.output_spec().utterance_shape == ((4, 64) if layer == "all" else (64,))
    assert outs["all"].utterance.shape == (4, 64)  # embeddings + 3 layers, mean and std each
    np.testing.assert_allclose(outs["all"].utterance[-1], outs["last"].utterance, atol=1e-5)
    np.testing.assert_allclose(outs["all"].frames, outs["mean-last-4"].frames, atol=1e-6)
    assert np.abs(outs["last"].frames - outs["mean-last-4"].frames).max() > 1e-2


def test_clip_over_30_s_and_short_clips(tiny_whisper: Path):
    enc = create_encoder("audio", f"hf:{tiny_whisper}")
    enc.load("cpu", "fp32")
    long, short = enc.encode_batch([AudioInput("l", voiced(43.75), RATE),
                                    AudioInput("s", voiced(0.02), RATE)])
    assert long.info == {"windows": 2} and long.frames.shape == (2188, 32)
    assert np.all(np.diff(long.frame_times) > 0)
    assert isinstance(short, ClipError) and "0.025 s" in str(short)


def test_weights_from_a_bin_checkpoint_and_only_the_encoder(tmp_path: Path):
    folder = make_tiny_whisper(tmp_path / "bin", safetensors=False)
    assert not list(folder.glob("*.safetensors"))
    enc = create_encoder("audio", f"hf:{folder}")
    enc.load("cpu", "fp32")
    assert type(enc.model).__name__ == "WhisperEncoder"
    (out,) = enc.encode_batch(clips()[:1])
    assert np.isfinite(out.frames).all()


@pytest.mark.slow
def test_qwen2_audio_tower(tiny_qwen2_audio: Path):
    """Only the audio tower is read; its pooled 25-Hz frames equal the tower's own forward."""
    import torch
    from transformers import Qwen2AudioForConditionalGeneration

    enc = create_encoder("audio", f"hf:{tiny_qwen2_audio}", {"input": "padded"})
    assert enc.output_spec().frame_rate == 25 and enc.n_mels == 128
    enc.load("cpu", "fp32")
    assert type(enc.model).__name__ == "Qwen2AudioEncoder"
    full = Qwen2AudioForConditionalGeneration.from_pretrained(tiny_qwen2_audio).eval()
    tower = full.model.audio_tower
    assert sum(p.numel() for p in enc.model.parameters()) == sum(p.numel() for p in tower.parameters())
    wave = voiced(2.0, seed=4)
    with torch.no_grad():
        theirs = tower(torch.from_numpy(log_mel(wave, 128, pad_to=WINDOW_SAMPLES)[None])
                       ).last_hidden_state[0].numpy()
    (ours,) = enc.encode_batch([AudioInput("a", wave, RATE)])
    assert ours.frames.shape == (50, 32)
    assert np.abs(ours.frames - theirs[:50]).max() <= 1e-5
    np.testing.assert_allclose(ours.frame_times[:2], [0.02, 0.06], atol=1e-6)
    clip_enc = create_encoder("audio", f"hf:{tiny_qwen2_audio}", {"layer": "all"})
    clip_enc.load("cpu", "fp32")
    items = clips()
    for item, b in zip(items, clip_enc.encode_batch(items)):
        (one,) = clip_enc.encode_batch([item])
        assert b.utterance.shape == (3, 64)
        assert np.abs(b.utterance - one.utterance).max() <= 1e-5


def test_options_of_the_other_family_are_refused(tiny_whisper: Path, tiny_hubert: Path):
    with pytest.raises(EncoderError, match="has no option.*chunk_seconds.*input, layer, model, pooling"):
        create_encoder("audio", f"hf:{tiny_whisper}", {"chunk_seconds": "10"})
    with pytest.raises(EncoderError, match="has no option.*input"):
        create_encoder("audio", f"hf:{tiny_hubert}", {"input": "padded"})
    with pytest.raises(EncoderError, match="input must be one of clip, padded"):
        create_encoder("audio", f"hf:{tiny_whisper}", {"input": "30s"})


def test_missing_encoder_weights_are_one_line(tiny_whisper: Path, tmp_path: Path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text((tiny_whisper / "config.json").read_text())
    state = load_file(str(tiny_whisper / "model.safetensors"))
    save_file({k: v for k, v in state.items() if "layers.2." not in k},
              str(folder / "model.safetensors"))
    enc = create_encoder("audio", f"hf:{folder}")
    with pytest.raises(EncoderError, match="lacks encoder weights .*layers.2") as e:
        enc.load("cpu", "fp32")
    assert "\n" not in str(e.value)
