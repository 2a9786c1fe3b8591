"""The MELD importer on a copy of MELD.Raw's layout with tiny mp4 clips."""

import csv
from collections import Counter
from pathlib import Path

import pytest

from mer_features.cli import main
from mer_features.corpora import build_manifest
from mer_features.corpora.manifest import read_manifest
from mer_features.errors import ManifestError

from .releases import tiny_mp4, write

HEADER = ("Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,"
          "StartTime,EndTime\n")
ROWS = {
    "train": ['1,"also I was the point person on my company\u0092s transition from the KL-5 to '
              'GR-6 system.",Chandler,neutral,neutral,0,0,8,21,"00:16:16,059","00:16:21,731"\n',
              '2,You must\u2019ve had your hands full.,The Interviewer,neutral,neutral,0,1,8,21,'
              '"00:16:21,940","00:16:23,442"\n',
              '3,That I did. That I did.,Chandler,joy,positive,0,2,8,21,"00:16:23,442",'
              '"00:16:26,389"\n'],
    "dev": ['1,Oh my God!,Monica,surprise,positive,0,0,4,7,"00:01:00,000","00:01:02,000"\n',
            '2,No!,Ross,anger,negative,0,1,4,7,"00:01:02,000","00:01:03,000"\n'],
    "test": ['1,"Why do all you\u0092re coffee mugs have numbers on the bottom?",Mark,surprise,'
             'positive,0,0,3,19,"00:14:38,855","00:14:40,690"\n',
             '2,Eww.,Rachel,disgust,negative,1,0,3,19,"00:14:41,000","00:14:42,000"\n'],
}


def make_meld(tmp_path: Path, nested_train=True) -> Path:
    """MELD.Raw: the dev and test CSVs at the root, train's in train/ as EmoBox found it."""
    root = tmp_path / "MELD.Raw"
    folders = {"train": "train/train_splits" if nested_train else "train_splits",
               "dev": "dev_splits_complete", "test": "output_repeated_splits_test"}
    for split, rows in ROWS.items():
        where = f"{split}/{split}_sent_emo.csv" if split == "train" and nested_train else \
            f"{split}_sent_emo.csv"
        write(root / where, HEADER + "".join(rows))
        for row in csv.reader(rows):
            dialogue, utterance = row[5:7]
            tiny_mp4(root / folders[split] / f"dia{dialogue}_utt{utterance}.mp4", tmp_path / "c")
    # the test folder also holds final_videos_test*.mp4 copies, which are not read
    tiny_mp4(root / folders["test"] / "final_videos_testdia0_utt0.mp4", tmp_path / "c")
    return root


def test_every_utterance_with_split_speaker_transcript_and_video(tmp_path: Path, capsys):
    root = make_meld(tmp_path)
    out = tmp_path / "m.csv"
    assert main(["manifest", "meld", "--root", str(root), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{out}: 7 utterances (train 3, dev 2, test 2), 5 classes (anger 1, disgust 1, joy 1, "
        "neutral 2, surprise 2), 6 speakers")
    clips = {c.name: c for c in read_manifest(out, classes=None)}
    first = clips["train_dia0_utt0"]
    assert first.text == ("also I was the point person on my company\u2019s transition from the "
                          "KL-5 to GR-6 system.")  # U+0092 read as the quote it stands for
    assert (first.discrete, first.split) == ("neutral", "train")
    assert first.extra == {"speaker": "Chandler", "sentiment": "neutral", "dialogue": "0",
                           "utterance": "0", "season": "8", "episode": "21",
                           "start": "00:16:16,059", "end": "00:16:21,731"}
    assert first.video.name == "dia0_utt0.mp4" and first.video.parent.name == "train_splits"
    assert clips["dev_dia0_utt0"].video.parent.name == "dev_splits_complete"
    assert clips["test_dia1_utt0"].discrete == "disgust"
    assert clips["test_dia0_utt0"].video.name == "dia0_utt0.mp4"
    assert Counter(c.split for c in clips.values()) == {"train": 3, "dev": 2, "test": 2}


def test_flat_layout_and_a_missing_split(tmp_path: Path, capsys):
    root = make_meld(tmp_path, nested_train=False)
    (root / "test_sent_emo.csv").unlink()
    assert main(["manifest", "meld", "--root", str(root), "--out", str(tmp_path / "m.csv")]) == 0
    assert "no test_sent_emo.csv under --root: split(s) test left out" in capsys.readouterr().err


def test_a_missing_video_as_in_the_real_dev_set(tmp_path: Path):
    root = make_meld(tmp_path)
    (root / "dev_splits_complete" / "dia0_utt1.mp4").unlink()
    with pytest.raises(ManifestError, match=r"1 of 7 MELD clip\(s\) have no media file: "
                                            r".*dev_splits_complete/dia0_utt1.mp4"):
        build_manifest("meld", root, tmp_path / "m.csv")
    path, counts = build_manifest("meld", root, tmp_path / "m.csv", skip_missing=True)
    assert counts["clips"] == 6 and counts["missing"] == 1


@pytest.mark.parametrize("row, message", [
    ('4,Hi.,Joey,happiness,positive,0,3,8,21,"a","b"\n', "line 5: unknown emotion 'happiness'"),
    ('4,Hi.,Joey,joy,happy,0,3,8,21,"a","b"\n', "line 5: unknown sentiment 'happy'"),
    ('4,Hi.,Joey,joy,positive,x,3,8,21,"a","b"\n', "line 5: Dialogue_ID 'x' is not a whole"),
    ('4,Hi, there.,Joey,joy,positive,0,3,8,21,"a","b"\n', "line 5: 12 field"),
    ('4,Hi.,Joey,joy,positive,0,2,8,21,"a","b"\n', "lists 1 utterance\\(s\\) twice in one "
                                                   "split: train_dia0_utt2"),
])
def test_malformed_rows_name_the_file_and_line(tmp_path: Path, row, message):
    root = make_meld(tmp_path)
    path = root / "train" / "train_sent_emo.csv"
    path.write_text(path.read_text() + row)
    with pytest.raises(ManifestError, match=message):
        build_manifest("meld", root, tmp_path / "m.csv")


def test_a_folder_without_label_files_is_refused(tmp_path: Path):
    with pytest.raises(ManifestError, match="No MELD label file"):
        build_manifest("meld", tmp_path, tmp_path / "m.csv")
    write(tmp_path / "dev_sent_emo.csv", "Utterance,Speaker\nHi,Joey\n")
    with pytest.raises(ManifestError, match="lacks column\\(s\\) Emotion, Sentiment"):
        build_manifest("meld", tmp_path, tmp_path / "m.csv")
