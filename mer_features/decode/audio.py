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

DC offset: a constant offset is not sound, yet it changes every energy-based feature (eGeMAPS'
loudness and spectral balance, a HuBERT's input statistics). A clip whose mean (in any channel)
is at least :data:`DC_RECORDED` of full scale (of the level the clip ends at, for a float clip
the level rule scales) has it removed at its source rate, before the level rule, and records
the offset as ``clips/info["dc_offset"]``; smaller offsets (every clean recording's) are left,
so such clips are untouched. A clip with no signal at all, every sample one value,
fails at stage ``decode``: "digital silence" when that value is 0, "a flat line" otherwise.

Cut files: a file that declares more audio than it holds (a WAV whose ``data`` chunk claims
more bytes than follow it, a FLAC that stops decoding before the samples its header declares,
an MP4/MOV whose audio track is shorter than its index declares) keeps the audio that decodes
and records ``clips/info["truncation"]``, a sentence saying what was declared and what was
found (:mod:`.containers`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.decode import VIDEO_SUFFIXES
from mer_features.decode.containers import mp4_declared, wav_declared_bytes
from mer_features.errors import ClipError

AUDIO_DECODER = "soundfile+soxr_hq|decord; dc offset removed"
"""Names the decoding path; part of the fingerprint (``preprocessing.decoder``) since another
decoder gives other samples. Change it whenever decoding changes a sample; stores written before
it joined the fingerprint are read as made with "soundfile+soxr_hq|decord"
(:data:`mer_features.fingerprint.ADDED_FIELDS`), which is the decoder before the DC offset was
removed: such stores are refused, naming ``preprocessing.decoder``, until extracted again."""

DC_RECORDED = 1e-3
"""A DC offset at least this large (of full scale, -60 dBFS) is removed and recorded per clip;
a clean recording's is far below it."""

_CUT_SECONDS = 0.25
"""An MP4 audio track this much (or 5%) shorter than its index declares is flagged as cut:
AAC priming and padding alone make them differ by up to ~0.1 s."""


@dataclass
class DecodedAudio:
    """A decoded clip: ``waveform`` mono float32 of shape (n_samples,) within +-1, without a DC
    offset; ``info`` holds ``level``, ``dc_offset`` and ``truncation`` when they apply."""

    waveform: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


def load_audio(path: str | Path, sample_rate: int) -> np.ndarray:
    """Decode the audio of ``path`` as a mono float32 array of shape (n_samples,) at ``sample_rate``
    (see :func:`decode_audio`)."""
    return decode_audio(path, sample_rate).waveform


def decode_audio(path: str | Path, sample_rate: int) -> DecodedAudio:
    """Decode the audio of ``path`` as mono float32 at ``sample_rate``, within full scale.

    Removes the DC offset, applies the module's level rule and says in ``info`` what it did
    and whether the file was cut short. Raises ClipError("decode", ...) for unreadable files,
    files without an audio track, and tracks that decode to nothing, to non-finite samples, to
    digital silence (all zeros, which is what a truncated container often yields) or to a flat
    line.
    """
    path = Path(path)
    if not path.is_file():
        raise ClipError("decode", f"file '{path}' not found")
    if path.stat().st_size == 0:
        raise ClipError("decode", f"file '{path}' is empty (0 bytes)")
    source = None
    if path.suffix.lower() not in VIDEO_SUFFIXES:
        try:
            source = _soundfile_audio(path)
        except ClipError:
            pass  # m4a, mp3 without libsndfile support, ...: decord reads them
    if source is None:
        source = _Source(_decord_audio(path, sample_rate)[:, None], sample_rate)
        declared = mp4_declared(path).audio_seconds or _header_seconds(path)
        found = len(source.data) / sample_rate
        if declared is not None and found < declared - max(_CUT_SECONDS, 0.05 * declared):
            source.truncation = (f"the file declares {declared:.2f} s of audio but "
                                 f"{found:.2f} s decode; the file was cut short")
    if source.data.size == 0:
        raise ClipError("decode", "the audio track holds no samples")
    if not np.isfinite(source.data).all():
        raise ClipError("decode", "the audio track decodes to non-finite samples")
    info: dict[str, Any] = {}
    if source.truncation:
        info["truncation"] = source.truncation
    audio, level = _level(source, sample_rate, info)
    if level:
        info["level"] = level
    return DecodedAudio(audio, info)


@dataclass
class _Source:
    """Samples at ``rate`` as read, before any change, shape (n, channels); ``float_file``: a
    FLOAT or DOUBLE file (which may hold real signal above full scale); ``truncation``: why
    the file is cut, in words ("" when it is whole)."""

    data: np.ndarray
    rate: int
    float_file: bool = False
    truncation: str = ""


def _level(source: _Source, sample_rate: int, info: dict[str, Any]) -> tuple[np.ndarray, dict]:
    """DC removal, the level rule and resampling (see the module's docstring)."""
    data = source.data
    low, high = data.min(axis=0), data.max(axis=0)
    if (low == high).all():  # every channel holds one value throughout
        if not high.any():
            raise ClipError("decode", "the audio track is digital silence (every sample is 0); "
                                      "the file may be truncated or its audio muted")
        if len(data) > 1:  # one sample is too short to be anything: the encoder says so
            raise ClipError("decode", f"the audio track is a flat line (every sample is "
                                      f"{float(high.max()):.3g}): a constant offset without "
                                      "any sound; check the recording")
    offsets = data.mean(axis=0, dtype=np.float64)
    centred = data - offsets.astype(np.float32)
    # judged at the level the clip ends at: a float clip peaking at 30 is scaled by 1/30
    scale = min(1.0, 1.0 / float(np.max(np.abs(centred)))) if source.float_file else 1.0
    if np.abs(offsets).max() * scale >= DC_RECORDED:  # a clip is changed only where info says so
        data = centred
        info["dc_offset"] = round(float(offsets.mean()), 6)
    level: dict[str, Any] = {}
    if source.float_file:
        peak = float(np.max(np.abs(data)))
        if peak > 1.0:  # real signal above full scale: scale it, keeping its shape
            level = {"peak": peak, "action": "scaled", "gain": 1.0 / peak}
            data = data * np.float32(1.0 / peak)
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    audio = resample(mono, source.rate, sample_rate)
    over = int(np.count_nonzero(np.abs(audio) > 1.0))
    if over:
        if not level:
            level = {"peak": float(np.max(np.abs(audio))), "action": "saturated"}
        level["samples"] = over
        audio = np.clip(audio, -1.0, 1.0)
    return audio, level


def _soundfile_audio(path: Path) -> _Source:
    """The file's mono samples at its own rate, with what its header says about cuts."""
    import soundfile as sf

    truncation = ""
    try:
        with sf.SoundFile(str(path)) as f:
            subtype, rate, declared, channels = f.subtype, f.samplerate, f.frames, f.channels
            blocks: list[np.ndarray] = []
            got = 0
            while True:
                try:
                    block = f.read(1 << 14, dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as e:
                    if not got:
                        raise
                    truncation = f"decoding failed after {got / rate:.2f} s ({e})"
                    break
                if not len(block):
                    break
                blocks.append(block)
                got += len(block)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise ClipError("decode", f"cannot read '{path.name}' as audio ({e})") from e
    data = np.concatenate(blocks) if blocks else np.zeros((0, channels), np.float32)
    if got < declared:  # FLAC and others declare their length in the header
        truncation = (f"{truncation or f'decoding ended after {got / rate:.2f} s'}, of the "
                      f"{declared / rate:.2f} s the header declares; the file was cut short or "
                      "is damaged")
    wav = wav_declared_bytes(path)  # libsndfile sizes a WAV by the bytes present
    if not truncation and wav is not None and wav[0] > wav[1] and len(data):
        claimed = len(data) * wav[0] / wav[1] / rate
        truncation = (f"the WAV header declares {wav[0]} bytes of audio ({claimed:.2f} s) but "
                      f"the file holds {wav[1]} ({len(data) / rate:.2f} s); the file was cut "
                      "short")
    return _Source(data, rate, subtype in ("FLOAT", "DOUBLE"), truncation)


def _header_seconds(path: Path) -> float | None:
    """The duration a file's header declares, when libsndfile can read the header (a FLAC
    whose first block already fails to decode); None otherwise."""
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except Exception:  # noqa: BLE001 - no header libsndfile knows
        return None
    return info.frames / info.samplerate if info.samplerate and info.frames > 0 else None


def resample(audio: np.ndarray, rate: int, sample_rate: int) -> np.ndarray:
    """Resample a mono float32 signal with soxr's high-quality filter."""
    if rate == sample_rate:
        return np.ascontiguousarray(audio, dtype=np.float32)
    import soxr

    return soxr.resample(audio, rate, sample_rate, quality="HQ").astype(np.float32, copy=False)


def _decord_audio(path: Path, sample_rate: int) -> np.ndarray:
    import decord

    from mer_features.console import quiet_native_stderr

    try:
        with quiet_native_stderr():  # ffmpeg and decord print from C ("partial file", ...)
            reader = decord.AudioReader(str(path), ctx=decord.cpu(0), sample_rate=sample_rate,
                                        mono=True)
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
