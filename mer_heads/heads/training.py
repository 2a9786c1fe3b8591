"""The batched trainer: all models of a stack (folds x seeds) train together on whole tensors.

Each epoch, every model draws its own permutation of its own training clips; a step gathers
(F, B) clips from feature tensors kept on the device (already standardised with each fold's
statistics) and takes one Adam step on the sum of the per-model losses (so each model's
gradient is its own). After every epoch each model is scored on its own held-out clips
and, when its score beats its best so far, its slice of every weight is copied aside: the best
epoch is chosen per model, not per stack.

The loss is cross-entropy plus ``valence_weight`` times the MSE of each continuous target (over
the clips that have a value; ``valence`` by default, ``--targets`` for others); a target without
training values is left out of it. The epoch a model keeps is the one with the best selection
score (``--metric``) on its held-out clips: ``mer`` is weighted F1 - 0.25 x valence MSE (F1
without valence, the MER 2023 baseline's), ``f1``, ``ua``, ``wa``, ``macro_f1`` the class
metrics alone (:mod:`mer_heads.metrics` defines them).

Modality dropout (``modality_dropout`` P > 0): in every training step each modality a clip has is
masked, for each model independently, with probability P (:func:`drop_modalities`), through the
same presence mask as a modality that is missing from the store, so the fusion learns not to
depend on any one modality. A clip never loses all of its modalities, evaluation never masks,
and the draws come from the run's generator (a run stays a function of its seed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from mer_heads.metrics import VALENCE_RANGE, VALENCE_WEIGHT
from mer_heads.progress import step

if TYPE_CHECKING:
    from mer_heads.data.dataset import MultimodalData
    from mer_heads.data.standardize import Standardizer
    from mer_heads.heads.stack import StackedHead

EVAL_CHUNK = 1024
STEP_ELEMENTS = 1 << 27
"""At most this many input elements (all models together) are gathered for one forward
(512 MB in fp32): frame inputs of wide encoders need smaller chunks than utterances."""
STEPS_PER_EPOCH = 4
LAYER_LR_SCALE = 10.0
"""Learned layer weights' logits train with this multiple of ``--lr``."""


MIN_STEPS = 400
"""Adam steps a run takes at least (``epochs`` x steps per epoch), as 100 epochs of
STEPS_PER_EPOCH do. With fewer epochs each epoch takes more, smaller steps: 30 epochs of 4 steps
(batch 675 on MER 2023's 3,373 clips) stop short of what the per-fold DataLoader loop (batch 32)
learns in 30 epochs (CV metric 0.381 against 0.410); with this rule (14 steps, batch 193) 0.424
(benchmarks/bench_heads.py --epochs 30, benchmarks/RESULTS.md)."""


def auto_batch_size(n_train: int, elements_per_clip: int = 0, epochs: int = 0) -> int:
    """Clips per step giving STEPS_PER_EPOCH steps per epoch (more when ``epochs`` of them are
    under MIN_STEPS), within [32, 1024], and fewer when a step's inputs (``elements_per_clip``
    over all stacked models) would pass STEP_ELEMENTS."""
    steps = max(STEPS_PER_EPOCH, -(-MIN_STEPS // epochs)) if epochs > 0 else STEPS_PER_EPOCH
    size = min(1024, max(32, -(-n_train // steps)))
    if elements_per_clip:
        size = min(size, max(1, STEP_ELEMENTS // elements_per_clip))
    return int(size)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    lr: float = 1e-3
    weight_decay: float = 1e-5
    batch_size: int = 512
    valence_weight: float = 1.0
    modality_dropout: float = 0.0
    compute_dtype: str = "float32"


@dataclass
class StackResult:
    """What training a stack of F models gives.

    best_epoch, best_score : (F,) arrays; epochs count from 1.
    val_proba : F arrays (V_f, C) of class probabilities on each model's held-out clips at its
        best epoch; val_valence : F arrays (V_f,).
    curve : (epochs,) mean over models of the held-out score after each epoch.
    diverged : (F,) bool, models whose held-out outputs became non-finite at some epoch (such
        an epoch is never kept: best_epoch 0 means no epoch gave finite outputs).
    """

    best_epoch: np.ndarray
    best_score: np.ndarray
    val_proba: list[np.ndarray]
    val_valence: list[np.ndarray]
    curve: np.ndarray
    diverged: np.ndarray


class DeviceData:
    """A dataset's arrays as device tensors, ready to be gathered into stacked batches.

    Utterance features are standardised once per fold and kept as (K, n, d) tensors in the
    compute dtype (absent clips zero), so a batch is one gather with no arithmetic: on a CPU,
    the elementwise passes over inputs cost as much as the products themselves. Frame features
    are too large for K copies and are standardised per batch instead.
    """

    def __init__(self, data: MultimodalData, standardizer: Standardizer, device: torch.device,
                 dtype: torch.dtype = torch.float32, fold_labels: np.ndarray | None = None,
                 targets: tuple[str, ...] = ("valence",)):
        """``fold_labels`` : optional (K, n) training class of each clip per fold (-1: none),
        for clips whose class differs between folds (pseudo-labels); default ``data.labels``.
        ``targets`` : the continuous targets, the columns of ``self.valence`` (n, T) (one NaN
        column without targets)."""
        self.device, self.dtype = device, dtype
        self._buffers: dict[int, Tensor] = {}
        self.frames = data.frame_mask is not None
        self.elements_per_clip = sum(int(np.prod(x.shape[1:])) for x in data.features)
        self.present = torch.from_numpy(data.present).to(device)
        self.labels = torch.from_numpy(data.labels).to(device)
        self.fold_labels = (None if fold_labels is None
                            else torch.from_numpy(np.asarray(fold_labels, np.int64)).to(device))
        columns = [data.target(t) for t in targets] or [np.full(len(data), np.nan)]
        self.valence = torch.from_numpy(np.stack(columns, axis=1).astype(np.float32)).to(device)
        if self.frames:
            self.x = [torch.from_numpy(np.ascontiguousarray(f)).to(device) for f in data.features]
            self.frame_mask = [torch.from_numpy(m).to(device) for m in data.frame_mask]
            self.mean = [torch.from_numpy(m).to(device) for m in standardizer.mean]
            self.inv_scale = [torch.from_numpy(1.0 / s).to(device) for s in standardizer.scale]
        else:
            # M tensors (K * n, d): fold k's copy of clip i is row k * n + i.
            self.x = [torch.cat([torch.from_numpy(standardizer.transform_modality(data, m, k))
                                 .to(device, dtype) for k in range(standardizer.n_folds)])
                      for m in range(len(data.features))]
            self.n = len(data)

    def train_labels(self, folds: Tensor, rows: Tensor) -> Tensor:
        """Training classes (F, B) of clips ``rows`` (F, B) for models of folds ``folds`` (F,)."""
        if self.fold_labels is None:
            return self.labels[rows]
        return self.fold_labels[folds[:, None], rows]

    def batch(self, folds: Tensor, rows: Tensor, *, reuse: bool = False
              ) -> tuple[list[Tensor], Tensor, list[Tensor] | None]:
        """Standardised inputs of clips ``rows`` (F, B) for models of folds ``folds`` (F,).

        With ``reuse`` the utterance inputs are gathered into buffers kept between calls (the
        previous call's inputs are overwritten): a fresh buffer of this size costs more in page
        faults on a CPU than the gather itself. Only for a training step, whose graph is gone
        before the next step gathers.
        """
        present = self.present[rows]                                            # (F, B, M)
        if not self.frames:
            # index_select copies whole rows; advanced indexing is 3x slower on a CPU.
            flat = (folds[:, None] * self.n + rows).reshape(-1)
            inputs = []
            for m, x in enumerate(self.x):
                if reuse:
                    out = self._buffers.get(m)
                    if out is None or out.shape[0] != flat.numel():
                        out = self._buffers[m] = x.new_empty((flat.numel(), x.shape[1]))
                    inputs.append(torch.index_select(x, 0, flat, out=out).view(*rows.shape, -1))
                else:
                    inputs.append(x.index_select(0, flat).view(*rows.shape, -1))
            return inputs, present, None
        inputs, masks = [], []
        for m, x in enumerate(self.x):
            mask = self.frame_mask[m][rows]                                     # (F, B, T)
            mean, inv = self.mean[m][folds], self.inv_scale[m][folds]           # (F, d)
            xb = (x[rows] - mean[:, None, None]) * inv[:, None, None]
            xb = xb * (mask & present[..., m:m + 1])[..., None]
            inputs.append(xb.to(self.dtype))
            masks.append(mask)
        return inputs, present, masks


def padded_rows(rows: list[np.ndarray], device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-model row lists as a (F, N_max) index tensor (padded with row 0) and a valid mask."""
    width = max(1, max(len(r) for r in rows))
    index = np.zeros((len(rows), width), np.int64)
    valid = np.zeros((len(rows), width), bool)
    for f, r in enumerate(rows):
        index[f, :len(r)] = r
        valid[f, :len(r)] = True
    return torch.from_numpy(index).to(device), torch.from_numpy(valid).to(device)


def weighted_f1(pred: Tensor, true: Tensor, valid: Tensor, n_classes: int) -> Tensor:
    """Per-model weighted F1, equal to sklearn's ``f1_score(average="weighted")``.

    pred, true : (F, V) class indices; valid : (F, V) bool. Returns (F,) float64.
    """
    eye = torch.eye(n_classes, dtype=torch.float64, device=pred.device)
    w = valid.to(torch.float64)[..., None]
    t = eye[true.clamp(min=0)] * w
    p = eye[pred] * w
    tp = (t * p).sum(1)
    support, predicted = t.sum(1), p.sum(1)
    denom = support + predicted
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return (f1 * support).sum(1) / support.sum(1).clamp(min=1)


@dataclass(frozen=True)
class Selection:
    """How each model's epoch is chosen and what its loss learns: ``metric`` (a resolved
    ``--metric``: mer, f1, ua, wa, macro_f1), ``valence`` (the column of valence among the
    continuous outputs, None when valence is not learnt) and ``learnt`` (per output column,
    whether it is in the loss)."""

    metric: str = "mer"
    valence: int | None = 0
    learnt: tuple[bool, ...] = (True,)


def train_stack(module: StackedHead, tensors: DeviceData, folds: np.ndarray,
                train_rows: list[np.ndarray], val_rows: list[np.ndarray], config: TrainConfig,
                *, seed: int, selection: Selection) -> StackResult:
    """Train the F models of ``module``; model f uses fold ``folds[f]``'s statistics, learns
    from clips ``train_rows[f]`` and is scored on ``val_rows[f]``. Leaves ``module`` holding
    each model's weights from its best epoch."""
    device = tensors.device
    devices = [device.index or 0] if device.type == "cuda" else []
    # Dropout draws from torch's global generator; forking it keeps the caller's random state
    # untouched while making the run a function of its seed.
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        torch.manual_seed(seed)
        return _train(module, tensors, folds, train_rows, val_rows, config, seed, selection)


def _train(module: StackedHead, tensors: DeviceData, folds: np.ndarray,
           train_rows: list[np.ndarray], val_rows: list[np.ndarray], config: TrainConfig,
           seed: int, selection: Selection) -> StackResult:
    device = tensors.device
    n_models = len(folds)
    generator = torch.Generator().manual_seed(seed)
    module.reset_parameters(generator)
    module.to(device)
    module.set_compute_dtype(getattr(torch, config.compute_dtype))
    fold_t = torch.from_numpy(np.asarray(folds, np.int64)).to(device)
    tr_index, tr_valid = padded_rows(train_rows, device)
    va_index, va_valid = padded_rows(val_rows, device)
    # The fused kernel updates every weight in one pass; foreach would take a dozen passes over
    # the whole stack per step.
    # Learned layer weights (--layers learned) are L logits per model: they take larger steps
    # and no weight decay (which would pull them back to the uniform mean).
    logits = [p for n, p in module.named_parameters() if n.startswith("layer_weights.")]
    others = [p for n, p in module.named_parameters() if not n.startswith("layer_weights.")]
    groups = [{"params": others}] + ([{"params": logits, "lr": config.lr * LAYER_LR_SCALE,
                                       "weight_decay": 0.0}] if logits else [])
    optimizer = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay,
                                 fused=True)
    best = {k: v.detach().clone() for k, v in module.state_dict().items()}
    best_score = torch.full((n_models,), -torch.inf, dtype=torch.float64, device=device)
    best_epoch = torch.zeros(n_models, dtype=torch.int64, device=device)
    best_proba = torch.zeros((n_models, va_index.shape[1], module.n_classes), device=device)
    best_valence = torch.zeros((n_models, va_index.shape[1], module.n_targets), device=device)
    curve = []
    diverged = torch.zeros(n_models, dtype=torch.bool, device=device)
    width = tr_index.shape[1]
    batch = max(1, min(config.batch_size, width))
    for epoch in range(1, config.epochs + 1):
        module.train()
        keys = torch.rand(tr_index.shape, generator=generator).to(device)
        keys = keys.masked_fill(~tr_valid, 2.0)                 # padding sorts last
        order = keys.argsort(dim=1, stable=True)
        for start in range(0, width, batch):
            pos = order[:, start:start + batch]
            rows = tr_index.gather(1, pos)
            weight = tr_valid.gather(1, pos).to(torch.float32)
            if not weight.any():
                break
            inputs, present, masks = tensors.batch(fold_t, rows, reuse=True)
            if config.modality_dropout > 0:
                present = drop_modalities(present, config.modality_dropout, generator)
            logits, valence = module(inputs, present, masks)
            loss = _loss(logits, valence, tensors.train_labels(fold_t, rows), tensors.valence[rows],
                         weight, [config.valence_weight if on else 0.0
                                  for on in selection.learnt])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        proba, val_pred = predict_rows(module, tensors, fold_t, va_index)
        score = selection_score(proba, val_pred, tensors.labels[va_index],
                                tensors.valence[va_index], va_valid, selection)
        # A diverged model (a too large step: NaN weights) must never be kept as its best epoch.
        finite = ((torch.isfinite(proba).all(-1) & torch.isfinite(val_pred).all(-1))
                  | ~va_valid).all(1)
        diverged |= ~finite
        score = torch.where(finite, score, torch.full_like(score, -torch.inf))
        curve.append(float(score[finite].mean()) if bool(finite.any()) else float("nan"))
        improved = score > best_score
        if improved.any():
            best_score = torch.where(improved, score, best_score)
            best_epoch = torch.where(improved, torch.full_like(best_epoch, epoch), best_epoch)
            best_proba[improved] = proba[improved]
            best_valence[improved] = val_pred[improved]
            # Slice copies are plain memcpy; boolean-mask indexing over the stack is not.
            state = module.state_dict()
            with torch.no_grad():
                for f in improved.nonzero().flatten().tolist():
                    for name, value in state.items():
                        best[name][f].copy_(value[f])
        step(epoch, config.epochs, "epoch")
    module.load_state_dict(best)
    proba_np, valence_np = best_proba.cpu().numpy(), best_valence.cpu().numpy()
    return StackResult(
        best_epoch=best_epoch.cpu().numpy(), best_score=best_score.cpu().numpy(),
        val_proba=[proba_np[f, :len(r)] for f, r in enumerate(val_rows)],
        val_valence=[valence_np[f, :len(r)] for f, r in enumerate(val_rows)],
        curve=np.array(curve), diverged=diverged.cpu().numpy())


def drop_modalities(present: Tensor, p: float, generator: torch.Generator) -> Tensor:
    """Presence (F, B, M) with each present modality masked with probability ``p``, never all
    of a clip's present modalities: where every one would go, one of them, chosen uniformly,
    is kept. Draws two (F, B, M) uniform arrays from ``generator`` (on the CPU, so a run gives
    the same masks on every device)."""
    drop = torch.rand(present.shape, generator=generator).to(present.device) < p
    pick = torch.rand(present.shape, generator=generator).to(present.device)
    kept = present & ~drop
    lost = present.any(-1) & ~kept.any(-1)                                     # (F, B)
    keep_one = pick.masked_fill(~present, -1.0).argmax(-1, keepdim=True)       # (F, B, 1)
    rescue = torch.zeros_like(present).scatter_(-1, keep_one, True) & lost[..., None]
    return kept | rescue


def _loss(logits: Tensor, outputs: Tensor, labels: Tensor, targets: Tensor, weight: Tensor,
          target_weights: list[float]) -> Tensor:
    """Sum over models of each model's mean loss over its (valid) clips: cross-entropy plus,
    per continuous output t (``outputs``, ``targets`` (F, B, T)), ``target_weights[t]`` times
    its MSE over the clips that have a value."""
    f, b, c = logits.shape
    logits, outputs = logits.float(), outputs.float()
    ce = torch.nn.functional.cross_entropy(logits.reshape(f * b, c), labels.clamp(min=0).reshape(-1),
                                           reduction="none").reshape(f, b)
    loss = (ce * weight).sum(1) / weight.sum(1).clamp(min=1)
    for t, target_weight in enumerate(target_weights):
        if target_weight:
            value, target = outputs[..., t], targets[..., t]
            has = weight * torch.isfinite(target)
            err = torch.where(has > 0, value - target.nan_to_num(0.0), torch.zeros_like(value))
            loss = loss + target_weight * (err.square() * has).sum(1) / has.sum(1).clamp(min=1)
    return loss.sum()


@torch.no_grad()
def predict_rows(module: StackedHead, tensors: DeviceData, folds: Tensor, rows: Tensor
                 ) -> tuple[Tensor, Tensor]:
    """Class probabilities (F, V, C) and continuous outputs (F, V, T) of clips ``rows`` (F, V),
    each model on its own rows, in eval mode and in chunks of clips to bound memory. Valence
    (output column ``module.valence_column``) is clipped to the MER 2023 scale."""
    module.eval()
    probas, valences = [], []
    chunk = max(1, min(EVAL_CHUNK, STEP_ELEMENTS // (len(folds) * tensors.elements_per_clip)))
    at = module.valence_column
    for start in range(0, rows.shape[1], chunk):
        inputs, present, masks = tensors.batch(folds, rows[:, start:start + chunk])
        logits, valence = module(inputs, present, masks)
        probas.append(torch.softmax(logits.float(), dim=-1))
        valence = valence.float()
        if at is not None:
            if valence.shape[-1] == 1:
                valence = valence.clamp(*VALENCE_RANGE)
            else:
                valence = torch.cat([valence[..., :at], valence[..., at:at + 1].clamp(
                    *VALENCE_RANGE), valence[..., at + 1:]], dim=-1)
        valences.append(valence)
    return torch.cat(probas, dim=1), torch.cat(valences, dim=1)


def class_scores(pred: Tensor, true: Tensor, valid: Tensor, n_classes: int) -> dict[str, Tensor]:
    """Per-model ``ua``, ``wa`` and ``macro_f1`` from class indices (F, V) and a valid mask
    (F, V), as :func:`mer_heads.metrics.classification_from_confusion` defines them: (F,)
    float64 each (0 for a model without valid clips)."""
    eye = torch.eye(n_classes, dtype=torch.float64, device=pred.device)
    w = valid.to(torch.float64)[..., None]
    t = eye[true.clamp(min=0)] * w
    p = eye[pred] * w
    tp = (t * p).sum(1)                                        # (F, C)
    support, predicted = t.sum(1), p.sum(1)
    present, seen = support > 0, (support + predicted) > 0
    recall = torch.where(present, tp / support.clamp(min=1), torch.zeros_like(tp))
    f1 = torch.where(seen, 2 * tp / (support + predicted).clamp(min=1), torch.zeros_like(tp))
    one = torch.ones_like(tp[:, 0])
    return {"ua": recall.sum(1) / torch.maximum(present.sum(1).to(torch.float64), one),
            "wa": tp.sum(1) / torch.maximum(support.sum(1), one),
            "macro_f1": f1.sum(1) / torch.maximum(seen.sum(1).to(torch.float64), one)}


def selection_score(proba: Tensor, valence: Tensor, labels: Tensor, target: Tensor, valid: Tensor,
                    selection: Selection) -> Tensor:
    """Per-model selection score on held-out clips, (F,) float64: ``selection.metric``; for
    ``mer`` F1 - 0.25 * MSE of valence (column ``selection.valence`` of ``valence`` and
    ``target`` (F, V, T)), F1 alone without valence."""
    pred = proba.argmax(-1)
    if selection.metric in ("ua", "wa", "macro_f1"):
        return class_scores(pred, labels, valid, proba.shape[-1])[selection.metric]
    score = weighted_f1(pred, labels, valid, proba.shape[-1])
    if selection.metric == "mer" and selection.valence is not None:
        at = selection.valence
        value, truth = valence[..., at], target[..., at]
        has = valid & torch.isfinite(truth)
        err = torch.where(has, value - truth.nan_to_num(0.0), torch.zeros_like(value))
        mse = (err.double().square()).sum(1) / has.sum(1).clamp(min=1)
        score = score - VALENCE_WEIGHT * mse
    return score
