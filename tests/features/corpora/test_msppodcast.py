"""The MSP-Podcast importer on a copy of the release layout (Labels/, Audios/, Transcripts/)."""

from pathlib import Path

import pytest

from mer_features.cli import main
from mer_features.corpora import build_manifest
from mer_features.corpora.manifest import read_manifest
from mer_features.errors import ManifestError

from .releases import tiny_wav, write

HEADER = "FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set\n"
ROWS = ["MSP-PODCAST_0001_0008.wav,N,4.0,4.0,4.0,127,Female,Train\n",
        "MSP-PODCAST_0001_0009.wav,A,7.0,1.0,6.4,127,Female,Train\n",
        "MSP-PODCAST_0002_0001.wav,X,2.5,5.5,3.0,Unknown,Unknown,Development\n",
        "MSP-PODCAST_0003_0004.wav,C,3.0,3.0,3.0,310,Male,Test1\n",
        "MSP-PODCAST_0004_0002.wav,O,4.6,4.2,4.8,412,Male,Test2\n"]


def make_msp(tmp_path: Path, old_spelling=False) -> Path:
    root = tmp_path / "MSP-PODCAST-Publish-1.11"
    labels = "labels_concensus.csv" if old_spelling else "labels_consensus.csv"
    write(root / "Labels" / labels, HEADER + "".join(ROWS))
    audio = "Audio" if old_spelling else "Audios"
    for row in ROWS:
        tiny_wav(root / audio / row.split(",")[0])
    write(root / "Transcripts" / "MSP-PODCAST_0001_0008.txt", "so what do you think\n")
    return root


def test_partitions_speakers_classes_and_dimensions(tmp_path: Path, capsys):
    root = make_msp(tmp_path)
    out = tmp_path / "m.csv"
    assert main(["manifest", "msppodcast", "--root", str(root), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{out}: 5 clips (train 2, development 1, test1 1, test2 1), 4 classes (angry 1, "
        "contempt 1, neutral 1, other 1), 1 unlabelled, 3 known speakers")
    clips = {c.name: c for c in read_manifest(out, classes=None)}
    neutral = clips["MSP-PODCAST_0001_0008"]
    assert (neutral.discrete, neutral.valence, neutral.split) == ("neutral", 0.0, "train")
    assert neutral.text == "so what do you think"
    assert neutral.extra == {"emotion": "N", "arousal": "0.0", "dominance": "0.0",
                             "speaker": "127", "gender": "female"}
    angry = clips["MSP-PODCAST_0001_0009"]
    assert angry.valence == -5.0 and angry.extra["arousal"] == "5.0"  # (v - 4) * 5 / 3
    unknown = clips["MSP-PODCAST_0002_0001"]
    assert unknown.discrete is None and unknown.extra["speaker"] == "" and unknown.valence == 2.5
    assert clips["MSP-PODCAST_0003_0004"].text == ""


def test_older_release_spellings_and_the_eight_class_task(tmp_path: Path, capsys):
    root = make_msp(tmp_path, old_spelling=True)
    write(tmp_path / "eight.json", '{"other": null}')
    out = tmp_path / "m.csv"
    assert main(["manifest", "msppodcast", "--root", str(root), "--out", str(out),
                 "--label-map", str(tmp_path / "eight.json")]) == 0
    assert "'other' dropped: 1 clip(s)" in capsys.readouterr().err
    assert len(read_manifest(out, classes=None)) == 4


def test_missing_audio(tmp_path: Path):
    root = make_msp(tmp_path)
    (root / "Audios" / "MSP-PODCAST_0004_0002.wav").unlink()
    with pytest.raises(ManifestError, match=r"1 of 5 MSP-Podcast clip\(s\) have no media file"):
        build_manifest("msppodcast", root, tmp_path / "m.csv")
    assert build_manifest("msppodcast", root, tmp_path / "m.csv",
                          skip_missing=True)[1]["missing"] == 1


@pytest.mark.parametrize("row, message", [
    ("MSP-PODCAST_0005_0001.wav,Q,4,4,4,1,Male,Train\n", "line 7: unknown EmoClass 'Q'"),
    ("MSP-PODCAST_0005_0001.wav,N,8,4,4,1,Male,Train\n", "line 7: rating '8' is not a number "
                                                         "on the corpus's 1-7 scale"),
    ("MSP-PODCAST_0005_0001.wav,N,4,,4,1,Male,Train\n", "line 7: rating ''"),
    ("MSP-PODCAST_0001_0008.wav,N,4,4,4,1,Male,Train\n", "line 7: 'MSP-PODCAST_0001_0008.wav' "
                                                         "is labelled twice \\(first on line 2\\)"),
    ("../x.wav,N,4,4,4,1,Male,Train\n", "line 7: FileName '../x.wav' is not a file name"),
    ("MSP-PODCAST_0005_0001.wav,N,4,4,4,1,Male,\n", "line 7: Split_Set is empty"),
])
def test_malformed_rows_name_the_file_and_line(tmp_path: Path, row, message):
    root = make_msp(tmp_path)
    labels = root / "Labels" / "labels_consensus.csv"
    labels.write_text(labels.read_text() + row)
    with pytest.raises(ManifestError, match=message):
        build_manifest("msppodcast", root, tmp_path / "m.csv")


def test_a_folder_without_labels_is_refused(tmp_path: Path):
    with pytest.raises(ManifestError, match="No Labels/labels_consensus.csv"):
        build_manifest("msppodcast", tmp_path, tmp_path / "m.csv")
