"""Decoding video frames: RGB uint8 frames sampled uniformly in time, for face detection.

Frames are read with decord at their native size (decord's own resize crashes on some files)
and frames whose long side exceeds ``max_side`` are then downscaled with Pillow's antialiased
bilinear filter, to bound memory and detector time; :class:`DecodedVideo` records the source
size so that boxes can be mapped back to source pixels. A strip (a frame more than 8 times as
wide as high, or the reverse, such as 4000x60) is downscaled less, so that its short side keeps
at least ``max_side / 8`` pixels and a face in it stays findable, within a budget of
``max_side**2`` pixels (:func:`target_size`). decord cannot copy out frames smaller than its
row alignment (1x1, 2x2): when no frame comes out of decord, ffmpeg decodes the file instead.
Frames come out display-oriented: decord 0.6 applies the container's rotation (the MP4 display
matrix, e.g. phone videos tagged ``rotate=90``) exactly as ffmpeg's autorotation does, which
the tests check for 90, -90 and 180 degrees.

Every failure becomes a :class:`~mer_features.errors.ClipError` at stage ``decode`` whose reason
a user can act on. A damaged file gives the frames that decode:

* decord may refuse to open a file whose last packet is cut (``av_read_frame failed``); such
  files are decoded sequentially with the ffmpeg binary of ``imageio-ffmpeg`` instead, which
  turns the cut packet into a smeared frame, so the last 3 frames (the cut one and B-frames
  that reference it) are dropped;
* decord may also report every frame and then fail on the later ones: a batch read that fails
  part-way is bisected, so every frame that decodes is kept;
* decord counts only the packets present, so a cut file otherwise looks complete: for MP4/MOV
  files the frame count that the container's index declares (``stsz``) is read directly and
  compared.

In each case ``truncated`` is True and ``info`` says how many frames were declared and decoded.

Time: at a constant frame rate, sampled frame k is source frame round(k * source_fps / fps),
at i / source_fps seconds. A variable-frame-rate stream (a phone recording, a screen capture:
more than 5% of its timestamps over half a frame away from i / average fps) is sampled by
its frames' timestamps instead: at each time k / fps, the frame on screen then, timed by its own
timestamp. The ffmpeg fallback for damaged files times frames by index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.decode.containers import mp4_declared
from mer_features.console import quiet_native_stderr
from mer_features.errors import ClipError

VIDEO_DECODER = "decord-0.6|imageio-ffmpeg; frame i at i/fps; antialiased bilinear downscale"
"""Names the decoding path; part of a fingerprint since another decoder gives other pixels.
Frames of a variable-frame-rate stream are sampled and timed by their timestamps (not i/fps);
that changes nothing for a constant frame rate, so the name (and every existing store of
constant-frame-rate clips) stays valid. A store extracted before that change holds its
variable-frame-rate clips timed as i / average fps: extract those again (--overwrite)."""

MAX_SIDE = 1280
"""Frames larger than this on their long side are downscaled to it (1080p -> 720p)."""

VFR_SHARE = 0.05
"""A stream is timed by its frames' timestamps when more than this share of them lie over half
a frame away from i / average fps. A stray timestamp (the last frame of a cut file) leaves a
constant-frame-rate stream timed as before."""

_CHUNK_BYTES = 64 * 2**20  # native-size frames held at once by one get_batch call
_CUT_TAIL = 3  # frames dropped at the end of a cut file decoded by ffmpeg


@dataclass
class DecodedVideo:
    """Frames sampled from one video.

    ``frames`` is uint8 of shape (n, H, W, 3), RGB, display-oriented and possibly downscaled
    (see ``info['source_size']`` and ``info['scale']``); ``times`` (n,) float32 are the frames'
    times in seconds from the first frame (source frame i is at i / ``fps`` at a constant frame
    rate; a variable-frame-rate stream's frames keep their own timestamps and
    ``info['variable_frame_rate']`` is True); ``fps`` is the source's average frame rate;
    ``n_source_frames`` the number of frames the stream holds (those that decode, for a
    truncated file); ``truncated`` is True when the file holds fewer decodable frames than it
    declares or some frames failed to decode.

    ``info`` holds ``decoder`` ("decord" or "ffmpeg"), ``source_size`` (width, height) of the
    source frames, ``scale`` (frame width / source width, 1.0 when not downscaled),
    ``sample_fps`` (mean rate of the sampled frames), ``indices`` (source frame indices,
    int64 (n,)), ``n_declared_frames`` (from the MP4 index, None when unknown),
    ``n_failed_frames``, and ``truncation`` (a sentence) when ``truncated``.
    """

    frames: np.ndarray
    times: np.ndarray
    fps: float
    n_source_frames: int
    truncated: bool
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def duration(self) -> float:
        """Length of the decodable stream in seconds."""
        return self.n_source_frames / self.fps if self.fps > 0 else 0.0

    def to_source(self, boxes: np.ndarray) -> np.ndarray:
        """Map boxes (..., 4) x1, y1, x2, y2 from ``frames`` pixels to source pixels."""
        width, height = self.info.get("source_size", (self.frames.shape[2], self.frames.shape[1]))
        factor = np.array([width / self.frames.shape[2], height / self.frames.shape[1]] * 2)
        return (np.asarray(boxes, np.float64) * factor).astype(np.float32)


def sample_indices(n_frames: int, source_fps: float, fps: float,
                   max_frames: int | None = None) -> np.ndarray:
    """Source frame indices, int64 (n,), for sampling ``fps`` frames a second.

    Frame k of the sample is source frame round(k * source_fps / fps) (every frame when
    ``fps`` >= ``source_fps``). When that gives more than ``max_frames``, ``max_frames`` of them
    are kept, spread evenly over the clip (the centres of equal segments of that list).
    """
    if n_frames <= 0:
        return np.zeros(0, np.int64)
    step = source_fps / fps
    if step <= 1.0:
        grid = np.arange(n_frames, dtype=np.int64)
    else:
        k = np.arange(int(math.ceil(n_frames / step)) + 1)
        grid = np.unique(np.floor(k * step + 0.5).astype(np.int64))
        grid = grid[grid < n_frames]
    if max_frames is not None and len(grid) > max_frames:
        keep = ((np.arange(max_frames) + 0.5) * len(grid) / max_frames).astype(np.int64)
        grid = grid[keep]
    return grid


def load_frames(path: str | Path, fps: float, max_frames: int | None = None, *,
                max_side: int = MAX_SIDE) -> DecodedVideo:
    """Decode ``fps`` frames a second of the video at ``path`` (see :class:`DecodedVideo`).

    Parameters
    ----------
    path : str or Path
        A video file (any container and codec ffmpeg reads).
    fps : float
        Frames to take per second of video, e.g. 2 to 5 for face tracks.
    max_frames : int or None
        At most this many frames, spread evenly over the clip when ``fps`` would take more.
    max_side : int
        Frames larger than this on their long side are downscaled to it.

    Raises ClipError("decode", ...) for a missing, empty or unreadable file, a file that is not
    a video (text, an image, an audio-only file) and a video in which no frame decodes.
    """
    if not fps > 0 or not math.isfinite(fps):
        raise ValueError(f"fps must be a positive number; got {fps!r}.")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be at least 1 or None; got {max_frames!r}.")
    if max_side < 16:
        raise ValueError(f"max_side must be at least 16; got {max_side!r}.")
    path = Path(path)
    if not path.exists():
        raise ClipError("decode", f"file '{path}' not found")
    if not path.is_file():
        raise ClipError("decode", f"'{path}' is not a file")
    if path.stat().st_size == 0:
        raise ClipError("decode", f"file '{path.name}' is empty (0 bytes); the copy or download "
                                  "that made it probably failed")
    _refuse_non_video(path)
    declared = mp4_declared(path).video_frames

    import decord

    try:
        with quiet_native_stderr():  # ffmpeg's own lines ("moov atom not found") stay out
            reader = decord.VideoReader(str(path), ctx=decord.cpu(0))
    except (decord.DECORDError, RuntimeError) as e:
        message = _decord_message(e)
        if "cannot find video stream" in message:
            raise ClipError("decode", f"'{path.name}' has no video stream (an audio-only file?); "
                                      "give a video file or drop the clip") from e
        # decord gives up on a file whose last packet is cut; ffmpeg decodes what is there.
        return _load_with_ffmpeg(path, fps, max_frames, max_side, declared, message)
    return _load_with_decord(reader, path, fps, max_frames, max_side, declared)


def _load_with_decord(reader: Any, path: Path, fps: float, max_frames: int | None,
                      max_side: int, declared: int | None) -> DecodedVideo:
    n_frames = len(reader)
    source_fps = float(reader.get_avg_fps())
    if n_frames == 0:
        raise ClipError("decode", f"'{path.name}' holds a video stream without frames")
    if not source_fps > 0 or not math.isfinite(source_fps):
        raise ClipError("decode", f"'{path.name}' declares no usable frame rate ({source_fps}); "
                                  "re-encode it with a constant frame rate")
    stamps = _variable_frame_times(reader, n_frames, source_fps)
    if stamps is None:  # constant frame rate: frame i is at i / fps
        indices = sample_indices(n_frames, source_fps, fps, max_frames)
    else:
        indices = sample_times(stamps, fps, max_frames)
    frames = _Frames(max_side)
    failed: list[int] = []
    start, chunk = 0, 4  # small until the frame size is known
    while start < len(indices):
        batch = indices[start:start + chunk]
        start += len(batch)
        for index, frame in _read_batch(reader, batch, failed):
            frames.add(index, frame)
        if frames.source_size is not None:
            width, height = frames.source_size
            chunk = int(min(32, max(1, _CHUNK_BYTES // (width * height * 3))))
    if not frames.items and failed:
        # decord opens the file but gives no frame: a damaged stream, or frames too small for
        # its row alignment (1x1, 2x2 pixels); ffmpeg decodes the latter and judges the former.
        return _load_with_ffmpeg(path, fps, max_frames, max_side, declared,
                                 f"decord read none of {len(failed)} sampled frames")
    return frames.decoded(path, "decord", source_fps, fps, n_frames, declared, failed,
                          stamps=stamps)


def _variable_frame_times(reader: Any, n_frames: int, source_fps: float) -> np.ndarray | None:
    """Each frame's presentation time in seconds from the first frame, float64 (n_frames,),
    when the stream's frames are not evenly spaced at ``source_fps`` (variable frame rate:
    more than :data:`VFR_SHARE` of them over half a frame away from i / fps); None for a
    constant frame rate, and when the timestamps cannot be read."""
    try:
        with quiet_native_stderr():
            stamps = np.asarray(reader.get_frame_timestamp(list(range(n_frames))))[:, 0]
    except Exception:  # noqa: BLE001 - decord raises DECORDError, IndexError ... here
        return None
    stamps = stamps.astype(np.float64) - float(stamps[0])
    if len(stamps) < 2 or not np.isfinite(stamps).all() or (np.diff(stamps) < 0).any():
        return None
    off = np.abs(stamps - np.arange(n_frames) / source_fps) > 0.5 / source_fps
    if off.mean() <= VFR_SHARE:
        return None
    return stamps


def sample_times(stamps: np.ndarray, fps: float, max_frames: int | None = None) -> np.ndarray:
    """Source frame indices, int64 (n,), for sampling ``fps`` frames a second of a stream whose
    frame ``i`` is shown from ``stamps[i]`` seconds on (variable frame rate): for each time
    k / fps, the frame on screen then. ``max_frames`` as in :func:`sample_indices`."""
    targets = np.arange(int(math.floor(stamps[-1] * fps + 1e-9)) + 1) / fps
    grid = np.unique(np.searchsorted(stamps, targets + 1e-6, side="right") - 1)
    grid = grid[grid >= 0].astype(np.int64)
    if max_frames is not None and len(grid) > max_frames:
        keep = ((np.arange(max_frames) + 0.5) * len(grid) / max_frames).astype(np.int64)
        grid = grid[keep]
    return grid


def _read_batch(reader: Any, indices: np.ndarray,
                failed: list[int]) -> list[tuple[int, np.ndarray]]:
    """Frames at ``indices``; on a failure, bisect so that every frame that decodes is kept."""
    if len(indices) == 0:
        return []
    try:
        with quiet_native_stderr():
            frames = reader.get_batch([int(i) for i in indices]).asnumpy()
    except Exception:  # decord raises DECORDError, RuntimeError, ... on damaged data
        if len(indices) == 1:
            failed.append(int(indices[0]))
            return []
        half = len(indices) // 2
        return (_read_batch(reader, indices[:half], failed)
                + _read_batch(reader, indices[half:], failed))
    return list(zip((int(i) for i in indices), frames))


def _load_with_ffmpeg(path: Path, fps: float, max_frames: int | None, max_side: int,
                      declared: int | None, decord_message: str) -> DecodedVideo:
    """Sequential decoding with imageio-ffmpeg's binary, for files decord cannot open."""
    import imageio_ffmpeg

    stream = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24", bits_per_pixel=24,
                                        output_params=["-an", "-sn", "-fps_mode", "passthrough"])
    try:
        try:
            meta = next(stream)
        except (OSError, RuntimeError, StopIteration) as e:
            raise ClipError("decode", _unreadable_reason(path, f"{decord_message}; {e}",
                                                         declared)) from e
        width, height = meta["size"]
        source_fps = float(meta.get("fps") or 0.0)
        if not source_fps > 0 or not math.isfinite(source_fps):
            raise ClipError("decode", f"'{path.name}' declares no usable frame rate; re-encode "
                                      "it with a constant frame rate")
        step = source_fps / fps
        frames = _Frames(max_side)
        n_frames = 0
        try:
            for raw in stream:
                if _on_grid(n_frames, step):
                    frames.add(n_frames, np.frombuffer(raw, np.uint8).reshape(height, width, 3))
                n_frames += 1
        except (OSError, RuntimeError):
            pass  # ffmpeg stopped at damaged data: keep what came before
    finally:
        stream.close()
    if n_frames == 0:
        raise ClipError("decode", f"no frame of '{path.name}' decodes ({decord_message}); the file "
                                  "is truncated or damaged; re-download or re-encode it")
    dropped = 0
    if declared is not None and declared > n_frames:
        # ffmpeg decodes the cut last packet into a smeared frame, and frames shown before it
        # that reference it (B-frames) are damaged too; they are among the last few.
        dropped = min(n_frames, _CUT_TAIL)
        n_frames -= dropped
        frames.items = [item for item in frames.items if item[0] < n_frames]
    frames.keep_evenly(max_frames)
    video = frames.decoded(path, "ffmpeg", source_fps, fps, n_frames, declared, [])
    if dropped:
        video.info["truncation"] += (f"; the last {dropped} decoded frames were dropped (they "
                                     "depend on the cut packet)")
    return video


def _on_grid(index: int, step: float) -> bool:
    """Whether source frame ``index`` is one that :func:`sample_indices` takes."""
    if step <= 1.0:
        return True
    k = round(index / step)
    return any(math.floor(j * step + 0.5) == index for j in (k - 1, k, k + 1) if j >= 0)


class _Frames:
    """Frames collected while decoding, downscaled as they come."""

    def __init__(self, max_side: int):
        self.max_side = max_side
        self.items: list[tuple[int, np.ndarray]] = []
        self.source_size: tuple[int, int] | None = None

    def add(self, index: int, frame: np.ndarray) -> None:
        if self.source_size is None:
            self.source_size = (int(frame.shape[1]), int(frame.shape[0]))
        self.items.append((index, _downscale(frame, self.max_side)))

    def keep_evenly(self, max_frames: int | None) -> None:
        if max_frames is not None and len(self.items) > max_frames:
            keep = ((np.arange(max_frames) + 0.5) * len(self.items) / max_frames).astype(np.int64)
            self.items = [self.items[i] for i in keep]

    def decoded(self, path: Path, decoder: str, source_fps: float, fps: float, n_frames: int,
                declared: int | None, failed: list[int],
                stamps: np.ndarray | None = None) -> DecodedVideo:
        if not self.items:
            raise ClipError("decode", f"no complete frame of '{path.name}' decodes; the file is "
                                      "truncated or damaged; re-download or re-encode it")
        indices = np.array([i for i, _ in self.items], np.int64)
        frames = np.stack([f for _, f in self.items])
        seconds = indices / source_fps if stamps is None else stamps[indices]
        times = seconds.astype(np.float32)
        span = float(seconds[-1] - seconds[0])
        missing = declared - n_frames if declared is not None and declared > n_frames else 0
        info: dict[str, Any] = {
            "decoder": decoder,
            "source_size": self.source_size,
            "scale": frames.shape[2] / self.source_size[0],
            "sample_fps": (len(indices) - 1) / span if span > 0 else min(fps, source_fps),
            "indices": indices,
            "n_declared_frames": declared,
            "n_failed_frames": len(failed),
        }
        if stamps is not None:
            info["variable_frame_rate"] = True
        if missing or failed:
            parts = []
            if missing:
                parts.append(f"the file declares {declared} frames but holds {n_frames}")
            if failed:
                first = min(failed) / source_fps if stamps is None else stamps[min(failed)]
                parts.append(f"{len(failed)} sampled frames failed to decode (the first at "
                             f"{first:.2f} s)")
            info["truncation"] = "; ".join(parts) + f"; {len(indices)} frames kept"
        return DecodedVideo(frames=frames, times=times, fps=source_fps, n_source_frames=n_frames,
                            truncated=bool(missing or failed), info=info)


def target_size(width: int, height: int, max_side: int = MAX_SIDE) -> tuple[int, int]:
    """(width, height) a frame of this size is decoded at.

    Frames whose long side is at most ``max_side`` keep their size; larger ones are scaled to
    ``max_side`` on the long side, except strips (aspect ratio beyond 8:1), whose short side
    would then drop below ``max_side / 8`` pixels, too few for a face: they keep that many
    (or their own size, if smaller), within ``max_side**2`` pixels in all.
    """
    long, short = max(width, height), min(width, height)
    if long <= max_side:
        return width, height
    scale = max_side / long
    if short * scale < max_side / 8:
        budget = max_side / math.sqrt(width * height)  # at most max_side**2 pixels
        scale = min(1.0, max(scale, min(max_side / 8 / short, budget)))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _downscale(frame: np.ndarray, max_side: int) -> np.ndarray:
    """The frame at :func:`target_size`, shrunk with an antialiased bilinear filter."""
    height, width = frame.shape[:2]
    size = target_size(width, height, max_side)
    if size == (width, height):
        return np.ascontiguousarray(frame)
    from PIL import Image

    # Pillow's bilinear filter widens with the scale factor (antialiased, like torch's
    # interpolate(antialias=True) to within 1 level) and is several times faster on a CPU.
    return np.asarray(Image.fromarray(np.ascontiguousarray(frame)).resize(size, Image.BILINEAR))


# --------------------------------------------------------------------------------------------
# Telling users what a file is when it is not a video
# --------------------------------------------------------------------------------------------

_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
                (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"),
                (b"BM", "a BMP image"))


def _refuse_non_video(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(512)
    kind = next((name for magic, name in _IMAGE_MAGIC if head.startswith(magic)), None)
    if kind is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        kind = "a WebP image"
    if kind is not None:
        raise ClipError("decode", f"'{path.name}' is {kind}, not a video; give the video file "
                                  "(a still image has no frame rate or duration)")
    if b"\x00" in head:
        return  # binary: let the decoder judge
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 3:  # a multi-byte character cut at the end is still text
            return
        text = head[:e.start].decode("utf-8")
    if text.startswith("version https://git-lfs"):
        raise ClipError("decode", f"'{path.name}' is a Git LFS pointer, not the video; fetch the "
                                  "data with 'git lfs pull'")
    start = text.lstrip()[:200].lower()
    if start.startswith(("<!doctype html", "<html")):
        raise ClipError("decode", f"'{path.name}' is an HTML page, not a video (a failed "
                                  "download?); download the file again")
    first = text.strip().splitlines()[0][:60] if text.strip() else ""
    raise ClipError("decode", f"'{path.name}' is a text file, not a video (it starts with "
                              f"{first!r}); check the manifest's video column")


def _decord_message(error: Exception) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    message = lines[-1] if lines else repr(error)
    if "/src/video/" in message and ": " in message:  # "[time] /.../video_reader.cc:486: Error: x"
        message = message.split(": ", 1)[1]
    return message.strip()


def _unreadable_reason(path: Path, message: str, declared: int | None = None) -> str:
    if declared:
        return (f"'{path.name}' declares {declared} video frames but none decodes: the file was "
                "cut short (an interrupted download or copy?); download or copy it again")
    if "moov atom not found" in message:
        return (f"'{path.name}' is not a complete MP4 file: its index (the 'moov' atom) is "
                "missing, so the file was cut short (an interrupted download or copy?) or is "
                "not a video; download or copy it again")
    if "Invalid data found when processing input" in message:
        return (f"'{path.name}' is not a video that ffmpeg can read (invalid data); check that "
                "the file is a video and not damaged")
    return f"cannot decode '{path.name}': {message}"
