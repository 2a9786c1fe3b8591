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

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator

from mer_features import EMOTIONS
from mer_heads.data import MultimodalData
from mer_heads.errors import DataError, NotFittedError, RunError
from mer_heads.metrics import Scores, score
from mer_heads.sklearn_models import (SKLEARN_MODELS, design_matrix, full_proba, make_classifier,
                                      make_regressor, valence_predictions)
from mer_heads.standardize import Standardizer, fit_standardizer

NEURAL_MODELS = ("attention", "concat", "fbp")
ALL_MODELS = NEURAL_MODELS + SKLEARN_MODELS
PRECISIONS = ("auto", "fp32", "bf16")
PREDICT_CHUNK = 4096
_SHOWN = 5


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
        self.dropped_ = [data.names[i] for i in np.flatnonzero(dropped)]
        if self.dropped_:
            self.notes_.append(f"{len(self.dropped_)} labelled clip(s) have no usable modality "
                               "and were left out of training")
        y_train = labels[train]
        classes = np.unique(y_train)
        if len(classes) < 2:
            what = EMOTIONS[classes[0]] if len(classes) else "none"
            raise DataError(
                f"All {len(train)} labelled training clips have the class '{what}'; a classifier "
                "needs at least two classes. Check the labels (--manifest) and --train-split.")
        if len(train) < self.folds:
            raise DataError(f"{len(train)} labelled training clips cannot be split into "
                            f"{self.folds} folds; lower --folds or add labelled clips.")
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

    def _check_params(self, data: MultimodalData) -> None:
        if self.model not in ALL_MODELS:
            raise DataError(f"model must be one of {', '.join(ALL_MODELS)}; got '{self.model}'.")
        if self.precision not in PRECISIONS:
            raise DataError(f"precision must be one of {', '.join(PRECISIONS)}; got "
                            f"'{self.precision}'.")
        for name, low in (("folds", 2), ("epochs", 1), ("seeds", 1), ("hidden", 1),
                          ("batch_size", 1)):
            value = getattr(self, name)
            if name == "batch_size" and value is None:
                continue
            if not isinstance(value, (int, np.integer)) or value < low:
                raise DataError(f"{name} must be an integer >= {low}; got {value!r}.")
        if not 0.0 <= self.dropout < 1.0:
            raise DataError(f"dropout must be in [0, 1); got {self.dropout}.")
        if not self.lr > 0:
            raise DataError(f"lr must be positive; got {self.lr}.")
        if self.model in SKLEARN_MODELS and data.input != "utterance":
            raise DataError(f"The scikit-learn model '{self.model}' takes utterance vectors; "
                            "use --input utterance, or a neural model (attention, concat, fbp) "
                            "for frames.")

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
        for f, (fold, seed) in enumerate(zip(self.model_folds_, self.model_seeds_)):
            if fold not in designs:
                designs = {fold: design_matrix(self.standardizer_.transform(data, fold),
                                               data.present)}
            Z = designs[fold]
            tr, va = train_rows[f], val_rows[f]
            y_fold = labels if fold_labels is None else fold_labels[fold]
            classifier = make_classifier(self.model, int(seed), self.C).fit(Z[tr], y_fold[tr])
            regressor = None
            if self.has_valence_:
                with_v = tr[np.isfinite(data.valence[tr])]
                regressor = make_regressor(self.model, self.C).fit(Z[with_v], data.valence[with_v])
            self.estimators_.append((classifier, regressor))
            val_proba.append(full_proba(classifier, Z[va], len(EMOTIONS)))
            val_valence.append(valence_predictions(regressor, Z[va]))
        self.best_epochs_ = np.zeros(len(self.model_folds_), np.int64)
        self.curve_ = np.zeros(0)
        return val_proba, val_valence

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


def stratified_folds(labels: np.ndarray, n_folds: int, seed: int) -> tuple[np.ndarray, str]:
    """Fold index (n,) of each clip from stratified K folds drawn with ``seed``, and a note
    when some class has fewer clips than folds (some held-out folds then lack it)."""
    from sklearn.model_selection import StratifiedKFold

    fold = np.empty(len(labels), np.int64)
    splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reported below in our own words
        for j, (_, held_out) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
            fold[held_out] = j
    counts = np.bincount(labels, minlength=len(EMOTIONS))
    rare = [f"{EMOTIONS[c]} ({counts[c]})" for c in range(len(EMOTIONS)) if 0 < counts[c] < n_folds]
    note = (f"classes with fewer clips than folds, so some held-out folds lack them: "
            f"{', '.join(rare)}") if rare else ""
    return fold, note


def _dtype(precision: str):
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32


def resolve_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as e:
        raise DataError(f"Unknown device '{device}'; use cpu, cuda, cuda:N or auto.") from e
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise DataError(f"Device '{device}' was asked for but torch sees no GPU; use --device cpu.")
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
