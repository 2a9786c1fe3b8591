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
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from mer_features import EMOTIONS
from mer_heads.errors import DataError
from mer_heads.heads.registry import SKLEARN, Head

if TYPE_CHECKING:
    import numpy as np

    from mer_heads.config import HeadConfig
    from mer_heads.data.dataset import MultimodalData
    from mer_heads.protocol import CrossValidatedHead

Predict = Callable[..., tuple[Any, Any]]


def design_matrix(standardised: list[np.ndarray], present: np.ndarray) -> np.ndarray:
    """(n, sum(d_m) + M) float64 from M standardised arrays (n, d_m) and presence (n, M)."""
    import numpy as np

    return np.concatenate([*standardised, present.astype(np.float32)], axis=1).astype(np.float64)


def fold_designs(est: CrossValidatedHead, data: MultimodalData
                 ) -> Iterator[tuple[int, np.ndarray]]:
    """(fold, design matrix of ``data`` standardised with that fold's statistics) for each of
    ``est``'s models in order; models of one fold follow each other and share one matrix."""
    last, design = None, None
    for fold in est.model_folds_:
        if fold != last:
            last, design = fold, design_matrix(est.standardizer_.transform(data, fold),
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

    def classifier(self, seed: int, C: float):
        raise NotImplementedError

    def regressor(self, C: float):
        raise NotImplementedError

    def check_fold(self, est: CrossValidatedHead, fold: int, counts: np.ndarray) -> None:
        """Refuse a fold whose training clips (``counts``: (6,) per class) the estimator
        cannot learn from, before the first fold is fitted (default: accept)."""

    # ------------------------------------------------------------------------------------
    def check_runtime(self, config: HeadConfig) -> None:
        """Nothing to check: scikit-learn runs on the CPU."""

    def fit(self, est: CrossValidatedHead, data: MultimodalData, train_rows: list[np.ndarray],
            val_rows: list[np.ndarray], fold_labels: np.ndarray | None
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Fit one classifier (and regressor, with valence) per model of ``est``. Sets
        ``estimators_``, ``best_epochs_`` (zeros) and ``curve_`` (empty); returns each model's
        held-out class probabilities and valence."""
        import numpy as np
        from sklearn.exceptions import ConvergenceWarning

        est.device_, est.precision_, est.batch_size_ = "cpu", "fp64", 0
        self._check_folds(est, data, train_rows, fold_labels)
        labels = data.labels
        est.estimators_ = []
        val_proba, val_valence = [], []
        unconverged = 0
        for f, (seed, (fold, Z)) in enumerate(zip(est.model_seeds_, fold_designs(est, data))):
            tr, va = train_rows[f], val_rows[f]
            y_fold = labels if fold_labels is None else fold_labels[fold]
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ConvergenceWarning)
                classifier = self.classifier(int(seed), est.C).fit(Z[tr], y_fold[tr])
                regressor = None
                if est.has_valence_:
                    with_v = tr[np.isfinite(data.valence[tr])]
                    regressor = self.regressor(est.C).fit(Z[with_v], data.valence[with_v])
            unconverged += any(issubclass(w.category, ConvergenceWarning) for w in caught)
            est.estimators_.append((classifier, regressor))
            val_proba.append(full_proba(classifier, Z[va], len(EMOTIONS)))
            val_valence.append(valence_predictions(regressor, Z[va]))
        if unconverged:
            est.notes_.append(f"{est.model} did not converge for {unconverged} of "
                              f"{len(est.model_folds_)} fold models (scikit-learn's iteration "
                              "limit); a smaller -C (more regularisation) usually helps")
        est.best_epochs_ = np.zeros(len(est.model_folds_), np.int64)
        est.curve_ = np.zeros(0)
        return val_proba, val_valence

    def _check_folds(self, est: CrossValidatedHead, data: MultimodalData,
                     train_rows: list[np.ndarray], fold_labels: np.ndarray | None) -> None:
        """What scikit-learn would refuse mid-run, refused before the first fold in our words:
        a fold whose training clips hold one class, what the head's ``check_fold`` refuses,
        a fold with no training valence when valence is learnt."""
        import numpy as np

        for f, fold in enumerate(est.model_folds_):
            tr = train_rows[f]
            y = (data.labels if fold_labels is None else fold_labels[fold])[tr]
            counts = np.bincount(y[y >= 0], minlength=len(EMOTIONS))
            if (counts > 0).sum() < 2:
                raise DataError(
                    f"The training clips of fold {fold} hold only the class "
                    f"'{EMOTIONS[int(counts.argmax())]}'; {est.model} needs two classes in "
                    "every fold. Add labelled clips of other classes or lower --folds.")
            self.check_fold(est, fold, counts)
            if est.has_valence_ and not np.isfinite(data.valence[tr]).any():
                raise DataError(
                    f"No training clip of fold {fold} has a valence label, so {est.model} "
                    "cannot learn valence for it; add valence labels or lower --folds.")

    @contextmanager
    def predictor(self, est: CrossValidatedHead, data: MultimodalData, batch: int
                  ) -> Iterator[Predict]:
        """Yields ``predict(part, rows=None, *, mean=False, valence=True)`` with the contract
        of :meth:`NeuralHead.predictor <mer_heads.heads.neural.NeuralHead.predictor>`
        (``batch`` is unused; ``valence=False`` skips the regressors)."""
        def predict(part: MultimodalData, rows: list[np.ndarray] | None = None, *,
                    mean: bool = False, valence: bool = True) -> tuple[Any, Any]:
            probas, valences = [], []
            for f, (_, Z) in enumerate(fold_designs(est, part)):
                classifier, regressor = est.estimators_[f]
                X = Z if rows is None else Z[rows[f]]
                probas.append(full_proba(classifier, X, len(EMOTIONS)))
                valences.append(valence_predictions(regressor, X) if valence else None)
            if mean:
                return _mean(probas), _mean(valences) if valence else None
            return probas, valences

        yield predict

    def save(self, est: CrossValidatedHead, run_dir: Path) -> None:
        """The (classifier, regressor) pairs (joblib) in ``run_dir``."""
        import joblib

        from mer_heads.outputs import atomic_write

        with atomic_write(run_dir / self.model_file, "wb") as f:
            joblib.dump(est.estimators_, f)

    def load(self, est: CrossValidatedHead, run_dir: Path) -> None:
        """Read ``est.estimators_`` from ``run_dir`` (the other fitted attributes are set)."""
        import joblib

        est.estimators_ = joblib.load(run_dir / self.model_file)
        n_models = len(est.model_folds_)
        if not isinstance(est.estimators_, list) or len(est.estimators_) != n_models:
            raise ValueError(f"{self.model_file} does not hold the run's {n_models} models")


__all__ = ["SklearnHead", "design_matrix", "fold_designs", "full_proba", "valence_predictions"]
