"""The per-modality stage: what differs between audio, text and video on the way from a
manifest row to an encoder input.

Each stage says how to hash a clip's input, which clips need no encoder at all (an empty
transcript), how to decode a clip (in a worker process), what stage runs in the main process
between decoding and encoding (face tracking for video, batched across clips), how long an
input is for batching, and what extra per-frame arrays go to the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from mer_features.corpora.manifest import Clip
from mer_features.errors import ClipError, ManifestError


@dataclass(frozen=True)
class VideoOptions:
    """Frame sampling and face cropping; all of it changes the features, so all is fingerprinted."""

    fps: float = 4.0
    max_frames: int = 64
    face_size: int = 160
    margin: float = 0.0
    """Crop side = (1 + margin) x the detection box's longer side. 0 by default: FER2013-style
    tight crops; on MEAD, the fer encoder recognised 4/4 surprised clips at 0.0 against 3/4 at
    0.2 (helper measurement, tests/test_fer.py)."""
    min_face_size: int = 20

    def __post_init__(self) -> None:
        for what, value, ok, rule in (
                ("--fps", self.fps, 0 < self.fps <= 60, "in (0, 60]"),
                ("--max-frames", self.max_frames, self.max_frames >= 1, ">= 1"),
                ("--face-size", self.face_size, self.face_size >= 16, ">= 16"),
                ("--face-margin", self.margin, 0 <= self.margin <= 10, "in [0, 10]"),
                ("min_face_size", self.min_face_size, self.min_face_size >= 12, ">= 12")):
            if not ok:  # also for NaN, which fails every comparison
                raise ManifestError(f"{what} must be {rule}; got {value}.")


@dataclass
class Precheck:
    """A clip settled without decoding: status ``empty`` or ``failed`` at ``stage``."""

    status: str
    stage: str = ""
    reason: str = ""


class Stage:
    """One modality's stage; what of it enters the fingerprint is read by
    :func:`mer_features.fingerprint.fingerprint_fields`."""

    name: ClassVar[str]
    uses_workers: ClassVar[bool] = True
    noise: Any = None  # NoiseSpec acting on this modality, or None
    seed: int = 0

    def frame_extras(self) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        return ()

    def input_hashes(self, clips: Sequence[Clip]) -> list[str]:
        from mer_features.fingerprint import file_hashes

        return file_hashes([clip.media_for(self.name) for clip in clips])

    def precheck(self, clip: Clip) -> Precheck | None:
        return None

    def decode(self, clip: Clip, encoder: Any) -> Any:
        raise NotImplementedError

    def length(self, item: Any) -> float:
        """Size of a decoded input in the unit of --batch-seconds (0 when unknown)."""
        return 0.0

    overlap_prepare = False
    """Whether :meth:`prepare` is heavy enough to run one batch ahead, in a thread beside the
    encoder (face tracking: MTCNN on one CPU thread while the encoder uses the other cores)."""

    def prepare(self, names: list[str], items: list[Any]) -> list[Any]:
        """Main-process stage between decoding and encoding; ClipError entries fail a clip."""
        return items

    def extras(self, item: Any, encoded: Any) -> dict[str, np.ndarray]:
        return {}


class AudioStage(Stage):
    name = "audio"

    def __init__(self, noise: Any = None, seed: int = 0, babble: Sequence[Any] = ()):
        self.noise = noise if noise is not None and noise.has_audio else None
        self.seed = seed
        self.babble = list(babble)
        self._folder = None

    def decode(self, clip: Clip, encoder: Any) -> Any:
        from mer_features.decode.audio import decode_audio
        from mer_features.decode.inputs import AudioInput

        rate = encoder.config.sample_rate
        decoded = decode_audio(clip.audio_source, rate)  # within +-1; info["level"] if changed
        waveform = decoded.waveform
        info: dict[str, Any] = dict(decoded.info)
        if self.noise is not None:
            from mer_features.noise.audio import corrupt_audio, open_folder

            if self._folder is None:
                self._folder = open_folder(self.noise)
            others = [p for p in self.babble if p != clip.audio_source]
            waveform, drawn = corrupt_audio(clip.name, waveform, rate, self.noise, self.seed,
                                            babble_sources=others, folder=self._folder)
            info["noise"] = drawn
        return AudioInput(clip.name, waveform, rate, info)

    def length(self, item: Any) -> float:
        return item.duration


class TextStage(Stage):
    """Transcripts from the manifest's ``text`` column (or ``text_column``)."""

    name = "text"
    uses_workers = False  # nothing to decode; tokenising happens in the encoder

    def __init__(self, text_column: str = "text"):
        self.text_column = text_column

    def input_hashes(self, clips: Sequence[Clip]) -> list[str]:
        from mer_features.fingerprint import text_hash

        return [text_hash(clip.text_for(self.text_column) or "") for clip in clips]

    def precheck(self, clip: Clip) -> Precheck | None:
        if self.text_column in clip.invalid_utf8:
            return Precheck("failed", "decode", f"the transcript in column '{self.text_column}' is "
                            "not valid UTF-8; re-save the manifest as UTF-8")
        text = clip.text_for(self.text_column)
        if text is None or not text.strip():
            return Precheck("empty", "input", "empty transcript")
        return None

    def decode(self, clip: Clip, encoder: Any) -> Any:
        from mer_features.decode.inputs import TextInput

        return TextInput(clip.name, clip.text_for(self.text_column).strip())

    def length(self, item: Any) -> float:
        return 0.0


class VideoStage(Stage):
    """Frames sampled with decord in workers; faces tracked with MTCNN.

    On a GPU, MTCNN runs in the main process on the frames of several clips at once. On a CPU
    (``track_in_workers``) each worker process tracks the faces of the clip it decoded: MTCNN
    runs on one thread there (its many tiny operations lose more to thread hand-offs than they
    gain), cross-clip batches barely help it, and separate processes put every core to work
    (measured in benchmarks/bench_video.py). Either way the crops are the same.
    """

    name = "video"

    def __init__(self, options: VideoOptions, device: str = "cpu", noise: Any = None, seed: int = 0,
                 track_in_workers: bool = False):
        self.options = options
        self.device = device
        self.noise = noise if noise is not None and noise.has_video else None
        self.seed = seed
        self.track_in_workers = track_in_workers
        self._tracker = None

    def face_tracker(self) -> Any:
        """The :class:`~mer_features.decode.faces.FaceTracker` of this stage (made once)."""
        if self._tracker is None:
            from mer_features.decode.faces import FaceTracker

            self._tracker = FaceTracker(device=self.device, face_size=self.options.face_size,
                                        margin=self.options.margin,
                                        min_face_size=self.options.min_face_size)
        return self._tracker

    def frame_extras(self) -> tuple[tuple[str, tuple[int, ...], str], ...]:
        return (("face_box", (4,), "f4"), ("face_prob", (), "f4"), ("has_face", (), "bool"))

    def decode(self, clip: Clip, encoder: Any) -> Any:
        from mer_features.decode.video import load_frames

        decoded = load_frames(clip.video, fps=self.options.fps, max_frames=self.options.max_frames)
        if self.noise is not None:
            from mer_features.noise.video import corrupt_frames

            decoded.frames, drawn = corrupt_frames(clip.name, decoded.frames, self.noise, self.seed)
            decoded.info = {**(decoded.info or {}), "noise": drawn}
        if not self.track_in_workers:
            return decoded
        (face,) = self.face_tracker().track([(clip.name, decoded)])
        if isinstance(face, ClipError):
            raise face
        face.info = dict(decoded.info or {})
        return face

    def length(self, item: Any) -> float:
        return float(len(item.times)) / max(self.options.fps, 1e-9)

    @property
    def overlap_prepare(self) -> bool:  # type: ignore[override]
        return not self.track_in_workers  # tracking in the main process: run it a batch ahead

    def prepare(self, names: list[str], items: list[Any]) -> list[Any]:
        if self.track_in_workers:
            return items  # tracked already, in the worker that decoded the clip
        return self.face_tracker().track(list(zip(names, items)))

    def extras(self, item: Any, encoded: Any) -> dict[str, np.ndarray]:
        """Face box, confidence and presence per stored frame (per window for clip models,
        which name each window's centre frame in ``info['source_frames']``)."""
        index = encoded.info.pop("source_frames", None)
        if index is None:
            if len(encoded.frames) != len(item.mask):
                raise ClipError("encode", f"the encoder gave {len(encoded.frames)} frames for "
                                          f"{len(item.mask)} video frames")
            index = np.arange(len(item.mask))
        index = np.asarray(index, dtype=np.int64)
        return {"face_box": np.asarray(item.boxes, np.float32)[index],
                "face_prob": np.asarray(item.probs, np.float32)[index],
                "has_face": np.asarray(item.mask, bool)[index]}


def make_stage(name: str, *, text_column: str = "text", video: VideoOptions | None = None,
               device: str = "cpu", noise: Any = None, seed: int = 0,
               babble: Sequence[Any] = (), workers: int = 0) -> Stage:
    """The stage of modality ``name``; ``noise`` (a NoiseSpec) applies where it has keys for it.
    ``workers``: decoding processes; on a CPU with workers, video faces are tracked there."""
    if name == "audio":
        return AudioStage(noise, seed, babble)
    if name == "text":
        return TextStage(text_column)
    if name == "video":
        return VideoStage(video or VideoOptions(), device, noise, seed,
                             track_in_workers=device == "cpu" and workers > 0)
    raise ManifestError(f"Unknown modality '{name}'; expected audio, text or video.")

