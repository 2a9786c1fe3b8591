"""The RAVDESS importer: generated Actor folders, bad names, and the real corpus when present."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from real_data import shared_data
from mer_features.cli import main
from mer_features.errors import ManifestError
from mer_features.corpora.manifest import read_manifest
from mer_features.corpora.ravdess import build_ravdess_manifest, parse_name


def test_file_names_map_onto_the_mer_classes(tmp_path: Path):
    root = tmp_path / "ravdess"
    (root / "Actor_03").mkdir(parents=True)
    (root / "Actor_04").mkdir(parents=True)
    wave = np.zeros(1600, np.float32)
    names = ["03-01-06-01-01-01-03", "03-01-02-02-02-01-03", "03-01-08-01-01-01-04",
             "03-01-07-02-01-02-04"]
    for n in names:
        sf.write(root / f"Actor_{n[-2:]}" / f"{n}.wav", wave, 16000)
    path, counts = build_ravdess_manifest(root, tmp_path / "m.csv")
    assert counts == {"clips": 4, "labelled": 2, "unlabelled": 2}
    clips = {c.name: c for c in read_manifest(path)}
    assert clips["03-01-06-01-01-01-03"].discrete == "worried"  # fearful
    assert clips["03-01-08-01-01-01-04"].discrete == "surprise"
    assert clips["03-01-02-02-02-01-03"].discrete is None  # calm: no MER class
    assert clips["03-01-02-02-02-01-03"].split == "actor03"
    assert clips["03-01-02-02-02-01-03"].text == "Dogs are sitting by the door"
    assert parse_name("03-01-05-02-01-01-12")["gender"] == "female"


def test_bad_folders_and_names(tmp_path: Path):
    with pytest.raises(ManifestError, match="not found"):
        build_ravdess_manifest(tmp_path / "nope", tmp_path / "m.csv")
    (tmp_path / "r" / "Actor_01").mkdir(parents=True)
    with pytest.raises(ManifestError, match="No .wav or .flac"):
        build_ravdess_manifest(tmp_path / "r", tmp_path / "m.csv")
    sf.write(tmp_path / "r" / "Actor_01" / "take2.wav", np.zeros(10, np.float32), 16000)
    with pytest.raises(ManifestError, match="not named like RAVDESS"):
        build_ravdess_manifest(tmp_path / "r", tmp_path / "m.csv")


@pytest.mark.shared_data
def test_the_real_corpus(tmp_path: Path, capsys):
    root = shared_data("ravdess")
    assert main(["manifest", "ravdess", "--root", str(root), "--out", str(tmp_path / "r.csv")]) == 0
    assert "720 clips, 528 with one of the six MER classes" in capsys.readouterr().out
    import csv

    mer6 = {Path(r["file"]).stem: r["mer6"] or None
            for r in csv.DictReader(open(root / "labels.csv", encoding="utf-8"))}
    clips = list(read_manifest(tmp_path / "r.csv"))
    assert {c.name: c.discrete for c in clips} == mer6  # same mapping as the corpus's own column


def test_native_labels_keep_the_eight_classes(tmp_path: Path, capsys):
    root = tmp_path / "ravdess"
    names = ["03-01-06-01-01-01-03", "03-01-02-02-02-01-03", "03-01-07-01-01-01-04"]
    for n in names:
        (root / f"Actor_{n[-2:]}").mkdir(parents=True, exist_ok=True)
        sf.write(root / f"Actor_{n[-2:]}" / f"{n}.wav", np.zeros(1600, np.float32), 16000)
    out = tmp_path / "m.csv"
    assert main(["manifest", "ravdess", "--root", str(root), "--out", str(out),
                 "--labels", "native"]) == 0
    assert capsys.readouterr().out.strip() == f"{out}: 3 clips, 3 classes (calm 1, disgust 1, " \
                                              "fearful 1)"
    clips = {c.name: c.discrete for c in read_manifest(out, classes=None)}
    assert clips == {"03-01-06-01-01-01-03": "fearful", "03-01-02-02-02-01-03": "calm",
                     "03-01-07-01-01-01-04": "disgust"}
    (tmp_path / "map.json").write_text('{"fearful": "worried", "*": null}')
    assert main(["manifest", "ravdess", "--root", str(root), "--out", str(out), "--labels",
                 "native", "--label-map", str(tmp_path / "map.json")]) == 0
    assert "every other class dropped: 2 clip(s) (calm 1, disgust 1)" in capsys.readouterr().err
    assert [c.discrete for c in read_manifest(out)] == ["worried"]
    with pytest.raises(ManifestError, match="labels must be one of mer6, native"):
        build_ravdess_manifest(root, out, labels="eight")


@pytest.mark.shared_data
def test_the_real_corpus_with_its_own_classes(tmp_path: Path, capsys):
    """The default (mer6) output is unchanged by the option; native gives labels.csv's 8."""
    import csv

    root = shared_data("ravdess")
    path, counts = build_ravdess_manifest(root, tmp_path / "native.csv", labels="native")
    assert counts["classes"] == {"angry": 96, "calm": 96, "disgust": 96, "fearful": 96,
                                 "happy": 96, "neutral": 48, "sad": 96, "surprised": 96}
    emotion = {Path(r["file"]).stem: r["emotion"]
               for r in csv.DictReader(open(root / "labels.csv", encoding="utf-8"))}
    assert {c.name: c.discrete for c in read_manifest(path, classes=None)} == emotion
    mer6 = (tmp_path / "mer6.csv", tmp_path / "default.csv")
    build_ravdess_manifest(root, mer6[0], labels="mer6")
    build_ravdess_manifest(root, mer6[1])
    assert mer6[0].read_bytes() == mer6[1].read_bytes()


@pytest.mark.parametrize("files, words", [
    # a file whose actor code disagrees with its folder would give a second row of one name
    ({"Actor_01": ["03-01-05-01-01-01-02"], "Actor_02": ["03-01-05-01-01-01-02"]},
     ("1 file(s)", "Actor_01/03-01-05-01-01-01-02.wav (actor 02)", "another actor's folder")),
    ({"Actor_01": ["03-01-05-01-01-01-01.wav", "03-01-05-01-01-01-01.flac"]},
     ("1 RAVDESS clip(s)", "are there twice", "Keep one file per clip")),
], ids=["actor-code-disagrees-with-folder", "same-clip-as-wav-and-flac"])
def test_a_name_is_never_written_twice(tmp_path: Path, files: dict, words: tuple):
    root = tmp_path / "r"
    for folder, names in files.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            file = name if "." in name else f"{name}.wav"
            sf.write(root / folder / file, np.zeros(1600, np.float32), 16000)
    with pytest.raises(ManifestError) as info:
        build_ravdess_manifest(root, tmp_path / "m.csv")
    for w in words:
        assert w in str(info.value)
    assert not (tmp_path / "m.csv").exists()
