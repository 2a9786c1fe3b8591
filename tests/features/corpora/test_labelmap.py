"""Label maps: the JSON and CSV formats, what each rule touched, and the refusals."""

from pathlib import Path

import pytest

from mer_features.corpora.labelmap import LabelMap, apply_to_rows, read_label_map
from mer_features.errors import ManifestError


def test_rename_merge_drop_and_the_wildcard():
    m = LabelMap.from_mapping({"Excited": "Happy", "hap": "happy", "fru": None, "*": "other"},
                              source="m")
    result = m.apply(["exc", "EXCITED", "hap", "fru", "sur", None, "", "neu"])
    # 'exc' is not 'excited' (names are compared whole): the wildcard takes it
    assert result.labels == ["other", "happy", "happy", None, "other", None, None, "other"]
    assert result.keep == [True, True, True, False, True, True, True, True]
    report = result.report()
    assert "label map m: 'excited' -> happy: 1 clip(s)" in report
    assert "label map m: 'fru' dropped: 1 clip(s)" in report
    assert "label map m: every other class -> other: 3 clip(s) (exc 1, neu 1, sur 1)" in report


def test_wildcard_maps_unlisted_classes_and_rules_do_not_chain():
    m = LabelMap.from_mapping({"a": "b", "b": "c"}, source="m")
    assert m.apply(["a", "b", "z"]).labels == ["b", "c", "z"]  # z kept: no wildcard
    m = LabelMap.from_mapping({"a": "a", "*": None}, source="m")
    result = m.apply(["a", "b", "c"])
    assert result.keep == [True, False, False] and result.dropped == 2
    assert m.classes(["c", "a", "b"]) == ["a"]


def test_a_rule_that_matches_nothing_is_reported():
    result = LabelMap.from_mapping({"exited": "happy"}, source="m").apply(["excited"])
    assert result.labels == ["excited"]
    assert result.report() == ["label map m: 'exited' -> happy: no clip has class 'exited' "
                               "(a typo in the map?)"]


def test_json_and_csv_files_say_the_same(tmp_path: Path):
    (tmp_path / "m.json").write_text('{"exc": "hap", "fru": null, "*": "other"}')
    (tmp_path / "m.csv").write_text("from,to\nexc,hap\n\nfru,\n*,other\n")
    a, b = read_label_map(tmp_path / "m.json"), read_label_map(tmp_path / "m.csv")
    assert a.rules == b.rules == (("exc", "hap"), ("fru", None), ("*", "other"))


def test_apply_to_rows_keeps_other_columns_and_counts(tmp_path: Path):
    rows = [{"name": "a", "discrete": "exc", "speaker": "1"}, {"name": "b", "discrete": "fru"},
            {"name": "c", "discrete": None}]
    kept, lines = apply_to_rows(rows, LabelMap.from_mapping({"exc": "hap", "fru": None},
                                                             source="m"))
    assert kept == [{"name": "a", "discrete": "hap", "speaker": "1"},
                    {"name": "c", "discrete": None}]
    assert lines[-1] == "label map m: 1 clip(s) dropped, 2 kept"
    assert apply_to_rows(rows, None) == (rows, [])


@pytest.mark.parametrize("name, text, message", [
    ("m.json", '{"exc": "hap", "exc": "neu"}', "names class(es) exc twice"),
    ("m.json", '{"exc": "hap", "EXC ": "neu"}', "names class 'exc' twice"),
    ("m.json", '["exc", "hap"]', "must be a JSON object"),
    ("m.json", '{"exc": 3}', "must be a string"),
    ("m.json", '{"exc": ""}', "is empty"),
    ("m.json", '{"exc": "*"}', "can only be a class"),
    ("m.json", "{}", "has no rules"),
    ("m.json", '{"exc": "hap",}', "not valid JSON"),
    ("m.json", '{"a\\tb": "hap"}', "control character"),
    ("m.csv", "class,target\nexc,hap\n", "must be the header 'from,to'"),
    ("m.csv", "from,to\nexc,hap,x\n", "line 2: 3 field(s)"),
    ("m.csv", "from,to\nexc,hap\nexc,neu\n", "line 3: class 'exc' already has a rule"),
    ("m.csv", "", "is empty"),
    ("m.txt", "exc hap", "must end in .json or .csv"),
])
def test_bad_maps_are_refused_in_one_line(tmp_path: Path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ManifestError, match=message.replace("(", r"\(").replace(")", r"\)")
                       .replace("*", r"\*")):
        read_label_map(tmp_path / name)


def test_missing_and_non_utf8_files(tmp_path: Path):
    with pytest.raises(ManifestError, match="not found"):
        read_label_map(tmp_path / "nope.json")
    (tmp_path / "m.csv").write_bytes(b"from,to\n\xff,hap\n")
    with pytest.raises(ManifestError, match="not UTF-8"):
        read_label_map(tmp_path / "m.csv")
