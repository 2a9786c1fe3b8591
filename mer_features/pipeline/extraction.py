"""Extraction: manifest rows -> decoded media -> batches -> (faces) -> encoder -> store.

:func:`extract` checks its arguments and the manifest, builds the encoder, the modality's
stage (:mod:`.stages`) and the store header, settles what needs no decoding (stored clips,
missing files, empty transcripts), and hands the rest to :mod:`.scheduler`, which decodes,
batches and encodes them.

A clip that fails (cannot be decoded, no audio track, too short) is recorded in the store with
its stage and reason, and the run goes on; ``fail_fast`` stops at the first failure instead,
keeping what was already written.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mer_features.corpora.manifest import (Manifest, check_modality, check_transcripts,
                                           read_manifest)
from mer_features.errors import (ClipFailedError, EncoderError, ExtractionInterrupted,
                                 WorkerDiedError)
from mer_features.fingerprint import fingerprint_fields
from mer_features.pipeline.scheduler import Work, run
from mer_features.pipeline.stages import Stage, VideoOptions, make_stage
from mer_features.store import ClipRecord, StoreHeader, StoreWriter

DTYPES = ("fp32", "bf16", "fp16", "auto")
STORAGE_DTYPES = ("float32", "float16")


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
    windowed: int = 0
    """Inputs longer than the encoder's window, encoded in windows whole (e5), not truncated."""
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


def default_store_path(manifest: str, modality: str, encoder: str | None) -> Path:
    """``features/<corpus>-<modality>-<encoder>.h5``, the corpus named after the manifest's folder."""
    from mer_features.encoders import DEFAULT_ENCODERS

    corpus = Path(manifest).resolve().parent.name or "corpus"
    spec = encoder or DEFAULT_ENCODERS.get(modality, "default")
    name, _, arg = spec.partition(":")
    slug = name + ("-" + Path(arg.rstrip("/")).name if arg else "")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", slug)
    return Path("features") / f"{corpus}-{modality}-{slug}.h5"


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


def _stored_dtype(out: str | Path, overwrite: bool) -> str:
    """The compute dtype of an existing store at ``out`` (``--dtype auto`` goes on in it, so a
    resumed run never mixes two), or "auto" when there is none to go on with."""
    path = Path(out)
    if overwrite or not path.is_file():
        return "auto"
    try:
        from mer_features.store import FeatureStore

        with FeatureStore(path, check=False) as store:
            stored = store.fields.get("compute_dtype")
    except Exception:  # noqa: BLE001 - the writer reports an unusable store itself
        return "auto"
    return stored if stored in ("fp32", "bf16", "fp16") else "auto"


def build_header(encoder: Any, stage: Stage, *, storage_dtype: str, dtype: str) -> StoreHeader:
    """The store header: shapes from the encoder, fingerprint fields from
    :func:`~mer_features.fingerprint.fingerprint_fields`."""
    spec = encoder.output_spec()
    return StoreHeader(modality=encoder.modality, encoder=encoder.describe(),
                       encoder_version=encoder.version,
                       fields=fingerprint_fields(encoder, stage, dtype=dtype,
                                                 storage_dtype=storage_dtype),
                       utterance_shape=tuple(spec.utterance_shape), frame_dim=spec.frame_dim,
                       frame_rate=spec.frame_rate, storage_dtype=storage_dtype,
                       frame_extras=stage.frame_extras())


def extract(manifest: str | Path | Manifest, out: str | Path, *, modality: str = "audio",
            encoder: str | None = None, encoder_options: Mapping[str, Any] | None = None,
            device: str = "auto", dtype: str = "fp32", storage_dtype: str = "float32",
            batch_size: int | None = None, batch_seconds: float = 160.0, workers: int | None = None,
            overwrite: bool = False, fail_fast: bool = False, skip_missing: bool = False,
            retry_failed: bool = False, commit_every: int = 256, progress: bool | None = None,
            text_column: str = "text", video: VideoOptions | None = None,
            noise: Any = None, seed: int = 0, shard: Any = None, prune: bool = False,
            compute_path: str = "auto",
            log: Callable[[str], None] | None = None) -> ExtractSummary:
    """Extract one modality's features for every clip of a manifest into a store.

    Clips already in the store from the same input are skipped, so a re-run (or a run after a
    crash) only does what is left. Returns an :class:`ExtractSummary`.

    Parameters
    ----------
    dtype : compute dtype of neural encoders: "fp32", "bf16", "fp16" (GPUs) or "auto" (the
        fastest on this machine within cosine 0.999 of fp32, measured once and cached; an
        existing store goes on in its own dtype). Which implementation computes it (the CPU
        fast path or the stock modules) is measured too (:mod:`mer_features.encoders.tuning`);
        ``--dtype bf16`` on a CPU that emulates bf16 warns with the measured cost.
    compute_path : "auto" (measured), or "fast" / "stock" to force the implementation.
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
    shard : a :class:`mer_features.pipeline.distributed.Shard`: only the manifest's clips of
        that shard.
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
        from mer_features.noise.spec import parse_noise

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
    if workers is not None:  # an encoder with its own thread pool (e5) takes its threads from it
        enc.threads = max(1, workers)
    if storage_dtype == "float16" and not enc.float16_safe:
        raise EncoderError(f"Encoder '{enc.describe()}' gives values beyond float16's range "
                           "(+-65504), which a float16 store would hold as inf; use "
                           "--storage-dtype float32.")
    device = (resolve_device(device) if (enc.uses_dtype or not enc.runs_in_workers)
              and not enc.cpu_only else "cpu")
    enc.device = device  # before the header: an encoder's compute precision may depend on it
    if dtype == "fp16" and device == "cpu" and enc.uses_dtype:
        raise EncoderError("fp16 needs a GPU; on the CPU use --dtype bf16, fp32 or auto.")
    from mer_features.encoders.tuning import IMPLS, choose_path

    if compute_path not in IMPLS:
        raise EncoderError(f"compute path must be one of {', '.join(IMPLS)}; got "
                           f"'{compute_path}'.")
    choice = None
    if dtype == "auto":
        dtype = "fp32" if not enc.uses_dtype else _stored_dtype(out, overwrite)
    if dtype == "auto":  # the store's dtype decides, so measure now
        choice = choose_path(enc, device, "auto", impl=compute_path)
        dtype = choice.dtype
    if workers is None:
        workers = auto_workers(device, modality, enc.runs_in_workers)
    kind = make_stage(modality, text_column=text_column, video=video, device=device,
                      noise=noise, seed=seed,
                      babble=[c.audio_source for c in usable] if modality == "audio" else (),
                      workers=workers)
    header = build_header(enc, kind, storage_dtype=storage_dtype, dtype=dtype)
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
                                    c.split or "", c.extra) for c in manifest})
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
                todo.append(Work(clip, input_hash))
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
                choice = choice or choose_path(enc, device, dtype, impl=compute_path)
                if choice.warning:
                    log(f"warning: {choice.warning}")
                if choice.measurement is not None and not choice.measurement.cached:
                    log(f"compute path for {enc.describe()}: {choice.impl}-{choice.dtype}, "
                        f"measured once on this machine ({choice.measurement.table()})")
                enc.impl = choice.impl
                enc.load(device, dtype)
            run(todo, enc, kind, writer, summary, batch_size=batch_size,
                 batch_seconds=batch_seconds, workers=workers if kind.uses_workers else 0,
                 fail_fast=fail_fast, progress=progress, log=log)
        if summary.truncated:
            log(f"warning: {summary.truncated} input(s) were longer than the encoder's limit and "
                "were truncated (clips/info has 'truncated': true)")
        if summary.windowed:
            log(f"note: {summary.windowed} transcript(s) were longer than the window of encoder "
                f"'{enc.describe()}' and were encoded whole, window by window (clips/info has "
                "'windowed': true)")
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
