"""Label maps: rename, merge or drop the classes of a corpus (``--label-map FILE``).

A label map is a list of rules ``class -> class`` or ``class -> drop``, read from a JSON or a
CSV file (the format is in docs/corpora.md#label-maps)::

    {"exc": "hap", "neu": "neu", "hap": "hap", "ang": "ang", "sad": "sad", "*": null}

    from,to
    exc,hap
    fru,

* Class names are compared without regard to letter case and surrounding spaces, and written in
  lower case (the manifest's ``discrete`` column is read in lower case).
* A class mapped to ``null`` (JSON) or to an empty cell (CSV) drops its clips.
* ``*`` is the rule for every class that no other rule names; without it those classes are
  kept as they are.
* Rules are applied once, not chained: with ``a -> b`` and ``b -> c``, an ``a`` clip becomes
  ``b``. Unlabelled clips are left alone.

Importers apply a map when they write a manifest and say how many clips each rule touched;
the heads can apply the same map to a manifest's labels (:meth:`LabelMap.apply`).

    >>> m = LabelMap.from_mapping({"exc": "hap", "*": None}, source="example")
    >>> result = m.apply(["exc", "neu", None, "exc"])
    >>> result.labels, result.keep
    (['hap', None, None, 'hap'], [True, False, True, True])
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mer_features.corpora import CorpusOption
from mer_features.errors import ManifestError

WILDCARD = "*"
"""The rule for every class that no other rule names."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def normalise_label(label: str) -> str:
    """How a class name is compared and written: stripped and in lower case."""
    return label.strip().lower()


@dataclass(frozen=True)
class LabelMapResult:
    """What :meth:`LabelMap.apply` did: the new ``labels`` (None for an unlabelled clip),
    ``keep`` (False for a dropped clip), and per rule the clips it touched by class."""

    labels: list[str | None]
    keep: list[bool]
    touched: dict[str, Counter] = field(default_factory=dict)
    """Rule key (a class, or ``*``) -> Counter of the original classes it matched."""
    label_map: LabelMap | None = None

    @property
    def dropped(self) -> int:
        return self.keep.count(False)

    def report(self) -> list[str]:
        """One line per rule: what it did and to how many clips; rules that matched nothing
        are named too (usually a typo in the map)."""
        if self.label_map is None:
            return []
        lines = []
        for key, target in self.label_map.rules:
            counts = self.touched.get(key, Counter())
            n = sum(counts.values())
            to = "dropped" if target is None else f"-> {target}"
            if key == WILDCARD:
                what = ", ".join(f"{c} {k}" for c, k in sorted(counts.items())) or "none"
                lines.append(f"label map {self.label_map.source}: every other class {to}: "
                             f"{n} clip(s) ({what})")
            elif n == 0:
                lines.append(f"label map {self.label_map.source}: '{key}' {to}: no clip has "
                             f"class '{key}' (a typo in the map?)")
            else:
                lines.append(f"label map {self.label_map.source}: '{key}' {to}: {n} clip(s)")
        return lines


@dataclass(frozen=True)
class LabelMap:
    """Rules ``(class, target)`` in file order; ``target`` None drops the class's clips.
    ``source`` names where the map came from (a file, or a corpus default)."""

    rules: tuple[tuple[str, str | None], ...]
    source: str = "<label map>"

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, str | None], *, source: str = "<label map>"
                     ) -> LabelMap:
        """A map from ``{class: target or None}``; names are normalised, and two keys equal
        once normalised, an empty key or an empty target are refused."""
        rules: list[tuple[str, str | None]] = []
        seen: dict[str, str] = {}
        for raw_key, raw_target in mapping.items():
            key = _checked_name(raw_key, source, "class")
            if key in seen:
                raise ManifestError(f"Label map {source} names class '{key}' twice ('{seen[key]}' "
                                    f"and '{raw_key}'); keep one rule per class.")
            seen[key] = raw_key
            target = None if raw_target is None else _checked_name(raw_target, source,
                                                                   f"target of '{raw_key}'")
            if target == WILDCARD:
                raise ManifestError(f"Label map {source}: '*' can only be a class, not the target "
                                    f"of '{raw_key}'.")
            rules.append((key, target))
        if not rules:
            raise ManifestError(f"Label map {source} has no rules; give at least one "
                                "'class -> class' or 'class -> null' (see docs/corpora.md).")
        return cls(tuple(rules), source)

    @property
    def mapping(self) -> dict[str, str | None]:
        return dict(self.rules)

    def target(self, label: str) -> tuple[str | None, str | None]:
        """``(rule key, new class)`` of one class: the rule that applies (None when no rule
        does) and the class after the map (None when its clips are dropped)."""
        label = normalise_label(label)
        mapping = self.mapping
        if label in mapping:
            return label, mapping[label]
        if WILDCARD in mapping:
            return WILDCARD, mapping[WILDCARD]
        return None, label

    def apply(self, labels: Sequence[str | None]) -> LabelMapResult:
        """Map ``labels`` (one per clip, None for unlabelled); see :class:`LabelMapResult`."""
        touched: dict[str, Counter] = {}
        out: list[str | None] = []
        keep: list[bool] = []
        for label in labels:
            if label is None or not label.strip():
                out.append(None)
                keep.append(True)
                continue
            rule, target = self.target(label)
            if rule is not None:
                touched.setdefault(rule, Counter())[normalise_label(label)] += 1
            out.append(target)
            keep.append(target is not None)
        return LabelMapResult(out, keep, touched, self)

    def classes(self, present: Iterable[str]) -> list[str]:
        """The classes that ``present`` classes become, in first-seen order (dropped ones
        left out)."""
        result: list[str] = []
        for label in present:
            target = self.target(label)[1]
            if target is not None and target not in result:
                result.append(target)
        return result


def _checked_name(value: object, source: str, what: str) -> str:
    if not isinstance(value, str):
        raise ManifestError(f"Label map {source}: the {what} must be a string (or null to drop); "
                            f"got {value!r}.")
    name = normalise_label(value)
    if not name:
        raise ManifestError(f"Label map {source}: the {what} is empty; write a class name, or "
                            "null (JSON) or an empty 'to' cell (CSV) to drop a class.")
    if _CONTROL.search(name):
        raise ManifestError(f"Label map {source}: the {what} {value!r} holds a control character; "
                            "class names must be printable text.")
    return name


def read_label_map(path: str | Path) -> LabelMap:
    """Read a label map from a ``.json`` file (an object ``{"class": "class" or null}``) or
    a ``.csv`` file (header ``from,to``; an empty ``to`` drops the class)."""
    path = Path(path)
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise ManifestError(f"Label map '{path}' {what}; give a .json or .csv file "
                            "(format in docs/corpora.md#label-maps).")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ManifestError(f"Label map '{path}' is not UTF-8 text ({e}).") from e
    except OSError as e:
        raise ManifestError(f"Label map '{path}' cannot be read ({e.strerror or e}).") from e
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_json(text, f"'{path}'")
    if suffix == ".csv":
        return _from_csv(text, f"'{path}'")
    raise ManifestError(f"Label map '{path}' must end in .json or .csv (format in "
                        "docs/corpora.md#label-maps).")


def _from_json(text: str, source: str) -> LabelMap:
    def no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
        keys = [k for k, _ in pairs]
        twice = sorted({k for k in keys if keys.count(k) > 1})
        if twice:
            raise ManifestError(f"Label map {source} names class(es) {', '.join(twice)} twice; "
                                "keep one rule per class.")
        return dict(pairs)

    try:
        data = json.loads(text, object_pairs_hook=no_duplicates)
    except json.JSONDecodeError as e:
        raise ManifestError(f"Label map {source} is not valid JSON: {e.msg} at line {e.lineno}, "
                            f"column {e.colno}.") from e
    if not isinstance(data, dict):
        raise ManifestError(f"Label map {source} must be a JSON object "
                            '{"class": "new class" or null, ...}; got a '
                            f"{type(data).__name__}.")
    return LabelMap.from_mapping(data, source=source)


def _from_csv(text: str, source: str) -> LabelMap:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise ManifestError(f"Label map {source} is empty; it needs a header 'from,to' and one "
                            "row per rule.") from None
    except csv.Error as e:
        raise ManifestError(f"Label map {source} is not a readable CSV file: {e}.") from e
    if header != ["from", "to"]:
        raise ManifestError(f"Label map {source}: line 1 must be the header 'from,to'; got "
                            f"{','.join(header)!r}.")
    mapping: dict[str, str | None] = {}
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue
            if len(values) != 2:
                raise ManifestError(f"Label map {source}, line {line}: {len(values)} field(s), "
                                    "expected 2 (from,to).")
            key, target = values
            if normalise_label(key) in {normalise_label(k) for k in mapping}:
                raise ManifestError(f"Label map {source}, line {line}: class '{key.strip()}' "
                                    "already has a rule; keep one rule per class.")
            mapping[key] = target if target.strip() else None
    except csv.Error as e:
        raise ManifestError(f"Label map {source} is not a readable CSV file: {e}.") from e
    return LabelMap.from_mapping(mapping, source=source)


def apply_to_rows(rows: list[dict[str, object]], label_map: LabelMap | None,
                  column: str = "discrete") -> tuple[list[dict[str, object]], list[str]]:
    """Apply ``label_map`` to the ``column`` of manifest rows: the rows kept (mapped) and the
    report lines. No map: the rows as they are and no lines."""
    if label_map is None:
        return rows, []
    result = label_map.apply([_as_label(row.get(column)) for row in rows])
    kept = []
    for row, label, keep in zip(rows, result.labels, result.keep):
        if keep:
            kept.append({**row, column: label})
    lines = result.report()
    if result.dropped:
        lines.append(f"label map {label_map.source}: {result.dropped} clip(s) dropped, "
                     f"{len(kept)} kept")
    return kept, lines


def _as_label(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def label_map_option_value(value: str | Path | LabelMap | None) -> LabelMap | None:
    """What an importer's ``label_map`` argument may be: a path (read), a :class:`LabelMap`,
    or None."""
    if value is None or isinstance(value, LabelMap):
        return value
    return read_label_map(value)


LABEL_MAP_OPTION = CorpusOption(
    "--label-map", "JSON or CSV file renaming, merging or dropping classes "
    "(docs/corpora.md#label-maps)")
"""The importers' ``--label-map FILE`` option."""


__all__ = ["LABEL_MAP_OPTION", "LabelMap", "LabelMapResult", "WILDCARD", "apply_to_rows",
           "label_map_option_value", "normalise_label", "read_label_map"]
