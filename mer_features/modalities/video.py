"""The video modality: frames sampled from the ``video`` file in worker processes, faces
tracked with MTCNN and cropped; the ``blur``, ``scale`` and ``jpeg`` noise keys act on it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.corpora.manifest import Clip
from mer_features.errors import ClipError, ParameterError
from mer_features.modalities.base import Stage, register_stage
from mer_features.options import option

PROBE_FRAMES = 8


@dataclass(frozen=True)
class VideoOptions:
    """Frame sampling and face cropping; all of it changes the features, so all is fingerprinted."""

    fps: float = option(4.0, "--fps", "video: frames sampled per second, in (0, 60]")
    max_frames: int = option(64, "--max-frames", "video: at most this many frames per clip, "
                             "spread uniformly, >= 1")
    face_size: int = option(160, "--face-size", "video: side of the aligned face crops in "
                            "pixels, 16-1024")
    margin: float = option(0.0, "--face-margin", "video: crop side = (1 + margin) x the face "
                           "box, margin in [0, 10]",
                           default_text="0: tight, as FER2013's faces")
    """Crop side = (1 + margin) x the detection box's longer side. 0 by default: FER2013-style
    tight crops; on MEAD, the fer encoder recognised 4/4 surprised clips at 0.0 against 3/4 at
    0.2 (helper measurement, tests/test_fer.py)."""
    min_face_size: int = option(20, None)

    def __post_init__(self) -> None:
        for name, rule, ok in (
                ("fps", "a number in (0, 60]", lambda v: 0 < v <= 60),
                ("max_frames", "an integer >= 1", lambda v: v >= 1 and v == int(v)),
                ("face_size", "an integer from 16 to 1024", lambda v: 16 <= v <= 1024
                 and v == int(v)),
                ("margin", "a number in [0, 10]", lambda v: 0 <= v <= 10),
                ("min_face_size", "an integer >= 12", lambda v: v >= 12 and v == int(v))):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                    or not ok(value):  # NaN fails every comparison
                raise ParameterError(f"`{name}` must be {rule}; got {value!r}.", name)


@register_stage
class VideoStage(Stage):
    """Frames sampled with decord in workers; faces tracked with MTCNN.

    On a GPU, MTCNN runs in the main process on the frames of several clips at once. On a CPU
    with workers, each worker process tracks the faces of the clip it decoded: MTCNN runs on
    one thread there (its many tiny operations lose more to thread hand-offs than they gain),
    cross-clip batches barely help it, and separate processes put every core to work
    (measured in benchmarks/bench_video.py). Either way the crops are the same.
    """

    name = "video"
    Options = VideoOptions
    default_encoder = "fer"
    noise_side = "video"
    batch_sizes = {"cpu": 4, "gpu": 16}
    """Video batches feed the face detector frames from several clips at once."""

    def __init__(self, options: Any = None, **kwargs: Any):
        super().__init__(options, **kwargs)
        self._tracker = None

    @property
    def track_in_workers(self) -> bool:
        return self.device == "cpu" and self.workers > 0

    def columns(self) -> tuple[str, ...]:
        return ("video",)

    def media(self, clip: Clip) -> Path | None:
        return clip.video

    def face_tracker(self) -> Any:
        """The :class:`~mer_features.decode.faces.FaceTracker` of this stage (made once)."""
        if self._tracker is None:
            from mer_features.decode.faces import FaceTracker

            self._tracker = FaceTracker(device=self.device, face_size=self.options.face_size,
                                        margin=self.options.margin,
                                        min_face_size=self.options.min_face_size)
        return self._tracker

    def fingerprint_fields(self) -> dict[str, Any]:
        from importlib.metadata import version

        from mer_features.decode.faces import ALIGNMENT, FACE_DETECTOR
        from mer_features.decode.video import VIDEO_DECODER

        tracker = self.face_tracker()
        return {"fps": self.options.fps, "max_frames": self.options.max_frames,
                "decoder": VIDEO_DECODER, "face_detector": FACE_DETECTOR,
                "face_detector_version": version("facenet-pytorch"),
                "face_size": tracker.face_size, "margin": tracker.margin,
                "min_face_size": tracker.min_face_size, "thresholds": list(tracker.thresholds),
                "alignment": ALIGNMENT}

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

    @classmethod
    def probe_size(cls) -> dict[str, Any]:
        return {"frames": PROBE_FRAMES}

    @classmethod
    def probe_inputs(cls, encoder: Any) -> list[Any]:
        """A short face track of random pixels."""
        from mer_features.decode.inputs import FaceInput

        rng = np.random.default_rng(0)
        size = 160
        faces = rng.integers(0, 256, (PROBE_FRAMES, size, size, 3), dtype=np.uint8)
        return [FaceInput("probe", faces, np.ones(PROBE_FRAMES, bool),
                          np.arange(PROBE_FRAMES, dtype=np.float32) / 4,
                          np.tile(np.array([0, 0, size, size], np.float32), (PROBE_FRAMES, 1)),
                          np.ones(PROBE_FRAMES, np.float32), fps=4.0)]
