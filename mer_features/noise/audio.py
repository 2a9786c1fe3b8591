"""Audio noise (the MER-NOISE track's additive noise): the ``snr`` and ``source`` keys.

``snr=LOW:HIGH`` or ``snr=DB``
    additive noise at an SNR drawn uniformly per clip (dB), signal power measured as the RMS
    over the whole clip, as the challenge's script does.
``source=white|pink|babble|FOLDER``
    the noise: white or pink (1/f) Gaussian noise; babble, the sum of 5 other clips of the
    same manifest at equal power; or the audio files of FOLDER (e.g. MUSAN speech),
    concatenated in sorted order and cropped at a random offset to the clip's length.
    Default: white.

Mixtures are never clipped: a mixture whose peak would exceed 1 is scaled down as a whole,
which keeps its SNR. Each clip's draws depend only on (seed, clip name, spec)
(:func:`~mer_features.noise.spec.clip_rng`) and are recorded in ``clips/info['noise']``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.errors import ClipError
from mer_features.noise.spec import (NoiseKey, NoiseSpec, NoiseSpecError, clip_rng,
                                     register_noise_key)

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
BABBLE_TALKERS = 5


@dataclass
class AudioNoiseInput:
    """What an audio noise key works on: one decoded clip (mono float32 ``waveform`` at
    ``rate``), the whole spec, the other clips of the manifest (for babble) and an open noise
    folder (None: opened on demand)."""

    name: str
    waveform: np.ndarray
    rate: int
    spec: NoiseSpec
    babble_sources: Sequence[Path | None] = field(default_factory=list)
    folder: NoiseFolder | None = None


def corrupt_audio(name: str, waveform: np.ndarray, rate: int, spec: NoiseSpec, seed: int, *,
                  babble_sources: Sequence[Path | None] | None = None,
                  folder: NoiseFolder | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply the spec's audio keys to one clip; returns the mixture and what was drawn."""
    rng = clip_rng(seed, name, spec, "audio")
    info: dict[str, Any] = {}
    for key, value in spec.applied("audio"):
        clip = AudioNoiseInput(name, waveform, rate, spec, babble_sources or [], folder)
        waveform, drawn = key.apply(clip, value, rng)
        info.update(drawn)
    return waveform, info


def power(x: np.ndarray) -> float:
    """Mean power over the whole signal (the square of its RMS)."""
    return float(np.mean(np.square(x, dtype=np.float64)))


def snr_db(signal: np.ndarray, noise: np.ndarray) -> float:
    return 10 * math.log10(power(signal) / power(noise))


def pink_noise(n: int, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise with a 1/f power spectrum, shape (n,)."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spectrum / np.sqrt(f), n=n)


class NoiseFolder:
    """The audio files of a folder, seen as one long concatenated signal."""

    def __init__(self, folder: str | Path):
        import soundfile as sf

        from mer_features.corpora.manifest import describe_non_file

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise NoiseSpecError(f"Noise source '{folder}' is neither "
                                 f"{', '.join(GENERATED_SOURCES)} nor a folder of audio files.")
        # Only regular files are ever opened: opening a FIFO blocks until someone writes to it
        # (a run would hang), a device may never end. Folders are searched, not read.
        files, odd = [], []
        for path in sorted(p for p in self.folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES):
            problem = describe_non_file(path)
            if problem is None:
                files.append(path)
            elif not path.is_dir():
                odd.append(f"{path.relative_to(self.folder)} {problem}")
        if odd:
            shown = "; ".join(odd[:5]) + (f"; and {len(odd) - 5} more" if len(odd) > 5 else "")
            raise NoiseSpecError(f"Noise folder '{folder}' holds entries that are not regular "
                                 f"audio files: {shown}. Remove them or point source= at a "
                                 "folder of audio files only.")
        if not files:
            raise NoiseSpecError(f"Noise folder '{folder}' holds no audio files "
                                 f"({', '.join(AUDIO_SUFFIXES)}).")
        self.files, self.frames, self.rates, bad = [], [], [], []
        for path in files:
            try:
                info = sf.info(str(path))
            except Exception as e:  # noqa: BLE001 - soundfile raises several types
                bad.append(f"{path.name} ({e})")
                continue
            if info.frames > 0:
                self.files.append(path)
                self.frames.append(info.frames)
                self.rates.append(info.samplerate)
        if bad:
            shown = "; ".join(bad[:5]) + (f"; and {len(bad) - 5} more" if len(bad) > 5 else "")
            raise NoiseSpecError(f"Noise folder '{folder}' holds unreadable audio files: {shown}. "
                                 "Remove or convert them.")
        if not self.files:
            raise NoiseSpecError(f"Noise folder '{folder}' holds only empty audio files.")
        self.seconds = [n / r for n, r in zip(self.frames, self.rates)]
        self.total = float(sum(self.seconds))
        self.starts = np.concatenate([[0.0], np.cumsum(self.seconds)[:-1]])

    def crop(self, n: int, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
        """``n`` samples at ``rate`` from a random offset of the concatenation."""
        import soundfile as sf

        from mer_features.decode.audio import resample

        need = n / rate
        if need > self.total:
            raise ClipError("noise", f"noise folder '{self.folder}' holds {self.total:.2f} s of "
                                     f"audio; the clip needs {need:.2f} s")
        offset = float(rng.uniform(0, self.total - need))
        pieces, used = [], []
        t, end = offset, offset + need
        i = int(np.searchsorted(self.starts, t, side="right") - 1)
        while t < end - 1e-9 and i < len(self.files):
            start_in_file = t - self.starts[i]
            take = min(self.seconds[i] - start_in_file, end - t)
            a = int(round(start_in_file * self.rates[i]))
            b = min(self.frames[i], a + max(1, int(round(take * self.rates[i]))))
            data, _ = sf.read(str(self.files[i]), start=a, stop=b, dtype="float32", always_2d=True)
            pieces.append(resample(data.mean(axis=1), self.rates[i], rate))
            used.append({"file": str(self.files[i]), "offset_s": round(start_in_file, 4),
                         "seconds": round(take, 4)})
            t += take
            i += 1
        noise = np.concatenate(pieces)
        if len(noise) < n:
            noise = np.pad(noise, (0, n - len(noise)))
        return noise[:n], {"offset_s": round(offset, 4), "pieces": used}


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr: float) -> tuple[np.ndarray, float]:
    """``signal + g * noise`` with g set for ``snr`` dB; scaled down as a whole if it would clip.

    Returns the mixture (float32) and the SNR measured on the mixed components.
    """
    ps, pn = power(signal), power(noise)
    if ps == 0:
        raise ClipError("noise", "the clip is silent (RMS 0), so an SNR is undefined")
    if pn == 0:
        raise ClipError("noise", "the noise segment is silent (RMS 0)")
    gain = math.sqrt(ps / (pn * 10 ** (snr / 10)))
    scaled = noise.astype(np.float64) * gain
    mixture = signal.astype(np.float64) + scaled
    peak = float(np.max(np.abs(mixture)))
    factor = 0.99 / peak if peak > 0.99 else 1.0
    return (mixture * factor).astype(np.float32), snr_db(signal * factor, scaled * factor)


def _babble(name: str, n: int, rate: int, rng: np.random.Generator,
            sources: Sequence[Path | None]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    from mer_features.decode.audio import load_audio

    others = [p for p in sources if p is not None]
    if len(others) < 2:
        raise ClipError("noise", "babble needs other clips in the manifest to mix")
    picks = rng.choice(len(others), size=min(BABBLE_TALKERS, len(others)), replace=False)
    total = np.zeros(n)
    talkers = []
    for index in sorted(int(i) for i in picks):
        try:
            talk = load_audio(others[index], rate).astype(np.float64)
        except ClipError:
            continue  # a broken neighbour is not this clip's fault
        reps = int(np.ceil(n / len(talk)))
        talk = np.tile(talk, reps) if reps > 1 else talk
        start = int(rng.integers(0, len(talk) - n + 1))
        segment = talk[start:start + n]
        segment = segment / math.sqrt(max(power(segment), 1e-12))
        total += segment
        talkers.append({"file": str(others[index]), "offset_s": round(start / rate, 4)})
    if not talkers:
        raise ClipError("noise", "no babble source clip could be decoded")
    return total, talkers


# --------------------------------------------------------------------------------------------
# The generated noises and the snr / source keys


def _white(clip: AudioNoiseInput, n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    return rng.standard_normal(n), {}


def _pink(clip: AudioNoiseInput, n: int, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    return pink_noise(n, rng), {}


def _babble_noise(clip: AudioNoiseInput, n: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    noise, talkers = _babble(clip.name, n, clip.rate, rng, clip.babble_sources)
    return noise, {"talkers": talkers}


_GENERATORS: dict[str, Callable[[AudioNoiseInput, int, np.random.Generator],
                                tuple[np.ndarray, dict]]] = {
    "white": _white, "pink": _pink, "babble": _babble_noise}

GENERATED_SOURCES = tuple(_GENERATORS)
"""Noise sources made by the toolkit; any other ``source`` is a folder of audio files."""


def is_generated(source: str) -> bool:
    """Whether ``source`` names a generated noise (not a folder)."""
    return source in _GENERATORS


def open_folder(spec: NoiseSpec) -> NoiseFolder | None:
    """The spec's noise folder, opened once, or None when its noise is generated (or absent)."""
    if spec.has_audio and not is_generated(spec.source):
        return NoiseFolder(spec.source)
    return None


def add_noise(clip: AudioNoiseInput, snr: tuple[float, float],
              rng: np.random.Generator) -> tuple[np.ndarray, dict[str, Any]]:
    """The ``snr`` key: the spec's noise mixed in at an SNR drawn from ``snr`` (LOW, HIGH)."""
    low, high = snr
    snr_drawn = float(rng.uniform(low, high)) if high > low else float(low)
    n = len(clip.waveform)
    source = clip.spec.source
    info: dict[str, Any] = {"snr_db": round(snr_drawn, 4), "source": source}
    if is_generated(source):
        noise, drawn = _GENERATORS[source](clip, n, rng)
    else:
        folder = clip.folder or NoiseFolder(source)
        noise, drawn = folder.crop(n, clip.rate, rng)
    info.update(drawn)
    mixture, measured = mix_at_snr(clip.waveform, noise, snr_drawn)
    info["measured_snr_db"] = round(measured, 4)
    return mixture, info


def _parse_snr(value: str) -> tuple[float, float]:
    low, colon, high = value.partition(":")
    if colon and not high.strip():
        raise ValueError
    pair = (float(low), float(high if colon else low))
    if not all(math.isfinite(v) for v in pair) or pair[0] > pair[1]:
        raise ValueError
    return pair


def _snr_text(pair: tuple[float, float]) -> str:
    low, high = pair
    return f"{low:g}" if low == high else f"{low:g}:{high:g}"


def _describe_snr(values: Mapping[str, str], result: dict[str, Any]) -> str:
    low, _, high = values["snr"].partition(":")
    lo, hi = float(low), float(high or low)  # ValueError: not a spec the toolkit writes
    source = values.get("source", "white")
    if not is_generated(source):
        source = Path(source).name or source
    result["snr_db"], result["source"] = (lo + hi) / 2, source
    text = f"{lo:g} dB" if lo == hi else f"{lo:g}-{hi:g} dB"
    return text if source == "white" else f"{text} {source}"


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _snr_level(level: str, options: Mapping[str, str]) -> tuple[str, str] | None:
    """``20`` (SNR 20 dB of ``options['source']``), ``10:pink``, or a range of SNRs drawn per
    clip, ``5:10`` and ``5:10:pink`` -> (spec, store tag); the tag is ``snr%02g`` (``snr05-10``
    for a range) plus ``-SOURCE`` (a folder's name) unless the default white is meant. A folder
    whose name is a number is written as a path (``0:./10``)."""
    snr, colon, source = level.partition(":")
    if not _NUMBER.fullmatch(snr):
        return None
    tag = f"snr{float(snr):02g}"
    high, colon2, rest = source.partition(":")
    if _NUMBER.fullmatch(high):
        snr, tag, source, colon = f"{snr}:{high}", f"{tag}-{float(high):02g}", rest, colon2
    if not colon:
        source = options["source"]
        if source == "white":
            return f"snr={snr},source={source}", tag
    return f"snr={snr},source={source}", f"{tag}-{_basename(source)}"


def _basename(path: str) -> str:
    """What ``basename`` prints: the last component, trailing slashes ignored."""
    stripped = path.rstrip("/")
    return stripped.rsplit("/", 1)[-1] if stripped else ("/" if path else "")


def _source_text(source: str) -> str:
    return source if is_generated(source) else str(Path(source).resolve())


def _check_source(source: str) -> None:
    if not is_generated(source):
        NoiseFolder(source)  # validates the folder now, before any work


register_noise_key(NoiseKey(
    name="snr", side="audio", example="snr=5:10 or snr=0",
    rule="snr takes a finite number of dB (snr=0) or a range LOW:HIGH with LOW <= HIGH "
         "(snr=5:10)",
    parse=_parse_snr, text=_snr_text, describe=_describe_snr, level=_snr_level,
    level_help="an SNR in dB (20, of the sweep's default source), SNR:SOURCE (10:pink), a "
               "range drawn per clip LOW:HIGH[:SOURCE] (5:10, 5:10:pink)",
    apply=add_noise))
register_noise_key(NoiseKey(
    name="source", side="audio", example=f"source={'|'.join(GENERATED_SOURCES)}|FOLDER",
    rule=f"source takes {', '.join(GENERATED_SOURCES)} or the path of a folder of audio files",
    parse=str, text=_source_text, needs="snr", default="white", check=_check_source))
