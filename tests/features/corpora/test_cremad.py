"""The CREMA-D importer on a copy of the release layout (AudioWAV/, VideoDemographics.csv)."""

from pathlib import Path

import pytest

from mer_features.cli import main
from mer_features.corpora import build_manifest
from mer_features.corpora.manifest import read_manifest
from mer_features.errors import ManifestError

from .releases import tiny_wav, write

FILES = ["1001_DFA_ANG_XX", "1001_IEO_HAP_HI", "1002_TIE_SAD_LO", "1091_WSI_FEA_MD",
         "1002_ITS_DIS_XX", "1091_IWL_NEU_XX"]
DEMOGRAPHICS = ("ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
                "1002,21,Female,Caucasian,Not Hispanic\n")


def make_cremad(tmp_path: Path, names=FILES, demographics=DEMOGRAPHICS) -> Path:
    root = tmp_path / "CREMA-D"
    for name in names:
        tiny_wav(root / "AudioWAV" / f"{name}.wav")
    write(root / "AudioMP3" / "1001_DFA_ANG_XX.mp3", "other folders are ignored")
    if demographics is not None:
        write(root / "VideoDemographics.csv", demographics)
    return root


def test_actors_sentences_emotions_and_demographics(tmp_path: Path, capsys):
    root = make_cremad(tmp_path)
    out = tmp_path / "m.csv"
    assert main(["manifest", "cremad", "--root", str(root), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == (f"{out}: 6 clips, 6 classes (angry 1, disgust 1, fear 1, "
                                    "happy 1, neutral 1, sad 1), 3 speakers")
    assert "1 actor(s) are not in VideoDemographics.csv (1091)" in captured.err
    clips = {c.name: c for c in read_manifest(out, classes=None)}
    angry = clips["1001_DFA_ANG_XX"]
    assert (angry.discrete, angry.text) == ("angry", "Don't forget a jacket")
    assert angry.extra == {"emotion": "ANG", "intensity": "unspecified", "sentence": "DFA",
                           "speaker": "1001", "gender": "male", "age": "51",
                           "race": "Caucasian", "ethnicity": "Not Hispanic"}
    assert clips["1002_TIE_SAD_LO"].extra["intensity"] == "low"
    assert clips["1091_WSI_FEA_MD"].extra["gender"] == ""


def test_demographics_are_optional(tmp_path: Path, capsys):
    root = make_cremad(tmp_path, demographics=None)
    assert main(["manifest", "cremad", "--root", str(root), "--out", str(tmp_path / "m.csv")]) == 0
    assert "no VideoDemographics.csv" in capsys.readouterr().err


@pytest.mark.parametrize("name, message", [
    ("1001_DFA_JOY_XX", "unknown emotion code 'JOY'"),
    ("1001_ABC_ANG_XX", "unknown sentence code 'ABC'"),
    ("1001_DFA_ANG_ZZ", "unknown intensity code 'ZZ'"),
    ("1001-DFA-ANG-XX", "not named AAAA_SSS_EEE_II"),
])
def test_unknown_codes_are_refused_with_the_files_named(tmp_path: Path, name, message):
    root = make_cremad(tmp_path, [*FILES, name])
    with pytest.raises(ManifestError, match=rf"1 file\(s\) in .* are not CREMA-D clips: "
                                            rf"{name}.wav \({message}"):
        build_manifest("cremad", root, tmp_path / "m.csv")


@pytest.mark.parametrize("table, message", [
    ("ActorID,Age,Sex\n1001,51,Male\n", "lacks column\\(s\\) Race, Ethnicity"),
    (DEMOGRAPHICS + "1001,52,Male,Asian,Not Hispanic\n", "line 4: actor 1001 is listed twice"),
    (DEMOGRAPHICS + "10x3,52,Male,Asian,Not Hispanic\n", "line 4: ActorID '10x3'"),
    (DEMOGRAPHICS + "1003,52,Male\n", "line 4: 3 field\\(s\\), the header has 5"),
])
def test_a_broken_demographics_table_names_its_line(tmp_path: Path, table, message):
    root = make_cremad(tmp_path, demographics=table)
    with pytest.raises(ManifestError, match=f"VideoDemographics.csv'.*{message}"):
        build_manifest("cremad", root, tmp_path / "m.csv")


def test_a_root_without_audiowav_is_refused(tmp_path: Path):
    with pytest.raises(ManifestError, match="AudioWAV' not found; point `root`"):
        build_manifest("cremad", tmp_path, tmp_path / "m.csv")
