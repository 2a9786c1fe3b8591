"""The HDF5 feature store: :mod:`.reader` (layout, header, :class:`FeatureStore`),
:mod:`.checksums` (what protects every cell), :mod:`.files` (atomic store files, write errors),
:mod:`.merge` (merging stores and parts, :func:`merge_stores`) and :mod:`.writer`
(:class:`StoreWriter`, crash-safe parts).

The heads read stores through this package's reader only."""

from mer_features.errors import FingerprintMismatchError, StoreError, StoreLockedError
from mer_features.store.reader import (SCHEMA_VERSION, STATUSES, ClipRecord, FeatureStore,
                                       StoreHeader, parts_dir, pending_parts)
from mer_features.store.files import _atomic_write, storage_problem
from mer_features.store.merge import merge_stores
from mer_features.store.writer import StoreWriter

__all__ = ["SCHEMA_VERSION", "STATUSES", "ClipRecord", "FeatureStore", "FingerprintMismatchError",
           "StoreError", "StoreHeader", "StoreLockedError", "StoreWriter", "merge_stores",
           "parts_dir", "pending_parts", "storage_problem", "_atomic_write"]
