"""Fold assignment: stratified K folds over the labelled clips, drawn with a fixed seed, and
stratified *group* K folds (``--groups COL``) in which every group of a manifest column (a
speaker, an actor) sits in one fold only, so held-out scores are those of unseen groups.

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

SPEAKER_LIKE = re.compile(r"(actor|speaker|spk|subject|subj|participant|talker|person|patient)"
                          r"(id|name|no|num|code)?s?")
"""Column names (lower case, letters and digits only) taken for a speaker's: ``actor``,
``speaker_id``, ``SpkID``, ``subject``, ``participant`` ..."""


def check_folds(labels: np.ndarray, n_folds: int, context: str = "") -> None:
    """Refuse ``n_folds`` stratified folds over the class indices ``labels`` (n,) when some class
    has fewer clips than folds: its held-out folds would miss it and, with one clip, no fold
    could learn it; the scores would not be the K-fold scores asked for. ``context`` says
    where the clips went (e.g. ``after --hide-labels 0.7``)."""
    counts = np.bincount(np.asarray(labels, np.int64), minlength=len(EMOTIONS))
    rare = [c for c in np.argsort(counts, kind="stable") if 0 < counts[c] < n_folds]
    if not rare:
        return
    shown = ", ".join(f"'{EMOTIONS[c]}' has {counts[c]}" for c in rare)
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


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int, context: str = ""
                     ) -> tuple[np.ndarray, str]:
    """Fold index (n,) of each clip from stratified K folds drawn with ``seed``, and a note
    for the report (empty: a class with fewer clips than folds is refused by
    :func:`check_folds`, with ``context``)."""
    from sklearn.model_selection import StratifiedKFold

    check_folds(labels, n_folds, context)
    fold = np.empty(len(labels), np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for j, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        fold[held_out] = j
    return fold, ""


def group_folds(labels: np.ndarray, groups: np.ndarray, n_folds: int, seed: int, *,
                column: str, names: list[str], context: str = "") -> tuple[np.ndarray, str]:
    """Fold index (n,) of each clip from scikit-learn's StratifiedGroupKFold (groups shuffled
    with ``seed``): every group of ``groups`` (n,) str in one fold, class proportions as even
    as the groups allow. Returns the folds and a note naming classes a held-out fold lacks."""
    from sklearn.model_selection import StratifiedGroupKFold

    check_folds(labels, n_folds, context)
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
    missing = []
    for j in range(n_folds):
        lacking = sorted(set(np.unique(labels)) - set(np.unique(labels[fold == j])))
        if lacking:
            missing.append(f"fold {j}: {', '.join(EMOTIONS[c] for c in lacking)}")
    note = ""
    if missing:
        note = (f"with --groups {column}, some held-out folds have no clip of a class "
                f"({'; '.join(missing)}): their scores are over the other classes")
    return fold, note


@dataclass
class FoldPlan:
    """How a fold assignment was drawn, for metrics.json and the reports.

    kind : ``stratified`` or ``stratified-group``. column : the group column (None without).
    held_out_groups : per fold, the sorted groups it holds out (group folds only).
    """

    kind: str = "stratified"
    column: str | None = None
    held_out_groups: list[list[str]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind, "groups": self.column}
        if self.column is not None:
            out["n_groups"] = sum(len(g) for g in self.held_out_groups)
            out["held_out_groups"] = self.held_out_groups
        return out

    def describe(self, n_folds: int) -> str:
        """``5 stratified folds`` or ``5 stratified group folds by 'actor' (12 groups: ...)``."""
        if self.column is None:
            return f"{n_folds} stratified folds (clips, by class)"
        n = sum(len(g) for g in self.held_out_groups)
        return (f"{n_folds} stratified group folds by '{self.column}' ({n} groups, each in one "
                "fold: held-out scores are those of unseen groups)")


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


def speaker_like(columns: Mapping[str, np.ndarray], rows: np.ndarray) -> list[tuple[str, int]]:
    """Columns (name -> object array (n,) of str, e.g. ``MultimodalData.extra``) named like a
    speaker's (:data:`SPEAKER_LIKE`) whose values repeat among the clips at ``rows`` (more than
    one value, fewer than clips), with their number of values."""
    found = []
    for column, values in columns.items():
        key = re.sub(r"[^a-z0-9]", "", column.lower())
        if not SPEAKER_LIKE.fullmatch(key):
            continue
        present = [v for v in values[rows].tolist() if v != ""]
        distinct = len(set(present))
        if 1 < distinct < len(present):
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
               column: str | None = None, names: Sequence[str] = (), context: str = ""
               ) -> tuple[np.ndarray, FoldPlan, list[str]]:
    """Folds (n,) of the labelled clips of class indices ``labels`` (n,), drawn with ``seed``:
    stratified, or stratified group folds when ``groups`` (n,) str gives each clip's group
    (the values of the column ``column``, of the clips ``names``, for messages). Returns the
    folds, their plan and notes for the report."""
    if groups is None:
        fold, note = stratified_folds(labels, n_folds, seed, context)
        return fold, FoldPlan(), [note] if note else []
    fold, note = group_folds(labels, groups, n_folds, seed, column=column or "groups",
                             names=list(names), context=context)
    return fold, plan_of(fold, groups, column, n_folds), [note] if note else []


def shared_folds(labels: np.ndarray, usable: np.ndarray, n_folds: int, seed: int, *,
                 groups: np.ndarray | None = None, column: str | None = None,
                 names: Sequence[str] = (), nothing: str = "") -> np.ndarray:
    """One fold assignment (n,) for every modality set fitted on the same clips (ablations,
    robustness sweeps, leaderboards): :func:`draw_folds` over the labelled clips (``labels``
    >= 0) where ``usable`` (n,) bool (a usable modality), -1 elsewhere; ``groups``, ``column``
    and ``names`` (n,) as for :func:`draw_folds`. ``nothing`` ends the error raised when there
    is no such clip (what to check)."""
    usable = (labels >= 0) & usable
    if not usable.any():
        raise DataError(f"No labelled clip with a usable modality: {nothing}")
    rows = np.flatnonzero(usable)
    fold_of = np.full(len(labels), -1, np.int64)
    fold_of[rows], _, _ = draw_folds(
        labels[rows], n_folds, seed, groups=None if groups is None else groups[rows],
        column=column, names=[names[i] for i in rows] if len(names) else ())
    return fold_of


__all__ = ["FoldPlan", "SPEAKER_LIKE", "check_folds", "check_given_folds", "check_groups",
           "draw_folds", "group_folds", "plan_of", "shared_folds", "speaker_like",
           "speaker_note", "stratified_folds"]
