"""Generated media and tiny models for tests: a speech-like signal, a manifest writer, a
labelled corpus of voiced clips, ffmpeg and the demo's video clips, and a tiny checkpoint of a
real audio architecture (no weights from a hub)."""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import numpy as np


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


EMOTIONS = ["neutral", "angry", "happy", "sad", "worried", "surprise"]


def voiced_corpus(folder: Path, n: int = 40) -> Path:
    """A manifest of ``n`` voiced 16 kHz wav clips (0.6-1.5 s) with emotions and valence."""
    import soundfile as sf

    rows = []
    for i in range(n):
        path = folder / f"{i:03d}.wav"
        sf.write(path, voiced(0.6 + (i % 7) * 0.15, f0=100 + 5 * i, seed=i), 16000)
        rows.append({"name": f"clip{i:03d}", "audio": path.name, "discrete": EMOTIONS[i % 6],
                     "valence": i % 5 - 2})
    return write_manifest(folder / "manifest.csv", rows)


def ffmpeg(*args: str | Path) -> None:
    """Run imageio-ffmpeg's ffmpeg with ``args`` (errors only, overwriting outputs)."""
    import imageio_ffmpeg

    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-v", "error", "-y",
                    *map(str, args)], check=True, capture_output=True)


def demo_clips(tmp_path_factory) -> list[Path]:
    """The 6-clip demo corpus, written once per session (write_demo skips a complete corpus)."""
    from mer_features.demo import write_demo

    manifest = write_demo(tmp_path_factory.getbasetemp() / "demo6", n_clips=6)
    return sorted((manifest.parent / "clips").glob("demo_*.mp4"))


def make_tiny_hf_audio(folder: Path, kind: str = "hubert-group", seed: int = 0) -> Path:
    """A tiny checkpoint of a real architecture, written with save_pretrained."""
    import torch
    import transformers
    from transformers import Wav2Vec2FeatureExtractor

    common = dict(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=64,
                  conv_dim=(16,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    kinds = {  # classes by name: importing one family's modelling code costs about a second
        "wav2vec2-group": ("Wav2Vec2", dict(feat_extract_norm="group")),
        "wav2vec2-layer": ("Wav2Vec2", dict(feat_extract_norm="layer", do_stable_layer_norm=True)),
        "hubert-group": ("Hubert", dict(feat_extract_norm="group")),
        "wavlm-group": ("WavLM", dict(feat_extract_norm="group")),
        "data2vec-audio": ("Data2VecAudio",
                           dict(conv_pos_kernel_size=7, num_conv_pos_embeddings=5)),
    }
    family, extra = kinds[kind]
    config_cls = getattr(transformers, f"{family}Config")
    model_cls = getattr(transformers, f"{family}Model")
    torch.manual_seed(seed)
    model = model_cls(config_cls(**{**common, **extra})).eval()
    model.save_pretrained(folder)
    Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=kind.endswith("layer")
                             ).save_pretrained(folder)
    return folder
