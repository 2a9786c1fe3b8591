"""Reading a corpus release for an importer: its folders, CSV and text files (errors name the
file and line), media paths as the manifest writes them, and clips whose media is missing.

Every importer of this package uses these, so a release that cannot be read gives the same
kind of one-line error whatever the corpus, and missing media is handled one way: all missing
files are counted and listed in ``<manifest>.missing.txt``; without ``skip_missing`` the import
stops, with it those clips are left out and the summary says how many.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from mer_features.corpora import CorpusOption
from mer_features.errors import ManifestError

SHOWN = 5
"""How many missing files an error message names before the count of the rest."""


def require_folder(path: Path, corpus: str, hint: str) -> Path:
    """``path`` if it is a folder, else a ManifestError ending in ``hint``."""
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "not found"
        raise ManifestError(f"{corpus} folder '{path}' {what}; {hint}")
    return path


def read_text(path: Path, corpus: str, hint: str = "") -> str:
    """A release's text file (UTF-8, a byte-order mark skipped)."""
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise ManifestError(f"{corpus} file '{path}' {what}{'; ' + hint if hint else '.'}")
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"{corpus} file '{path}' is not UTF-8 text (byte {e.start}: "
                            f"{e.reason}); convert it to UTF-8.") from e
    except OSError as e:
        raise ManifestError(f"{corpus} file '{path}' cannot be read ({e.strerror or e}).") from e


def read_csv(path: Path, corpus: str, required: Sequence[str], *, hint: str = "",
             text: str | None = None) -> list[tuple[int, dict[str, str]]]:
    """The rows of a release's CSV file as ``(line, row)``, cells stripped; a missing
    column, or a row with more or fewer fields than the header, is an error naming the line."""
    text = read_text(path, corpus, hint) if text is None else text
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise ManifestError(f"{corpus} file '{path}' is empty; it needs a header with "
                            f"{', '.join(required)}.") from None
    except csv.Error as e:
        raise ManifestError(f"{corpus} file '{path}' is not a readable CSV file: {e}.") from e
    lacking = [c for c in required if c not in header]
    if lacking:
        raise ManifestError(f"{corpus} file '{path}' lacks column(s) {', '.join(lacking)} "
                            f"(header: {', '.join(header) or 'empty'}).")
    rows = []
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != len(header):
                raise ManifestError(f"{corpus} file '{path}', line {line}: {len(values)} "
                                    f"field(s), the header has {len(header)}; fix the row "
                                    "(a comma inside a cell needs quotes).")
            rows.append((line, {h: v.strip() for h, v in zip(header, values)}))
    except csv.Error as e:
        raise ManifestError(f"{corpus} file '{path}', line {reader.line_num}: not readable as "
                            f"CSV ({e}).") from e
    return rows


def manifest_path(path: Path, out: Path, relative: bool = True) -> str:
    """How the manifest at ``out`` names ``path``: relative to its folder when ``relative``
    and possible (another drive on Windows is not), else absolute."""
    path = Path(os.path.abspath(path))
    if relative:
        try:
            return os.path.relpath(path, Path(os.path.abspath(out)).parent)
        except ValueError:
            pass
    return str(path)


def missing_list_path(out: Path) -> Path:
    """Where the full list of missing media files goes: ``<manifest>.missing.txt``."""
    out = Path(out)
    return out.with_name(out.name + ".missing.txt")


def split_missing(rows: list[dict[str, object]], media: Callable[[dict[str, object]], Path | None],
                  *, out: Path, corpus: str, skip_missing: bool, hint: str
                  ) -> tuple[list[dict[str, object]], int]:
    """Keep the rows whose ``media(row)`` file exists (or that have no media).

    When some are missing, all of them are written to ``<out>.missing.txt`` (one path a line);
    without ``skip_missing`` the import stops with the count, the first few and ``hint``;
    with it they are left out and their count returned."""
    from mer_features.corpora.manifest import describe_non_file
    from mer_features.files import write_text

    kept, missing = [], []
    for row in rows:
        path = media(row)
        problem = describe_non_file(path) if path is not None else None
        if problem is None:
            kept.append(row)
        else:
            missing.append(f"{path}" if problem == "not found" else f"{path} ({problem})")
    listing = missing_list_path(out)
    if not missing:
        listing.unlink(missing_ok=True)  # a list from an earlier run would mislead
        return kept, 0
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text(listing, "".join(f"{m}\n" for m in missing))
    if skip_missing:
        return kept, len(missing)
    shown = "; ".join(missing[:SHOWN])
    more = f"; and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
    raise ManifestError(f"{len(missing)} of {len(rows)} {corpus} clip(s) have no media file: "
                        f"{shown}{more} (all {len(missing)} listed in '{listing}'). {hint} "
                        "Or pass `skip_missing` to leave them out.")


def to_mer_scale(text: str, low: float, high: float, where: str) -> float:
    """A rating on a corpus's ``[low, high]`` scale, linearly onto MER's [-5, 5] (the
    manifest's valence scale): ``(v - mid) * 10 / (high - low)``. A value that is not a number
    or lies off the scale is an error naming ``where`` (file and line)."""
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not low <= value <= high:
        raise ManifestError(f"{where}: rating {text!r} is not a number on the corpus's "
                            f"{low:g}-{high:g} scale; fix the line.")
    return (value - (low + high) / 2) * 10 / (high - low)


def describe_classes(classes: dict[str, int]) -> str:
    """``"7 classes (anger 127, boredom 81, ...)"`` for a summary line."""
    return f"{len(classes)} classes ({', '.join(f'{c} {n}' for c, n in classes.items())})"


def class_counts(rows: Iterable[dict[str, object]]) -> dict[str, int]:
    """Clips per class of manifest rows, by class name (unlabelled rows left out)."""
    from collections import Counter

    return dict(sorted(Counter(r["discrete"] for r in rows if r.get("discrete")).items()))


def summarise(path: Path, counts: dict[str, object], *, unit: str = "clips",
              media: str = "audio", speakers: str = "speakers") -> tuple[str, list[str]]:
    """The summary of an importer whose counts hold ``clips``, ``classes``, ``speakers`` and
    ``notes``, and optionally ``splits``, ``unlabelled``, ``sessions`` and ``missing``:
    ``"PATH: 7 clips (train 5, test 2), 3 classes (...), 1 unlabelled, 4 speakers"``."""
    splits = counts.get("splits")
    line = f"{path}: {counts['clips']} {unit}"
    if splits:
        line += f" ({', '.join(f'{s} {n}' for s, n in splits.items())})"
    line += f", {describe_classes(counts['classes'])}"
    if counts.get("unlabelled"):
        line += f", {counts['unlabelled']} unlabelled"
    if counts.get("sessions"):
        line += f", {counts['sessions']} sessions"
    line += f", {counts['speakers']} {speakers}"
    notes = list(counts["notes"])
    if counts.get("missing"):
        notes.append(f"note: {counts['missing']} {unit} left out, their {media} missing "
                     f"(listed in '{missing_list_path(path)}')")
    return line, notes


SKIP_MISSING_OPTION = CorpusOption(
    "--skip-missing", "leave out clips whose media file is missing (counted, and listed in "
    "<out>.missing.txt) instead of stopping", switch=True)
"""The ``--skip-missing`` option of the importers that read a label file."""


def named_files(folder: Path, parse: Callable[[str], dict[str, str]], corpus: str,
                suffix: str = ".wav") -> list[tuple[Path, dict[str, str]]]:
    """Every ``suffix`` file of ``folder`` with ``parse(stem)``, its fields from its name. No
    such file, or any file that ``parse`` refuses (ValueError, with the reason), stops the
    import; all such files are named at once."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == suffix)
    if not files:
        raise ManifestError(f"No {suffix} files in '{folder}'; point `root` at the {corpus} "
                            f"folder that holds {folder.name}/.")
    parsed, bad = [], []
    for path in files:
        try:
            parsed.append((path, parse(path.stem)))
        except ValueError as e:
            bad.append(f"{path.name} ({e})")
    if bad:
        raise ManifestError(f"{len(bad)} file(s) in '{folder}' are not {corpus} clips: "
                            f"{'; '.join(bad[:10])}{' ...' if len(bad) > 10 else ''}. Move them "
                            f"out of {folder.name}/ or fix their names.")
    return parsed


def first_of(root: Path, names: Iterable[str]) -> Path | None:
    """The first of ``root/name`` that exists (releases spell some files in two ways)."""
    for name in names:
        if (root / name).exists():
            return root / name
    return None


__all__ = ["SKIP_MISSING_OPTION", "class_counts", "describe_classes", "first_of",
           "manifest_path", "missing_list_path", "named_files", "read_csv", "read_text",
           "require_folder", "split_missing", "summarise", "to_mer_scale"]
