"""Manifest builder for a corpus in EmoBox's format (Ma et al. 2024, github.com/emo-box/EmoBox).

::

    DATA/<corpus>.jsonl                      one clip a line: key, wav, emo, length, ...
    DATA/label_map.json                      emo -> class (label_dict.json in emovo)
    DATA/fold_K/<corpus>_train_fold_K.jsonl  the clips trained on in fold K
    DATA/fold_K/<corpus>_test_fold_K.jsonl   the clips held out in fold K
    DATA/fold_K/<corpus>_valid_fold_K.jsonl  (some corpora) the official validation clips
    ROOT/<wav>                               the audio, ``wav`` relative to ROOT

``DATA`` is one folder of EmoBox's ``data/``. Each clip's ``discrete`` is its ``emo`` through
``label_map.json``, in lower case (RAVDESS: angry, surprise, sad, disgust, happy, calm, neutral,
fear): the corpus's own classes. ``fold`` is the fold whose test file holds the clip, so a
cross-validation that holds out ``fold == K`` in turn reproduces EmoBox's protocol. A corpus
with one fold (train/valid/test: MELD, MSP-Podcast, ...) also gets ``partition`` and ``split``
(train, valid or test); its train and valid clips have no ``fold``. ``speaker`` comes from the
file names for the corpora with a rule in :data:`SPEAKER_RULES`.

EmoBox's ``wav`` paths name the original download layout (``downloads/<corpus>/...``). The
importer matches them under ``--root`` by dropping the same number of leading folders for every
clip, the number under which most files are found, so ``--root`` may be the folder holding
``downloads/`` or any folder below it (RAVDESS: the one holding ``Actor_01/``).
``--audio-ext flac`` also accepts ``X.flac`` for a ``X.wav`` (a corpus converted to FLAC).
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath

from mer_features.corpora import Corpus, CorpusOption
from mer_features.corpora.labelmap import LABEL_MAP_OPTION, normalise_label
from mer_features.corpora.release import SKIP_MISSING_OPTION
from mer_features.errors import ManifestError

PARTS = ("train", "valid", "test")
EXTRA_COLUMNS = ("emo", "speaker", "fold", "partition", "length")


def _group(pattern: str, template: str = "{0}"):
    regex = re.compile(pattern)

    def rule(wav: PurePosixPath) -> str | None:
        found = regex.search(wav.as_posix())
        return template.format(*found.groups()) if found else None

    return rule


SPEAKER_RULES = {
    "ravdess": _group(r"-(\d\d)\.\w+$", "actor{0}"),
    "cremad": _group(r"/(\d{4})_[A-Z]{3}_[A-Z]{3}_\w+\.\w+$"),
    "emodb": _group(r"/(\d\d)[a-z]\d\d[A-Z][a-z]\.\w+$"),
    "iemocap": _group(r"/(Ses\d\d)[FM]_\w+_([FM])\w*\.\w+$", "{0}{1}"),
    "casia": _group(r"/([^/]+)/[^/]+/[^/]+\.\w+$"),
    "emovo": _group(r"/([fm]\d)/[^/]+\.\w+$"),
    "esd": _group(r"/(\d{4})_\d+\.\w+$"),
    "savee": _group(r"/([A-Z]{2})_[a-z]+\d+\.\w+$"),
    "tess": _group(r"/([A-Z]{3})_[^/]+\.\w+$"),
    "shemo": _group(r"/([FM]\d\d)[A-Z]\d+\.\w+$"),
    "subesco": _group(r"/([FM]_\d\d)_[^/]+\.\w+$"),
}
"""EmoBox corpus name -> the speaker of a clip from its ``wav`` path (None when it does not
match). Written from the corpora's file naming and checked on every clip of EmoBox's jsonl
files: each rule matches every clip and gives the corpus's number of speakers (RAVDESS 24,
CREMA-D 91, EmoDB 10, IEMOCAP 10, CASIA 4, EMOVO 6, ESD 20, SAVEE 4, TESS 2, ShEMO 87,
SUBESCO 20). EmoBox's test folds hold each speaker in one fold, except EmoDB's: each of its
10 speakers is in all 5 test folds (its folds are not speaker-independent)."""


def build_emobox_manifest(root: str | Path, out: str | Path, *, data: str | Path | None = None,
                          audio_ext: str | None = None, skip_missing: bool = False,
                          label_map: object = None, relative: bool = True
                          ) -> tuple[Path, dict[str, object]]:
    """Write a manifest for the EmoBox corpus folder ``data`` whose audio is under ``root``;
    returns its path and counts (see the module doc)."""
    from mer_features.corpora.labelmap import apply_to_rows, label_map_option_value
    from mer_features.corpora.manifest import COLUMNS, write_manifest
    from mer_features.corpora.release import (class_counts, manifest_path, require_folder,
                                              split_missing)
    from mer_features.decode import VIDEO_SUFFIXES

    if data is None:
        raise ManifestError("The emobox importer needs `data`, an EmoBox data/<corpus> folder "
                            "(with <corpus>.jsonl, label_map.json and fold_K/).")
    data, root, out = Path(data), Path(root), Path(out)
    require_folder(data, "EmoBox", "point `data` at an EmoBox data/<corpus> folder (with "
                                   "<corpus>.jsonl, label_map.json and fold_K/).")
    require_folder(root, "Audio root", "point `root` at the folder the jsonl's 'wav' paths are "
                                       "relative to (or a folder below it that holds the audio).")
    label_map = label_map_option_value(label_map)
    ext = _checked_ext(audio_ext)
    name = _corpus_name(data)
    clips, lines, from_folds = _read_clips(data, name)
    classes = _read_emobox_label_map(data)
    folds = _read_folds(data, name, clips)

    rows = []
    rule = SPEAKER_RULES.get(name)
    for key, record in clips.items():
        source, line = lines[key]
        emo = record["emo"]
        wav = PurePosixPath(record["wav"])
        rows.append({
            "name": key, "wav": wav, "discrete": _class_of(emo, classes, source, line),
            "emo": emo, "speaker": rule(wav) if rule else None,
            "fold": folds.held_out.get(key), "partition": folds.partition.get(key),
            "split": folds.partition.get(key),
            "length": record.get("length"),
        })
    depth, found = _strip_depth(root, [r["wav"] for r in rows], ext)
    if found == 0:
        raise ManifestError(f"None of the {len(rows)} clips of '{data}' has its audio under "
                            f"'{root}' (the first names '{rows[0]['wav']}'). "
                            f"{_missing_hint(root, depth, ext, found)}")
    for row in rows:
        row["_file"] = _candidate(root, row.pop("wav"), depth, ext, exists_only=False)

    rows, missing = split_missing(
        rows, lambda r: r["_file"], out=out, corpus=name, skip_missing=skip_missing,
        hint=_missing_hint(root, depth, ext, found))
    for row in rows:
        path = row.pop("_file")
        row["audio"] = manifest_path(path, out, relative)
        if path.suffix.lower() in VIDEO_SUFFIXES:
            row["video"] = row["audio"]
    rows, notes = apply_to_rows(rows, label_map)
    columns = [*COLUMNS, *(c for c in EXTRA_COLUMNS
                           if c != "partition" or folds.single)]
    write_manifest(out, rows, columns=columns)
    n_folds = len(folds.names)
    counts: dict[str, object] = {
        "clips": len(rows), "missing": missing, "folds": n_folds,
        "classes": class_counts(rows),
        "speakers": len({r["speaker"] for r in rows if r["speaker"]}),
        "without_fold": sum(1 for r in rows if r["fold"] is None),
        "corpus": name, "depth": depth, "notes": notes,
    }
    if rule is None:
        counts["notes"] = [*notes, f"note: no speaker rule for EmoBox corpus '{name}': the "
                           "'speaker' column is empty (folds still come from EmoBox's files)"]
    if from_folds:
        counts["notes"] = [*counts["notes"], f"note: '{data}' has no {name}.jsonl; the clips "
                           "were read from the fold files"]
    return out, counts


def _checked_ext(audio_ext: str | None) -> str | None:
    if audio_ext is None or not audio_ext.strip():
        return None
    ext = audio_ext.strip().lstrip(".").lower()
    if not re.fullmatch(r"[a-z0-9]{1,8}", ext):
        raise ManifestError(f"`audio_ext` must be a file extension such as flac; got "
                            f"{audio_ext!r}.")
    return "." + ext


def _corpus_name(data: Path) -> str:
    """The corpus's name: the folder's, or the stem of its one top-level jsonl file."""
    if (data / f"{data.name}.jsonl").is_file():
        return data.name
    top = sorted(p for p in data.glob("*.jsonl") if p.is_file())
    if len(top) == 1:
        return top[0].stem
    folds = sorted(data.glob("fold_*/*_test_fold_*.jsonl"))
    if folds:
        return re.sub(r"_test_fold_\d+$", "", folds[0].stem)
    raise ManifestError(f"'{data}' holds no EmoBox clip list: expected {data.name}.jsonl (or one "
                        "<corpus>.jsonl) and fold_K/<corpus>_test_fold_K.jsonl; point `data` at "
                        "an EmoBox data/<corpus> folder.")


def _read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """The records of an EmoBox jsonl file with their line numbers; a line that is not a JSON
    object with string ``key``, ``wav`` and ``emo`` is an error naming the file and line."""
    from mer_features.corpora.release import read_text

    records = []
    for number, text in enumerate(read_text(path, "EmoBox").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as e:
            raise ManifestError(f"'{path}', line {number}: not a JSON object ({e.msg} at column "
                                f"{e.colno}); fix or remove the line.") from e
        if not isinstance(record, dict):
            raise ManifestError(f"'{path}', line {number}: a JSON {type(record).__name__}, not "
                                "an object with key, wav and emo.")
        bad = [f for f in ("key", "wav", "emo")
               if not isinstance(record.get(f), str) or not record[f].strip()]
        if bad:
            raise ManifestError(f"'{path}', line {number}: field(s) {', '.join(bad)} missing or "
                                "not a non-empty string; every clip needs key, wav and emo.")
        if ".." in PurePosixPath(record["wav"]).parts:
            raise ManifestError(f"'{path}', line {number}: 'wav' path {record['wav']!r} climbs "
                                "out of the root with '..'; name the file below `root`.")
        _refuse_segment(record, path, number)
        records.append((number, record))
    return records


def _refuse_segment(record: dict, path: Path, number: int) -> None:
    """A clip that is a segment of a longer file (``start_time``/``end_time``, as in pavoque)
    cannot be expressed in a manifest, which names whole files."""
    start, end = record.get("start_time"), record.get("end_time")
    if start is None and end is None:
        return
    try:
        start, end = float(start or 0.0), float(end) if end is not None else None
        length = float(record.get("length")) if record.get("length") is not None else None
    except (TypeError, ValueError):
        start, end, length = -1.0, None, None
    whole = start == 0.0 and (end is None or (length is not None and abs(end - length) < 0.01))
    if not whole:
        raise ManifestError(f"'{path}', line {number}: clip '{record['key']}' is the segment "
                            f"{record.get('start_time')}-{record.get('end_time')} s of "
                            f"'{record['wav']}'; a manifest names whole files, so cut the "
                            "segments into files of their own first.")


def _read_clips(data: Path, name: str) -> tuple[dict[str, dict], dict[str, tuple[Path, int]], bool]:
    """Every clip by key (from <name>.jsonl, else from the fold files), and where it was read."""
    top = data / f"{name}.jsonl"
    sources = [top] if top.is_file() and top.stat().st_size else sorted(
        data.glob(f"fold_*/{name}_*_fold_*.jsonl"))
    if not sources:
        raise ManifestError(f"'{data}' has neither {name}.jsonl nor fold files "
                            f"fold_K/{name}_test_fold_K.jsonl.")
    clips: dict[str, dict] = {}
    lines: dict[str, tuple[Path, int]] = {}
    for source in sources:
        for number, record in _read_jsonl(source):
            key = record["key"].strip()
            if key in clips:
                if source == top or clips[key]["wav"] != record["wav"]:
                    first, first_line = lines[key]
                    raise ManifestError(f"'{source}', line {number}: clip '{key}' appears twice "
                                        f"(first at '{first}', line {first_line}); keys must be "
                                        "unique.")
                continue
            clips[key] = record
            lines[key] = (source, number)
    return clips, lines, sources[0] != top


def _read_emobox_label_map(data: Path) -> dict[str, str] | None:
    from mer_features.corpora.release import first_of, read_text

    path = first_of(data, ("label_map.json", "label_dict.json"))
    if path is None:
        return None
    try:
        mapping = json.loads(read_text(path, "EmoBox"))
    except json.JSONDecodeError as e:
        raise ManifestError(f"'{path}' is not valid JSON ({e.msg} at line {e.lineno}).") from e
    if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) and v.strip() for k, v in mapping.items()):
        raise ManifestError(f"'{path}' must be a JSON object mapping each 'emo' value to a class "
                            'name, e.g. {"Fearful": "Fear"}.')
    return mapping


def _class_of(emo: str, classes: dict[str, str] | None, source: Path, line: int) -> str:
    """The class of an ``emo`` value: through the corpus's label map (exact, else the one key
    equal without regard to case: EmoBox's emodb map has "Neutral" for "neutral")."""
    if classes is None:
        return normalise_label(emo)
    if emo in classes:
        return normalise_label(classes[emo])
    folded = [k for k in classes if k.strip().lower() == emo.strip().lower()]
    if len(folded) == 1:
        return normalise_label(classes[folded[0]])
    raise ManifestError(f"'{source}', line {line}: emotion '{emo}' is not in the corpus's "
                        f"label map (which has {', '.join(sorted(classes))}); fix the line or "
                        "add the emotion to label_map.json.")


class _Folds:
    def __init__(self) -> None:
        self.names: list[int] = []
        self.held_out: dict[str, int] = {}
        self.partition: dict[str, str] = {}
        self.single = False


def _read_folds(data: Path, name: str, clips: dict[str, dict]) -> _Folds:
    """Each clip's held-out fold; for a one-fold protocol also its partition."""
    folds = _Folds()
    dirs = sorted((d for d in data.glob("fold_*") if d.is_dir() and
                   re.fullmatch(r"fold_\d+", d.name)), key=lambda d: int(d.name[5:]))
    if not dirs:
        raise ManifestError(f"'{data}' has no fold_K/ folders; EmoBox's protocol needs them "
                            f"(fold_1/{name}_test_fold_1.jsonl ...).")
    folds.single = len(dirs) == 1
    for folder in dirs:
        k = int(folder.name[5:])
        members: dict[str, dict[str, int]] = {}
        for part in PARTS:
            path = folder / f"{name}_{part}_fold_{k}.jsonl"
            if not path.is_file():
                if part == "test":
                    raise ManifestError(f"'{path}' not found; every EmoBox fold folder needs its "
                                        "test file.")
                continue
            members[part] = {}
            unknown = []
            for number, record in _read_jsonl(path):
                key = record["key"].strip()
                if key not in clips:
                    unknown.append(f"{key} (line {number})")
                members[part][key] = number
            if unknown:
                raise ManifestError(f"'{path}' names {len(unknown)} clip(s) that {name}.jsonl "
                                    f"does not list: {', '.join(unknown[:5])}; the folder mixes "
                                    "files of two EmoBox versions.")
        parts = list(members)
        for i, a in enumerate(parts):
            for b in parts[i + 1:]:
                both = sorted(set(members[a]) & set(members[b]))
                if both:
                    raise ManifestError(f"Fold {k} of '{data}' has {len(both)} clip(s) in both its "
                                        f"{a} and {b} files (e.g. '{both[0]}'): a held-out clip "
                                        "would be trained on.")
        for key, number in members["test"].items():
            if key in folds.held_out:
                raise ManifestError(f"Clip '{key}' is held out in fold {folds.held_out[key]} and "
                                    f"in fold {k} ('{folder / f'{name}_test_fold_{k}.jsonl'}', "
                                    f"line {number}); each clip may be tested in one fold only.")
            folds.held_out[key] = k
        if folds.single:
            for part in parts:
                for key in members[part]:
                    folds.partition[key] = part
        folds.names.append(k)
    return folds


def _candidate(root: Path, wav: PurePosixPath, depth: int, ext: str | None,
               exists_only: bool = True) -> Path | None:
    """``root`` joined with ``wav`` less its first ``depth`` folders; with ``ext``, the same
    file with that extension when the named one is absent. ``exists_only``: None when neither
    exists (else the named path, to report)."""
    if wav.is_absolute():  # a jsonl of one's own may name files where they are
        path = Path(wav)
    else:  # a path shorter than the corpus's depth is looked for whole
        path = root.joinpath(*(wav.parts[depth:] if len(wav.parts) > depth else wav.parts))
    if path.is_file():
        return path
    if ext is not None:
        other = path.with_suffix(ext)
        if other.is_file():
            return other
    return None if exists_only else path


def _strip_depth(root: Path, wavs: list[PurePosixPath], ext: str | None) -> tuple[int, int]:
    """How many leading folders of the ``wav`` paths to drop under ``root``: the number under
    which most files are found (the smallest on a tie), and how many that finds."""
    most = max((len(w.parts) for w in wavs), default=1)
    best = (0, -1)
    for depth in range(most):
        found = sum(1 for w in wavs if _candidate(root, w, depth, ext) is not None)
        if found > best[1]:
            best = (depth, found)
    return best


def _missing_hint(root: Path, depth: int, ext: str | None, found: int) -> str:
    if found > 0:
        also = f" (and with the extension {ext})" if ext else ""
        return (f"Files were looked for under '{root}' with the first {depth} folder(s) of each "
                f"'wav' path dropped{also}; fetch the missing audio or fix `root`.")
    extra = "" if ext else (" If the audio was converted (e.g. to FLAC), set `audio_ext` to flac.")
    return (f"Point `root` at the folder the 'wav' paths are relative to (the one holding "
            f"'downloads/'), or at any folder below it that holds the audio.{extra}")


def _summary(path: Path, counts: dict[str, object]) -> tuple[str, list[str]]:
    from mer_features.corpora.release import describe_classes, missing_list_path

    line = (f"{path}: {counts['clips']} clips of EmoBox corpus '{counts['corpus']}', "
            f"{describe_classes(counts['classes'])}, {counts['folds']} fold(s), "
            f"{counts['speakers']} speakers")
    notes = list(counts["notes"])
    if counts["depth"]:
        notes.append(f"note: audio found under `root` with the first {counts['depth']} folder(s) "
                     "of each EmoBox 'wav' path dropped")
    if counts["missing"]:
        notes.append(f"note: {counts['missing']} clip(s) left out, their audio missing (listed "
                     f"in '{missing_list_path(path)}')")
    if counts["without_fold"] and counts["folds"] > 1:
        notes.append(f"note: {counts['without_fold']} clip(s) are in no fold's test file; their "
                     "'fold' is empty")
    return line, notes


CORPUS = Corpus(
    name="emobox",
    help="a corpus in EmoBox's format: --data data/<corpus> (jsonl, label_map.json, fold_K/)",
    root_help="folder the jsonl's 'wav' paths are relative to (or one below it holding the audio)",
    build=build_emobox_manifest,
    summary=_summary,
    options=(
        CorpusOption("--data", "EmoBox data/<corpus> folder: <corpus>.jsonl, label_map.json, "
                     "fold_K/ (required)", required=True),
        CorpusOption("--audio-ext", "also accept this extension for a missing 'wav' file (flac "
                     "for a corpus converted to FLAC)"),
        SKIP_MISSING_OPTION,
        LABEL_MAP_OPTION,
    ))
