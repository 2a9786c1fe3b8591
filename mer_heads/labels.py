"""Label tables: manifests, MER 2023 ``train-label.csv`` files and prediction files.

All three are CSV files with a ``name`` column, a ``discrete`` column (one of the six MER classes,
or empty for an unlabelled clip) and optionally ``valence`` (a number, or empty) and ``split``.
Other columns are ignored. Problems are collected and reported together, with line numbers.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mer_features import EMOTIONS
from mer_heads.errors import LabelError

_SHOWN = 20


@dataclass
class LabelTable:
    """Labels of ``n`` clips, in file order.

    ``discrete`` is an object array of str ("" when unlabelled), ``valence`` float64 (NaN when
    none), ``split`` an object array of str ("" when the file has no split column).
    """

    path: Path
    names: list[str]
    discrete: np.ndarray
    valence: np.ndarray
    split: np.ndarray
    has_valence_column: bool

    def as_dict(self) -> dict[str, tuple[str, float, str]]:
        return {n: (d, float(v), s) for n, d, v, s in zip(self.names, self.discrete, self.valence,
                                                          self.split)}


def normalise_label(value: object) -> str:
    """``" Happy "`` -> ``"happy"``; None and NaN -> ``""``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value).strip().lower()


def unknown_labels(discrete: np.ndarray) -> np.ndarray:
    """Indices of non-empty labels that are not one of the six classes."""
    known = set(EMOTIONS) | {""}
    return np.array([i for i, d in enumerate(discrete) if d not in known], dtype=np.int64)


def read_label_table(path: str | Path, *, what: str = "label file") -> LabelTable:
    """Read a CSV with ``name``, ``discrete`` and optional ``valence``/``split`` columns.

    Raises :class:`LabelError` listing every bad row (first 20 and a count): duplicate or empty
    names, labels outside the six classes, valence that is not a number.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelError(f"The {what} '{path}' does not exist; give a CSV with columns "
                         "name,discrete[,valence][,split].")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            header = [h.strip() for h in (reader.fieldnames or [])]
    except (UnicodeDecodeError, csv.Error) as e:
        raise LabelError(f"The {what} '{path}' cannot be read as UTF-8 CSV ({e}).") from e
    lacking = [c for c in ("name", "discrete") if c not in header]
    if lacking:
        raise LabelError(f"The {what} '{path}' lacks column(s) {', '.join(lacking)}; it has "
                         f"{', '.join(header) or 'no header'}. Expected name,discrete[,valence]"
                         "[,split].")
    has_valence = "valence" in header
    problems: list[str] = []
    names: list[str] = []
    discrete: list[str] = []
    valence: list[float] = []
    split: list[str] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        row = {(k or "").strip(): v for k, v in row.items()}
        name = (row.get("name") or "").strip()
        if not name:
            problems.append(f"line {line}: empty name")
        elif name in seen:
            problems.append(f"line {line}: name '{name}' repeats line {seen[name]}")
        else:
            seen[name] = line
        label = normalise_label(row.get("discrete"))
        if label and label not in EMOTIONS:
            problems.append(f"line {line}: discrete label '{row.get('discrete')}' of '{name}' is "
                            f"not one of {', '.join(EMOTIONS)}")
        raw = (row.get("valence") or "").strip() if has_valence else ""
        try:
            value = float(raw) if raw else math.nan
        except ValueError:
            problems.append(f"line {line}: valence '{raw}' of '{name}' is not a number")
            value = math.nan
        names.append(name)
        discrete.append(label)
        valence.append(value)
        split.append((row.get("split") or "").strip())
    if problems:
        shown = "\n  ".join(problems[:_SHOWN])
        more = f"\n  ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise LabelError(f"The {what} '{path}' has {len(problems)} problem(s):\n  {shown}{more}\n"
                         "Fix these rows and run again.")
    return LabelTable(path, names, np.array(discrete, dtype=object), np.array(valence, np.float64),
                      np.array(split, dtype=object), has_valence)
