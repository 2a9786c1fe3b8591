"""Decoding media into arrays: audio as mono float32 at the encoder's sample rate.

Audio files (wav, flac, ogg, ...) are read with soundfile and resampled with soxr (librosa's
high-quality resampler); the audio track of a video container is read with decord. Every
failure becomes a :class:`~mer_features.errors.ClipError` at stage ``decode`` whose reason a
user can act on.

Level rule: every decoded clip lies within full scale (+-1), before any encoder sees it.

* Floating-point files (soundfile subtype FLOAT or DOUBLE) can hold real signal above full
  scale; a clip whose own peak exceeds 1 is **scaled** as a whole by 1/peak (its waveform
  shape is kept).
* Everything else (integer PCM, compressed codecs, any container decord reads) cannot exceed
  full scale in its source, so samples beyond +-1 after decoding or resampling are filter or
  codec overshoot of a clipped recording: they are **saturated** at +-1 (``np.clip``). So is
  the overshoot a resampler adds to a scaled float clip.

A clip the rule changed records it in ``clips/info["level"]``: ``{"peak": 1.07, "action":
"saturated", "samples": 12}`` or ``{"peak": 30.0, "action": "scaled", "gain": 0.0333}`` (plus
``"samples"`` if the resampled, scaled clip still needed saturating). Clips within full scale
are untouched and record nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.decode import VIDEO_SUFFIXES
from mer_features.errors import ClipError

AUDIO_DECODER = "soundfile+soxr_hq|decord"
"""Names the decoding path; part of the fingerprint (``preprocessing.decoder``) since another
decoder gives other samples. Change it whenever decoding changes a sample; stores written before
it joined the fingerprint are read as made with this value
(:data:`mer_features.fingerprint.ADDED_FIELDS`)."""


@dataclass
class DecodedAudio:
    """A decoded clip: ``waveform`` mono float32 of shape (n_samples,) within +-1; ``info`` holds
    ``{"level": {...}}`` when the level rule changed it, else nothing."""

    waveform: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode the audio of ``path`` as a mono float32 array of shape (n_samples,) at ``sample_rate``
    (see :func:`decode_audio`)."""
    return decode_audio(path, sample_rate).waveform


def decode_audio(path: str | Path, sample_rate: int) -> DecodedAudio:
    """Decode the audio of ``path`` as mono float32 at ``sample_rate``, within full scale.

    Applies the module's level rule and says in ``info`` what it did. Raises
    ClipError("decode", ...) for unreadable files, files without an audio track, and tracks
    that decode to nothing, to non-finite samples, or to digital silence (all zeros, which is
    what a truncated container often yields).
    """
    path = Path(path)
    if not path.is_file():
        raise ClipError("decode", f"file '{path}' not found")
    if path.stat().st_size == 0:
        raise ClipError("decode", f"file '{path}' is empty (0 bytes)")
    gain = None
    if path.suffix.lower() in VIDEO_SUFFIXES:
        audio = _decord_audio(path, sample_rate)
    else:
        try:
            audio, gain = _soundfile_audio(path, sample_rate)
        except ClipError:
            audio = _decord_audio(path, sample_rate)  # m4a, mp3 without libsndfile support, ...
    if audio.size == 0:
        raise ClipError("decode", "the audio track holds no samples")
    if not np.isfinite(audio).all():
        raise ClipError("decode", "the audio track decodes to non-finite samples")
    level = dict(gain) if gain else {}
    over = int(np.count_nonzero(np.abs(audio) > 1.0))
    if over:
        if not level:
            level = {"peak": float(np.max(np.abs(audio))), "action": "saturated"}
        level["samples"] = over
        audio = np.clip(audio, -1.0, 1.0)
    if not np.any(audio):
        raise ClipError("decode", "the audio track is digital silence (every sample is 0); the "
                                  "file may be truncated or its audio muted")
    return DecodedAudio(audio, {"level": level} if level else {})


def _soundfile_audio(path: Path, sample_rate: int) -> tuple[np.ndarray, dict[str, Any] | None]:
    """The resampled mono clip, and the level record when a float file was scaled."""
    import soundfile as sf

    try:
        with sf.SoundFile(str(path)) as f:
            subtype, rate = f.subtype, f.samplerate
            data = f.read(dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise ClipError("decode", f"cannot read '{path.name}' as audio ({e})") from e
    gain = None
    if subtype in ("FLOAT", "DOUBLE") and data.size and np.isfinite(data).all():
        peak = float(np.max(np.abs(data)))
        if peak > 1.0:  # real signal above full scale: scale it, keeping its shape
            gain = {"peak": peak, "action": "scaled", "gain": 1.0 / peak}
            data = data * np.float32(1.0 / peak)
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, rate, sample_rate), gain


def resample(audio: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """Resample a mono float32 signal with soxr's high-quality filter."""
    if rate == sample_rate:
        return np.ascontiguousarray(audio, dtype=np.float32)
    import soxr

    return soxr.resample(audio, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)


def _decord_audio(path: Path, sample_rate: int) -> np.ndarray:
    import decord

    try:
        reader = decord.AudioReader(str(path), ctx=decord.cpu(0), sample_rate=sample_rate, mono=True)
        audio = reader[:].asnumpy()
    except decord.DECORDError as e:
        message = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        if "Can't find audio stream" in message:
            raise ClipError("decode", f"'{path.name}' has no audio track; give an audio file in "
                                      "the manifest's 'audio' column or drop the clip") from e
        message = message.split(": ", 1)[-1] if "audio_reader.cc" in message else message
        raise ClipError("decode", f"cannot decode '{path.name}': {message}") from e
    except (RuntimeError, ValueError, IndexError) as e:
        raise ClipError("decode", f"cannot decode '{path.name}': {e}") from e
    return np.ascontiguousarray(audio.reshape(-1), dtype=np.float32)
