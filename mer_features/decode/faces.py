"""Face tracks: batched MTCNN detection across frames and clips, one face a frame, aligned crops.

:class:`FaceTracker` turns decoded videos (:class:`~mer_features.decode.video.DecodedVideo`)
into :class:`~mer_features.decode.inputs.FaceInput` face tracks:

detection
    facenet-pytorch's MTCNN (weights shipped in the package; made faster, with bit-identical
    results, in :mod:`.mtcnn`) runs on batches of equal-size frames gathered from all the
    clips given at once, on the tracker's device. The result does not depend on how frames
    are batched (to floating-point rounding; the tests check boxes agree within a pixel).
one face per frame
    Detections are linked into tracks across frames: a face continues a track when its centre
    lies within 0.75 face widths of the track's last box, its size is within 1.5x, and the
    track was seen in the last second; the closest pairs link first. Each track's salience is
    the sum, over its frames, of detection confidence x face width (so a person on screen
    longer, more surely and larger ranks higher). Every frame then takes the face of the
    highest-ranked track present in it. With one face per frame this is that face; with
    several people it keeps following the same person rather than jumping to whichever face
    is slightly more confident in a frame, and after a cut it takes whoever is on screen.
    Frames without a face are kept, masked: ``mask`` False, zero crop, NaN box, prob 0.
alignment
    The crop is a square of side (1 + ``margin``) x the box's longer side, centred on the box
    and rotated so that the eyes (MTCNN landmarks 0 and 1) are level (rolls beyond 45 degrees
    are not trusted and left as they are), resampled to ``face_size`` x ``face_size`` with a
    Gaussian prefilter (sigma = (scale - 1) / 2, scikit-image's antialiasing rule) and bilinear
    interpolation; parts outside the frame are black. Deterministic.

Boxes in the output are in source-video pixels (frames downscaled by the decoder are mapped
back). A clip with no face in any frame fails with ``ClipError("faces", ...)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mer_features.decode.inputs import FaceInput
from mer_features.decode.mtcnn import cpu_threads, detect_faces, load_mtcnn
from mer_features.decode.video import DecodedVideo
from mer_features.errors import ClipError

ALIGNMENT = "mtcnn-eyes-level|square-box*(1+margin)|gauss-prefilter+bilinear|salience-track|v1"
"""Names the selection and cropping rules; part of a fingerprint, bump when they change."""

FACE_DETECTOR = "facenet-pytorch MTCNN"
"""The detector, named in the fingerprint with its package's version."""

MAX_BATCH_PIXELS = 8 * 2**20
"""A detection batch holds at most this many pixels, so large frames go in smaller batches
than ``batch_frames``: MTCNN's pyramid needs about 40 MiB per 720p frame in a batch (a batch
at this cap peaks near 0.5 GiB), and on a CPU larger batches of such frames are no faster."""

MAX_ROLL = math.radians(45)
_LINK_DISTANCE = 0.75  # centre distance, in face widths, for a face to continue a track
_LINK_SIZE_RATIO = 1.5
_LINK_GAP_S = 1.0      # a track missing for longer is not continued


@dataclass
class Detections:
    """Faces MTCNN found in one frame, most confident first.

    ``boxes`` (k, 4) float32 x1, y1, x2, y2 in frame pixels; ``probs`` (k,) float32;
    ``landmarks`` (k, 5, 2) float32 x, y of the eyes, nose and mouth corners (image left first).
    """

    boxes: np.ndarray
    probs: np.ndarray
    landmarks: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                   np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.probs)


class FaceTracker:
    """Batched MTCNN face tracks; see the module docstring for the rules.

    Parameters
    ----------
    device : str
        Torch device for MTCNN ("cpu", "cuda", "cuda:1").
    face_size : int
        Side of the aligned crops, in pixels.
    margin : float
        The crop's side is (1 + margin) x the detection box's longer side.
    min_face_size : int
        Smallest face MTCNN looks for, in pixels of the decoded frames.
    thresholds : tuple of 3 floats
        MTCNN's P-, R- and O-net thresholds.
    batch_frames : int
        Frames per detection call (fewer for large frames, see :data:`MAX_BATCH_PIXELS`);
        changes speed and memory, not the result.
    """

    def __init__(self, device: str = "cpu", face_size: int = 112, margin: float = 0.2,
                 min_face_size: int = 20, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 batch_frames: int = 64):
        if int(face_size) < 8:
            raise ValueError(f"face_size must be at least 8 pixels; got {face_size!r}.")
        if not margin >= 0:
            raise ValueError(f"margin must be >= 0; got {margin!r}.")
        if int(min_face_size) < 12:
            raise ValueError(f"min_face_size must be at least 12 (MTCNN's smallest window); "
                             f"got {min_face_size!r}.")
        if len(thresholds) != 3 or not all(0 <= t <= 1 for t in thresholds):
            raise ValueError(f"thresholds must be 3 numbers in [0, 1]; got {thresholds!r}.")
        if int(batch_frames) < 1:
            raise ValueError(f"batch_frames must be at least 1; got {batch_frames!r}.")
        self.device = str(device)
        self.face_size = int(face_size)
        self.margin = float(margin)
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.batch_frames = int(batch_frames)
        self._mtcnn: Any = None

    def _detector(self) -> Any:
        if self._mtcnn is None:
            self._mtcnn = load_mtcnn(self.device, self.min_face_size, self.thresholds)
        return self._mtcnn

    # detection --------------------------------------------------------------------------
    def detect(self, frames: Sequence[np.ndarray]) -> list[Detections]:
        """Faces in each frame (uint8 (H, W, 3) RGB; sizes may differ), batched by size."""
        results = self._detect_isolated(frames)
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results  # type: ignore[return-value]

    def _detect_isolated(self, frames: Sequence[np.ndarray]) -> list[Detections | Exception]:
        """Like :meth:`detect`, but a frame on which MTCNN fails gets the exception instead."""
        results: list[Detections | Exception | None] = [None] * len(frames)
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, frame in enumerate(frames):
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"frames must be uint8 arrays of shape (H, W, 3); frame {i} is "
                                 f"{frame.dtype} {frame.shape}.")
            by_shape.setdefault(frame.shape, []).append(i)
        for shape, members in by_shape.items():
            per_batch = max(1, min(self.batch_frames, MAX_BATCH_PIXELS // (shape[0] * shape[1])))
            for start in range(0, len(members), per_batch):
                chunk = members[start:start + per_batch]
                try:
                    found = self._detect_batch(np.stack([frames[i] for i in chunk]))
                except (RuntimeError, ValueError, IndexError) as e:
                    if len(chunk) == 1:
                        found = [e]
                    else:  # find the frame at fault; the others still count
                        found = [self._detect_one(frames[i]) for i in chunk]
                for i, r in zip(chunk, found):
                    results[i] = r
        return results  # type: ignore[return-value]

    def _detect_one(self, frame: np.ndarray) -> Detections | Exception:
        try:
            return self._detect_batch(frame[None])[0]
        except (RuntimeError, ValueError, IndexError) as e:
            return e

    def _detect_batch(self, batch: np.ndarray) -> list[Detections]:
        with cpu_threads(1 if self.device == "cpu" else None):
            boxes, probs, points = detect_faces(self._detector(), batch)
        out = []
        for b, p, lm in zip(boxes, probs, points):
            if b is None or len(b) == 0:
                out.append(Detections.empty())
                continue
            p = np.asarray(p, np.float32)
            order = np.argsort(-p, kind="stable")
            out.append(Detections(np.asarray(b, np.float32)[order], p[order],
                                  np.asarray(lm, np.float32)[order]))
        return out

    # tracks -----------------------------------------------------------------------------
    def track(self, videos: Sequence[tuple[str, DecodedVideo]]) -> list[FaceInput | ClipError]:
        """One :class:`FaceInput` per (name, video), or a ClipError at stage ``faces``.

        All clips' frames are detected together (batched by frame size); a ClipError given in
        place of a video is passed through.
        """
        results: list[FaceInput | ClipError | None] = [None] * len(videos)
        frames: list[np.ndarray] = []
        spans: dict[int, tuple[int, int]] = {}
        for i, (name, video) in enumerate(videos):
            if isinstance(video, ClipError):
                results[i] = video
            elif not isinstance(video, DecodedVideo):
                raise TypeError(f"track() takes (name, DecodedVideo) pairs; got "
                                f"{type(video).__name__} for clip '{name}'.")
            elif len(video.frames) == 0:
                results[i] = ClipError("faces", "the video gave no frames to search for faces")
            elif min(video.frames.shape[1:3]) < self.min_face_size:
                results[i] = ClipError("faces", self._too_small(video))
            else:
                spans[i] = (len(frames), len(frames) + len(video.frames))
                frames.extend(video.frames)
        found = self._detect_isolated(frames)
        for i, (start, stop) in spans.items():
            name, video = videos[i]
            detections = found[start:stop]
            error = next((d for d in detections if isinstance(d, Exception)), None)
            if error is not None:
                at = detections.index(error)
                results[i] = ClipError("faces", f"face detection failed on the frame at "
                                                f"{video.times[at]:.2f} s: {error}")
            else:
                results[i] = self._face_input(name, video, detections)  # type: ignore[arg-type]
        return results  # type: ignore[return-value]

    def _too_small(self, video: DecodedVideo) -> str:
        height, width = video.frames.shape[1:3]
        source = tuple(video.info.get("source_size") or (width, height))
        size = f"{source[0]}x{source[1]} pixels"
        if source != (width, height):
            size += f" (decoded at {width}x{height})"
        return (f"frames are {size}, too small to hold a face: the detector finds faces of at "
                f"least {self.min_face_size} pixels, so both sides must be at least that; give "
                "the full-size video")

    def _face_input(self, name: str, video: DecodedVideo,
                    detections: list[Detections]) -> FaceInput | ClipError:
        choice = select_faces(detections, video.times)
        if (choice < 0).all():
            return ClipError("faces", "no face detected in any frame")
        n, size = len(detections), self.face_size
        faces = np.zeros((n, size, size, 3), np.uint8)
        boxes = np.full((n, 4), np.nan, np.float32)
        probs = np.zeros(n, np.float32)
        for f, j in enumerate(choice):
            if j < 0:
                continue
            d = detections[f]
            faces[f] = align_face(video.frames[f], d.boxes[j], d.landmarks[j], size, self.margin)
            boxes[f] = d.boxes[j]
            probs[f] = d.probs[j]
        mask = choice >= 0
        boxes[mask] = video.to_source(boxes[mask])
        return FaceInput(name=name, faces=faces, mask=mask, times=video.times.astype(np.float32),
                         boxes=boxes, probs=probs,
                         fps=float(video.info.get("sample_fps", video.fps)))


def face_fraction(face: FaceInput) -> float:
    """Share of a track's frames that hold a face (0.0 for an empty track)."""
    return float(np.mean(face.mask)) if len(face.mask) else 0.0


def select_faces(detections: Sequence[Detections], times: np.ndarray) -> np.ndarray:
    """Index of the face to keep in each frame, int64 (n,), -1 where none (see module doc)."""
    track_of: list[np.ndarray] = []     # per frame: track id of each detection
    last_box: list[np.ndarray] = []     # per track
    last_time: list[float] = []
    salience: list[float] = []
    for f, d in enumerate(detections):
        ids = np.full(len(d), -1, np.int64)
        live = [t for t in range(len(last_box)) if times[f] - last_time[t] <= _LINK_GAP_S + 1e-6]
        pairs = sorted((dist, t, j) for t in live for j in range(len(d))
                       if (dist := _link_distance(last_box[t], d.boxes[j])) is not None)
        taken: set[int] = set()
        for _, t, j in pairs:
            if t not in taken and ids[j] < 0:
                ids[j] = t
                taken.add(t)
        for j in range(len(d)):
            if ids[j] < 0:
                ids[j] = len(last_box)
                last_box.append(d.boxes[j])
                last_time.append(float(times[f]))
                salience.append(0.0)
            t = ids[j]
            last_box[t], last_time[t] = d.boxes[j], float(times[f])
            salience[t] += float(d.probs[j]) * _width(d.boxes[j])
        track_of.append(ids)
    # rank 0 = most salient; ties go to the track seen first
    rank = np.empty(len(salience), np.int64)
    rank[sorted(range(len(salience)), key=lambda t: (-salience[t], t))] = np.arange(len(salience))
    return np.array([int(np.argmin(rank[ids])) if len(ids) else -1 for ids in track_of], np.int64)


def _width(box: np.ndarray) -> float:
    return math.sqrt(max(0.0, float(box[2] - box[0])) * max(0.0, float(box[3] - box[1])))


def _link_distance(a: np.ndarray, b: np.ndarray) -> float | None:
    """Centre distance in face widths, or None when b cannot continue a's track."""
    wa, wb = _width(a), _width(b)
    if wa <= 0 or wb <= 0 or max(wa, wb) > _LINK_SIZE_RATIO * min(wa, wb):
        return None
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    distance = math.hypot(dx, dy) / math.sqrt(wa * wb)
    return distance if distance <= _LINK_DISTANCE else None


def align_face(frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray | None, face_size: int,
               margin: float = 0.2) -> np.ndarray:
    """An aligned square face crop, uint8 (face_size, face_size, 3), from a uint8 (H, W, 3) frame.

    ``box`` is x1, y1, x2, y2 and ``landmarks`` (5, 2) MTCNN's points, in frame pixels; the crop
    is centred on the box, (1 + margin) x its longer side, rotated so that the eyes are level.
    """
    from scipy import ndimage
    from skimage.transform import warp

    x1, y1, x2, y2 = (float(v) for v in box)
    side = (1.0 + margin) * max(x2 - x1, y2 - y1, 1.0)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    angle = 0.0
    if landmarks is not None and np.isfinite(landmarks[:2]).all():
        (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
        roll = math.atan2(float(ry - ly), float(rx - lx))
        if abs(roll) <= MAX_ROLL:
            angle = roll
    scale = side / face_size  # source pixels per crop pixel
    sigma = max(0.0, (scale - 1.0) / 2.0)
    # The part of the frame the rotated square (plus the filter's support) covers.
    half = 0.5 * side * (abs(math.cos(angle)) + abs(math.sin(angle))) + 2 + math.ceil(4 * sigma)
    height, width = frame.shape[:2]
    left, top = max(0, math.floor(cx - half)), max(0, math.floor(cy - half))
    right, bottom = min(width, math.ceil(cx + half)), min(height, math.ceil(cy + half))
    if right <= left or bottom <= top:
        return np.zeros((face_size, face_size, 3), np.uint8)
    window = frame[top:bottom, left:right].astype(np.float32)
    if sigma > 0:
        window = ndimage.gaussian_filter(window, sigma=(sigma, sigma, 0), mode="nearest")
    # Output pixel (u, v) samples the frame at centre + R(angle) * scale * (u + 0.5 - S/2, ...),
    # in continuous coordinates; scikit-image puts pixel centres at integers, hence the -0.5.
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    o = 0.5 - face_size / 2
    matrix = np.array([[cos, -sin, cx - 0.5 - left + (cos - sin) * o],
                       [sin, cos, cy - 0.5 - top + (sin + cos) * o],
                       [0.0, 0.0, 1.0]])
    crop = warp(window, matrix, output_shape=(face_size, face_size), order=1, mode="constant",
                cval=0.0, preserve_range=True)
    return np.clip(np.rint(crop), 0, 255).astype(np.uint8)
