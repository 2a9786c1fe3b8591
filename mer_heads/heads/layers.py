"""Learned layer weights (``--layers learned``), as s3prl's featurizer learns them.

A store extracted with ``mer-features extract --layer all`` holds utterance arrays of shape
(L, d): one vector per hidden layer of the encoder. With ``--layers learned`` the dataset keeps
them flattened to L*d, and each model of a neural head's stack weighs the layers of each such
modality with its own softmax over L logits (initialised equal, so training starts from the
layer mean) before the modality's encoder: ``x = sum_l softmax(w)_l x_l``, of width d
(:class:`~mer_heads.heads.stack.LayerWeights`). The logits train with the rest of the head (at
``LAYER_LR_SCALE`` x ``--lr``, without weight decay). A modality whose store has one layer is
left as it is.

After fitting, ``CrossValidatedHead.layer_weights_`` maps each weighted modality to the (F, L)
softmax weights of the F fold models; :func:`weights_json` is what a run's metrics.json keeps
and :func:`mer_heads.reports.run.layer_weights_figure` draws them (mean ± std over the fold
models, per layer).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mer_heads.data.dataset import MultimodalData


def layer_counts(data: MultimodalData) -> list[int]:
    """Layers L of each modality of ``data`` weighed by ``--layers learned`` (1: none)."""
    if data.layers != "learned" or data.input != "utterance":
        return [1] * len(data.modalities)
    out = []
    for m in data.modalities:
        shape = tuple(m.utterance_shape)
        layers = shape[0] if len(shape) == 2 and shape[0] > 1 else 1
        out.append(layers if m.dim == layers * shape[-1] else 1)
    return out


def check_learned(model: str, layers: str) -> None:
    """Refuse ``--layers learned`` with a head that is not neural (it has no layer to learn
    the weights in)."""
    from mer_heads.errors import ParameterError
    from mer_heads.heads.registry import NEURAL, get_head, known_heads

    head = get_head(model)
    if layers == "learned" and head.family != NEURAL:
        raise ParameterError(
            f"layers='learned' learns layer weights inside the neural heads "
            f"({', '.join(known_heads(NEURAL))}); the {head.kind} model '{model}' has no such "
            "step. Use a neural model, or the layers 'mean' or 'flatten'.", "layers")


def weights_json(keys: list[str], weights: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """metrics.json's ``layer_weights``: per weighed modality the per-layer mean and std over
    the fold models and every model's weights; None when no modality is weighed."""
    if not weights:
        return None
    return {k: {"layers": int(w.shape[1]), "mean": w.mean(0).tolist(), "std": w.std(0).tolist(),
                "per_model": w.tolist()} for k, w in ((k, weights[k]) for k in keys
                                                      if k in weights)}


__all__ = ["check_learned", "layer_counts", "weights_json"]
