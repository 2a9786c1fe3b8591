"""What every Whisper-family audio encoder shares: the log-mel front end, 30-s windows, pooling.

Whisper (and the Whisper-style audio tower of audio-LLMs such as Qwen2-Audio) reads a log-mel
spectrogram: 16 kHz audio, a periodic Hann window of 400 samples (25 ms) every 160 samples
(10 ms, so 100 mel frames per second), power spectrum, ``n_mels`` Slaney-scaled triangular
filters with Slaney normalisation from 0 to 8 kHz (80 bins; 128 for large-v3), log10 of the
power floored at 1e-10, clamped from below at the spectrogram's maximum less 8, then
``(x + 4) / 4``. :func:`log_mel` computes exactly what ``transformers``'
``WhisperFeatureExtractor`` computes (a test compares them), in numpy, so the CTranslate2 path
needs no torch.

The encoder sees at most 30 s (3000 mel frames, 1500 output frames: 50 per second). Longer
clips are cut by :func:`windows` into the fewest windows of at most 30 s, all of (nearly) equal
length, so that no window is a sliver; each window is encoded alone and its frames are placed
at their time in the clip.

``input`` says what one window is fed as:

* ``clip``: the window's own samples, ``n // 160`` mel frames (the encoder's positional table
  is cut to that length; the encoder sees no padding);
* ``padded``: the window padded with zeros to 30 s before the spectrogram, as Whisper was
  trained; only the output frames that cover the window's samples are kept
  (``ceil(n_mel / 2)`` of the 1500).

Whisper's encoder has no padding mask: padding changes every frame's value through attention.
So batches hold windows of one length only (``clip``), or windows that are all padded to 30 s
(``padded``), and a clip's features never depend on its batch-mates.

Pooling (the utterance vector): ``mean-std`` (default) concatenates the mean and the standard
deviation (ddof 0) over the clip's frames, array of shape (2 * dim,); ``mean`` is the mean alone.
"""

from __future__ import annotations

import functools
import math

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160
WINDOW_SECONDS = 30
WINDOW_SAMPLES = WINDOW_SECONDS * SAMPLE_RATE
MEL_FRAMES = WINDOW_SAMPLES // HOP  # 3000
FRAME_RATE = SAMPLE_RATE / (2 * HOP)  # 50 encoder frames per second
MIN_SAMPLES = N_FFT
"""The shortest clip: one full analysis window (25 ms), which gives 2 mel frames, 1 output frame."""
INPUTS = ("clip", "padded")
POOLINGS = ("mean-std", "mean")


def check_input(value: str) -> None:
    if value not in INPUTS:
        raise ValueError(f"input must be one of {', '.join(INPUTS)}; got '{value}'")


def check_pooling(value: str) -> None:
    if value not in POOLINGS:
        raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}; got '{value}'")


def _hertz_to_mel(freq: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above (librosa's htk=False)."""
    freq = np.asarray(freq, np.float64)
    mels = 3.0 * freq / 200.0
    logstep = 27.0 / np.log(6.4)
    above = freq >= 1000.0
    return np.where(above, 15.0 + np.log(np.maximum(freq, 1e-10) / 1000.0) * logstep, mels)


def _mel_to_hertz(mels: np.ndarray) -> np.ndarray:
    mels = np.asarray(mels, np.float64)
    freq = 200.0 * mels / 3.0
    logstep = np.log(6.4) / 27.0
    return np.where(mels >= 15.0, 1000.0 * np.exp(logstep * (mels - 15.0)), freq)


@functools.cache
def mel_filters(n_mels: int) -> np.ndarray:
    """Slaney-normalised triangular filters, array of shape (n_mels, N_FFT // 2 + 1), float64."""
    fft_freqs = np.linspace(0, SAMPLE_RATE // 2, N_FFT // 2 + 1)
    mel_points = np.linspace(_hertz_to_mel(0.0), _hertz_to_mel(8000.0), n_mels + 2)
    filter_freqs = _mel_to_hertz(mel_points)
    diff = np.diff(filter_freqs)
    slopes = filter_freqs[None, :] - fft_freqs[:, None]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    filters = np.maximum(0.0, np.minimum(down, up))
    filters *= 2.0 / (filter_freqs[2:n_mels + 2] - filter_freqs[:n_mels])
    filters.setflags(write=False)
    return filters.T


@functools.cache
def _hann() -> np.ndarray:
    k = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2 * np.pi * k / N_FFT)  # periodic, as torch.hann_window


def log_mel(wave: np.ndarray, n_mels: int = 80, pad_to: int | None = None) -> np.ndarray:
    """Whisper's log-mel spectrogram of a 16 kHz waveform of shape (n,), array of shape
    (n_mels, n // 160) float32; with ``pad_to`` the waveform is first padded with zeros to
    that many samples (Whisper's 30-s input: ``pad_to=WINDOW_SAMPLES`` gives 3000 frames)."""
    wave = np.asarray(wave, np.float64)
    if pad_to is not None and len(wave) < pad_to:
        wave = np.pad(wave, (0, pad_to - len(wave)))
    half = N_FFT // 2
    padded = np.pad(wave, (half, half), mode="reflect")  # torch.stft(center=True)
    n_frames = len(wave) // HOP  # 1 + n // HOP frames, the last dropped as Whisper does
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:n_frames]
    power = np.abs(np.fft.rfft(frames * _hann(), axis=1)) ** 2  # (n_frames, N_FFT // 2 + 1)
    mel = mel_filters(n_mels) @ power.T
    log_spec = np.log10(np.maximum(mel, 1e-10))
    log_spec = np.maximum(log_spec, log_spec.max() - 8.0)
    return ((log_spec + 4.0) / 4.0).astype(np.float32)


def windows(n_samples: int) -> list[tuple[int, int]]:
    """(start, stop) samples of the windows a clip of ``n_samples`` is encoded in: one when it
    is at most 30 s, else the fewest windows of at most 30 s, of equal length up to one hop
    (their starts are multiples of the 160-sample hop, so mel frames stay on one grid)."""
    if n_samples <= WINDOW_SAMPLES:
        return [(0, n_samples)]
    count = math.ceil(n_samples / WINDOW_SAMPLES)
    hops = math.ceil(n_samples / HOP)
    bounds = [min(n_samples, HOP * (hops * i // count)) for i in range(count)] + [n_samples]
    return list(zip(bounds[:-1], bounds[1:]))


def output_frames(n_samples: int) -> int:
    """Encoder frames covering ``n_samples`` samples of one window: ceil(mel frames / 2)."""
    return -(-(n_samples // HOP) // 2)


def frame_times(start: int, count: int) -> np.ndarray:
    """Centre times in seconds of ``count`` encoder frames of a window starting at sample
    ``start``: frame t covers mel frames 2t and 2t + 1, i.e. samples 320 t .. 320 t + 320."""
    return ((start + (np.arange(count) + 0.5) * 2 * HOP) / SAMPLE_RATE).astype(np.float32)


def pool(frames: np.ndarray, pooling: str) -> np.ndarray:
    """The utterance vector of frames of shape (..., n_frames, dim): (..., 2 * dim) for
    ``mean-std`` (mean, then standard deviation), (..., dim) for ``mean``."""
    frames = np.asarray(frames, np.float64)
    mean = frames.mean(axis=-2)
    if pooling == "mean":
        return mean.astype(np.float32)
    return np.concatenate([mean, frames.std(axis=-2)], axis=-1).astype(np.float32)


def pooled_dim(dim: int, pooling: str) -> int:
    return 2 * dim if pooling == "mean-std" else dim


def too_short(n_samples: int) -> str | None:
    """Why a clip of ``n_samples`` at 16 kHz cannot be encoded, or None."""
    if n_samples < MIN_SAMPLES:
        return (f"clip is {n_samples / SAMPLE_RATE:.3f} s long; Whisper encoders need at least "
                f"{MIN_SAMPLES / SAMPLE_RATE:.3f} s ({MIN_SAMPLES} samples at {SAMPLE_RATE} Hz)")
    return None
