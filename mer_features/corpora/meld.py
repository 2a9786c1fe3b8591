"""Manifest builder for MELD (Poria et al. 2019), in the layout of MELD.Raw.tar.gz.

::

    ROOT/train_sent_emo.csv  dev_sent_emo.csv  test_sent_emo.csv     (or ROOT/<split>/...)
        Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID,Season,Episode,StartTime,EndTime
    ROOT/train_splits/dia0_utt0.mp4                                  (or ROOT/train/train_splits/)
    ROOT/dev_splits_complete/dia0_utt0.mp4                           (or ROOT/dev/...)
    ROOT/output_repeated_splits_test/dia0_utt0.mp4                   (or ROOT/test/...)

One row per CSV row: ``name`` is ``<split>_dia<D>_utt<U>`` (dialogue ids restart in each split),
``video`` the clip, ``text`` the utterance, ``split`` train, dev or test (MELD's official
partition), and the seven classes are MELD's own: neutral, joy, sadness, anger, surprise, fear,
disgust. ``speaker`` (the character), ``sentiment``, ``dialogue``, ``utterance``, ``season``,
``episode``, ``start`` and ``end`` are columns. The original CSVs hold a few Windows-1252
punctuation marks as control characters (U+0092 for a right quote, ...); they are written as
the characters they stand for, as in MELD's own fix (declare-lab/MELD pull request 28).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from mer_features.corpora import Corpus
from mer_features.corpora.labelmap import LABEL_MAP_OPTION
from mer_features.corpora.release import SKIP_MISSING_OPTION, summarise
from mer_features.errors import ManifestError

SPLITS = {"train": "train_splits", "dev": "dev_splits_complete",
          "test": "output_repeated_splits_test"}
"""Split -> the folder of its videos."""
EMOTIONS = ("neutral", "joy", "sadness", "anger", "surprise", "fear", "disgust")
SENTIMENTS = ("neutral", "positive", "negative")
REQUIRED = ("Utterance", "Speaker", "Emotion", "Sentiment", "Dialogue_ID", "Utterance_ID")
EXTRA_COLUMNS = ("speaker", "sentiment", "dialogue", "utterance", "season", "episode", "start",
                 "end")
_CP1252 = {c: bytes([c]).decode("cp1252", errors="ignore") or chr(c) for c in range(0x80, 0xA0)}


def build_meld_manifest(root: str | Path, out: str | Path, *, skip_missing: bool = False,
                        label_map: object = None, relative: bool = True
                        ) -> tuple[Path, dict[str, object]]:
    """Write a manifest for a MELD release at ``root``; returns its path and counts."""
    from mer_features.corpora.labelmap import apply_to_rows, label_map_option_value
    from mer_features.corpora.manifest import COLUMNS, write_manifest
    from mer_features.corpora.release import (class_counts, first_of, manifest_path,
                                              read_csv, require_folder, split_missing)

    root, out = Path(root), Path(out)
    label_map = label_map_option_value(label_map)
    require_folder(root, "MELD", "point `root` at the MELD.Raw folder (with train_sent_emo.csv "
                                 "...).")
    rows: list[dict[str, object]] = []
    absent = []
    for split, folder_name in SPLITS.items():
        csv_path = first_of(root, (f"{split}_sent_emo.csv", f"{split}/{split}_sent_emo.csv"))
        if csv_path is None:
            absent.append(split)
            continue
        folder = first_of(root, (folder_name, f"{split}/{folder_name}")) or root / folder_name
        for line, row in read_csv(csv_path, "MELD", REQUIRED):
            rows.append(_row(row, split, folder, f"MELD file '{csv_path}', line {line}"))
    if not rows:
        raise ManifestError(f"No MELD label file in '{root}': expected train_sent_emo.csv, "
                            "dev_sent_emo.csv and test_sent_emo.csv (at the root or in train/, "
                            "dev/, test/).")
    names = Counter(r["name"] for r in rows)
    twice = sorted(n for n, k in names.items() if k > 1)
    if twice:
        raise ManifestError(f"MELD lists {len(twice)} utterance(s) twice in one split: "
                            f"{', '.join(twice[:5])}; fix the CSV files.")
    rows, missing = split_missing(
        rows, lambda r: r["_video"], out=out, corpus="MELD", skip_missing=skip_missing,
        hint="MELD's videos are dia<D>_utt<U>.mp4 in train_splits/, dev_splits_complete/ and "
             "output_repeated_splits_test/; check `root`.")
    for row in rows:
        row["video"] = manifest_path(row.pop("_video"), out, relative)
    rows, notes = apply_to_rows(rows, label_map)
    if absent:
        notes.append(f"note: no {', '.join(f'{s}_sent_emo.csv' for s in absent)} under `root`: "
                     f"split(s) {', '.join(absent)} left out")
    write_manifest(out, rows, columns=(*COLUMNS, *EXTRA_COLUMNS))
    return out, {"clips": len(rows), "classes": class_counts(rows),
                 "splits": dict(Counter(r["split"] for r in rows)),
                 "speakers": len({r["speaker"] for r in rows}), "missing": missing,
                 "notes": notes}


def _row(row: dict[str, str], split: str, folder: Path, where: str) -> dict[str, object]:
    emotion = row["Emotion"].strip().lower()
    if emotion not in EMOTIONS:
        raise ManifestError(f"{where}: unknown emotion '{row['Emotion']}' (MELD's are "
                            f"{', '.join(EMOTIONS)}).")
    sentiment = row["Sentiment"].strip().lower()
    if sentiment not in SENTIMENTS:
        raise ManifestError(f"{where}: unknown sentiment '{row['Sentiment']}' (MELD's are "
                            f"{', '.join(SENTIMENTS)}).")
    ids = {}
    for column in ("Dialogue_ID", "Utterance_ID"):
        if not re.fullmatch(r"\d+", row[column]):
            raise ManifestError(f"{where}: {column} {row[column]!r} is not a whole number.")
        ids[column] = int(row[column])
    dialogue, utterance = ids["Dialogue_ID"], ids["Utterance_ID"]
    return {
        "name": f"{split}_dia{dialogue}_utt{utterance}", "text": _repair(row["Utterance"]),
        "discrete": emotion, "split": split, "speaker": _repair(row["Speaker"]),
        "sentiment": sentiment, "dialogue": dialogue, "utterance": utterance,
        "season": row.get("Season"), "episode": row.get("Episode"),
        "start": row.get("StartTime"), "end": row.get("EndTime"),
        "_video": folder / f"dia{dialogue}_utt{utterance}.mp4",
    }


def _repair(text: str) -> str:
    """Windows-1252 punctuation stored as C1 control characters -> the characters meant."""
    return text.translate(_CP1252)


def _summary(path: Path, counts: dict[str, object]) -> tuple[str, list[str]]:
    return summarise(path, counts, unit="utterances", media="video")


CORPUS = Corpus(
    name="meld",
    help="MELD: {train,dev,test}_sent_emo.csv and the dia<D>_utt<U>.mp4 folders",
    root_help="MELD.Raw folder (the CSV files and the three video folders)",
    build=build_meld_manifest,
    summary=_summary,
    options=(SKIP_MISSING_OPTION, LABEL_MAP_OPTION))
