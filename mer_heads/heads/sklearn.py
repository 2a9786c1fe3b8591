"""The scikit-learn family: one classifier (and valence regressor) per fold and seed.

The design matrix is every modality's standardised features (zeros where a modality is absent)
followed by one presence indicator per modality, the same input as the ``concat`` head, so the
linear baselines can learn an offset for a missing modality instead of reading zeros as data.
Fitted estimators are persisted with joblib.

:class:`SklearnHead` holds what the family shares (the per-fold design matrices, fitting,
predicting, the run directory's file); a head (``logreg.py``, ``svm.py``) says which estimators
to make, and may refuse fold contents its estimator cannot learn from (``check_fold``).
scikit-learn (and numpy) are imported inside the functions, so declaring a head is free.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from mer_heads.errors import DataError
from mer_heads.heads.registry import SKLEARN, Head
from mer_heads.progress import step
from mer_heads.state import TrainedModels

if TYPE_CHECKING:
    import numpy as np

    from mer_heads.config import HeadConfig
    from mer_heads.data.dataset import MultimodalData
    from mer_heads.state import FittedState

Predict = Callable[..., tuple[Any, Any]]


def design_matrix(standardised: list[np.ndarray], present: np.ndarray) -> np.ndarray:
    """(n, sum(d_m) + M) float64 from M standardised arrays (n, d_m) and presence (n, M)."""
    import numpy as np

    return np.concatenate([*standardised, present.astype(np.float32)], axis=1).astype(np.float64)


def fold_designs(state: FittedState, data: MultimodalData) -> Iterator[tuple[int, np.ndarray]]:
    """(fold, design matrix of ``data`` standardised with that fold's statistics) for each of
    the state's models in order; models of one fold follow each other and share one matrix."""
    last, design = None, None
    for fold in state.model_folds:
        if fold != last:
            last, design = fold, design_matrix(state.standardizer.transform(data, fold),
                                               data.present)
        yield fold, design


def full_proba(classifier, X: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all ``n_classes`` (n, C), zero for classes the fold never saw."""
    import numpy as np

    out = np.zeros((len(X), n_classes))
    out[:, classifier.classes_.astype(np.int64)] = classifier.predict_proba(X)
    return out


def valence_predictions(regressor, X: np.ndarray) -> np.ndarray:
    """Valence (n,) clipped to the MER 2023 scale; zeros when no regressor was fitted (a run
    without valence labels)."""
    import numpy as np

    from mer_heads.metrics import VALENCE_RANGE

    if regressor is None:
        return np.zeros(len(X))
    return np.clip(regressor.predict(X), *VALENCE_RANGE)


def target_predictions(regressors, X: np.ndarray, targets: tuple[str, ...]) -> np.ndarray:
    """The continuous outputs (n, T) of one model's regressors (one per target, None where a
    target was not learnt: zeros), valence clipped to the MER 2023 scale; (n, 1) zeros
    without targets. A model of a run with valence alone keeps its one regressor as it is
    (not in a tuple), as runs before ``--targets`` did."""
    import numpy as np

    from mer_heads.metrics import VALENCE_RANGE

    if not isinstance(regressors, tuple):
        return valence_predictions(regressors, X)[:, None]
    out = np.zeros((len(X), max(1, len(targets))))
    for t, (name, regressor) in enumerate(zip(targets, regressors)):
        if regressor is not None:
            value = regressor.predict(X)
            out[:, t] = np.clip(value, *VALENCE_RANGE) if name == "valence" else value
    return out


def _mean(arrays: list[np.ndarray]) -> np.ndarray:
    import numpy as np

    total = np.zeros_like(arrays[0])
    for a in arrays:
        total += a
    return total / len(arrays)


class SklearnHead(Head):
    """Base of the scikit-learn heads: ``classifier(seed, C)`` (with ``predict_proba``) and
    ``regressor(C)`` make the unfitted estimators of one fold model."""

    family: ClassVar[str] = SKLEARN
    kind: ClassVar[str] = "scikit-learn"
    inputs: ClassVar[tuple[str, ...]] = ("utterance",)
    params: ClassVar[tuple[str, ...]] = ("C",)
    model_file: ClassVar[str] = "models/sklearn.joblib"
    models_attribute: ClassVar[str] = "estimators_"

    def classifier(self, seed: int, C: float):
        raise NotImplementedError

    def regressor(self, C: float):
        raise NotImplementedError

    def check_fold(self, config: HeadConfig, fold: int, counts: np.ndarray,
                   classes: tuple[str, ...]) -> None:
        """Refuse a fold whose training clips (``counts``: (K,) per class of ``classes``) the
        estimator cannot learn from, before the first fold is fitted (default: accept)."""

    # ------------------------------------------------------------------------------------
    def check_runtime(self, config: HeadConfig) -> None:
        """Nothing to check: scikit-learn runs on the CPU."""

    def fit(self, config: HeadConfig, state: FittedState, data: MultimodalData,
            train_rows: list[np.ndarray], val_rows: list[np.ndarray],
            fold_labels: np.ndarray | None) -> TrainedModels:
        """Fit one classifier (and regressor, with valence) per model of the state."""
        import numpy as np
        from sklearn.exceptions import ConvergenceWarning

        self._check_folds(config, state, data, train_rows, fold_labels)
        labels = data.labels
        n_classes = len(state.classes)
        values = {t: data.target(t) for t, on in zip(state.targets, state.learnt) if on}
        single = state.targets == ("valence",)  # as runs before --targets: one regressor
        estimators = []
        val_proba, val_valence = [], []
        unconverged = 0
        for f, (seed, (fold, Z)) in enumerate(zip(state.model_seeds, fold_designs(state, data))):
            tr, va = train_rows[f], val_rows[f]
            y_fold = labels if fold_labels is None else fold_labels[fold]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                classifier = self.classifier(int(seed), config.C).fit(Z[tr], y_fold[tr])
                regressors = []
                for target in state.targets:
                    regressor = None
                    if target in values:
                        with_v = tr[np.isfinite(values[target][tr])]
                        regressor = self.regressor(config.C).fit(Z[with_v],
                                                                 values[target][with_v])
                    regressors.append(regressor)
                regressor = regressors[0] if single else tuple(regressors)
            unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            estimators.append((classifier, regressor))
            val_proba.append(full_proba(classifier, Z[va], n_classes))
            val_valence.append(target_predictions(regressor, Z[va], state.targets))
            step(f + 1, state.n_models, "fold model")
        notes = []
        if unconverged:
            notes.append(f"{config.model} did not converge for {unconverged} of "
                         f"{state.n_models} fold models (scikit-learn's iteration "
                         "limit); a smaller -C (more regularisation) usually helps")
        return TrainedModels(estimators, "fp64", "cpu", 0, np.zeros(state.n_models, np.int64),
                             np.zeros(0), val_proba, val_valence, notes)

    def _check_folds(self, config: HeadConfig, state: FittedState, data: MultimodalData,
                     train_rows: list[np.ndarray], fold_labels: np.ndarray | None) -> None:
        """What scikit-learn would refuse mid-run, refused before the first fold in our words:
        a fold whose training clips hold one class, what the head's ``check_fold`` refuses,
        a fold with no training valence when valence is learnt."""
        import numpy as np

        values = {t: data.target(t) for t, on in zip(state.targets, state.learnt) if on}
        for f, fold in enumerate(state.model_folds):
            tr = train_rows[f]
            y = (data.labels if fold_labels is None else fold_labels[fold])[tr]
            counts = np.bincount(y[y >= 0], minlength=len(state.classes))
            if (counts > 0).sum() < 2:
                raise DataError(
                    f"The training clips of fold {fold} hold only the class "
                    f"'{state.classes[int(counts.argmax())]}'; {config.model} needs two classes "
                    "in every fold. Add labelled clips of other classes or lower --folds.")
            self.check_fold(config, fold, counts, state.classes)
            for target, value in values.items():
                if not np.isfinite(value[tr]).any():
                    raise DataError(
                        f"No training clip of fold {fold} has a {target} label, so "
                        f"{config.model} cannot learn {target} for it; add {target} labels or "
                        "lower --folds.")

    @contextmanager
    def predictor(self, config: HeadConfig, state: FittedState, data: MultimodalData,
                  batch: int) -> Iterator[Predict]:
        """Yields ``predict(part, rows=None, *, mean=False, valence=True)`` with the contract
        of :meth:`NeuralHead.predictor <mer_heads.heads.neural.NeuralHead.predictor>`
        (``batch`` is unused; ``valence=False`` skips the regressors)."""
        def predict(part: MultimodalData, rows: list[np.ndarray] | None = None, *,
                    mean: bool = False, valence: bool = True) -> tuple[Any, Any]:
            probas, valences = [], []
            for f, (_, Z) in enumerate(fold_designs(state, part)):
                classifier, regressor = state.models[f]
                X = Z if rows is None else Z[rows[f]]
                probas.append(full_proba(classifier, X, len(state.classes)))
                valences.append(target_predictions(regressor, X, state.targets)
                                if valence else None)
            if mean:
                return _mean(probas), _mean(valences) if valence else None
            return probas, valences

        yield predict

    def write_models(self, models, file: BinaryIO) -> None:
        """The (classifier, regressor) pairs (joblib) into ``file``."""
        import joblib

        joblib.dump(models, file)

    def read_models(self, file: BinaryIO, config: HeadConfig, state: FittedState):
        """The (classifier, regressor) pairs ``write_models`` wrote to ``file``, one per model
        of ``state``."""
        import joblib

        models = joblib.load(file)
        if not isinstance(models, list) or len(models) != state.n_models:
            raise ValueError(f"{self.model_file} does not hold the run's {state.n_models} models")
        return models


__all__ = ["SklearnHead", "design_matrix", "fold_designs", "full_proba", "target_predictions",
           "valence_predictions"]
