"""The MER 2025 Track 1 importer on a copy of the layout its baseline code reads."""

from pathlib import Path

import pytest

from mer_features.cli import main
from mer_features.corpora import build_manifest
from mer_features.corpora.manifest import read_manifest
from mer_features.errors import ManifestError

from .releases import tiny_mp4, tiny_wav, write


def make_mer2025(tmp_path: Path) -> Path:
    root = tmp_path / "mer2025-dataset"
    for name in ("sample_00000001", "sample_00000002", "sample_00000003", "samplenew_00000001",
                 "samplenew_00000002", "samplenew_00000003"):
        tiny_mp4(root / "video" / f"{name}.mp4", tmp_path / "c")
    tiny_wav(root / "audio" / "sample_00000001.wav")
    write(root / "track1_train_disdim.csv", "name,discrete,valence\nsample_00000001,happy,2.5\n"
                                            "sample_00000002,worried,-1\n")
    write(root / "track_all_candidates.csv", "name\nsamplenew_00000001\nsample_00000003\n")
    write(root / "subtitle_chieng.csv", "name,chinese,english\nsample_00000001,你好,Hello\n"
                                        "samplenew_00000001,再见,Goodbye\n")
    return root


def test_train_and_test_candidates_and_the_pool_on_request(tmp_path: Path, capsys):
    root = make_mer2025(tmp_path)
    out = tmp_path / "m.csv"
    assert main(["manifest", "mer2025", "--root", str(root), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == f"{out}: 4 clips (train 2, test 2)"
    assert "2 clip(s) have no line in subtitle_chieng.csv" in captured.err
    clips = {c.name: c for c in read_manifest(out)}  # MER's six: the default validation
    first = clips["sample_00000001"]
    assert (first.discrete, first.valence, first.split, first.text) == ("happy", 2.5, "train",
                                                                         "Hello")
    assert first.audio.name == "sample_00000001.wav" and first.video.name == "sample_00000001.mp4"
    assert clips["sample_00000002"].audio is None  # no organisers' wav: the video's track
    candidate = clips["samplenew_00000001"]
    assert candidate.discrete is None and candidate.split == "test"
    assert clips["samplenew_00000001"].extra["chinese"] == "再见"
    build_manifest("mer2025", root, out, with_unlabelled=True, text_column="chinese")
    clips = {c.name: c for c in read_manifest(out)}
    assert len(clips) == 6 and clips["samplenew_00000003"].split == "unlabelled"
    assert clips["sample_00000001"].text == "你好"


def test_test_labels_when_released(tmp_path: Path):
    root = make_mer2025(tmp_path)
    write(root / "track1_test_dis.csv", "name,discrete\nsamplenew_00000001,sad\n")
    path, _ = build_manifest("mer2025", root, tmp_path / "m.csv")
    assert read_manifest(path)["samplenew_00000001"].discrete == "sad"
    write(root / "track1_test_dis.csv", "name,discrete\nsample_00000001,sad\n")
    with pytest.raises(ManifestError, match="line 2: clip 'sample_00000001' is not a test "
                                            "candidate"):
        build_manifest("mer2025", root, tmp_path / "m.csv")


@pytest.mark.parametrize("file, text, message", [
    ("track1_train_disdim.csv", "name,discrete,valence\nsample_00000001,joy,1\n",
     "line 2: unknown class 'joy'"),
    ("track1_train_disdim.csv", "name,discrete,valence\nsample_00000001,sad,7\n",
     "line 2: valence '7' is not a number in \\[-5, 5\\]"),
    ("track1_train_disdim.csv", "name,valence\nsample_00000001,1\n",
     "lacks column\\(s\\) discrete"),
    ("track_all_candidates.csv", "name\nsample_00000001\n",
     "line 2: clip 'sample_00000001' is listed twice"),
])
def test_malformed_label_files(tmp_path: Path, file, text, message):
    root = make_mer2025(tmp_path)
    write(root / file, text)
    with pytest.raises(ManifestError, match=message):
        build_manifest("mer2025", root, tmp_path / "m.csv")


def test_missing_videos_and_folders(tmp_path: Path):
    root = make_mer2025(tmp_path)
    (root / "video" / "sample_00000002.mp4").unlink()
    with pytest.raises(ManifestError, match=r"1 of 4 MER 2025 clip\(s\) have no media file"):
        build_manifest("mer2025", root, tmp_path / "m.csv")
    assert build_manifest("mer2025", root, tmp_path / "m.csv",
                          skip_missing=True)[1]["clips"] == 3
    with pytest.raises(ManifestError, match="video' not found"):
        build_manifest("mer2025", tmp_path, tmp_path / "m.csv")
