"""The HDF5 feature store: :mod:`.reader` (layout, header, :class:`FeatureStore`) and
:mod:`.writer` (:class:`StoreWriter`, atomic writes, crash-safe parts, :func:`merge_stores`).

The heads read stores through this package's reader only."""

from mer_features.errors import FingerprintMismatchError, StoreError, StoreLockedError
from mer_features.store.reader import (SCHEMA_VERSION, STATUSES, ClipRecord, FeatureStore,
                                       StoreHeader, parts_dir, pending_parts)
from mer_features.store.writer import StoreWriter, _atomic_write, merge_stores

__all__ = ["SCHEMA_VERSION", "STATUSES", "ClipRecord", "FeatureStore", "FingerprintMismatchError",
           "StoreError", "StoreHeader", "StoreLockedError", "StoreWriter", "merge_stores",
           "parts_dir", "pending_parts", "_atomic_write"]
