"""Manifest builder for CREMA-D (Cao et al. 2014), as released in
github.com/CheyneyComputerScience/CREMA-D.

::

    ROOT/AudioWAV/1001_DFA_ANG_XX.wav    actor 1001, sentence DFA, emotion ANG, intensity XX
    ROOT/VideoDemographics.csv           optional: ActorID, Age, Sex, Race, Ethnicity

The six classes are the corpus's own: ``angry`` (ANG), ``disgust`` (DIS), ``fear`` (FEA),
``happy`` (HAP), ``neutral`` (NEU), ``sad`` (SAD). ``intensity`` is low, medium, high or
unspecified (LO, MD, HI, XX); ``text`` is the sentence. ``speaker`` is the actor (91 of them);
with ``VideoDemographics.csv`` also ``gender``, ``age``, ``race`` and ``ethnicity``. CREMA-D has
no official split: ``mer-heads fit --groups speaker`` gives speaker-independent folds.
"""

from __future__ import annotations

import re
from pathlib import Path

from mer_features.corpora import Corpus
from mer_features.corpora.labelmap import LABEL_MAP_OPTION
from mer_features.corpora.release import summarise
from mer_features.errors import ManifestError

EMOTION_CODES = {"ANG": "angry", "DIS": "disgust", "FEA": "fear", "HAP": "happy",
                 "NEU": "neutral", "SAD": "sad"}
INTENSITIES = {"LO": "low", "MD": "medium", "HI": "high", "XX": "unspecified"}
SENTENCES = {
    "IEO": "It's eleven o'clock",
    "TIE": "That is exactly what happened",
    "IOM": "I'm on my way to the meeting",
    "IWW": "I wonder what this is about",
    "TAI": "The airplane is almost full",
    "MTI": "Maybe tomorrow it will be cold",
    "IWL": "I would like a new alarm clock",
    "ITH": "I think I have a doctor's appointment",
    "DFA": "Don't forget a jacket",
    "ITS": "I think I've seen this before",
    "TSI": "The surface is slick",
    "WSI": "We'll stop in a couple of minutes",
}
DEMOGRAPHICS = ("gender", "age", "race", "ethnicity")
EXTRA_COLUMNS = ("emotion", "intensity", "sentence", "speaker", *DEMOGRAPHICS)
_NAME = re.compile(r"^(\d{4})_([A-Z]{3})_([A-Z]{3})_([A-Z]{2})$")


def parse_name(stem: str) -> dict[str, str]:
    """The fields of a CREMA-D file name such as ``1001_DFA_ANG_XX``; ValueError with the
    reason."""
    found = _NAME.match(stem)
    if found is None:
        raise ValueError("not named AAAA_SSS_EEE_II (actor, sentence, emotion, intensity)")
    actor, sentence, emotion, level = found.groups()
    for code, known, what in ((sentence, SENTENCES, "sentence"), (emotion, EMOTION_CODES,
                              "emotion"), (level, INTENSITIES, "intensity")):
        if code not in known:
            raise ValueError(f"unknown {what} code '{code}' (expected one of {', '.join(known)})")
    return {"emotion": emotion, "intensity": INTENSITIES[level], "sentence": sentence,
            "speaker": actor}


def build_cremad_manifest(root: str | Path, out: str | Path, *, label_map: object = None,
                          relative: bool = True) -> tuple[Path, dict[str, object]]:
    """Write a manifest for a CREMA-D release (``root`` holds ``AudioWAV/``); returns its
    path and counts."""
    from mer_features.corpora.labelmap import apply_to_rows, label_map_option_value
    from mer_features.corpora.manifest import COLUMNS, write_manifest
    from mer_features.corpora.release import (class_counts, manifest_path, named_files,
                                              require_folder)

    root, out = Path(root), Path(out)
    label_map = label_map_option_value(label_map)
    folder = require_folder(root / "AudioWAV", "CREMA-D", "point `root` at the CREMA-D folder "
                            "that holds AudioWAV/ (files such as 1001_DFA_ANG_XX.wav).")
    files = named_files(folder, parse_name, "CREMA-D")
    people = _demographics(root / "VideoDemographics.csv")
    rows = [{"name": path.stem, "audio": manifest_path(path, out, relative),
             "text": SENTENCES[fields["sentence"]], "discrete": EMOTION_CODES[fields["emotion"]],
             **fields, **people.get(fields["speaker"], {})} for path, fields in files]
    rows, notes = apply_to_rows(rows, label_map)
    write_manifest(out, rows, columns=(*COLUMNS, *EXTRA_COLUMNS))
    speakers = {r["speaker"] for r in rows}
    unknown = sorted(speakers - set(people)) if people else []
    if unknown:
        notes.append(f"note: {len(unknown)} actor(s) are not in VideoDemographics.csv "
                     f"({', '.join(unknown[:10])}); their demographic columns are empty")
    if not people:
        notes.append("note: no VideoDemographics.csv under `root`; gender, age, race and "
                     "ethnicity are empty")
    return out, {"clips": len(rows), "classes": class_counts(rows), "speakers": len(speakers),
                 "notes": notes}


def _demographics(path: Path) -> dict[str, dict[str, str]]:
    """Actor -> gender, age, race, ethnicity from VideoDemographics.csv (empty when absent)."""
    from mer_features.corpora.release import read_csv

    if not path.exists():
        return {}
    people = {}
    for line, row in read_csv(path, "CREMA-D", ("ActorID", "Age", "Sex", "Race", "Ethnicity")):
        actor = row["ActorID"]
        if not re.fullmatch(r"\d{4}", actor):
            raise ManifestError(f"CREMA-D file '{path}', line {line}: ActorID {actor!r} is not "
                                "a four-digit actor number.")
        if actor in people:
            raise ManifestError(f"CREMA-D file '{path}', line {line}: actor {actor} is listed "
                                "twice.")
        people[actor] = {"gender": row["Sex"].lower(), "age": row["Age"],
                         "race": row["Race"], "ethnicity": row["Ethnicity"]}
    return people


CORPUS = Corpus(
    name="cremad",
    help="CREMA-D: AudioWAV/1001_DFA_ANG_XX.wav ... and VideoDemographics.csv",
    root_help="folder that holds AudioWAV/ (and VideoDemographics.csv)",
    build=build_cremad_manifest,
    summary=summarise,
    options=(LABEL_MAP_OPTION,))
