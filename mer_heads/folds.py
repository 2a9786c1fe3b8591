"""Fold assignment: stratified K folds over the labelled clips, drawn with a fixed seed, and
stratified *group* K folds (``--groups COL``) in which every group of a manifest column (a
speaker, an actor) sits in one fold only, so held-out scores are those of unseen groups.

A benchmark's published folds (``--folds-from COL``: each clip's held-out fold in a manifest
column, e.g. EmoBox's ``fold``) replace the drawn ones (:func:`published_folds`).

A class with fewer labelled clips than folds is refused (its held-out folds would miss it), and
with groups, fewer groups than folds, with the fix in the message. Ablations and robustness
sweeps draw one assignment and share it between every modality set they fit, so their rows
differ only by the modalities. Without ``--groups``, a column that looks like a speaker's
(:func:`speaker_like`) earns a note: its clips are spread over training and held-out folds.

The functions take arrays (class indices, group labels), never a dataset or a config: the
caller reads the group column (``MultimodalData.column``) and passes its values.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mer_features import EMOTIONS
from mer_heads.errors import DataError, listed

PUBLISHED = "published"
"""The kind of a fold plan taken from a column (``--folds-from``)."""
SPEAKER_LIKE = re.compile(r"(actor|speaker|spk|subject|subj|participant|talker|person|patient)"
                          r"(id|name|no|num|code)?s?")
"""Column names (lower case, letters and digits only) taken for a speaker's: ``actor``,
``speaker_id``, ``SpkID``, ``subject``, ``participant`` ..."""


def check_folds(labels: np.ndarray, n_folds: int, context: str = "",
                classes: Sequence[str] = EMOTIONS) -> None:
    """Refuse ``n_folds`` stratified folds over the class indices ``labels`` (n,) into
    ``classes`` when some class has fewer clips than folds: its held-out folds would miss it
    and, with one clip, no fold could learn it; the scores would not be the K-fold scores asked
    for. ``context`` says where the clips went (e.g. ``after --hide-labels 0.7``)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(classes))
    rare = [c for c in np.argsort(counts, kind="stable") if 0 < counts[c] < n_folds]
    if not rare:
        return
    shown = ", ".join(f"'{classes[c]}' has {counts[c]}" for c in rare)
    smallest = int(counts[rare[0]])
    them = ("that class", "its") if len(rare) == 1 else ("those classes", "their")
    fix = (f"lower --folds to {smallest}, add labelled clips of {them[0]}, or remove {them[1]} "
           "labels (--manifest)" if smallest >= 2 else
           f"a class with one labelled clip cannot be cross-validated: add labelled clips of "
           f"{them[0]}, or remove {them[1]} labels (--manifest)")
    raise DataError(f"--folds {n_folds} needs at least {n_folds} labelled training clips of each "
                    f"class; {shown}{' ' + context if context else ''}: {fix}.")


def check_groups(groups: np.ndarray, n_folds: int, column: str, names: list[str],
                 context: str = "") -> None:
    """Refuse group folds over ``groups`` (n,) str, the ``column`` values of the clips
    ``names``: a clip without a value, or fewer groups than folds."""
    lacking = [n for n, g in zip(names, groups) if g == ""]
    if lacking:
        raise DataError(
            f"--groups {column}: {len(lacking)} labelled training clip(s) have no '{column}' "
            f"value ({listed(lacking)}); give every clip one in the manifest (re-extract, or "
            "pass --manifest), or drop --groups.")
    distinct = sorted(set(groups))
    if len(distinct) < n_folds:
        raise DataError(
            f"--folds {n_folds} needs at least {n_folds} groups of --groups {column}, one per "
            f"held-out fold; the labelled training clips{' ' + context if context else ''} "
            f"have {len(distinct)} ({listed(distinct)}): "
            + (f"lower --folds to {len(distinct)} or add clips of other groups."
               if len(distinct) >= 2 else "one group cannot be cross-validated: add clips of "
               "other groups or drop --groups."))


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int, context: str = "",
                     classes: Sequence[str] = EMOTIONS) -> tuple[np.ndarray, str]:
    """Fold index (n,) of each clip from stratified K folds drawn with ``seed``, and a note
    for the report (empty: a class with fewer clips than folds is refused by
    :func:`check_folds`, with ``context``)."""
    from sklearn.model_selection import StratifiedKFold

    check_folds(labels, n_folds, context, classes)
    fold = np.empty(len(labels), np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for j, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold[held_out] = j
    return fold, ""


def group_folds(labels: np.ndarray, groups: np.ndarray, n_folds: int, seed: int, *,
                column: str, names: list[str], context: str = "",
                classes: Sequence[str] = EMOTIONS) -> tuple[np.ndarray, str]:
    """Fold index (n,) of each clip from scikit-learn's StratifiedGroupKFold (groups shuffled
    with ``seed``): every group of ``groups`` (n,) str in one fold, class proportions as even
    as the groups allow. Returns the folds and a note naming classes a held-out fold lacks."""
    from sklearn.model_selection import StratifiedGroupKFold

    check_folds(labels, n_folds, context, classes)
    check_groups(groups, n_folds, column, names, context)
    fold = np.full(len(labels), -1, np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        # "The least populated class ... fewer members than n_splits": checked above.
        warnings.simplefilter("ignore", UserWarning)
        for j, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels,
                                                         groups)):
            fold[held_out] = j
    sizes = np.bincount(fold[fold >= 0], minlength=n_folds)
    if (fold < 0).any() or (sizes == 0).any():
        raise DataError(
            f"--groups {column}: the {len(set(groups))} groups could not fill {n_folds} folds "
            f"(held-out clips per fold: {sizes.tolist()}); lower --folds.")
    missing = _lacking(labels, fold, [str(j) for j in range(n_folds)], classes)
    note = ""
    if missing:
        note = (f"with --groups {column}, some held-out folds have no clip of a class "
                f"({'; '.join(missing)}): their scores are over the other classes")
    return fold, note


def _lacking(labels: np.ndarray, fold: np.ndarray, names: Sequence[str],
             classes: Sequence[str]) -> list[str]:
    """``fold NAME: class, class`` for each held-out fold lacking a class of ``labels``."""
    out = []
    for j, name in enumerate(names):
        lacking = sorted(set(np.unique(labels)) - set(np.unique(labels[fold == j])))
        if lacking:
            out.append(f"fold {name}: {', '.join(classes[c] for c in lacking)}")
    return out


@dataclass
class FoldPlan:
    """How a fold assignment was drawn, for metrics.json and the reports.

    kind : ``stratified``, ``stratified-group`` or ``published`` (``--folds-from``).
    column : the group column (None without). held_out_groups : per fold, the sorted groups
    it holds out (group folds, and published folds with ``--groups``).
    source : the column the published folds come from; fold_names : its value for each fold
    index (published folds only).
    """

    kind: str = "stratified"
    column: str | None = None
    held_out_groups: list[list[str]] = field(default_factory=list)
    source: str | None = None
    fold_names: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "groups": self.column}
        if self.column is not None:
            out["n_groups"] = len({g for held in self.held_out_groups for g in held})
            out["held_out_groups"] = self.held_out_groups
        if self.kind == PUBLISHED:
            out.update({"column": self.source, "folds": self.fold_names,
                        "n_folds": len(self.fold_names)})
        return out

    def describe(self, n_folds: int) -> str:
        """``5 stratified folds`` or ``5 stratified group folds by 'actor' (12 groups: ...)``
        or ``6 published folds from the column 'fold' (...)``."""
        if self.kind == PUBLISHED:
            by = ""
            if self.column is not None:
                n = len({g for held in self.held_out_groups for g in held})
                by = f", {n} '{self.column}' groups"
            return (f"{len(self.fold_names)} published folds from the column '{self.source}' "
                    f"({', '.join(self.fold_names)}{by}; each clip held out by the fold it "
                    "names)")
        if self.column is None:
            return f"{n_folds} stratified folds (clips, by class)"
        n = sum(len(g) for g in self.held_out_groups)
        return (f"{n_folds} stratified group folds by '{self.column}' ({n} groups, each in one "
                "fold: held-out scores are those of unseen groups)")


def n_folds_shown(folds: int, plan: dict[str, Any] | None) -> str:
    """How a report names the number of folds: ``folds``, or ``K published`` for a published
    fold plan (``plan``: :meth:`FoldPlan.to_json`)."""
    if plan and plan.get("kind") == PUBLISHED:
        return f"{plan['n_folds']} published"
    return str(folds)


def plan_of(fold: np.ndarray, groups: np.ndarray | None, column: str | None, n_folds: int
            ) -> FoldPlan:
    """The :class:`FoldPlan` of a fold assignment ``fold`` (n,) over clips of ``groups``."""
    if column is None or groups is None:
        return FoldPlan()
    return FoldPlan("stratified-group", column,
                    [sorted(set(groups[fold == j].tolist())) for j in range(n_folds)])


def check_given_folds(fold: np.ndarray, groups: np.ndarray, column: str) -> None:
    """Refuse a given assignment ``fold`` (n,) that puts one group of ``groups`` in two folds."""
    split = sorted(g for g in set(groups.tolist()) if len(set(fold[groups == g].tolist())) > 1)
    if split:
        raise DataError(f"The fold assignment puts clips of one '{column}' group in several "
                        f"folds ({listed(split)}); draw it with --groups {column}.")


def speaker_like(columns: Mapping[str, np.ndarray], rows: np.ndarray,
                 fold: np.ndarray | None = None) -> list[tuple[str, int]]:
    """Columns (name -> object array (n,) of str, e.g. ``MultimodalData.extra``) named like a
    speaker's (:data:`SPEAKER_LIKE`) whose values repeat among the clips at ``rows`` (more than
    one value, fewer than clips), with their number of values. With ``fold`` (len(rows),), the
    folds of those clips (e.g. published ones), only columns of which some value lies in
    several folds."""
    found = []
    for column, values in columns.items():
        key = re.sub(r"[^a-z0-9]", "", column.lower())
        if not SPEAKER_LIKE.fullmatch(key):
            continue
        present = [v for v in values[rows].tolist() if v != ""]
        distinct = len(set(present))
        if not 1 < distinct < len(present):
            continue
        if fold is not None:
            taken = values[rows]
            if all(len(set(fold[taken == v].tolist())) == 1 for v in set(present)):
                continue
        found.append((column, distinct))
    return found


def speaker_note(found: list[tuple[str, int]]) -> str:
    """The warning for folds that ignore speaker-like columns ``found`` ('' for none)."""
    if not found:
        return ""
    column, n = found[0]
    others = f" (also {', '.join(c for c, _ in found[1:])})" if len(found) > 1 else ""
    return (f"warning: folds ignore the speaker-like column '{column}' ({n} values){others}: "
            "one speaker's clips are in training and held-out folds, so CV scores overstate "
            f"unseen speakers; pass --groups {column} for speaker-independent folds")


def draw_folds(labels: np.ndarray, n_folds: int, seed: int, *, groups: np.ndarray | None = None,
               column: str | None = None, names: Sequence[str] = (), context: str = "",
               classes: Sequence[str] = EMOTIONS, published: np.ndarray | None = None,
               source: str | None = None) -> tuple[np.ndarray, FoldPlan, list[str]]:
    """Folds (n,) of the labelled clips of class indices ``labels`` (n,) into ``classes``,
    drawn with ``seed``: stratified, or stratified group folds when ``groups`` (n,) str gives
    each clip's group (the values of the column ``column``, of the clips ``names``, for
    messages); or, with ``published`` (n,) str, the values of the column ``source`` naming each
    clip's held-out fold (:func:`published_folds`; ``n_folds`` and ``seed`` unused). Returns
    the folds, their plan and notes for the report."""
    if published is not None:
        return published_folds(published, labels, source=source or "folds", names=names,
                               classes=classes, groups=groups, column=column)
    if groups is None:
        fold, note = stratified_folds(labels, n_folds, seed, context, classes)
        return fold, FoldPlan(), [note] if note else []
    fold, note = group_folds(labels, groups, n_folds, seed, column=column or "groups",
                             names=list(names), context=context, classes=classes)
    return fold, plan_of(fold, groups, column, n_folds), [note] if note else []


def _natural(key: str) -> tuple:
    """Fold names in numeric order when they are numbers ('2' before '10')."""
    try:
        return (0, float(key), key)
    except ValueError:
        return (1, 0.0, key)


def published_folds(values: np.ndarray, labels: np.ndarray, *, source: str,
                    names: Sequence[str], classes: Sequence[str] = EMOTIONS,
                    groups: np.ndarray | None = None, column: str | None = None
                    ) -> tuple[np.ndarray, FoldPlan, list[str]]:
    """The published folds of the labelled training clips: ``values`` (n,) str, the column
    ``source`` (``--folds-from``) naming each clip's held-out fold; fold k is the k-th value in
    numeric (else text) order. ``labels`` (n,) class indices into ``classes``, ``names`` (n,)
    the clips (for messages). With ``groups`` (n,) str of the column ``column``, the plan names
    the groups each fold holds out, and a note says when one group is held out by several
    folds (the published folds are then not group-independent). Refused, in one line: a clip
    without a value, fewer than two folds, a fold whose training side (the other folds) lacks a
    class (its models could never predict the clips of that class it holds out)."""
    values = np.asarray(values, dtype=object)
    lacking = [n for n, v in zip(names, values) if v == ""]
    if lacking:
        raise DataError(
            f"--folds-from {source}: {len(lacking)} labelled training clip(s) have no '{source}'"
            f" value ({listed(lacking)}): every clip trained on needs the fold that holds it "
            "out. Give them one in the manifest, leave them out (--train-split, or a --manifest "
            "without their labels), or use a corpus's train/test split with --train-split and "
            "--test-split instead.")
    fold_names = sorted({str(v) for v in values}, key=_natural)
    if len(fold_names) < 2:
        raise DataError(f"--folds-from {source}: the labelled training clips are all in fold "
                        f"{listed(fold_names)}; cross-validation needs at least two folds.")
    index = {name: k for k, name in enumerate(fold_names)}
    fold = np.array([index[str(v)] for v in values], np.int64)
    labels = np.asarray(labels, np.int64)
    present = set(np.unique(labels).tolist())
    for k, name in enumerate(fold_names):
        trained = set(np.unique(labels[fold != k]).tolist())
        gone = sorted(present - trained)
        if gone:
            raise DataError(
                f"--folds-from {source}: fold '{name}' holds out every clip of "
                f"{', '.join(repr(classes[c]) for c in gone)}, so its training side (the other "
                "folds) has none and its models could never predict that class. Merge or drop "
                "the class (--label-map), or use drawn folds (--folds, --groups).")
    notes = []
    missing = _lacking(labels, fold, fold_names, classes)
    if missing:
        notes.append(f"with --folds-from {source}, some held-out folds have no clip of a class "
                     f"({'; '.join(missing)}): their scores are over the other classes")
    held: list[list[str]] = []
    if groups is not None and column is not None:
        held = [sorted(set(groups[fold == k].tolist())) for k in range(len(fold_names))]
        spread = sorted(g for g in set(groups.tolist())
                        if len(set(fold[groups == g].tolist())) > 1)
        if spread:
            notes.append(f"warning: the published folds of '{source}' hold out {len(spread)} "
                         f"'{column}' group(s) in several folds ({listed(spread)}): a fold's "
                         f"models trained on clips of the {column}s they are scored on, so the "
                         "scores are not those of unseen groups")
    plan = FoldPlan(PUBLISHED, column if groups is not None else None, held, source, fold_names)
    return fold, plan, notes


def shared_folds(labels: np.ndarray, usable: np.ndarray, n_folds: int, seed: int, *,
                 groups: np.ndarray | None = None, column: str | None = None,
                 names: Sequence[str] = (), nothing: str = "",
                 classes: Sequence[str] = EMOTIONS, published: np.ndarray | None = None,
                 source: str | None = None) -> np.ndarray:
    """One fold assignment (n,) for every modality set fitted on the same clips (ablations,
    robustness sweeps, leaderboards): :func:`draw_folds` over the labelled clips (``labels``
    >= 0) where ``usable`` (n,) bool (a usable modality), -1 elsewhere; ``groups``, ``column``,
    ``names``, ``classes``, ``published`` and ``source`` (n,) as for :func:`draw_folds`.
    ``nothing`` ends the error raised when there is no such clip (what to check)."""
    usable = (labels >= 0) & usable
    if not usable.any():
        raise DataError(f"No labelled clip with a usable modality: {nothing}")
    rows = np.flatnonzero(usable)
    fold_of = np.full(len(labels), -1, np.int64)
    fold_of[rows], _, _ = draw_folds(
        labels[rows], n_folds, seed, groups=None if groups is None else groups[rows],
        column=column, names=[names[i] for i in rows] if len(names) else (), classes=classes,
        published=None if published is None else published[rows], source=source)
    return fold_of


__all__ = ["FoldPlan", "PUBLISHED", "SPEAKER_LIKE", "check_folds", "check_given_folds",
           "check_groups", "draw_folds", "group_folds", "n_folds_shown", "plan_of", "published_folds",
           "shared_folds", "speaker_like", "speaker_note", "stratified_folds"]
