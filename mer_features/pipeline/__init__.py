"""The pipeline that ties the stages together: :mod:`.extraction` (:func:`extract`),
:mod:`.stages` (what differs per modality), :mod:`.scheduler` (workers, batches, encoding),
:mod:`.distributed` (shards, torchrun and SLURM launches) and :mod:`.sweep` (a store per
noise level, ``mer-features sweep``)."""

from mer_features.errors import ClipFailedError, WorkerDiedError
from mer_features.pipeline.extraction import (ExtractSummary, auto_batch_size, auto_workers,
                                              build_header, default_store_path, extract,
                                              resolve_device)
from mer_features.pipeline.stages import VideoOptions

__all__ = ["ClipFailedError", "ExtractSummary", "VideoOptions", "WorkerDiedError",
           "auto_batch_size", "auto_workers", "build_header", "default_store_path", "extract",
           "resolve_device"]
