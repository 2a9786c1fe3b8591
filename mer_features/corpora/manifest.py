"""Manifests: the CSV that names a corpus's clips, their media, transcripts and labels.

A manifest has one row per clip and these columns (see docs/manifests.md):

``name``
    Unique clip id (required).
``video``
    Path of a video file (optional).
``audio``
    Path of an audio file (optional; when empty the video's audio track is used).
``text``
    Transcript (optional).
``discrete``
    One of :data:`mer_features.EMOTIONS`, or empty for an unlabelled clip.
``valence``
    A number, or empty.
``split``
    Free text (``train``, ``test1``, ...), optional.

Other columns are kept in :attr:`Clip.extra`. Relative paths resolve against the manifest's
folder. Every problem is collected first and reported in one :class:`ManifestError`, so a user
fixes a broken manifest in one pass instead of one error per run.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import stat
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mer_features import EMOTIONS
from mer_features.errors import ManifestError
from mer_features.files import atomic_open

COLUMNS = ("name", "video", "audio", "text", "discrete", "valence", "split")
"""The columns the toolkit understands, in the order it writes them."""

MAX_LISTED_PROBLEMS = 20

VALENCE_RANGE = (-5.0, 5.0)
"""MER 2023's valence scale; manifests must use it (see :func:`valence_hint`)."""

PLAIN_COLUMNS = ("name", "discrete", "valence", "split")
"""Columns whose values go into the store as strings: no control characters there."""


@dataclass(frozen=True)
class Clip:
    """One manifest row.

    ``video`` and ``audio`` are absolute paths (or None); ``line`` is the row's line number in
    the CSV file (the header is line 1), for error messages.
    """

    name: str
    video: Path | None = None
    audio: Path | None = None
    text: str | None = None
    discrete: str | None = None
    valence: float | None = None
    split: str | None = None
    extra: dict[str, str] = field(default_factory=dict, compare=False)
    line: int = 0
    invalid_utf8: frozenset[str] = frozenset()
    """Text columns whose bytes are not valid UTF-8 (their invalid bytes read as U+FFFD)."""

    def text_for(self, column: str = "text") -> str | None:
        """The transcript in ``column`` ("text" or an extra column), None when absent."""
        return self.text if column == "text" else self.extra.get(column)

    @property
    def audio_source(self) -> Path | None:
        """The file to read audio from: the ``audio`` column, else the video's audio track."""
        return self.audio if self.audio is not None else self.video


@dataclass
class Manifest:
    """The validated rows of a manifest file, in file order."""

    path: Path | None
    clips: list[Clip]
    columns: list[str]
    file_labels: list[str | None] | None = field(default=None, repr=False, compare=False)
    """The labels of every row of the file when ``clips`` holds only some of them (a shard);
    None: those of ``clips``."""

    def __len__(self) -> int:
        return len(self.clips)

    def __iter__(self) -> Iterator[Clip]:
        return iter(self.clips)

    def __getitem__(self, name: str) -> Clip:
        for clip in self.clips:
            if clip.name == name:
                return clip
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [clip.name for clip in self.clips]

    @property
    def labels(self) -> list[str]:
        """The ``discrete`` label of every row of the file ("" for none), shards included:
        what the label set of the corpus is made of."""
        labels = self.file_labels if self.file_labels is not None else [
            c.discrete for c in self.clips]
        return [label or "" for label in labels]


class _Problems:
    """Collects problems with their line numbers and raises them together."""

    def __init__(self, source: str):
        self.source = source
        self.items: list[str] = []

    def add(self, line: int | None, name: str | None, message: str) -> None:
        where = f"line {line}" if line is not None else "header"
        if name:
            where += f" (clip '{name}')"
        self.items.append(f"{where}: {message}")

    def raise_if_any(self, hint: str) -> None:
        if not self.items:
            return
        shown = self.items[:MAX_LISTED_PROBLEMS]
        more = len(self.items) - len(shown)
        lines = "\n".join(f"  - {item}" for item in shown)
        if more:
            lines += f"\n  ... and {more} more problem(s)"
        raise ManifestError(
            f"Manifest {self.source} has {len(self.items)} problem(s):\n{lines}\n{hint}"
        )


_HINT = (
    "Fix these rows and run again. A manifest is a CSV with a 'name' column and any of "
    "'video', 'audio', 'text', 'discrete', 'valence', 'split' (see docs/manifests.md); "
    "'discrete' a class or empty (MER 2023's six for mer2023 data; any corpus's own with "
    "extract, which --classes restricts), 'valence' a number or empty."
)

NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
"""The numbers a manifest may hold: ASCII decimal digits with an optional sign, point and
exponent (``-2.5``, ``3``, ``.5``, ``1e-1``). Python's ``float`` would also take ``0_5`` (as
5.0), ``inf``, ``nan`` and non-ASCII digits; none of them is a valence."""

NUMBER_RULE = ("write a decimal number such as -2.5, 3 or 1e-1 (ASCII digits, at most one "
               "'.', no '_', no ',', no inf or nan)")


def parse_number(text: str) -> float | None:
    """``text`` (already stripped) as a finite float under :data:`NUMBER`, else None."""
    if not NUMBER.fullmatch(text):
        return None
    value = float(text)
    return value if math.isfinite(value) else None


ROLES = {"name": "clip names", "video": "video paths", "audio": "audio paths",
         "discrete": "labels", "valence": "labels", "split": "splits"}
"""The columns that are not transcripts, and what they hold (for messages)."""


def read_manifest(path: str | Path, *, check_files: bool = True,
                  classes: Sequence[str] | None = EMOTIONS) -> Manifest:
    """Read and validate a manifest CSV.

    Checks the encoding, the header, duplicate and empty names, labels, valence values and,
    when ``check_files`` is true, that every named media file exists. All problems of every
    row are reported in one :class:`ManifestError`. ``classes``: the labels ``discrete`` may
    hold (MER's six by default); None accepts any label (a corpus's own classes, e.g.
    RAVDESS's eight).
    """
    manifest, problems, _ = _read(path, check_files=check_files, classes=classes)
    problems.raise_if_any(_HINT)
    return _nonempty(manifest, problems.source)


def read_manifest_for(manifest: str | Path | Manifest, modality: str, columns: Sequence[str],
                      media: Callable[[Clip], Path | None] | None, *,
                      skip_missing: bool = False,
                      column_problem: Callable[[Manifest], str] | None = None,
                      corpus_check: Callable[[Manifest], None] | None = None,
                      select: Callable[[str], bool] | None = None,
                      classes: Sequence[str] | None = EMOTIONS,
                      ) -> tuple[Manifest, list[Clip], list[tuple[Clip, str]]]:
    """Read a manifest for extracting ``modality``, reporting every problem in one pass.

    ``modality`` reads ``columns`` (any one will do) and, when ``media`` is given, the file
    ``media(clip)`` of each clip; ``column_problem(manifest)`` says why a column that exists
    cannot be used ("" when it can) and ``corpus_check(manifest)`` checks the whole manifest
    (a modality's stage gives both: :meth:`mer_features.modalities.Stage.read_manifest`).
    The rows' problems (:func:`read_manifest`), a column that cannot be used, and the clips
    whose input file is not a regular file (unless ``skip_missing``) all go into one
    :class:`ManifestError`. Other modalities' files are not looked at. ``select`` keeps the
    clips whose name it accepts (a shard); the rows are validated whole either way.

    Returns ``(manifest, usable, missing)``: the selected clips, those to process, and
    ``(clip, reason)`` for those whose file is missing (only with ``skip_missing``).
    """
    if isinstance(manifest, Manifest):
        parsed, problems, rows = manifest, _Problems(_source_of(manifest)), list(manifest)
    else:
        parsed, problems, rows = _read(manifest, check_files=False, classes=classes)
    row_problems = len(problems.items)
    unusable = (_column_problem(parsed, modality, columns)
                or (column_problem(parsed) if column_problem is not None else ""))
    if unusable:
        if not row_problems:
            raise ManifestError(f"{unusable[0].upper()}{unusable[1:]}.")
        problems.add(None, None, unusable)
        problems.raise_if_any(_HINT)
    if corpus_check is not None and not row_problems:
        corpus_check(parsed)
    chosen = [clip for clip in rows if select is None or select(clip.name)]
    usable, missing = _media(chosen, columns, media, skip_missing, problems)
    hints = [_HINT] if row_problems else []
    if len(problems.items) > row_problems:
        hints.append(_MISSING_HINT)
    problems.raise_if_any(" ".join(hints))
    manifest = _nonempty(parsed, problems.source)
    if select is not None:
        manifest = Manifest(manifest.path, [c for c in manifest if select(c.name)],
                            manifest.columns, file_labels=[c.discrete for c in manifest])
    return manifest, usable, missing


def _read(path: str | Path, *, check_files: bool, classes: Sequence[str] | None = EMOTIONS
          ) -> tuple[Manifest, _Problems, list[Clip]]:
    path = Path(path)
    problem = describe_non_file(path)
    if problem is not None:
        problem = "does not exist" if problem == "not found" else problem
        raise ManifestError(
            f"Manifest '{path}' {problem}. Give the path of a CSV file "
            "(make one with 'mer-features manifest ...' or 'mer-features demo')."
        )
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ManifestError(f"Manifest '{path}' cannot be read ({e.strerror or e}); check its "
                            "permissions.") from e
    encoding = _other_encoding(raw)
    if encoding:
        raise ManifestError(f"Manifest '{path}' is {encoding}, not UTF-8; save it as UTF-8 "
                            "(in a spreadsheet: 'CSV UTF-8') and run again.")
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    # Undecodable bytes survive as lone surrogates, so a bad transcript fails its own clip
    # instead of the whole manifest; names, paths and labels must still be valid UTF-8.
    text = raw.decode("utf-8", errors="surrogateescape")
    return _parse(text, base_dir=path.parent, source=f"'{path}'", path=path,
                  check_files=check_files, classes=classes)


def _other_encoding(raw: bytes) -> str:
    """'' for UTF-8 (or ASCII) bytes; else what they look like ("UTF-16 text ...")."""
    for bom, name in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                      (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):
        if raw.startswith(bom):
            return f"{name} text (it starts with a {name} byte-order mark)"
    head = raw[:4096]
    if len(head) >= 4 and head.count(b"\x00") * 3 >= len(head):
        return "UTF-16 or UTF-32 text (a third or more of its bytes are NUL)"
    return ""


def parse_manifest(text: str, *, base_dir: Path, source: str = "<text>",
                   path: Path | None = None, check_files: bool = True,
                   classes: Sequence[str] | None = EMOTIONS) -> Manifest:
    """Parse manifest CSV text; relative paths resolve against ``base_dir``."""
    manifest, problems, _ = _parse(text, base_dir=base_dir, source=source, path=path,
                                   check_files=check_files, classes=classes)
    problems.raise_if_any(_HINT)
    return _nonempty(manifest, source)


def _nonempty(manifest: Manifest, source: str) -> Manifest:
    if not manifest.clips:
        raise ManifestError(f"Manifest {source} has a header but no clip rows; add one row per "
                            "clip (see docs/manifests.md).")
    return manifest


def _records(reader: Any, problems: _Problems) -> Iterator[tuple[int, list[str]]]:
    """``(first line, fields)`` of each CSV record after the header; a record the CSV reader
    refuses (a field over its size limit) is a problem of its line, and reading goes on."""
    while True:
        line = reader.line_num + 1
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            detail = str(e)
            if "field limit" in detail:
                detail = (f"a field is longer than the CSV reader's limit of "
                          f"{csv.field_size_limit()} characters (a quote that is never closed "
                          "makes the rest of the file one field); close the quote or shorten "
                          "the field")
            problems.add(line, None, f"cannot be read as CSV: {detail}")
            continue
        yield line, values


def _parse(text: str, *, base_dir: Path, source: str, path: Path | None,
           check_files: bool, classes: Sequence[str] | None = EMOTIONS
           ) -> tuple[Manifest, _Problems, list[Clip]]:
    """The manifest (its valid clips), its problems, and every row that names a clip (with
    problems or not), every row checked whatever the others hold."""
    problems = _Problems(source)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError(f"Manifest {source} is empty; it needs a header row with 'name'.") from None
    except csv.Error as e:
        raise ManifestError(f"Manifest {source} is not a readable CSV file: {e}.") from e
    header = [h.strip() for h in header]
    _check_header(header, problems)
    problems.raise_if_any(_HINT)

    clips: list[Clip] = []
    rows: list[Clip] = []
    seen: dict[str, int] = {}
    seen_nfc: dict[str, tuple[str, int]] = {}
    for line, values in _records(reader, problems):
        if not any(v.strip() for v in values):
            continue  # blank lines are harmless
        if len(values) != len(header):
            problems.add(line, None, f"has {len(values)} fields, the header has {len(header)}")
            continue
        row = dict(zip(header, values))
        name = row["name"].strip()
        before = len(problems.items)
        if name in seen:
            problems.add(line, name, f"duplicate name (first used on line {seen[name]})")
        elif name:
            seen[name] = line
            nfc = unicodedata.normalize("NFC", name)
            if nfc in seen_nfc:
                other, other_line = seen_nfc[nfc]
                problems.add(line, ascii(name)[1:-1], f"name equals '{ascii(other)[1:-1]}' "
                             f"(line {other_line}) once Unicode-normalised (NFC): the two "
                             "spellings look the same but are different strings; rename one")
            else:
                seen_nfc[nfc] = (name, line)
        clip = _parse_row(row, line, base_dir, problems, check_files, classes)
        if clip is not None:
            rows.append(clip)
            if len(problems.items) == before:
                clips.append(clip)
    return Manifest(path=path, clips=clips, columns=header), problems, rows


def _check_header(header: list[str], problems: _Problems) -> None:
    """Empty, repeated or wrongly-cased column names; a missing 'name' column."""
    empty = [str(i + 1) for i, h in enumerate(header) if not h]
    if empty:
        problems.add(None, None, f"column(s) {', '.join(empty)} of the header have no name; "
                     "name them, or delete the empty column(s)")
    dup_cols = sorted({h for h in header if h and header.count(h) > 1})
    if dup_cols:
        problems.add(None, None, f"column(s) {', '.join(dup_cols)} appear more than once")
    for h in header:
        known = next((c for c in COLUMNS if c == h.lower()), None)
        if known is not None and h != known and known not in header:
            problems.add(None, None, f"column '{h}' differs from the column '{known}' only in "
                         "letter case, and column names are case-sensitive: rename it to "
                         f"'{known}' (or to another name to keep it as an extra column)")
    if "name" not in header and "name" not in (h.lower() for h in header):
        problems.add(None, None, f"no 'name' column (columns found: {', '.join(header) or 'none'})")


def _parse_row(row: dict[str, str], line: int, base_dir: Path, problems: _Problems,
               check_files: bool, classes: Sequence[str] | None = EMOTIONS) -> Clip | None:
    """The row's clip, its problems added to ``problems`` (all of them: one problem does not
    hide another); None when the row has no usable name."""
    invalid = {k for k, v in row.items() if not _is_utf8(v)}
    strict = invalid & {"name", "video", "audio", "discrete", "valence", "split"}
    if strict:
        problems.add(line, None, f"column(s) {', '.join(sorted(strict))} are not valid UTF-8")
        if "name" in strict:
            return None
    row = {k: (v.encode("utf-8", "surrogateescape").decode("utf-8", "replace") if k in invalid else v)
           for k, v in row.items()}
    name = row["name"].strip()
    if not name:
        problems.add(line, None, "empty name")
        return None
    controls = [(c, _control_characters(row[c])) for c in PLAIN_COLUMNS if c in row]
    controls = [(c, found) for c, found in controls if found]
    if controls:
        shown = "; ".join(f"'{c}' holds {found}" for c, found in controls)
        problems.add(line, ascii(name)[1:-1], f"{shown}: names, labels and splits must be "
                     "printable text (a store, a CSV file or a file name cannot carry them "
                     "faithfully); remove them")
        if "name" in dict(controls):
            return None
    paths: dict[str, Path | None] = {}
    for column in ("video", "audio"):
        value = row.get(column, "").strip()
        if not value:
            paths[column] = None
            continue
        if "\x00" in value:
            problems.add(line, name, f"{column} path {ascii(value)} holds a NUL byte, which no "
                                     "file path can hold; fix the path")
            paths[column] = None
            continue
        resolved = _file_path(value, base_dir)
        problem = describe_non_file(resolved) if check_files else None
        if problem is not None:
            problems.add(line, name, f"{column} file '{value}' {problem} (looked for '{resolved}')")
        paths[column] = resolved

    discrete = row.get("discrete", "").strip().lower() or None
    if discrete is not None and classes is not None and discrete not in classes:
        import difflib

        close = difflib.get_close_matches(discrete, list(classes), n=1, cutoff=0.6)
        like = f"like '{close[0]}'?; " if close else ""
        problems.add(line, name, f"unknown discrete label '{row['discrete'].strip()}' "
                                 f"({like}expected one of {', '.join(classes)}, or empty)")
        discrete = None

    valence = None
    raw_valence = row.get("valence", "").strip()
    if raw_valence:
        valence = parse_number(raw_valence)
        if valence is None:
            problems.add(line, name, f"valence '{raw_valence}' is not a finite number; "
                                     f"{NUMBER_RULE}")
        elif not VALENCE_RANGE[0] <= valence <= VALENCE_RANGE[1]:
            problems.add(line, name, f"valence {raw_valence} is outside MER's scale "
                                     f"[{VALENCE_RANGE[0]:g}, {VALENCE_RANGE[1]:g}]; "
                                     f"{valence_hint()}")
            valence = None
    text = row.get("text")
    extra = {k: v for k, v in row.items() if k not in COLUMNS}
    return Clip(
        name=name,
        video=paths["video"],
        audio=paths["audio"],
        text=text if text is not None else None,
        discrete=discrete,
        valence=valence,
        split=(row.get("split", "").strip() or None),
        extra=extra,
        line=line,
        invalid_utf8=frozenset(invalid),
    )


def _file_path(value: str, base_dir: Path) -> Path:
    """The path a manifest cell names, resolved against ``base_dir`` (without resolving links).

    The cell is UTF-8 text, and file names are bytes: the path is built from the cell's UTF-8
    bytes, so that it names the same file under any locale (under ``LC_ALL=C`` Python would
    otherwise encode it as ASCII and fail on the first accented letter)."""
    resolved = Path(os.fsdecode(value.encode("utf-8", "surrogateescape"))).expanduser()
    if not resolved.is_absolute():
        resolved = base_dir / resolved
    return Path(*resolved.parts)  # normalise separators


def valence_hint() -> str:
    """How to bring another valence scale onto MER's [-5, 5] (for error messages)."""
    return ("rescale the column linearly onto [-5, 5], e.g. from a 1-9 SAM scale with "
            "(v - 5) * 1.25, from [-1, 1] with v * 5, from [0, 1] with (v - 0.5) * 10")


def _control_characters(value: str) -> str:
    """'' when ``value`` has no control character (Unicode category Cc), else a description
    such as "a NUL byte (U+0000) at character 3"."""
    found = _CONTROL.search(value)
    if found is None:
        return ""
    ch = found.group()
    what = {"\x00": "a NUL byte", "\n": "a line break", "\r": "a carriage return",
            "\t": "a tab"}.get(ch, "a control character")
    return f"{what} (U+{ord(ch):04X}) at character {found.start() + 1}"


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc


_KINDS = ((stat.S_ISDIR, "is a directory, not a file"),
          (stat.S_ISFIFO, "is not a regular file (a FIFO, named pipe)"),
          (stat.S_ISCHR, "is not a regular file (a character device)"),
          (stat.S_ISBLK, "is not a regular file (a block device)"),
          (stat.S_ISSOCK, "is not a regular file (a socket)"))


def describe_non_file(path: Path) -> str | None:
    """None when ``path`` is a regular file (after symbolic links), else what it is instead
    ("not found", "is a directory, not a file", "is not a regular file (a FIFO, named pipe)",
    "is a broken symbolic link to ..."). Only ``stat`` is used: a FIFO is never opened,
    since opening one blocks until someone writes to it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return f"is a broken symbolic link (to '{os.readlink(path)}')"
        return "not found"
    except OSError as e:
        if e.errno == 40:  # ELOOP
            return "is a symbolic link that loops"
        return f"cannot be accessed ({e.strerror or e})"
    except ValueError as e:  # an embedded NUL
        return f"is not a valid path ({e})"
    if stat.S_ISREG(st.st_mode):
        return None
    return next((what for test, what in _KINDS if test(st.st_mode)), "is not a regular file")


def _is_utf8(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_MISSING_HINT = ("Fix the paths, or pass `skip_missing` to record the clips whose file is "
                 "missing as missing and go on.")


def check_inputs(manifest: Manifest, modality: str, columns: Sequence[str],
                 media: Callable[[Clip], Path | None] | None, *,
                 skip_missing: bool = False) -> tuple[list[Clip], list[tuple[Clip, str]]]:
    """Check that a validated manifest can feed ``modality``, which reads ``columns`` (any one
    will do) and, when ``media`` is given, the file ``media(clip)`` of each clip.

    Returns ``(usable, missing)``: the clips to process, and ``(clip, reason)`` for clips whose
    input file does not exist (only when ``skip_missing``; otherwise those raise, all together).
    """
    _, usable, missing = read_manifest_for(manifest, modality, columns, media,
                                           skip_missing=skip_missing)
    return usable, missing


def _source_of(manifest: Manifest) -> str:
    return f"'{manifest.path}'" if manifest.path else "<manifest>"


def _column_problem(manifest: Manifest, modality: str, columns: Sequence[str]) -> str:
    """Why the manifest has no column ``modality`` can read ("" when it has one)."""
    if not any(c in manifest.columns for c in columns):
        return (f"manifest {_source_of(manifest)} has no "
                f"{' or '.join(repr(c) for c in columns)} column, which the {modality} modality "
                f"reads. Columns found: {', '.join(manifest.columns)}")
    return ""


def transcript_column_problem(manifest: Manifest, column: str) -> str:
    """Why ``column`` cannot hold transcripts because it is one of the manifest's own columns
    (names, paths, labels, splits); "" when it may."""
    if column not in ROLES:
        return ""
    others = _text_columns(manifest, column)
    hint = (f"pick a transcript column with `text_column` ({', '.join(others)})" if others
            else "add a column with the transcripts and name it with `text_column`")
    return (f"column '{column}' of manifest {_source_of(manifest)} holds the "
            f"{ROLES[column]}, not transcripts; {hint}")


def _text_columns(manifest: Manifest, but: str) -> list[str]:
    """The manifest's columns that may hold transcripts, other than ``but``."""
    return [c for c in manifest.columns if c not in ROLES and c != but]


def _media(clips: Sequence[Clip], columns: Sequence[str],
           media: Callable[[Clip], Path | None] | None, skip_missing: bool,
           problems: _Problems) -> tuple[list[Clip], list[tuple[Clip, str]]]:
    """Split ``clips`` into those whose input file ``media(clip)`` is a regular file and the
    others, which are problems unless ``skip_missing`` (every clip is usable without
    ``media``: its input is in the manifest)."""
    if media is None:
        return list(clips), []
    usable: list[Clip] = []
    missing: list[tuple[Clip, str]] = []
    for clip in clips:
        path = media(clip)
        problem = describe_non_file(path) if path is not None else None
        if path is None:
            reason = f"no {' or '.join(columns)} file given"
        elif problem is not None:
            reason = f"file '{path}' {problem}"
        else:
            usable.append(clip)
            continue
        if skip_missing:
            missing.append((clip, reason))
        else:
            problems.add(clip.line, clip.name, reason)
    return usable, missing


def check_transcripts(manifest: Manifest, column: str = "text") -> None:
    """Refuse a text extraction whose transcript column is empty in every row: the store would
    hold nothing but ``empty`` clips, which is almost always the wrong column."""
    if column not in manifest.columns or not manifest.clips:
        return  # check_inputs names the missing column
    if any((clip.text_for(column) or "").strip() for clip in manifest):
        return
    others = _text_columns(manifest, column)
    hint = (f"pick the transcripts' column with `text_column` ({', '.join(others)})" if others
            else "fill the column with the transcripts")
    raise ManifestError(f"Column '{column}' of manifest {_source_of(manifest)} is empty in all "
                        f"{len(manifest)} rows, so there is no text to encode; {hint}.")


def write_manifest(path: str | Path, rows: Iterable[dict[str, object]],
                   columns: Sequence[str] = COLUMNS) -> Path:
    """Write rows (dicts keyed by column) as a manifest CSV, atomically.

    Missing keys and None become empty cells; floats are written with ``repr``-exact digits.
    """
    path = Path(path)
    if path.is_dir():
        raise ManifestError(f"Cannot write the manifest to '{path}': it is a directory. Give a "
                            "file path such as DIR/manifest.csv.")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
    return path
