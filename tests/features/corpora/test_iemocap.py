"""The IEMOCAP importer on a copy of the release layout (Session*/dialog/EmoEvaluation, ...)."""

from collections import Counter
from pathlib import Path

import pytest

from mer_features.cli import main
from mer_features.corpora import build_manifest
from mer_features.corpora.manifest import read_manifest
from mer_features.errors import ManifestError

from .releases import tiny_wav, write

HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"
UTTERANCES = {
    ("Session1", "Ses01F_impro01"): [
        ("Ses01F_impro01_F000", "neu", "2.5000, 2.5000, 2.5000", "Excuse me."),
        ("Ses01F_impro01_M000", "exc", "4.0000, 3.5000, 3.0000", "Yeah."),
        ("Ses01F_impro01_F001", "xxx", "2.0000, 3.0000, 3.5000", "Is there a problem?"),
    ],
    ("Session1", "Ses01M_script01_1"): [
        ("Ses01M_script01_1_M012", "fru", "1.5000, 4.0000, 4.5000", "What do you mean?"),
        ("Ses01M_script01_1_F003", "hap", "5.0000, 1.0000, 2.0000", "I'm happy."),
    ],
    ("Session2", "Ses02F_impro05"): [
        ("Ses02F_impro05_M007", "ang", "1.0000, 5.0000, 5.0000", "Get out."),
        ("Ses02F_impro05_F002", "sad", "1.5000, 1.5000, 2.0000", "I know."),
    ],
}


def make_iemocap(tmp_path: Path) -> Path:
    root = tmp_path / "IEMOCAP_full_release"
    for (session, dialog), utterances in UTTERANCES.items():
        lines, transcript = [HEADER], []
        for name, code, vad, text in utterances:
            lines.append(f"[6.2901 - 8.2357]\t{name}\t{code}\t[{vad}]\n"
                         "C-E1:\tNeutral;\t()\nA-E3:\tval 3; act 2; dom  2;\t()\n\n")
            transcript.append(f"{name} [006.2901-008.2357]: {text}\n")
            tiny_wav(root / session / "sentences" / "wav" / dialog / f"{name}.wav")
        transcript.append(f"{dialog}_MXX0 [010.0000-011.0000]: overlapped speech\n")
        write(root / session / "dialog" / "EmoEvaluation" / f"{dialog}.txt", "".join(lines))
        write(root / session / "dialog" / "transcriptions" / f"{dialog}.txt",
              "".join(transcript))
    for session in ("Session1", "Session2"):  # the release's sub-folders and macOS leftovers
        write(root / session / "dialog" / "EmoEvaluation" / "Categorical" / "x_cat.txt", "[x")
        write(root / session / "dialog" / "EmoEvaluation" / "._Ses01F_impro01.txt", "\x00\x01")
    return root


def test_every_utterance_with_its_class_dimensions_and_session(tmp_path: Path, capsys):
    root = make_iemocap(tmp_path)
    out = tmp_path / "m.csv"
    assert main(["manifest", "iemocap", "--root", str(root), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == (
        f"{out}: 7 utterances, 6 classes (angry 1, excited 1, frustrated 1, happy 1, "
        "neutral 1, sad 1), 1 unlabelled, 2 sessions, 4 speakers")
    clips = {c.name: c for c in read_manifest(out, classes=None)}
    neutral = clips["Ses01F_impro01_F000"]
    assert (neutral.discrete, neutral.valence, neutral.text) == ("neutral", -1.25, "Excuse me.")
    assert neutral.extra == {"emotion": "neu", "arousal": "-1.25", "dominance": "-1.25",
                             "session": "Session1", "speaker": "Ses01F", "gender": "female",
                             "dialog": "Ses01F_impro01", "mode": "improvised", "fold": "1",
                             "start": "6.2901", "end": "8.2357"}
    frustrated = clips["Ses01M_script01_1_M012"]
    assert frustrated.valence == -3.75 and frustrated.extra["arousal"] == "2.5"  # (v - 3) * 2.5
    assert frustrated.extra["mode"] == "scripted" and frustrated.extra["speaker"] == "Ses01M"
    assert clips["Ses01F_impro01_M000"].extra["speaker"] == "Ses01M"  # the speaker, not the dialog
    assert clips["Ses01F_impro01_F001"].discrete is None  # xxx: no agreement
    assert clips["Ses02F_impro05_M007"].extra["fold"] == "2"
    assert clips["Ses02F_impro05_M007"].valence == -5.0


def test_the_four_class_protocols(tmp_path: Path, capsys):
    root = make_iemocap(tmp_path)
    out = tmp_path / "m.csv"
    assert main(["manifest", "iemocap", "--root", str(root), "--out", str(out), "--protocol",
                 "4class"]) == 0
    captured = capsys.readouterr()
    assert "'excited' -> happy: 1 clip(s)" in captured.err
    assert "every other class dropped: 1 clip(s) (frustrated 1)" in captured.err
    assert "1 utterance(s) without an agreed class (xxx) dropped" in captured.err
    assert Counter(c.discrete for c in read_manifest(out, classes=None)) == {
        "happy": 2, "neutral": 1, "angry": 1, "sad": 1}
    build_manifest("iemocap", root, out, protocol="4class-no-excited")
    assert Counter(c.discrete for c in read_manifest(out, classes=None)) == {
        "happy": 1, "neutral": 1, "angry": 1, "sad": 1}


def test_missing_audio_is_listed_and_skipped_on_request(tmp_path: Path):
    root = make_iemocap(tmp_path)
    wav = root / "Session2" / "sentences" / "wav" / "Ses02F_impro05" / "Ses02F_impro05_F002.wav"
    wav.unlink()
    with pytest.raises(ManifestError, match=r"1 of 7 IEMOCAP clip\(s\) have no media file: "
                                            r".*Ses02F_impro05_F002.wav"):
        build_manifest("iemocap", root, tmp_path / "m.csv")
    path, counts = build_manifest("iemocap", root, tmp_path / "m.csv", skip_missing=True)
    assert counts["clips"] == 6 and counts["missing"] == 1


T = "[6.2901 - 8.2357]\t"


@pytest.mark.parametrize("line, message", [
    (T + "Ses01F_impro01_F009\tneu\t[2.5, 2.5]", "line 4: not read as"),
    (T + "Ses01F_impro01_F009\tjoy\t[2.5, 2.5, 2.5]", "line 4: unknown emotion code 'joy'"),
    (T + "Ses01F_impro01_F009\tneu\t[2.5, 6.5, 2.5]",
     "line 4: rating '6.5' is not a number on the corpus's 1-5 scale"),
    (T + "Ses01F_impro01_F009\tneu\t[2.5, nan, 2.5]", "line 4: rating 'nan'"),
    (T + "not_an_utterance\tneu\t[2.5, 2.5, 2.5]",
     "line 4: 'not_an_utterance' is not an IEMOCAP utterance id"),
    (T + "Ses01F_impro01_F000\tneu\t[2.5, 2.5, 2.5]", "'Ses01F_impro01_F000' is labelled in both"),
])
def test_malformed_label_lines_name_the_file_and_line(tmp_path: Path, line, message):
    root = make_iemocap(tmp_path)
    path = root / "Session1" / "dialog" / "EmoEvaluation" / "Ses01M_script01_1.txt"
    text = path.read_text().split("\n")
    path.write_text("\n".join([*text[:3], line, *text[3:]]))
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace("[", r"\[")):
        build_manifest("iemocap", root, tmp_path / "m.csv")


def test_a_folder_without_sessions_is_refused(tmp_path: Path):
    with pytest.raises(ManifestError, match="No Session1/ ... Session5/ folders"):
        build_manifest("iemocap", tmp_path, tmp_path / "m.csv")
    (tmp_path / "Session1").mkdir()
    with pytest.raises(ManifestError, match="EmoEvaluation' not found"):
        build_manifest("iemocap", tmp_path, tmp_path / "m.csv")
    with pytest.raises(ManifestError, match="protocol must be one of all, 4class"):
        build_manifest("iemocap", tmp_path, tmp_path / "m.csv", protocol="5class")
