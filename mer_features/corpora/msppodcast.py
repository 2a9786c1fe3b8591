"""Manifest builder for MSP-Podcast (Lotfian & Busso 2019; releases 1.x), in its release layout.

::

    ROOT/Labels/labels_consensus.csv     (labels_concensus.csv in older releases)
        FileName,EmoClass,EmoAct,EmoVal,EmoDom,SpkrID,Gender,Split_Set
        MSP-PODCAST_0001_0008.wav,N,4.2,4.0,4.4,127,Female,Train
    ROOT/Audios/MSP-PODCAST_0001_0008.wav   (Audio/ in older releases)
    ROOT/Transcripts/MSP-PODCAST_0001_0008.txt   optional

One row per labelled file. ``split`` is the official partition in lower case (train,
development, test1, test2, test3). The consensus class is the corpus's own (angry, sad, happy,
surprise, fear, disgust, contempt, neutral, other); ``X`` (no agreement) is left unlabelled. The
consensus ratings of arousal (EmoAct), valence (EmoVal) and dominance (EmoDom), on the corpus's
1-7 scale, are written as ``arousal``, ``valence`` and ``dominance`` on MER's [-5, 5] scale,
``(v - 4) * 5 / 3``. ``speaker`` is SpkrID (empty where the release says Unknown) and
``gender`` likewise. The challenge's eight-class task leaves out ``other``: pass a label map
``{"other": null}``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mer_features.corpora import Corpus
from mer_features.corpora.labelmap import LABEL_MAP_OPTION
from mer_features.corpora.release import SKIP_MISSING_OPTION, summarise
from mer_features.errors import ManifestError

EMOTION_CODES = {"A": "angry", "S": "sad", "H": "happy", "U": "surprise", "F": "fear",
                 "D": "disgust", "C": "contempt", "N": "neutral", "O": "other", "X": None}
REQUIRED = ("FileName", "EmoClass", "EmoAct", "EmoVal", "EmoDom", "SpkrID", "Gender",
            "Split_Set")
EXTRA_COLUMNS = ("emotion", "arousal", "dominance", "speaker", "gender")
LABEL_FILES = ("Labels/labels_consensus.csv", "Labels/labels_concensus.csv",
               "labels_consensus.csv", "labels_concensus.csv")
AUDIO_FOLDERS = ("Audios", "Audio")


def build_msppodcast_manifest(root: str | Path, out: str | Path, *, skip_missing: bool = False,
                              label_map: object = None, relative: bool = True
                              ) -> tuple[Path, dict[str, object]]:
    """Write a manifest for an MSP-Podcast release at ``root``; returns its path and counts."""
    from mer_features.corpora.labelmap import apply_to_rows, label_map_option_value
    from mer_features.corpora.manifest import COLUMNS, write_manifest
    from mer_features.corpora.release import (class_counts, first_of, manifest_path, read_csv,
                                              read_text, require_folder, split_missing,
                                              to_mer_scale)

    root, out = Path(root), Path(out)
    label_map = label_map_option_value(label_map)
    require_folder(root, "MSP-Podcast", "point `root` at the release folder (with Labels/ and "
                                        "Audios/).")
    labels = first_of(root, LABEL_FILES)
    if labels is None:
        raise ManifestError(f"No Labels/labels_consensus.csv in '{root}'; point `root` at the "
                            "MSP-Podcast release folder.")
    audio = first_of(root, AUDIO_FOLDERS) or root / AUDIO_FOLDERS[0]
    transcripts = root / "Transcripts"
    rows: list[dict[str, object]] = []
    seen: dict[str, int] = {}
    for line, row in read_csv(labels, "MSP-Podcast", REQUIRED):
        where = f"MSP-Podcast file '{labels}', line {line}"
        file_name = row["FileName"]
        if not file_name or "/" in file_name or "\\" in file_name:
            raise ManifestError(f"{where}: FileName {file_name!r} is not a file name.")
        if file_name in seen:
            raise ManifestError(f"{where}: '{file_name}' is labelled twice (first on line "
                                f"{seen[file_name]}).")
        seen[file_name] = line
        code = row["EmoClass"].upper()
        if code not in EMOTION_CODES:
            raise ManifestError(f"{where}: unknown EmoClass '{row['EmoClass']}' (MSP-Podcast's "
                                f"are {', '.join(EMOTION_CODES)}).")
        if not row["Split_Set"]:
            raise ManifestError(f"{where}: Split_Set is empty.")
        stem = Path(file_name).stem
        text_file = transcripts / f"{stem}.txt"
        rows.append({
            "name": stem, "discrete": EMOTION_CODES[code], "emotion": code,
            "valence": to_mer_scale(row["EmoVal"], 1.0, 7.0, where),
            "arousal": to_mer_scale(row["EmoAct"], 1.0, 7.0, where),
            "dominance": to_mer_scale(row["EmoDom"], 1.0, 7.0, where),
            "speaker": _known(row["SpkrID"]), "gender": (_known(row["Gender"]) or "").lower(),
            "split": row["Split_Set"].lower(),
            "text": read_text(text_file, "MSP-Podcast").strip() if text_file.is_file() else None,
            "_audio": audio / file_name,
        })
    if not rows:
        raise ManifestError(f"'{labels}' lists no clips.")
    rows, missing = split_missing(
        rows, lambda r: r["_audio"], out=out, corpus="MSP-Podcast", skip_missing=skip_missing,
        hint=f"The audio is looked for in '{audio}'; check `root`.")
    for row in rows:
        row["audio"] = manifest_path(row.pop("_audio"), out, relative)
    rows, notes = apply_to_rows(rows, label_map)
    write_manifest(out, rows, columns=(*COLUMNS, *EXTRA_COLUMNS))
    return out, {"clips": len(rows), "classes": class_counts(rows),
                 "unlabelled": sum(r["discrete"] is None for r in rows),
                 "splits": dict(Counter(r["split"] for r in rows)),
                 "speakers": len({r["speaker"] for r in rows if r["speaker"]}),
                 "missing": missing, "notes": notes}


def _known(value: str) -> str | None:
    return None if value.strip().lower() in ("", "unknown") else value.strip()


def _summary(path: Path, counts: dict[str, object]) -> tuple[str, list[str]]:
    return summarise(path, counts, speakers="known speakers")


CORPUS = Corpus(
    name="msppodcast",
    help="MSP-Podcast: Labels/labels_consensus.csv and Audios/",
    root_help="release folder that holds Labels/ and Audios/",
    build=build_msppodcast_manifest,
    summary=_summary,
    options=(SKIP_MISSING_OPTION, LABEL_MAP_OPTION))
