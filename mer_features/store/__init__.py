"""The HDF5 feature store.

:mod:`.schema` (the layout, :class:`StoreHeader`, :class:`ClipRecord`, constants),
:mod:`.reader` (:class:`FeatureStore`), :mod:`.writer` (:class:`StoreWriter`, crash-safe
parts), :mod:`.hdf5` (one complete store file from records), :mod:`.disk` (real paths, the
writer lock, one-line write errors), :mod:`.merge` (:func:`merge_stores`), :mod:`.checksums`
(what protects every cell) and :mod:`.verify` (:func:`verify_store`).

The heads read stores through this package's reader only.
"""

from mer_features.errors import FingerprintMismatchError, StoreError, StoreLockedError
from mer_features.store.hdf5 import storage_problem
from mer_features.store.merge import merge_stores
from mer_features.store.reader import FeatureStore, parts_dir, pending_parts
from mer_features.store.schema import SCHEMA_VERSION, STATUSES, ClipRecord, StoreHeader
from mer_features.store.verify import verify_store
from mer_features.store.writer import StoreWriter

__all__ = ["SCHEMA_VERSION", "STATUSES", "ClipRecord", "FeatureStore", "FingerprintMismatchError",
           "StoreError", "StoreHeader", "StoreLockedError", "StoreWriter", "merge_stores",
           "parts_dir", "pending_parts", "storage_problem", "verify_store"]
