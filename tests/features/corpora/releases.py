"""Tiny media for the importers' tests: each test writes a copy of a release's exact layout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

_MP4: dict[str, Path] = {}


def tiny_wav(path: Path, seconds: float = 0.1, rate: int = 16000) -> Path:
    """A short tone at ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(seconds * rate)) / rate
    sf.write(path, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), rate,
             format="FLAC" if path.suffix == ".flac" else None)
    return path


def tiny_mp4(path: Path, cache: Path) -> Path:
    """A 0.2 s mp4 with an audio track at ``path``, encoded once into ``cache`` and copied."""
    import imageio_ffmpeg

    source = cache / "tiny.mp4"
    if not source.exists():
        cache.mkdir(parents=True, exist_ok=True)
        subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-y",
                        "-f", "lavfi", "-i", "testsrc=size=32x32:rate=10:duration=0.2",
                        "-f", "lavfi", "-i", "sine=frequency=220:duration=0.2",
                        "-shortest", "-pix_fmt", "yuv420p", str(source)], check=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, path)
    return path


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path
