"""The neural family: all folds x seeds models of a run train as one stacked network.

:class:`NeuralHead` holds what every neural head shares: building the
:class:`~mer_heads.heads.stack.StackedHead` (modality encoders, the head's fusion, the emotion
and valence outputs), training it with :mod:`mer_heads.heads.training`, predicting with it on
its device, and (de)serialising it for a run directory. A head (``attention.py``, ``concat.py``,
``fbp.py``) only defines its fusion:

* ``build(stack, widths)`` adds the fusion's layers to the stack as its attributes (their
  names are the keys of the saved state dict), given the width of each modality's hidden
  vector;
* ``fuse(stack, hidden, present)`` mixes M hidden tensors (F, B, w_m), already zero where a
  modality is absent (``present`` (F, B, M) False), into one (F, B, H) tensor.

``encodes = False`` skips the per-modality encoders for utterance input (the fusion reads the
standardised features). torch (and numpy) are imported inside the methods, so declaring a head
is free and ``mer-heads --help`` stays instant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar

from mer_heads.errors import DataError
from mer_heads.heads.registry import NEURAL, Head
from mer_heads.runtime import compute_dtype, resolve_device, resolve_precision, torch_session
from mer_heads.state import TrainedModels

if TYPE_CHECKING:
    import numpy as np

    from mer_heads.config import HeadConfig
    from mer_heads.data.dataset import MultimodalData
    from mer_heads.state import FittedState

Predict = Callable[..., tuple[Any, Any]]


def input_widths(data: MultimodalData) -> list[int]:
    """Input elements per clip and modality (frames count once per frame)."""
    return [math.prod(x.shape[1:]) for x in data.features]


class NeuralHead(Head):
    """Base of the neural heads (see the module docstring for the two hooks)."""

    family: ClassVar[str] = NEURAL
    kind: ClassVar[str] = "neural"
    inputs: ClassVar[tuple[str, ...]] = ("utterance", "frames")
    params: ClassVar[tuple[str, ...]] = ("epochs", "hidden", "dropout", "lr", "weight_decay",
                                         "batch_size", "valence_weight", "modality_dropout",
                                         "precision", "device")
    model_file: ClassVar[str] = "models/heads.pt"
    models_attribute: ClassVar[str] = "stack_"
    encodes: ClassVar[bool] = True

    def build(self, stack, widths: list[int]) -> None:
        """Add the fusion's layers to ``stack`` (a StackedHead)."""
        raise NotImplementedError

    def fuse(self, stack, hidden: list, present):
        """(F, B, H) from M hidden tensors (F, B, w_m) and presence (F, B, M)."""
        raise NotImplementedError

    # ------------------------------------------------------------------------------------
    def check_runtime(self, config: HeadConfig) -> None:
        """Refuse a device torch cannot use, before any work."""
        resolve_device(config.device)

    def fit(self, config: HeadConfig, state: FittedState, data: MultimodalData,
            train_rows: list[np.ndarray], val_rows: list[np.ndarray],
            fold_labels: np.ndarray | None) -> TrainedModels:
        """Train the state's F models as one stack: model f learns from ``train_rows[f]`` and
        keeps its best epoch on ``val_rows[f]``."""
        import torch

        from mer_heads.heads.training import DeviceData, TrainConfig, auto_batch_size, train_stack

        device = resolve_device(config.device)
        n_models, widths = state.n_models, input_widths(data)
        batch_size = config.batch_size or auto_batch_size(
            max(len(r) for r in train_rows), n_models * sum(widths), config.epochs)
        with torch_session(device, config.threads):
            precision = resolve_precision(config.precision, device)
            tensors = DeviceData(data, state.standardizer, device, compute_dtype(precision),
                                 fold_labels, targets=state.targets)
            module = _stack(config, state)
            training = TrainConfig(
                epochs=config.epochs, lr=config.lr, weight_decay=config.weight_decay,
                batch_size=batch_size, valence_weight=config.valence_weight,
                modality_dropout=config.modality_dropout,
                compute_dtype="bfloat16" if precision == "bf16" else "float32")
            result = train_stack(module, tensors, state.model_folds, train_rows, val_rows,
                                 training, seed=config.seed, selection=selection(config, state))
        module = module.to(torch.device("cpu"))
        never = int((result.best_epoch == 0).sum())
        if never:
            raise DataError(
                f"Training diverged: {never} of {n_models} fold models gave non-finite outputs "
                f"from the first epoch on (lr={config.lr:g}, "
                f"valence_weight={config.valence_weight:g}). Lower --lr (default 0.001) or "
                "--valence-weight.")
        notes = []
        if result.diverged.any():
            notes.append(
                f"training diverged (non-finite outputs) for {int(result.diverged.sum())} fold "
                f"model(s) after their best epoch, which was kept; a lower --lr (now "
                f"{config.lr:g}) would train them longer")
        return TrainedModels(module, precision, str(device), batch_size, result.best_epoch,
                             result.curve, result.val_proba, result.val_valence, notes)

    @contextmanager
    def predictor(self, config: HeadConfig, state: FittedState, data: MultimodalData,
                  batch: int) -> Iterator[Predict]:
        """The fitted stack on its device in the run's compute dtype, inside a torch session
        with the run's threads (``batch``: clips per model per call). Yields
        ``predict(part, rows=None, *, mean=False, valence=True)``: for the clips of ``part``
        (a subset of ``data``), every model's outputs on its own ``rows[f]`` (F arrays of
        row indices; None: every clip), as F float64 arrays (n_f, K) and (n_f, T); with
        ``mean``, their mean over the models, (n, K) and (n, T). The stack is back on the CPU
        afterwards, also after an error."""
        import torch

        from mer_heads.heads.training import DeviceData, padded_rows, predict_rows

        device = resolve_device(config.device)
        dtype = compute_dtype(state.precision)
        module = state.models.to(device)
        module.set_compute_dtype(dtype)
        folds = torch.as_tensor(state.model_folds, dtype=torch.int64).to(device)

        def predict(part: MultimodalData, rows: list[np.ndarray] | None = None, *,
                    mean: bool = False, valence: bool = True) -> tuple[Any, Any]:
            tensors = DeviceData(part, state.standardizer, device, dtype, targets=())
            if rows is None:
                index = torch.arange(len(part), device=device).expand(len(folds), -1)
            else:
                index, _ = padded_rows(rows, device)
            proba, val = predict_rows(module, tensors, folds, index)
            del tensors
            if mean:
                return proba.double().mean(0).cpu().numpy(), val.double().mean(0).cpu().numpy()
            proba, val = proba.double().cpu().numpy(), val.double().cpu().numpy()
            lengths = [len(part)] * len(folds) if rows is None else [len(r) for r in rows]
            return ([proba[f, :n] for f, n in enumerate(lengths)],
                    [val[f, :n] for f, n in enumerate(lengths)])

        try:
            with torch_session(device, config.threads):
                yield predict
        finally:
            module.to(torch.device("cpu"))  # in place: the state's stack is this module

    def write_models(self, models, file: BinaryIO) -> None:
        """The stack's state dict (torch.save) into ``file``."""
        import torch

        torch.save(models.state_dict(), file)

    def read_models(self, file: BinaryIO, config: HeadConfig, state: FittedState):
        """The stack of ``state``'s shape with the weights ``write_models`` wrote to ``file``."""
        import torch

        stack = _stack(config, state)
        stack.load_state_dict(torch.load(file, map_location="cpu", weights_only=True))
        stack.eval()
        return stack

    def layer_weights(self, state: FittedState) -> dict[str, np.ndarray]:
        """The learned layer weights (F, L) of each weighed modality of the state's stack, by
        key (``--layers learned``, :mod:`mer_heads.heads.layers`); empty when none."""
        import torch

        with torch.no_grad():
            return {state.keys[int(i)]: module.weights().double().cpu().numpy()
                    for i, module in state.models.layer_weights.items()}


def _stack(config: HeadConfig, state: FittedState):
    """An untrained :class:`~mer_heads.heads.stack.StackedHead` of the state's shape: its
    models, modalities, classes and continuous outputs."""
    from mer_heads.heads.stack import StackedHead

    return StackedHead(state.n_models, state.dims, model=config.model, input=state.input,
                       hidden=config.hidden, dropout=config.dropout, layers=state.layers,
                       n_classes=len(state.classes), n_targets=state.n_outputs,
                       valence_column=(state.targets.index("valence")
                                       if "valence" in state.targets else None))


def selection(config: HeadConfig, state: FittedState):
    """How the state's models choose their epoch and what their loss learns
    (:class:`~mer_heads.heads.training.Selection`)."""
    from mer_heads.heads.training import Selection
    from mer_heads.metrics import resolve_metric

    learnt = tuple(bool(v) for v in state.learnt) or (False,)
    at = state.targets.index("valence") if "valence" in state.targets else None
    return Selection(metric=resolve_metric(config.metric, state.classes),
                     valence=at if at is not None and learnt[at] else None, learnt=learnt)


__all__ = ["NeuralHead", "input_widths", "selection"]
