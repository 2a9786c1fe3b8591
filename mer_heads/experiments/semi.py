"""Semi-supervised training (MER-SEMI): pseudo-labelled unlabelled clips join the folds' training.

A round takes the previous round's fitted :class:`~mer_heads.protocol.CrossValidatedHead` as
teacher, predicts every clip of the unlabelled *pool* (in chunks, so a pool of 73k clips with
wide features needs no more memory than a chunk), keeps the clips a *strategy* selects, and
cross-validates a fresh head (same seed, same folds) on the labelled clips plus the selected
ones. Round 0 is the supervised run. Strategies:

* ``threshold``: confidence (top class probability) >= T (default 0.8);
* ``class-quantile``: per predicted class c, the confidence threshold is the Q-quantile of the
  confidences of the pool clips predicted c (Q = 0.8 adds the top 20% of each predicted class),
  a class-specific threshold as in the MER 2023 baseline;
* ``weak-reinforce``: confidence >= T, but only for classes whose frequency among the fold's
  labelled training clips is below the mean class frequency (MER 2023: sad, worried, surprise);
* ``none``: no pseudo-labels (the supervised run).

No held-out label reaches a fold's training:

* pool clips are unlabelled, so they are never in a held-out fold, and they only join the
  *training* part of each fold; the held-out folds, and so the CV scores, are those of the
  supervised run;
* the teacher (``teacher="fold"``, the default) of fold k's pseudo-labels is fold k's own
  models (the mean over its seeds), which never saw fold k's held-out clips. The mean of all
  fold models (``teacher="ensemble"``, the prediction ``predict`` makes) would leak: the other
  folds' models were trained on fold k's held-out clips and pass their labels on to nearby pool
  clips, which then train fold k's model, so its CV score would lean optimistic;
* pseudo-labelled clips teach the class only: their valence is left unlearnt (masked) rather
  than copied from the teacher, whose own errors it would reinforce;
* a fold never takes a pseudo-label of a class that has no labelled training clip in it (its
  teacher never learnt that class);
* standardisation statistics still come from each fold's labelled training clips;
* every round trains as the supervised run did: the same folds, seed, epochs and selection of
  the best epoch on the same held-out clips, and the same batch size (a neural head without
  ``batch_size`` takes the supervised run's resolved size, so a pseudo-labelled clip adds
  steps as a labelled one would, instead of enlarging every step); a round that adds no clip
  gives the supervised run's models exactly (tested). A round that adds clips re-draws the
  stack's training randomness (minibatch order, dropout), so its change against round 0
  includes the seed-to-seed variance of training: :mod:`~mer_heads.experiments.semi_sweep`
  measures that spread;
* with group folds (``--groups``), a pool clip never joins the training of the fold that holds
  out its group, so no fold trains on a held-out speaker's clips, labelled or not.

``hide_labels`` (research simulation) hides a stratified, seeded fraction of the labelled clips'
labels *before* folds are drawn: those clips become the pool (and nothing else does), are never
in a held-out fold, and their true labels are only used to score the pseudo-labels assigned.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from mer_heads.config import STRATEGIES, TEACHERS, HeadConfig, SemiSettings
from mer_heads.data.dataset import MultimodalData
from mer_heads.errors import DataError
from mer_heads.folds import check_folds, check_groups
from mer_heads.progress import unit
from mer_heads.protocol import CrossValidatedHead


# --------------------------------------------------------------------------------------------
# Selection rules: probabilities (P, K) of one teacher -> pseudo class (P,), -1 = not selected.


def select_threshold(proba: np.ndarray, threshold: float) -> np.ndarray:
    """Clips whose top class probability is >= ``threshold`` get that class."""
    pred = proba.argmax(1)
    return np.where(proba.max(1) >= threshold, pred, -1)


def select_class_quantile(proba: np.ndarray, quantile: float) -> np.ndarray:
    """Per predicted class, clips whose confidence is >= that class's ``quantile``-quantile of
    confidence among the clips predicted that class."""
    pred, conf = proba.argmax(1), proba.max(1)
    out = np.full(len(proba), -1, np.int64)
    for c in range(proba.shape[1]):
        mine = pred == c
        if mine.any():
            cut = np.quantile(conf[mine], quantile)
            out[mine & (conf >= cut)] = c
    return out


def under_represented(class_counts: np.ndarray) -> np.ndarray:
    """Bool (K,): classes with fewer training clips than the mean over the K classes."""
    counts = np.asarray(class_counts, np.float64)
    return counts < counts.mean()


def select_weak_reinforce(proba: np.ndarray, threshold: float, class_counts: np.ndarray
                          ) -> np.ndarray:
    """As :func:`select_threshold`, for under-represented classes only (``class_counts``: (K,)
    labelled training clips per class)."""
    labels = select_threshold(proba, threshold)
    weak = under_represented(class_counts)
    return np.where((labels >= 0) & weak[labels.clip(min=0)], labels, -1)


def select(settings: SemiSettings, proba: np.ndarray, class_counts: np.ndarray) -> np.ndarray:
    """The pseudo class (P,) of each pool clip under ``settings.strategy`` (-1: not selected)."""
    if settings.strategy == "threshold":
        return select_threshold(proba, settings.threshold)
    if settings.strategy == "class-quantile":
        return select_class_quantile(proba, settings.quantile)
    if settings.strategy == "weak-reinforce":
        return select_weak_reinforce(proba, settings.threshold, class_counts)
    return np.full(len(proba), -1, np.int64)


# --------------------------------------------------------------------------------------------


@dataclass
class HiddenLabels:
    """Labels hidden for the simulation: clip names and their true classes (indices)."""

    names: list[str]
    labels: np.ndarray


def hide_labels(data: MultimodalData, candidates: np.ndarray, fraction: float, seed: int,
                targets: Sequence[str] = ()) -> tuple[MultimodalData, HiddenLabels]:
    """Hide ``fraction`` of the labels of the labelled, usable clips where ``candidates``
    (bool (n,)) is True, per class (stratified; at least one clip per class keeps its label),
    drawn with ``seed``. Returns the data with those clips' class, valence and ``targets``
    columns removed, and what was hidden (in data order)."""
    labels = data.labels
    eligible = candidates & (labels >= 0) & data.present.any(axis=1)
    rng = np.random.default_rng(seed)
    hidden = np.zeros(len(data), bool)
    for c in range(len(data.classes)):
        rows = np.flatnonzero(eligible & (labels == c))
        if len(rows) < 2:
            continue
        n_hide = min(int(round(fraction * len(rows))), len(rows) - 1)
        hidden[rng.permutation(rows)[:n_hide]] = True
    discrete, valence = data.discrete.copy(), data.valence.copy()
    discrete[hidden] = ""
    valence[hidden] = np.nan
    extra = dict(data.extra)
    for target in targets:
        if target in extra:
            extra[target] = np.where(hidden, "", extra[target]).astype(object)
    rows = np.flatnonzero(hidden)
    out = replace(data, discrete=discrete, valence=valence, extra=extra,
                  notes=[*data.notes, f"--hide-labels {fraction:g}: the labels of {len(rows)} "
                         "clips were hidden (stratified); they are the unlabelled pool"])
    return out, HiddenLabels([data.names[i] for i in rows], labels[rows])


def hide_training_labels(data: MultimodalData, train: np.ndarray, fraction: float, seed: int,
                         *, folds: int, groups: str | None = None,
                         folds_from: str | None = None, targets: Sequence[str] = ()
                         ) -> tuple[MultimodalData, HiddenLabels]:
    """:func:`hide_labels` of the training clips (``train``: bool (n,)) before the folds are
    drawn (so no hidden clip can be in a held-out fold), then refuse, with the fix, ``folds``
    folds that the clips still labelled cannot fill: a class with fewer clips than folds, or,
    with the group column ``groups``, fewer groups than folds (published folds,
    ``folds_from``, are checked when the head is fitted). ``targets``: the continuous targets
    hidden with the labels."""
    data, hidden = hide_labels(data, train, fraction, seed, targets)
    if folds_from is not None:
        return data, hidden
    kept = np.flatnonzero(train & (data.labels >= 0) & data.present.any(axis=1))
    context = f"(after --hide-labels {fraction:g} hid {len(hidden.names)} labels)"
    check_folds(data.labels[kept], folds, context, data.classes)
    if groups is not None:
        check_groups(data.groups(groups)[kept], folds, groups, [data.names[i] for i in kept],
                     context)
    return data, hidden


@dataclass
class SemiResult:
    """``estimator``: the last round's head; ``rounds``: one JSON-ready dict per round (round 0
    is the supervised run); ``pool``: the pool's clip names; ``selected``: per round >= 1, the
    (K, P) pseudo class of each pool clip for each fold (-1: not used)."""

    estimator: CrossValidatedHead
    settings: SemiSettings
    rounds: list[dict[str, Any]]
    pool: list[str]
    selected: list[np.ndarray]

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings.to_json(), "pool": len(self.pool),
                "rounds": self.rounds}

    def used_clips(self) -> list[str]:
        """The pool clips the last round trained on (with a pseudo-label in some fold)."""
        if not self.selected:
            return []
        used = (self.selected[-1] >= 0).any(axis=0)
        return [name for name, u in zip(self.pool, used) if u]


def fit_semi(data: MultimodalData, settings: SemiSettings,
             head: HeadConfig | Mapping[str, Any] | None = None, *,
             hidden: HiddenLabels | None = None,
             augment: Sequence[MultimodalData] = (),
             supervised: CrossValidatedHead | None = None) -> SemiResult:
    """Cross-validate a head (``head``: a HeadConfig, or a dict of its fields) on ``data`` (the
    training clips), then run ``settings.rounds`` rounds of pseudo-labelling (none for the
    ``none`` strategy).

    The pool is the clips of ``hidden`` when given (the simulation), else the unlabelled clips
    of ``data`` with a usable modality. With ``head.groups``, a pool clip never joins the
    training of the fold that holds out its group (no fold trains on a held-out speaker's
    clips, labelled or not). ``augment``: corrupted copies of ``data`` (multi-condition
    training; a pseudo-labelled clip's copies join the folds it joins). ``supervised``: the
    round-0 head already fitted with ``head`` on the labelled clips of ``data`` (shared by
    the runs of :func:`~mer_heads.experiments.semi_sweep.semi_sweep`); fitted here when None.
    """
    settings = settings.check()
    head = HeadConfig.coerce(head)
    usable = data.present.any(axis=1)
    labelled = np.flatnonzero(data.labels >= 0)
    if hidden is not None:
        where = {n: i for i, n in enumerate(data.names)}
        missing = [n for n in hidden.names if n not in where]
        if missing:
            raise DataError(f"{len(missing)} hidden clip(s) are not in the data ('{missing[0]}').")
        pool = np.array([where[n] for n in hidden.names], np.int64)
        if (data.labels[pool] >= 0).any():
            raise DataError("Hidden clips must have their labels removed from the data "
                            "(use hide_labels).")
        truth = np.asarray(hidden.labels, np.int64)
    else:
        pool = np.flatnonzero((data.labels < 0) & usable)
        truth = None
    if settings.strategy != "none" and len(pool) == 0:
        raise DataError(
            f"The semi-supervised strategy '{settings.strategy}' needs unlabelled clips, and none "
            f"of the {len(data)} training clips is unlabelled with a usable modality. Extract "
            "the unlabelled clips into the stores (a manifest row with an empty 'discrete'), or "
            "simulate with --hide-labels FRACTION.")
    augment = list(augment)

    def copies(rows: np.ndarray) -> list[MultimodalData]:
        return [c.subset(rows) for c in augment]

    if supervised is None:
        with unit("round 0 (supervised)"):
            supervised = CrossValidatedHead.from_config(head).fit(data.subset(labelled),
                                                                  augment=copies(labelled))
    base_fold = np.zeros(len(data), np.int64)
    train_rows = data.rows_of(supervised.train_names_)
    base_fold[train_rows] = supervised.fold_
    if head.folds_from is not None:  # a pool clip is held out by the fold its column names
        index = {name: k for k, name in enumerate(supervised.fold_plan_.fold_names)}
        held_out = np.array([index.get(v, -1) for v in
                             data.column(head.folds_from, "--folds-from")[pool].tolist()],
                            np.int64)
    else:
        held_out = _held_out_fold(data.groups(head.groups), pool, train_rows, supervised.fold_)
    train_y = data.labels[train_rows]
    class_counts = np.stack([np.bincount(train_y[supervised.fold_ != k],
                                         minlength=len(data.classes))
                             for k in range(supervised.n_folds_)])
    rounds = [_round_json(0, supervised, None, None, None, supervised, tuple(data.classes))]
    selected: list[np.ndarray] = []
    est = supervised
    student = same_training(head, supervised)
    n_rounds = 0 if settings.strategy == "none" else settings.rounds
    value = settings.quantile if settings.strategy == "class-quantile" else settings.threshold
    label = f"{settings.strategy} {value:g}, "
    for r in range(1, n_rounds + 1):
        proba = est.predict_fold_proba(data, rows=pool, chunk=settings.chunk)     # (K, P, C)
        if settings.teacher == "ensemble":
            proba[:] = proba.mean(0)
        classes = tuple(est.classes_)
        labels = np.stack([select(settings, proba[k], class_counts[k])
                           for k in range(len(proba))])
        # A class with no labelled training clip in a fold was never taught to its teacher:
        # such a top class is noise, and would be a class of one or two clips in the student.
        labels[(labels >= 0) & (np.take_along_axis(class_counts, labels.clip(min=0), 1) == 0)] = -1
        labels[held_out[None, :] == np.arange(len(labels))[:, None]] = -1
        used = (labels >= 0).any(axis=0)
        rows = np.concatenate([labelled, pool[used]])
        with unit(f"{label}round {r}, {int(used.sum())} pool clips pseudo-labelled"):
            est = CrossValidatedHead.from_config(student).fit(
                data.subset(rows), fold_of=base_fold[rows],
                pseudo_rows=np.arange(len(labelled), len(rows)), pseudo_labels=labels[:, used],
                augment=copies(rows))
        selected.append(labels)
        rounds.append(_round_json(r, est, labels, proba, truth, supervised, classes))
        del proba
    return SemiResult(est, settings, rounds, [data.names[i] for i in pool], selected)


def same_training(head: HeadConfig, supervised: CrossValidatedHead) -> HeadConfig:
    """The hyper-parameters of a pseudo-labelling round: ``head``, with the batch size the
    supervised run resolved when ``head`` leaves it to the data (neural heads): the automatic
    size grows with the training clips, and a round must train as the run it is compared with,
    not with larger steps."""
    if head.batch_size is None and getattr(supervised, "batch_size_", 0):
        return replace(head, batch_size=int(supervised.batch_size_))
    return head


def _held_out_fold(groups: np.ndarray | None, pool: np.ndarray, train_rows: np.ndarray,
                   fold: np.ndarray) -> np.ndarray:
    """The fold (P,) holding out the group of each clip at ``pool`` (-1: none, or no
    ``groups``, the group labels (n,) of the clips): that fold must not train on the clip.
    ``train_rows`` are the labelled training clips and ``fold`` their folds."""
    if groups is None:
        return np.full(len(pool), -1, np.int64)
    fold_of = {g: int(f) for g, f in zip(groups[train_rows].tolist(), fold.tolist())}
    return np.array([fold_of.get(g, -1) for g in groups[pool].tolist()], np.int64)


def _round_json(r: int, est: CrossValidatedHead, labels: np.ndarray | None,
                proba: np.ndarray | None, truth: np.ndarray | None,
                supervised: CrossValidatedHead, classes: tuple[str, ...]) -> dict[str, Any]:
    k = est.n_folds_
    per_fold = (np.zeros((k, len(classes)), np.int64) if labels is None else
                np.stack([np.bincount(row[row >= 0], minlength=len(classes)) for row in labels]))
    cv = est.cv_scores_.to_json()
    out: dict[str, Any] = {
        "round": r,
        "added": {e: float(v) for e, v in zip(classes, per_fold.mean(0))},
        "added_total": float(per_fold.sum(1).mean()),
        "added_per_fold": per_fold.tolist(),
        "added_clips": 0 if labels is None else int((labels >= 0).any(axis=0).sum()),
        "cv": cv,
        "delta_metric": cv["metric"] - supervised.cv_scores_.metric,
    }
    if truth is not None:
        out["pseudo_accuracy"] = _accuracy(labels, proba, truth, classes)
    return out


def _accuracy(labels: np.ndarray | None, proba: np.ndarray | None, truth: np.ndarray,
              classes: tuple[str, ...]) -> dict[str, Any]:
    """Accuracy of the assigned pseudo-labels pooled over folds, per assigned class, and of the
    teacher's top class over the whole pool (mean over folds)."""
    if labels is None:
        return {"assigned": 0, "overall": None, "per_class": {e: None for e in classes},
                "teacher": None}
    assigned = labels >= 0
    correct = assigned & (labels == truth[None])
    per_class = {}
    for c, e in enumerate(classes):
        n = int((labels == c).sum())
        per_class[e] = None if n == 0 else float((correct & (labels == c)).sum() / n)
    n = int(assigned.sum())
    return {"assigned": n, "overall": None if n == 0 else float(correct.sum() / n),
            "per_class": per_class,
            "teacher": float((proba.argmax(-1) == truth[None]).mean())}


__all__ = ["STRATEGIES", "TEACHERS", "HiddenLabels", "SemiResult", "SemiSettings", "fit_semi",
           "hide_labels", "hide_training_labels", "same_training", "select",
           "select_class_quantile",
           "select_threshold", "select_weak_reinforce", "under_represented"]
