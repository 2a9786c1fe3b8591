"""``logreg``: logistic regression for the classes, ridge regression for valence.

Features often outnumber clips, so the ridge penalty is chosen by efficient leave-one-out
among a log-spaced grid scaled by 1/C.
"""

from __future__ import annotations

from mer_heads.heads.registry import register_head
from mer_heads.heads.sklearn import SklearnHead


@register_head
class LogRegHead(SklearnHead):
    name = "logreg"

    def classifier(self, seed: int, C: float):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=2000, random_state=seed)

    def regressor(self, C: float):
        import numpy as np
        from sklearn.linear_model import RidgeCV

        return RidgeCV(alphas=np.logspace(-1, 5, 13) / C)
