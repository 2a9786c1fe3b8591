"""Per-group feature normalisation (``--normalize-by COL``): z-scores within each group of a
manifest column, e.g. per speaker.

Each modality's features are centred and scaled with the mean and standard deviation of the
clips of the same group (their real frames, for frame input), computed from those clips' features
alone: no label is used, and absent modalities are left out and stay zero. A feature that is
constant within a group (or a group of one clip) gets scale 1, so it becomes zero there.

This is *transductive* wherever the statistics of clips that are scored are used: in
cross-validation the held-out speakers are normalised with statistics of their own (unlabelled)
clips, and ``mer-heads predict`` normalises new clips by their own groups. That is what a system
deployed on a new speaker can do once it has heard a few of that speaker's clips; it is not what
it can do for a speaker's very first clip.

Per-fold standardisation (:mod:`.standardize`) still follows, on the normalised features.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from mer_heads.data.standardize import MIN_SCALE
from mer_heads.errors import DataError, listed

if TYPE_CHECKING:
    from mer_heads.data.dataset import MultimodalData


def group_codes(values: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Group index (n,) of each value and the sorted group names."""
    names, codes = np.unique(np.asarray(values, dtype=str), return_inverse=True)
    return codes.astype(np.int64), [str(n) for n in names]


def normalize_groups(data: MultimodalData, groups: np.ndarray, column: str) -> MultimodalData:
    """``data`` with every modality z-scored within the groups ``groups`` (n,) str: the values
    of its extra column ``column`` (``MultimodalData.column``), the name for messages.

    Returns a copy (the input is unchanged) with ``normalized_by`` set and a note. Every clip with
    a usable modality needs a value in ``column``; clips without one are refused, listed.
    """
    usable = data.present.any(axis=1)
    lacking = np.flatnonzero(usable & (groups == ""))
    if len(lacking):
        raise DataError(
            f"--normalize-by {column}: {len(lacking)} clip(s) have no '{column}' value "
            f"({listed(data.names[i] for i in lacking)}); give every clip one in the manifest "
            "(re-extract, or pass --manifest), or drop --normalize-by.")
    codes, names = group_codes(groups)
    features = []
    for m, x in enumerate(data.features):
        out = np.zeros_like(x, dtype=np.float32)
        mask = None if data.frame_mask is None else data.frame_mask[m]
        for g in range(len(names)):
            rows = np.flatnonzero((codes == g) & data.present[:, m])
            if not len(rows):
                continue
            block = x[rows].astype(np.float64)
            values = block if mask is None else block[mask[rows]]        # (clips or frames, d)
            mean = values.mean(axis=0)
            std = values.std(axis=0)
            z = (block - mean) / np.where(std < MIN_SCALE, 1.0, std)
            if mask is not None:
                z *= mask[rows][..., None]
            out[rows] = z
        features.append(out)
    sizes = np.bincount(codes[usable], minlength=len(names))
    notes = [*data.notes,
             f"features z-scored within each of the {int((sizes > 0).sum())} '{column}' groups "
             "from the group's own clips (--normalize-by; transductive: scored clips' groups "
             "use their own statistics)"]
    single = [names[g] for g in np.flatnonzero(sizes == 1)]
    if single:
        notes.append(f"{len(single)} '{column}' group(s) have one clip ({listed(single)}): "
                     "normalised within itself, that clip's features are all zero")
    return replace(data, features=features, normalized_by=column, notes=notes)


__all__ = ["group_codes", "normalize_groups"]
