"""Manifest builder for MER 2025 Track 1 (MER-SEMI), in its release layout.

::

    ROOT/video/<name>.mp4              every clip (labelled, test candidates, unlabelled pool)
    ROOT/audio/<name>.wav              the same clips' audio, extracted by the organisers
    ROOT/track1_train_disdim.csv       name,discrete,valence   the labelled training clips
    ROOT/track_all_candidates.csv      name                    the clips to predict
    ROOT/track1_test_dis.csv           name,discrete           optional: test labels
    ROOT/subtitle_chieng.csv           name,chinese,english    transcripts

The layout and columns are those read by the organisers' baseline (github.com/zeroQiaoba/MERTools,
MER2025/MER2025_Track1: README, toolkit/preprocess/mer2025.py, submission.py); the importer was
tested on a copy of that layout, not on the release itself. Classes are MER's six. ``split`` is
``train`` for the labelled clips and ``test`` for the candidates (labelled when
``track1_test_dis.csv`` is there); ``with_unlabelled`` adds every other video as ``unlabelled``
(the MER-SEMI pool, over 100,000 clips). ``audio`` is the organisers' wav when present (else the
video's track is read).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from mer_features import EMOTIONS
from mer_features.corpora import Corpus, CorpusOption
from mer_features.corpora.mer2023 import TEXT_COLUMN_OPTION, TEXT_COLUMNS
from mer_features.corpora.release import SKIP_MISSING_OPTION
from mer_features.errors import ManifestError



def build_mer2025_manifest(root: str | Path, out: str | Path, *, text_column: str = "english",
                           with_unlabelled: bool = False, skip_missing: bool = False,
                           relative: bool = True) -> tuple[Path, dict[str, object]]:
    """Write a manifest for a MER 2025 Track 1 release at ``root``; returns its path and
    counts."""
    from mer_features.corpora.manifest import COLUMNS, valence_hint, write_manifest
    from mer_features.corpora.release import (manifest_path, read_csv, require_folder,
                                              split_missing)

    if text_column not in TEXT_COLUMNS:
        raise ManifestError(f"text column must be one of {', '.join(TEXT_COLUMNS)}; got "
                            f"'{text_column}'.")
    root, out = Path(root), Path(out)
    hint = "point `root` at the mer2025-dataset folder (video/, track1_train_disdim.csv ...)."
    require_folder(root, "MER 2025", hint)
    videos = require_folder(root / "video", "MER 2025", hint)
    labels: dict[str, tuple[str, dict[str, str]]] = {}
    for name, split in (("track1_train_disdim.csv", "train"), ("track_all_candidates.csv", "test")):
        required = ("name", "discrete") if split == "train" else ("name",)
        for line, row in read_csv(root / name, "MER 2025", required, hint=hint):
            where = f"MER 2025 file '{root / name}', line {line}"
            clip = row["name"]
            if not clip:
                raise ManifestError(f"{where}: empty name.")
            if clip in labels:
                raise ManifestError(f"{where}: clip '{clip}' is listed twice (also in the "
                                    f"{labels[clip][0]} list).")
            labels[clip] = (split, {**row, "_where": where})
    test_labels = root / "track1_test_dis.csv"
    if test_labels.is_file():
        for line, row in read_csv(test_labels, "MER 2025", ("name", "discrete")):
            split, known = labels.get(row["name"], (None, None))
            if split != "test":
                raise ManifestError(f"MER 2025 file '{test_labels}', line {line}: clip "
                                    f"'{row['name']}' is not a test candidate.")
            known.update(discrete=row["discrete"], _where=f"MER 2025 file '{test_labels}', line "
                                                          f"{line}")
    texts = {row["name"]: row for _, row in read_csv(root / "subtitle_chieng.csv", "MER 2025",
                                                     ("name", "chinese", "english"))} \
        if (root / "subtitle_chieng.csv").is_file() else {}
    names = list(labels)
    if with_unlabelled:
        names += sorted(p.stem for p in videos.iterdir()
                        if p.suffix.lower() == ".mp4" and p.stem not in labels)
    rows = []
    for name in names:
        split, row = labels.get(name, ("unlabelled", {}))
        discrete = row.get("discrete", "").lower() or None
        if discrete is not None and discrete not in EMOTIONS:
            raise ManifestError(f"{row['_where']}: unknown class '{row['discrete']}' (MER's are "
                                f"{', '.join(EMOTIONS)}).")
        valence = row.get("valence") or None
        if valence is not None and not _on_mer_scale(valence):
            raise ManifestError(f"{row['_where']}: valence {valence!r} is not a number in "
                                f"[-5, 5]; {valence_hint()}.")
        text = texts.get(name, {})
        audio = root / "audio" / f"{name}.wav"
        rows.append({"name": name, "_video": videos / f"{name}.mp4",
                     "_audio": audio if audio.is_file() else None,
                     "text": text.get(text_column), "discrete": discrete, "valence": valence,
                     "split": split, "chinese": text.get("chinese"),
                     "english": text.get("english")})
    rows, missing = split_missing(rows, lambda r: r["_video"], out=out, corpus="MER 2025",
                                  skip_missing=skip_missing,
                                  hint="Each clip's video is video/<name>.mp4; check `root`.")
    for row in rows:
        row["video"] = manifest_path(row.pop("_video"), out, relative)
        audio = row.pop("_audio")
        row["audio"] = manifest_path(audio, out, relative) if audio is not None else None
    write_manifest(out, rows, columns=(*COLUMNS, "chinese", "english"))
    return out, {"clips": len(rows), "splits": dict(Counter(r["split"] for r in rows)),
                 "without_transcript": sum(r["name"] not in texts for r in rows),
                 "missing": missing}


def _on_mer_scale(text: str) -> bool:
    from mer_features.corpora.manifest import VALENCE_RANGE

    try:
        value = float(text)
    except ValueError:
        return False
    return VALENCE_RANGE[0] <= value <= VALENCE_RANGE[1]  # False for NaN


def _summary(path: Path, counts: dict[str, object]) -> tuple[str, list[str]]:
    from mer_features.corpora.release import missing_list_path

    splits = ", ".join(f"{s} {n}" for s, n in counts["splits"].items())
    notes = []
    if counts["missing"]:
        notes.append(f"note: {counts['missing']} clip(s) left out, their video missing (listed "
                     f"in '{missing_list_path(path)}')")
    if counts["without_transcript"]:
        notes.append(f"note: {counts['without_transcript']} clip(s) have no line in "
                     "subtitle_chieng.csv; their text is empty")
    return f"{path}: {counts['clips']} clips ({splits})", notes


CORPUS = Corpus(
    name="mer2025",
    help="MER 2025 Track 1: video/, audio/, track1_train_disdim.csv, track_all_candidates.csv",
    root_help="mer2025-dataset folder",
    build=build_mer2025_manifest,
    summary=_summary,
    options=(
        TEXT_COLUMN_OPTION,
        CorpusOption("--with-unlabelled", "also every other video of video/ as split "
                     "'unlabelled' (the MER-SEMI pool)", switch=True),
        SKIP_MISSING_OPTION,
    ))
