"""Resampling schemes: bootstrap counts and permutation flips, drawn from a seeded numpy
``Generator`` in a documented order, so that the same seed gives the same resamples (and an
independent implementation can draw them again).

* Units are the clips in their order, or the groups numbered in the sorted order of their
  string forms (``np.unique``).
* Bootstrap over units (clips, or groups when groups are given), no strata: resample r draws
  ``rng.integers(0, n_units, n_units)``, i.e. the rows of ``rng.integers(0, n_units,
  (n_resamples, n_units))``: the resamples of ``scipy.stats.bootstrap(..., paired=True)`` with
  the same generator. Drawn in chunks of rows, which leaves numpy's stream unchanged.
* With strata (e.g. folds), units are ordered by stratum (sorted) and, within one, by index;
  each resample draws for every position j ``rng.integers(0, size of j's stratum)``, one
  (n_resamples, n_units) array with a per-column bound, and position j takes the unit of that
  rank within its stratum: every stratum keeps its number of units.
* Permutation flips: the bits of random bytes. Each permutation draws ``4 * ceil(n_units / 32)``
  bytes (``rng.integers(0, 256, (n_permutations, that), dtype=np.uint8)``, row by row) and
  unit j is swapped when bit j of them is 1 (``np.unpackbits(..., bitorder="little")``): one
  fair coin per unit, 8 per byte (eight times fewer draws than one integer per coin).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

CHUNK_ELEMENTS = 2_000_000
"""Resamples are drawn and summed in chunks of about this many (resample, unit) cells."""


def chunk_rows(n_units: int) -> int:
    return max(1, CHUNK_ELEMENTS // max(n_units, 1))


def bootstrap_indices(rng: np.random.Generator, n_resamples: int, n_units: int,
                      strata: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Chunks of drawn unit indices, each of shape (rows, n_units), n_resamples rows in all.
    ``strata`` (n_units,) int: each unit's stratum."""
    if strata is None:
        members, bound, first = None, n_units, None
    else:
        members = np.lexsort((np.arange(n_units), strata))  # units by stratum, then index
        sorted_strata = strata[members]
        _, first, sizes = np.unique(sorted_strata, return_index=True, return_counts=True)
        which = np.searchsorted(first, np.arange(n_units), side="right") - 1
        bound, first = sizes[which], first[which]
    step = chunk_rows(n_units)
    for start in range(0, n_resamples, step):
        rows = min(step, n_resamples - start)
        drawn = rng.integers(0, bound, (rows, n_units))
        yield drawn if members is None else members[first + drawn]


def counts_of(indices: np.ndarray, n_units: int) -> np.ndarray:
    """How often each unit was drawn in each resample: (rows, n_units) indices -> float64
    counts of the same shape."""
    rows = len(indices)
    flat = (indices + (np.arange(rows) * n_units)[:, None]).ravel()
    return np.bincount(flat, minlength=rows * n_units).reshape(rows, n_units).astype(np.float64)


def permutation_flips(rng: np.random.Generator, n_permutations: int, n_units: int
                      ) -> Iterator[np.ndarray]:
    """Chunks of swap masks, uint8 0/1 of shape (rows, n_units), n_permutations rows."""
    width = 4 * -(-n_units // 32)  # whole 32-bit draws per row: chunking keeps the stream
    step = chunk_rows(n_units)
    for start in range(0, n_permutations, step):
        rows = min(step, n_permutations - start)
        drawn = rng.integers(0, 256, (rows, width), dtype=np.uint8)
        bits = np.unpackbits(drawn, axis=1, count=n_units, bitorder="little")
        yield bits
