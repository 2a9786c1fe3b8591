"""Label sets: which classes a corpus's labels are, in which order, and what looks like a typo.

The label set is the data's. Its order (the index of each class in every probability array,
confusion matrix and prediction file) follows one rule, here, for the extraction (which records
it in the store) and for the heads (which record it in the run):

1. classes *declared* (``--classes a,b,c``; ``mer2023`` for MER 2023's six): that order, and a
   label outside them is refused (a typo cannot become a class);
2. otherwise, labels that are all among MER 2023's six classes (or a subset of them): MER
   2023's six in :data:`mer_features.EMOTIONS` order, whether or not every one occurs, as
   the toolkit always did (a MER run has six probability columns);
3. otherwise the classes that occur, sorted by name (the order an importer, a label map or
   EmoBox's ``label_map.json`` lists them is not kept: it is not in the manifest, and a sorted
   order does not depend on which clips are present).

Without declared classes, a class with very few clips next to large ones is named in a warning
with the class it most resembles (:func:`rare_class_warnings`): a typo in a manifest is seen
when the store is extracted and when a head is fitted.
"""

from __future__ import annotations

import difflib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from mer_features import EMOTIONS
from mer_features.errors import ParameterError

MER2023 = "mer2023"
"""What ``--classes`` may say for MER 2023's six classes."""
RARE_SHARE = 0.05
"""A class is rare when it has fewer clips than this share of the largest class's ..."""
RARE_COUNT = 3
"""... or fewer than this many clips while the largest class has ten times as many."""

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def normalise_class(label: object) -> str:
    """How a class name is compared and written: stripped and in lower case ("" for none)."""
    return "" if label is None else str(label).strip().lower()


def parse_classes(value: str | Sequence[str] | None, parameter: str = "classes"
                  ) -> tuple[str, ...] | None:
    """Declared classes: ``"a,b,c"`` or a sequence of names, normalised (lower case), in that
    order; ``"mer2023"`` for MER 2023's six; None for none. At least two distinct, non-empty,
    printable names, else a ParameterError naming ``parameter``."""
    if value is None:
        return None
    if isinstance(value, str):
        if normalise_class(value) == MER2023:
            return tuple(EMOTIONS)
        words = value.split(",")
    elif isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        words = list(value)
    else:
        raise ParameterError(f"`{parameter}` must be class names separated by commas (e.g. "
                             f"angry,happy,neutral,sad) or {MER2023}; got {value!r}.", parameter)
    names = [normalise_class(w) for w in words]
    if any(not n for n in names):
        raise ParameterError(f"`{parameter}` has an empty class name ({value!r}); separate the "
                             "names by single commas.", parameter)
    bad = [n for n in names if _CONTROL.search(n)]
    if bad:
        raise ParameterError(f"`{parameter}`: class names must be printable text; got "
                             f"{bad[0]!r}.", parameter)
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ParameterError(f"`{parameter}` names {', '.join(twice)} twice; give each class "
                             "once.", parameter)
    if len(names) < 2:
        raise ParameterError(f"`{parameter}` must name at least two classes (a classifier "
                             f"needs two); got {value!r}.", parameter)
    return tuple(names)


def is_mer(classes: Iterable[str]) -> bool:
    """Whether every class of ``classes`` is one of MER 2023's six."""
    return set(classes) <= set(EMOTIONS)


def label_set(labels: Iterable[str], declared: Sequence[str] | None = None,
              recorded: Sequence[str] | None = None) -> tuple[str, ...]:
    """The ordered classes of ``labels`` (class names, "" for unlabelled) by the module's rule:
    ``declared`` classes as given (check the labels with :func:`outside`), else ``recorded``
    ones (a store's) when they hold every label, else MER 2023's six when every label is one
    of them, else the labels' classes sorted."""
    if declared:
        return tuple(declared)
    present = {label for label in labels if label}
    if recorded and present <= set(recorded):
        return tuple(recorded)
    if present <= set(EMOTIONS):
        return tuple(EMOTIONS)
    return tuple(sorted(present))


def class_counts(labels: Iterable[str]) -> Counter:
    """Clips per class of ``labels`` ("" left out)."""
    return Counter(label for label in labels if label)


def outside(counts: Mapping[str, int], classes: Sequence[str]) -> dict[str, int]:
    """The classes of ``counts`` (class -> clips) that are not in ``classes``, with their clips."""
    known = set(classes)
    return {c: n for c, n in sorted(counts.items()) if c not in known}


def describe_outside(unknown: Mapping[str, int], classes: Sequence[str]) -> str:
    """``'joyful' (1 clip; like 'happy'?), 'hapy' (2 clips; like 'happy'?)``."""
    parts = []
    for label, n in unknown.items():
        close = difflib.get_close_matches(label, list(classes), n=1, cutoff=0.6)
        like = f"; like '{close[0]}'?" if close else ""
        parts.append(f"'{label}' ({n} clip{'s' if n != 1 else ''}{like})")
    return ", ".join(parts)


def describe_counts(counts: Mapping[str, int], classes: Sequence[str]) -> str:
    """``angry 96, calm 96, ...`` in the order of ``classes`` (classes without clips: 0)."""
    return ", ".join(f"{c} {counts.get(c, 0)}" for c in classes)


def rare_classes(counts: Mapping[str, int]) -> list[str]:
    """Classes (in ``counts`` order) with fewer clips than :data:`RARE_SHARE` of the largest
    class's, or fewer than :data:`RARE_COUNT` while the largest has ten times as many: next to
    classes of a few clips each, a small class is no sign of a typo."""
    if not counts:
        return []
    largest = max(counts.values())
    return [c for c, n in counts.items()
            if 0 < n and (n < RARE_SHARE * largest or (n < RARE_COUNT and 10 * n <= largest))]


def rare_class_warnings(counts: Mapping[str, int], where: str = "",
                        fix: str = "declare the classes (`classes`) to have a label outside "
                        "them refused") -> list[str]:
    """A ``warning: ...`` line for each rare class of ``counts`` (class -> clips), with the
    class it most resembles: how a typo that became a class of its own is seen."""
    rare = rare_classes(counts)
    if not rare:
        return []
    others = [c for c in counts if c not in rare]
    sizes = [counts[c] for c in others]
    span = f"{min(sizes)}" if min(sizes) == max(sizes) else f"{min(sizes)}-{max(sizes)}"
    lines = []
    for label in rare:
        close = difflib.get_close_matches(label, others, n=1, cutoff=0.6)
        like = f"; it resembles '{close[0]}'" if close else ""
        n = counts[label]
        lines.append(f"warning: class '{label}' has {n} clip{'s' if n != 1 else ''}"
                     f"{' ' + where if where else ''} (the other classes {span}){like}: a typo "
                     f"in the labels? Fix it in the manifest, or {fix}")
    return lines


__all__ = ["MER2023", "RARE_COUNT", "RARE_SHARE", "class_counts", "describe_counts",
           "describe_outside", "is_mer", "label_set", "normalise_class", "outside",
           "parse_classes", "rare_class_warnings", "rare_classes"]
