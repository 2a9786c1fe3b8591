"""``hf:`` Whisper checkpoints and the Whisper-style audio tower of audio-LLMs (Qwen2-Audio).

``hf:<folder or hub id>`` whose ``config.json`` says ``model_type`` ``whisper`` (any size, tiny
to large-v3), ``qwen2_audio`` (Qwen2-Audio: only its ``audio_tower`` is read, never the 7B
language model) or ``qwen2_audio_encoder`` (that tower saved alone) comes here rather than to
the wav2vec 2.0 family (:mod:`mer_features.encoders.hf_audio`, which dispatches by model type).
Only the encoder's weights are loaded (from the safetensors files when the checkpoint has them,
so a large checkpoint's decoder is never read).

The input is Whisper's (:mod:`mer_features.encoders.whisper_input`: the same log-mel front end,
30-s windows, ``input=clip|padded``, ``pooling=mean-std|mean`` and the same defaults as the
``whisper`` encoder), so ``hf:`` on a Whisper checkpoint and ``whisper`` on its CTranslate2
conversion give the same states (a test converts a tiny checkpoint and compares them).
``transformers``' encoder forward insists on 3000 mel frames; for ``input=clip`` the encoder's
modules are run here on the window's own length with the positional table cut to it, exactly
what CTranslate2 does.

Layers (``-o layer``, as for HuBERT): the hidden states are the embeddings (convolutions plus
positions) and each layer's output, the last one after the encoder's final layer norm (the
states a decoder reads); ``last`` (default, the states ``whisper`` gives), ``mean-last-4`` (the
mean of the last four), ``all`` (utterance of shape (layers + 1, pooled dim)). Qwen2-Audio's
tower average-pools its output by 2 before the final norm: every hidden state is pooled the
same way, so its frames are at 25 Hz whatever the layer.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.decode.inputs import AudioInput
from mer_features.encoders.base import Encoded, Encoder, OutputSpec
from mer_features.encoders.hf_common import (autocast, check_layer, half_linear_weights,
                                             load_config, resolve_model_dir, select_layers,
                                             shape_fields, weights_identity)
from mer_features.encoders.whisper import assemble, check_audio
from mer_features.encoders.whisper_input import (FRAME_RATE, HOP, SAMPLE_RATE, WINDOW_SAMPLES,
                                                 check_input, check_pooling, log_mel,
                                                 output_frames, pool, pooled_dim, windows)
from mer_features.errors import ClipError, EncoderError

WHISPER_TYPES = ("whisper", "qwen2_audio", "qwen2_audio_encoder")
_PREFIXES = {"whisper": ("model.encoder.", "encoder.", ""),
             "qwen2_audio": ("audio_tower.", "model.audio_tower."),
             "qwen2_audio_encoder": ("", "audio_tower.")}
"""Where the encoder's weights sit in each kind of checkpoint, tried in order."""
MAX_BATCH_FRAMES = 48000
"""Mel frames per forward pass: bounds memory; changes no output."""


@dataclass(frozen=True)
class HFWhisperConfig:
    model: str
    layer: str = "last"
    input: str = "clip"
    pooling: str = "mean-std"

    @property
    def sample_rate(self) -> int:
        """The rate clips are decoded at (Whisper's 16 kHz; not an option)."""
        return SAMPLE_RATE

    def __post_init__(self) -> None:
        check_layer(self.layer)
        check_input(self.input)
        check_pooling(self.pooling)


def model_type(model_dir: Path) -> str | None:
    """The ``model_type`` of a checkpoint folder's config.json, or None when unreadable."""
    try:
        value = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value.get("model_type") if isinstance(value, dict) else None


class HFWhisperEncoder(Encoder):
    """The encoder of a ``transformers`` Whisper checkpoint, or Qwen2-Audio's audio tower."""

    name = "hf"
    modality = "audio"
    version = "1"
    Config = HFWhisperConfig
    spec_argument = "model"
    uses_dtype = True

    def __init__(self, config: HFWhisperConfig):
        super().__init__(config)
        self._dir, self._origin = resolve_model_dir(config.model)
        hf_config = load_config(self._dir)
        self.kind = getattr(hf_config, "model_type", None)
        if self.kind not in WHISPER_TYPES:
            raise EncoderError(f"'{config.model}' is a '{self.kind}' model; Whisper-family "
                               f"options (input, pooling) apply to {', '.join(WHISPER_TYPES)}.")
        self._hf_config = hf_config.audio_config if self.kind == "qwen2_audio" else hf_config
        self.dim = int(self._hf_config.d_model)
        self.layers = int(self._hf_config.encoder_layers)
        self.n_mels = int(self._hf_config.num_mel_bins)
        self.pooled = self.kind != "whisper"  # Qwen2-Audio's tower halves the frame rate
        self.model = None

    # declarations ----------------------------------------------------------------------
    def weights_identity(self) -> dict[str, Any]:
        return weights_identity(self._dir, self._origin)

    def output_spec(self) -> OutputSpec:
        dim = pooled_dim(self.dim, self.config.pooling)
        shape = (self.layers + 1, dim) if self.config.layer == "all" else (dim,)
        return OutputSpec(utterance_shape=shape, frame_dim=self.dim,
                          frame_rate=FRAME_RATE / 2 if self.pooled else FRAME_RATE)

    def preprocessing(self) -> dict[str, Any]:
        return {"sample_rate": SAMPLE_RATE, "mono": True, "log_mel": self.n_mels,
                "windows": "at most 30 s, equal lengths"}

    def shape_fields(self) -> dict[str, Any]:
        return {"encoder": "hf-whisper", "version": self.version, "layer": self.config.layer,
                "input": self.config.input, "architecture": shape_fields(self._hf_config)}

    def output_frames(self, n_samples: int) -> int:
        """Frames the encoder gives for a window of ``n_samples``."""
        frames = output_frames(n_samples)
        return frames // 2 if self.pooled else frames

    # work -------------------------------------------------------------------------------
    def load(self, device: str = "cpu", dtype: str = "fp32") -> None:
        if self.model is not None:
            return
        super().load(device, dtype)
        import torch

        if self.kind == "whisper":
            from transformers.models.whisper.modeling_whisper import WhisperEncoder as Tower
        else:
            from transformers.models.qwen2_audio.modeling_qwen2_audio import (
                Qwen2AudioEncoder as Tower)
        with torch.device("meta"):
            tower = Tower(self._hf_config)
        state = _encoder_state(self._dir, self.kind, set(tower.state_dict()))
        try:
            tower.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as e:
            raise EncoderError(f"Cannot load the encoder of '{self.config.model}': "
                               f"{' '.join(str(e).split())[:300]}") from e
        tower = tower.float().eval().requires_grad_(False)
        half_linear_weights(tower, dtype)
        self.model = tower.to(device)
        self._torch = torch

    def encode_batch(self, items: Sequence[AudioInput]) -> list[Encoded | ClipError]:
        if self.model is None:
            self.load(self.device, self.dtype)
        results: list[Encoded | ClipError | None] = [None] * len(items)
        segments = []  # (item index, start sample, output frames, log-mel)
        padded = self.config.input == "padded"
        for i, item in enumerate(items):
            reason = check_audio(item, self.describe())
            if reason is None and self.output_frames(len(item.waveform)) == 0:
                reason = (f"clip is {item.duration:.3f} s long; '{self.describe()}' needs at "
                          f"least {3 * HOP / SAMPLE_RATE:.3f} s")
            if reason is not None:
                results[i] = ClipError("encode", reason)
                continue
            for start, stop in windows(len(item.waveform)):
                mel = log_mel(item.waveform[start:stop], self.n_mels,
                              pad_to=WINDOW_SAMPLES if padded else None)
                segments.append((i, start, self.output_frames(stop - start), mel))
        outputs = self._encode([s[3] for s in segments])
        per_item: dict[int, list] = {}
        for (i, start, n_out, _), (frames, layers) in zip(segments, outputs):
            per_item.setdefault(i, []).append((start, frames[:n_out],
                                               None if layers is None else layers[:, :n_out]))
        for i, pieces in per_item.items():
            pieces.sort(key=lambda p: p[0])
            encoded = assemble([(s, f) for s, f, _ in pieces], self.config.pooling)
            if isinstance(encoded, ClipError):
                results[i] = ClipError("encode", "the encoder gave non-finite values; try "
                                       "--dtype bf16 or fp32")
                continue
            if self.pooled:
                encoded.frame_times = self._pooled_times(pieces)
            if pieces[0][2] is not None:  # layer=all: pool every layer over the clip
                encoded.utterance = pool(np.concatenate([p[2] for p in pieces], axis=1),
                                         self.config.pooling)
            results[i] = encoded
        return results  # type: ignore[return-value]

    def _pooled_times(self, pieces: list) -> np.ndarray:
        """Centre times of 25-Hz frames (each the mean of two 50-Hz frames)."""
        return np.concatenate([((start + (np.arange(len(f)) + 0.5) * 4 * HOP) / SAMPLE_RATE)
                               for start, f, _ in pieces]).astype(np.float32)

    def _encode(self, mels: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Frames (T, dim) and, for layer=all, layers (layers + 1, T, dim) of each log-mel; one
        length per forward pass (the encoder has no padding mask)."""
        out: list[Any] = [None] * len(mels)
        by_length: dict[int, list[int]] = {}
        for j, mel in enumerate(mels):
            by_length.setdefault(mel.shape[1], []).append(j)
        for length, rows in by_length.items():
            step = max(1, MAX_BATCH_FRAMES // length)
            for k in range(0, len(rows), step):
                chunk = rows[k:k + step]
                frames, layers = self._forward(np.stack([mels[j] for j in chunk]))
                for b, j in enumerate(chunk):
                    out[j] = (frames[b], None if layers is None else layers[:, b])
        return out

    def _forward(self, mels: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """The encoder on log-mels of shape (batch, n_mels, T): frames (batch, T', dim) of the
        chosen layer(s) and, for layer=all, every hidden state (layers + 1, batch, T', dim)."""
        torch = self._torch
        tower = self.model
        gelu = torch.nn.functional.gelu
        with torch.inference_mode(), autocast(self.device, self.dtype):
            x = torch.from_numpy(np.ascontiguousarray(mels, np.float32)).to(self.device)
            x = gelu(tower.conv1(x))
            x = gelu(tower.conv2(x)).permute(0, 2, 1)
            if x.shape[1] > tower.embed_positions.weight.shape[0]:
                raise EncoderError(f"A window of {x.shape[1]} frames exceeds the encoder's "
                                   f"{tower.embed_positions.weight.shape[0]} positions.")
            x = x + tower.embed_positions.weight[: x.shape[1]].to(x.dtype)
            keep = {"last": 1, "mean-last-4": 4}.get(self.config.layer)  # None: every state
            states = [x]
            for layer in tower.layers:
                result = layer(x, None)
                x = result[0] if isinstance(result, tuple) else result
                states.append(x)
                if keep is not None:
                    del states[:-keep]  # large-v3 has 33 states: keep only what is pooled
            if self.pooled:
                states = [tower.avg_pooler(s.permute(0, 2, 1)).permute(0, 2, 1) for s in states]
            states[-1] = tower.layer_norm(states[-1])
            frames, layers = select_layers(tuple(states), self.config.layer)
            frames_np = frames.float().cpu().numpy()
            layers_np = None if layers is None else layers.float().cpu().numpy()
        return frames_np, layers_np


def _encoder_state(model_dir: Path, kind: str, wanted: set[str]) -> dict[str, Any]:
    """The encoder's tensors, named as the encoder module names them, read from the
    checkpoint's safetensors files (only those tensors) or, without any, its .bin files."""
    files = sorted(model_dir.glob("*.safetensors"))
    tensors: dict[str, Any] = {}
    if files:
        from safetensors import safe_open

        for path in files:
            with safe_open(str(path), framework="pt") as f:
                for prefix in _PREFIXES[kind]:
                    for key in f.keys():
                        if key.startswith(prefix) and key[len(prefix):] in wanted:
                            tensors.setdefault(prefix, {})[key[len(prefix):]] = f.get_tensor(key)
    else:
        import torch

        for path in sorted(model_dir.glob("*.bin")):
            try:
                state = torch.load(str(path), map_location="cpu", weights_only=True)
            except Exception as e:  # noqa: BLE001 - pickles fail in many ways
                raise EncoderError(f"Cannot read '{path}': {e}") from e
            for prefix in _PREFIXES[kind]:
                for key, value in state.items():
                    if key.startswith(prefix) and key[len(prefix):] in wanted:
                        tensors.setdefault(prefix, {})[key[len(prefix):]] = value
    for prefix in _PREFIXES[kind]:  # the first prefix under which the whole encoder is found
        if set(tensors.get(prefix, {})) >= wanted:
            return tensors[prefix]
    best = max(tensors.values(), key=len, default={})
    missing = sorted(wanted - set(best))
    raise EncoderError(f"The checkpoint in '{model_dir}' lacks encoder weights "
                       f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); "
                       "give a complete checkpoint folder (save_pretrained).")
