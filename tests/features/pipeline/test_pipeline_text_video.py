"""Text and video extraction end to end: statuses, stores, resume, recorded failures."""

from pathlib import Path

import numpy as np
import pytest

from synthetic_media import write_manifest
from mer_features.pipeline import VideoOptions
from mer_features.pipeline import extract
from mer_features.store import FeatureStore


@pytest.mark.slow
def test_text_statuses_and_resume(tmp_path: Path):
    path = tmp_path / "m.csv"
    rows = ("name,text,english,discrete,valence\n"
            "a,I am so happy today,hello there,happy,3\n"
            "b,,fine,neutral,0\n"
            "c,   ,ok,sad,-2\n"
            "d,caf\xe9 au lait,x,angry,-3\n"
            "e,Why would you do that to me?,y,angry,-3.5\n")
    path.write_bytes(rows.encode("latin-1"))
    out = tmp_path / "t.h5"
    s = extract(path, out, modality="text", encoder="minilm", progress=False)
    assert (s.done, s.empty, s.failed) == (2, 2, 1)
    assert s.failures[0][:2] == ("d", "decode") and "not valid UTF-8" in s.failures[0][2]
    with FeatureStore(out) as store:
        assert store.utterance_shape == (384,)
        status = dict(zip(store.names, store.status))
        assert status == {"a": "ok", "b": "empty", "c": "empty", "d": "failed", "e": "ok"}
        assert not store.utterances(["b"]).any()
        times, frames = store.frames("e")
        assert len(frames) == 8  # "why would you do that to me ?" without [CLS]/[SEP]
        assert store.labels()["discrete"][store.index("e")] == "angry"
        assert store.fields["preprocessing"]["text_column"] == "text"
    assert extract(path, out, modality="text", encoder="minilm", progress=False).skipped == 5
    other = extract(path, tmp_path / "en.h5", modality="text", progress=False, text_column="english")
    assert (other.done, other.empty) == (5, 0)


@pytest.mark.slow
def test_video_faces_boxes_and_failures(tmp_path: Path):
    import subprocess

    import imageio_ffmpeg

    from mer_features.demo import write_demo

    demo = write_demo(tmp_path / "demo", n_clips=6)
    noise_video = tmp_path / "noface.mp4"
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-f", "lavfi", "-i",
                    "color=c=gray:s=96x96:d=1.5", "-pix_fmt", "yuv420p", str(noise_video)], check=True)
    (tmp_path / "text.mp4").write_text("not a video")
    rows = [{"name": f"demo_{i:04d}", "video": str(tmp_path / "demo" / "clips" / f"demo_{i:04d}.mp4"),
             "discrete": "happy"} for i in range(3)]
    rows += [{"name": "noface", "video": str(noise_video)}, {"name": "text", "video": str(tmp_path / "text.mp4")}]
    manifest = write_manifest(tmp_path / "v.csv", rows)
    out = tmp_path / "v.h5"
    s = extract(manifest, out, modality="video", progress=False, workers=2,
                video=VideoOptions(fps=2.0, max_frames=8))
    assert (s.done, s.failed) == (3, 2)
    reasons = {n: (stage, reason) for n, stage, reason in s.failures}
    assert reasons["noface"] == ("faces", "no face detected in any frame")
    assert reasons["text"][0] == "decode"
    with FeatureStore(out) as store:
        assert store.utterance_shape == (135,) and store.encoder == "fer"
        assert store.frame_extra_names == ["face_box", "face_prob", "has_face"]
        for name in rows[0]["name"], rows[2]["name"]:
            times, frames = store.frames(name)
            has_face = store.frame_extra(name, "has_face")
            assert len(frames) == len(has_face) >= 4 and has_face.all()
            boxes = store.frame_extra(name, "face_box")
            assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(store.frame_extra(name, "face_prob") > 0.9)
            assert np.all(np.diff(times) > 0)
            info = store.record(name, with_arrays=False).info
            assert info["face_fraction"] == 1.0
        assert store.fields["preprocessing"]["fps"] == 2.0
    assert extract(manifest, out, modality="video", progress=False,
                   video=VideoOptions(fps=2.0, max_frames=8)).skipped == 5
