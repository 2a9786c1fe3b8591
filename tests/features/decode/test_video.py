"""Tests of frame decoding (:mod:`mer_features.decode.video`).

Media are generated here: the demo corpus (H.264 + AAC mp4), and small videos written with
imageio-ffmpeg's binary (grey-scale, rotated, large, damaged and non-video files). The real
MEAD files are used when ../shared/data is present.
"""

from __future__ import annotations

import math
from pathlib import Path

import decord  # before anything that may import torch (the order known to be safe)
import numpy as np
import pytest
from real_data import shared_data
from synthetic_media import demo_clips, ffmpeg

from mer_features.demo import FPS, FRAME_SIZE
from mer_features.errors import ClipError
from mer_features.decode.video import (DecodedVideo, _load_with_decord, _on_grid, load_frames,
                                sample_indices)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    return demo_clips(tmp_path_factory)


@pytest.fixture(scope="module")
def testsrc(tmp_path_factory) -> Path:
    """2 s of ffmpeg's asymmetric test pattern, 160x96 at 25 fps, H.264."""
    path = tmp_path_factory.mktemp("testsrc") / "testsrc.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x96:rate=25:duration=2", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", path)
    return path


# --------------------------------------------------------------------------------------------
# Sampling
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_demo_clips_at_5_fps(clips):
    for path in clips:
        video = load_frames(path, fps=5)
        reader = decord.VideoReader(str(path))
        n_source = len(reader)
        assert 2 * FPS <= n_source <= 4 * FPS
        n = math.ceil(n_source / 5)  # every 5th frame of a 25 fps clip
        assert video.frames.shape == (n, FRAME_SIZE, FRAME_SIZE, 3)
        assert video.frames.dtype == np.uint8 and video.times.dtype == np.float32
        np.testing.assert_allclose(video.times, np.arange(n) * 0.2, atol=1e-6)
        np.testing.assert_array_equal(video.info["indices"], np.arange(n) * 5)
        assert video.fps == FPS and video.n_source_frames == n_source
        assert not video.truncated and video.info["n_declared_frames"] == n_source
        assert video.info["sample_fps"] == pytest.approx(5.0)
        assert video.info["scale"] == 1.0 and video.info["source_size"] == (FRAME_SIZE,) * 2
        # exactly the frames decord gives for those indices
        np.testing.assert_array_equal(video.frames, reader.get_batch(list(range(0, n_source, 5)))
                                      .asnumpy())


@pytest.mark.slow
def test_max_frames_spreads_the_cap_over_the_clip(clips):
    full = load_frames(clips[0], fps=5)
    capped = load_frames(clips[0], fps=5, max_frames=4)
    assert len(capped.frames) == 4
    assert np.all(np.diff(capped.times) > 0)
    # a subset of the 5 fps grid, evenly spread: the centres of 4 equal segments of it
    keep = ((np.arange(4) + 0.5) * len(full.times) / 4).astype(int)
    np.testing.assert_array_equal(capped.times, full.times[keep])
    np.testing.assert_array_equal(capped.frames, full.frames[keep])
    assert capped.times[0] < 0.25 * full.duration and capped.times[-1] > 0.75 * full.duration
    assert len(load_frames(clips[0], fps=5, max_frames=1000).frames) == len(full.frames)


def test_sample_indices():
    np.testing.assert_array_equal(sample_indices(10, 25.0, 30.0), np.arange(10))  # fps >= source
    np.testing.assert_array_equal(sample_indices(11, 25.0, 5.0), [0, 5, 10])
    ntsc = sample_indices(300, 30000 / 1001, 5.0)  # 10.01 s; frame 300 would be at 10.01 s
    assert len(ntsc) == 50
    np.testing.assert_allclose(ntsc / (30000 / 1001), np.arange(50) * 0.2, atol=0.5 * 1001 / 30000)
    assert len(sample_indices(0, 25.0, 5.0)) == 0
    np.testing.assert_array_equal(sample_indices(100, 25.0, 25.0, max_frames=4), [12, 37, 62, 87])
    # the streaming test used when ffmpeg decodes sequentially picks the same frames
    for source_fps, fps in [(25, 5), (30000 / 1001, 4), (23.976, 2.5), (60, 4.3), (25, 30)]:
        grid = {i for i in range(500) if _on_grid(i, source_fps / fps)}
        assert grid == set(sample_indices(500, source_fps, fps).tolist())


VFR_STAMPS = np.r_[np.arange(10) * 0.2, 2.0 + np.arange(50) * 0.04]
"""A stream at 5 fps for 2 s, then 25 fps: frame i shown from VFR_STAMPS[i] seconds on."""


@pytest.fixture(scope="module")
def vfr(tmp_path_factory) -> Path:
    """A variable-frame-rate H.264 clip whose frame i is grey level 4 * i."""
    path = tmp_path_factory.mktemp("vfr") / "vfr.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=black:s=64x64:r=25:d=2.4,format=gray,geq=lum='N*4'",
           "-vf", "setpts='if(lt(N,10),N*0.2,2+(N-10)*0.04)/TB'", "-fps_mode", "vfr",
           "-c:v", "libx264", "-pix_fmt", "yuv420p", "-video_track_timescale", "1000", path)
    return path


@pytest.mark.parametrize("fps,max_frames", [(5, None), (4, None), (5, 8)])
def test_variable_frame_rate_frames_are_sampled_and_timed_by_their_timestamps(vfr, fps,
                                                                              max_frames):
    video = load_frames(vfr, fps=fps, max_frames=max_frames)
    indices = video.info["indices"]
    assert video.info["variable_frame_rate"] and video.fps == pytest.approx(60 / 4.32, rel=0.1)
    np.testing.assert_allclose(video.times, VFR_STAMPS[indices], atol=1e-3)
    # at each time k / fps, the frame on screen then
    on_screen = [int(np.searchsorted(VFR_STAMPS, k / fps + 1e-6, side="right") - 1)
                 for k in range(int(VFR_STAMPS[-1] * fps) + 1)]
    expected = np.unique(on_screen)
    if max_frames is not None:
        expected = expected[((np.arange(max_frames) + 0.5) * len(expected) / max_frames)
                            .astype(int)]
    np.testing.assert_array_equal(indices, expected)
    # and the pixels are those frames' (frame i is grey level 4 * i)
    np.testing.assert_allclose(video.frames[..., 0].mean(axis=(1, 2)), 4 * indices, atol=3)
    # index / average fps, as frames were timed before, is up to a second off
    assert np.max(np.abs(indices / video.fps - VFR_STAMPS[indices])) > 0.5


def test_constant_frame_rate_timing_is_unchanged(testsrc):
    video = load_frames(testsrc, fps=5)
    assert "variable_frame_rate" not in video.info
    np.testing.assert_array_equal(video.times,
                                  (video.info["indices"] / 25.0).astype(np.float32))
    np.testing.assert_array_equal(video.info["indices"], sample_indices(50, 25.0, 5))


@pytest.mark.slow
def test_bad_arguments_are_value_errors(clips):
    for kwargs in ({"fps": 0}, {"fps": float("nan")}, {"fps": 5, "max_frames": 0}):
        with pytest.raises(ValueError):
            load_frames(clips[0], **kwargs)


# --------------------------------------------------------------------------------------------
# Pixels: grey-scale, rotation, downscaling
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec,suffix", [("ffv1", ".mkv"), ("rawvideo", ".avi")])
def test_grey_scale_video_gives_three_equal_channels(tmp_path, testsrc, codec, suffix):
    path = tmp_path / f"grey{suffix}"
    ffmpeg("-i", testsrc, "-c:v", codec, "-pix_fmt", "gray", path)
    video = load_frames(path, fps=5)
    assert video.frames.shape == (10, 96, 160, 3)
    assert np.array_equal(video.frames[..., 0], video.frames[..., 1])
    assert np.array_equal(video.frames[..., 1], video.frames[..., 2])
    assert video.frames.std() > 20  # the pattern, not a flat frame


@pytest.mark.parametrize("rotation,k", [(90, 1), (-90, 3), (180, 2)])
def test_rotation_metadata_is_applied(tmp_path, testsrc, rotation, k):
    """decord applies the display matrix, as ffmpeg does: frames come out display-oriented."""
    path = tmp_path / f"rotated{rotation}.mp4"
    ffmpeg("-display_rotation", str(rotation), "-i", testsrc, "-c", "copy", path)
    upright = load_frames(testsrc, fps=5).frames
    rotated = load_frames(path, fps=5)
    np.testing.assert_array_equal(rotated.frames, np.rot90(upright, k, axes=(1, 2)))
    assert rotated.info["source_size"] == (rotated.frames.shape[2], rotated.frames.shape[1])


@pytest.mark.slow
def test_large_frames_are_downscaled_and_boxes_map_back(tmp_path):
    path = tmp_path / "large.mp4"
    ffmpeg("-f", "lavfi", "-i", "testsrc=size=1600x900:rate=10:duration=1", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", path)
    video = load_frames(path, fps=2)
    assert video.frames.shape == (2, 720, 1280, 3)
    assert video.info["source_size"] == (1600, 900) and video.info["scale"] == pytest.approx(0.8)
    np.testing.assert_allclose(video.to_source(np.array([[128.0, 72.0, 1280.0, 720.0]])),
                               [[160.0, 90.0, 1600.0, 900.0]])
    small = load_frames(path, fps=2, max_side=400)
    assert small.frames.shape == (2, 225, 400, 3)
    # antialiased: a 4x reduction of the pattern keeps its mean colour
    assert abs(float(small.frames.mean()) - float(video.frames.mean())) < 3


@pytest.mark.shared_data
def test_mead_1080p_clip(tmp_path):
    path = shared_data("mead", "eamm", "M030_sad_3_001.mp4")
    video = load_frames(path, fps=5, max_frames=3)
    assert video.frames.shape == (3, 720, 1280, 3)
    assert video.info["source_size"] == (1920, 1080) and video.n_source_frames == 112
    assert video.fps == pytest.approx(30.0, abs=0.05) and not video.truncated


# --------------------------------------------------------------------------------------------
# Damaged files and files that are not videos
# --------------------------------------------------------------------------------------------


def _bad_inputs(folder: Path, clip: Path, testsrc: Path) -> dict[str, tuple[Path, str]]:
    """Files that cannot give frames, with a pattern their ClipError's reason must match."""
    data = clip.read_bytes()
    cases: dict[str, tuple[Path, str]] = {}

    def add(name: str, content: bytes | None, pattern: str) -> None:
        path = folder / name
        if content is not None:
            path.write_bytes(content)
        cases[name] = (path, pattern)

    add("missing.mp4", None, "not found")
    add("empty.mp4", b"", r"empty \(0 bytes\)")
    add("notes.mp4", b"neutral 0.5\nangry 1.0\n", "text file, not a video.*'neutral 0.5'")
    add("pointer.mp4", b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n",
        "Git LFS pointer.*git lfs pull")
    add("page.mp4", b"<!DOCTYPE html><html><body>Not found</body></html>", "HTML page")
    add("garbage.mp4", bytes(range(256)) * 8, "not a complete MP4 file.*or is not a video")
    add("garbage.mkv", bytes(range(256)) * 8, "not a video that ffmpeg can read")
    png = folder / "still.png"
    ffmpeg("-i", testsrc, "-frames:v", "1", png)
    add("still.mp4", png.read_bytes(), "PNG image, not a video")
    jpg = folder / "still.jpg"
    ffmpeg("-i", testsrc, "-frames:v", "1", jpg)
    add("photo.mp4", jpg.read_bytes(), "JPEG image, not a video")
    audio = folder / "audio_only.mp4"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", audio)
    cases["audio_only.mp4"] = (audio, "no video stream")
    # the index survives but no media data: a video whose frames are all missing
    add("index_only.mp4", data[:data.index(b"mdat") + 4], "declares 93 video frames but none")
    moov_at_end = folder / "moov_at_end.mp4"
    ffmpeg("-i", testsrc, "-c", "copy", moov_at_end)
    end = moov_at_end.read_bytes()
    add("no_index.mp4", end[:end.index(b"moov") - 4], "moov.*missing.*cut short")
    return cases


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, clips, testsrc) -> dict[str, tuple[Path, str]]:
    return _bad_inputs(tmp_path_factory.mktemp("bad"), clips[0], testsrc)


@pytest.mark.parametrize("name", ["missing.mp4", "empty.mp4", "notes.mp4", "pointer.mp4",
                                  "page.mp4", "garbage.mp4", "garbage.mkv", "still.mp4",
                                  "photo.mp4", "audio_only.mp4", "index_only.mp4",
                                  "no_index.mp4"])
@pytest.mark.slow
def test_bad_input_is_a_clip_error_with_a_reason(bad_inputs, name):
    path, pattern = bad_inputs[name]
    with pytest.raises(ClipError, match=pattern) as info:
        load_frames(path, fps=5)
    assert info.value.stage == "decode"
    assert name.split(".")[0] in info.value.reason or "not found" in info.value.reason


@pytest.mark.slow
def test_truncated_copies_give_the_frames_that_decode(tmp_path, clips):
    """Cut a demo clip at many points: whatever survives decodes exactly as in the full file.

    Depending on where the cut falls, decord refuses the file (ffmpeg decodes it instead),
    reports every frame and fails on the last ones (bisected), or silently holds fewer frames
    than the MP4 index declares; the test checks that each of these paths was taken.
    """
    data = clips[1].read_bytes()
    full = load_frames(clips[1], fps=FPS)
    paths = set()
    for fraction in np.linspace(0.2, 0.999, 25):
        path = tmp_path / f"cut{fraction:.3f}.mp4"
        path.write_bytes(data[:int(len(data) * fraction)])
        try:
            video = load_frames(path, fps=FPS)
        except ClipError as e:  # too little left: a reason, not a crash
            assert e.stage == "decode" and "truncated" in e.reason
            continue
        assert video.info["n_declared_frames"] == full.n_source_frames
        if not video.truncated:  # only audio was cut
            assert video.n_source_frames == full.n_source_frames, fraction
        else:
            assert 0 < len(video.frames) < len(full.frames), fraction
            assert f"declares {full.n_source_frames} frames" in video.info["truncation"]
        np.testing.assert_array_equal(video.times, full.times[video.info["indices"]])
        np.testing.assert_array_equal(video.frames, full.frames[video.info["indices"]],
                                      err_msg=f"cut at {fraction:.3f}")
        paths.add("failed reads" if video.info["n_failed_frames"] else video.info["decoder"])
    assert paths == {"ffmpeg", "decord", "failed reads"}
    cut = tmp_path / "cut_half.mp4"
    cut.write_bytes(data[:len(data) // 2])
    half = load_frames(cut, fps=5, max_frames=3)  # the cap applies to what survives
    assert len(half.frames) == 3 and half.truncated and half.times[-1] < full.duration / 2


@pytest.mark.shared_data
def test_mead_truncated_file():
    path = shared_data("mead", "_truncated", "eamm_sad_truncated.mp4")
    video = load_frames(path, fps=5)
    assert video.truncated and video.n_source_frames == 110
    assert video.info["n_declared_frames"] == 157
    assert len(video.frames) == 22 and video.times[-1] == pytest.approx(4.2)
    assert "declares 157 frames but holds 110" in video.info["truncation"]


class _FailingReader:
    """A decord reader stand-in that reports 100 frames and fails on those from 60 on."""

    def __init__(self):
        self.calls = 0

    def __len__(self) -> int:
        return 100

    def get_avg_fps(self) -> float:
        return 25.0

    def get_batch(self, indices):
        self.calls += 1
        if max(indices) >= 60:
            raise decord.DECORDError("av_read_frame failed")
        frames = np.zeros((len(indices), 8, 8, 3), np.uint8)
        frames[:] = np.array(indices, np.uint8)[:, None, None, None]  # frame i holds value i
        return decord.nd.array(frames)


def test_failing_batch_reads_are_bisected(tmp_path):
    reader = _FailingReader()
    video = _load_with_decord(reader, tmp_path / "x.mp4", fps=25, max_frames=None, max_side=1280,
                              declared=None)
    assert isinstance(video, DecodedVideo)
    np.testing.assert_array_equal(video.info["indices"], np.arange(60))
    np.testing.assert_array_equal(video.frames[:, 0, 0, 0], np.arange(60))
    assert video.truncated and video.info["n_failed_frames"] == 40
    assert "40 sampled frames failed to decode (the first at 2.40 s)" in video.info["truncation"]
    assert reader.calls < 2 * 100  # bisection reads each index at most about twice


def test_target_size_keeps_strips_findable():
    """Ordinary frames are downscaled to 1280 on the long side, as before; strips (beyond 8:1)
    keep a short side of 160 px (or their own), within a budget of 1280**2 pixels."""
    from mer_features.decode.video import target_size

    assert target_size(1920, 1080) == (1280, 720)
    assert target_size(3840, 2160) == (1280, 720)
    assert target_size(640, 480) == (640, 480)
    assert target_size(2560, 320) == (1280, 160)       # exactly 8:1: the usual rule
    assert target_size(4000, 60) == (4000, 60)          # kept: 1280x19 could hold no face
    assert target_size(192, 4000) == (160, 3333)
    width, height = target_size(100_000, 60)            # pixel budget: at most 1280**2
    assert width * height <= 1280 ** 2 and height >= 30
