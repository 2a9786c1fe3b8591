"""Corrupted copies on disk: the same per-clip draws as in-pipeline noise, written as files.

For users who need files (to run other tools): every clip of a manifest is decoded, corrupted
with :mod:`mer_features.noise` using the same (seed, clip name, spec) draws as
``mer-features extract --noise``, and written under OUT with a manifest naming the copies and a
``noise`` column holding the draws (JSON).

* Audio files become WAV (32-bit float, the source's sample rate), so the written SNR is the
  drawn one exactly.
* Videos are re-encoded (H.264, every source frame, corrupted when the spec has video keys)
  with their audio track (corrupted when it has audio keys; AAC, so the written SNR is the
  drawn one up to the codec's loss). A video's audio is decoded at 48 kHz.

The draws match the pipeline's; the noise samples themselves match only where the sample
rate does (the pipeline mixes at the encoder's rate).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.errors import ClipError
from mer_features.manifest import Clip, read_manifest, write_manifest
from mer_features.media import VIDEO_SUFFIXES
from mer_features.noise import NoiseFolder, NoiseSpec, corrupt_audio, corrupt_frames, parse_noise

VIDEO_AUDIO_RATE = 48000
_CHUNK_FRAMES = 32


def corrupt_manifest(manifest: str | Path, noise: str | NoiseSpec, out: str | Path, *,
                     seed: int = 0, log=print) -> tuple[Path, int, list[tuple[str, str]]]:
    """Write corrupted copies of every clip and their manifest (OUT/manifest.csv).

    Returns the manifest path, the number of clips written, and (name, reason) per clip that
    could not be corrupted (left out of the new manifest).
    """
    spec = parse_noise(noise) if isinstance(noise, str) else noise
    source = read_manifest(manifest)
    out = Path(out)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    folder = (NoiseFolder(spec.source) if spec.has_audio and spec.source not in ("white", "pink", "babble")
              else None)
    babble = [c.audio_source for c in source if c.audio_source is not None]
    rows, failed = [], []
    for clip in source:
        try:
            row = _corrupt_clip(clip, spec, seed, out, folder, babble)
        except ClipError as e:
            failed.append((clip.name, f"{e.stage}: {e.reason}"))
            log(f"failed: clip '{clip.name}' at {e.stage}: {e.reason}")
            continue
        rows.append(row)
    columns = ["name", "video", "audio", "text", "discrete", "valence", "split", "noise"]
    extra = sorted({k for c in source for k in c.extra} - set(columns))
    path = write_manifest(out / "manifest.csv", rows, columns=(*columns, *extra))
    return path, len(rows), failed


def _corrupt_clip(clip: Clip, spec: NoiseSpec, seed: int, out: Path, folder: NoiseFolder | None,
                  babble: list[Path]) -> dict[str, Any]:
    row: dict[str, Any] = {"name": clip.name, "text": clip.text, "discrete": clip.discrete,
                           "valence": clip.valence, "split": clip.split, **clip.extra}
    draws: dict[str, Any] = {}
    others = [p for p in babble if p != clip.audio_source]
    if clip.audio is not None and clip.audio.suffix.lower() not in VIDEO_SUFFIXES:
        target = out / "clips" / f"{_safe(clip.name)}.wav"
        waveform, rate = _read_audio_file(clip.audio)
        if spec.has_audio:
            waveform, draws["audio"] = corrupt_audio(clip.name, waveform, rate, spec, seed,
                                                     babble_sources=others, folder=folder)
        _write_wav(target, waveform, rate)
        row["audio"] = str(target.relative_to(out))
    if clip.video is not None:
        target = out / "clips" / f"{_safe(clip.name)}.mp4"
        audio_noise = spec.has_audio and clip.audio is None
        draws.update(_corrupt_video(clip, spec, seed, target, audio_noise, others, folder))
        row["video"] = str(target.relative_to(out))
    if clip.video is None and clip.audio is None:
        raise ClipError("input", "the clip names no media file")
    row["noise"] = json.dumps(draws, sort_keys=True)
    return row


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _read_audio_file(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise ClipError("decode", f"cannot read '{path.name}' as audio ({e})") from e
    return data.mean(axis=1), rate


def _write_wav(path: Path, waveform: np.ndarray, rate: int) -> None:
    import soundfile as sf

    tmp = path.with_name(f".{path.name}.tmp")
    sf.write(str(tmp), waveform, rate, subtype="FLOAT", format="WAV")
    os.replace(tmp, path)


def _corrupt_video(clip: Clip, spec: NoiseSpec, seed: int, target: Path, audio_noise: bool,
                   others: list[Path], folder: NoiseFolder | None) -> dict[str, Any]:
    import decord
    import imageio_ffmpeg

    from mer_features.media import load_audio

    try:
        reader = decord.VideoReader(str(clip.video), ctx=decord.cpu(0))
        n, fps = len(reader), float(reader.get_avg_fps())
        first = reader[0].asnumpy()
    except Exception as e:  # noqa: BLE001 - decord raises its own and runtime errors
        raise ClipError("decode", f"cannot read '{clip.video.name}' as a video ({e})") from e
    height, width = first.shape[:2]
    draws: dict[str, Any] = {}
    tmp = target.with_name(f".{target.name}.tmp.mp4")
    wav = target.with_name(f".{target.name}.tmp.wav")
    audio_in: list[str] = []
    try:
        waveform = None
        try:
            waveform = load_audio(clip.video, VIDEO_AUDIO_RATE)
        except ClipError:
            pass  # a video without a usable audio track is copied without one
        if waveform is not None:
            if audio_noise:
                waveform, draws["audio"] = corrupt_audio(clip.name, waveform, VIDEO_AUDIO_RATE, spec,
                                                         seed, babble_sources=others, folder=folder)
            _write_wav(wav, waveform, VIDEO_AUDIO_RATE)
            audio_in = ["-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "192k"]
        cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
               "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:.6f}", "-i", "-",
               *audio_in, "-c:v", "libx264", "-crf", "18", "-preset", "veryfast",
               "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", str(tmp)]
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            for start in range(0, n, _CHUNK_FRAMES):
                try:
                    frames = reader.get_batch(list(range(start, min(n, start + _CHUNK_FRAMES)))).asnumpy()
                except Exception:  # noqa: BLE001 - a truncated file: keep what decoded
                    draws["truncated_at_frame"] = start
                    break
                if spec.has_video:
                    frames, drawn = corrupt_frames(clip.name, frames, spec, seed)
                    draws["video"] = drawn
                proc.stdin.write(np.ascontiguousarray(frames).tobytes())
        finally:
            proc.stdin.close()
            stderr = proc.stderr.read().decode(errors="replace")
            proc.wait()
        if proc.returncode != 0:
            raise ClipError("write", f"ffmpeg could not write '{target.name}': {stderr.strip()[-300:]}")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
        wav.unlink(missing_ok=True)
    return draws

