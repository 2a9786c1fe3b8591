"""mer_heads: fusion and multi-task heads on cached features, with the MER 2023 protocol.

Reads feature stores written by :mod:`mer_features` (through :mod:`mer_features.store` only),
cross-validates small heads on them, and writes runs, submissions, reports and ablations.

The Python API (every name loads its module on first use, so ``import mer_heads`` is cheap and
torch and scikit-learn load only with what needs them)::

    from mer_heads import HeadConfig, CrossValidatedHead, load_dataset, fit_run

    data = load_dataset(["audio.h5", "text.h5"])                 # MultimodalData
    est = CrossValidatedHead.from_config(HeadConfig(model="logreg", folds=5)).fit(data)
    est.cv_scores_                                                # Scores(f1=..., mse=...)
    proba, valence, imputed = est.predict_proba(data)
    fit_run(["audio.h5", "text.h5"], "runs/a", model="attention", epochs=50)  # a run folder

* data: :func:`load_dataset`, :class:`MultimodalData`, :class:`DataConfig`,
  :func:`normalize_groups` (``DataConfig.normalize_by``: per-speaker z-scores);
* heads: :class:`CrossValidatedHead` (``fit``, ``predict_proba``, ``predict_fold_proba``,
  ``predict_held_out``), :class:`HeadConfig`, :func:`known_heads`, :func:`register_head`
  (with :class:`NeuralHead` / :class:`SklearnHead`), :func:`get_head`;
* experiments: :func:`fit_run`, :func:`predict_run`, :func:`ablate`, :func:`robustness`,
  :func:`fit_semi` with :class:`SemiSettings`;
* research reports: :func:`leaderboard` (stores ranked per modality, top-K fused),
  :func:`semi_sweep` (one pseudo-label strategy over a list of thresholds),
  :func:`describe` / :func:`describe_labels` (valence per discrete class);
* scores: :func:`score`, :func:`evaluate_files`, :class:`Scores`;
* errors: :class:`MerHeadsError` and its subclasses, :class:`NotFittedError`,
  :class:`FingerprintMismatchError`.
"""

from importlib import import_module

from mer_features import EMOTIONS

__version__ = "0.1.0"

_EXPORTS = {
    "CrossValidatedHead": "mer_heads.protocol",
    "HeadConfig": "mer_heads.config", "DataConfig": "mer_heads.config",
    "SemiSettings": "mer_heads.config",
    "load_dataset": "mer_heads.data.dataset", "MultimodalData": "mer_heads.data.dataset",
    "normalize_groups": "mer_heads.data.normalize",
    "fit_run": "mer_heads.experiments.fit", "predict_run": "mer_heads.experiments.fit",
    "FitResult": "mer_heads.experiments.fit", "PredictResult": "mer_heads.experiments.fit",
    "ablate": "mer_heads.experiments.ablation",
    "leaderboard": "mer_heads.experiments.leaderboard",
    "semi_sweep": "mer_heads.experiments.semi_sweep",
    "describe": "mer_heads.experiments.describe",
    "describe_labels": "mer_heads.experiments.describe",
    "robustness": "mer_heads.experiments.robustness",
    "fit_semi": "mer_heads.experiments.semi",
    "score": "mer_heads.metrics", "evaluate_files": "mer_heads.metrics",
    "Scores": "mer_heads.metrics",
    "register_head": "mer_heads.heads", "known_heads": "mer_heads.heads",
    "get_head": "mer_heads.heads", "NeuralHead": "mer_heads.heads",
    "SklearnHead": "mer_heads.heads",
    "MerHeadsError": "mer_heads.errors", "DataError": "mer_heads.errors",
    "LabelError": "mer_heads.errors", "ParameterError": "mer_heads.errors",
    "OutputError": "mer_heads.errors", "RunError": "mer_heads.errors",
    "NotFittedError": "mer_heads.errors", "FingerprintMismatchError": "mer_heads.errors",
}

__all__ = ["EMOTIONS", "__version__", *sorted(_EXPORTS)]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
