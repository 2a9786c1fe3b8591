"""Frozen vision models from ``transformers`` applied to face tracks.

``hf:<folder or hub id>`` for the video modality loads

* image models — CLIP (its vision tower), ViT, ViT-MAE, DINOv2 — applied to every face frame:
  frames are per-frame vectors (zero rows where no face was found), the utterance is their mean
  over face frames;
* VideoMAE, applied to windows of ``num_frames`` face frames (16 for the released models),
  sampled uniformly; a long track gives several windows: frames are per-window vectors (time of
  the window's centre frame), the utterance their mean.

A frame (or window) vector is the chosen layer(s)' ``[CLS]`` token (``pool=cls``) or mean over
tokens (``pool=mean``); ``auto`` takes the mean for ViT-MAE and VideoMAE (trained without a
summarising token) and ``[CLS]`` otherwise. Face crops are resized and normalised as the
checkpoint's image processor says (size, mean, std).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from mer_features.decode.inputs import FaceInput
from mer_features.encoders.base import Encoded, Encoder, OutputSpec, register_encoder
from mer_features.encoders.hf_common import (autocast, check_layer, load_model,
                                             resolve_model_dir, select_layers, weights_identity)
from mer_features.errors import ClipError, EncoderError

IMAGE_TYPES = ("clip", "clip_vision_model", "vit", "vit_mae", "dinov2")
VIDEO_TYPES = ("videomae",)
_IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


@dataclass(frozen=True)
class HFVisionConfig:
    model: str
    layer: str = "last"
    pool: str = "auto"
    batch_frames: int = 64
    """Face frames (or windows x frames) per forward pass."""

    def __post_init__(self) -> None:
        check_layer(self.layer)
        if self.pool not in ("auto", "cls", "mean"):
            raise ValueError(f"pool must be auto, cls or mean; got '{self.pool}'")
        if self.batch_frames < 1:
            raise ValueError("batch_frames must be >= 1")


@register_encoder
class HFVisionEncoder(Encoder):
    """A frozen image model per face frame, or VideoMAE per window of face frames."""

    name = "hf"
    modality = "video"
    version = "1"
    Config = HFVisionConfig
    spec_argument = "model"
    uses_dtype = True

    def __init__(self, config: HFVisionConfig):
        self._dir, self._origin = resolve_model_dir(config.model)
        hf_config = _read_json(self._dir / "config.json")
        self.model_type = hf_config.get("model_type", "?")
        if self.model_type not in IMAGE_TYPES + VIDEO_TYPES:
            raise EncoderError(f"'{config.model}' is a '{self.model_type}' model; the hf video "
                               f"encoder takes {', '.join(IMAGE_TYPES + VIDEO_TYPES)}.")
        vision = hf_config.get("vision_config", hf_config) if self.model_type == "clip" else hf_config
        self.hidden = int(vision.get("hidden_size", 768))
        self.layers = int(vision.get("num_hidden_layers", 12))
        self.image_size = int(vision.get("image_size", 224))
        self.num_frames = int(vision.get("num_frames", 16))
        if config.pool == "auto":
            pool = "mean" if self.model_type in ("vit_mae", "videomae") else "cls"
            config = dataclasses.replace(config, pool=pool)
        super().__init__(config)
        self.mean, self.std, self.size = _image_processing(self._dir, self.image_size)
        self.model = None

    @property
    def is_video_model(self) -> bool:
        return self.model_type in VIDEO_TYPES

    # declarations ----------------------------------------------------------------------
    def weights_identity(self) -> dict[str, Any]:
        return weights_identity(self._dir, self._origin)

    def output_spec(self) -> OutputSpec:
        shape = (self.layers + 1, self.hidden) if self.config.layer == "all" else (self.hidden,)
        return OutputSpec(utterance_shape=shape, frame_dim=self.hidden, frame_rate=None)

    def preprocessing(self) -> dict[str, Any]:
        return {"image_size": self.size, "mean": self.mean, "std": self.std,
                "resize": "bilinear, antialias", "window_frames": self.num_frames
                if self.is_video_model else None}

    # work -------------------------------------------------------------------------------
    def load(self, device: str = "cpu", dtype: str = "fp32") -> None:
        if self.model is not None:
            return
        super().load(device, dtype)
        import torch

        kwargs = {"mask_ratio": 0.0} if self.model_type == "vit_mae" else {}
        model = load_model(self._dir, self.config.model, **kwargs)
        if self.model_type == "clip":
            model = model.vision_model
        self.model = model.to(device)
        self._torch = torch

    def encode_batch(self, items: Sequence[FaceInput]) -> list[Encoded | ClipError]:
        if self.model is None:
            self.load(self.device, self.dtype)
        results: list[Encoded | ClipError] = []
        units: list[tuple[int, np.ndarray]] = []  # (item, frame indices of one forward unit)
        for i, item in enumerate(items):
            faces = np.flatnonzero(item.mask)
            if len(faces) == 0:
                units.append((i, np.zeros(0, np.int64)))
                continue
            if self.is_video_model:
                units.extend((i, w) for w in _windows(faces, self.num_frames))
            else:
                units.extend((i, np.array([f])) for f in faces)
        vectors = self._forward(items, [u for u in units if len(u[1])])
        per_item: dict[int, list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]] = {}
        it = iter(vectors)
        for i, index in units:
            if len(index):
                frame, layers = next(it)
                per_item.setdefault(i, []).append((index, frame, layers))
        for i, item in enumerate(items):
            pieces = per_item.get(i)
            if not pieces:
                results.append(ClipError("faces", "no face detected in any frame"))
                continue
            results.append(self._assemble(item, pieces))
        return results

    def _assemble(self, item: FaceInput, pieces: list) -> Encoded:
        frame_vectors = np.stack([p[1] for p in pieces])
        if pieces[0][2] is None:
            utterance = frame_vectors.mean(0)
        else:
            utterance = np.stack([p[2] for p in pieces]).mean(0)
        info = {"face_fraction": float(np.mean(item.mask))}
        if self.is_video_model:
            centres = [int(p[0][len(p[0]) // 2]) for p in pieces]
            info["source_frames"] = centres
            times = np.asarray(item.times, np.float32)[centres]
            return Encoded(utterance=utterance.astype(np.float32),
                           frames=frame_vectors.astype(np.float32), frame_times=times, info=info)
        frames = np.zeros((len(item.mask), self.hidden), np.float32)
        for index, vector, _ in pieces:
            frames[index[0]] = vector
        return Encoded(utterance=utterance.astype(np.float32), frames=frames,
                       frame_times=np.asarray(item.times, np.float32), info=info)

    def _forward(self, items: Sequence[FaceInput], units: list[tuple[int, np.ndarray]]):
        torch = self._torch
        per_unit = self.num_frames if self.is_video_model else 1
        step = max(1, self.config.batch_frames // per_unit)
        out = []
        for start in range(0, len(units), step):
            chunk = units[start:start + step]
            faces = np.stack([items[i].faces[index] for i, index in chunk])  # (u, f, S, S, 3)
            pixels = self._pixels(faces)
            if not self.is_video_model:
                pixels = pixels[:, 0]
            with torch.inference_mode(), autocast(self.device, self.dtype):
                hidden = self.model(pixel_values=pixels, output_hidden_states=True).hidden_states
            frames, layers = select_layers(hidden, self.config.layer)
            out.extend(zip(self._pool(frames), self._pool_layers(layers, len(chunk))))
        return out

    def _pixels(self, faces: np.ndarray):
        """uint8 (u, f, S, S, 3) -> normalised float (u, f, 3, size, size) on the device."""
        torch = self._torch
        x = torch.from_numpy(faces).to(self.device)
        u, f = x.shape[:2]
        x = x.reshape(u * f, *x.shape[2:]).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[-1] != self.size or x.shape[-2] != self.size:
            x = torch.nn.functional.interpolate(x, size=(self.size, self.size), mode="bilinear",
                                                align_corners=False, antialias=True)
        mean = torch.tensor(self.mean, device=x.device)[None, :, None, None]
        std = torch.tensor(self.std, device=x.device)[None, :, None, None]
        return ((x - mean) / std).reshape(u, f, 3, self.size, self.size)

    def _pool(self, tokens) -> np.ndarray:
        """(units, tokens, dim) -> (units, dim): the [CLS] token, or the mean of the others."""
        first = 0 if self.is_video_model else 1  # VideoMAE has no [CLS] token
        pooled = tokens[:, 0] if self.config.pool == "cls" else tokens[:, first:].mean(1)
        return pooled.float().cpu().numpy()

    def _pool_layers(self, layers, n: int) -> list[np.ndarray | None]:
        """(layers, units, tokens, dim) -> per unit (layers, dim)."""
        if layers is None:
            return [None] * n
        first = 0 if self.is_video_model else 1
        pooled = layers[:, :, 0] if self.config.pool == "cls" else layers[:, :, first:].mean(2)
        return list(pooled.float().cpu().numpy().transpose(1, 0, 2))


def _windows(faces: np.ndarray, size: int) -> list[np.ndarray]:
    """Face-frame indices cut into windows of ``size``, each sampled uniformly (repeating
    frames when a window, or the whole track, is shorter than ``size``)."""
    n_windows = max(1, int(np.ceil(len(faces) / size)))
    bounds = np.linspace(0, len(faces), n_windows + 1)
    out = []
    for w in range(n_windows):
        lo, hi = bounds[w], bounds[w + 1]
        picks = np.floor(np.linspace(lo, hi, size, endpoint=False)).astype(np.int64)
        out.append(faces[np.clip(picks, 0, len(faces) - 1)])
    return out


def _read_json(path: Any) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise EncoderError(f"Cannot read '{path}': {e}") from e


def _image_processing(model_dir: Any, image_size: int) -> tuple[list[float], list[float], int]:
    """Mean, std and input side from the checkpoint's preprocessor_config.json (ImageNet
    statistics and the model's image size when it has none)."""
    path = model_dir / "preprocessor_config.json"
    if not path.is_file():
        return _IMAGENET[0], _IMAGENET[1], image_size
    cfg = _read_json(path)
    size = cfg.get("crop_size") or cfg.get("size") or image_size
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or image_size
    return (list(cfg.get("image_mean", _IMAGENET[0])), list(cfg.get("image_std", _IMAGENET[1])),
            int(size))
