"""Video noise: the ``blur``, ``scale`` and ``jpeg`` keys, applied to decoded frames.

``blur=1|2|4``
    pyramid blur: the frames go ``log2(factor)`` times down a Gaussian pyramid and back up
    (cv2.pyrDown/pyrUp, the challenge's scheme), the factor drawn per clip from the set.
``scale=S``
    resize frames by S in (0, 1] and back to their size (lost resolution, same geometry).
``jpeg=Q``
    JPEG-compress every frame at quality Q (1-100).

Keys apply in registry order (blur, scale, jpeg) with one random stream per clip
(:func:`~mer_features.noise.spec.clip_rng`); what was drawn is recorded per key in
``clips/info['noise']``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from mer_features.noise.spec import NoiseKey, NoiseSpec, clip_rng, register_noise_key


def corrupt_frames(name: str, frames: np.ndarray, spec: NoiseSpec,
                   seed: int) -> tuple[np.ndarray, dict[str, Any]]:
    """Apply the spec's video keys to uint8 frames (n, H, W, 3); returns the frames and, per
    key, what was drawn."""
    rng = clip_rng(seed, name, spec, "video")
    info: dict[str, Any] = {}
    for key, value in spec.applied("video"):
        frames, info[key.name] = key.apply(frames, value, rng)
    return frames, info


_PYR = np.array([1, 4, 6, 4, 1], np.float32) / 16


def _blur_axis(x: np.ndarray, axis: int) -> np.ndarray:
    from scipy.ndimage import convolve1d

    return convolve1d(x, _PYR, axis=axis, mode="reflect")


def pyr_down(frames: np.ndarray) -> np.ndarray:
    """cv2.pyrDown on (n, H, W, 3) float: 5x5 Gaussian, then every second row and column."""
    x = _blur_axis(_blur_axis(frames, 1), 2)
    return x[:, ::2, ::2]


def pyr_up(frames: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """cv2.pyrUp to ``shape`` (H, W): zero-insertion, then the 5x5 Gaussian times 4."""
    n, h, w, c = frames.shape
    up = np.zeros((n, shape[0], shape[1], c), np.float32)
    up[:, ::2, ::2] = frames[:, : (shape[0] + 1) // 2, : (shape[1] + 1) // 2]
    return _blur_axis(_blur_axis(up, 1), 2) * 4


def pyramid_blur(frames: np.ndarray, factor: int) -> np.ndarray:
    """Down ``log2(factor)`` pyramid levels and back up; uint8 (n, H, W, 3) in and out.

    Frame by frame, so a clip of full-HD frames never needs more than one frame in float.
    """
    if factor == 1:
        return frames
    out = np.empty_like(frames)
    for i in range(len(frames)):
        x = frames[i:i + 1].astype(np.float32)
        shapes = []
        for _ in range(int(round(math.log2(factor)))):
            shapes.append(x.shape[1:3])
            x = pyr_down(x)
        for shape in reversed(shapes):
            x = pyr_up(x, shape)
        out[i] = np.clip(np.rint(x[0]), 0, 255).astype(np.uint8)
    return out


def rescale(frames: np.ndarray, scale: float) -> np.ndarray:
    """Resize by ``scale`` and back (antialiased bilinear): lost resolution, same size."""
    import torch

    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
    h, w = x.shape[-2:]
    small = torch.nn.functional.interpolate(x, size=(max(1, round(h * scale)), max(1, round(w * scale))),
                                            mode="bilinear", antialias=True, align_corners=False)
    back = torch.nn.functional.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
    return back.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def jpeg(frames: np.ndarray, quality: int) -> np.ndarray:
    import io

    from PIL import Image

    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="JPEG", quality=quality)
        out[i] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return out


# --------------------------------------------------------------------------------------------
# The keys

BLUR_FACTORS = (1, 2, 4, 8)


def _parse_blur(value: str) -> tuple[int, ...]:
    factors = tuple(int(v) for v in value.split("|"))
    if (not factors or any(f not in BLUR_FACTORS for f in factors)
            or len(set(factors)) != len(factors)):
        raise ValueError
    return factors


def _blur(frames: np.ndarray, factors: tuple[int, ...], rng: np.random.Generator
          ) -> tuple[np.ndarray, int]:
    factor = int(factors[int(rng.integers(len(factors)))])
    return pyramid_blur(frames, factor), factor


def _parse_scale(value: str) -> float:
    scale = float(value)
    if not 0 < scale <= 1:  # False for NaN
        raise ValueError
    return scale


def _parse_jpeg(value: str) -> int:
    quality = int(value)
    if not 1 <= quality <= 100:
        raise ValueError
    return quality


def _label(name: str):
    return lambda values, result: f"{name} {values[name]}"


def _blur_level(level: str, options: Mapping[str, str]) -> tuple[str, str] | None:
    """``blur4`` -> (``blur=4``, tag ``blur4``)."""
    found = re.fullmatch(r"blur(\d+)", level)
    return (f"blur={found.group(1)}", level) if found else None


register_noise_key(NoiseKey(
    name="blur", side="video", example="blur=1|2|4",
    rule=f"blur takes distinct factors from {', '.join(map(str, BLUR_FACTORS))} separated by | "
         "(blur=1|2|4)",
    parse=_parse_blur, text=lambda factors: "|".join(str(f) for f in factors),
    describe=_label("blur"), level=_blur_level, level_help="blurF (blur4)", apply=_blur))
register_noise_key(NoiseKey(
    name="scale", side="video", example="scale=0.5",
    rule="scale takes a number in (0, 1] (scale=0.5)",
    parse=_parse_scale, text=lambda scale: f"{scale:g}", describe=_label("scale"),
    apply=lambda frames, scale, rng: (rescale(frames, scale), scale)))
register_noise_key(NoiseKey(
    name="jpeg", side="video", example="jpeg=30",
    rule="jpeg takes an integer quality from 1 to 100 (jpeg=30)",
    parse=_parse_jpeg, text=str, describe=_label("jpeg"),
    apply=lambda frames, quality, rng: (jpeg(frames, quality), quality)))
