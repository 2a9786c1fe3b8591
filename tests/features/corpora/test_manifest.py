from pathlib import Path

import pytest

from mer_features import EMOTIONS
from mer_features.errors import ManifestError
from mer_features.corpora.manifest import (check_inputs, parse_manifest, read_manifest,
                                           write_manifest)


def test_reads_rows_resolves_relative_paths_and_keeps_extra_columns(tmp_path: Path):
    (tmp_path / "media").mkdir()
    (tmp_path / "media" / "a.wav").write_bytes(b"x")
    (tmp_path / "manifest.csv").write_text(
        "name,audio,text,discrete,valence,split,speaker\n"
        "a,media/a.wav,hello there,Happy,1.5,train,s1\n"
        "b,,,, ,test,s2\n", encoding="utf-8")
    m = read_manifest(tmp_path / "manifest.csv")
    assert m.names == ["a", "b"]
    a, b = m.clips
    assert a.audio == tmp_path / "media" / "a.wav" and a.audio_source == a.audio
    assert (a.discrete, a.valence, a.split, a.text) == ("happy", 1.5, "train", "hello there")
    assert a.extra == {"speaker": "s1"}
    assert (b.discrete, b.valence, b.audio) == (None, None, None)
    assert m["b"].line == 3


def test_video_audio_track_is_the_default_audio_source(tmp_path: Path):
    (tmp_path / "v.mp4").write_bytes(b"x")
    m = parse_manifest("name,video\nv,v.mp4\n", base_dir=tmp_path)
    assert m.clips[0].audio_source == tmp_path / "v.mp4"


def test_every_problem_is_reported_with_its_line(tmp_path: Path):
    text = ("name,audio,discrete,valence\n"
            "a,missing.wav,happy,1\n"
            "b,,joyful,\n"
            "c,,sad,very\n"
            "a,,,\n"
            ",x.wav,,\n"
            "d,,sad,nan\n")
    with pytest.raises(ManifestError) as info:
        parse_manifest(text, base_dir=tmp_path, source="'m.csv'")
    message = str(info.value)
    assert "has 6 problem(s)" in message
    assert "line 2 (clip 'a'): audio file 'missing.wav' not found" in message
    assert "line 3 (clip 'b'): unknown discrete label 'joyful'" in message
    assert "line 4 (clip 'c'): valence 'very' is not a finite number" in message
    assert "line 5 (clip 'a'): duplicate name (first used on line 2)" in message
    assert "line 6: empty name" in message
    assert "line 7 (clip 'd'): valence 'nan'" in message
    assert "Fix these rows" in message


def test_long_problem_lists_are_cut_at_twenty_with_a_count(tmp_path: Path):
    rows = "".join(f"c{i},nope{i}.wav\n" for i in range(45))
    with pytest.raises(ManifestError) as info:
        parse_manifest("name,audio\n" + rows, base_dir=tmp_path)
    message = str(info.value)
    assert "has 45 problem(s)" in message and "... and 25 more problem(s)" in message
    assert message.count("not found") == 20


@pytest.mark.parametrize("text, expected", [
    ("video,audio\nx,y\n", "no 'name' column"),
    ("", "is empty"),
    ("name,name\na,b\n", "appear more than once"),
    ("name,audio\na,x.wav,extra\n", "has 3 fields, the header has 2"),
])
def test_malformed_headers_and_rows(tmp_path: Path, text: str, expected: str):
    with pytest.raises(ManifestError, match=expected):
        parse_manifest(text, base_dir=tmp_path, check_files=False)


def test_non_utf8_transcript_fails_its_clip_not_the_manifest(tmp_path: Path):
    path = tmp_path / "m.csv"
    path.write_bytes("name,text\na,caf\xe9\nb,fine\n".encode("latin-1"))
    m = read_manifest(path)
    a, b = m.clips
    assert a.invalid_utf8 == {"text"} and a.text == "caf\ufffd"
    assert b.invalid_utf8 == frozenset() and b.text == "fine"
    path.write_bytes("name,text\nd\xe9j\xe0,x\n".encode("latin-1"))
    with pytest.raises(ManifestError, match="line 2: column\\(s\\) name are not valid UTF-8"):
        read_manifest(path)


def test_missing_manifest_file(tmp_path: Path):
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(tmp_path / "nope.csv")


def test_check_inputs_requires_a_media_column_and_can_skip_missing(tmp_path: Path):
    (tmp_path / "a.wav").write_bytes(b"x")
    m = parse_manifest("name,text\na,hi\n", base_dir=tmp_path)
    columns, media = ("video", "audio"), lambda clip: clip.audio_source
    with pytest.raises(ManifestError, match="no 'video' or 'audio' column"):
        check_inputs(m, "audio", columns, media)
    m = parse_manifest("name,audio\na,a.wav\nb,b.wav\nc,\n", base_dir=tmp_path, check_files=False)
    with pytest.raises(ManifestError, match="`skip_missing`"):
        check_inputs(m, "audio", columns, media)
    usable, missing = check_inputs(m, "audio", columns, media, skip_missing=True)
    assert [c.name for c in usable] == ["a"]
    assert [(c.name, r.split(" ")[0]) for c, r in missing] == [("b", "file"), ("c", "no")]


def test_write_then_read_round_trip(tmp_path: Path):
    rows = [{"name": "x", "text": 'quote " and, comma', "discrete": "sad", "valence": -1.25}]
    path = write_manifest(tmp_path / "sub" / "m.csv", rows)
    clip = read_manifest(path).clips[0]
    assert (clip.text, clip.discrete, clip.valence) == ('quote " and, comma', "sad", -1.25)


def test_one_pass_reports_rows_transcripts_and_missing_files_together(tmp_path: Path):
    """A duplicate name does not hide the bad label and the bad valence on its row, and the clips whose file is missing come in the same message as the rows' problems (not in
    a second run), cut at 20 lines with a count of the rest."""
    from mer_features.modalities import get_stage

    read_manifest_for = get_stage("audio")().read_manifest
    (tmp_path / "a.wav").write_bytes(b"x")
    rows = "".join(f"m{i},m{i}.wav,,\n" for i in range(45))
    text = "name,audio,discrete,valence\na,a.wav,happy,1\na,a.wav,joyful,abc\n" + rows
    (tmp_path / "m.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError) as info:  # declared classes: 'joyful' is refused
        read_manifest_for(tmp_path / "m.csv", classes=EMOTIONS)
    message = str(info.value)
    assert "has 48 problem(s)" in message and "... and 28 more problem(s)" in message
    assert "line 3 (clip 'a'): duplicate name (first used on line 2)" in message
    assert "line 3 (clip 'a'): unknown discrete label 'joyful'" in message
    assert "line 3 (clip 'a'): valence 'abc' is not a finite number" in message
    assert "line 4 (clip 'm0'): file" in message and "Fix these rows" in message
    assert "`skip_missing`" in message  # the library names the parameter; the CLI, its flag
    # with --skip-missing only the rows' problems remain
    with pytest.raises(ManifestError) as info:
        read_manifest_for(tmp_path / "m.csv", skip_missing=True, classes=EMOTIONS)
    assert "has 3 problem(s)" in str(info.value) and "skip_missing" not in str(info.value)
    # without declared classes any label is read (the label set is the data's): 'joyful' is
    # no problem, the duplicate name, the bad valence and the missing files still are
    with pytest.raises(ManifestError) as info:
        read_manifest_for(tmp_path / "m.csv")
    assert "has 47 problem(s)" in str(info.value) and "joyful" not in str(info.value)


@pytest.mark.parametrize("value, number", [("-2.5", -2.5), ("3", 3.0), (".5", 0.5),
                                           ("+1e-1", 0.1), ("5.", 5.0)])
def test_numbers_that_parse(value: str, number: float):
    from mer_features.corpora.manifest import parse_number

    assert parse_number(value) == number


@pytest.mark.parametrize("value", ["0_5", "inf", "-Infinity", "nan", "0x1", "1,5", "\u0665",
                                   "1e999", "", "1 2", "e3", "."])
def test_numbers_that_do_not(value: str):
    from mer_features.corpora.manifest import parse_number

    assert parse_number(value) is None


def test_a_capitalised_extra_column_is_fine_when_the_real_one_is_there(tmp_path: Path):
    m = parse_manifest("name,split,Split\na,train,fold1\n", base_dir=tmp_path)
    assert m.clips[0].split == "train" and m.clips[0].extra == {"Split": "fold1"}


def test_a_shard_is_validated_whole_and_selected(tmp_path: Path):
    from mer_features.modalities import get_stage

    read_manifest_for = get_stage("audio")().read_manifest
    for name in "abc":
        (tmp_path / f"{name}.wav").write_bytes(b"x")
    (tmp_path / "m.csv").write_text("name,audio\na,a.wav\nb,b.wav\nc,c.wav\nd,d.wav\n")
    with pytest.raises(ManifestError, match="line 5 \\(clip 'd'\\)"):
        read_manifest_for(tmp_path / "m.csv")  # d's file is missing
    manifest, usable, missing = read_manifest_for(tmp_path / "m.csv",
                                                  select=lambda n: n in "ab")
    assert manifest.names == ["a", "b"] and [c.name for c in usable] == ["a", "b"]
