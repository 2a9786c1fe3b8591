"""Fold assignment: stratified K folds over the labelled clips, drawn with a fixed seed.

A class with fewer labelled clips than folds is refused (its held-out folds would miss it),
with the fix in the message. Ablations and robustness sweeps draw one assignment and share it
between every modality set they fit, so their rows differ only by the modalities.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from mer_features import EMOTIONS
from mer_heads.errors import DataError

if TYPE_CHECKING:
    from mer_heads.config import HeadConfig
    from mer_heads.data.dataset import MultimodalData


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


def shared_folds(data: MultimodalData, config: HeadConfig, nothing: str) -> np.ndarray:
    """One fold assignment (n,) for every modality set fitted on ``data`` (ablations,
    robustness sweeps): stratified folds over the labelled clips with a usable modality, -1
    elsewhere, from ``config``'s folds and seed. ``nothing`` ends the error raised when there
    is no such clip (what to check)."""
    labels = data.labels
    usable = (labels >= 0) & data.present.any(axis=1)
    if not usable.any():
        raise DataError(f"No labelled clip with a usable modality: {nothing}")
    fold_of = np.full(len(data), -1, np.int64)
    fold_of[usable], _ = stratified_folds(labels[usable], config.folds, config.seed)
    return fold_of


__all__ = ["check_folds", "shared_folds", "stratified_folds"]
