"""Self-supervised speech models from ``transformers``: wav2vec 2.0, HuBERT, WavLM, data2vec-audio.

``hf:<folder or hub id>`` loads any such checkpoint. Frames are the chosen layer's vectors (50 per
second for the usual 320-sample stride); the utterance vector is their mean over the clip's own
frames, never over padding. A Whisper checkpoint or Qwen2-Audio goes to
:mod:`mer_features.encoders.hf_whisper` instead (:meth:`HFAudioEncoder.family` reads the
checkpoint's model type), with its own options.

Padding must not change a clip's features, or a clip's vector would depend on its batch-mates:

* Models whose feature extractor starts with group norm (``feat_extract_norm == "group"``:
  wav2vec2-base, HuBERT-base, WavLM-base) normalise each channel over the whole padded time
  axis. We replace that group norm by one that takes its statistics over each clip's valid
  samples only.
* data2vec-audio stacks several padded convolutions in its positional embedding; padded
  positions are zeroed between them, as the model itself does before the first.
* Everything else is per-time-step or masked by the attention mask.

A test compares batched against one-clip-at-a-time outputs for each kind.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mer_features.decode.inputs import AudioInput
from mer_features.encoders.base import Encoded, Encoder, OutputSpec, register_encoder
from mer_features.encoders.hf_common import (autocast, check_layer, check_model_type,
                                             half_linear_weights, hidden_shapes, load_config,
                                             load_model, resolve_model_dir, select_layers,
                                             shape_fields, weights_identity)
from mer_features.encoders.hf_whisper import WHISPER_TYPES, HFWhisperEncoder, model_type
from mer_features.errors import ClipError, EncoderError

_CPU_FAST_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
"""Compute dtypes with the unfolded CPU feature encoder, by torch dtype name."""

SUPPORTED_TYPES = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "wav2vec2-conformer",
                   "unispeech", "unispeech-sat")


@dataclass(frozen=True)
class HFAudioConfig:
    model: str
    layer: str = "mean-last-4"
    sample_rate: int = 16000
    chunk_seconds: float = 30.0
    """Clips longer than this are encoded in chunks of this length (bounded memory)."""

    def __post_init__(self) -> None:
        check_layer(self.layer)
        if self.chunk_seconds < 1.0:
            raise ValueError(f"chunk_seconds must be at least 1.0; got {self.chunk_seconds}")


@register_encoder
class HFAudioEncoder(Encoder):
    """A frozen wav2vec 2.0 / HuBERT / WavLM / data2vec-audio model."""

    name = "hf"
    modality = "audio"
    version = "1"
    Config = HFAudioConfig
    spec_argument = "model"
    uses_dtype = True
    impl = "fast"
    """The CPU fast path where it applies (fp32/bf16 on a CPU, plain convolutions): the
    default on a CPU (faster than ``stock`` on every CPU measured, benchmarks/RESULTS.md)."""

    @classmethod
    def family(cls, values: Any) -> type[Encoder]:
        """Whisper checkpoints and Qwen2-Audio's tower take :class:`HFWhisperEncoder`."""
        try:
            folder = resolve_model_dir(values["model"])[0]
        except (EncoderError, KeyError, TypeError, AttributeError):
            return cls  # building it says what is wrong, after the options are checked
        return HFWhisperEncoder if model_type(folder) in WHISPER_TYPES else cls

    def __init__(self, config: HFAudioConfig):
        super().__init__(config)
        self._dir, self._origin = resolve_model_dir(config.model)
        self._hf_config = load_config(self._dir)
        check_model_type(self._hf_config, SUPPORTED_TYPES + WHISPER_TYPES, config.model,
                         "hf audio encoder takes")
        if self._hf_config.model_type in WHISPER_TYPES:
            raise EncoderError(f"'{config.model}' is a Whisper-family model: build its encoder "
                               "with create_encoder('audio', 'hf:...'), which picks its class.")
        strides = list(self._hf_config.conv_stride)
        kernels = list(self._hf_config.conv_kernel)
        self.hop = int(np.prod(strides))
        # Receptive field of one output frame, in samples: also the shortest usable input.
        self.receptive_field = 1 + sum((k - 1) * int(np.prod(strides[:i])) for i, k in enumerate(kernels))
        self.model = None
        self.normalize = False

    # declarations ----------------------------------------------------------------------
    def weights_identity(self) -> dict[str, Any]:
        return weights_identity(self._dir, self._origin)

    def output_spec(self) -> OutputSpec:
        shape, dim = hidden_shapes(self._hf_config, self.config.layer)
        return OutputSpec(utterance_shape=shape, frame_dim=dim,
                          frame_rate=self.config.sample_rate / self.hop)

    def preprocessing(self) -> dict[str, Any]:
        return {"sample_rate": self.config.sample_rate, "mono": True,
                "normalize": _wants_normalize(self._dir), "masked_padding": True}

    def impls(self, device: str) -> tuple[str, ...]:
        """``fast`` (the unfolded feature encoder) and ``stock`` on a CPU; ``stock`` elsewhere.
        A model whose convolutions are not plain (padded, grouped, dilated) runs ``stock``
        under either name."""
        return ("fast", "stock") if str(device) == "cpu" else ("stock",)

    def shape_fields(self) -> dict[str, Any]:
        return {"encoder": "hf-audio", "version": self.version, "layer": self.config.layer,
                "chunk_seconds": self.config.chunk_seconds, "architecture": shape_fields(self._hf_config)}

    # work -------------------------------------------------------------------------------
    def load(self, device: str = "cpu", dtype: str = "fp32") -> None:
        if self.model is not None:
            return
        super().load(device, dtype)
        import torch

        model = load_model(self._dir, self.config.model)
        self._lengths = _LengthHolder()
        if (self.impl == "fast" and dtype in _CPU_FAST_DTYPES and device == "cpu"
                and _plain_convolutions(model.feature_extractor)):
            # Whether the unfolded matrix products beat oneDNN's 1-d convolutions depends on
            # the CPU (HuBERT-base, 4 s clip, Xeon with AMX: 85 ms against 125 ms in fp32; max
            # abs difference 2e-6); benchmarks/bench_audio.py measures it on the machine at hand.
            model.feature_extractor = _fast_feature_encoder_class()(
                model.feature_extractor, self._lengths, getattr(torch, _CPU_FAST_DTYPES[dtype]))
        elif getattr(self._hf_config, "feat_extract_norm", "layer") == "group":
            conv0 = model.feature_extractor.conv_layers[0]
            conv0.layer_norm = _MaskedGroupNorm(conv0.layer_norm, self._lengths)
        pos = getattr(getattr(model, "encoder", None), "pos_conv_embed", None)
        _freeze_weight_norm(getattr(pos, "conv", None))
        stacked = getattr(pos, "layers", None)
        if stacked is not None and len(stacked) > 1:
            for layer in list(stacked)[:-1]:
                layer.register_forward_hook(self._zero_padding_hook)
        half_linear_weights(model, dtype)
        self.model = model.to(device)
        self.normalize = _wants_normalize(self._dir)
        self._torch = torch

    def _zero_padding_hook(self, module: Any, args: Any, output: Any) -> Any:
        mask = self._lengths.frame_mask
        if mask is None:
            return output
        return output * mask[:, None, : output.shape[-1]].to(output.dtype)

    def encode_batch(self, items: Sequence[AudioInput]) -> list[Encoded | ClipError]:
        if self.model is None:
            self.load(self.device, self.dtype)
        results: list[Encoded | ClipError | None] = [None] * len(items)
        segments: list[tuple[int, int, np.ndarray]] = []  # (item index, start sample, samples)
        for i, item in enumerate(items):
            if item.sample_rate != self.config.sample_rate:
                results[i] = ClipError("encode", f"audio is at {item.sample_rate} Hz; encoder "
                                                 f"'{self.describe()}' needs {self.config.sample_rate} Hz")
                continue
            if len(item.waveform) < self.receptive_field:
                results[i] = ClipError(
                    "encode", f"clip is {item.duration:.3f} s long; '{self.describe()}' needs at "
                    f"least {self.receptive_field / self.config.sample_rate:.3f} s "
                    f"({self.receptive_field} samples at {self.config.sample_rate} Hz)")
                continue
            wave = item.waveform
            if self.normalize:
                wave = (wave - wave.mean()) / np.sqrt(wave.var() + 1e-7)
            for start, stop in _chunks(len(wave), int(self.config.chunk_seconds * self.config.sample_rate),
                                       self.receptive_field):
                segments.append((i, start, wave[start:stop].astype(np.float32, copy=False)))
        outputs = self._forward(segments) if segments else []
        per_item: dict[int, list[tuple[int, np.ndarray, np.ndarray | None]]] = {}
        for (i, start, _), (frames, layers) in zip(segments, outputs):
            per_item.setdefault(i, []).append((start, frames, layers))
        for i, pieces in per_item.items():
            results[i] = self._assemble(pieces)
        return results  # type: ignore[return-value]

    def _forward(self, segments: list[tuple[int, int, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray | None]]:
        torch = self._torch
        lengths = [len(s[2]) for s in segments]
        batch = np.zeros((len(segments), max(lengths)), np.float32)
        for j, (_, _, wave) in enumerate(segments):
            batch[j, : len(wave)] = wave
        inputs = torch.from_numpy(batch).to(self.device)
        length_t = torch.tensor(lengths, device=self.device)
        frame_lengths = self.model._get_feat_extract_output_lengths(length_t)
        padded = min(lengths) < batch.shape[1]
        attention = None
        if padded:  # without padding the masks change nothing and cost passes over the batch
            attention = (torch.arange(batch.shape[1], device=self.device)[None, :]
                         < length_t[:, None]).long()
            n_frames = int(frame_lengths.max())
            k0 = self._hf_config.conv_kernel[0]
            s0 = self._hf_config.conv_stride[0]
            self._lengths.conv0 = (length_t - k0) // s0 + 1
            self._lengths.frame_mask = (torch.arange(n_frames, device=self.device)[None, :]
                                        < frame_lengths[:, None])
        try:
            with torch.inference_mode(), autocast(self.device, self.dtype):
                out = self.model(inputs, attention_mask=attention, output_hidden_states=True)
        finally:
            self._lengths.conv0 = None
            self._lengths.frame_mask = None
        frames, layers = select_layers(out.hidden_states, self.config.layer)
        frames = frames.float().cpu().numpy()
        layers = layers.float().cpu().numpy() if layers is not None else None
        results = []
        for j, n in enumerate(frame_lengths.tolist()):
            results.append((frames[j, :n], None if layers is None else layers[:, j, :n]))
        return results

    def _assemble(self, pieces: list[tuple[int, np.ndarray, np.ndarray | None]]) -> Encoded:
        pieces.sort(key=lambda p: p[0])
        rate = self.config.sample_rate
        frames = np.concatenate([p[1] for p in pieces])
        times = np.concatenate([
            (start + np.arange(len(f)) * self.hop + self.receptive_field / 2) / rate
            for start, f, _ in pieces]).astype(np.float32)
        if pieces[0][2] is None:
            utterance = frames.mean(axis=0)
        else:
            utterance = np.concatenate([p[2] for p in pieces], axis=1).mean(axis=1)
        return Encoded(utterance=utterance.astype(np.float32), frames=frames.astype(np.float32),
                       frame_times=times)


def _chunks(n: int, chunk: int, minimum: int) -> list[tuple[int, int]]:
    """Cut n samples into chunks of ``chunk``; a short tail joins the previous chunk."""
    if n <= chunk:
        return [(0, n)]
    bounds = list(range(0, n, chunk))
    spans = [(b, min(b + chunk, n)) for b in bounds]
    if spans[-1][1] - spans[-1][0] < max(minimum, chunk // 10):
        last = spans.pop()
        spans[-1] = (spans[-1][0], last[1])
    return spans


class _LengthHolder:
    """Per-forward lengths, set just before the model runs and cleared after."""

    conv0 = None
    frame_mask = None


def _masked_group_norm_forward(norm: Any, x: Any, lengths: Any) -> Any:
    """GroupNorm of each clip over its own valid steps, with the native kernel; padded steps
    are set to zero (no valid output of the later convolutions reads them)."""
    import torch

    out = torch.zeros_like(x)
    for b, n in enumerate(lengths.tolist()):
        out[b:b + 1, :, :n] = torch.nn.functional.group_norm(
            x[b:b + 1, :, :n], norm.num_groups, norm.weight, norm.bias, norm.eps)
    return out


@functools.cache
def _fast_feature_encoder_class() -> type:
    import torch
    import torch.nn.functional as F

    class UnfoldedFeatureEncoder(torch.nn.Module):
        """The convolutional feature encoder for CPUs (fp32 or bf16) as matrix products on
        (rows, channels) activations, with no unfolded copies after the first layer.

        A convolution with kernel k and stride s over frames x reads, for output t,
        x[t*s .. t*s + k - 1]. Viewing the (time, channels) rows s at a time, as
        P = x.view(time / s, s * channels) (free), output t is
        P[t] @ W_0 + P[t + 1][: taps * channels] @ W_1 + ..., one matrix product per chunk of
        s taps, the later ones on strided views of P that BLAS reads in place. Clips are
        stacked as rows (batch * time, channels) with every clip's time a multiple of the
        remaining strides, so the whole batch is one product per chunk; the last rows of each
        clip then read the next clip's first rows, but only positions past every valid
        output do, and they are cut off at the end like padding.

        On CPUs with bf16 matrix units (AMX), oneDNN's bf16 convolutions are barely faster
        than fp32 while bf16 matrix products are several times faster; in fp32 the products
        also beat oneDNN's 1-d convolutions. Same layers, same arithmetic up to rounding;
        the first layer's group norm has statistics over each clip's valid steps
        (:meth:`_fold_group_norm`).
        """

        def __init__(self, encoder: torch.nn.Module, holder: _LengthHolder, dtype: torch.dtype):
            super().__init__()
            self.layers = encoder.conv_layers
            self.holder = holder
            self.dtype = dtype
            self.kernels = [layer.conv.kernel_size[0] for layer in self.layers]
            self.strides = [layer.conv.stride[0] for layer in self.layers]
            self.chunks = []
            for i, layer in enumerate(self.layers):
                conv = layer.conv
                k, s = self.kernels[i], self.strides[i]
                if i == 0:  # one channel: unfolded windows, tap-major
                    parts = [conv.weight.detach().reshape(conv.out_channels, k).t()]
                else:  # per chunk of s taps, rows ordered (tap, channel) like P's columns
                    parts = [conv.weight.detach()[:, :, q:q + s].permute(2, 1, 0)
                             .reshape(-1, conv.out_channels) for q in range(0, k, s)]
                self.chunks.append(len(parts))
                for q, part in enumerate(parts):
                    self.register_buffer(f"weight{i}_{q}", part.contiguous().to(dtype))
                self.register_buffer(f"bias{i}", None if conv.bias is None
                                     else conv.bias.detach().to(dtype))

        def forward(self, input_values: torch.Tensor) -> torch.Tensor:
            b, n_in = input_values.shape
            n_out = n_in
            for k, s in zip(self.kernels, self.strides):
                n_out = (n_out - k) // s + 1
            # Pad each clip so that its rows after the first layer are a multiple of every
            # later stride, plus k0 - s0 samples so the first layer gives time / s0 windows.
            k0, s0 = self.kernels[0], self.strides[0]
            later = int(np.prod(self.strides[1:]))
            rows0 = -(-n_in // (s0 * later)) * later  # first-layer rows per clip
            x = F.pad(input_values, (0, rows0 * s0 + max(k0 - s0, 0) - n_in)).to(self.dtype)
            cols = x.unfold(1, k0, s0)[:, :rows0]  # (b, rows0, k0), small: one channel
            first = self.layers[0]
            norm = getattr(first, "layer_norm", None)
            if isinstance(norm, torch.nn.GroupNorm):  # first layer only (_plain_convolutions)
                weight, bias = self._fold_group_norm(norm, input_values, first.conv)
                h = torch.baddbmm(bias, cols, weight)
            else:
                h = cols @ self.weight0_0
                if self.bias0 is not None:
                    h = h + self.bias0
            h = self._finish(0, h.reshape(b * rows0, -1))
            for i in range(1, len(self.layers)):
                k, s = self.kernels[i], self.strides[i]
                c = h.shape[1]
                p = h.view(-1, s * c)  # (rows / s, s * channels), free
                taps = min(s, k)
                y = p[:, : taps * c] @ getattr(self, f"weight{i}_0")
                for q in range(1, self.chunks[i]):
                    taps = min(s, k - q * s)
                    y[:-q].addmm_(p[q:, : taps * c], getattr(self, f"weight{i}_{q}"))
                bias = getattr(self, f"bias{i}")
                if bias is not None:
                    y += bias
                h = self._finish(i, y)
            h = h.view(b, -1, h.shape[1])[:, :n_out]
            return h.transpose(1, 2)  # (batch, channels, time), as transformers expects

        def _finish(self, i: int, h: torch.Tensor) -> torch.Tensor:
            layer = self.layers[i]
            norm = getattr(layer, "layer_norm", None)
            if isinstance(norm, torch.nn.LayerNorm):
                h = F.layer_norm(h, norm.normalized_shape, norm.weight.to(self.dtype),
                                 norm.bias.to(self.dtype), norm.eps)
            return layer.activation(h)

        def _fold_group_norm(self, norm: torch.nn.GroupNorm, input_values: torch.Tensor,
                             conv: torch.nn.Conv1d) -> tuple[torch.Tensor, torch.Tensor]:
            """Per-clip weights (b, k, c) and biases (b, 1, c) of the first convolution with its
            group norm folded in, statistics over each clip's valid steps only.

            The first convolution is a linear map of the waveform's windows X (n, k):
            y = X W + b, so mean(y) = mean(X) W + b and var(y) = diag(W' cov(X) W), exact, from
            a k x k covariance in float64. Normalising y is then the same linear map with
            per-clip weights W * scale and bias (b - mean) * scale + beta, so the (n, channels)
            activations are never passed over twice. Steps past a clip's end get values no
            valid output reads.
            """
            k, s = conv.kernel_size[0], conv.stride[0]
            weight = conv.weight.detach().double().reshape(conv.out_channels, k).t()  # (k, c)
            conv_bias = 0.0 if conv.bias is None else conv.bias.detach().double()
            windows = input_values.unfold(1, k, s)  # (b, t', k), a view
            lengths = self.holder.conv0
            n_all = [windows.shape[1]] * windows.shape[0] if lengths is None else lengths.tolist()
            weights, biases = [], []
            for b, n in enumerate(n_all):
                x = windows[b, :n].double()
                mean_x = x.mean(0)
                centred = x - mean_x
                cov = centred.t() @ centred / n
                mean = mean_x @ weight + conv_bias
                var = ((cov @ weight) * weight).sum(0)
                scale = torch.rsqrt(var + norm.eps) * norm.weight.double()
                weights.append(weight * scale)
                biases.append((conv_bias - mean) * scale + norm.bias.double())
            return (torch.stack(weights).to(self.dtype),
                    torch.stack(biases)[:, None, :].to(self.dtype))

    return UnfoldedFeatureEncoder


@functools.cache
def _masked_group_norm_class() -> type:
    import torch

    class MaskedGroupNorm(torch.nn.Module):
        """GroupNorm whose statistics cover each clip's valid time steps only."""

        def __init__(self, norm: torch.nn.GroupNorm, holder: _LengthHolder):
            super().__init__()
            self.norm = norm
            self.holder = holder

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            lengths = self.holder.conv0
            if lengths is None:
                return self.norm(x)
            return _masked_group_norm_forward(self.norm, x, lengths.to(x.device))

    return MaskedGroupNorm


def _MaskedGroupNorm(norm: Any, holder: _LengthHolder) -> Any:
    return _masked_group_norm_class()(norm, holder)


def _freeze_weight_norm(conv: Any) -> None:
    """Compute a weight-normed convolution's weight once instead of on every forward (the
    positional convolution of wav2vec 2.0-style models); the weights are frozen, so the values
    are the same."""
    if conv is None:
        return
    import torch

    if hasattr(conv, "parametrizations") and "weight" in conv.parametrizations:
        torch.nn.utils.parametrize.remove_parametrizations(conv, "weight", leave_parametrized=True)


def _plain_convolutions(encoder: Any) -> bool:
    """Whether every conv layer is unpadded, ungrouped, undilated, with a per-channel norm."""
    import torch

    for i, layer in enumerate(getattr(encoder, "conv_layers", ())):
        conv = layer.conv
        norm = getattr(layer, "layer_norm", None)
        if conv.padding[0] != 0 or conv.groups != 1 or conv.dilation[0] != 1:
            return False
        if isinstance(norm, torch.nn.GroupNorm) and (norm.num_groups != norm.num_channels or i > 0):
            return False
    return bool(getattr(encoder, "conv_layers", ()))


def _wants_normalize(model_dir: Any) -> bool:
    """Whether the checkpoint's feature extractor normalises each clip to zero mean, unit variance."""
    import json
    from pathlib import Path

    path = Path(model_dir) / "preprocessor_config.json"
    if not path.is_file():
        return False
    try:
        return bool(json.loads(path.read_text()).get("do_normalize", False))
    except (OSError, ValueError):
        return False
