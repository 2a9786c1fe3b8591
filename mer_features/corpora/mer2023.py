"""Manifest builder for the official MER 2023 release layout.

::

    ROOT/train/  ROOT/test1/  ROOT/test2/  ROOT/test3/     video files named <name>.<ext>
    ROOT/train-label.csv                                   name,discrete,valence
    ROOT/transcription.csv                                 name,chinese,english

Every video found becomes a row; ``split`` is its folder. Train clips get their labels; the
chosen transcript language becomes ``text`` and both languages are kept as extra columns.

``text_only=True`` needs no video folders: one row per labelled clip of ``train-label.csv``
with its transcript and labels and no media, for text-modality experiments on the real labels
(the videos are under an EULA and often kept elsewhere).
"""

from __future__ import annotations

import csv
from pathlib import Path

from mer_features import EMOTIONS
from mer_features.corpora import Corpus, CorpusOption
from mer_features.errors import ManifestError
from mer_features.decode import VIDEO_SUFFIXES

SPLITS = ("train", "test1", "test2", "test3")
TEXT_COLUMNS = ("english", "chinese")
TEXT_COLUMN_OPTION = CorpusOption(
    "--text-column", "transcript language for the 'text' column (default english)",
    default="english", choices=TEXT_COLUMNS)
"""The MER releases' transcript language option (MER 2023, MER 2025)."""


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    if not path.is_file():
        raise ManifestError(f"MER 2023 file '{path}' not found; the release root must hold "
                            f"'{path.name}' with columns {', '.join(required)}.")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            # Short rows give None for the missing fields, long ones a None key: both as "".
            rows = [{k: v or "" for k, v in r.items() if k is not None} for r in reader]
            header = set(reader.fieldnames or ())
    except UnicodeDecodeError as e:
        raise ManifestError(f"'{path}' is not UTF-8 text: {e}") from e
    except csv.Error as e:
        raise ManifestError(f"'{path}' is not a readable CSV file: {e}") from e
    lacking = [c for c in required if c not in header]
    if lacking:
        raise ManifestError(f"'{path}' lacks column(s) {', '.join(lacking)}; expected "
                            f"{', '.join(required)}.")
    return rows


def build_mer2023_manifest(root: str | Path, out: str | Path, *, text_column: str = "english",
                           relative: bool = True, text_only: bool = False
                           ) -> tuple[Path, dict[str, int]]:
    """Write a manifest for a MER 2023 release; returns its path and counts per split.

    Paths are written relative to the manifest's folder when ``relative`` (and possible).
    ``text_only``: the labelled clips with their transcripts and no media (see the module doc).
    """
    from mer_features.corpora.manifest import COLUMNS, valence_hint, write_manifest

    root, out = Path(root), Path(out)
    if not root.is_dir():
        what = "is not a folder" if root.exists() else "not found"
        raise ManifestError(f"MER 2023 release folder '{root}' {what}; point `root` at the folder "
                            "that holds train-label.csv, transcription.csv and train/ test1/ ...")
    if text_column not in TEXT_COLUMNS:
        raise ManifestError(f"text column must be one of {', '.join(TEXT_COLUMNS)}; got '{text_column}'.")
    labels = {r["name"].strip(): r for r in _read_csv(root / "train-label.csv",
                                                     ("name", "discrete", "valence"))}
    texts = {r["name"].strip(): r for r in _read_csv(root / "transcription.csv",
                                                    ("name", "chinese", "english"))}
    bad = [(n, r["discrete"]) for n, r in labels.items() if r["discrete"].strip().lower() not in EMOTIONS]
    if bad:
        shown = ", ".join(f"{n}={d!r}" for n, d in bad[:10])
        raise ManifestError(f"train-label.csv has {len(bad)} label(s) outside {', '.join(EMOTIONS)}: {shown}.")
    bad = [(n, r["valence"]) for n, r in labels.items()
           if r["valence"].strip() and not _on_valence_scale(r["valence"])]
    if bad:
        shown = ", ".join(f"{n}={v!r}" for n, v in bad[:10])
        raise ManifestError(f"train-label.csv has {len(bad)} valence value(s) that are not numbers "
                            f"in [-5, 5]: {shown}; {valence_hint()}.")

    if text_only:
        rows = [{"name": name, "video": None, "audio": None,
                 "text": texts.get(name, {}).get(text_column, "").strip(),
                 "discrete": label["discrete"].strip().lower(),
                 "valence": label["valence"].strip() or None, "split": "train",
                 "chinese": texts.get(name, {}).get("chinese", "").strip(),
                 "english": texts.get(name, {}).get("english", "").strip()}
                for name, label in labels.items()]
        write_manifest(out, rows, columns=(*COLUMNS, "chinese", "english"))
        return out, {"train": len(rows), "train_without_video": 0,
                     "without_transcript": sum(not r["text"] for r in rows),
                     "text_column": text_column}

    rows = []
    counts = {s: 0 for s in SPLITS}
    seen: dict[str, str] = {}
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            continue
        for video in sorted(folder.iterdir()):
            if video.suffix.lower() not in VIDEO_SUFFIXES or not video.is_file():
                continue
            name = video.stem
            if name in seen:
                raise ManifestError(f"Clip '{name}' appears in both '{seen[name]}/' and '{split}/'.")
            seen[name] = split
            label = labels.get(name, {}) if split == "train" else {}
            text = texts.get(name, {})
            path = video.resolve()
            if relative:
                try:
                    path = Path(_relpath(path, out.resolve().parent))
                except ValueError:
                    pass
            rows.append({
                "name": name, "video": str(path), "audio": None,
                "text": text.get(text_column, "").strip(),
                "discrete": label.get("discrete", "").strip().lower() or None,
                "valence": label.get("valence", "").strip() or None,
                "split": split,
                "chinese": text.get("chinese", "").strip(),
                "english": text.get("english", "").strip(),
            })
            counts[split] += 1
    if not rows:
        raise ManifestError(f"No videos found under '{root}' in {', '.join(s + '/' for s in SPLITS)}. "
                            "Point `root` at the folder that holds the release's split folders.")
    counts["train_without_video"] = sum(1 for n in labels if n not in seen)
    counts["without_transcript"] = sum(not r["text"] for r in rows)
    counts["text_column"] = text_column
    write_manifest(out, rows, columns=(*COLUMNS, "chinese", "english"))
    return out, counts


def _on_valence_scale(text: str) -> bool:
    from mer_features.corpora.manifest import VALENCE_RANGE, parse_number

    value = parse_number(text.strip())  # strict: '0_5', 'inf', 'nan' are not numbers
    return value is not None and VALENCE_RANGE[0] <= value <= VALENCE_RANGE[1]


def _relpath(path: Path, start: Path) -> str:
    import os

    return os.path.relpath(path, start)


def _summary(path: Path, counts: dict[str, int]) -> tuple[str, list[str]]:
    found = ", ".join(f"{s} {counts[s]}" for s in SPLITS if s in counts)
    notes = []
    if counts["train_without_video"]:
        notes.append(f"note: {counts['train_without_video']} labelled clip(s) of "
                     "train-label.csv have no video under train/ and were left out")
    if counts["without_transcript"]:
        notes.append(f"note: {counts['without_transcript']} clip(s) have no "
                     f"{counts['text_column']} transcript (empty in transcription.csv, or not "
                     "listed there); a text extraction stores them as 'empty'")
    return f"{path}: {found}", notes


CORPUS = Corpus(
    name="mer2023",
    help="MER 2023: train/ test1/ test2/ test3/, train-label.csv, transcription.csv",
    root_help="release folder",
    build=build_mer2023_manifest,
    summary=_summary,
    options=(
        TEXT_COLUMN_OPTION,
        CorpusOption("--text-only", "no video folders needed: the labelled clips with "
                     "transcripts, no media", switch=True),
    ))
