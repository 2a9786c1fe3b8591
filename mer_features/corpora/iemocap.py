"""Manifest builder for IEMOCAP (Busso et al. 2008), in its release layout.

::

    ROOT/Session1/dialog/EmoEvaluation/Ses01F_impro01.txt      labels of one dialog
        [6.2901 - 8.2357]<TAB>Ses01F_impro01_F000<TAB>neu<TAB>[2.5000, 2.5000, 2.5000]
    ROOT/Session1/dialog/transcriptions/Ses01F_impro01.txt     Ses01F_impro01_F000 [006.2901-008.2357]: Excuse me.
    ROOT/Session1/sentences/wav/Ses01F_impro01/Ses01F_impro01_F000.wav
    ... Session2 ... Session5

Every utterance of an EmoEvaluation file becomes a row. Its class is the corpus's own (neutral,
happy, excited, sad, angry, frustrated, surprised, fearful, disgusted, other; ``xxx``, no
agreement, is left unlabelled). The bracket holds valence, activation (arousal) and dominance on
IEMOCAP's 1-5 scale; they are written as ``valence``, ``arousal`` and ``dominance`` on MER's
[-5, 5] scale, ``(v - 3) * 2.5``. ``session`` (Session1 ...), ``speaker`` (Ses01F: the session and
the speaker's gender, from the utterance id's last part), ``gender``, ``dialog``, ``mode``
(improvised or scripted), ``start``/``end`` (seconds in the dialog) and ``fold`` (the session's
number: the usual leave-one-session-out protocol) are columns.

``protocol="4class"`` is the usual four-class set: excited merged into happy, every other class
and the unlabelled utterances dropped (5531 utterances on the full release);
``"4class-no-excited"`` drops excited instead of merging it.
"""

from __future__ import annotations

import re
from pathlib import Path

from mer_features.corpora import Corpus, CorpusOption
from mer_features.corpora.labelmap import LABEL_MAP_OPTION
from mer_features.corpora.release import SKIP_MISSING_OPTION, summarise
from mer_features.errors import ManifestError

EMOTION_CODES = {"neu": "neutral", "hap": "happy", "exc": "excited", "sad": "sad",
                 "ang": "angry", "fru": "frustrated", "sur": "surprised", "fea": "fearful",
                 "dis": "disgusted", "oth": "other", "xxx": None}
PROTOCOLS = {
    "all": None,
    "4class": {"neutral": "neutral", "happy": "happy", "excited": "happy", "sad": "sad",
               "angry": "angry", "*": None},
    "4class-no-excited": {"neutral": "neutral", "happy": "happy", "sad": "sad", "angry": "angry",
                          "*": None},
}
"""The class protocols: a corpus default label map (None: the native classes)."""
EXTRA_COLUMNS = ("emotion", "arousal", "dominance", "session", "speaker", "gender", "dialog",
                 "mode", "fold", "start", "end")
_LABEL_LINE = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(\S+)\s+(\S+)\s+"
                         r"\[\s*([^,\]]+),\s*([^,\]]+),\s*([^,\]]+)\]\s*$")
_UTTERANCE = re.compile(r"^(Ses(\d\d)[FM]_(impro|script)\w*)_([FM])\w*$")
_TRANSCRIPT = re.compile(r"^(\S+)\s+\[[^\]]*\]:\s?(.*)$")


def build_iemocap_manifest(root: str | Path, out: str | Path, *, protocol: str = "all",
                           skip_missing: bool = False, label_map: object = None,
                           relative: bool = True) -> tuple[Path, dict[str, object]]:
    """Write a manifest for an IEMOCAP release at ``root`` (Session1/ ... Session5/); returns
    its path and counts."""
    from mer_features.corpora.labelmap import LabelMap, apply_to_rows, label_map_option_value
    from mer_features.corpora.manifest import COLUMNS, write_manifest
    from mer_features.corpora.release import (class_counts, manifest_path, require_folder,
                                              split_missing)

    if protocol not in PROTOCOLS:
        raise ManifestError(f"IEMOCAP protocol must be one of {', '.join(PROTOCOLS)}; got "
                            f"{protocol!r}.")
    root, out = Path(root), Path(out)
    label_map = label_map_option_value(label_map)
    require_folder(root, "IEMOCAP", "point `root` at the release folder that holds "
                                    "Session1/ ... Session5/.")
    sessions = sorted((p for p in root.glob("Session*") if p.is_dir() and
                       re.fullmatch(r"Session\d+", p.name)), key=lambda p: int(p.name[7:]))
    if not sessions:
        raise ManifestError(f"No Session1/ ... Session5/ folders in '{root}'; point `root` at "
                            "the IEMOCAP release folder (IEMOCAP_full_release/).")
    rows: list[dict[str, object]] = []
    seen: dict[str, str] = {}
    for session in sessions:
        evaluation = require_folder(session / "dialog" / "EmoEvaluation", "IEMOCAP",
                                    f"every session needs dialog/EmoEvaluation/ (in '{session}').")
        files = sorted(p for p in evaluation.iterdir()
                       if p.is_file() and p.suffix == ".txt" and p.name.startswith("Ses"))
        for path in files:
            texts = _transcripts(session / "dialog" / "transcriptions" / path.name)
            for row in _evaluation_rows(path, session):
                if row["name"] in seen:
                    raise ManifestError(f"IEMOCAP utterance '{row['name']}' is labelled in both "
                                        f"'{seen[row['name']]}' and '{path}'.")
                seen[row["name"]] = str(path)
                row["text"] = texts.get(row["name"])
                rows.append(row)
    if not rows:
        raise ManifestError(f"No labelled utterances in the EmoEvaluation/*.txt files under "
                            f"'{root}'.")
    rows, missing = split_missing(
        rows, lambda r: r["_wav"], out=out, corpus="IEMOCAP", skip_missing=skip_missing,
        hint="Each utterance's audio is Session*/sentences/wav/<dialog>/<utterance>.wav; check "
             "`root`.")
    for row in rows:
        row["audio"] = manifest_path(row.pop("_wav"), out, relative)
    notes: list[str] = []
    if PROTOCOLS[protocol] is not None:
        unlabelled = sum(r["discrete"] is None for r in rows)
        rows = [r for r in rows if r["discrete"] is not None]
        rows, notes = apply_to_rows(rows, LabelMap.from_mapping(
            PROTOCOLS[protocol], source=f"IEMOCAP {protocol}"))
        notes.append(f"IEMOCAP {protocol}: {unlabelled} utterance(s) without an agreed class "
                     "(xxx) dropped")
    rows, more = apply_to_rows(rows, label_map)
    write_manifest(out, rows, columns=(*COLUMNS, *EXTRA_COLUMNS))
    return out, {"clips": len(rows), "classes": class_counts(rows),
                 "unlabelled": sum(r["discrete"] is None for r in rows),
                 "sessions": len({r["session"] for r in rows}),
                 "speakers": len({r["speaker"] for r in rows}), "missing": missing,
                 "notes": [*notes, *more]}


def _evaluation_rows(path: Path, session: Path) -> list[dict[str, object]]:
    """The utterances of one EmoEvaluation file: the lines that start with '['."""
    from mer_features.corpora.release import read_text, to_mer_scale

    rows = []
    for number, line in enumerate(read_text(path, "IEMOCAP").splitlines(), start=1):
        if not line.startswith("["):
            continue  # the header, evaluators' lines (C-E1:, A-E3:) and blank lines
        where = f"IEMOCAP file '{path}', line {number}"
        found = _LABEL_LINE.match(line)
        if found is None:
            raise ManifestError(f"{where}: not read as '[start - end] utterance emotion [V, A, "
                                f"D]': {line.strip()[:80]!r}.")
        start, end, name, code, *vad = found.groups()
        utterance = _UTTERANCE.match(name)
        if utterance is None:
            raise ManifestError(f"{where}: '{name}' is not an IEMOCAP utterance id "
                                "(Ses01F_impro01_F000, Ses01F_script01_1_M012 ...).")
        if code not in EMOTION_CODES:
            raise ManifestError(f"{where}: unknown emotion code '{code}' (IEMOCAP's are "
                                f"{', '.join(EMOTION_CODES)}).")
        dialog, number_of_session, mode, gender = utterance.groups()
        valence, arousal, dominance = (to_mer_scale(v.strip(), 1.0, 5.0, where) for v in vad)
        rows.append({
            "name": name, "discrete": EMOTION_CODES[code], "valence": valence,
            "emotion": code, "arousal": arousal, "dominance": dominance,
            "session": session.name, "speaker": f"Ses{number_of_session}{gender}",
            "gender": "female" if gender == "F" else "male", "dialog": dialog,
            "mode": "improvised" if mode == "impro" else "scripted",
            "fold": int(number_of_session), "start": start, "end": end,
            "_wav": session / "sentences" / "wav" / dialog / f"{name}.wav",
        })
    return rows


def _transcripts(path: Path) -> dict[str, str]:
    """Utterance id -> transcript from a dialog's transcription file (empty when absent);
    lines that are not an utterance's are skipped."""
    from mer_features.corpora.release import read_text

    if not path.is_file():
        return {}
    texts = {}
    for line in read_text(path, "IEMOCAP").splitlines():
        found = _TRANSCRIPT.match(line.strip())
        if found:
            texts[found.group(1)] = found.group(2).strip()
    return texts


def _summary(path: Path, counts: dict[str, object]) -> tuple[str, list[str]]:
    return summarise(path, counts, unit="utterances")


CORPUS = Corpus(
    name="iemocap",
    help="IEMOCAP: Session1/ ... Session5/ (dialog/EmoEvaluation, transcriptions, sentences/wav)",
    root_help="release folder that holds Session1/ ... Session5/",
    build=build_iemocap_manifest,
    summary=_summary,
    options=(
        CorpusOption("--protocol", "class set: all (IEMOCAP's own), 4class (excited merged "
                     "into happy, others dropped) or 4class-no-excited (default all)",
                     default="all", choices=tuple(PROTOCOLS)),
        SKIP_MISSING_OPTION,
        LABEL_MAP_OPTION,
    ))
