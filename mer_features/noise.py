"""Reproducible corruption of decoded media (the MER-NOISE track), applied before the encoder.

A spec is a comma-separated list of ``key=value``; audio keys act on the audio modality, video
keys on the video modality, so one spec can describe a whole corrupted test set:

``snr=LOW:HIGH`` or ``snr=DB``
    additive noise at an SNR drawn uniformly per clip (dB), signal power measured as the RMS
    over the whole clip, as the challenge's script does.
``source=white|pink|babble|FOLDER``
    the noise: white or pink (1/f) Gaussian noise; babble, the sum of 5 other clips of the
    same manifest at equal power; or the audio files of FOLDER (e.g. MUSAN speech),
    concatenated in sorted order and cropped at a random offset to the clip's length.
    Default: white.
``blur=1|2|4``
    pyramid blur: the frames go ``log2(factor)`` times down a Gaussian pyramid and back up
    (cv2.pyrDown/pyrUp, the challenge's scheme), the factor drawn per clip from the set.
``scale=S``
    resize frames by S in (0, 1] and back to their size (lost resolution, same geometry).
``jpeg=Q``
    JPEG-compress every frame at quality Q (1-100).

Each clip's draws depend only on (seed, clip name, spec), never on batch size, workers or
shards; they are recorded in the store (``clips/info['noise']``). Mixtures are never clipped:
a mixture whose peak would exceed 1 is scaled down as a whole, which keeps its SNR.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.errors import ClipError, MerFeaturesError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif")
BABBLE_TALKERS = 5


class NoiseSpecError(MerFeaturesError, ValueError):
    """A noise spec that does not parse, or a noise folder that cannot be used."""


@dataclass(frozen=True)
class NoiseSpec:
    snr: tuple[float, float] | None = None
    source: str = "white"
    blur: tuple[int, ...] | None = None
    scale: float | None = None
    jpeg: int | None = None
    text: str = field(default="", compare=False)

    @property
    def has_audio(self) -> bool:
        return self.snr is not None

    @property
    def has_video(self) -> bool:
        return self.blur is not None or self.scale is not None or self.jpeg is not None

    def fields(self, seed: int) -> dict[str, Any]:
        """What enters the store fingerprint."""
        return {"spec": canonical(self), "seed": int(seed)}


_KEY_RULES = {
    "snr": "snr takes a finite number of dB (snr=0) or a range LOW:HIGH with LOW <= HIGH "
           "(snr=5:10)",
    "source": "source takes white, pink, babble or the path of a folder of audio files",
    "blur": "blur takes distinct factors from 1, 2, 4, 8 separated by | (blur=1|2|4)",
    "scale": "scale takes a number in (0, 1] (scale=0.5)",
    "jpeg": "jpeg takes an integer quality from 1 to 100 (jpeg=30)",
}


def parse_noise(text: str) -> NoiseSpec:
    """Parse a spec such as ``snr=5:10,source=pink`` or ``blur=1|2|4,jpeg=40``.

    Raises :class:`NoiseSpecError` naming the part at fault and the rule it breaks for an
    unknown, repeated or empty key, a value out of range (an infinite or NaN SNR, a blur factor
    outside 1, 2, 4, 8, a scale outside (0, 1], a JPEG quality outside 1-100), and a noise folder
    that cannot be used.
    """
    values: dict[str, Any] = {}
    usage = ("Write it as comma-separated key=value: snr=5:10 or snr=0, source=white|pink|babble|"
             "FOLDER, blur=1|2|4, scale=0.5, jpeg=30.")
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not value:
            raise NoiseSpecError(f"Noise spec '{text}': '{part}' is not key=value. {usage}")
        if key not in _KEY_RULES:
            raise NoiseSpecError(f"Noise spec '{text}': unknown key '{key}' (known keys: "
                                 f"{', '.join(_KEY_RULES)}). {usage}")
        if key in values:
            raise NoiseSpecError(f"Noise spec '{text}': '{key}' is given twice; give each key "
                                 f"once. {usage}")
        try:
            values[key] = _parse_value(key, value)
        except ValueError:
            raise NoiseSpecError(f"Noise spec '{text}': bad value '{value}' for '{key}': "
                                 f"{_KEY_RULES[key]}. {usage}") from None
    if "source" in values and "snr" not in values:
        raise NoiseSpecError(f"Noise spec '{text}': 'source' needs an 'snr'. {usage}")
    spec = NoiseSpec(**values, text=text)
    if not (spec.has_audio or spec.has_video):
        raise NoiseSpecError(f"Noise spec '{text}' corrupts nothing. {usage}")
    if spec.has_audio and spec.source not in ("white", "pink", "babble"):
        NoiseFolder(spec.source)  # validates the folder now, before any work
    return spec


def _parse_value(key: str, value: str) -> Any:
    """The value of one key; ValueError when it breaks the key's rule (:data:`_KEY_RULES`)."""
    if key == "snr":
        low, colon, high = value.partition(":")
        if colon and not high.strip():
            raise ValueError
        pair = (float(low), float(high if colon else low))
        if not all(math.isfinite(v) for v in pair) or pair[0] > pair[1]:
            raise ValueError
        return pair
    if key == "source":
        return value
    if key == "blur":
        factors = tuple(int(v) for v in value.split("|"))
        if (not factors or any(f not in (1, 2, 4, 8) for f in factors)
                or len(set(factors)) != len(factors)):
            raise ValueError
        return factors
    if key == "scale":
        scale = float(value)
        if not 0 < scale <= 1:  # False for NaN
            raise ValueError
        return scale
    quality = int(value)
    if not 1 <= quality <= 100:
        raise ValueError
    return quality


def canonical(spec: NoiseSpec) -> str:
    parts = []
    if spec.snr is not None:
        low, high = spec.snr
        parts.append(f"snr={low:g}" if low == high else f"snr={low:g}:{high:g}")
        source = spec.source
        if source not in ("white", "pink", "babble"):
            source = str(Path(source).resolve())
        parts.append(f"source={source}")
    if spec.blur is not None:
        parts.append("blur=" + "|".join(str(f) for f in spec.blur))
    if spec.scale is not None:
        parts.append(f"scale={spec.scale:g}")
    if spec.jpeg is not None:
        parts.append(f"jpeg={spec.jpeg}")
    return ",".join(parts)


def clip_rng(seed: int, name: str, spec: NoiseSpec, stream: str) -> np.random.Generator:
    """The random stream of one clip: a function of (seed, clip name, spec, stream) only."""
    key = f"{int(seed)}\x00{name}\x00{canonical(spec)}\x00{stream}".encode()
    words = np.frombuffer(hashlib.blake2b(key, digest_size=32).digest(), dtype=np.uint64)
    return np.random.default_rng(np.random.SeedSequence([int(w) for w in words]))


# ---------------------------------------------------------------------------------------------
# audio


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

        from mer_features.manifest import describe_non_file

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise NoiseSpecError(f"Noise source '{folder}' is neither white, pink, babble nor a "
                                 "folder of audio files.")
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

        from mer_features.media import resample

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


def corrupt_audio(name: str, waveform: np.ndarray, rate: int, spec: NoiseSpec, seed: int, *,
                  babble_sources: list[Path] | None = None,
                  folder: NoiseFolder | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Add the spec's noise to one clip; returns the mixture and what was drawn."""
    rng = clip_rng(seed, name, spec, "audio")
    low, high = spec.snr
    snr = float(rng.uniform(low, high)) if high > low else float(low)
    n = len(waveform)
    info: dict[str, Any] = {"snr_db": round(snr, 4), "source": spec.source}
    if spec.source == "white":
        noise = rng.standard_normal(n)
    elif spec.source == "pink":
        noise = pink_noise(n, rng)
    elif spec.source == "babble":
        noise, talkers = _babble(name, n, rate, rng, babble_sources or [])
        info["talkers"] = talkers
    else:
        folder = folder or NoiseFolder(spec.source)
        noise, drawn = folder.crop(n, rate, rng)
        info.update(drawn)
    mixture, measured = mix_at_snr(waveform, noise, snr)
    info["measured_snr_db"] = round(measured, 4)
    return mixture, info


def _babble(name: str, n: int, rate: int, rng: np.random.Generator,
            sources: list[Path]) -> tuple[np.ndarray, list[dict[str, Any]]]:
    from mer_features.media import load_audio

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


# ---------------------------------------------------------------------------------------------
# video

_PYR = np.array([1, 4, 6, 4, 1], np.float32) / 16


def _blur_axis(x: np.ndarray, axis: int) -> np.ndarray:
    from scipy.ndimage import convolve1d

    return convolve1d(x, _PYR, axis=axis, mode="reflect")


def pyr_down(frames: np.ndarray) -> np.ndarray:
    """cv2.pyrDown on (n, H, W, 3) float: 5x5 Gaussian, then every second row and column."""
    x = _blur_axis(_blur_axis(frames, 1), 2)
    return x[:, ::2, ::2]


def pyr_up(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """cv2.pyrUp to ``shape`` (H, W): zero-insertion, then the 5x5 Gaussian times 4."""
    n, h, w, c = frames.shape
    up = np.zeros((n, shape[0], shape[1], c), np.float32)
    up[:, ::2, ::2] = frames[:, : (shape[0] + 1) // 2, : (shape[1] + 1) // 2]
    return _blur_axis(_blur_axis(up, 1), 2) * 4


def pyramid_blur(frames: np.ndarray, factor: int) -> np.ndarray:
    """Down ``log2(factor)`` pyramid levels and back up; uint8 (n, H, W, 3) in and out.

    Frame by frame, so a clip of full-HD frames never needs more than one frame in float.
    """
    if factor == 1:
        return frames
    out = np.empty_like(frames)
    for i in range(len(frames)):
        x = frames[i:i + 1].astype(np.float32)
        shapes = []
        for _ in range(int(round(math.log2(factor)))):
            shapes.append(x.shape[1:3])
            x = pyr_down(x)
        for shape in reversed(shapes):
            x = pyr_up(x, shape)
        out[i] = np.clip(np.rint(x[0]), 0, 255).astype(np.uint8)
    return out


def rescale(frames: np.ndarray, scale: float) -> np.ndarray:
    """Resize by ``scale`` and back (antialiased bilinear): lost resolution, same size."""
    import torch

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    small = torch.nn.functional.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))),
                                            mode="bilinear", antialias=True, align_corners=False)
    back = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return back.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    import io

    from PIL import Image

    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
        out[i] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return out


def corrupt_frames(name: str, frames: np.ndarray, spec: NoiseSpec,
                   seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply the spec's video corruption to uint8 frames (n, H, W, 3)."""
    rng = clip_rng(seed, name, spec, "video")
    info: dict[str, Any] = {}
    if spec.blur is not None:
        factor = int(spec.blur[int(rng.integers(len(spec.blur)))])
        frames = pyramid_blur(frames, factor)
        info["blur"] = factor
    if spec.scale is not None:
        frames = rescale(frames, spec.scale)
        info["scale"] = spec.scale
    if spec.jpeg is not None:
        frames = jpeg(frames, spec.jpeg)
        info["jpeg"] = spec.jpeg
    return frames, info
