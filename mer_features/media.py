"""Decoding media into arrays: audio as mono float32 at the encoder's sample rate.

Audio files (wav, flac, ogg, ...) are read with soundfile and resampled with soxr (librosa's
high-quality resampler); the audio track of a video container is read with decord. Every
failure becomes a :class:`~mer_features.errors.ClipError` at stage ``decode`` whose reason a
user can act on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mer_features.errors import ClipError

VIDEO_SUFFIXES = frozenset({".mp4", ".m4v", ".mkv", ".avi", ".mov", ".webm", ".flv", ".mpg",
                            ".mpeg", ".ts", ".wmv", ".3gp"})
AUDIO_DECODER = "soundfile+soxr_hq|decord"
"""Names the decoding path; part of the fingerprint since another decoder gives other samples."""


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode the audio of ``path`` as a mono float32 array of shape (n_samples,) at ``sample_rate``.

    Raises ClipError("decode", ...) for unreadable files, files without an audio track, and
    tracks that decode to nothing or to digital silence (all zeros, which is what a truncated
    container often yields).
    """
    path = Path(path)
    if not path.is_file():
        raise ClipError("decode", f"file '{path}' not found")
    if path.stat().st_size == 0:
        raise ClipError("decode", f"file '{path}' is empty (0 bytes)")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        audio = _decord_audio(path, sample_rate)
    else:
        try:
            audio = _soundfile_audio(path, sample_rate)
        except ClipError:
            audio = _decord_audio(path, sample_rate)  # m4a, mp3 without libsndfile support, ...
    if audio.size == 0:
        raise ClipError("decode", "the audio track holds no samples")
    if not np.isfinite(audio).all():
        raise ClipError("decode", "the audio track decodes to non-finite samples")
    if not np.any(audio):
        raise ClipError("decode", "the audio track is digital silence (every sample is 0); the "
                                  "file may be truncated or its audio muted")
    return audio


def _soundfile_audio(path: Path, sample_rate: int) -> np.ndarray:
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise ClipError("decode", f"cannot read '{path.name}' as audio ({e})") from e
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, rate, sample_rate)


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
