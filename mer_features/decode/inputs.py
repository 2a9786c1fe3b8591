"""What the decoders hand the encoders: one type per kind of input.

These live with the decoders, not the encoders, so that decoding, face tracking and noise never
import an encoder; an encoder's ``encode_batch`` takes a list of one of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["AudioInput", "FaceInput", "TextInput"]


@dataclass
class AudioInput:
    """A decoded audio clip: ``waveform`` is mono float32 of shape (n_samples,) at ``sample_rate``."""

    name: str
    waveform: np.ndarray
    sample_rate: int
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def duration(self) -> float:
        return len(self.waveform) / self.sample_rate


@dataclass
class TextInput:
    """A transcript to encode (non-empty; empty transcripts never reach an encoder)."""

    name: str
    text: str

    @property
    def duration(self) -> float:
        return float("nan")


@dataclass
class FaceInput:
    """A clip's face track, ready for an image or video encoder.

    ``faces`` is uint8 of shape (n_frames, face_size, face_size, 3), RGB; ``mask`` (n_frames,)
    bool is True where a face was found (other frames hold zeros); ``times`` (n_frames,) are
    frame times in seconds; ``boxes`` (n_frames, 4) float32 x1, y1, x2, y2 in source pixels
    (NaN without a face) and ``probs`` (n_frames,) detection confidences (0 without a face).
    """

    name: str
    faces: np.ndarray
    mask: np.ndarray
    times: np.ndarray
    boxes: np.ndarray
    probs: np.ndarray
    fps: float = float("nan")
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Decoding details (sampled frame indices, noise draws) when tracked in a worker."""

    @property
    def duration(self) -> float:
        return float(self.times[-1]) if len(self.times) else 0.0
