"""The MER 2023 protocol as a scikit-learn estimator.

Stratified K folds over the labelled clips, drawn with a fixed seed; in each fold a model learns
from the other folds and keeps the epoch with the best ``F1 - 0.25 * MSE`` (F1 alone without
valence) on its held-out fold; predictions on new clips average the class probabilities and the
valence of all fold models (and of every seed, with ``seeds > 1``). The held-out predictions of
the kept epochs give the cross-validated scores. As in the baseline, the held-out fold both picks
the epoch and scores it, so CV scores are slightly optimistic; test splits are not.

How the F = folds x seeds models fit and predict is the head's family's business (see
:mod:`mer_heads.heads`): the neural heads train as one stacked model, the scikit-learn heads one
estimator per fold and seed. The estimator follows scikit-learn's contract: ``__init__`` only
stores the hyper-parameters, ``fit`` validates them and the data and sets the attributes ending
in ``_`` (the head family only returns what it trained), and every prediction method checks
that it is fitted.

Prediction, for every family through one path:

* :meth:`CrossValidatedHead.predict_proba` / :meth:`~CrossValidatedHead.predict`: the fold
  ensemble on new clips (a submission);
* :meth:`CrossValidatedHead.predict_fold_proba`: each fold's models separately (pseudo-labels
  that no held-out label reaches);
* :meth:`CrossValidatedHead.predict_held_out`: each training clip by the fold models that never
  saw it, from any features of the same clips (robustness to corrupted copies).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.base import BaseEstimator

from mer_heads.config import HeadConfig
from mer_heads.data.standardize import Standardizer, fit_standardizer
from mer_heads.errors import DataError, NotFittedError, ParameterError, RunError, listed
from mer_heads.folds import (FoldPlan, check_given_folds, draw_folds, plan_of, published_folds,
                             speaker_like, speaker_note)
from mer_heads.heads import Head, get_head, known_heads
from mer_heads.heads.layers import check_learned, layer_counts
from mer_heads.metrics import Scores, score
from mer_heads.progress import unit
from mer_heads.runtime import PREDICT_CHUNK, threads_session
from mer_heads.state import FittedState

if TYPE_CHECKING:
    from mer_heads.data.dataset import MultimodalData

_DEFAULT = HeadConfig()


class CrossValidatedHead(BaseEstimator):
    """K-fold cross-validated fusion head.

    Parameters (their defaults and ranges: :class:`~mer_heads.config.HeadConfig`)
    ----------
    model : a registered head (``mer_heads.known_heads()``): ``attention`` (the MER 2023
        baseline), ``concat``, ``fbp``, ``logreg`` or ``svm``.
    folds : K, the number of stratified folds (>= 2).
    groups : an extra column of the data (``MultimodalData.extra``, the manifest's ``actor``,
        ``speaker`` ...) whose groups never straddle folds: scikit-learn's
        StratifiedGroupKFold (shuffled with ``seed``) instead of StratifiedKFold, so held-out
        scores are those of unseen groups. None: folds over clips (a note warns when the data
        has a speaker-like column).
    folds_from : a column of the data whose value is each clip's held-out fold (a published
        protocol such as EmoBox's ``fold``), instead of drawn folds; ``folds`` is then unused
        (K is the number of values). With ``groups``, the fold plan names the groups each fold
        holds out.
    epochs : training epochs of the neural heads; the best one per fold is kept.
    seed : seed of the folds and of all training randomness.
    seeds : models per fold with different initialisations and data orders, all kept and
        averaged (an ensemble of folds x seeds).
    hidden, dropout : the neural heads' width H and dropout probability.
    lr, weight_decay : Adam's step size and L2 weight decay.
    batch_size : clips per step per model; None: ``STEPS_PER_EPOCH`` steps per epoch (a fold's
        training clips / 4, within 32-1024), more with under 100 epochs (``MIN_STEPS``: 400
        steps in all; at 30 epochs 4 steps per epoch learned less than batches of 32). Every step pays for the optimizer, weight casts and
        per-op overheads of the whole stack, so fewer, larger steps are faster; at 100 epochs
        they reached the held-out scores of batches of 32-128 on generated MER-sized data,
        RAVDESS and MER 2023 text (see the README).
    valence_weight : weight of the valence MSE in the training loss.
    modality_dropout : neural heads: probability of masking each modality of a training clip
        per step, through the missing-modality mask (never all of a clip's; not at
        evaluation; drawn from the run's seed).
    C : inverse regularisation of the scikit-learn baselines.
    targets : continuous targets learnt beside the classes (``valence`` and numeric columns of
        the data: ``MultimodalData.target``), each in the multi-task loss.
    calibrate : ``temperature``: one temperature per fold, fitted on the fold models'
        predictions of the fold's own training clips (never a held-out clip), divides the log
        probabilities of the fold's held-out predictions and of its predictions of new clips
        (before the fold ensemble's mean); ``none``: the probabilities as trained.
    metric : the score that picks the epoch each fold model keeps (:data:`~mer_heads.config.
        METRICS`; ``auto``: F1 - 0.25 x valence MSE on MER 2023's classes, UA otherwise).
    precision : ``fp32``, ``bf16`` (matrix products in bfloat16, fp32 weights and sums) or
        ``auto`` (bf16 where the hardware computes it natively: AMX/AVX512-BF16 CPUs, CUDA).
    device : ``cpu``, ``cuda[:N]`` or ``auto``.
    threads : CPU threads (torch and BLAS) of every fit and prediction (:mod:`mer_heads.runtime`).

    Attributes set by ``fit`` (F = folds x seeds models, n = training clips)
    -------------------------------------------------------------------------
    state_ : the :class:`~mer_heads.state.FittedState`: everything predictions need, what a
        run directory keeps (:mod:`mer_heads.rundir`). ``keys_``, ``dims_``, ``input_``,
        ``layers_``, ``layer_weights_``, ``normalized_by_``, ``has_valence_``, ``prior_``,
        ``mean_valence_``, ``standardizer_``, ``model_folds_``, ``model_seeds_``,
        ``precision_`` and ``stack_`` or ``estimators_`` mirror it (:meth:`from_state` sets
        them for a loaded run); the others are what cross-validation found, and a loaded run
        has none of them.
    keys_, dims_, input_ : the modalities (names, widths) and input kind it was fitted on.
    layers_ : per modality, the layers L whose weights are learned (``--layers learned``; 1:
        none). layer_weights_ : key -> (F, L) softmax layer weights of each fold model.
    normalized_by_ : the column the features were normalised within (``--normalize-by``), or
        None; data to predict must be normalised the same way.
    train_names_ : the n training clips. fold_ : (n,) fold of each. fold_plan_ : how the folds
        were drawn (:class:`~mer_heads.folds.FoldPlan`: groups held out per fold). dropped_ :
        labelled clips left out because none of their modalities is usable.
    has_valence_ : whether valence was learnt. prior_ : (K,) training class frequencies.
    mean_valence_ : training mean valence (NaN without valence).
    classes_ : the K classes (the data's label set) in the order of the probability columns.
    targets_ : the T continuous targets; target_means_ : (T,) their training means (NaN: not
        learnt). n_folds_ : K folds (``folds``, or the published folds' number).
    standardizer_ : per-fold statistics. model_folds_, model_seeds_ : (F,).
    stack_ : the fitted :class:`~mer_heads.heads.stack.StackedHead` (neural models), or
    estimators_ : F (classifier, regressor or None) pairs (scikit-learn models).
    best_epochs_ : (F,) kept epoch of each neural model (0 for scikit-learn models).
    n_pseudo_ : (F,) pseudo-labelled clips each model trained on besides its labelled clips.
    n_augmented_ : (F,) corrupted copies (``augment``) each model trained on.
    oof_proba_, oof_valence_ : (n, K), (n,) held-out predictions (mean over seeds);
    oof_targets_ : (n, T) held-out continuous outputs (valence among them).
    model_scores_ : F :class:`~mer_heads.metrics.Scores` on each model's held-out fold.
    cv_scores_ : scores of the pooled held-out predictions. curve_ : (epochs,) mean held-out
    score after each epoch. precision_, device_, batch_size_ : what was used. notes_ : things
    to report.
    """

    def __init__(self, model: str = _DEFAULT.model, *, folds: int = _DEFAULT.folds,
                 groups: str | None = _DEFAULT.groups,
                 folds_from: str | None = _DEFAULT.folds_from, epochs: int = _DEFAULT.epochs,
                 seed: int = _DEFAULT.seed, seeds: int = _DEFAULT.seeds,
                 hidden: int = _DEFAULT.hidden,
                 dropout: float = _DEFAULT.dropout, lr: float = _DEFAULT.lr,
                 weight_decay: float = _DEFAULT.weight_decay,
                 batch_size: int | None = _DEFAULT.batch_size,
                 valence_weight: float = _DEFAULT.valence_weight,
                 modality_dropout: float = _DEFAULT.modality_dropout, C: float = _DEFAULT.C,
                 targets: tuple[str, ...] = _DEFAULT.targets, metric: str = _DEFAULT.metric,
                 calibrate: str = _DEFAULT.calibrate, precision: str = _DEFAULT.precision, device: str = _DEFAULT.device,
                 threads: int = _DEFAULT.threads):
        self.model = model
        self.folds = folds
        self.groups = groups
        self.folds_from = folds_from
        self.epochs = epochs
        self.seed = seed
        self.seeds = seeds
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.valence_weight = valence_weight
        self.modality_dropout = modality_dropout
        self.C = C
        self.targets = targets
        self.metric = metric
        self.calibrate = calibrate
        self.precision = precision
        self.device = device
        self.threads = threads

    @classmethod
    def from_config(cls, config: HeadConfig | dict[str, Any] | None = None
                    ) -> CrossValidatedHead:
        """An unfitted head with the hyper-parameters of ``config`` (a HeadConfig, or a dict
        of them; None: the defaults)."""
        return cls(**HeadConfig.coerce(config).to_json())

    @property
    def config(self) -> HeadConfig:
        """The hyper-parameters as a :class:`~mer_heads.config.HeadConfig` (validated: a value
        out of range raises :class:`~mer_heads.errors.ParameterError` naming its flag)."""
        return HeadConfig(**self.get_params())

    def validate_params(self) -> CrossValidatedHead:
        """Refuse hyper-parameters outside their range (``fit`` does it first)."""
        self.config  # noqa: B018  (validates)
        return self

    # ------------------------------------------------------------------------------------
    def fit(self, X: MultimodalData, y: None = None, *, fold_of: np.ndarray | None = None,
            pseudo_rows: np.ndarray | None = None, pseudo_labels: np.ndarray | None = None,
            augment: Sequence[MultimodalData] | None = None) -> CrossValidatedHead:
        """Cross-validate on the labelled clips of ``X`` (labels come with the data).

        ``fold_of`` : optional (len(X),) fold index per clip (e.g. shared by an ablation);
        drawn with ``seed`` (and ``groups``) when None.
        ``pseudo_rows``, ``pseudo_labels`` : optional pseudo-labelled clips (semi-supervised
        training, see :mod:`mer_heads.experiments.semi`): (P,) rows of unlabelled, usable
        clips of ``X`` and (K, P) the class each fold's models learn for them (-1: not used by
        that fold). They only join the training part of a fold: never a held-out fold, never
        the standardisation statistics, and their valence is not learnt.
        ``augment`` : optional corrupted copies of ``X`` (multi-condition training): datasets of
        the same clips in the same order, modalities and widths (e.g. loaded from stores
        extracted with noise), whose clips join the training part of the folds that train on
        the clip, with the clip's labels. A held-out clip's copies never join its fold. The
        folds' standardisation statistics are those of their whole training set, copies
        included; scores are always on the clean held-out clips.
        """
        config, head = self._check_params(X)
        data = X
        labels = data.labels
        labelled = labels >= 0
        if not labelled.any():
            sources = ", ".join(f"'{m.path}'" for m in data.modalities)
            raise DataError(
                f"None of the {len(data)} clips has a discrete label (stores {sources}). Labels "
                "are copied from the manifest at extraction: re-run the extraction with a "
                "labelled manifest (only labels are refreshed), or pass --manifest PATH.")
        usable = data.present.any(axis=1)
        dropped = labelled & ~usable
        train = np.flatnonzero(labelled & usable)
        notes = list(data.notes)
        notes += self._check_training_data(data, train, labelled)
        copies = self._check_augment(data, augment)
        dropped_names = [data.names[i] for i in np.flatnonzero(dropped)]
        if dropped_names:
            notes.append(f"{len(dropped_names)} labelled clip(s) have no usable modality and "
                         "were left out of training")
        y_train = labels[train]
        fold, fold_plan, fold_notes, k = self._assign_folds(
            data, train, None if fold_of is None else fold_of[train])
        notes += fold_notes
        pseudo_rows, pseudo_labels = self._check_pseudo(data, pseudo_rows, pseudo_labels, k)
        layers = layer_counts(data)
        if data.layers == "learned" and max(layers) == 1:
            notes.append("--layers learned: no store holds utterance arrays of several "
                         "layers (extract with --layer all), so there was nothing to weigh")
        if self.modality_dropout > 0 and len(data.keys) == 1:
            notes.append("--modality-dropout does nothing with one modality (a clip never "
                         "loses all of its modalities)")
        valence = data.valence[train]
        targets = tuple(config.targets)
        target_means = self._target_means(data, train, targets)
        has_valence = "valence" in targets and bool(np.isfinite(valence).any())
        model_folds = np.repeat(np.arange(k), self.seeds)
        n = len(data)

        def with_copies(rows: np.ndarray) -> np.ndarray:
            # A copy of a clip joins exactly the folds its clean clip trains (never its
            # held-out fold); copy a of row i is row (a + 1) * n + i of the stacked data.
            return np.concatenate([rows] + [(a + 1) * n + rows[c.present[rows].any(axis=1)]
                                            for a, c in enumerate(copies)])

        labelled_rows = [train[fold != f] for f in range(k)]
        fold_rows = [with_copies(np.concatenate([labelled_rows[f],
                                                 pseudo_rows[pseudo_labels[f] >= 0]]))
                     for f in range(k)]
        n_augmented = np.array(
            [len(fold_rows[f]) - len(labelled_rows[f]) - int((pseudo_labels[f] >= 0).sum())
             for f in model_folds], np.int64)
        if copies:
            from mer_heads.data.dataset import stack_copies

            stacked = stack_copies(data, copies)
        else:
            stacked = data
        train_masks = np.zeros((k, len(stacked)), bool)
        for j in range(k):  # statistics: the fold's labelled training clips and their copies
            train_masks[j, with_copies(labelled_rows[j])] = True
        state = FittedState(
            keys=data.keys, dims=data.dims, input=data.input, layers=layers,
            normalized_by=data.normalized_by, has_valence=has_valence,
            prior=np.bincount(y_train, minlength=len(data.classes)) / len(y_train),
            mean_valence=float(np.nanmean(valence)) if has_valence else float("nan"),
            model_folds=model_folds, model_seeds=np.tile(np.arange(self.seeds), k) + self.seed,
            standardizer=fit_standardizer(stacked, train_masks), classes=tuple(data.classes),
            targets=targets, target_means=target_means)
        train_rows = [fold_rows[f] for f in model_folds]
        val_rows = [train[fold == f] for f in model_folds]
        n_pseudo = np.array([int((pseudo_labels[f] >= 0).sum()) for f in model_folds], np.int64)
        fold_labels = None
        if len(pseudo_rows):
            fold_labels = np.tile(labels, (k, 1))
            fold_labels[:, pseudo_rows] = pseudo_labels
            fold_labels = np.tile(fold_labels, (1, 1 + len(copies)))
        with threads_session(config.threads), unit():  # one fit of a command's progress
            trained = head.fit(config, state, stacked, train_rows, val_rows, fold_labels)
        state = replace(state, models=trained.models, precision=trained.precision)
        oof_proba, oof_targets, model_scores, cv_scores = self._score(
            data, train, val_rows, trained.val_proba, trained.val_valence, state)

        self._set_state(state)
        self.train_names_ = [data.names[i] for i in train]
        self.fold_ = fold
        self.fold_plan_ = fold_plan
        self.n_folds_ = k
        self.dropped_ = dropped_names
        self.n_pseudo_ = n_pseudo
        self.n_augmented_ = n_augmented
        self.device_, self.batch_size_ = trained.device, trained.batch_size
        self.best_epochs_, self.curve_ = trained.best_epochs, trained.curve
        self.oof_proba_, self.oof_targets_ = oof_proba, oof_targets
        self.oof_valence_ = self._valence_of(oof_targets)
        self.model_scores_, self.cv_scores_ = model_scores, cv_scores
        self.notes_ = notes + trained.notes
        self.temperatures_ = None
        if config.calibrate == "temperature":
            self._calibrate(data, train)
        return self

    def _calibrate(self, data: MultimodalData, train: np.ndarray) -> None:
        """``--calibrate temperature``: fit one temperature per fold on the fold models'
        predictions of the fold's own training clips (:func:`~mer_heads.stats.runs.
        fold_temperatures`; a held-out clip never reaches its fold's temperature), record them
        in the state (run.json) and calibrate the held-out probabilities with them
        (``oof_proba_uncalibrated_`` keeps those before)."""
        from mer_heads.stats.runs import calibrate_held_out, fold_temperatures

        fold_proba = self.predict_fold_proba(data, train)
        temperatures = fold_temperatures(fold_proba, data.labels[train], self.fold_)
        self._set_state(replace(self.state_, temperatures=temperatures))
        self.oof_proba_uncalibrated_ = self.oof_proba_
        self.oof_proba_ = calibrate_held_out(self.oof_proba_, self.fold_, temperatures)

    @classmethod
    def from_state(cls, config: HeadConfig | dict[str, Any], state: FittedState
                   ) -> CrossValidatedHead:
        """A fitted head with the hyper-parameters ``config`` and the fitted ``state`` (a run
        directory's, :func:`mer_heads.rundir.load_run`). It predicts as the head that was
        fitted; what only cross-validation knows (folds, held-out predictions, scores) it has
        not."""
        est = cls.from_config(config)
        est._set_state(state)
        return est

    def _set_state(self, state: FittedState) -> None:
        """Set the fitted attributes that mirror ``state`` (the one place they are set)."""
        head = get_head(self.model)
        self.state_ = state
        self.keys_, self.dims_, self.input_ = state.keys, state.dims, state.input
        self.layers_, self.normalized_by_ = state.layers, state.normalized_by
        self.has_valence_, self.prior_ = state.has_valence, state.prior
        self.mean_valence_ = state.mean_valence
        self.classes_, self.targets_ = tuple(state.classes), tuple(state.targets)
        self.target_means_ = np.asarray(state.target_means, np.float64)
        self.model_folds_, self.model_seeds_ = state.model_folds, state.model_seeds
        self.standardizer_: Standardizer = state.standardizer
        self.precision_ = state.precision
        self.temperatures_ = state.temperatures
        setattr(self, head.models_attribute, state.models)
        self.layer_weights_: dict[str, np.ndarray] = head.layer_weights(state)

    def _check_params(self, data: MultimodalData) -> tuple[HeadConfig, Head]:
        config = self.config
        head = get_head(config.model)
        if data.input not in head.inputs:
            able = [n for n in known_heads() if data.input in get_head(n).inputs]
            kinds = "/".join(dict.fromkeys(get_head(n).kind for n in able))
            raise ParameterError(
                f"The {head.kind} model '{self.model}' takes {' or '.join(head.inputs)} vectors;"
                f" load the data with input='{head.inputs[0]}', or use a {kinds} model "
                f"({', '.join(able)}) for {data.input}.", "input")
        check_learned(config.model, data.layers)
        head.check_runtime(config)
        return config, head

    def _check_training_data(self, data: MultimodalData, train: np.ndarray, labelled: np.ndarray
                             ) -> list[str]:
        """Refuse training clips no head can learn from, with what to do (before any work);
        returns notes on what the head will make of them."""
        if len(train) == 0:
            stores = ", ".join(f"'{m.path}'" for m in data.modalities)
            raise DataError(
                f"None of the {int(labelled.sum())} labelled clips has a usable modality: every "
                f"one failed or is empty in the stores ({stores}). See `mer-features info "
                "STORE` for the reasons, fix the inputs and extract again (--retry-failed).")
        y_train = data.labels[train]
        classes = np.unique(y_train)
        if len(classes) < 2:
            raise DataError(
                f"All {len(train)} labelled training clips have the class "
                f"'{data.classes[classes[0]]}'; a classifier needs at least two classes. Check the "
                "labels (--manifest) and --train-split.")
        if self.folds_from is None and len(train) < self.folds:
            raise DataError(f"{len(train)} labelled training clips cannot be split into "
                            f"{self.folds} folds; lower --folds or add labelled clips.")
        constant = [k for m, k in enumerate(data.keys)
                    if _is_constant(data, m, train)]
        if constant and len(constant) == len(data.keys):
            raise DataError(
                f"Every feature of {', '.join(constant)} has the same value in all "
                f"{len(train)} training clips (zero variance): a head could only learn the class "
                "frequencies. Check the store(s) with `mer-features verify STORE` (an encoder "
                "that returned a constant, or blank inputs) and extract again.")
        if constant:
            return [f"{', '.join(constant)}: every feature has the same value in all training "
                    "clips (zero variance); the modality adds nothing"]
        return []

    def _check_pseudo(self, data: MultimodalData, rows: np.ndarray | None,
                      labels: np.ndarray | None, k: int) -> tuple[np.ndarray, np.ndarray]:
        if rows is None:
            return np.zeros(0, np.int64), np.zeros((k, 0), np.int64)
        rows = np.asarray(rows, np.int64)
        labels = np.asarray(labels, np.int64)
        if labels.shape != (k, len(rows)):
            raise DataError(f"pseudo_labels must have shape (folds, pseudo clips) = "
                            f"({k}, {len(rows)}); got {labels.shape}.")
        n_classes = len(data.classes)
        if labels.size and (labels.min() < -1 or labels.max() >= n_classes):
            raise DataError(f"pseudo_labels must be class indices in [0, {n_classes}) or -1.")
        if len(rows) and (rows.min() < 0 or rows.max() >= len(data)
                          or len(np.unique(rows)) != len(rows)):
            raise DataError("pseudo_rows must be distinct row indices of the data.")
        # A labelled clip given a pseudo-label could be a held-out clip of some fold.
        bad = rows[(data.labels[rows] >= 0) | ~data.present[rows].any(axis=1)]
        if len(bad):
            raise DataError(f"pseudo_rows must be unlabelled clips with a usable modality; "
                            f"'{data.names[bad[0]]}' is not ({len(bad)} such).")
        return rows, labels

    def _assign_folds(self, data: MultimodalData, train: np.ndarray, given: np.ndarray | None
                      ) -> tuple[np.ndarray, FoldPlan, list[str], int]:
        """Folds (len(train),) of the training clips, ``given`` (checked), published
        (``folds_from``) or drawn, their plan, the fold notes (a speaker-like column the folds
        ignore) and the number of folds K."""
        groups = data.groups(self.groups)
        groups = None if groups is None else groups[train]
        names = [data.names[i] for i in train]
        if self.folds_from is not None:
            values = data.column(self.folds_from, "--folds-from")[train]
            fold, plan, notes = published_folds(values, data.labels[train],
                                                source=self.folds_from, names=names,
                                                classes=data.classes, groups=groups,
                                                column=self.groups)
            if given is not None and not np.array_equal(np.asarray(given, np.int64), fold):
                raise DataError(f"fold_of disagrees with the folds of the column "
                                f"'{self.folds_from}' (folds_from); give one of the two.")
            if groups is None:
                notes.append(speaker_note(speaker_like(data.extra, train, fold)))
            return fold, plan, [n for n in notes if n], len(plan.fold_names)
        if given is None:
            fold, plan, notes = draw_folds(data.labels[train], self.folds, self.seed,
                                           groups=groups, column=self.groups,
                                           names=names, classes=data.classes)
        else:
            fold, notes = np.asarray(given, np.int64), []
            if fold.min() < 0 or fold.max() >= self.folds:
                raise DataError(f"fold_of must hold fold indices in [0, {self.folds}) for "
                                "every training clip.")
            if groups is not None:
                check_given_folds(fold, groups, self.groups)
            plan = plan_of(fold, groups, self.groups, self.folds)
        if groups is None:
            notes.append(speaker_note(speaker_like(data.extra, train)))
        return fold, plan, [n for n in notes if n], self.folds

    def _check_augment(self, data: MultimodalData, augment: Sequence[MultimodalData] | None
                       ) -> list[MultimodalData]:
        """The corrupted copies of ``data``, each holding its clips in its order with its
        modalities, widths and input kind (else a DataError saying what differs)."""
        copies = list(augment or ())
        for a, copy in enumerate(copies):
            what = f"Augment copy {a + 1}" + (f" ({', '.join(m.path for m in copy.modalities)})"
                                             if copy.modalities else "")
            if copy.names != data.names:
                raise DataError(f"{what} does not hold the training clips in their order; load "
                                "it from stores of the same clips and subset it like the data.")
            if (copy.keys != data.keys or copy.dims != data.dims or copy.input != data.input
                    or copy.normalized_by != data.normalized_by):
                raise DataError(
                    f"{what} has {copy.input} features of {list(zip(copy.keys, copy.dims))} "
                    f"(normalised by {copy.normalized_by}); the data has {data.input} features "
                    f"of {list(zip(data.keys, data.dims))} (normalised by "
                    f"{data.normalized_by}). Load it like the data.")
        return copies

    def _target_means(self, data: MultimodalData, train: np.ndarray, targets: tuple[str, ...]
                      ) -> np.ndarray:
        """(T,) mean of each target over the training clips, NaN for valence without values
        (a run without valence learns the classes alone, as always); any other target
        without training values is refused."""
        means = np.full(len(targets), np.nan)
        for t, name in enumerate(targets):
            values = data.target(name)[train]
            if np.isfinite(values).any():
                means[t] = float(np.nanmean(values))
            elif name != "valence":
                raise DataError(f"--targets {name}: none of the {len(train)} labelled training "
                                f"clips has a value in the column '{name}'; give it values, or "
                                "leave it out of --targets.")
        return means

    def _valence_of(self, outputs: np.ndarray) -> np.ndarray:
        """The valence column (n,) of continuous outputs (n, T); NaN when valence is not a
        target."""
        targets = tuple(self.targets_)
        if "valence" not in targets:
            return np.full(len(outputs), np.nan)
        return outputs[:, targets.index("valence")]

    def score_predictions(self, data: MultimodalData, rows: np.ndarray, proba: np.ndarray,
                          outputs: np.ndarray, state: FittedState | None = None) -> Scores:
        """The scores of the predictions ``proba`` (len(rows), K) and ``outputs`` (len(rows),
        T) of the labelled clips ``rows`` of ``data``: the classes, valence (when learnt) and
        the other learnt targets (``state``: the fitted one by default)."""
        state = self.state_ if state is None else state
        targets = tuple(state.targets)
        valence = None
        if state.has_valence:
            valence = outputs[:, targets.index("valence")]
        others = {t: (data.target(t)[rows], outputs[:, j]) for j, t in enumerate(targets)
                  if t != "valence" and state.learnt[j]}
        return score(data.labels[rows], proba.argmax(1),
                     data.valence[rows] if state.has_valence else None, valence,
                     classes=state.classes, targets=others)

    def _score(self, data: MultimodalData, train: np.ndarray, val_rows: list[np.ndarray],
               val_proba: list[np.ndarray], val_valence: list[np.ndarray], state: FittedState
               ) -> tuple[np.ndarray, np.ndarray, list[Scores], Scores]:
        """The held-out class probabilities (len(train), K) and continuous outputs
        (len(train), T) (mean over seeds), each model's scores on its held-out fold and the
        scores of the pooled predictions."""
        position = {row: i for i, row in enumerate(train)}
        oof_proba = np.zeros((len(train), len(state.classes)))
        oof_targets = np.zeros((len(train), state.n_outputs))
        model_scores: list[Scores] = []
        for rows, proba, val in zip(val_rows, val_proba, val_valence):
            at = np.array([position[r] for r in rows], np.int64)
            oof_proba[at] += proba / self.seeds
            oof_targets[at] += val / self.seeds
            model_scores.append(self.score_predictions(data, rows, proba, val, state))
        cv_scores = self.score_predictions(data, train, oof_proba, oof_targets, state)
        return oof_proba, oof_targets, model_scores, cv_scores

    # ------------------------------------------------------------------------------------
    def _check_fitted(self, what: str = "state_") -> None:
        if not hasattr(self, what):
            raise NotFittedError(
                "This CrossValidatedHead is not fitted yet; call fit() first or load a run "
                "directory." if what == "state_" else
                "This CrossValidatedHead was loaded from a run directory, which keeps no folds: "
                "held-out predictions need the estimator fitted in this session (fit()).")

    def _check_modalities(self, data: MultimodalData) -> None:
        if data.keys != self.keys_ or data.dims != self.dims_ or data.input != self.input_:
            raise RunError(
                f"The run was fitted on {self.input_} features of modalities "
                f"{list(zip(self.keys_, self.dims_))}; got {data.input} features of "
                f"{list(zip(data.keys, data.dims))}. Pass the same stores, in the same order.")
        fitted = getattr(self, "normalized_by_", None)
        if data.normalized_by != fitted:
            def said(column: str | None) -> str:
                return "not normalised per group" if column is None else \
                    f"normalised by {column!r}"

            raise RunError(
                f"The run was fitted on features {said(fitted)}; these are "
                f"{said(data.normalized_by)}. Load them with normalize_by={fitted!r} "
                "(--normalize-by), as the run was.")

    def _chunks(self, data: MultimodalData, rows: np.ndarray, chunk: int
                ) -> Iterator[tuple[int, MultimodalData, Any]]:
        """(start, the clips of ``data`` at ``rows[start:start + chunk]``, the head's predict
        function) per chunk, inside one predictor session (the stack on its device)."""
        with threads_session(self.threads), \
                get_head(self.model).predictor(self.config, self.state_, data,
                                               min(len(rows), 512)) as predict:
            for start in range(0, len(rows), chunk):
                yield start, data.subset(rows[start:start + chunk]), predict

    def _impute(self, proba: np.ndarray, outputs: np.ndarray, present: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Clips with no usable modality get the training prior and the targets' training
        means; a target the run did not learn is NaN everywhere."""
        imputed = ~present.any(axis=1)
        proba[imputed] = self.prior_
        means = np.asarray(self.target_means_, np.float64)
        outputs = outputs[:, :len(means)]
        outputs[:, ~np.isfinite(means)] = np.nan
        outputs[imputed] = means
        return proba, outputs, imputed

    def predict_outputs(self, X: MultimodalData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fold-ensemble predictions for every clip of ``X``: class probabilities (n, K)
        (columns ``classes_``), continuous targets (n, T) (columns ``targets_``; NaN for a
        target the run did not learn) and a bool (n,) ``imputed``: clips with no usable
        modality get the training prior and the targets' means instead of a model output.
        Computed in chunks of PREDICT_CHUNK clips."""
        self._check_fitted()
        self._check_modalities(X)
        n = len(X)
        proba = np.zeros((n, len(self.classes_)))
        outputs = np.zeros((n, self.state_.n_outputs))
        if n == 0:
            return proba, outputs[:, :len(self.targets_)], np.zeros(0, bool)
        for start, part, predict in self._chunks(X, np.arange(n), PREDICT_CHUNK):
            at = slice(start, start + len(part))
            proba[at], outputs[at] = predict(part, mean=True)
        if self.state_.temperatures is not None:  # --calibrate temperature: per fold
            from mer_heads.stats.runs import calibrated_ensemble

            usable = np.flatnonzero(X.present.any(axis=1))
            if len(usable):
                proba[usable] = calibrated_ensemble(self.predict_fold_proba(X, usable),
                                                    self.state_.temperatures)
        return self._impute(proba, outputs, X.present)

    def predict_proba(self, X: MultimodalData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fold-ensemble predictions for every clip of ``X``.

        Returns class probabilities (n, K), valence (n,) (NaN when the run learnt none) and a
        bool (n,) ``imputed``: clips with no usable modality get the training prior and mean
        valence instead of a model output (:meth:`predict_outputs` gives every target).
        """
        proba, outputs, imputed = self.predict_outputs(X)
        return proba, self._valence_of(outputs), imputed

    def predict(self, X: MultimodalData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Class names (n,) object array, valence (n,) and ``imputed`` (n,): see predict_proba."""
        proba, valence, imputed = self.predict_proba(X)
        return np.array(self.classes_, dtype=object)[proba.argmax(1)], valence, imputed

    def predict_fold_proba(self, X: MultimodalData, rows: np.ndarray | None = None,
                           chunk: int = PREDICT_CHUNK) -> np.ndarray:
        """Class probabilities of each fold's models (the mean over its seeds) for the clips of
        ``X`` at ``rows`` (default all), shape (K folds, n, K classes). Computed in chunks of
        ``chunk`` clips: memory grows with the chunk, not with n (beyond the result). Clips
        need a usable modality."""
        self._check_fitted()
        self._check_modalities(X)
        rows = np.arange(len(X)) if rows is None else np.asarray(rows, np.int64)
        out = np.zeros((self.state_.n_folds, len(rows), len(self.classes_)))
        for start, part, predict in self._chunks(X, rows, chunk):
            probas, _ = predict(part, valence=False)
            for fold, proba in zip(self.model_folds_, probas):
                out[fold, start:start + len(part)] += proba
        return out / self.seeds

    def predict_held_out(self, X: MultimodalData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each training clip predicted by the fold models that never saw it.

        ``X`` holds the clips the head was fitted on (any order, other clips allowed), with the
        same modalities, possibly from other stores (corrupted copies). Returns, in the order of
        ``train_names_``, class probabilities (n, K), valence (n,) (NaN without valence) and
        ``imputed`` (n,): clips with no usable modality in ``X``, given the training prior and
        mean valence. On the training features this reproduces ``oof_proba_`` and
        ``oof_valence_`` bit for bit (the same threads, dtype and row layout as training's
        held-out pass). :meth:`predict_held_out_outputs` gives every target.
        """
        proba, outputs, imputed = self.predict_held_out_outputs(X)
        return proba, self._valence_of(outputs), imputed

    def predict_held_out_outputs(self, X: MultimodalData
                                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`predict_held_out` with every continuous target: probabilities (n, K), targets
        (n, T) and ``imputed`` (n,)."""
        self._check_fitted()
        self._check_fitted("fold_")
        self._check_modalities(X)
        where = {n: i for i, n in enumerate(X.names)}
        lacking = [n for n in self.train_names_ if n not in where]
        if lacking:
            raise DataError(f"{len(lacking)} training clip(s) are not in the data "
                            f"({listed(lacking)}).")
        data = X.subset(np.array([where[n] for n in self.train_names_], np.int64))
        own = [np.flatnonzero(self.fold_ == f) for f in self.model_folds_]
        with threads_session(self.threads), \
                get_head(self.model).predictor(self.config, self.state_, data,
                                               self.batch_size_) as predict:
            probas, valences = predict(data, own)
        n = len(data)
        proba = np.zeros((n, len(self.classes_)))
        outputs = np.zeros((n, self.state_.n_outputs))
        for rows, p, v in zip(own, probas, valences):
            proba[rows] += p / self.seeds
            outputs[rows] += v / self.seeds
        if self.state_.temperatures is not None:  # --calibrate temperature: as oof_proba_
            from mer_heads.stats.runs import calibrate_held_out

            proba = calibrate_held_out(proba, self.fold_, self.state_.temperatures)
        return self._impute(proba, outputs, data.present)


# --------------------------------------------------------------------------------------------


def _is_constant(data: MultimodalData, m: int, rows: np.ndarray) -> bool:
    """Whether modality ``m`` has one value per feature over its usable clips among ``rows``
    (and their real frames): nothing a head could learn from."""
    use = rows[data.present[rows, m]]
    if len(use) < 2:
        return False
    x = data.features[m][use]
    if data.frame_mask is not None:
        x = x[data.frame_mask[m][use]]
    x = x.reshape(len(x), -1)
    return bool(len(x) > 1 and (x.max(axis=0) == x.min(axis=0)).all())



__all__ = ["CrossValidatedHead"]
