"""What a fitted head is: :class:`FittedState` (everything its predictions need, and what a run
directory keeps) and :class:`TrainedModels` (what a head family returns from training).

:class:`~mer_heads.protocol.CrossValidatedHead` builds the state in ``fit`` and is the only one
to set its fitted attributes from it; :mod:`mer_heads.rundir` writes it into a run directory
and reads it back, in one place; the head families (:mod:`mer_heads.heads`) train and predict
with it and never change it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mer_features import EMOTIONS

if TYPE_CHECKING:
    import numpy as np

    from mer_heads.data.standardize import Standardizer


@dataclass
class FittedState:
    """A fitted head's state (F = folds x seeds models, M modalities).

    keys, dims, input : the modalities (names, widths) and input kind it was fitted on.
    layers : per modality, the layers L whose weights are learned (``--layers learned``; 1:
        none).
    normalized_by : the column the features were normalised within, or None; data to predict
        must be normalised the same way.
    has_valence : whether valence was learnt. prior : (K,) training class frequencies.
    mean_valence : training mean valence (NaN without valence).
    classes : the label set, in the order of the K probability columns (MER 2023's six for
        runs made before label sets).
    targets : the continuous targets the models output, in order (T; ``valence`` by default,
        empty for the classes alone: the models then keep one unused output).
    target_means : (T,) training mean of each target, NaN for a target without training values
        (not learnt; predicted as NaN).
    model_folds, model_seeds : (F,) the fold and seed of each model.
    standardizer : per-fold statistics (:class:`~mer_heads.data.standardize.Standardizer`).
    precision : the compute precision the models were trained in (``fp32``, ``bf16``;
        ``fp64`` for scikit-learn).
    temperatures : (K,) the fold temperatures of ``--calibrate temperature`` (each fold's
        probabilities are softmax(log p / T) before the fold ensemble's mean), or None.
    models : the family's fitted models: a :class:`~mer_heads.heads.stack.StackedHead`
        (neural) or F (classifier, regressor or None) pairs (scikit-learn); None until trained.
    """

    keys: list[str]
    dims: list[int]
    input: str
    layers: list[int]
    normalized_by: str | None
    has_valence: bool
    prior: np.ndarray
    mean_valence: float
    model_folds: np.ndarray
    model_seeds: np.ndarray
    standardizer: Standardizer
    precision: str = ""
    models: Any = None
    classes: tuple[str, ...] = tuple(EMOTIONS)
    targets: tuple[str, ...] = ("valence",)
    target_means: Any = None
    temperatures: Any = None

    def __post_init__(self) -> None:
        import numpy as np

        if self.target_means is None:  # valence alone, as runs before --targets
            self.target_means = np.array([self.mean_valence if self.has_valence else np.nan]
                                         * len(self.targets), np.float64)

    @property
    def n_models(self) -> int:
        return len(self.model_folds)

    @property
    def n_folds(self) -> int:
        """K, the number of folds (the largest fold index of a model, plus one)."""
        return int(self.model_folds.max()) + 1 if len(self.model_folds) else 0

    @property
    def n_outputs(self) -> int:
        """The width of the models' continuous output: T, or 1 without targets."""
        return max(1, len(self.targets))

    @property
    def learnt(self) -> Any:
        """(T,) bool: the targets that had training values (and are predicted)."""
        import numpy as np

        return np.isfinite(np.asarray(self.target_means, np.float64))


@dataclass
class TrainedModels:
    """What a head family's ``fit`` returns for F models.

    models : the fitted models (see :attr:`FittedState.models`).
    precision, device, batch_size : what training used (``batch_size`` 0: not batched).
    best_epochs : (F,) kept epoch of each model (0 for scikit-learn models).
    curve : (epochs,) mean held-out score after each epoch (empty for scikit-learn).
    val_proba, val_valence : each model's held-out class probabilities (n_f, K) and
        continuous outputs (n_f, T) (:attr:`FittedState.n_outputs` columns), on the rows it was
        validated on.
    notes : what a report should say about training (divergence, convergence).
    """

    models: Any
    precision: str
    device: str
    batch_size: int
    best_epochs: np.ndarray
    curve: np.ndarray
    val_proba: list[np.ndarray]
    val_valence: list[np.ndarray]
    notes: list[str] = field(default_factory=list)


__all__ = ["FittedState", "TrainedModels"]
