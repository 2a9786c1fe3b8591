"""The pipeline that ties the stages together: :mod:`.options` (:class:`ExtractOptions`, every
option of an extraction, once), :mod:`.plan` (:func:`plan_extraction`: what a run will do,
decided before the store is touched), :mod:`.extraction` (:func:`execute` and :func:`extract`),
:mod:`.scheduler` (workers, batches, encoding), :mod:`.distributed` (shards, torchrun and SLURM
launches) and :mod:`.sweep` (a store per noise level, ``mer-features sweep``). What differs per
modality is in :mod:`mer_features.modalities`.

Names load on first use (PEP 562), so that the command line's help, which reads the options,
does not import the store (h5py).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "ClipFailedError": "mer_features.errors",
    "WorkerDiedError": "mer_features.errors",
    "TextOptions": "mer_features.modalities",
    "VideoOptions": "mer_features.modalities",
    "ExtractSummary": "mer_features.pipeline.extraction",
    "execute": "mer_features.pipeline.extraction",
    "extract": "mer_features.pipeline.extraction",
    "ExtractOptions": "mer_features.pipeline.options",
    "extract_options": "mer_features.pipeline.options",
    "ExtractionPlan": "mer_features.pipeline.plan",
    "build_header": "mer_features.pipeline.plan",
    "default_store_path": "mer_features.pipeline.plan",
    "plan_extraction": "mer_features.pipeline.plan",
    "resolve_device": "mer_features.pipeline.plan",
    "store_identity": "mer_features.pipeline.plan",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mer_features.pipeline' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
