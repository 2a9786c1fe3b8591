"""The MER 2023 importer against the real label and transcript files (placeholder media)."""

import csv
import shutil
from pathlib import Path

import pytest

from real_data import shared_data
from mer_features.cli import main
from mer_features.errors import ManifestError
from mer_features.corpora.manifest import read_manifest
from mer_features.corpora.mer2023 import build_mer2023_manifest


@pytest.fixture
def release(tmp_path: Path) -> Path:
    """The official layout: the real CSV files, and empty placeholder videos for some clips."""
    real = shared_data("mer2023")
    root = tmp_path / "MER2023"
    root.mkdir()
    for name in ("train-label.csv", "transcription.csv"):
        shutil.copy(real / name, root / name)
    labels = list(csv.DictReader(open(real / "train-label.csv", encoding="utf-8")))
    (root / "train").mkdir()
    for row in labels[:40]:
        (root / "train" / f"{row['name']}.mp4").write_bytes(b"placeholder")
    (root / "test3").mkdir()
    for name in ("samplenew_00004251", "samplenew_00051251"):
        (root / "test3" / f"{name}.avi").write_bytes(b"placeholder")
    return root


@pytest.mark.shared_data
def test_real_labels_and_transcripts(release: Path, tmp_path: Path):
    out = tmp_path / "manifests" / "mer2023.csv"
    path, counts = build_mer2023_manifest(release, out)
    assert counts["train"] == 40 and counts["test3"] == 2
    assert counts["train_without_video"] == 3373 - 40
    manifest = read_manifest(path)  # validates: files exist, labels known, valence numeric
    assert len(manifest) == 42
    labels = {r["name"]: r for r in csv.DictReader(open(release / "train-label.csv", encoding="utf-8"))}
    texts = {r["name"]: r for r in csv.DictReader(open(release / "transcription.csv", encoding="utf-8"))}
    for clip in manifest:
        if clip.split == "train":
            assert clip.discrete == labels[clip.name]["discrete"]
            assert clip.valence == pytest.approx(float(labels[clip.name]["valence"]))
        else:
            assert clip.split == "test3" and clip.discrete is None and clip.valence is None
        assert clip.text == texts.get(clip.name, {}).get("english", "")
        assert clip.extra["chinese"] == texts.get(clip.name, {}).get("chinese", "")
        assert clip.video.is_file() and clip.audio_source == clip.video
    # the paths are relative to the manifest, so the pair can move together
    assert "../MER2023/train/" in out.read_text(encoding="utf-8")
    empty = [c for c in manifest if c.split == "train" and not c.text]
    assert empty, "the first 40 train clips include one with an empty transcript"


@pytest.mark.shared_data
def test_chinese_transcripts_via_the_cli(release: Path, tmp_path: Path, capsys):
    out = tmp_path / "zh.csv"
    assert main(["manifest", "mer2023", "--root", str(release), "--out", str(out),
                 "--text-column", "chinese"]) == 0
    manifest = read_manifest(out)
    texts = {r["name"]: r["chinese"] for r in csv.DictReader(open(release / "transcription.csv", encoding="utf-8"))}
    for c in manifest:
        assert c.text == texts.get(c.name, "")
    assert any(c.text for c in manifest)
    assert "train 40" in capsys.readouterr().out


def test_release_errors(tmp_path: Path):
    with pytest.raises(ManifestError, match="train-label.csv' not found"):
        build_mer2023_manifest(tmp_path, tmp_path / "m.csv")
    (tmp_path / "train-label.csv").write_text("name,discrete,valence\na,joy,1\n")
    (tmp_path / "transcription.csv").write_text("name,chinese,english\n")
    with pytest.raises(ManifestError, match="outside neutral"):
        build_mer2023_manifest(tmp_path, tmp_path / "m.csv")
    (tmp_path / "train-label.csv").write_text("name,discrete,valence\na,sad,1\n")
    with pytest.raises(ManifestError, match="No videos found"):
        build_mer2023_manifest(tmp_path, tmp_path / "m.csv")
    (tmp_path / "transcription.csv").write_text("name,english\n")
    with pytest.raises(ManifestError, match="lacks column"):
        build_mer2023_manifest(tmp_path, tmp_path / "m.csv")


@pytest.mark.shared_data
def test_text_only_needs_no_videos(tmp_path: Path):
    """The shared release has labels and transcripts but no videos: a text-only manifest."""
    real = shared_data("mer2023")
    path, counts = build_mer2023_manifest(real, tmp_path / "text.csv", text_only=True)
    assert counts["train"] == 3373
    manifest = read_manifest(path)
    clips = list(manifest)
    assert len(clips) == 3373
    assert all(c.video is None and c.audio is None for c in clips)
    assert sum(not (c.text or "").strip() for c in clips) == 163  # the empty transcripts
    assert counts["without_transcript"] == 163  # what the summary prints: the true count
    assert {c.discrete for c in clips} == {"neutral", "angry", "happy", "sad", "worried", "surprise"}


@pytest.mark.shared_data
def test_the_summary_counts_empty_transcripts(tmp_path: Path, capsys):
    real = shared_data("mer2023")
    assert main(["manifest", "mer2023", "--root", str(real), "--out", str(tmp_path / "t.csv"),
                 "--text-only"]) == 0
    out, err = capsys.readouterr()
    assert out.strip().endswith("train 3373")
    assert "note: 163 clip(s) have no english transcript" in err


@pytest.mark.parametrize("valence", ["0_5", "inf", "nan", "0x1", "\u0665", "1,5", "7"])
def test_label_valence_is_parsed_strictly(tmp_path: Path, valence: str):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "a.mp4").write_bytes(b"placeholder")
    (tmp_path / "train-label.csv").write_text(f'name,discrete,valence\na,sad,"{valence}"\n',
                                             encoding="utf-8")
    (tmp_path / "transcription.csv").write_text("name,chinese,english\na,,hi\n")
    with pytest.raises(ManifestError, match="not numbers in \\[-5, 5\\]"):
        build_mer2023_manifest(tmp_path, tmp_path / "m.csv")
