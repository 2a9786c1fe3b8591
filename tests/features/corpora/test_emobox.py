"""The EmoBox importer: a copy of EmoBox's data/<corpus> layout with tiny audio, its hostile
variants, and EmoBox's own RAVDESS files with the real audio of actors 1-12 when present."""

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from real_data import shared_data
from mer_features.cli import main
from mer_features.corpora import build_manifest
from mer_features.corpora.manifest import read_manifest
from mer_features.errors import ManifestError

from .releases import tiny_wav, write

RAVDESS_MAP = {"Angry": "Angry", "Surprised": "Surprise", "Sad": "Sad", "Disgust": "Disgust",
               "Happy": "Happy", "Calm": "Calm", "Neutral": "Neutral", "Fearful": "Fear"}
EMOS = {"05": "Angry", "02": "Calm", "06": "Fearful", "01": "Neutral"}
PREFIX = "downloads/ravdess/audio/Audio_Speech_Actors_01-24"


def _record(stem: str, actor: str, **extra) -> dict:
    return {"key": f"ravdess-{stem}", "dataset": "ravdess",
            "wav": f"{PREFIX}/Actor_{actor}/{stem}.wav", "type": "raw", "sample_rate": 16000,
            "length": 0.1, "task": "category", "emo": EMOS[stem[6:8]], "channel": 1, **extra}


def _jsonl(path: Path, records: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in records))


def make_emobox(tmp_path: Path, *, actors=("01", "02", "03", "04"), folds=2,
                audio="downloads", flac=False) -> tuple[Path, Path, list[dict]]:
    """data/ravdess in EmoBox's layout: 4 clips per actor, ``folds`` folds of held-out actors;
    the audio either under ROOT/downloads/... or (audio='actors') under ROOT/Actor_NN/."""
    data, root = tmp_path / "data" / "ravdess", tmp_path / "root"
    records = [_record(f"03-01-{e}-01-01-01-{a}", a) for a in actors for e in EMOS]
    _jsonl(data / "ravdess.jsonl", records)
    write(data / "label_map.json", json.dumps(RAVDESS_MAP, indent=4))
    for k in range(1, folds + 1):
        held = set(actors[k - 1::folds])
        test = [r for r in records if r["wav"].split("/")[-2][-2:] in held]
        train = [r for r in records if r not in test]
        _jsonl(data / f"fold_{k}" / f"ravdess_test_fold_{k}.jsonl", test)
        _jsonl(data / f"fold_{k}" / f"ravdess_train_fold_{k}.jsonl", train)
    for r in records:
        relative = r["wav"] if audio == "downloads" else r["wav"][len(PREFIX) + 1:]
        path = root / relative
        tiny_wav(path.with_suffix(".flac") if flac else path)
    return data, root, records


def test_the_protocol_becomes_one_manifest_with_folds(tmp_path: Path):
    data, root, records = make_emobox(tmp_path)
    path, counts = build_manifest("emobox", root, tmp_path / "m.csv", data=data)
    assert counts["clips"] == 16 and counts["missing"] == 0 and counts["folds"] == 2
    assert counts["classes"] == {"angry": 4, "calm": 4, "fear": 4, "neutral": 4}
    clips = {c.name: c for c in read_manifest(path, classes=None)}
    assert len(clips) == 16
    clip = clips["ravdess-03-01-06-01-01-01-03"]
    assert clip.discrete == "fear"                     # Fearful through label_map.json
    assert clip.extra["emo"] == "Fearful" and clip.extra["speaker"] == "actor03"
    assert clip.extra["fold"] == "1"                   # actors 01 and 03 held out in fold 1
    assert clip.audio.is_file() and clip.audio.name == "03-01-06-01-01-01-03.wav"
    assert {c.extra["fold"] for c in clips.values() if c.extra["speaker"] == "actor02"} == {"2"}
    assert "partition" not in read_manifest(path, classes=None).columns  # k-fold: no partition
    # every actor is held out in exactly one fold
    folds_of = defaultdict(set)
    for c in clips.values():
        folds_of[c.extra["speaker"]].add(c.extra["fold"])
    assert all(len(f) == 1 for f in folds_of.values())
    # MER's validation refuses the native classes unless told which set to accept
    with pytest.raises(ManifestError, match="unknown discrete label 'calm'"):
        read_manifest(path)


def test_audio_converted_to_flac_in_another_layout(tmp_path: Path, capsys):
    data, root, _ = make_emobox(tmp_path, audio="actors", flac=True)
    out = tmp_path / "m.csv"
    assert main(["manifest", "emobox", "--data", str(data), "--root", str(root), "--out",
                 str(out)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: None of the 16 clips") and "set --audio-ext to flac" in err
    assert err.count("\n") == 1
    assert main(["manifest", "emobox", "--data", str(data), "--root", str(root), "--out",
                 str(out), "--audio-ext", "flac"]) == 0
    captured = capsys.readouterr()
    assert "16 clips of EmoBox corpus 'ravdess', 4 classes" in captured.out
    assert "first 4 folder(s) of each EmoBox 'wav' path dropped" in captured.err
    assert all(c.audio.suffix == ".flac" for c in read_manifest(out, classes=None))


def test_missing_audio_is_listed_at_once_and_skipped_on_request(tmp_path: Path, capsys):
    data, root, records = make_emobox(tmp_path)
    for r in records[:5]:
        (root / r["wav"]).unlink()
    out = tmp_path / "m.csv"
    with pytest.raises(ManifestError, match=r"^5 of 16 ravdess clip\(s\) have no media file") as e:
        build_manifest("emobox", root, out, data=data)
    assert "and 0 more" not in str(e.value) and "`skip_missing`" in str(e.value)
    listed = (tmp_path / "m.csv.missing.txt").read_text().splitlines()
    assert sorted(listed) == sorted(str(root / r["wav"]) for r in records[:5])
    assert not out.exists()
    assert main(["manifest", "emobox", "--data", str(data), "--root", str(root), "--out",
                 str(out), "--skip-missing"]) == 0
    assert "5 clip(s) left out, their audio missing" in capsys.readouterr().err
    assert len(read_manifest(out, classes=None)) == 11
    for r in records[:5]:  # the audio is back: the stale list goes
        tiny_wav(root / r["wav"])
    build_manifest("emobox", root, out, data=data)
    assert not (tmp_path / "m.csv.missing.txt").exists()


def test_absolute_wav_paths_are_used_as_they_are(tmp_path: Path):
    data, root, records = make_emobox(tmp_path)
    lines = [json.dumps({**r, "wav": str(root / r["wav"])}) if i < 3 else json.dumps(r)
             for i, r in enumerate(records)]
    write(data / "ravdess.jsonl", "\n".join(lines) + "\n")
    path, counts = build_manifest("emobox", root, tmp_path / "m.csv", data=data)
    assert counts["clips"] == 16 and counts["missing"] == 0


def test_a_one_fold_protocol_keeps_its_partitions(tmp_path: Path):
    data, root, records = make_emobox(tmp_path, folds=1)
    # a corpus with an official validation set (MELD, MSP-Podcast): train/valid/test of fold 1
    train = [r for r in records if r["wav"].split("/")[-2][-2:] in ("02", "04")]
    _jsonl(data / "fold_1" / "ravdess_test_fold_1.jsonl", [r for r in records if r not in train])
    _jsonl(data / "fold_1" / "ravdess_train_fold_1.jsonl", train[:4])
    _jsonl(data / "fold_1" / "ravdess_valid_fold_1.jsonl", train[4:])
    path, counts = build_manifest("emobox", root, tmp_path / "m.csv", data=data)
    clips = list(read_manifest(path, classes=None))
    parts = Counter((c.split, c.extra["partition"], c.extra["fold"]) for c in clips)
    assert parts == {("test", "test", "1"): 8, ("train", "train", ""): 4,
                     ("valid", "valid", ""): 4}


def test_a_label_map_applies_after_emoboxs(tmp_path: Path, capsys):
    data, root, _ = make_emobox(tmp_path)
    (tmp_path / "map.csv").write_text("from,to\nfear,\ncalm,neutral\n")
    out = tmp_path / "m.csv"
    assert main(["manifest", "emobox", "--data", str(data), "--root", str(root), "--out",
                 str(out), "--label-map", str(tmp_path / "map.csv")]) == 0
    err = capsys.readouterr().err
    assert "'fear' dropped: 4 clip(s)" in err and "'calm' -> neutral: 4 clip(s)" in err
    assert Counter(c.discrete for c in read_manifest(out, classes=None)) == {"angry": 4,
                                                                             "neutral": 8}


def test_label_map_case_and_emovos_label_dict(tmp_path: Path):
    data, root, records = make_emobox(tmp_path)
    # EmoBox's emodb map has "Neutral" where its jsonl says "neutral": matched without case
    write(data / "label_map.json", json.dumps({**RAVDESS_MAP, "NEUTRAL": "Neutral"}
                                              ) .replace('"Neutral": "Neutral", ', ""))
    _jsonl(data / "ravdess.jsonl", [{**r, "emo": r["emo"].lower()} if r["emo"] == "Neutral"
                                    else r for r in records])
    path, counts = build_manifest("emobox", root, tmp_path / "m.csv", data=data)
    assert counts["classes"]["neutral"] == 4
    (data / "label_map.json").rename(data / "label_dict.json")  # emovo's spelling
    path, counts = build_manifest("emobox", root, tmp_path / "m.csv", data=data)
    assert counts["classes"]["fear"] == 4


def _break(tmp_path: Path, how: str) -> tuple[Path, Path]:
    data, root, records = make_emobox(tmp_path)
    top = data / "ravdess.jsonl"
    lines = top.read_text().splitlines()
    if how == "malformed":
        lines[2] = lines[2][:-5]
        top.write_text("\n".join(lines) + "\n")
    elif how == "not-object":
        lines[2] = "[1, 2]"
        top.write_text("\n".join(lines) + "\n")
    elif how == "no-wav":
        lines[3] = json.dumps({k: v for k, v in records[3].items() if k != "wav"})
        top.write_text("\n".join(lines) + "\n")
    elif how == "unknown-emo":
        lines[4] = json.dumps({**records[4], "emo": "Bored"})
        top.write_text("\n".join(lines) + "\n")
    elif how == "duplicate":
        top.write_text("\n".join(lines + [lines[0]]) + "\n")
    elif how == "climbs":
        lines[5] = json.dumps({**records[5], "wav": "../../etc/x.wav"})
        top.write_text("\n".join(lines) + "\n")
    elif how == "segment":
        lines[1] = json.dumps({**records[1], "start_time": 1.5, "end_time": 3.0})
        top.write_text("\n".join(lines) + "\n")
    elif how == "twice-tested":
        _jsonl(data / "fold_2" / "ravdess_train_fold_2.jsonl",
               [r for r in records if r["wav"].split("/")[-2][-2:] in ("03",)])
        test2 = data / "fold_2" / "ravdess_test_fold_2.jsonl"
        test2.write_text(test2.read_text() + json.dumps(records[0]) + "\n")
    elif how == "train-and-test":
        train = data / "fold_1" / "ravdess_train_fold_1.jsonl"
        train.write_text(train.read_text() + json.dumps(records[0]) + "\n")
    elif how == "unknown-key":
        test = data / "fold_1" / "ravdess_test_fold_1.jsonl"
        test.write_text(test.read_text() + json.dumps({**records[0], "key": "ravdess-x"}) + "\n")
    elif how == "no-test-file":
        (data / "fold_2" / "ravdess_test_fold_2.jsonl").unlink()
    elif how == "no-folds":
        for k in (1, 2):
            for f in (data / f"fold_{k}").iterdir():
                f.unlink()
            (data / f"fold_{k}").rmdir()
    elif how == "bad-label-map":
        write(data / "label_map.json", '{"Angry": 3}')
    return data, root


@pytest.mark.parametrize("how, message", [
    ("malformed", r"ravdess.jsonl', line 3: not a JSON object"),
    ("not-object", r"ravdess.jsonl', line 3: a JSON list"),
    ("no-wav", r"ravdess.jsonl', line 4: field\(s\) wav missing"),
    ("unknown-emo", r"ravdess.jsonl', line 5: emotion 'Bored' is not in the corpus's label map"),
    ("duplicate", r"line 17: clip 'ravdess-03-01-05-01-01-01-01' appears twice .*line 1\)"),
    ("segment", r"line 2: clip '.*' is the segment 1.5-3.0 s of"),
    ("climbs", r"line 6: 'wav' path '../../etc/x.wav' climbs out of the root"),
    ("twice-tested", r"held out in fold 1 and in fold 2"),
    ("train-and-test", r"Fold 1 of .* in both its train and test files"),
    ("unknown-key", r"names 1 clip\(s\) that ravdess.jsonl does not list: ravdess-x \(line 9\)"),
    ("no-test-file", r"ravdess_test_fold_2.jsonl' not found"),
    ("no-folds", r"has no fold_K/ folders"),
    ("bad-label-map", r"label_map.json' must be a JSON object"),
])
def test_hostile_releases_are_refused_naming_file_and_line(tmp_path: Path, capsys, how, message):
    data, root = _break(tmp_path, how)
    with pytest.raises(ManifestError, match=message):
        build_manifest("emobox", root, tmp_path / "m.csv", data=data)
    assert main(["manifest", "emobox", "--data", str(data), "--root", str(root), "--out",
                 str(tmp_path / "m.csv")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "m.csv").exists()


def test_bad_arguments(tmp_path: Path):
    data, root, _ = make_emobox(tmp_path)
    with pytest.raises(ManifestError, match="needs `data`"):
        build_manifest("emobox", root, tmp_path / "m.csv")
    with pytest.raises(ManifestError, match="EmoBox folder .* not found"):
        build_manifest("emobox", root, tmp_path / "m.csv", data=tmp_path / "nope")
    with pytest.raises(ManifestError, match="Audio root folder .* not found"):
        build_manifest("emobox", tmp_path / "nope", tmp_path / "m.csv", data=data)
    with pytest.raises(ManifestError, match="`audio_ext` must be a file extension"):
        build_manifest("emobox", root, tmp_path / "m.csv", data=data, audio_ext="../x")


@pytest.mark.shared_data
def test_emobox_ravdess_protocol_on_the_actors_we_have(tmp_path: Path, capsys):
    """EmoBox's own RAVDESS files with the real audio of actors 1-12 (FLAC, other layout)."""
    data, root = shared_data("emobox", "ravdess"), shared_data("ravdess")
    out = tmp_path / "ravdess-emobox.csv"
    args = ["manifest", "emobox", "--data", str(data), "--root", str(root), "--out", str(out),
            "--audio-ext", "flac"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: 720 of 1440 ravdess clip(s) have no media file")
    missing = (tmp_path / "ravdess-emobox.csv.missing.txt").read_text().splitlines()
    assert len(missing) == 720
    assert {Path(m).parent.name for m in missing} == {f"Actor_{a}" for a in range(13, 25)}

    assert main([*args, "--skip-missing"]) == 0
    captured = capsys.readouterr()
    assert "720 clips of EmoBox corpus 'ravdess', 8 classes (angry 96, calm 96, disgust 96, " \
           "fear 96, happy 96, neutral 48, sad 96, surprise 96), 6 fold(s), 12 speakers" \
           in captured.out
    assert "720 clip(s) left out, their audio missing" in captured.err
    clips = list(read_manifest(out, classes=None))
    assert len(clips) == 720
    # each actor is held out in exactly one of EmoBox's folds, the fold of its test file
    test_fold = {}
    for k in range(1, 7):
        for line in (data / f"fold_{k}" / f"ravdess_test_fold_{k}.jsonl").read_text().splitlines():
            test_fold[json.loads(line)["key"]] = str(k)
    assert all(c.extra["fold"] == test_fold[c.name] for c in clips)
    folds_of = defaultdict(set)
    for c in clips:
        folds_of[c.extra["speaker"]].add(c.extra["fold"])
    assert sorted(folds_of) == [f"actor{a:02d}" for a in range(1, 13)]
    assert all(len(f) == 1 for f in folds_of.values())
    assert len({c.extra["fold"] for c in clips}) == 6  # actors 1-12 reach all six folds
    # the classes are RAVDESS's own, the same as the corpus's labels.csv says per file
    labels = {Path(r["file"]).stem: r["emotion"]
              for r in csv.DictReader(open(root / "labels.csv", encoding="utf-8"))}
    native = {"surprised": "surprise", "fearful": "fear"}
    assert {c.name[len("ravdess-"):]: c.discrete for c in clips} == \
           {k: native.get(v, v) for k, v in labels.items()}
