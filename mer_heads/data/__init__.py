"""The data the heads learn from: feature stores joined into one dataset, label files, and
per-fold standardisation.

* :mod:`~mer_heads.data.dataset`: :func:`load_dataset` reads stores (through
  :class:`mer_features.store.FeatureStore` only, never media) into :class:`MultimodalData`;
* :mod:`~mer_heads.data.labels`: manifests, MER 2023 label files and prediction files;
* :mod:`~mer_heads.data.standardize`: each fold's statistics from its training clips only;
* :mod:`~mer_heads.data.normalize`: per-group z-scores (``--normalize-by``, e.g. per speaker).

The names below load their module on first use, so ``import mer_heads.data.labels`` does not
open h5py.
"""

from importlib import import_module

_EXPORTS = {"MultimodalData": "dataset", "ModalityInfo": "dataset", "load_dataset": "dataset",
            "parse_store_arg": "dataset", "summarise": "dataset", "LabelTable": "labels",
            "read_label_table": "labels", "Standardizer": "standardize",
            "fit_standardizer": "standardize", "normalize_groups": "normalize",
            "stack_copies": "dataset"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
