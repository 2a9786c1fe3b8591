"""The MER 2023 protocol as a scikit-learn-style estimator.

Stratified K folds over the labelled clips, drawn with a fixed seed; in each fold a model learns
from the other folds and keeps the epoch with the best ``F1 - 0.25 * MSE`` (F1 alone without
valence) on its held-out fold; predictions on new clips average the class probabilities and the
valence of all fold models (and of every seed, with ``seeds > 1``). The held-out predictions of
the kept epochs give the cross-validated scores. As in the baseline, the held-out fold both picks
the epoch and scores it, so CV scores are slightly optimistic; test splits are not.

The neural heads of all folds x seeds train as one stacked model (see :mod:`mer_heads.training`);
the scikit-learn baselines train one estimator per fold and seed.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator

from mer_features import EMOTIONS
from mer_heads.data import MultimodalData
from mer_heads.errors import DataError, NotFittedError, ParameterError, RunError
from mer_heads.metrics import Scores, score
from mer_heads.sklearn_models import (SKLEARN_MODELS, SVM_CALIBRATION_FOLDS, design_matrix,
                                      full_proba, make_classifier, make_regressor,
                                      valence_predictions)
from mer_heads.standardize import Standardizer, fit_standardizer

NEURAL_MODELS = ("attention", "concat", "fbp")
ALL_MODELS = NEURAL_MODELS + SKLEARN_MODELS
PRECISIONS = ("auto", "fp32", "bf16")
PREDICT_CHUNK = 4096
_SHOWN = 5
MAX_SEED = 2**32 - 1
"""Seeds reach numpy's legacy RandomState (StratifiedKFold), which takes [0, 2**32 - 1]."""
DEVICE_PATTERN = re.compile(r"cpu|auto|cuda(:\d+)?")
FLAGS = {"model": "--model", "folds": "--folds", "epochs": "--epochs", "seed": "--seed",
         "seeds": "--seeds", "hidden": "--hidden", "dropout": "--dropout", "lr": "--lr",
         "weight_decay": "--weight-decay", "batch_size": "--batch-size",
         "valence_weight": "--valence-weight", "C": "-C", "precision": "--precision",
         "device": "--device"}
"""The command-line flag of each hyper-parameter, for error messages."""


class CrossValidatedHead(BaseEstimator):
    """K-fold cross-validated fusion head.

    Parameters
    ----------
    model : ``attention`` (the MER 2023 baseline), ``concat``, ``fbp``, ``logreg`` or ``svm``.
    folds : K, the number of stratified folds (>= 2).
    epochs : training epochs of the neural heads; the best one per fold is kept.
    seed : seed of the folds and of all training randomness.
    seeds : models per fold with different initialisations and data orders, all kept and
        averaged (an ensemble of folds x seeds).
    hidden, dropout : the neural heads' width H and dropout probability.
    lr, weight_decay : Adam's step size and L2 weight decay.
    batch_size : clips per step per model; None: ``STEPS_PER_EPOCH`` steps per epoch (a fold's
        training clips / 4, within 32-1024). Every step pays for the optimizer, weight casts and
        per-op overheads of the whole stack, so fewer, larger steps are faster; at 100 epochs
        they reached the held-out scores of batches of 32-128 on generated MER-sized data,
        RAVDESS and MER 2023 text (see the README).
    valence_weight : weight of the valence MSE in the training loss.
    C : inverse regularisation of the scikit-learn baselines.
    precision : ``fp32``, ``bf16`` (matrix products in bfloat16, fp32 weights and sums) or
        ``auto`` (bf16 where the hardware computes it natively: AMX/AVX512-BF16 CPUs, CUDA).
    device : ``cpu``, ``cuda[:N]`` or ``auto``.

    Attributes set by ``fit`` (F = folds x seeds models, n = training clips)
    -------------------------------------------------------------------------
    keys_, dims_, input_ : the modalities (names, widths) and input kind it was fitted on.
    train_names_ : the n training clips. fold_ : (n,) fold of each. dropped_ : labelled clips
        left out because none of their modalities is usable.
    has_valence_ : whether valence was learnt. prior_ : (6,) training class frequencies.
    mean_valence_ : training mean valence (NaN without valence).
    standardizer_ : per-fold statistics. model_folds_, model_seeds_ : (F,).
    stack_ : the fitted :class:`~mer_heads.models.StackedHead` (neural models), or
    estimators_ : F (classifier, regressor or None) pairs (scikit-learn models).
    best_epochs_ : (F,) kept epoch of each neural model (0 for scikit-learn models).
    n_pseudo_ : (F,) pseudo-labelled clips each model trained on besides its labelled clips.
    oof_proba_, oof_valence_ : (n, 6), (n,) held-out predictions (mean over seeds).
    model_scores_ : F :class:`~mer_heads.metrics.Scores` on each model's held-out fold.
    cv_scores_ : scores of the pooled held-out predictions. curve_ : (epochs,) mean held-out
    score after each epoch. precision_, device_ : what was used. notes_ : things to report.
    """

    def __init__(self, model: str = "attention", *, folds: int = 5, epochs: int = 100,
                 seed: int = 0, seeds: int = 1, hidden: int = 128, dropout: float = 0.3,
                 lr: float = 1e-3, weight_decay: float = 1e-5, batch_size: int | None = None,
                 valence_weight: float = 1.0, C: float = 1.0, precision: str = "auto",
                 device: str = "cpu"):
        self.model = model
        self.folds = folds
        self.epochs = epochs
        self.seed = seed
        self.seeds = seeds
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.valence_weight = valence_weight
        self.C = C
        self.precision = precision
        self.device = device

    # ------------------------------------------------------------------------------------
    def fit(self, X: MultimodalData, y: None = None, *, fold_of: np.ndarray | None = None,
            pseudo_rows: np.ndarray | None = None, pseudo_labels: np.ndarray | None = None
            ) -> CrossValidatedHead:
        """Cross-validate on the labelled clips of ``X`` (labels come with the data).

        ``fold_of`` : optional (len(X),) fold index per clip (e.g. shared by an ablation);
        drawn with ``seed`` when None.
        ``pseudo_rows``, ``pseudo_labels`` : optional pseudo-labelled clips (semi-supervised
        training, see :mod:`mer_heads.semi`): (P,) rows of unlabelled, usable clips of ``X``
        and (K, P) the class each fold's models learn for them (-1: not used by that fold).
        They only join the training part of a fold: never a held-out fold, never the
        standardisation statistics, and their valence is not learnt.
        """
        self._check_params(X)
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
        self.notes_ = list(data.notes)
        self._check_training_data(data, train, labelled)
        self.dropped_ = [data.names[i] for i in np.flatnonzero(dropped)]
        if self.dropped_:
            self.notes_.append(f"{len(self.dropped_)} labelled clip(s) have no usable modality "
                               "and were left out of training")
        y_train = labels[train]
        fold = self._assign_folds(y_train, None if fold_of is None else fold_of[train])
        k = self.folds
        pseudo_rows, pseudo_labels = self._check_pseudo(data, pseudo_rows, pseudo_labels)
        train_masks = np.zeros((k, len(data)), bool)
        for j in range(k):
            train_masks[j, train[fold != j]] = True
        self.standardizer_: Standardizer = fit_standardizer(data, train_masks)
        self.keys_, self.dims_, self.input_ = data.keys, data.dims, data.input
        self.train_names_ = [data.names[i] for i in train]
        self.fold_ = fold
        valence = data.valence[train]
        self.has_valence_ = bool(np.isfinite(valence).any())
        self.prior_ = np.bincount(y_train, minlength=len(EMOTIONS)) / len(y_train)
        self.mean_valence_ = float(np.nanmean(valence)) if self.has_valence_ else float("nan")
        self.model_folds_ = np.repeat(np.arange(k), self.seeds)
        self.model_seeds_ = np.tile(np.arange(self.seeds), k) + self.seed
        train_rows = [np.concatenate([train[fold != f], pseudo_rows[pseudo_labels[f] >= 0]])
                      for f in self.model_folds_]
        val_rows = [train[fold == f] for f in self.model_folds_]
        self.n_pseudo_ = np.array([int((pseudo_labels[f] >= 0).sum()) for f in self.model_folds_],
                                  np.int64)
        fold_labels = None
        if len(pseudo_rows):
            fold_labels = np.tile(labels, (k, 1))
            fold_labels[:, pseudo_rows] = pseudo_labels
        if self.model in SKLEARN_MODELS:
            val_proba, val_valence = self._fit_sklearn(data, train_rows, val_rows, fold_labels)
        else:
            val_proba, val_valence = self._fit_neural(data, train_rows, val_rows, fold_labels)
        self._score(data, train, fold, val_rows, val_proba, val_valence)
        return self

    def validate_params(self) -> CrossValidatedHead:
        """Refuse hyper-parameters outside their range (``fit`` calls it first; library
        functions call it before loading any data). Messages name the command-line flag."""
        def bad(name: str, rule: str, value: Any) -> ParameterError:
            return ParameterError(f"{name} must be {rule}; got {value!r} ({FLAGS[name]}).")

        if self.model not in ALL_MODELS:
            raise bad("model", f"one of {', '.join(ALL_MODELS)}", self.model)
        if self.precision not in PRECISIONS:
            raise bad("precision", f"one of {', '.join(PRECISIONS)}", self.precision)
        for name, low in (("folds", 2), ("epochs", 1), ("seeds", 1), ("hidden", 1),
                          ("batch_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if (isinstance(value, bool) or not isinstance(value, (int, np.integer))
                    or value < low):
                raise bad(name, f"an integer >= {low}", value)
        if self.seed + self.seeds > MAX_SEED:
            raise bad("seed", f"an integer in [0, {MAX_SEED - self.seeds}] (with --seeds "
                      f"{self.seeds})", self.seed)
        checks = (("lr", "a finite number > 0", lambda v: v > 0),
                  ("weight_decay", "a finite number >= 0", lambda v: v >= 0),
                  ("valence_weight", "a finite number >= 0", lambda v: v >= 0),
                  ("C", "a finite number > 0", lambda v: v > 0),
                  ("dropout", "a number in [0, 1)", lambda v: 0 <= v < 1))
        for name, rule, ok in checks:
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                    or not math.isfinite(value) or not ok(value)):
                raise bad(name, rule, value)
        if not isinstance(self.device, str) or not DEVICE_PATTERN.fullmatch(self.device):
            raise bad("device", "cpu, cuda, cuda:N or auto", self.device)
        return self

    def _check_params(self, data: MultimodalData) -> None:
        self.validate_params()
        if self.model in SKLEARN_MODELS and data.input != "utterance":
            raise ParameterError(f"The scikit-learn model '{self.model}' takes utterance vectors; "
                                 "use --input utterance, or a neural model (attention, concat, "
                                 "fbp) for frames.")
        if self.model in NEURAL_MODELS:
            resolve_device(self.device)

    def _check_training_data(self, data: MultimodalData, train: np.ndarray, labelled: np.ndarray
                             ) -> None:
        """Refuse training clips no head can learn from, with what to do (before any work)."""
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
                f"'{EMOTIONS[classes[0]]}'; a classifier needs at least two classes. Check the "
                "labels (--manifest) and --train-split.")
        if len(train) < self.folds:
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
            self.notes_.append(f"{', '.join(constant)}: every feature has the same value in all "
                               "training clips (zero variance); the modality adds nothing")

    def _check_pseudo(self, data: MultimodalData, rows: np.ndarray | None,
                      labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        if rows is None:
            return np.zeros(0, np.int64), np.zeros((self.folds, 0), np.int64)
        rows = np.asarray(rows, np.int64)
        labels = np.asarray(labels, np.int64)
        if labels.shape != (self.folds, len(rows)):
            raise DataError(f"pseudo_labels must have shape (folds, pseudo clips) = "
                            f"({self.folds}, {len(rows)}); got {labels.shape}.")
        if labels.size and (labels.min() < -1 or labels.max() >= len(EMOTIONS)):
            raise DataError(f"pseudo_labels must be class indices in [0, {len(EMOTIONS)}) or -1.")
        if len(rows) and (rows.min() < 0 or rows.max() >= len(data)
                          or len(np.unique(rows)) != len(rows)):
            raise DataError("pseudo_rows must be distinct row indices of the data.")
        # A labelled clip given a pseudo-label could be a held-out clip of some fold.
        bad = rows[(data.labels[rows] >= 0) | ~data.present[rows].any(axis=1)]
        if len(bad):
            raise DataError(f"pseudo_rows must be unlabelled clips with a usable modality; "
                            f"'{data.names[bad[0]]}' is not ({len(bad)} such).")
        return rows, labels

    def _assign_folds(self, y_train: np.ndarray, given: np.ndarray | None) -> np.ndarray:
        if given is not None:
            given = np.asarray(given, np.int64)
            if given.min() < 0 or given.max() >= self.folds:
                raise DataError(f"fold_of must hold fold indices in [0, {self.folds}) for every "
                                "training clip.")
            return given
        fold, note = stratified_folds(y_train, self.folds, self.seed)
        if note:
            self.notes_.append(note)
        return fold

    # ------------------------------------------------------------------------------------
    def _fit_neural(self, data: MultimodalData, train_rows: list[np.ndarray],
                    val_rows: list[np.ndarray], fold_labels: np.ndarray | None = None
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        import torch

        from mer_heads.models import StackedHead
        from mer_heads.training import DeviceData, TrainConfig, train_stack

        device = resolve_device(self.device)
        self.device_ = str(device)
        self.precision_ = resolve_precision(self.precision, device)
        self.batch_size_ = self.batch_size or auto_batch_size(
            max(len(r) for r in train_rows), len(self.model_folds_) * sum(self._widths(data)))
        threads = threads_for(len(self.model_folds_), self.batch_size_, self._widths(data),
                              self.hidden)
        with torch_session(device, threads):
            tensors = DeviceData(data, self.standardizer_, device, _dtype(self.precision_),
                                 fold_labels)
            module = StackedHead(len(self.model_folds_), data.dims, model=self.model,
                                 input=data.input, hidden=self.hidden, dropout=self.dropout)
            config = TrainConfig(epochs=self.epochs, lr=self.lr, weight_decay=self.weight_decay,
                                 batch_size=self.batch_size_, valence_weight=self.valence_weight,
                                 compute_dtype="bfloat16" if self.precision_ == "bf16" else "float32")
            result = train_stack(module, tensors, self.model_folds_, train_rows, val_rows, config,
                                 seed=self.seed, has_valence=self.has_valence_)
        self.stack_ = module.to(torch.device("cpu"))
        never = int((result.best_epoch == 0).sum())
        if never:
            raise DataError(
                f"Training diverged: {never} of {len(self.model_folds_)} fold models gave "
                f"non-finite outputs from the first epoch on (lr={self.lr:g}, "
                f"valence_weight={self.valence_weight:g}). Lower --lr (default 0.001) or "
                "--valence-weight.")
        if result.diverged.any():
            self.notes_.append(
                f"training diverged (non-finite outputs) for {int(result.diverged.sum())} fold "
                f"model(s) after their best epoch, which was kept; a lower --lr (now "
                f"{self.lr:g}) would train them longer")
        self.best_epochs_ = result.best_epoch
        self.curve_ = result.curve
        return result.val_proba, result.val_valence

    @staticmethod
    def _widths(data: MultimodalData) -> list[int]:
        """Input elements per clip and modality (frames count once per frame)."""
        return [int(np.prod(x.shape[1:])) for x in data.features]

    def _fit_sklearn(self, data: MultimodalData, train_rows: list[np.ndarray],
                     val_rows: list[np.ndarray], fold_labels: np.ndarray | None = None
                     ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        self.device_, self.precision_, self.batch_size_ = "cpu", "fp64", 0
        labels = data.labels
        self.estimators_ = []
        val_proba, val_valence = [], []
        designs: dict[int, np.ndarray] = {}
        self._check_sklearn_folds(data, train_rows, fold_labels)
        from sklearn.exceptions import ConvergenceWarning

        unconverged = 0
        for f, (fold, seed) in enumerate(zip(self.model_folds_, self.model_seeds_)):
            if fold not in designs:
                designs = {fold: design_matrix(self.standardizer_.transform(data, fold),
                                               data.present)}
            Z = designs[fold]
            tr, va = train_rows[f], val_rows[f]
            y_fold = labels if fold_labels is None else fold_labels[fold]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                classifier = make_classifier(self.model, int(seed), self.C).fit(Z[tr], y_fold[tr])
                regressor = None
                if self.has_valence_:
                    with_v = tr[np.isfinite(data.valence[tr])]
                    regressor = make_regressor(self.model, self.C).fit(Z[with_v],
                                                                      data.valence[with_v])
            unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            self.estimators_.append((classifier, regressor))
            val_proba.append(full_proba(classifier, Z[va], len(EMOTIONS)))
            val_valence.append(valence_predictions(regressor, Z[va]))
        if unconverged:
            self.notes_.append(f"{self.model} did not converge for {unconverged} of "
                               f"{len(self.model_folds_)} fold models (scikit-learn's iteration "
                               "limit); a smaller -C (more regularisation) usually helps")
        self.best_epochs_ = np.zeros(len(self.model_folds_), np.int64)
        self.curve_ = np.zeros(0)
        return val_proba, val_valence

    def _check_sklearn_folds(self, data: MultimodalData, train_rows: list[np.ndarray],
                             fold_labels: np.ndarray | None) -> None:
        """What scikit-learn would refuse mid-run, refused before the first fold in our words:
        a fold whose training clips hold one class; for ``svm``, a class with fewer training
        clips in a fold than the 3 its probability calibration splits them into; a fold with
        no training valence when valence is learnt."""
        for f, fold in enumerate(self.model_folds_):
            tr = train_rows[f]
            y = (data.labels if fold_labels is None else fold_labels[fold])[tr]
            counts = np.bincount(y[y >= 0], minlength=len(EMOTIONS))
            if (counts > 0).sum() < 2:
                raise DataError(
                    f"The training clips of fold {fold} hold only the class "
                    f"'{EMOTIONS[int(counts.argmax())]}'; {self.model} needs two classes in "
                    "every fold. Add labelled clips of other classes or lower --folds.")
            if self.model == "svm":
                small = [c for c in range(len(EMOTIONS)) if 0 < counts[c] < SVM_CALIBRATION_FOLDS]
                if small:
                    c = small[0]
                    raise DataError(
                        f"--model svm calibrates its probabilities by {SVM_CALIBRATION_FOLDS}-fold "
                        "cross-validation inside each fold's training clips, so every class "
                        f"needs at least {SVM_CALIBRATION_FOLDS} of them; '{EMOTIONS[c]}' has "
                        f"{counts[c]} in fold {fold} (--folds {self.folds}). Add labelled clips "
                        "of that class, lower --folds, or use --model logreg.")
            if self.has_valence_ and not np.isfinite(data.valence[tr]).any():
                raise DataError(
                    f"No training clip of fold {fold} has a valence label, so {self.model} "
                    "cannot learn valence for it; add valence labels or lower --folds.")

    def _score(self, data: MultimodalData, train: np.ndarray, fold: np.ndarray,
               val_rows: list[np.ndarray], val_proba: list[np.ndarray],
               val_valence: list[np.ndarray]) -> None:
        labels, valence = data.labels, data.valence
        position = {row: i for i, row in enumerate(train)}
        self.oof_proba_ = np.zeros((len(train), len(EMOTIONS)))
        self.oof_valence_ = np.zeros(len(train))
        self.model_scores_: list[Scores] = []
        for rows, proba, val in zip(val_rows, val_proba, val_valence):
            at = np.array([position[r] for r in rows], np.int64)
            self.oof_proba_[at] += proba / self.seeds
            self.oof_valence_[at] += val / self.seeds
            self.model_scores_.append(score(
                labels[rows], proba.argmax(1), valence[rows] if self.has_valence_ else None, val))
        self.cv_scores_ = score(labels[train], self.oof_proba_.argmax(1),
                                valence[train] if self.has_valence_ else None, self.oof_valence_)

    # ------------------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "standardizer_"):
            raise NotFittedError("This CrossValidatedHead is not fitted yet; call fit() first "
                                 "or load a run directory.")

    def predict_proba(self, X: MultimodalData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Fold-ensemble predictions for every clip of ``X``.

        Returns class probabilities (n, 6), valence (n,) (NaN when the run learnt none) and a
        bool (n,) ``imputed``: clips with no usable modality get the training prior and mean
        valence instead of a model output.
        """
        self._check_fitted()
        data = X
        if data.keys != self.keys_ or data.dims != self.dims_ or data.input != self.input_:
            raise RunError(
                f"The run was fitted on {self.input_} features of modalities "
                f"{list(zip(self.keys_, self.dims_))}; got {data.input} features of "
                f"{list(zip(data.keys, data.dims))}. Pass the same stores, in the same order.")
        n = len(data)
        if n == 0:
            return np.zeros((0, len(EMOTIONS))), np.zeros(0), np.zeros(0, bool)
        if self.model in SKLEARN_MODELS:
            proba, valence = self._predict_sklearn(data)
        else:
            proba, valence = self._predict_neural(data)
        imputed = ~data.present.any(axis=1)
        proba[imputed] = self.prior_
        valence = valence if self.has_valence_ else np.full(n, np.nan)
        valence[imputed] = self.mean_valence_
        return proba, valence, imputed

    def predict(self, X: MultimodalData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Class names (n,) object array, valence (n,) and ``imputed`` (n,): see predict_proba."""
        proba, valence, imputed = self.predict_proba(X)
        return np.array(EMOTIONS, dtype=object)[proba.argmax(1)], valence, imputed

    def _predict_neural(self, data: MultimodalData) -> tuple[np.ndarray, np.ndarray]:
        probas, valences = [], []
        for _, _, proba, valence in self._stack_chunks(data, np.arange(len(data)), PREDICT_CHUNK):
            probas.append(proba.double().mean(0).cpu().numpy())
            valences.append(valence.double().mean(0).cpu().numpy())
        return np.concatenate(probas), np.concatenate(valences)

    @contextmanager
    def stack_on_device(self, data: MultimodalData, batch: int) -> Iterator[tuple]:
        """The fitted stack on its device in the run's compute dtype, inside a torch session
        with the threads for ``batch`` clips of ``data`` per model: yields (module, device,
        dtype). The stack is back on the CPU afterwards, also after an error."""
        import torch

        self._check_fitted()
        device = resolve_device(self.device)
        dtype = _dtype(self.precision_)
        module = self.stack_.to(device)
        module.set_compute_dtype(dtype)
        threads = threads_for(len(self.model_folds_), batch, self._widths(data), self.hidden)
        try:
            with torch_session(device, threads):
                yield module, device, dtype
        finally:
            self.stack_ = module.to(torch.device("cpu"))

    def _stack_chunks(self, data: MultimodalData, rows: np.ndarray, chunk: int) -> Iterator[tuple]:
        """Every stacked model's predictions for the clips of ``data`` at ``rows``, in chunks of
        ``chunk`` clips (the device copy holds every fold's standardisation of a chunk): yields
        (start, clips, proba (F, n, C), valence (F, n)) tensors per chunk."""
        import torch

        from mer_heads.training import DeviceData, predict_rows

        with self.stack_on_device(data, min(len(rows), 512)) as (module, device, dtype):
            folds = torch.from_numpy(self.model_folds_).to(device)
            for start in range(0, len(rows), chunk):
                part = data.subset(rows[start:start + chunk])
                tensors = DeviceData(part, self.standardizer_, device, dtype)
                index = torch.arange(len(part), device=device).expand(len(folds), -1)
                proba, valence = predict_rows(module, tensors, folds, index)
                del tensors
                yield start, len(part), proba, valence

    def predict_fold_proba(self, X: MultimodalData, rows: np.ndarray | None = None,
                           chunk: int = PREDICT_CHUNK) -> np.ndarray:
        """Class probabilities of each fold's models (the mean over its seeds) for the clips of
        ``X`` at ``rows`` (default all), shape (K, n, 6). Computed in chunks of ``chunk``
        clips: memory grows with the chunk, not with n (beyond the result). Clips need a
        usable modality."""
        self._check_fitted()
        rows = np.arange(len(X)) if rows is None else np.asarray(rows, np.int64)
        if X.keys != self.keys_ or X.dims != self.dims_ or X.input != self.input_:
            raise RunError(f"predict_fold_proba needs the modalities the run was fitted on "
                           f"({list(zip(self.keys_, self.dims_))}, {self.input_}).")
        k = self.folds
        out = np.zeros((k, len(rows), len(EMOTIONS)))
        if self.model in SKLEARN_MODELS:
            for start in range(0, len(rows), chunk):
                part = X.subset(rows[start:start + chunk])
                for fold, (classifier, _) in zip(self.model_folds_, self.estimators_):
                    design = design_matrix(self.standardizer_.transform(part, fold), part.present)
                    out[fold, start:start + len(part)] += full_proba(classifier, design,
                                                                     len(EMOTIONS))
            return out / self.seeds
        import torch

        fold_index = torch.from_numpy(self.model_folds_)
        for start, n, proba, _ in self._stack_chunks(X, rows, chunk):
            summed = torch.zeros((k, n, len(EMOTIONS)), dtype=torch.float64)
            summed.index_add_(0, fold_index, proba.double().cpu())
            out[:, start:start + n] = summed.numpy() / self.seeds
        return out

    def _predict_sklearn(self, data: MultimodalData) -> tuple[np.ndarray, np.ndarray]:
        proba = np.zeros((len(data), len(EMOTIONS)))
        valence = np.zeros(len(data))
        designs: dict[int, np.ndarray] = {}
        for fold, (classifier, regressor) in zip(self.model_folds_, self.estimators_):
            if fold not in designs:
                designs = {fold: design_matrix(self.standardizer_.transform(data, fold),
                                               data.present)}
            proba += full_proba(classifier, designs[fold], len(EMOTIONS))
            valence += valence_predictions(regressor, designs[fold])
        return proba / len(self.estimators_), valence / len(self.estimators_)


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


def shared_folds(data: MultimodalData, params: dict, nothing: str) -> np.ndarray:
    """One fold assignment (n,) for every modality set fitted on ``data`` (ablations,
    robustness sweeps): stratified folds over the labelled clips with a usable modality, -1
    elsewhere, from ``params``' folds and seed. ``nothing`` ends the error raised when there is
    no such clip (what to check)."""
    labels = data.labels
    usable = (labels >= 0) & data.present.any(axis=1)
    if not usable.any():
        raise DataError(f"No labelled clip with a usable modality: {nothing}")
    fold_of = np.full(len(data), -1, np.int64)
    fold_of[usable], _ = stratified_folds(labels[usable], int(params.get("folds", 5)),
                                          int(params.get("seed", 0)))
    return fold_of


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


def _dtype(precision: str):
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32


def resolve_device(device: str):
    """The torch device of ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; a GPU that torch does not
    see is refused with :class:`ParameterError`."""
    import torch

    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise ParameterError(f"device must be cpu, cuda, cuda:N or auto; got {device!r} "
                             "(--device).")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"device '{device}' was asked for but torch sees no GPU "
                                 "(--device); use --device cpu (or auto).")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ParameterError(f"device '{device}' does not exist: torch sees {count} GPU(s), "
                                 f"cuda:0 to cuda:{count - 1} (--device).")
    return resolved


def native_bf16(device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products natively (fast, not emulated)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device) -> str:
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


SMALL_STEP_MACS = 1 << 24
"""Below this many multiply-adds per training step, torch runs on one thread: tiny products
gain nothing from a second thread, and on a busy machine its barrier waits cost more than the
product itself (measured 6x slower on 2 shared cores)."""


STEPS_PER_EPOCH = 4


def auto_batch_size(n_train: int, elements_per_clip: int = 0) -> int:
    """Clips per step giving STEPS_PER_EPOCH steps per epoch, within [32, 1024], and fewer when
    a step's inputs (``elements_per_clip`` over all stacked models) would pass STEP_ELEMENTS."""
    from mer_heads.training import STEP_ELEMENTS

    size = min(1024, max(32, -(-n_train // STEPS_PER_EPOCH)))
    if elements_per_clip:
        size = min(size, max(1, STEP_ELEMENTS // elements_per_clip))
    return int(size)


def threads_for(n_models: int, batch_size: int, dims: list[int], hidden: int) -> int | None:
    """1 for small stacks, else None (torch's default)."""
    macs = n_models * batch_size * sum(dims) * 2 * hidden
    return 1 if macs < SMALL_STEP_MACS else None


class torch_session:
    """Deterministic kernels and a thread count inside the block; the global settings are
    restored after, so a library call leaves torch as it found it.

    On a CPU every kernel the heads use is deterministic already; asking torch to enforce it
    costs a 2-second import of its compiler stack, so that is only done for GPUs, where
    cuBLAS also needs a fixed workspace.
    """

    def __init__(self, device, threads: int | None = None):
        self.cuda = device.type == "cuda"
        self.threads = None if self.cuda else threads

    def __enter__(self) -> None:
        import torch

        self._threads = torch.get_num_threads()
        if self.cuda:
            self._deterministic = torch.are_deterministic_algorithms_enabled()
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        if self.threads:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.cuda:
            torch.use_deterministic_algorithms(self._deterministic)
        torch.set_num_threads(self._threads)


__all__ = ["ALL_MODELS", "CrossValidatedHead", "NEURAL_MODELS", "PRECISIONS", "resolve_device",
           "resolve_precision", "shared_folds", "stratified_folds"]
