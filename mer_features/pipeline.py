"""Extraction: manifest rows -> decoded media -> batches -> (faces) -> encoder -> store.

What differs between audio, text and video lives in :mod:`mer_features.modalities`; this module
schedules the work. Decoding runs in DataLoader worker processes while the encoder works on the
previous batch.
Clips are read in order of decreasing file size (a proxy for duration that needs no decoding),
then, within a bounded window, sorted by their real length and cut into batches by clip count
and padded duration, so padding stays small and memory stays bounded whatever the corpus size.
Light CPU encoders (openSMILE) run inside the workers instead, one clip at a time.

A clip that fails (cannot be decoded, no audio track, too short) is recorded in the store with
its stage and reason, and the run goes on; ``fail_fast`` stops at the first failure instead,
keeping what was already written.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mer_features.errors import ClipError, EncoderError, ExtractionInterrupted, MerFeaturesError
from mer_features.manifest import (Clip, Manifest, check_modality, check_transcripts,
                                   read_manifest)
from mer_features.modalities import Modality, VideoOptions, make_modality
from mer_features.store import SCHEMA_VERSION, ClipRecord, StoreHeader, StoreWriter

DTYPES = ("fp32", "bf16", "fp16")
STORAGE_DTYPES = ("float32", "float16")


class ClipFailedError(MerFeaturesError):
    """Raised with ``fail_fast`` at the first clip that fails."""


class WorkerDiedError(MerFeaturesError):
    """A decoding worker process died (killed, or crashed inside a native decoder)."""


@dataclass
class ExtractSummary:
    """What a run did; ``failures`` lists (name, stage, reason) of this run's failed clips."""

    store: Path
    modality: str
    encoder: str
    total: int = 0
    done: int = 0
    skipped: int = 0
    failed: int = 0
    missing: int = 0
    empty: int = 0
    truncated: int = 0
    dropped: int = 0
    seconds: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)

    def line(self) -> str:
        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        empty = f", {self.empty} empty" if self.empty else ""
        dropped = f", {self.dropped} dropped (not in the manifest)" if self.dropped else ""
        return (f"{self.modality}/{self.encoder}: {self.total} clips - {self.done} extracted, "
                f"{self.skipped} already stored, {self.failed} failed, {self.missing} missing"
                f"{empty}{dropped} - {self.seconds:.1f} s ({rate:.1f} clips/s) -> {self.store}")


@dataclass
class _Work:
    """One clip to decode (and, for in-worker encoders, encode)."""

    clip: Clip
    input_hash: str


@dataclass
class _Decoded:
    name: str
    input_hash: str
    item: Any = None           # what the encoder takes (AudioInput, TextInput, FaceInput)
    encoded: Any = None        # Encoded when the worker already ran the encoder
    error: ClipError | None = None
    length: float = 0.0        # for batching: seconds of audio or video
    info: dict[str, Any] = field(default_factory=dict)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise EncoderError(f"Device '{device}' was asked for but no CUDA GPU is visible; "
                               "use --device cpu or auto.")
    elif device != "cpu":
        raise EncoderError(f"Unknown device '{device}'; use auto, cpu, cuda or cuda:N.")
    return device


def auto_workers(device: str, modality: str, encoder_in_workers: bool) -> int:
    """Decoding processes when none are given.

    A neural audio encoder on the CPU already keeps every core busy; decoding beside it (a few
    percent of the work) only takes cores from it, so clips are decoded in this process
    (measured with HuBERT-base on a 2-core CPU, benchmarks/bench_audio.py: about 5% faster than
    two workers). Video on the CPU tracks faces in the workers, one detector per core;
    openSMILE runs in the workers; on a GPU the workers keep it fed.
    """
    if device == "cpu" and modality == "audio" and not encoder_in_workers:
        return 0
    return max(1, min(os.cpu_count() or 1, 8))


def auto_batch_size(device: str, dtype: str, modality: str = "audio") -> int:
    """Clips per encoder call when none is given.

    Measured with HuBERT-base on a 2-core AVX-512/AMX CPU (benchmarks/bench_audio.py): in fp32,
    batches are no faster than one clip at a time (the same matrix-product efficiency, larger
    activations, padding), while in bf16 batches of 8 are about 15% faster (fewer, larger
    bf16 products). GPUs need large batches to be busy. Text encoders cut their own batches by
    token count, and video batches feed the face detector frames from several clips at once.
    """
    if modality == "text":
        return 256 if device.startswith("cuda") else 64
    if modality == "video":
        return 16 if device.startswith("cuda") else 4
    if device.startswith("cuda"):
        return 32
    return 8 if dtype == "bf16" else 1


def build_header(encoder: Any, *, storage_dtype: str, dtype: str, modality: Modality | None = None,
                 noise: Mapping[str, Any] | None = None) -> StoreHeader:
    """The store header, whose fingerprint covers everything that changes the numbers."""
    spec = encoder.output_spec()
    preprocessing = dict(encoder.preprocessing())
    if modality is not None:
        preprocessing.update(modality.fields())
    fields = {
        "schema_version": SCHEMA_VERSION,
        "modality": encoder.modality,
        "encoder": encoder.name,
        "encoder_version": encoder.version,
        "weights": encoder.weights_identity(),
        "config": asdict(encoder.config),
        "preprocessing": preprocessing,
        "noise": dict(noise) if noise else None,
        "compute_dtype": dtype if encoder.uses_dtype else "fp32",
        "storage_dtype": storage_dtype,
    }
    return StoreHeader(modality=encoder.modality, encoder=encoder.describe(),
                       encoder_version=encoder.version, fields=fields,
                       utterance_shape=tuple(spec.utterance_shape), frame_dim=spec.frame_dim,
                       frame_rate=spec.frame_rate, storage_dtype=storage_dtype,
                       frame_extras=modality.frame_extras() if modality is not None else ())


def extract(manifest: str | Path | Manifest, out: str | Path, *, modality: str = "audio",
            encoder: str | None = None, encoder_options: Mapping[str, Any] | None = None,
            device: str = "auto", dtype: str = "fp32", storage_dtype: str = "float32",
            batch_size: int | None = None, batch_seconds: float = 160.0, workers: int | None = None,
            overwrite: bool = False, fail_fast: bool = False, skip_missing: bool = False,
            retry_failed: bool = False, commit_every: int = 256, progress: bool | None = None,
            text_column: str = "text", video: VideoOptions | None = None,
            noise: Any = None, seed: int = 0, shard: Any = None, prune: bool = False,
            log: Callable[[str], None] | None = None) -> ExtractSummary:
    """Extract one modality's features for every clip of a manifest into a store.

    Clips already in the store from the same input are skipped, so a re-run (or a run after a
    crash) only does what is left. Returns an :class:`ExtractSummary`.

    Parameters
    ----------
    batch_size : at most this many clips per encoder call; None picks one for the device and
        dtype (:func:`auto_batch_size`).
    batch_seconds : at most this much padded audio (clips x longest clip) per encoder call.
    workers : decoding processes (0 decodes in this process); None: :func:`auto_workers`.
    storage_dtype : "float32", or "float16" to halve the store's size.
    commit_every : finished clips are written to disk (a part file) at least every this many
        clips; a killed run loses at most this many clips' work.
    text_column : text modality: the manifest column holding the transcripts.
    video : video modality: frame rate, frame cap and face crop options.
    noise, seed : a noise spec (text or :class:`mer_features.noise.NoiseSpec`) applied to the
        decoded media before the encoder, with per-clip draws fixed by (seed, clip, spec).
    shard : a :class:`mer_features.distributed.Shard`: only the manifest's clips of that shard.
    prune : drop the clips of an existing store that the manifest (or shard) does not list;
        without it such a store is refused before any work, naming them.
    """
    from mer_features.encoders import DEFAULT_ENCODERS, create_encoder

    log = log or (lambda message: print(message, file=sys.stderr))
    started = time.perf_counter()
    if dtype not in DTYPES:
        raise EncoderError(f"dtype must be one of {', '.join(DTYPES)}; got '{dtype}'.")
    if storage_dtype not in STORAGE_DTYPES:
        raise EncoderError(f"storage dtype must be one of {', '.join(STORAGE_DTYPES)}; got '{storage_dtype}'.")
    for what, value, ok in (("batch_size", batch_size, batch_size is None or batch_size >= 1),
                            ("batch_seconds", batch_seconds, batch_seconds > 0),  # False for NaN
                            ("workers", workers, workers is None or workers >= 0),
                            ("commit_every", commit_every, commit_every >= 1),
                            ("seed", seed, seed >= 0)):
        if not ok:
            bound = {"batch_seconds": "> 0", "workers": ">= 0", "seed": ">= 0"}.get(what, ">= 1")
            raise EncoderError(f"{what} must be {bound}; got {value!r}. Pass "
                               f"--{what.replace('_', '-')} a value in range.")
    if isinstance(noise, str):  # a bad spec or noise folder is refused before anything else
        from mer_features.noise import parse_noise

        noise = parse_noise(noise)
    if not isinstance(manifest, Manifest):
        manifest = read_manifest(manifest, check_files=False)
    if modality == "text":  # on the whole manifest: a shard may hold only empty transcripts
        check_transcripts(manifest, text_column)
    if shard is not None:
        manifest = Manifest(manifest.path, [c for c in manifest if shard.holds(c.name)],
                            manifest.columns)
    usable, missing = check_modality(manifest, modality, skip_missing=skip_missing,
                                     text_column=text_column)

    enc = create_encoder(modality, encoder or DEFAULT_ENCODERS[modality], encoder_options)
    if storage_dtype == "float16" and not enc.float16_safe:
        raise EncoderError(f"Encoder '{enc.describe()}' gives values beyond float16's range "
                           "(+-65504), which a float16 store would hold as inf; use "
                           "--storage-dtype float32.")
    device = resolve_device(device) if enc.uses_dtype or not enc.runs_in_workers else "cpu"
    if dtype == "fp16" and device == "cpu" and enc.uses_dtype:
        raise EncoderError("fp16 needs a GPU; on the CPU use --dtype bf16 (or fp32).")
    if workers is None:
        workers = auto_workers(device, modality, enc.runs_in_workers)
    kind = make_modality(modality, text_column=text_column, video=video, device=device,
                         noise=noise, seed=seed,
                         babble=[c.audio_source for c in usable] if modality == "audio" else (),
                         workers=workers)
    header = build_header(enc, storage_dtype=storage_dtype, dtype=dtype, modality=kind,
                          noise=kind.noise_fields())
    if batch_size is None:
        batch_size = auto_batch_size(device, dtype, modality)
    summary = ExtractSummary(store=Path(out), modality=modality, encoder=enc.describe(),
                             total=len(manifest))

    writer = StoreWriter(out, header, overwrite=overwrite, part_clips=commit_every)
    try:
        scope = f"manifest '{manifest.path}'" + (f" (shard {shard.index}/{shard.count})"
                                                 if shard is not None else "")
        summary.dropped = writer.restrict_to([c.name for c in manifest], prune=prune, source=scope)
        if writer.damaged:
            log(f"warning: {len(writer.damaged)} clip(s) of '{out}' fail their checksums (the "
                f"file was damaged on disk: {', '.join(writer.damaged[:5])}"
                f"{', ...' if len(writer.damaged) > 5 else ''}); they are extracted again")
        writer.set_labels({c.name: (c.discrete or "", math.nan if c.valence is None else c.valence,
                                    c.split or "") for c in manifest})
        for clip, reason in missing:
            if not writer.is_done(clip.name, "missing"):
                writer.add(ClipRecord(name=clip.name, status="missing", stage="input",
                                      reason=reason, input_hash="missing"))
            summary.missing += 1
        hashes = kind.input_hashes(usable)
        todo = []
        for clip, input_hash in zip(usable, hashes):
            if writer.is_done(clip.name, input_hash, retry_failed=retry_failed):
                summary.skipped += 1
                continue
            settled = kind.precheck(clip)
            if settled is None:
                todo.append(_Work(clip, input_hash))
                continue
            writer.add(ClipRecord(name=clip.name, status=settled.status, stage=settled.stage,
                                  reason=settled.reason, input_hash=input_hash))
            if settled.status == "empty":
                summary.empty += 1
            else:
                summary.failed += 1
                summary.failures.append((clip.name, settled.stage, settled.reason))
                if fail_fast:
                    raise ClipFailedError(f"Clip '{clip.name}' failed at stage '{settled.stage}': "
                                          f"{settled.reason}. Stopped because of --fail-fast.")
        if todo:
            if not enc.runs_in_workers:
                enc.load(device, dtype)
            _run(todo, enc, kind, writer, summary, batch_size=batch_size,
                 batch_seconds=batch_seconds, workers=workers if kind.uses_workers else 0,
                 fail_fast=fail_fast, progress=progress, log=log)
        if summary.truncated:
            log(f"warning: {summary.truncated} input(s) were longer than the encoder's limit and "
                "were truncated (clips/info has 'truncated': true)")
    except ClipFailedError:
        writer.close()  # a deliberate stop: leave a complete store of what was done
        raise
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM through the CLI's handler
        writer.close()
        raise ExtractionInterrupted(out, kept=len(writer.done), extracted=summary.done) from e
    except RuntimeError as e:
        writer.abort()  # what was finished goes to a part file; the next run merges it
        if "DataLoader worker" in str(e):
            raise WorkerDiedError(
                f"A decoding worker process died ({' '.join(str(e).split())}). Every finished "
                "clip is kept; run the same command again to resume. If it happens again, a "
                "file crashes the decoder: run with --workers 0 to find it."
            ) from e
        raise
    except BaseException:
        writer.abort()
        raise
    writer.close()
    summary.seconds = time.perf_counter() - started
    return summary


def _run(todo: list[_Work], enc: Any, kind: Modality, writer: StoreWriter,
         summary: ExtractSummary, *, batch_size: int, batch_seconds: float, workers: int,
         fail_fast: bool, progress: bool | None, log: Callable[[str], None]) -> None:
    from tqdm.auto import tqdm

    todo.sort(key=lambda w: (-_size(w.clip.media_for(kind.name)), w.clip.name))
    bar = tqdm(total=len(todo), unit="clip", desc=f"{kind.name}/{enc.describe()}",
               disable=(not progress) if progress is not None else None, dynamic_ncols=True,
               smoothing=0.1)
    shown = 0

    def record(decoded: _Decoded, result: Any, item: Any = None) -> None:
        nonlocal shown
        if not isinstance(result, ClipError):
            try:
                extras = kind.extras(item, result) if item is not None else {}
            except ClipError as e:
                result = e
        if not isinstance(result, ClipError):
            problem = writer.storage_problem(result.utterance, result.frames)
            if problem is not None:
                result = ClipError("store", problem)
        if isinstance(result, ClipError):
            rec = ClipRecord(name=decoded.name, status="failed", stage=result.stage,
                             reason=result.reason, input_hash=decoded.input_hash,
                             duration=decoded.length or math.nan, info=decoded.info)
            writer.add(rec)
            summary.failed += 1
            summary.failures.append((decoded.name, result.stage, result.reason))
            if fail_fast:
                raise ClipFailedError(
                    f"Clip '{decoded.name}' failed at stage '{result.stage}': {result.reason}. "
                    "Stopped because of --fail-fast; clips done so far are kept in the store.")
            if shown < 10:
                bar.write(f"failed: clip '{decoded.name}' at {result.stage}: {result.reason}")
                shown += 1
                if shown == 10:
                    bar.write("(further failures are not printed; 'mer-features info STORE' lists all)")
        else:
            info = {**decoded.info, **result.info}
            summary.truncated += bool(info.get("truncated"))
            writer.add(ClipRecord(name=decoded.name, utterance=result.utterance,
                                  frames=result.frames, frame_times=result.frame_times,
                                  frame_extras=extras, input_hash=decoded.input_hash,
                                  duration=decoded.length or math.nan, info=info))
            summary.done += 1
        bar.update(1)

    def prepare(batch: list[_Decoded]) -> tuple[list[_Decoded], list[_Decoded], list[Any]]:
        ready = [d for d in batch if d.error is not None or d.encoded is not None]
        pending = [d for d in batch if d.error is None and d.encoded is None]
        prepared = (kind.prepare([d.name for d in pending], [d.item for d in pending])
                    if pending else [])
        return ready, pending, prepared

    def finish(ready: list[_Decoded], pending: list[_Decoded], prepared: list[Any]) -> None:
        for d in ready:
            record(d, d.error if d.error is not None else d.encoded)
        for d, item in zip(pending, prepared):
            if isinstance(item, ClipError):
                record(d, item)
        pending = [(d, item) for d, item in zip(pending, prepared)
                   if not isinstance(item, ClipError)]
        if pending:
            results = _encode(enc, [item for _, item in pending])
            for (d, item), result in zip(pending, results):
                record(d, result, item)

    stream = _decoded_stream(todo, enc, kind, workers)
    batches = _batches(stream, enc, batch_size, batch_seconds)
    try:
        if not kind.overlap_prepare:
            for batch in batches:
                finish(*prepare(batch))
            return
        # One batch ahead: batch i+1 is prepared (faces tracked) in a thread while batch i is
        # encoded here; torch releases the GIL, so the two use different cores. Results are
        # recorded in batch order, as without the overlap.
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="prepare") as pool:
            ahead = None
            for batch in batches:
                nxt = pool.submit(prepare, batch)
                if ahead is not None:
                    finish(*ahead.result())
                ahead = nxt
            if ahead is not None:
                finish(*ahead.result())
    finally:
        bar.close()
        # Stop the decoding workers now (not whenever the generators are collected), so an
        # interrupted run does not leave them decoding while the store is closed.
        batches.close()
        stream.close()


def _size(path: Path | None) -> int:
    try:
        return path.stat().st_size if path is not None else 0
    except OSError:
        return 0


def _encode(enc: Any, items: list[Any]) -> list[Any]:
    """Encode a batch; if the batch as a whole fails, encode its clips one by one so that one
    bad clip is recorded alone instead of failing its batch-mates."""
    try:
        return enc.encode_batch(items)
    except MemoryError:
        raise
    except Exception as batch_error:  # noqa: BLE001 - isolate the clip at fault
        if len(items) == 1:
            return [ClipError("encode", f"{type(batch_error).__name__}: {batch_error}")]
        results = []
        for item in items:
            try:
                results.append(enc.encode_batch([item])[0])
            except Exception as e:  # noqa: BLE001
                results.append(ClipError("encode", f"{type(e).__name__}: {e}"))
        return results


class _DecodeDataset:
    """Map-style dataset over the clips to do; item i decodes (and maybe encodes) clip i."""

    def __init__(self, todo: list[_Work], enc: Any, kind: Modality):
        self.todo = todo
        self.enc = enc
        self.kind = kind

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, i: int) -> _Decoded:
        work = self.todo[i]
        out = _Decoded(name=work.clip.name, input_hash=work.input_hash)
        try:
            out.item = self.kind.decode(work.clip, self.enc)
            out.length = self.kind.length(out.item)
            out.info = dict(getattr(out.item, "info", None) or {})
            if self.enc.runs_in_workers:
                result = self.enc.encode_batch([out.item])[0]
                if isinstance(result, ClipError):
                    out.error = result
                else:
                    out.encoded = result
                out.item = None  # the waveform need not travel back to the main process
        except ClipError as e:
            out.error = e
        except Exception as e:  # noqa: BLE001 - a decoder bug must not end a long run
            out.error = ClipError("decode", f"{type(e).__name__}: {e}")
        return out


def _worker_init(_: int) -> None:
    import signal

    import torch

    # Workers decode one clip each; threads beyond one only fight the encoder for the cores.
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"
    # The main process decides what an interruption means (it closes the store) and stops the
    # workers; a worker that gets the signal too (Ctrl-C reaches the whole process group,
    # SLURM signals every process of a job step) leaves quietly instead of printing a
    # traceback. Handlers, not SIG_IGN, so that ffmpeg children keep the default actions.
    signal.signal(signal.SIGINT, lambda *_: None)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))


def _decoded_stream(todo: list[_Work], enc: Any, kind: Modality, workers: int) -> Iterator[_Decoded]:
    dataset = _DecodeDataset(todo, enc, kind)
    if workers == 0:
        yield from (dataset[i] for i in range(len(dataset)))
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                        worker_init_fn=_worker_init, prefetch_factor=4,
                        collate_fn=lambda x: x, persistent_workers=False)
    yield from loader


def _batches(stream: Iterator[_Decoded], enc: Any, batch_size: int,
             batch_seconds: float) -> Iterator[list[_Decoded]]:
    """Group decoded clips into batches from a bounded window sorted by length."""
    if enc.runs_in_workers:
        yield from ([d] for d in stream)
        return
    window: list[_Decoded] = []
    limit = 4 * batch_size
    for decoded in stream:
        window.append(decoded)
        if len(window) >= limit:
            yield from _cut(window, batch_size, batch_seconds)
            window = []
    if window:
        yield from _cut(window, batch_size, batch_seconds)


def _cut(window: list[_Decoded], batch_size: int, batch_seconds: float) -> Iterator[list[_Decoded]]:
    window.sort(key=lambda d: -d.length)
    batch: list[_Decoded] = []
    longest = 0.0
    for d in window:
        seconds = d.length if d.item is not None else 0.0
        longest_if_added = max(longest, seconds)
        if batch and (len(batch) >= batch_size or longest_if_added * (len(batch) + 1) > batch_seconds):
            yield batch
            batch, longest_if_added = [], seconds
        batch.append(d)
        longest = longest_if_added
    if batch:
        yield batch
