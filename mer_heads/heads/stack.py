"""The stacked network: ``F`` independent models evaluated by one tensor program.

Every weight has a leading model dimension and every layer is a batched matrix product
(``torch.baddbmm``), so the folds x seeds of a run train together on whole tensors instead of
one model at a time. Model ``f`` only ever sees its own slice of each weight, and the training
loss is a sum of per-model losses, so the models stay independent: stacking changes the speed,
not the maths.

Shapes: ``F`` models, ``B`` clips per model, ``M`` modalities, ``H`` hidden width, ``C`` classes.
Every forward takes

* ``inputs``: M tensors of shape (F, B, d_m) (utterance input) or (F, B, T_m, d_m) (frames),
  standardised, with absent clips' rows zeroed;
* ``present``: bool (F, B, M), False where a modality is absent for a clip;
* ``frame_masks``: for frames, M bool tensors (F, B, T_m) marking real frames; else None;

and returns emotion logits (F, B, C) and the continuous outputs (F, B, T) (valence and the
other ``--targets``; one column by default).

:class:`StackedHead` holds what every neural head shares: per-modality encoders (an MLP
d -> 2H -> H; with ``input="frames"`` a light temporal head instead: a per-frame projection
(d -> H), masked attention pooling over the clip's frames, then H -> H), the fusion of the
registered head named ``model`` (its layers and its ``fuse``, see :mod:`mer_heads.heads.neural`)
and the emotion and valence outputs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from mer_heads.heads.registry import NEURAL, get_head, known_heads


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout with the drop probability rounded to a multiple of 1/256.

    The mask comes from 64-bit random words read as bytes (8 draws per word, from torch's
    global generator): on a CPU, torch's own dropout spends more time drawing one Bernoulli
    number per activation than the layer spends on its matrix product (measured 4x slower
    than this for a (5, 512, 256) bfloat16 activation).
    """
    if not training or p <= 0.0:
        return x
    cut = min(255, max(1, round(p * 256)))
    n = x.numel()
    words = torch.empty((n + 7) // 8, dtype=torch.int64, device=x.device)
    words.random_(-(2**63), 2**63 - 1)
    keep = words.view(torch.uint8)[:n].view(x.shape) >= cut
    # bool -> float casts and masked_fill are slow CPU kernels; uint8 -> float is a fast one.
    scale = keep.view(torch.uint8).to(x.dtype).mul_(256.0 / (256 - cut))
    return x * scale


class StackedLinear(nn.Module):
    """F independent affine maps: weight (F, d_in, d_out), bias (F, 1, d_out).

    ``forward`` maps (F, B, d_in) to (F, B, d_out). With ``compute_dtype`` bfloat16 the product
    runs in bfloat16 with fp32 accumulation and its output stays bfloat16 (as under autocast),
    while the master weights stay fp32: that makes the large first layers cheap on CPUs with
    AMX/AVX512-BF16 and on GPUs, and halves the memory traffic of the activations.
    """

    def __init__(self, n_models: int, d_in: int, d_out: int):
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        self.weight = nn.Parameter(torch.empty(n_models, d_in, d_out))
        self.bias = nn.Parameter(torch.empty(n_models, 1, d_out))
        self.compute_dtype = torch.float32

    def reset_parameters(self, generator: torch.Generator) -> None:
        # nn.Linear's default initialisation, drawn per model from the run's generator.
        bound = 1.0 / math.sqrt(self.d_in) if self.d_in else 0.0
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=generator)
            self.bias.uniform_(-bound, bound, generator=generator)

    def forward(self, x: Tensor) -> Tensor:
        dt = self.compute_dtype
        if dt == torch.float32:
            return torch.baddbmm(self.bias, x.float(), self.weight)
        return torch.baddbmm(self.bias.to(dt), x.to(dt), self.weight.to(dt))

    def extra_repr(self) -> str:
        return f"models={self.weight.shape[0]}, d_in={self.d_in}, d_out={self.d_out}"


class StackedMLP(nn.Module):
    """Linear -> ReLU -> dropout, for each width in ``sizes``: (F, B, d) -> (F, B, sizes[-1])."""

    def __init__(self, n_models: int, d_in: int, sizes: tuple[int, ...], p: float):
        super().__init__()
        dims = (d_in, *sizes)
        self.layers = nn.ModuleList(StackedLinear(n_models, a, b) for a, b in zip(dims, dims[1:]))
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = dropout(torch.relu(layer(x)), self.p, self.training)
        return x


class FrameEncoder(nn.Module):
    """Masked attention pooling over frames: (F, B, T, d) with mask (F, B, T) -> (F, B, H)."""

    def __init__(self, n_models: int, d_in: int, hidden: int, p: float):
        super().__init__()
        self.frame = StackedLinear(n_models, d_in, hidden)
        self.score = StackedLinear(n_models, hidden, 1)
        self.out = StackedLinear(n_models, hidden, hidden)
        self.p = p

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        f, b, t, d = x.shape
        h = torch.relu(self.frame(x.reshape(f, b * t, d)))
        h = dropout(h, self.p, self.training)
        logits = self.score(h).reshape(f, b, t)
        # A clip without frames has an all -inf row; its softmax is NaN, replaced by zeros
        # (the modality is marked absent for that clip, so the zeros are masked downstream).
        logits = logits.float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)
        pooled = torch.einsum("fbt,fbth->fbh", weights.to(h.dtype), h.reshape(f, b, t, -1))
        return dropout(torch.relu(self.out(pooled)), self.p, self.training)


class LayerWeights(nn.Module):
    """Learned layer weights of one modality (``--layers learned``, see
    :mod:`mer_heads.heads.layers`): logits (F, L), initialised equal; ``forward`` maps the
    flattened layers (F, B, L*d) to their softmax-weighted sum (F, B, d)."""

    def __init__(self, n_models: int, layers: int):
        super().__init__()
        self.layers = layers
        self.logits = nn.Parameter(torch.zeros(n_models, layers))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.logits.zero_()  # equal weights: training starts from the layer mean

    def weights(self) -> Tensor:
        """The softmax weights (F, L), float32."""
        return torch.softmax(self.logits.float(), dim=-1)

    def forward(self, x: Tensor) -> Tensor:
        f, b, width = x.shape
        parts = x.reshape(f, b, self.layers, width // self.layers)
        return torch.einsum("fl,fbld->fbd", self.weights().to(parts.dtype), parts)


class StackedHead(nn.Module):
    """F fusion heads of one kind (see the module docstring).

    Parameters
    ----------
    n_models : F, the number of stacked models.
    dims : feature width of each modality (per frame for frame input).
    model : the name of a registered neural head (``known_heads("neural")``).
    input : ``"utterance"`` or ``"frames"``.
    hidden : H. dropout : dropout probability. n_classes : C. n_targets : T, the continuous
    outputs (at least 1). valence_column : the output that is valence (clipped to the MER 2023
    scale when predicted), or None.
    layers : per modality, L > 1 for utterance inputs of L flattened layers whose weighted sum
        is learned (:class:`LayerWeights`; the encoder then takes d_m / L); None: all 1.
    """

    def __init__(self, n_models: int, dims: list[int], *, model: str = "attention",
                 input: str = "utterance", hidden: int = 128, dropout: float = 0.3,
                 n_classes: int = 6, layers: list[int] | None = None, n_targets: int = 1,
                 valence_column: int | None = 0):
        super().__init__()
        head = get_head(model)
        if head.family != NEURAL:
            raise ValueError(f"model must be one of {', '.join(known_heads(NEURAL))}; got "
                             f"'{model}'")
        self.n_models, self.dims, self.model, self.input = n_models, list(dims), model, input
        self.hidden, self.p, self.n_classes = hidden, dropout, n_classes
        self.n_targets, self.valence_column = n_targets, valence_column
        self.head = head
        m = len(dims)
        self.layers = list(layers) if layers is not None else [1] * m
        self.layer_weights = nn.ModuleDict({str(i): LayerWeights(n_models, n)
                                            for i, n in enumerate(self.layers) if n > 1})
        dims = [d // n for d, n in zip(dims, self.layers)]
        if input == "frames":
            self.encoders = nn.ModuleList(FrameEncoder(n_models, d, hidden, dropout) for d in dims)
            widths = [hidden] * m
        elif not head.encodes:
            self.encoders = nn.ModuleList()
            widths = list(dims)
        else:
            self.encoders = nn.ModuleList(
                StackedMLP(n_models, d, (2 * hidden, hidden), dropout) for d in dims)
            widths = [hidden] * m
        head.build(self, widths)
        self.emotion = StackedLinear(n_models, hidden, n_classes)
        self.valence = StackedLinear(n_models, hidden, n_targets)  # the continuous outputs

    def reset_parameters(self, generator: torch.Generator) -> None:
        for module in self.modules():
            if isinstance(module, StackedLinear):
                module.reset_parameters(generator)
            elif isinstance(module, LayerWeights):
                module.reset_parameters()

    def set_compute_dtype(self, dtype: torch.dtype) -> None:
        for module in self.modules():
            if isinstance(module, StackedLinear):
                module.compute_dtype = dtype

    def forward(self, inputs: list[Tensor], present: Tensor,
                frame_masks: list[Tensor] | None = None) -> tuple[Tensor, Tensor]:
        if len(self.layer_weights):
            inputs = [self.layer_weights[str(i)](x) if str(i) in self.layer_weights else x
                      for i, x in enumerate(inputs)]
        if self.input == "frames":
            if frame_masks is None:
                raise ValueError("frame input needs frame_masks")
            hidden = [enc(x, mask)
                      for enc, x, mask in zip(self.encoders, inputs, frame_masks)]
        elif not self.head.encodes:
            hidden = list(inputs)
        else:
            hidden = [enc(x) for enc, x in zip(self.encoders, inputs)]
        # Absent modalities' encodings are zeroed: the fusions must not see what an encoder
        # makes of a zero (or padded) input.
        hidden = [h * present[..., i:i + 1] for i, h in enumerate(hidden)]
        fused = self.head.fuse(self, hidden, present)
        return self.emotion(fused), self.valence(fused)
