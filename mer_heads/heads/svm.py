"""``svm``: an RBF support vector classifier with Platt-calibrated probabilities, and SVR.

The fold ensemble averages probabilities, as for the neural heads, so the classifier's scores
are calibrated by sigmoid fits on SVM_CALIBRATION_FOLDS unshuffled (hence deterministic) splits
of each fold's training clips.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mer_heads.errors import DataError
from mer_heads.heads.registry import register_head
from mer_heads.heads.sklearn import SklearnHead

if TYPE_CHECKING:
    import numpy as np

SVM_CALIBRATION_FOLDS = 3
"""``svm``'s probabilities are Platt-calibrated by this many folds inside each fold's training
clips: every class needs at least this many of them."""


@register_head
class SvmHead(SklearnHead):
    name = "svm"

    def classifier(self, seed: int, C: float):
        from sklearn.calibration import CalibratedClassifierCV
        from sklearn.svm import SVC

        return CalibratedClassifierCV(SVC(C=C, kernel="rbf", gamma="scale", random_state=seed),
                                      method="sigmoid", cv=SVM_CALIBRATION_FOLDS, ensemble=False)

    def regressor(self, C: float):
        from sklearn.svm import SVR

        return SVR(C=C, kernel="rbf", gamma="scale")

    def check_fold(self, config, fold: int, counts: np.ndarray, classes: tuple[str, ...]) -> None:
        small = [c for c in range(len(classes)) if 0 < counts[c] < SVM_CALIBRATION_FOLDS]
        if small:
            c = small[0]
            raise DataError(
                f"--model svm calibrates its probabilities by {SVM_CALIBRATION_FOLDS}-fold "
                "cross-validation inside each fold's training clips, so every class needs at "
                f"least {SVM_CALIBRATION_FOLDS} of them; '{classes[c]}' has {counts[c]} in "
                f"fold {fold} (--folds {config.folds}). Add labelled clips of that class, lower "
                "--folds, or use --model logreg.")
