"""Per-fold standardisation statistics, from each fold's training clips only.

A fold model must not see the mean or spread of the clips it is scored on, so every fold has
its own statistics. Absent clips (and padded frames) are left out of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from mer_heads.data.dataset import MultimodalData

MIN_SCALE = 1e-6


@dataclass
class Standardizer:
    """Statistics of K folds for M modalities.

    mean, scale : M float32 arrays of shape (K, d_m). A feature that is constant in a fold's
    training clips gets scale 1, so it becomes exactly zero instead of exploding.
    """

    mean: list[np.ndarray]
    scale: list[np.ndarray]

    @property
    def n_folds(self) -> int:
        return self.mean[0].shape[0]

    def transform(self, data: MultimodalData, fold: int) -> list[np.ndarray]:
        """Standardised copies of ``data.features`` with fold ``fold``'s statistics; absent
        clips and padded frames are zero."""
        return [self.transform_modality(data, m, fold) for m in range(len(data.features))]

    def transform_modality(self, data: MultimodalData, m: int, fold: int) -> np.ndarray:
        """Modality ``m`` of ``data`` standardised with fold ``fold``'s statistics, float32."""
        z = (data.features[m] - self.mean[m][fold]) / self.scale[m][fold]
        if data.frame_mask is not None:
            z = z * data.frame_mask[m][..., None]
        z[~data.present[:, m]] = 0.0
        return z.astype(np.float32, copy=False)

    def to_arrays(self, keys: list[str]) -> dict[str, np.ndarray]:
        arrays = {}
        for key, mean, scale in zip(keys, self.mean, self.scale):
            arrays[f"{key}/mean"] = mean
            arrays[f"{key}/scale"] = scale
        return arrays

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], keys: list[str]) -> Standardizer:
        return cls([np.asarray(arrays[f"{k}/mean"], np.float32) for k in keys],
                   [np.asarray(arrays[f"{k}/scale"], np.float32) for k in keys])


def fit_standardizer(data: MultimodalData, train_masks: np.ndarray) -> Standardizer:
    """Statistics for each fold from the clips where ``train_masks[k]`` is True.

    Parameters
    ----------
    train_masks : bool array of shape (K, n).
    """
    means, scales = [], []
    for m, x in enumerate(data.features):
        mean = np.zeros((len(train_masks), x.shape[-1]), np.float32)
        scale = np.ones_like(mean)
        for k, rows in enumerate(train_masks):
            use = rows & data.present[:, m]
            if data.frame_mask is not None:
                values = x[use][data.frame_mask[m][use]]          # (frames, d)
            else:
                values = x[use]
            if len(values) == 0:
                continue  # no training clip has this modality: it stays at mean 0, scale 1
            values = values.astype(np.float64)
            mean[k] = values.mean(axis=0)
            std = values.std(axis=0)
            scale[k] = np.where(std < MIN_SCALE, 1.0, std)
        means.append(mean)
        scales.append(scale)
    return Standardizer(means, scales)
