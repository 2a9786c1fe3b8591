"""Manifest builder for RAVDESS speech (Livingstone & Russo 2018).

::

    ROOT/Actor_01/03-01-05-01-02-01-01.wav (or .flac)   one clip per file
    ROOT/labels.csv   (optional) file,emotion,mer6,intensity,statement_code,actor,gender,text,...

Each file name encodes modality-channel-emotion-intensity-statement-repetition-actor. The
eight RAVDESS emotions map onto the six MER classes (neutral, angry, happy, sad, worried,
surprise) as ``mer6`` does: fearful -> worried; calm and disgust have no MER class and are
left unlabelled (they stay in the manifest, e.g. as a pool for semi-supervised training).
``split`` is the actor (``actor01`` ...), so speaker-independent splits are one flag away.
``labels="native"`` keeps RAVDESS's own eight classes instead (neutral, calm, happy, sad,
angry, fearful, disgust, surprised), and ``label_map`` (:mod:`.labelmap`) renames, merges or
drops classes after that.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from mer_features.corpora import Corpus, CorpusOption
from mer_features.corpora.labelmap import LABEL_MAP_OPTION
from mer_features.errors import ManifestError

EMOTION_CODES = {"01": "neutral", "02": "calm", "03": "happy", "04": "sad", "05": "angry",
                 "06": "fearful", "07": "disgust", "08": "surprised"}
TO_MER6 = {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
           "fearful": "worried", "surprised": "surprise", "calm": None, "disgust": None}
AUDIO_SUFFIXES = (".wav", ".flac")
EXTRA_COLUMNS = ("emotion", "intensity", "statement", "actor", "gender")
LABEL_SETS = ("mer6", "native")


def parse_name(stem: str) -> dict[str, str]:
    """The fields of a RAVDESS file name such as ``03-01-05-01-02-01-12``."""
    parts = stem.split("-")
    if len(parts) != 7 or not all(p.isdigit() for p in parts) or parts[2] not in EMOTION_CODES:
        raise ValueError(stem)
    actor = int(parts[6])
    return {"emotion": EMOTION_CODES[parts[2]],
            "intensity": "normal" if parts[3] == "01" else "strong",
            "statement": parts[4], "actor": f"actor{actor:02d}",
            "gender": "male" if actor % 2 else "female"}


def build_ravdess_manifest(root: str | Path, out: str | Path, *, relative: bool = True,
                           labels: str = "mer6", label_map: object = None
                           ) -> tuple[Path, dict[str, int]]:
    """Write a manifest for a RAVDESS speech folder; returns its path and counts.
    ``labels``: ``mer6`` (MER's six, calm and disgust unlabelled) or ``native`` (the eight)."""
    from mer_features.corpora.labelmap import label_map_option_value
    from mer_features.corpora.manifest import COLUMNS, write_manifest

    if labels not in LABEL_SETS:
        raise ManifestError(f"RAVDESS labels must be one of {', '.join(LABEL_SETS)}; got "
                            f"{labels!r}.")
    label_map = label_map_option_value(label_map)
    root, out = Path(root), Path(out)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "not found"
        raise ManifestError(f"RAVDESS folder '{root}' {what}; point `root` at the folder "
                            "that holds Actor_01/ ... Actor_24/.")
    files = sorted(p for p in root.glob("Actor_*/*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not files:
        raise ManifestError(f"No .wav or .flac files under '{root}/Actor_*/'; point `root` at "
                            "the folder that holds the Actor_NN folders.")
    bad, misplaced, rows = [], [], []
    first: dict[str, Path] = {}
    twice: list[str] = []
    for path in files:
        try:
            fields = parse_name(path.stem)
        except ValueError:
            bad.append(str(path.relative_to(root)))
            continue
        folder = _folder_actor(path.parent.name)
        if folder is not None and folder != fields["actor"]:
            misplaced.append(f"{path.relative_to(root)} (actor {fields['actor'][5:]})")
            continue
        if path.stem in first:  # the same clip as .wav and .flac
            twice.append(f"{first[path.stem].relative_to(root)} and {path.relative_to(root)}")
            continue
        first[path.stem] = path
        audio = path.resolve()
        if relative:
            try:
                audio = Path(os.path.relpath(audio, out.resolve().parent))
            except ValueError:
                pass
        rows.append({"name": path.stem, "video": None, "audio": str(audio), "text": None,
                     "discrete": (TO_MER6[fields["emotion"]] if labels == "mer6"
                                  else fields["emotion"]), "valence": None,
                     "split": fields["actor"], **fields})
    if bad:
        shown = ", ".join(bad[:10])
        raise ManifestError(f"{len(bad)} file(s) under '{root}' are not named like RAVDESS clips "
                            f"(MM-VC-EE-II-SS-RR-AA): {shown}. Move them out of the Actor folders.")
    if misplaced:
        shown = ", ".join(misplaced[:10]) + (", ..." if len(misplaced) > 10 else "")
        raise ManifestError(f"{len(misplaced)} file(s) under '{root}' sit in another actor's "
                            f"folder than the actor code of their name (the last field): "
                            f"{shown}. Move each into its actor's Actor_NN folder.")
    if twice:
        shown = "; ".join(twice[:10]) + (" ..." if len(twice) > 10 else "")
        raise ManifestError(f"{len(twice)} RAVDESS clip(s) under '{root}' are there twice (one "
                            f"name, two files): {shown}. Keep one file per clip.")
    texts = _statement_texts(root / "labels.csv")
    for row in rows:
        row["text"] = texts.get(row["statement"])
    if labels != "mer6" or label_map is not None:
        return _write_other_labels(out, rows, labels, label_map)
    write_manifest(out, rows, columns=(*COLUMNS, *EXTRA_COLUMNS))
    labelled = sum(r["discrete"] is not None for r in rows)
    return out, {"clips": len(rows), "labelled": labelled, "unlabelled": len(rows) - labelled}


def _write_other_labels(out: Path, rows: list[dict], labels: str, label_map: object
                        ) -> tuple[Path, dict[str, object]]:
    """The manifest with the native classes and/or a label map (counts by class)."""
    from collections import Counter

    from mer_features.corpora.labelmap import apply_to_rows
    from mer_features.corpora.manifest import COLUMNS, write_manifest

    rows, notes = apply_to_rows(rows, label_map)
    write_manifest(out, rows, columns=(*COLUMNS, *EXTRA_COLUMNS))
    classes = Counter(r["discrete"] for r in rows if r["discrete"] is not None)
    return out, {"clips": len(rows), "labels": labels, "classes": dict(sorted(classes.items())),
                 "unlabelled": sum(r["discrete"] is None for r in rows), "notes": notes}


def _folder_actor(folder: str) -> str | None:
    """``actor01`` for a folder ``Actor_01``; None for a folder name without a number."""
    digits = folder.partition("_")[2]
    return f"actor{int(digits):02d}" if digits.isdigit() else None


def _statement_texts(labels: Path) -> dict[str, str]:
    """The sentence of each statement code, from labels.csv when it is there."""
    if not labels.is_file():
        return {"01": "Kids are talking by the door", "02": "Dogs are sitting by the door"}
    try:
        with open(labels, newline="", encoding="utf-8-sig") as f:
            return {r["statement_code"].zfill(2): r["text"] for r in csv.DictReader(f)
                    if r.get("statement_code") and r.get("text")}
    except (UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(f"'{labels}' is not a readable UTF-8 CSV file ({e}); fix it or move "
                            "it away (the statements' default texts are then used).") from e


def _summary(path: Path, counts: dict[str, int]) -> tuple[str, list[str]]:
    if "classes" in counts:
        classes = counts["classes"]
        unlabelled = f", {counts['unlabelled']} unlabelled" if counts["unlabelled"] else ""
        return (f"{path}: {counts['clips']} clips, {len(classes)} classes ("
                f"{', '.join(f'{c} {n}' for c, n in classes.items())}){unlabelled}",
                list(counts["notes"]))
    return (f"{path}: {counts['clips']} clips, {counts['labelled']} with one of the six MER "
            f"classes ({counts['unlabelled']} calm/disgust left unlabelled)", [])


CORPUS = Corpus(
    name="ravdess",
    help="RAVDESS speech: Actor_*/ audio files and labels.csv",
    root_help="folder with Actor_*/ and labels.csv",
    build=build_ravdess_manifest,
    summary=_summary,
    options=(
        CorpusOption("--labels", "class set of 'discrete': mer6 (MER's six; calm and disgust "
                     "unlabelled) or native (RAVDESS's eight) (default mer6)", default="mer6",
                     choices=LABEL_SETS),
        LABEL_MAP_OPTION,
    ))
