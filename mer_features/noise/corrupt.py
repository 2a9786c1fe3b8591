"""Corrupted copies on disk: the same per-clip draws as in-pipeline noise, written as files.

For users who need files (to run other tools): every clip of a manifest is decoded, corrupted
with the noise keys of :mod:`mer_features.noise` using the same (seed, clip name, spec) draws as
``mer-features extract --noise``, and written under OUT with a manifest naming the copies and a
``noise`` column holding the draws (JSON).

* Audio files become WAV (32-bit float, the source's sample rate), so the written SNR is the
  drawn one exactly.
* Videos are re-encoded (H.264, every source frame, corrupted when the spec has video keys)
  with their audio track (corrupted when it has audio keys; AAC, so the written SNR is the
  drawn one up to the codec's loss). A video's audio is decoded at 48 kHz.

The draws match the pipeline's; the noise samples themselves match only where the sample
rate does (the pipeline mixes at the encoder's rate).

Nothing of the source is ever replaced: OUT must be a folder of its own (not the source
manifest's folder, nor a folder holding source clips, nor one where a written file would land
on a source file), checked before anything is written. Copies are named after their clips,
``clips/<name>.wav|.mp4``; a name that is not a safe file name as it is (spaces, slashes,
non-alphanumerics, more than 120 bytes) is sanitised and suffixed with a hash of the name, as
are names that differ only in letter case or Unicode normalisation (which case-insensitive
file systems would merge), so no copy ever overwrites another (:func:`file_stems`).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import unicodedata
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mer_features.corpora.manifest import Clip, read_manifest, write_manifest
from mer_features.decode import VIDEO_SUFFIXES
from mer_features.errors import ClipError, MerFeaturesError
from mer_features.files import atomic_path, temporary_path
from mer_features.noise.audio import NoiseFolder, corrupt_audio, open_folder
from mer_features.noise.spec import NoiseSpec, parse_noise
from mer_features.noise.video import corrupt_frames

VIDEO_AUDIO_RATE = 48000
_CHUNK_FRAMES = 32
_MAX_STEM_BYTES = 120


def corrupt_manifest(manifest: str | Path, noise: str | NoiseSpec, out: str | Path, *,
                     seed: int = 0, log=print) -> tuple[Path, int, list[tuple[str, str]]]:
    """Write corrupted copies of every clip and their manifest (OUT/manifest.csv).

    Returns the manifest path, the number of clips written, and (name, reason) per clip that
    could not be corrupted (left out of the new manifest).
    """
    spec = parse_noise(noise) if isinstance(noise, str) else noise
    source = read_manifest(manifest, classes=None)  # labels are copied, any label set
    out = Path(out)
    stems = file_stems(source.names)
    check_out_folder(out, Path(manifest), source, stems)
    (out / "clips").mkdir(parents=True, exist_ok=True)
    folder = open_folder(spec)
    babble = [c.audio_source for c in source if c.audio_source is not None]
    rows, failed = [], []
    for clip in source:
        try:
            row = _corrupt_clip(clip, spec, seed, out, folder, babble, stems[clip.name])
        except ClipError as e:
            failed.append((clip.name, f"{e.stage}: {e.reason}"))
            log(f"failed: clip '{clip.name}' at {e.stage}: {e.reason}")
            continue
        rows.append(row)
    columns = ["name", "video", "audio", "text", "discrete", "valence", "split", "noise"]
    extra = sorted({k for c in source for k in c.extra} - set(columns))
    path = write_manifest(out / "manifest.csv", rows, columns=(*columns, *extra))
    return path, len(rows), failed


def file_stems(names: Iterable[str]) -> dict[str, str]:
    """The file name stem of each clip's copies: unique, also on file systems that ignore case
    or Unicode normalisation, and at most about 140 bytes.

    A name that is a safe file name as it is stays as it is; otherwise it is sanitised
    (characters other than letters, digits, ``-_.`` become ``_``; a leading dot too),
    truncated to 120 bytes and suffixed with ``-`` and 8 hex digits of its BLAKE2b hash. Names
    whose stems still collide once case-folded and NFC-normalised all get the hash (32 hex
    digits if 8 are not enough).
    """
    names = list(names)
    stems = {}
    for name in names:
        safe = _safe(name)
        stems[name] = safe if safe == name else f"{safe}-{_name_hash(name, 8)}"

    def collisions() -> list[list[str]]:
        groups: dict[str, list[str]] = defaultdict(list)
        for name, stem in stems.items():
            groups[unicodedata.normalize("NFC", stem).casefold()].append(name)
        return [members for members in groups.values() if len(members) > 1]

    for digits in (8, 32):
        clashes = collisions()
        if not clashes:
            return stems
        for members in clashes:
            for name in members:
                stems[name] = f"{_safe(name)}-{_name_hash(name, digits)}"
    if collisions():  # only a name that spells another's hashed stem could get here
        shown = ", ".join(repr(n) for group in collisions() for n in group)
        raise MerFeaturesError(f"Clip names {shown} give the same file name; rename one.")
    return stems


def _name_hash(name: str, digits: int) -> str:
    return hashlib.blake2b(name.encode("utf-8", "surrogateescape"),
                           digest_size=16).hexdigest()[:digits]


def check_out_folder(out: Path, manifest: Path, source: Any, stems: dict[str, str]) -> None:
    """Refuse an OUT folder where writing could replace or mix with the source corpus."""
    if out.exists() and not out.is_dir():
        raise MerFeaturesError(f"`out` '{out}' exists and is not a folder; give a new folder for "
                               "the corrupted copies.")
    out_real = out.resolve()
    clips_real = (out / "clips").resolve()
    manifest_real = manifest.resolve()
    sources = {manifest_real}
    for clip in source:
        sources.update(p.resolve() for p in (clip.video, clip.audio) if p is not None)
    source_folders = {p.parent for p in sources}
    suggestion = manifest_real.parent.with_name(manifest_real.parent.name + "-noisy")
    for folder, what in ((out_real, "`out`"), (clips_real, "The clips/ folder of `out`")):
        if folder in source_folders:
            holds = "the source manifest" if folder == manifest_real.parent else "source clips"
            raise MerFeaturesError(
                f"{what} '{folder}' is a folder that holds {holds}; writing the corrupted "
                "copies there would replace or mix with the clean corpus. Give a folder of its "
                f"own, e.g. `out` {suggestion}.")
    written = [out_real / "manifest.csv"]
    for stem in stems.values():
        written += [clips_real / f"{stem}.wav", clips_real / f"{stem}.mp4"]
    clash = next((w for w in written if w.exists() and w.resolve() in sources), None)
    if clash is not None:
        raise MerFeaturesError(f"Writing to `out` '{out}' would replace the source file "
                               f"'{clash.resolve()}'. Give a folder of its own.")


def _corrupt_clip(clip: Clip, spec: NoiseSpec, seed: int, out: Path, folder: NoiseFolder | None,
                  babble: list[Path], stem: str) -> dict[str, Any]:
    row: dict[str, Any] = {"name": clip.name, "text": clip.text, "discrete": clip.discrete,
                           "valence": clip.valence, "split": clip.split, **clip.extra}
    draws: dict[str, Any] = {}
    others = [p for p in babble if p != clip.audio_source]
    if clip.audio is not None and clip.audio.suffix.lower() not in VIDEO_SUFFIXES:
        target = out / "clips" / f"{stem}.wav"
        waveform, rate = _read_audio_file(clip.audio)
        if spec.has_audio:
            waveform, draws["audio"] = corrupt_audio(clip.name, waveform, rate,
                                                     spec.restricted("audio"), seed,
                                                     babble_sources=others, folder=folder)
        with atomic_path(target) as tmp:
            _write_wav(tmp, waveform, rate)
        row["audio"] = str(target.relative_to(out))
    if clip.video is not None:
        target = out / "clips" / f"{stem}.mp4"
        audio_noise = spec.has_audio and clip.audio is None
        draws.update(_corrupt_video(clip, spec, seed, target, audio_noise, others, folder))
        row["video"] = str(target.relative_to(out))
    if clip.video is None and clip.audio is None:
        raise ClipError("input", "the clip names no media file")
    row["noise"] = json.dumps(draws, sort_keys=True)
    return row


def _safe(name: str) -> str:
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    if safe.startswith("."):  # no hidden files, no '.' or '..'
        safe = "_" + safe[1:]
    cut = safe.encode("utf-8", "surrogateescape")[:_MAX_STEM_BYTES]
    return cut.decode("utf-8", "ignore")


def _read_audio_file(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # noqa: BLE001
        raise ClipError("decode", f"cannot read '{path.name}' as audio ({e})") from e
    return data.mean(axis=1), rate


def _write_wav(path: Path, waveform: np.ndarray, rate: int) -> None:
    import soundfile as sf

    sf.write(str(path), waveform, rate, subtype="FLOAT", format="WAV")


def _corrupt_video(clip: Clip, spec: NoiseSpec, seed: int, target: Path, audio_noise: bool,
                   others: list[Path], folder: NoiseFolder | None) -> dict[str, Any]:
    import decord
    import imageio_ffmpeg

    from mer_features.decode.audio import load_audio

    try:
        reader = decord.VideoReader(str(clip.video), ctx=decord.cpu(0))
        n, fps = len(reader), float(reader.get_avg_fps())
        first = reader[0].asnumpy()
    except Exception as e:  # noqa: BLE001 - decord raises its own and runtime errors
        raise ClipError("decode", f"cannot read '{clip.video.name}' as a video ({e})") from e
    height, width = first.shape[:2]
    draws: dict[str, Any] = {}
    wav = temporary_path(target.with_suffix(".wav"))  # the audio track, muxed in by ffmpeg
    audio_in: list[str] = []
    try:
        waveform = None
        try:
            waveform = load_audio(clip.video, VIDEO_AUDIO_RATE)
        except ClipError:
            pass  # a video without a usable audio track is copied without one
        if waveform is not None:
            if audio_noise:
                waveform, draws["audio"] = corrupt_audio(clip.name, waveform, VIDEO_AUDIO_RATE,
                                                         spec.restricted("audio"), seed,
                                                         babble_sources=others, folder=folder)
            _write_wav(wav, waveform, VIDEO_AUDIO_RATE)
            audio_in = ["-i", str(wav), "-map", "0:v", "-map", "1:a", "-c:a", "aac", "-b:a", "192k"]
        with atomic_path(target) as tmp:
            cmd = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo",
                   "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:.6f}", "-i", "-",
                   *audio_in, "-c:v", "libx264", "-crf", "18", "-preset", "veryfast",
                   "-pix_fmt", "yuv420p", "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-f", "mp4",
                   str(tmp)]
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                for start in range(0, n, _CHUNK_FRAMES):
                    try:
                        frames = reader.get_batch(list(range(start, min(n, start + _CHUNK_FRAMES)))
                                                  ).asnumpy()
                    except Exception:  # noqa: BLE001 - a truncated file: keep what decoded
                        draws["truncated_at_frame"] = start
                        break
                    if spec.has_video:
                        frames, drawn = corrupt_frames(clip.name, frames,
                                                       spec.restricted("video"), seed)
                        draws["video"] = drawn
                    proc.stdin.write(np.ascontiguousarray(frames).tobytes())
            finally:
                proc.stdin.close()
                stderr = proc.stderr.read().decode(errors="replace")
                proc.wait()
            if proc.returncode != 0:
                raise ClipError("write", f"ffmpeg could not write '{target.name}': "
                                         f"{stderr.strip()[-300:]}")
    finally:
        wav.unlink(missing_ok=True)
    return draws

