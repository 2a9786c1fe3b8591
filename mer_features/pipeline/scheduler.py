"""Scheduling the clips left to do: decoded in worker processes, batched by length, encoded,
each result recorded in the store.

Decoding runs in DataLoader worker processes while the encoder works on the previous batch.
Clips are read in order of decreasing file size (a proxy for duration that needs no decoding),
then, within a bounded window, sorted by their real length and cut into batches by clip count
and padded duration, so padding stays small and memory stays bounded whatever the corpus size.
Light CPU encoders (openSMILE) run inside the workers instead, one clip at a time. A batch
that fails as a whole is encoded clip by clip, so one bad clip fails alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mer_features.corpora.manifest import Clip
from mer_features.errors import ClipError, ClipFailedError
from mer_features.modalities import Stage
from mer_features.store import ClipRecord, StoreWriter

if TYPE_CHECKING:
    from mer_features.pipeline.extraction import ExtractSummary


@dataclass
class Work:
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


def record_failure(writer: StoreWriter, summary: ExtractSummary, name: str, input_hash: str,
                   stage: str, reason: str, *, fail_fast: bool, duration: float = math.nan,
                   info: dict[str, Any] | None = None) -> None:
    """The one place a clip's failure is recorded: in the store (status ``failed`` with its
    stage and reason), in the run's summary and, with ``fail_fast``, as the ClipFailedError
    that stops the run (the clips done before it are kept)."""
    writer.add(ClipRecord(name=name, status="failed", stage=stage, reason=reason,
                          input_hash=input_hash, duration=duration, info=info or {}))
    summary.failed += 1
    summary.failures.append((name, stage, reason))
    if fail_fast:
        raise ClipFailedError(f"Clip '{name}' failed at stage '{stage}': {reason}. Stopped at "
                              "the first failed clip (`fail_fast`); the clips done before it "
                              "are kept in the store.")


def run(todo: list[Work], enc: Any, kind: Stage, writer: StoreWriter,
         summary: ExtractSummary, *, batch_size: int, batch_seconds: float, workers: int,
         fail_fast: bool, progress: bool | None, log: Callable[[str], None]) -> None:
    from mer_features.console import progress as progress_display

    todo.sort(key=lambda w: (-_size(kind.media(w.clip)), w.clip.name))
    # a bar on a terminal, a line every 30 s in a log (SLURM), nothing with --no-progress
    bar = progress_display(len(todo), f"{kind.name}/{enc.describe()}", progress)
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
            record_failure(writer, summary, decoded.name, decoded.input_hash, result.stage,
                           result.reason, fail_fast=fail_fast,
                           duration=decoded.length or math.nan, info=decoded.info)
            if shown < 10:
                bar.write(f"failed: clip '{decoded.name}' at {result.stage}: {result.reason}")
                shown += 1
                if shown == 10:
                    bar.write("(further failures are not printed; 'mer-features info STORE' lists all)")
        else:
            info = {**decoded.info, **result.info}
            summary.truncated += bool(info.get("truncated"))
            summary.windowed += bool(info.get("windowed"))
            summary.count_facts(info)  # level rule, DC offset, cut files: in the summary line
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

    def __init__(self, todo: list[Work], enc: Any, kind: Stage):
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


def _decoded_stream(todo: list[Work], enc: Any, kind: Stage, workers: int) -> Iterator[_Decoded]:
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
