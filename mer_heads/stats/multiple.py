"""Corrections of p-values when several comparisons are made at once.

* Holm-Bonferroni (the default): controls the family-wise error rate (the chance of any false
  "significant") under any dependence between the tests. Sorted p-values p_(1) <= ... <= p_(m)
  become max over j <= i of min(1, (m - j + 1) p_(j)).
* Benjamini-Hochberg: controls the false discovery rate (the expected share of false
  discoveries among the significant ones) for independent or positively dependent tests;
  p_(i) becomes min over j >= i of min(1, m p_(j) / j). Less strict; say which one you used.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mer_heads.errors import DataError, ParameterError

CORRECTIONS = ("holm", "bh", "none")


def adjust_p_values(p_values: Any, method: str = "holm") -> np.ndarray:
    """Adjusted p-values (same order as ``p_values``, a 1-d array in [0, 1]); NaN entries (a
    metric undefined in one comparison) stay NaN and do not count in the family."""
    if method not in CORRECTIONS:
        raise ParameterError(f"correction must be one of {', '.join(CORRECTIONS)}; got "
                             f"{method!r}.")
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise DataError(f"p_values must be a 1-d array; got shape {p.shape}.")
    known = np.isfinite(p)
    if ((p[known] < 0) | (p[known] > 1)).any():
        raise DataError("p_values must lie in [0, 1].")
    out = p.copy()
    if method == "none" or not known.any():
        return out
    q = p[known]
    m = len(q)
    order = np.argsort(q, kind="stable")
    ranked = q[order]
    if method == "holm":
        ranked = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * ranked))
    else:
        ranked = np.minimum.accumulate((m * ranked / np.arange(1, m + 1))[::-1])[::-1]
        ranked = np.minimum(ranked, 1.0)
    adjusted = np.empty(m)
    adjusted[order] = ranked
    out[known] = adjusted
    return out


__all__ = ["CORRECTIONS", "adjust_p_values"]
