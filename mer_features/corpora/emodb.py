"""Manifest builder for EmoDB, the Berlin Database of Emotional Speech (Burkhardt et al. 2005).

::

    ROOT/wav/03a01Fa.wav     speaker 03, text a01, emotion F (Freude: happiness), version a

A file name holds the speaker (two digits), the text (a01 ... b10), the emotion as the initial
of its German name and a version letter. The seven classes are the corpus's own: ``anger``
(W, Wut), ``boredom`` (L, Langeweile), ``disgust`` (E, Ekel), ``fear`` (A, Angst),
``happiness`` (F, Freude), ``sadness`` (T, Trauer), ``neutral`` (N). ``text`` is the German
sentence; ``speaker``, ``gender`` and ``age`` come from the corpus's documentation. EmoDB has no
official split: ``mer-heads fit --groups speaker`` gives speaker-independent folds.
"""

from __future__ import annotations

import re
from pathlib import Path

from mer_features.corpora import Corpus
from mer_features.corpora.labelmap import LABEL_MAP_OPTION
from mer_features.corpora.release import summarise

EMOTION_CODES = {"W": "anger", "L": "boredom", "E": "disgust", "A": "fear", "F": "happiness",
                 "T": "sadness", "N": "neutral"}
SPEAKERS = {"03": ("male", 31), "08": ("female", 34), "09": ("female", 21), "10": ("male", 32),
            "11": ("male", 26), "12": ("male", 30), "13": ("female", 32), "14": ("female", 35),
            "15": ("male", 25), "16": ("female", 31)}
"""Speaker code -> (gender, age), from the corpus's documentation."""
TEXTS = {
    "a01": "Der Lappen liegt auf dem Eisschrank.",
    "a02": "Das will sie am Mittwoch abgeben.",
    "a04": "Heute abend könnte ich es ihm sagen.",
    "a05": "Das schwarze Stück Papier befindet sich da oben neben dem Holzstück.",
    "a07": "In sieben Stunden wird es soweit sein.",
    "b01": "Was sind denn das für Tüten, die da unter dem Tisch stehen?",
    "b02": "Sie haben es gerade hochgetragen und jetzt gehen sie wieder runter.",
    "b03": "An den Wochenenden bin ich jetzt immer nach Hause gefahren und habe Agnes besucht.",
    "b09": "Ich will das eben wegbringen und dann mit Karl was trinken gehen.",
    "b10": "Die wird auf dem Platz sein, wo wir sie immer hinlegen.",
}
EXTRA_COLUMNS = ("emotion", "speaker", "gender", "age", "text_code", "version")
_NAME = re.compile(r"^(\d\d)([ab]\d\d)([A-Z])([a-z])$")


def parse_name(stem: str) -> dict[str, str]:
    """The fields of an EmoDB file name such as ``03a01Fa``; ValueError with the reason."""
    found = _NAME.match(stem)
    if found is None:
        raise ValueError("not named SSTTTEV (speaker, text, emotion letter, version)")
    speaker, text, emotion, version = found.groups()
    if emotion not in EMOTION_CODES:
        raise ValueError(f"unknown emotion letter '{emotion}' (expected one of "
                         f"{', '.join(EMOTION_CODES)})")
    if speaker not in SPEAKERS:
        raise ValueError(f"unknown speaker '{speaker}' (EmoDB's are {', '.join(SPEAKERS)})")
    if text not in TEXTS:
        raise ValueError(f"unknown text code '{text}' (EmoDB's are {', '.join(TEXTS)})")
    gender, age = SPEAKERS[speaker]
    return {"emotion": emotion, "speaker": speaker, "gender": gender, "age": str(age),
            "text_code": text, "version": version}


def build_emodb_manifest(root: str | Path, out: str | Path, *, label_map: object = None,
                         relative: bool = True) -> tuple[Path, dict[str, object]]:
    """Write a manifest for an EmoDB release (``root`` holds ``wav/``); returns its path and
    counts."""
    from mer_features.corpora.labelmap import apply_to_rows, label_map_option_value
    from mer_features.corpora.manifest import COLUMNS, write_manifest
    from mer_features.corpora.release import (class_counts, manifest_path, named_files,
                                              require_folder)

    root, out = Path(root), Path(out)
    label_map = label_map_option_value(label_map)
    folder = require_folder(root / "wav", "EmoDB", "point `root` at the EmoDB folder that holds "
                                                   "wav/ (with files such as 03a01Fa.wav).")
    rows = [{"name": path.stem, "audio": manifest_path(path, out, relative),
             "text": TEXTS[fields["text_code"]], "discrete": EMOTION_CODES[fields["emotion"]],
             **fields} for path, fields in named_files(folder, parse_name, "EmoDB")]
    rows, notes = apply_to_rows(rows, label_map)
    write_manifest(out, rows, columns=(*COLUMNS, *EXTRA_COLUMNS))
    return out, {"clips": len(rows), "classes": class_counts(rows),
                 "speakers": len({r["speaker"] for r in rows}), "notes": notes}


CORPUS = Corpus(
    name="emodb",
    help="EmoDB (Berlin): wav/03a01Fa.wav ...",
    root_help="folder that holds wav/",
    build=build_emodb_manifest,
    summary=summarise,
    options=(LABEL_MAP_OPTION,))
