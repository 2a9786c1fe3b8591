"""The EmoDB importer on a copy of the release layout (wav/03a01Fa.wav ...)."""

from collections import Counter
from pathlib import Path

import pytest

from mer_features.cli import main
from mer_features.corpora import build_manifest
from mer_features.corpora.emodb import parse_name
from mer_features.corpora.manifest import read_manifest
from mer_features.errors import ManifestError

from .releases import tiny_wav, write

FILES = ["03a01Fa", "03a01Nc", "08b10Wb", "09a05La", "10b03Ea", "13a07Aa", "16b09Ta"]


def make_emodb(tmp_path: Path, names=FILES) -> Path:
    root = tmp_path / "emodb"
    for name in names:
        tiny_wav(root / "wav" / f"{name}.wav")
    write(root / "erkennung.txt", "release files beside wav/ are ignored\n")
    (root / "lab").mkdir()
    return root


def test_file_names_give_speaker_text_and_the_seven_classes(tmp_path: Path, capsys):
    root = make_emodb(tmp_path)
    out = tmp_path / "m.csv"
    assert main(["manifest", "emodb", "--root", str(root), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{out}: 7 clips, 7 classes (anger 1, boredom 1, disgust 1, fear 1, happiness 1, "
        "neutral 1, sadness 1), 6 speakers")
    clips = {c.name: c for c in read_manifest(out, classes=None)}
    happy = clips["03a01Fa"]
    assert (happy.discrete, happy.text) == ("happiness", "Der Lappen liegt auf dem Eisschrank.")
    assert happy.extra == {"emotion": "F", "speaker": "03", "gender": "male", "age": "31",
                           "text_code": "a01", "version": "a"}
    assert clips["08b10Wb"].discrete == "anger" and clips["08b10Wb"].extra["gender"] == "female"
    assert clips["13a07Aa"].discrete == "fear" and clips["16b09Ta"].discrete == "sadness"
    assert clips["10b03Ea"].text.startswith("An den Wochenenden")  # non-ASCII text kept
    assert clips["13a07Aa"].audio.is_file()


def test_a_label_map_onto_mers_classes_validates(tmp_path: Path, capsys):
    root = make_emodb(tmp_path)
    write(tmp_path / "mer.json", '{"anger": "angry", "happiness": "happy", "sadness": "sad", '
                                 '"fear": "worried", "neutral": "neutral", "*": null}')
    out = tmp_path / "m.csv"
    assert main(["manifest", "emodb", "--root", str(root), "--out", str(out), "--label-map",
                 str(tmp_path / "mer.json")]) == 0
    err = capsys.readouterr().err
    assert "every other class dropped: 2 clip(s) (boredom 1, disgust 1)" in err
    assert Counter(c.discrete for c in read_manifest(out)) == {  # MER's own validation
        "angry": 1, "happy": 1, "sad": 1, "worried": 1, "neutral": 1}


@pytest.mark.parametrize("name, message", [
    ("03a01Xa", "unknown emotion letter 'X'"),
    ("05a01Fa", "unknown speaker '05'"),
    ("03c01Fa", "not named SSTTTEV"),
    ("03a03Fa", "unknown text code 'a03'"),
    ("take2", "not named SSTTTEV"),
])
def test_names_that_are_not_emodb_clips_are_all_listed(tmp_path: Path, name, message):
    root = make_emodb(tmp_path, [*FILES, name, "03a02Qa"])
    with pytest.raises(ManifestError, match=r"^2 file\(s\) in .* are not EmoDB clips") as e:
        build_manifest("emodb", root, tmp_path / "m.csv")
    assert message in str(e.value) and "03a02Qa.wav (unknown emotion letter 'Q'" in str(e.value)
    assert not (tmp_path / "m.csv").exists()


def test_a_root_without_wav_is_refused(tmp_path: Path):
    with pytest.raises(ManifestError, match="EmoDB folder .*wav' not found; point `root`"):
        build_manifest("emodb", tmp_path, tmp_path / "m.csv")
    (tmp_path / "wav").mkdir()
    with pytest.raises(ManifestError, match="No .wav files"):
        build_manifest("emodb", tmp_path, tmp_path / "m.csv")
    assert parse_name("16b10Lb")["gender"] == "female"
