"""Tests of face tracks (:mod:`mer_features.decode.faces`): batched MTCNN, selection, alignment.

MTCNN runs on CPU with the weights shipped in facenet-pytorch, on the demo corpus (a real face
photograph) at 2 frames a second, on generated noise videos, and, when ../shared/data is
present, on a MEAD clip and a MER 2023 clip with two people.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from real_data import shared_data
from synthetic_media import demo_clips, ffmpeg

from mer_features.decode.inputs import FaceInput
from mer_features.errors import ClipError
from mer_features.decode.faces import (Detections, FaceTracker, align_face, face_fraction,
                                select_faces)
from mer_features.decode.video import DecodedVideo, load_frames


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """MTCNN on a busy 2-core machine runs 3-10x faster on one thread (no OpenMP spin-waits)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def demo_videos(tmp_path_factory) -> list[tuple[str, DecodedVideo]]:
    return [(p.stem, load_frames(p, fps=2)) for p in demo_clips(tmp_path_factory)]


@pytest.fixture(scope="module")
def tracker() -> FaceTracker:
    return FaceTracker(face_size=112)


@pytest.fixture(scope="module")
def tracked(tracker, demo_videos) -> list[FaceInput | ClipError]:
    """All six demo clips tracked in one call (their frames share detection batches)."""
    return tracker.track(demo_videos)


@pytest.fixture(scope="module")
def noise_video(tmp_path_factory) -> DecodedVideo:
    path = tmp_path_factory.mktemp("noise") / "noise.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:size=160x120:rate=25:duration=1,noise=alls=80:allf=t",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", path)
    return load_frames(path, fps=4)


# --------------------------------------------------------------------------------------------
# Tracks on real faces
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_clips_have_a_face_in_every_frame(tracked, demo_videos):
    assert len(tracked) == len(demo_videos)
    for (name, video), face in zip(demo_videos, tracked):
        assert isinstance(face, FaceInput), face
        n = len(video.frames)
        assert face.name == name
        assert face.faces.shape == (n, 112, 112, 3) and face.faces.dtype == np.uint8
        assert face.mask.shape == (n,) and face.mask.dtype == bool
        assert face_fraction(face) >= 0.9 and face_fraction(face) == face.mask.mean()
        np.testing.assert_array_equal(face.times, video.times)
        assert face.fps == pytest.approx(2.0, rel=0.05)
        boxes = face.boxes[face.mask]
        assert face.boxes.shape == (n, 4) and face.boxes.dtype == np.float32
        assert np.isfinite(boxes).all()
        heights = boxes[:, 3] - boxes[:, 1]
        assert (heights > 90).all() and (heights < 190).all()  # the demo face: ~110-160 px
        assert (face.probs[face.mask] > 0.9).all()
        assert (face.faces[face.mask].reshape(face.mask.sum(), -1).std(axis=1) > 20).all()


@pytest.mark.slow
def test_tracking_is_deterministic_and_independent_of_batching(tracker, tracked, demo_videos):
    """Detection batched across frames and clips agrees with one frame at a time."""
    frames = [f for _, video in demo_videos[:3] for f in video.frames[:4]]
    one_by_one = FaceTracker(batch_frames=1).detect(frames)
    batched = tracker.detect(frames)
    assert len(one_by_one) == len(batched) == len(frames)
    for single, batch in zip(one_by_one, batched):
        assert len(single) >= 1 and len(batch) >= 1
        np.testing.assert_allclose(batch.boxes[0], single.boxes[0], atol=1.0)
        np.testing.assert_allclose(batch.landmarks[0], single.landmarks[0], atol=1.0)
        assert batch.probs[0] == pytest.approx(single.probs[0], abs=1e-3)
    # a clip tracked alone gives what it gave among the others
    alone = tracker.track(demo_videos[:1])[0]
    np.testing.assert_array_equal(alone.mask, tracked[0].mask)
    np.testing.assert_allclose(alone.boxes, tracked[0].boxes, atol=1.0)
    assert np.abs(alone.faces.astype(int) - tracked[0].faces).mean() < 1.0


@pytest.mark.slow
def test_boxes_are_in_source_pixels(tracker, demo_videos, tmp_path_factory):
    """A clip decoded at half size gives boxes in the source's pixels, like the full-size one."""
    path = demo_clips(tmp_path_factory)[0]
    half = load_frames(path, fps=2, max_frames=3, max_side=96)
    assert half.frames.shape[1:3] == (96, 96) and half.info["scale"] == 0.5
    full = load_frames(path, fps=2, max_frames=3)
    small, large = tracker.track([("half", half), ("full", full)])
    assert small.mask.all() and large.mask.all()
    size = large.boxes[:, 2:] - large.boxes[:, :2]
    np.testing.assert_allclose(small.boxes, large.boxes, atol=0.12 * float(size.mean()))


@pytest.mark.slow
def test_no_face_is_a_clip_error_and_clips_of_other_sizes_are_unaffected(tracker, noise_video,
                                                                        demo_videos):
    assert noise_video.frames.shape[1:3] == (120, 160)
    noise, demo = tracker.track([("noise", noise_video), demo_videos[1]])
    assert isinstance(noise, ClipError)
    assert noise.stage == "faces" and noise.reason == "no face detected in any frame"
    assert isinstance(demo, FaceInput) and demo.mask.all()


@pytest.mark.slow
def test_frames_without_a_face_are_masked(tracker, noise_video, demo_videos):
    video = demo_videos[2][1]
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(3, *video.frames.shape[1:]), dtype=np.uint8)
    frames = np.concatenate([video.frames[:1], noise[:1], video.frames[1:2], noise[1:]])
    mixed = DecodedVideo(frames=frames, times=np.arange(5, dtype=np.float32) / 2, fps=25.0,
                         n_source_frames=60, truncated=False,
                         info={"source_size": (192, 192), "sample_fps": 2.0})
    failed = ClipError("decode", "file 'x.mp4' not found")
    passed, face = tracker.track([("failed", failed), ("mixed", mixed)])
    assert passed is failed
    np.testing.assert_array_equal(face.mask, [True, False, True, False, False])
    missing = ~face.mask
    assert not face.faces[missing].any()
    assert np.isnan(face.boxes[missing]).all() and (face.probs[missing] == 0).all()
    assert np.isfinite(face.boxes[face.mask]).all() and (face.probs[face.mask] > 0.9).all()
    assert face_fraction(face) == pytest.approx(0.4) and face.fps == 2.0


@pytest.mark.slow
def test_crop_size_follows_face_size(tracker, demo_videos):
    small = FaceTracker(face_size=48)
    small._mtcnn = tracker._detector()  # the same weights; only the crops differ
    name, video = demo_videos[3]
    clip = DecodedVideo(video.frames[:2], video.times[:2], video.fps, video.n_source_frames,
                        False, dict(video.info))
    face = small.track([(name, clip)])[0]
    assert face.faces.shape == (2, 48, 48, 3)


# --------------------------------------------------------------------------------------------
# The selection rule and the alignment, without a detector
# --------------------------------------------------------------------------------------------


def _detections(*faces: tuple[float, float, float, float]) -> Detections:
    """Faces given as (centre x, centre y, width, prob), most confident first."""
    faces = sorted(faces, key=lambda f: -f[3])
    boxes = np.array([[x - w / 2, y - w / 2, x + w / 2, y + w / 2] for x, y, w, _ in faces],
                     np.float32).reshape(-1, 4)
    probs = np.array([p for *_, p in faces], np.float32)
    landmarks = np.zeros((len(faces), 5, 2), np.float32)
    return Detections(boxes, probs, landmarks)


def test_selection_keeps_the_consistent_person():
    times = np.arange(8, dtype=np.float32) * 0.25
    # A (left, 80 px, steady) is in every frame but 5; B (right, 70 px) appears in frames 2-4
    # and is slightly more confident there; frame 5 holds B alone, frame 6 nothing.
    frames = []
    for f in range(8):
        faces = []
        if f not in (5, 6):
            faces.append((100 + 3 * f, 120, 80, 0.990))
        if f in (2, 3, 4, 5):
            faces.append((400, 120, 70, 0.999))
        frames.append(_detections(*faces))
    choice = select_faces(frames, times)
    chosen_x = [frames[f].boxes[j, 0] if j >= 0 else None for f, j in enumerate(choice)]
    assert all(x < 200 for f, x in enumerate(chosen_x) if f not in (5, 6))  # A, not B
    assert chosen_x[5] > 300  # only B is there
    assert choice[6] == -1
    # Without A, the most confident face of each frame is taken.
    assert (select_faces([_detections((50, 50, 40, 0.8), (150, 50, 40, 0.95))], times[:1])
            == [0]).all()


def test_selection_prefers_the_larger_steadier_face_over_a_passing_one():
    times = np.arange(6, dtype=np.float32) * 0.5
    frames = [_detections((300, 200, 150, 0.97), (60, 60, 30, 0.9999)) for _ in range(6)]
    choice = select_faces(frames, times)
    assert all(frames[f].boxes[j, 2] - frames[f].boxes[j, 0] == 150 for f, j in enumerate(choice))


def _two_eyes(roll_degrees: float, size: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A frame with two bright eyes rolled by roll_degrees, its face box and landmarks."""
    frame = np.full((size, size, 3), 40, np.uint8)
    yy, xx = np.mgrid[:size, :size]
    centre = np.array([size / 2, size / 2])
    roll = math.radians(roll_degrees)
    eyes = [centre + 30 * np.array([side * math.cos(roll), side * math.sin(roll)])
            for side in (-1, 1)]
    for x, y in eyes:
        frame[(xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2 <= 36] = 250
    box = np.array([centre[0] - 50, centre[1] - 60, centre[0] + 50, centre[1] + 60], np.float32)
    landmarks = np.array([*eyes, centre, centre + [-15, 30], centre + [15, 30]], np.float32)
    return frame, box, landmarks


@pytest.mark.parametrize("roll", [0.0, 20.0, -35.0])
def test_alignment_levels_the_eyes(roll):
    frame, box, landmarks = _two_eyes(roll)
    crop = align_face(frame, box, landmarks, face_size=96, margin=0.2)
    assert crop.shape == (96, 96, 3) and crop.dtype == np.uint8
    bright = crop[..., 0] > 145
    ys, xs = np.nonzero(bright)
    left, right = xs < 48, xs >= 48
    # each eye's centroid: same row, mirrored about the centre line
    assert abs(ys[left].mean() - ys[right].mean()) < 0.5
    assert abs((xs[left].mean() + xs[right].mean()) / 2 - 47.5) < 0.5
    # 60 px between the eyes, in a crop of side 1.2 x 120 px drawn at 96 px
    assert xs[right].mean() - xs[left].mean() == pytest.approx(60 * 96 / 144, abs=1.0)
    np.testing.assert_array_equal(crop, align_face(frame, box, landmarks, 96, 0.2))


def test_alignment_pads_outside_the_frame_with_black():
    frame, box, landmarks = _two_eyes(0.0)
    crop = align_face(frame, box - 95, landmarks - 95, face_size=64, margin=0.5)
    assert crop.shape == (64, 64, 3)
    assert (crop[:10, :10] == 0).all()  # above and left of the frame
    assert (crop[40:50, 40:50] == 40).all()  # inside it


def test_bad_options_are_value_errors():
    for kwargs in ({"face_size": 4}, {"margin": -0.1}, {"min_face_size": 5},
                   {"thresholds": (0.6, 0.7)}, {"thresholds": (0.6, 0.7, 1.5)},
                   {"batch_frames": 0}):
        with pytest.raises(ValueError):
            FaceTracker(**kwargs)


# --------------------------------------------------------------------------------------------
# Real clips
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_mead_truncated_and_mer_two_people(tracker):
    mead = load_frames(shared_data("mead", "_truncated", "eamm_sad_truncated.mp4"), fps=1)
    mer = load_frames(shared_data("mer2023", "videos_sample", "sample_00000338.mp4"), fps=1.5)
    face_mead, face_mer = tracker.track([("mead", mead), ("mer", mer)])
    assert face_mead.mask.all() and face_mer.mask.all()
    # sample_00000338: a woman (left) and a man (right, often turned away); she is kept
    centres = (face_mer.boxes[:, 0] + face_mer.boxes[:, 2]) / 2
    assert (centres < mer.info["source_size"][0] / 2).all()


@pytest.mark.parametrize("kernel,stride,ceil", [(2, 2, True), (3, 2, True), (2, 2, False),
                                                (3, 2, False), (3, 1, True)])
def test_slice_max_pool_equals_torch(kernel, stride, ceil):
    import torch

    from mer_features.decode.mtcnn import _slice_max_pool_class

    pool = _slice_max_pool_class()((kernel, kernel), (stride, stride), ceil)
    for h, w in ((5, 5), (6, 7), (13, 12), (22, 23), (113, 57)):
        x = torch.randn(2, 3, h, w)
        ref = torch.nn.MaxPool2d(kernel, stride, ceil_mode=ceil)(x)
        assert torch.equal(pool(x), ref)


@pytest.mark.slow
def test_tracker_mtcnn_detects_exactly_like_stock_mtcnn(demo_videos, noise_video):
    """The tracker's MTCNN (faster max pooling) gives bit-identical boxes, scores, landmarks."""
    from facenet_pytorch import MTCNN

    tracker = FaceTracker(device="cpu", face_size=64)
    mtcnn = tracker._detector()
    assert sum("SliceMaxPool2d" in type(m).__name__ for m in mtcnn.modules()) == 6
    stock = MTCNN(keep_all=True, device="cpu", select_largest=False, post_process=False).eval()
    frames = np.stack([f for _, v in demo_videos[:3] for f in v.frames[:4]])
    for batch in (frames, noise_video.frames[:4]):
        ours, theirs = mtcnn.detect(batch, landmarks=True), stock.detect(batch, landmarks=True)
        for a, b in zip(ours, theirs):
            for x, y in zip(a, b):
                if x is None or y is None:
                    assert x is None and y is None
                else:
                    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_grouped_crop_cascade_equals_stock_mtcnn_detect(demo_videos, noise_video):
    """mer_features.decode.mtcnn resamples R-/O-net crops in groups; detections stay bit-identical
    to MTCNN.detect on the same network (demo frames with a face, noise frames without)."""
    from facenet_pytorch import MTCNN

    from mer_features.decode.mtcnn import detect_faces

    stock = MTCNN(keep_all=True, device="cpu", select_largest=False, post_process=False).eval()
    frames = np.stack([f for _, v in demo_videos[:3] for f in v.frames[:4]])
    for batch in (frames, noise_video.frames[:4]):
        ours, theirs = detect_faces(stock, batch), stock.detect(batch, landmarks=True)
        for a, b in zip(ours, theirs):
            for x, y in zip(a, b):
                if x is None or (isinstance(x, list) and x == [None]):
                    assert y is None or (isinstance(y, list) and y == [None]) or y[0] is None
                else:
                    np.testing.assert_array_equal(np.asarray(x, np.float64), np.asarray(y, np.float64))
