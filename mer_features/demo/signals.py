"""What the synthetic demo clips show, say and sound like: class-dependent sentences, face
frames (a real photograph warped by class) and a voiced speech-like signal (pitch, loudness,
rate and formants by class). :mod:`mer_features.demo.corpus` plans the corpus and writes the
files.

Every function takes its ``numpy.random.Generator``; nothing here draws from global state.
Changing what these functions return changes the demo's bytes: bump the generator version in
:mod:`mer_features.demo.corpus`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mer_features import EMOTIONS

FPS = 25
"""Frame rate of the demo videos."""

FRAME_SIZE = 192
"""Width and height of the demo videos, in pixels."""

SAMPLE_RATE = 16000
"""Sample rate of the demo audio tracks, in Hz."""

# Each class has adjectives, verb phrases and interjections; templates also use shared words.
# With probability _CROSS_TALK a class slot takes a word from another class, so that a
# bag-of-words model is good but not perfect.
_WORDS = {
    "neutral": (
        ("fine", "ordinary", "calm"),
        ("checked", "noted", "filed"),
        ("well", "alright", "anyway"),
    ),
    "angry": (
        ("furious", "outraged", "livid"),
        ("cursed", "slammed", "hated"),
        ("enough", "unbelievable", "outrageous"),
    ),
    "happy": (
        ("delighted", "thrilled", "joyful"),
        ("loved", "celebrated", "enjoyed"),
        ("hooray", "wonderful", "yay"),
    ),
    "sad": (
        ("miserable", "heartbroken", "gloomy"),
        ("missed", "mourned", "regretted"),
        ("sigh", "alas", "sadly"),
    ),
    "worried": (
        ("anxious", "nervous", "uneasy"),
        ("dreaded", "feared", "doubted"),
        ("hopefully", "careful", "yikes"),
    ),
    "surprise": (
        ("amazed", "astonished", "stunned"),
        ("discovered", "spotted", "uncovered"),
        ("wow", "whoa", "really"),
    ),
}
_CROSS_TALK = 0.1
_SUBJECTS = (
    ("I", "was"),
    ("we", "were"),
    ("she", "was"),
    ("he", "was"),
    ("they", "were"),
    ("my brother", "was"),
    ("our team", "was"),
    ("the neighbours", "were"),
)
_OBJECTS = ("me", "us", "her", "him", "them", "everyone")
_NOUNS = (
    "letter", "meeting", "report", "train", "house", "garden", "phone call", "exam",
    "dinner", "parcel", "result", "visit", "new job", "old car", "weekend", "message",
)
_TIMES = ("today", "yesterday", "this morning", "last night", "at work", "again", "on monday")
# Every template has three class slots ({A}, {V}, {I}) among shared words.
_TEMPLATES = (
    "{I}, {S} {was} {A} and {V} the {N} {T}.",
    "{I}! {S} {was} {A} about the {N} and {V} it.",
    "{T} the {N} made {O} {A}. {I}, {S} {V} it.",
    "the {N} {T}? {S} {was} so {A}, {I}. {S} {V} it.",
    "{I}, {S} {was} {A} when {O2} {V} the {N}.",
)


def _sentence(emotion: str, rng: np.random.Generator) -> str:
    """One transcript, e.g. ``"Wow! We never expected the parcel."``."""
    others = [e for e in EMOTIONS if e != emotion]

    def word(kind: int) -> str:
        source = emotion
        if rng.random() < _CROSS_TALK:
            source = others[int(rng.integers(len(others)))]
        options = _WORDS[source][kind]
        return options[int(rng.integers(len(options)))]

    subject, copula = _SUBJECTS[int(rng.integers(len(_SUBJECTS)))]
    template = _TEMPLATES[int(rng.integers(len(_TEMPLATES)))]
    text = template.format(
        S=subject,
        was=copula,
        O=_OBJECTS[int(rng.integers(len(_OBJECTS)))],
        O2=("I", "we", "they", "she", "he")[int(rng.integers(5))],
        N=_NOUNS[int(rng.integers(len(_NOUNS)))],
        T=_TIMES[int(rng.integers(len(_TIMES)))],
        A=word(0),
        V=word(1),
        I=word(2),
    )
    # Capitalise the first letter of each sentence ("... the exam? She was so ...").
    return re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)


# --------------------------------------------------------------------------------------------
# Video
# --------------------------------------------------------------------------------------------

# Landmarks of the face in skimage.data.astronaut(), (x, y) in its 512x512 pixel grid, read off
# the image by hand.
_FACE_CENTER = np.array([224.0, 118.0])
_CROP = 170.0  # source pixels across the frame; the face (brow to chin ~ 80 px) becomes ~90 px
_BROW_L, _BROW_R = np.array([212.0, 91.0]), np.array([236.0, 91.0])
_BROW_OUT_L, _BROW_OUT_R = np.array([195.0, 93.0]), np.array([253.0, 93.0])
_MOUTH_L, _MOUTH_R = np.array([207.0, 137.0]), np.array([241.0, 137.0])
_CHEEK_L, _CHEEK_R = np.array([203.0, 124.0]), np.array([245.0, 124.0])
_JAW = np.array([224.0, 158.0])

# Forward displacements (dx, dy) of facial regions, in source pixels at full intensity: each
# entry is (centre, sigma, displacement). Amplitudes stay below ~0.8 sigma so the warp never
# folds over.
_BUMPS = {
    "neutral": (),
    "angry": (
        (_BROW_L, 9.0, (4.0, 6.0)),
        (_BROW_R, 9.0, (-4.0, 6.0)),
        (_MOUTH_L, 9.0, (5.0, 1.0)),
        (_MOUTH_R, 9.0, (-5.0, 1.0)),
    ),
    "happy": (
        (_MOUTH_L, 10.0, (-6.0, -6.0)),
        (_MOUTH_R, 10.0, (6.0, -6.0)),
        (_CHEEK_L, 12.0, (0.0, -4.0)),
        (_CHEEK_R, 12.0, (0.0, -4.0)),
    ),
    "sad": (
        (_MOUTH_L, 10.0, (2.0, 7.0)),
        (_MOUTH_R, 10.0, (-2.0, 7.0)),
        (_BROW_L, 8.0, (0.0, -5.0)),
        (_BROW_R, 8.0, (0.0, -5.0)),
        (_BROW_OUT_L, 9.0, (0.0, 4.0)),
        (_BROW_OUT_R, 9.0, (0.0, 4.0)),
    ),
    "worried": (
        (_BROW_L, 9.0, (2.0, -7.0)),
        (_BROW_R, 9.0, (-2.0, -7.0)),
        (_MOUTH_L, 9.0, (4.0, 3.0)),
        (_MOUTH_R, 9.0, (-4.0, 3.0)),
    ),
    "surprise": (
        (_BROW_L, 14.0, (0.0, -9.0)),
        (_BROW_R, 14.0, (0.0, -9.0)),
        (_JAW, 18.0, (0.0, 11.0)),
    ),
}

# Whole-face vertical stretch of each class (surprise: long face, open jaw).
_STRETCH = {
    "neutral": 1.0,
    "angry": 0.97,
    "happy": 0.98,
    "sad": 1.02,
    "worried": 1.0,
    "surprise": 1.08,
}
# Head posture of each class: vertical offset (output px, + is down), log zoom, tilt
# (degrees) and how much the head wanders (1 = the base amount).
_POSE = {
    "neutral": (0.0, 0.0, 0.0, 1.0),
    "angry": (3.0, 0.05, 0.0, 1.4),
    "happy": (-1.0, 0.0, 4.0, 1.2),
    "sad": (7.0, -0.04, -2.0, 0.6),
    "worried": (1.0, -0.02, -3.0, 1.6),
    "surprise": (-5.0, -0.03, 0.0, 1.0),
}
# Colour cast of each class, per-channel gain (R, G, B): a crude stand-in for the lighting
# and flushing that make real clips' colours weakly informative.
_TINT = {
    "neutral": (1.00, 1.00, 1.00),
    "angry": (1.12, 0.93, 0.90),
    "happy": (1.07, 1.04, 0.92),
    "sad": (0.82, 0.87, 1.00),
    "worried": (0.94, 1.03, 0.92),
    "surprise": (1.10, 1.10, 1.14),
}

_SOURCE: np.ndarray | None = None


def _source_image() -> np.ndarray:
    """The astronaut photograph as float32, shape (3, 512, 512), channel first."""
    global _SOURCE
    if _SOURCE is None:
        from skimage import data  # scikit-image is slow to import; only the video needs it

        image = data.astronaut()[..., :3].transpose(2, 0, 1)
        _SOURCE = np.ascontiguousarray(image, dtype=np.float32)
    return _SOURCE


def _smooth_wave(rng: np.random.Generator, t: np.ndarray, amplitude: float) -> np.ndarray:
    """A slow, smooth random motion: two sinusoids (0.1 to 0.6 Hz) summing to ~``amplitude``."""
    freqs = rng.uniform(0.1, 0.6, size=2)
    phases = rng.uniform(0.0, 2.0 * math.pi, size=2)
    weights = rng.uniform(0.3, 0.7, size=2)
    out = np.zeros_like(t)
    for f, p, w in zip(freqs, phases, weights):
        out += w * np.sin(2.0 * math.pi * f * t + p)
    return amplitude * out


def _render_frames(emotion: str, n_frames: int, rng: np.random.Generator) -> np.ndarray:
    """The clip's frames, uint8, shape (n_frames, FRAME_SIZE, FRAME_SIZE, 3), RGB."""
    src = _source_image()
    size = FRAME_SIZE
    t = np.arange(n_frames) / FPS
    # Head motion, in output pixels / log zoom / radians: a class posture, a per-clip offset
    # and a slow wander.
    pose_dy, pose_zoom, pose_tilt, wander = _POSE[emotion]
    shift_x = wander * _smooth_wave(rng, t, 3.0) + rng.uniform(-2.0, 2.0)
    shift_y = wander * _smooth_wave(rng, t, 2.5) + rng.uniform(-2.0, 2.0) + pose_dy
    zoom = np.exp(wander * _smooth_wave(rng, t, 0.03) + rng.normal(0.0, 0.02) + pose_zoom)
    angle = (
        wander * _smooth_wave(rng, t, math.radians(3.0))
        + rng.normal(0.0, math.radians(1.5))
        + math.radians(pose_tilt)
    )

    # Expression: rises over the first 0.2-0.6 s, then breathes a little.
    strength = rng.uniform(0.7, 1.2)
    onset = rng.uniform(0.2, 0.6)
    ramp = np.clip(t / onset, 0.0, 1.0)
    ramp = ramp * ramp * (3.0 - 2.0 * ramp)
    intensity = strength * ramp * (1.0 + _smooth_wave(rng, t, 0.1))
    bumps = _BUMPS[emotion]
    if emotion == "neutral":
        # A faint trace of a random other expression, so "neutral" is not simply "no warp".
        other = EMOTIONS[1 + int(rng.integers(len(EMOTIONS) - 1))]
        bumps = tuple((c, s, (0.25 * d[0], 0.25 * d[1])) for c, s, d in _BUMPS[other])
    stretch = 1.0 + (_STRETCH[emotion] - 1.0) * strength

    gain = np.asarray(_TINT[emotion]) * math.exp(rng.normal(0.0, 0.04))
    gain = gain * (1.0 + rng.normal(0.0, 0.02, size=3))

    # Output pixel grid, centred, in output pixels.
    coords = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    gy, gx = np.meshgrid(coords, coords, indexing="ij")
    per_px = _CROP / size

    frames = np.empty((n_frames, size, size, 3), dtype=np.uint8)
    for k in range(n_frames):
        # Inverse of "rotate, zoom, shift": where in the canonical face each output pixel lies.
        x = (gx - shift_x[k]) / zoom[k]
        y = (gy - shift_y[k]) / zoom[k]
        c, s = math.cos(angle[k]), math.sin(angle[k])
        sx = _FACE_CENTER[0] + per_px * (c * x + s * y)
        sy = _FACE_CENTER[1] + per_px * (-s * x + c * y) / stretch
        # Subtracting the forward displacement at the output point is the first-order inverse
        # of the warp; amplitudes are small enough for that to be exact to a fraction of a px.
        if intensity[k] != 0.0:
            dx = np.zeros_like(sx)
            dy = np.zeros_like(sy)
            for centre, sigma, (ax, ay) in bumps:
                g = np.exp(((sx - centre[0]) ** 2 + (sy - centre[1]) ** 2) * (-0.5 / sigma**2))
                dx += ax * g
                dy += ay * g
            sx = sx - intensity[k] * dx
            sy = sy - intensity[k] * dy
        grid = np.stack([sy, sx])
        for ch in range(3):
            val = ndimage.map_coordinates(src[ch], grid, order=1, mode="nearest")
            np.clip(np.rint(val * gain[ch]), 0, 255, out=val)
            frames[k, :, :, ch] = val
    return frames


# --------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Voice:
    f0: float  # mean pitch, Hz
    f0_var: float  # per-syllable pitch movement, fraction of f0
    contour: float  # pitch change from start to end of the clip, fraction of f0
    rms: float  # loudness of the voiced parts, linear full scale
    rate: float  # syllables per second
    tilt: float  # harmonic k has amplitude k ** -tilt; lower = brighter, tenser voice
    tremolo: float  # depth of a 6-9 Hz amplitude and pitch tremolo
    formant_shift: float  # formant scale (spread lips raise formants)


_VOICES = {
    "neutral": _Voice(120.0, 0.04, -0.10, 0.050, 4.0, 1.20, 0.0, 1.00),
    "angry": _Voice(170.0, 0.08, -0.05, 0.120, 4.6, 0.75, 0.0, 1.03),
    "happy": _Voice(220.0, 0.20, 0.00, 0.075, 4.6, 1.00, 0.0, 1.06),
    "sad": _Voice(100.0, 0.03, -0.12, 0.022, 3.0, 1.60, 0.0, 0.97),
    "worried": _Voice(160.0, 0.06, 0.00, 0.040, 5.0, 1.30, 0.45, 1.00),
    "surprise": _Voice(250.0, 0.08, 0.45, 0.075, 4.0, 1.00, 0.0, 1.04),
}

# First three formants (Hz) of five vowels, roughly /a e i o u/.
_VOWELS = np.array(
    [
        [730.0, 1090.0, 2440.0],
        [530.0, 1840.0, 2480.0],
        [300.0, 2200.0, 2950.0],
        [570.0, 840.0, 2410.0],
        [330.0, 870.0, 2240.0],
    ]
)
_BANDWIDTHS = (90.0, 110.0, 160.0)
_PEAK = 0.85  # well under 0.9 so AAC's overshoot cannot clip


def _lowpass_noise(rng: np.random.Generator, n: int, knots_per_second: float) -> np.ndarray:
    """Smooth random curve, shape (n,), values ~N(0, 1) at knots linearly joined and eased."""
    n_knots = max(2, int(math.ceil(n / SAMPLE_RATE * knots_per_second)) + 2)
    knots = rng.normal(0.0, 1.0, size=n_knots)
    pos = np.arange(n) * ((n_knots - 1) / max(n - 1, 1))
    i = np.minimum(pos.astype(np.int64), n_knots - 2)
    frac = pos - i
    frac = frac * frac * (3.0 - 2.0 * frac)  # smoothstep: no corners in the pitch track
    return knots[i] * (1.0 - frac) + knots[i + 1] * frac


def _resonate(x: np.ndarray, freq: float, bandwidth: float) -> np.ndarray:
    """Two-pole resonator with unit gain at ``freq``, shape preserved."""
    r = math.exp(-math.pi * bandwidth / SAMPLE_RATE)
    theta = 2.0 * math.pi * freq / SAMPLE_RATE
    gain = (1.0 - r) * math.sqrt(1.0 - 2.0 * r * math.cos(2.0 * theta) + r * r)
    from scipy import signal  # ~1.5 s to import: only when a clip's audio is made

    return signal.lfilter([gain], [1.0, -2.0 * r * math.cos(theta), r * r], x)


def _syllables(rng: np.random.Generator, duration: float, rate: float) -> list[tuple[float, float]]:
    """(start, end) times in seconds of the syllables, with pauses every 3-6 syllables."""
    out = []
    t = rng.uniform(0.08, 0.2)
    until_pause = int(rng.integers(3, 7))
    while True:
        length = rng.uniform(0.55, 0.85) / rate
        if t + length > duration - 0.08:
            break
        out.append((t, t + length))
        t += 1.0 / rate * rng.uniform(0.9, 1.1)
        until_pause -= 1
        if until_pause == 0:
            t += rng.uniform(0.15, 0.3)
            until_pause = int(rng.integers(3, 7))
    return out


def _render_audio(emotion: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """The clip's audio, float64, shape (n,), mono at SAMPLE_RATE, peak <= 0.85."""
    voice = _VOICES[emotion]
    t = np.arange(n) / SAMPLE_RATE
    duration = n / SAMPLE_RATE
    rate = voice.rate * math.exp(rng.normal(0.0, 0.07))

    # Pitch track: level x overall contour x per-syllable movement x vibrato x jitter.
    f0 = voice.f0 * math.exp(rng.normal(0.0, 0.06))
    progress = t / duration
    if voice.contour > 0:
        # Surprise: a rise that accelerates towards the end, centred on the mean pitch.
        contour = 1.0 + voice.contour * (progress**1.5 - 0.4)
    else:
        contour = 1.0 + voice.contour * (progress - 0.5)
    movement = 1.0 + voice.f0_var * np.tanh(_lowpass_noise(rng, n, rate))
    vibrato = 1.0 + 0.008 * np.sin(2.0 * math.pi * rng.uniform(4.5, 6.0) * t + rng.uniform(0, 6.3))
    jitter = 1.0 + 0.004 * _lowpass_noise(rng, n, 60.0)
    tremolo_rate = rng.uniform(6.5, 9.0)
    tremolo_phase = rng.uniform(0.0, 2.0 * math.pi)
    tremolo = np.sin(2.0 * math.pi * tremolo_rate * t + tremolo_phase)
    pitch = f0 * contour * movement * vibrato * jitter * (1.0 + 0.05 * voice.tremolo * tremolo)

    # Harmonic source: summing sines up to ~3.8 kHz never aliases, unlike a naive pulse train.
    phase = 2.0 * math.pi * np.cumsum(pitch) / SAMPLE_RATE
    n_harmonics = max(1, int(3800.0 / float(pitch.max())))
    source = np.zeros(n)
    for k in range(1, n_harmonics + 1):
        source += k ** (-voice.tilt) * np.sin(k * phase)
    source += 0.05 * rng.normal(0.0, 1.0, size=n)  # aspiration

    # Syllables: each gets an envelope and a vowel, and is filtered on its own so its formants
    # do not smear into the next one.
    out = np.zeros(n)
    pad = int(0.03 * SAMPLE_RATE)
    formant_scale = voice.formant_shift * math.exp(rng.normal(0.0, 0.03))
    for start, end in _syllables(rng, duration, rate):
        a, b = int(start * SAMPLE_RATE), int(end * SAMPLE_RATE)
        u = np.linspace(0.0, 1.0, b - a)
        attack = 0.25
        rise = np.sin(0.5 * math.pi * u / attack) ** 2
        fall = np.cos(0.5 * math.pi * (u - attack) / (1.0 - attack))
        envelope = np.where(u < attack, rise, fall)
        envelope *= rng.uniform(0.65, 1.0)
        segment = np.zeros(b - a + pad)
        segment[: b - a] = source[a:b] * envelope
        vowel = _VOWELS[int(rng.integers(len(_VOWELS)))] * formant_scale
        for freq, bandwidth in zip(vowel, _BANDWIDTHS):
            segment = _resonate(segment, freq, bandwidth)
        stop = min(n, b + pad)
        out[a:stop] += segment[: stop - a]

    if voice.tremolo > 0:
        out *= 1.0 - voice.tremolo * 0.5 * (1.0 + tremolo)

    voiced = np.abs(out) > 0.0
    level = math.sqrt(float(np.mean(out[voiced] ** 2))) if voiced.any() else 1.0
    target = voice.rms * math.exp(rng.normal(0.0, 0.12))
    out *= target / max(level, 1e-12)
    out += 0.0015 * rng.normal(0.0, 1.0, size=n)  # room noise
    peak = float(np.abs(out).max())
    if peak > _PEAK:
        out *= _PEAK / peak
    return out
