"""Label tables: manifests, MER 2023 ``train-label.csv`` files and prediction files.

All three are CSV files with a ``name`` column, a ``discrete`` column (a class, or empty for an
unlabelled clip: MER 2023's six unless the caller accepts any label set) and optionally ``valence`` (a number, or empty) and ``split``.
Other columns (a manifest's ``actor``, ``speaker``, ...) are kept as text in
:attr:`LabelTable.extra`. Problems are collected and reported together, with line numbers.

Strict, as the manifest reader of mer_features is: column names are case-sensitive, and a
header cell that differs from a known column only in letter case (``Discrete``) is refused
with its name, never kept as an extra column beside a missing label column. A number is
decimal digits with an optional sign, point and exponent (:func:`parse_number`): Python's
``float()`` would also read ``0_5`` as 5.0 and ``١٢`` as 12.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mer_features import EMOTIONS
from mer_heads.errors import LabelError

_SHOWN = 20
KNOWN_COLUMNS = ("name", "discrete", "valence", "split", "video", "audio", "text")
"""Columns that are not kept as extra columns: the labels, and a manifest's media and text."""


@dataclass
class LabelTable:
    """Labels of ``n`` clips, in file order.

    ``discrete`` is an object array of str ("" when unlabelled), ``valence`` float64 (NaN when
    none), ``split`` an object array of str ("" when the file has no split column). ``extra``:
    every other column, name -> object array of str (the manifest's media and text columns
    excepted).
    """

    path: Path
    names: list[str]
    discrete: np.ndarray
    valence: np.ndarray
    split: np.ndarray
    has_valence_column: bool
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def as_dict(self) -> dict[str, tuple[str, float, str]]:
        return {n: (d, float(v), s) for n, d, v, s in zip(self.names, self.discrete, self.valence,
                                                          self.split)}


def normalise_label(value: object) -> str:
    """``" Happy "`` -> ``"happy"``; None and NaN -> ``""``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip().lower()


def unknown_labels(discrete: np.ndarray, classes: Sequence[str] = EMOTIONS) -> np.ndarray:
    """Indices of non-empty labels that are not one of ``classes`` (MER 2023's six)."""
    known = set(classes) | {""}
    return np.array([i for i, d in enumerate(discrete) if d not in known], dtype=np.int64)


NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
NON_FINITE = re.compile(r"[+-]?(?:inf|infinity|nan)", re.IGNORECASE)


def parse_number(text: str, *, finite: bool = True) -> float:
    """``text`` as a float if it is written as a decimal number (``-1.5``, ``.5``, ``2e-3``);
    ``ValueError`` otherwise (``0_5``, ``1,5``, `` 5``, non-ASCII digits). ``inf``/``nan`` (any
    case, signed) are a ``ValueError`` too unless ``finite`` is False."""
    if NUMBER.fullmatch(text) or (not finite and NON_FINITE.fullmatch(text)):
        return float(text)
    raise ValueError(f"not a{' finite' if NON_FINITE.fullmatch(text) else ''} number: {text!r}")


VALENCE_SCALE = (-5.0, 5.0)
"""The MER 2023 valence scale: labels outside it are refused (they come from another scale)."""


def outside_valence_scale(valence: np.ndarray) -> np.ndarray:
    """Indices of valence labels that are given (not NaN) but not within VALENCE_SCALE."""
    v = np.asarray(valence, np.float64)
    low, high = VALENCE_SCALE
    return np.flatnonzero(~np.isnan(v) & ~((v >= low) & (v <= high)))


def valence_hint() -> str:
    """How to bring another valence scale onto MER's [-5, 5] (worded as mer_features says it)."""
    return ("Rescale valence linearly onto [-5, 5], e.g. from a 1-9 SAM scale with (v - 5) * "
            "1.25, from [-1, 1] with v * 5, from [0, 1] with (v - 0.5) * 10")


def read_label_table(path: str | Path, *, what: str = "label file",
                     predictions: bool = False,
                     classes: Sequence[str] | None = EMOTIONS) -> LabelTable:
    """Read a CSV with ``name``, ``discrete`` and optional ``valence``/``split`` columns.

    Raises :class:`LabelError` listing every bad row (first 20 and a count) on one line:
    duplicate or empty names, labels outside ``classes`` (MER 2023's six; None: any label
    is read, the run decides its label set), valence that is not a finite
    number, and (labels, not ``predictions``) valence outside the MER scale [-5, 5]. A header
    naming a column twice is refused: which of the two is meant cannot be known.
    """
    path = Path(path)
    if path.is_dir():
        raise LabelError(f"The {what} '{path}' is a folder; give a CSV file with columns "
                         "name,discrete[,valence][,split].")
    if not path.is_file():
        raise LabelError(f"The {what} '{path}' does not exist; give a CSV with columns "
                         "name,discrete[,valence][,split].")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            records = [(reader.line_num, row) for row in reader if row]
    except OSError as e:
        raise LabelError(f"The {what} '{path}' cannot be read ({e.strerror or e}).") from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise LabelError(f"The {what} '{path}' cannot be read as UTF-8 CSV ({e}).") from e
    repeated = sorted({h for h in header if h and header.count(h) > 1})
    if repeated:
        raise LabelError(f"The {what} '{path}' names column(s) {', '.join(repeated)} more than "
                         "once in its header; which one is meant cannot be known. Rename or "
                         "remove the extra column(s).")
    cased = [(h, h.lower()) for h in header if h.lower() in KNOWN_COLUMNS and h not in
             KNOWN_COLUMNS]
    if cased:
        shown = ", ".join(f"'{h}'" for h, _ in cased)
        raise LabelError(f"The {what} '{path}' has column(s) {shown} in its header, which differ "
                         "from the known column(s) "
                         f"{', '.join(repr(k) for _, k in cased)} only in letter case; column "
                         "names are case-sensitive. Rename them to "
                         f"{', '.join(k for _, k in cased)} (or to other names to keep them as "
                         "extra columns).")
    lacking = [c for c in ("name", "discrete") if c not in header]
    if lacking:
        raise LabelError(f"The {what} '{path}' lacks column(s) {', '.join(lacking)}; it has "
                         f"{', '.join(h for h in header if h) or 'no header'}. Expected "
                         "name,discrete[,valence][,split].")
    column = {h: i for i, h in enumerate(header) if h}
    has_valence = "valence" in header
    problems: list[str] = []
    rescale = False
    names: list[str] = []
    discrete: list[str] = []
    valence: list[float] = []
    split: list[str] = []
    other = [h for h in header if h and h not in KNOWN_COLUMNS]
    extra: dict[str, list[str]] = {h: [] for h in other}
    seen: dict[str, int] = {}

    def cell(row: list[str], name: str) -> str:
        i = column.get(name)
        return row[i] if i is not None and i < len(row) else ""

    low, high = VALENCE_SCALE
    for line, row in records:
        name = cell(row, "name").strip()
        if not name:
            problems.append(f"line {line}: empty name")
        elif name in seen:
            problems.append(f"line {line}: name '{name}' repeats line {seen[name]}")
        else:
            seen[name] = line
        label = normalise_label(cell(row, "discrete"))
        if label and classes is not None and label not in classes:
            problems.append(f"line {line}: discrete label '{cell(row, 'discrete')}' of '{name}' "
                            f"is not one of {', '.join(classes)}")
        raw = cell(row, "valence").strip() if has_valence else ""
        value = math.nan
        if raw and NON_FINITE.fullmatch(raw):
            problems.append(f"line {line}: valence '{raw}' of '{name}' is not a finite number "
                            "(leave the cell empty when there is none)")
        elif raw:
            try:
                value = parse_number(raw)
            except ValueError:
                problems.append(f"line {line}: valence '{raw}' of '{name}' is not a number "
                                "(write it with digits and a decimal point, e.g. -1.5)")
            else:
                if not math.isfinite(value):  # 1e999
                    problems.append(f"line {line}: valence '{raw}' of '{name}' is not a finite "
                                    "number")
                    value = math.nan
        if not predictions and math.isfinite(value) and not low <= value <= high:
            problems.append(f"line {line}: valence {value:g} of '{name}' is outside the MER "
                            "scale [-5, 5]")
            rescale = True
        names.append(name)
        discrete.append(label)
        valence.append(value)
        split.append(cell(row, "split").strip())
        for h in other:
            extra[h].append(cell(row, h).strip())
    if problems:
        shown = "; ".join(problems[:_SHOWN])
        more = f"; ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise LabelError(f"The {what} '{path}' has {len(problems)} problem(s): {shown}{more}. "
                         + (f"{valence_hint()}; fix" if rescale else "Fix")
                         + " these rows and run again.")
    return LabelTable(path, names, np.array(discrete, dtype=object), np.array(valence, np.float64),
                      np.array(split, dtype=object), has_valence,
                      {h: np.array(v, dtype=object) for h, v in extra.items()})
