"""A small, deterministic, SYNTHETIC demo corpus: the toolkit's built-in default input.

Nothing here is real emotional data. :func:`write_demo` renders ``n_clips`` short mp4 clips plus
a manifest so that every stage of the toolkit (decoding, face detection, the audio, video and
text encoders, the store, the heads) can run end to end on a machine with no data and no
internet. The labels are *made* learnable on purpose, so a head trained on the demo features
scores well above chance; that number says the pipeline is wired correctly, nothing about
emotion recognition.

What one clip holds
-------------------
video
    H.264 (yuv420p), :data:`FRAME_SIZE` x :data:`FRAME_SIZE` pixels, :data:`FPS` fps, 2 to 4 s.
    The frames are a real face photograph (``skimage.data.astronaut()``, public domain, shipped
    with scikit-image) cropped so the face fills most of the frame (MTCNN's face box is
    about 110-160 px tall), moving a little (smooth translation, scale and rotation). The
    class sets a geometric "expression" warp of the brows, mouth corners and jaw, a head
    posture and a colour cast; their strength varies per clip.
audio
    AAC, mono, :data:`SAMPLE_RATE` Hz, the same length as the video. A voiced, speech-like
    signal: a harmonic (glottal-pulse-like) source with vibrato and jitter, shaped by three
    formant resonators per syllable, syllable envelopes at 3 to 5 syllables a second, pauses
    and a little noise. The class sets pitch level and contour, loudness, speaking rate,
    spectral tilt and (for "worried") a tremolo.
text
    A short English sentence from class-dependent word lists mixed with shared words; now
    and then a word from another class slips in, so text alone is learnable but not perfect.
valence
    A class-dependent mean plus noise, clipped to [-5, 5].

On disk::

    out_dir/
        clips/demo_0000.mp4 ...
        manifest.csv     name,video,audio,text,discrete,valence,split
        demo.json        (n_clips, seed, generator version, file sizes; written last)

``audio`` is empty in the manifest: the audio is the video's own track. ``split`` is ``train``
or ``test``, about 80/20 within each class.

Determinism
-----------
Every random draw comes from ``numpy.random.default_rng`` seeded from ``(seed, clip index,
part)``, and the clips are encoded by the ffmpeg binary shipped in ``imageio-ffmpeg`` with
one thread and its bit-exact flags, so the same arguments give byte-identical files run after
run. Identity across machines additionally needs the same ``imageio-ffmpeg`` binary (the
``IMAGEIO_FFMPEG_EXE`` environment variable would swap it) and assumes floating-point
transcendental functions agree to the last unit or so before 8/16-bit quantisation.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import os
import pathlib
import re
import subprocess
import tempfile
import wave
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal

from mer_features import EMOTIONS
from mer_features.errors import MerFeaturesError

__all__ = [
    "FPS",
    "FRAME_SIZE",
    "MANIFEST_COLUMNS",
    "MAX_SECONDS",
    "MIN_CLIPS",
    "MIN_SECONDS",
    "SAMPLE_RATE",
    "write_demo",
]

FPS = 25
"""Frame rate of the demo videos."""

FRAME_SIZE = 192
"""Width and height of the demo videos, in pixels."""

SAMPLE_RATE = 16000
"""Sample rate of the demo audio tracks, in Hz."""

MIN_SECONDS = 2.0
MAX_SECONDS = 4.0
"""Clip durations are drawn from whole frame counts in [MIN_SECONDS, MAX_SECONDS]."""

MIN_CLIPS = len(EMOTIONS)
"""The smallest corpus: one clip per class."""

MANIFEST_COLUMNS = ("name", "video", "audio", "text", "discrete", "valence", "split")

TEST_FRACTION = 0.2

# Bump whenever a change to this module changes the bytes it writes: a corpus recorded with an
# older version is then rewritten instead of being taken as complete.
_GENERATOR_VERSION = 1

_MANIFEST = "manifest.csv"
_STAMP = "demo.json"
_CLIPS = "clips"
_CLIP_RE = re.compile(r"^demo_\d{4,}\.mp4$")
_TMP_PREFIX = ".demo-tmp-"

# Independent random streams per clip, so that e.g. changing the sentence generator does not
# change the audio or video of the same clip.
_PART_PLAN, _PART_VIDEO, _PART_AUDIO, _PART_TEXT, _PART_SPLIT = range(5)

_SAMPLES_PER_FRAME = SAMPLE_RATE // FPS

# Each worker holds one clip's frames (up to ~11 MB, twice); more than this buys little.
_MAX_WORKERS = 8


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def write_demo(out_dir, n_clips: int = 60, seed: int = 0) -> pathlib.Path:
    """Write the demo corpus into ``out_dir`` and return the path of its manifest.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Folder to write into; created if missing. Only ``manifest.csv``, ``demo.json`` and
        ``clips/demo_*.mp4`` (plus this module's own temporary files) are ever written or
        removed there.
    n_clips : int
        Number of clips, at least 6; clip ``i`` has class ``EMOTIONS[i % 6]``, so the classes
        are as even as ``n_clips`` allows.
    seed : int
        Non-negative seed; the same ``(n_clips, seed)`` gives byte-identical files.

    Returns
    -------
    pathlib.Path
        ``out_dir/manifest.csv``.

    If ``out_dir`` already holds a complete corpus written with the same ``n_clips`` and
    ``seed`` (and the same generator version), nothing is rewritten and the path is returned
    at once.

    Raises
    ------
    ValueError
        ``n_clips`` < 6 or ``seed`` < 0.
    TypeError
        ``n_clips`` or ``seed`` is not an integer.
    MerFeaturesError
        ffmpeg is missing or fails on a clip (the message names the clip and ends with
        ffmpeg's own error output).
    """
    n_clips = _as_int(n_clips, "n_clips")
    seed = _as_int(seed, "seed")
    if n_clips < MIN_CLIPS:
        raise ValueError(
            f"n_clips must be at least {MIN_CLIPS} (one clip per class in {EMOTIONS}), "
            f"got {n_clips}"
        )
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")

    out_dir = pathlib.Path(out_dir)
    manifest_path = out_dir / _MANIFEST
    if _is_complete(out_dir, n_clips, seed):
        return manifest_path

    clips_dir = out_dir / _CLIPS
    clips_dir.mkdir(parents=True, exist_ok=True)
    # The stamp goes first, then the old manifest: from here until the end the folder is not a
    # corpus, and a run killed half way must not be taken for one, by us or by a reader of the
    # manifest that would get a mix of old and new clips.
    (out_dir / _STAMP).unlink(missing_ok=True)
    manifest_path.unlink(missing_ok=True)

    plan = _plan(n_clips, seed)
    ffmpeg = _ffmpeg_exe()
    _source_image()  # load once here rather than racing to in every worker
    # Each clip is independent and seeded on its own, so threads change nothing in the bytes;
    # numpy, scipy.ndimage and the ffmpeg child all run outside the GIL.
    workers = max(1, min(len(plan), _cpu_count(), _MAX_WORKERS))
    with tempfile.TemporaryDirectory(prefix="mer-demo-") as scratch:
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="mer-demo")
        try:
            futures = [
                pool.submit(_write_clip, clip, seed, ffmpeg, pathlib.Path(scratch), clips_dir)
                for clip in plan
            ]
            sizes = dict(future.result() for future in futures)
        finally:
            # On a failure, clips not yet started are dropped instead of rendered for nothing.
            pool.shutdown(wait=True, cancel_futures=True)

    _remove_leftovers(out_dir, {f"{clip.name}.mp4" for clip in plan})
    rows = [
        {
            "name": clip.name,
            "video": f"{_CLIPS}/{clip.name}.mp4",
            "audio": "",
            "text": clip.text,
            "discrete": clip.emotion,
            "valence": f"{clip.valence:.2f}",
            "split": clip.split,
        }
        for clip in plan
    ]
    _atomic_write_text(manifest_path, _csv_text(rows))
    stamp = {
        "generator": "mer_features.demo",
        "version": _GENERATOR_VERSION,
        "n_clips": n_clips,
        "seed": seed,
        "synthetic": True,
        "manifest_size": manifest_path.stat().st_size,
        "files": sizes,
    }
    _atomic_write_text(out_dir / _STAMP, json.dumps(stamp, indent=1, sort_keys=True) + "\n")
    return manifest_path


def _write_clip(
    clip: "_ClipPlan", seed: int, ffmpeg: str, scratch: pathlib.Path, clips_dir: pathlib.Path
) -> tuple[str, int]:
    """Render and encode one clip; return its manifest-relative path and its size in bytes."""
    frames = _render_frames(clip.emotion, clip.n_frames, _rng(seed, clip.index, _PART_VIDEO))
    audio = _render_audio(
        clip.emotion, clip.n_frames * _SAMPLES_PER_FRAME, _rng(seed, clip.index, _PART_AUDIO)
    )
    dest = clips_dir / f"{clip.name}.mp4"
    _encode_clip(ffmpeg, frames, audio, scratch / f"{clip.name}.wav", dest, clip.name)
    return f"{_CLIPS}/{dest.name}", dest.stat().st_size


def _remove_leftovers(out_dir: pathlib.Path, wanted: set[str]) -> None:
    """Delete clips of an earlier, larger corpus and temporary files of killed runs.

    Only names this module writes are touched, never anything else a user keeps there; a
    temporary file is left alone while the process that owns it is still running.
    """
    for folder, holds_clips in ((out_dir, False), (out_dir / _CLIPS, True)):
        for path in folder.iterdir():
            stale_clip = holds_clips and _CLIP_RE.match(path.name) and path.name not in wanted
            if stale_clip or (path.name.startswith(_TMP_PREFIX) and not _owner_alive(path.name)):
                path.unlink(missing_ok=True)


def _owner_alive(tmp_name: str) -> bool:
    """Whether the process whose pid is in a temporary file's name is still running."""
    match = re.match(re.escape(_TMP_PREFIX) + r"(\d+)-", tmp_name)
    if match is None:
        return False
    pid = int(match.group(1))
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# Corpus plan: classes, durations, texts, valence, splits
# --------------------------------------------------------------------------------------------

_VALENCE_MEAN = {
    "neutral": 0.0,
    "angry": -3.0,
    "happy": 3.0,
    "sad": -3.5,
    "worried": -2.0,
    "surprise": 1.0,
}
_VALENCE_SD = 0.8


@dataclass(frozen=True)
class _ClipPlan:
    index: int
    name: str
    emotion: str
    n_frames: int
    text: str
    valence: float
    split: str


def _plan(n_clips: int, seed: int) -> list[_ClipPlan]:
    """Everything about each clip except its pixels and samples, in clip order."""
    emotions = [EMOTIONS[i % len(EMOTIONS)] for i in range(n_clips)]
    splits = _splits(emotions, seed)
    min_frames = round(MIN_SECONDS * FPS)
    max_frames = round(MAX_SECONDS * FPS)
    plan = []
    for i, emotion in enumerate(emotions):
        rng = _rng(seed, i, _PART_PLAN)
        # Whole frame counts make the audio (640 samples a frame) and video end together.
        n_frames = int(rng.integers(min_frames, max_frames + 1))
        valence = _VALENCE_MEAN[emotion] + rng.normal(0.0, _VALENCE_SD)
        valence = round(float(np.clip(valence, -5.0, 5.0)), 2)
        text = _sentence(emotion, _rng(seed, i, _PART_TEXT))
        plan.append(_ClipPlan(i, f"demo_{i:04d}", emotion, n_frames, text, valence, splits[i]))
    return plan


def _splits(emotions: list[str], seed: int) -> list[str]:
    """``train``/``test`` per clip: about TEST_FRACTION of each class is test, at least one
    clip once a class has two."""
    rng = _rng(seed, 0, _PART_SPLIT)
    splits = ["train"] * len(emotions)
    for emotion in EMOTIONS:
        members = [i for i, e in enumerate(emotions) if e == emotion]
        n_test = 0 if len(members) < 2 else max(1, round(TEST_FRACTION * len(members)))
        for i in rng.permutation(members)[:n_test]:
            splits[int(i)] = "test"
    return splits


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


# --------------------------------------------------------------------------------------------
# Encoding and files
# --------------------------------------------------------------------------------------------


def _ffmpeg_exe() -> str:
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise MerFeaturesError(
            "writing the demo corpus needs the ffmpeg binary of the 'imageio-ffmpeg' package: "
            f"{exc}"
        ) from exc


def _encode_clip(
    ffmpeg: str,
    frames: np.ndarray,
    audio: np.ndarray,
    wav_path: pathlib.Path,
    dest: pathlib.Path,
    name: str,
) -> None:
    """Encode frames (T, H, W, 3) uint8 and audio (N,) float into ``dest`` (mp4), atomically."""
    pcm = np.clip(np.rint(audio * 32767.0), -32768, 32767).astype("<i2")
    # The wave module writes a bare, fixed 44-byte header, nothing machine dependent.
    with wave.open(str(wav_path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())

    tmp = dest.with_name(f"{_TMP_PREFIX}{os.getpid()}-{dest.name}")
    height, width = frames.shape[1:3]
    cmd = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostats", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}",
        "-framerate", str(FPS), "-i", "pipe:0",
        "-i", str(wav_path),
        "-map", "0:v:0", "-map", "1:a:0",
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-g", str(2 * FPS), "-threads", "1",
        "-c:a", "aac", "-b:a", "48k", "-ac", "1", "-ar", str(SAMPLE_RATE),
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
        "-movflags", "+faststart",
        "-f", "mp4", str(tmp),
    ]  # fmt: skip
    try:
        proc = subprocess.run(cmd, input=frames.tobytes(), capture_output=True, check=False)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise MerFeaturesError(
            f"could not run ffmpeg ({ffmpeg}) for demo clip {name}: {exc}"
        ) from exc
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        tail = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
        raise MerFeaturesError(
            f"ffmpeg failed (exit status {proc.returncode}) writing demo clip {name}: {tail}"
        )
    os.replace(tmp, dest)


def _csv_text(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _atomic_write_text(path: pathlib.Path, text: str) -> None:
    tmp = path.with_name(f"{_TMP_PREFIX}{os.getpid()}-{path.name}")
    with open(tmp, "w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _is_complete(out_dir: pathlib.Path, n_clips: int, seed: int) -> bool:
    """True when ``out_dir`` holds a finished corpus for these arguments (cheap: stats only)."""
    try:
        stamp = json.loads((out_dir / _STAMP).read_text(encoding="utf-8"))
        if (
            stamp.get("version") != _GENERATOR_VERSION
            or stamp.get("n_clips") != n_clips
            or stamp.get("seed") != seed
            or len(stamp.get("files", {})) != n_clips
            or (out_dir / _MANIFEST).stat().st_size != stamp.get("manifest_size")
        ):
            return False
        return all((out_dir / rel).stat().st_size == size for rel, size in stamp["files"].items())
    except (OSError, ValueError, TypeError, AttributeError):
        return False


def _rng(seed: int, index: int, part: int) -> np.random.Generator:
    return np.random.default_rng([seed, index, part])


def _as_int(value, what: str) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None
