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

Every file is written atomically (:mod:`mer_features.files`).

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

from mer_features import EMOTIONS
from mer_features.demo.signals import (FPS, FRAME_SIZE, SAMPLE_RATE, _render_audio, _render_frames,
                                       _sentence, _source_image)
from mer_features.errors import MerFeaturesError
from mer_features.files import atomic_path, parse_temporary, write_text

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

# Independent random streams per clip, so that e.g. changing the sentence generator does not
# change the audio or video of the same clip.
_PART_PLAN, _PART_VIDEO, _PART_AUDIO, _PART_TEXT, _PART_SPLIT = range(5)

_SAMPLES_PER_FRAME = SAMPLE_RATE // FPS

# Each worker holds one clip's frames (up to ~11 MB, twice); more than this buys little.
_MAX_WORKERS = 8


# --------------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------------


def write_demo(out_dir, n_clips: int = 60, seed: int = 0, *,
               overwrite: bool = False) -> pathlib.Path:
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
    overwrite : bool
        Replace a demo corpus written there with another seed or more clips; without it such a
        corpus is refused (its clips would be deleted or changed, and stores extracted from it
        would no longer match it). A corpus grown with the same seed keeps its clips.

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
        ``out_dir`` (or its ``clips``) exists and is not a folder; it holds another demo corpus
        and ``overwrite`` is false; ffmpeg is missing or fails on a clip (the message names
        the clip and ends with ffmpeg's own error output).
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
    for folder in (out_dir, out_dir / _CLIPS):
        if folder.exists() and not folder.is_dir():
            raise MerFeaturesError(f"'{folder}' exists and is not a folder; give --out a folder "
                                   "(new, or one that holds a demo corpus).")
    manifest_path = out_dir / _MANIFEST
    if _is_complete(out_dir, n_clips, seed):
        return manifest_path
    if not overwrite:
        _refuse_other_corpus(out_dir, n_clips, seed)

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
    write_text(manifest_path, _csv_text(rows))
    stamp = {
        "generator": "mer_features.demo",
        "version": _GENERATOR_VERSION,
        "n_clips": n_clips,
        "seed": seed,
        "synthetic": True,
        "manifest_size": manifest_path.stat().st_size,
        "files": sizes,
    }
    write_text(out_dir / _STAMP, json.dumps(stamp, indent=1, sort_keys=True) + "\n")
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
            if stale_clip or _stale_temporary(path.name, holds_clips):
                path.unlink(missing_ok=True)


def _stale_temporary(name: str, in_clips: bool) -> bool:
    """Whether ``name`` is a temporary file of one of this module's files whose writer is
    gone (:func:`mer_features.files.parse_temporary`)."""
    parsed = parse_temporary(name)
    if parsed is None:
        return False
    final, pid = parsed
    ours = _CLIP_RE.match(final) if in_clips else final in (_MANIFEST, _STAMP)
    return bool(ours) and not _owner_alive(pid)


def _owner_alive(pid: int) -> bool:
    """Whether the process ``pid`` (a temporary file's writer) is still running."""
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
        plan.append(_ClipPlan(i, _clip_name(i), emotion, n_frames, text, valence, splits[i]))
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

    height, width = frames.shape[1:3]
    with atomic_path(dest) as tmp:
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
            raise MerFeaturesError(
                f"could not run ffmpeg ({ffmpeg}) for demo clip {name}: {exc}"
            ) from exc
        if proc.returncode != 0:
            tail = proc.stderr.decode("utf-8", "replace").strip()[-2000:]
            raise MerFeaturesError(
                f"ffmpeg failed (exit status {proc.returncode}) writing demo clip {name}: {tail}"
            )


def _csv_text(rows: list[dict[str, str]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def _refuse_other_corpus(out_dir: pathlib.Path, n_clips: int, seed: int) -> None:
    """Raise when writing (n_clips, seed) would delete or change clips of the demo corpus in
    ``out_dir``: one stamped with another seed, or clips beyond the first ``n_clips``.
    Growing a corpus (same seed, more clips) keeps every clip it has."""
    try:
        stamp = json.loads((out_dir / _STAMP).read_text(encoding="utf-8"))
        old_n, old_seed = int(stamp["n_clips"]), int(stamp["seed"])
    except (OSError, ValueError, TypeError, KeyError):
        old_n = old_seed = None
    wanted = {f"{clip}.mp4" for clip in _names(n_clips)}
    clips = out_dir / _CLIPS
    doomed = sorted(p.name for p in clips.iterdir() if _CLIP_RE.match(p.name)
                    and p.name not in wanted) if clips.is_dir() else []
    if old_n is not None and (old_seed != seed or doomed):
        what = f"a demo corpus of {old_n} clips (seed {old_seed})"
    elif doomed:
        what = f"{len(doomed)} demo clip(s) beyond the first {n_clips} ({doomed[0]}, ...)"
    else:
        return  # the same corpus, grown or finished: its clips stay as they are
    change = (f"writing {n_clips} clips would delete {len(doomed)} of its clips" if doomed
              else f"writing seed {seed} would change its clips")
    raise MerFeaturesError(f"'{out_dir}' holds {what}; {change}. Pass --overwrite to replace "
                           "it, or give another --out.")


def _names(n_clips: int) -> list[str]:
    return [_clip_name(i) for i in range(n_clips)]


def _clip_name(index: int) -> str:
    return f"demo_{index:04d}"


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
