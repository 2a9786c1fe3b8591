"""scikit-learn baselines: ``logreg`` and ``svm`` on concatenated standardised features.

The design matrix is every modality's standardised features (zeros where a modality is absent)
followed by one presence indicator per modality, the same input as the ``concat`` head, so the
linear baselines can learn an offset for a missing modality instead of reading zeros as data.
Valence is regressed by the matching regressor (ridge with its penalty chosen by
leave-one-out for ``logreg``, SVR for ``svm``).
Fitted estimators are persisted with joblib.
"""

from __future__ import annotations

import numpy as np

from mer_heads.metrics import VALENCE_RANGE

SKLEARN_MODELS = ("logreg", "svm")
SVM_CALIBRATION_FOLDS = 3
"""``svm``'s probabilities are Platt-calibrated by this many folds inside each fold's training
clips: every class needs at least this many of them."""


def design_matrix(standardised: list[np.ndarray], present: np.ndarray) -> np.ndarray:
    """(n, sum(d_m) + M) float64 from M standardised arrays (n, d_m) and presence (n, M)."""
    return np.concatenate([*standardised, present.astype(np.float32)], axis=1).astype(np.float64)


def make_classifier(kind: str, seed: int, C: float):
    """An unfitted classifier with ``predict_proba``."""
    if kind == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=2000, random_state=seed)
    if kind == "svm":
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        # Platt-calibrated probabilities: the fold ensemble averages probabilities, as for the
        # neural heads (the internal 3-fold split is unshuffled, hence deterministic).
        return CalibratedClassifierCV(SVC(C=C, kernel="rbf", gamma="scale", random_state=seed),
                                      method="sigmoid", cv=SVM_CALIBRATION_FOLDS, ensemble=False)
    raise ValueError(f"unknown sklearn model '{kind}'; known: {', '.join(SKLEARN_MODELS)}")


def make_regressor(kind: str, C: float):
    """An unfitted valence regressor."""
    if kind == "logreg":
        from sklearn.linear_model import RidgeCV

        # Features often outnumber clips: the penalty is chosen by efficient leave-one-out.
        return RidgeCV(alphas=np.logspace(-1, 5, 13) / C)
    if kind == "svm":
        from sklearn.svm import SVR

        return SVR(C=C, kernel="rbf", gamma="scale")
    raise ValueError(f"unknown sklearn model '{kind}'; known: {', '.join(SKLEARN_MODELS)}")


def full_proba(classifier, X: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all ``n_classes`` (n, C), zero for classes the fold never saw."""
    out = np.zeros((len(X), n_classes))
    out[:, classifier.classes_.astype(np.int64)] = classifier.predict_proba(X)
    return out


def valence_predictions(regressor, X: np.ndarray) -> np.ndarray:
    """Valence (n,) clipped to the MER 2023 scale; zeros when no regressor was fitted (a run
    without valence labels)."""
    if regressor is None:
        return np.zeros(len(X))
    return np.clip(regressor.predict(X), *VALENCE_RANGE)
