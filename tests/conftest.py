"""Shared fixtures: small generated media, tiny models, and the real data beside the checkout."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True, scope="session")
def _private_hash_cache(tmp_path_factory: pytest.TempPathFactory):
    """Tests never touch the user's file-hash cache (subprocesses inherit the variable)."""
    import os

    old = os.environ.get("MER_FEATURES_CACHE")
    os.environ["MER_FEATURES_CACHE"] = str(tmp_path_factory.mktemp("hash-cache"))
    yield
    if old is None:
        del os.environ["MER_FEATURES_CACHE"]
    else:
        os.environ["MER_FEATURES_CACHE"] = old


_RUNNING: list[pytest.Item] = []


@pytest.fixture(autouse=True)
def _running_test(request: pytest.FixtureRequest):
    """Remembers the test being run, so that :func:`shared_data` can check its marker."""
    _RUNNING.append(request.node)
    yield
    _RUNNING.pop()


def shared_data(*parts: str) -> Path:
    """Path under ../shared/data; skips the test when it is absent.

    A test reading it must be marked ``@pytest.mark.shared_data`` (``make test-quick`` leaves
    those out); an unmarked one fails here, so the marker cannot be forgotten.
    """
    if _RUNNING and _RUNNING[-1].get_closest_marker("shared_data") is None:
        pytest.fail(f"{_RUNNING[-1].nodeid} reads ../shared/data: mark it "
                    "@pytest.mark.shared_data", pytrace=False)
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not available at {path}")
    return path


def voiced(seconds: float, f0: float = 150.0, rate: int = 16000, seed: int = 0,
           amplitude: float = 0.3) -> np.ndarray:
    """A speech-like voiced signal of shape (n,): harmonics with vibrato and syllable envelopes."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    pitch = f0 * (1 + 0.03 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / rate
    wave = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 * (1 - np.cos(2 * np.pi * 4 * t)) if seconds > 0.3 else np.ones_like(t)
    out = amplitude * wave * envelope / 2 + 0.003 * rng.standard_normal(len(t))
    return out.astype(np.float32)


def write_manifest(path: Path, rows: list[dict[str, object]]) -> Path:
    columns = ["name", "video", "audio", "text", "discrete", "valence", "split"]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for row in rows:
            w.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return path


@pytest.fixture
def audio_corpus(tmp_path: Path) -> Path:
    """A manifest of 8 voiced wav clips (1-3 s, 16 or 22.05 kHz, one stereo) with labels."""
    emotions = ["neutral", "angry", "happy", "sad", "worried", "surprise", "happy", ""]
    rows = []
    (tmp_path / "clips").mkdir()
    for i, emotion in enumerate(emotions):
        rate = 16000 if i % 2 == 0 else 22050
        wave = voiced(1.0 + 0.25 * i, f0=110 + 20 * i, rate=rate, seed=i)
        if i == 3:
            wave = np.stack([wave, 0.5 * wave], axis=1)
        sf.write(tmp_path / "clips" / f"clip {i}.wav", wave, rate)
        rows.append({"name": f"c{i:02d}", "audio": f"clips/clip {i}.wav", "discrete": emotion,
                     "valence": (i - 4) * 0.5 if emotion else None,
                     "split": "train" if i < 6 else "test"})
    return write_manifest(tmp_path / "manifest.csv", rows)


def make_tiny_hf_audio(folder: Path, kind: str = "hubert-group", seed: int = 0) -> Path:
    """A tiny checkpoint of a real architecture, written with save_pretrained."""
    import torch
    from transformers import (Data2VecAudioConfig, Data2VecAudioModel, HubertConfig, HubertModel,
                              Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model, WavLMConfig,
                              WavLMModel)

    common = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                  conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    kinds = {
        "wav2vec2-group": (Wav2Vec2Config, Wav2Vec2Model, dict(feat_extract_norm="group")),
        "wav2vec2-layer": (Wav2Vec2Config, Wav2Vec2Model,
                           dict(feat_extract_norm="layer", do_stable_layer_norm=True)),
        "hubert-group": (HubertConfig, HubertModel, dict(feat_extract_norm="group")),
        "wavlm-group": (WavLMConfig, WavLMModel, dict(feat_extract_norm="group")),
        "data2vec-audio": (Data2VecAudioConfig, Data2VecAudioModel,
                           dict(conv_pos_kernel_size=7, num_conv_pos_embeddings=5)),
    }
    config_cls, model_cls, extra = kinds[kind]
    torch.manual_seed(seed)
    model = model_cls(config_cls(**{**common, **extra})).eval()
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=kind.endswith("layer")
                             ).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_hubert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_hf_audio(tmp_path_factory.mktemp("tiny-hubert"), "hubert-group")
