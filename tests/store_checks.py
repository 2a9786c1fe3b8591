"""Checks on feature stores shared by tests: two stores hold the same clips, bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mer_features.store import FeatureStore


def assert_same_store(a: Path, b: Path) -> None:
    """The stores at ``a`` and ``b`` hold the same clips, fingerprint, arrays and columns."""
    with FeatureStore(a) as x, FeatureStore(b) as y:
        assert x.names == y.names
        assert x.fingerprint == y.fingerprint
        np.testing.assert_array_equal(x.utterances(), y.utterances())
        for column in ("status", "stage", "reason", "input_hash", "discrete", "split", "duration"):
            assert list(x.column(column)) == list(y.column(column)), column
        np.testing.assert_array_equal(x.column("valence"), y.column("valence"))
        for name in x.names:
            for u, v in zip(x.frames(name), y.frames(name)):
                np.testing.assert_array_equal(u, v)
