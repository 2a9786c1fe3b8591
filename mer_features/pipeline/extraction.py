"""Extraction: manifest rows -> decoded media -> batches -> (faces) -> encoder -> store.

:func:`extract` is :func:`execute` of :func:`~mer_features.pipeline.plan.plan_extraction`:
the plan checks the options and the manifest and decides the encoder, the modality's stage
(:mod:`mer_features.modalities`), the device, dtype, workers, batch size and the store
header; :func:`execute` opens the store, settles what needs no decoding (stored clips,
missing files, empty transcripts), and hands the rest to :mod:`.scheduler`, which decodes,
batches and encodes them.

A clip that fails (cannot be decoded, no audio track, too short) is recorded in the store with
its stage and reason (:func:`~mer_features.pipeline.scheduler.record_failure`), and the run
goes on; ``fail_fast`` stops at the first failure instead, keeping what was already written.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mer_features.errors import ClipFailedError, ExtractionInterrupted, WorkerDiedError
from mer_features.pipeline.options import extract_options
from mer_features.pipeline.plan import ExtractionPlan, plan_extraction
from mer_features.pipeline.scheduler import Work, record_failure, run
from mer_features.store import ClipRecord, StoreWriter


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
    failed_before: int = 0
    """Clips stored as failed by an earlier run, not tried again (``retry_failed`` would)."""
    facts: dict[str, int] = field(default_factory=dict)
    """Data-quality facts of this run's clips (:data:`mer_features.store.info.FACTS`)."""
    seconds: float = 0.0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    labels: str = ""
    """The manifest's label set with its clips per class (``labels: 6 classes, ...``); empty
    for an unlabelled manifest. The CLI prints it under the summary line."""

    @property
    def incomplete(self) -> bool:
        """Whether the store holds failed or missing clips of this manifest (exit 3)."""
        return bool(self.failed or self.failed_before or self.missing)

    def count_facts(self, info: Mapping[str, Any]) -> None:
        from mer_features.store.info import clip_facts

        for fact in clip_facts(info):
            self.facts[fact] = self.facts.get(fact, 0) + 1

    def line(self) -> str:
        from mer_features.store.info import FACTS

        rate = self.done / self.seconds if self.seconds > 0 else 0.0
        failed = self.failed + self.failed_before
        before = (f" ({self.failed_before} stored by an earlier run; --retry-failed tries them "
                  "again)" if self.failed_before else "")
        empty = f", {self.empty} empty" if self.empty else ""
        dropped = f", {self.dropped} dropped (not in the manifest)" if self.dropped else ""
        facts = "".join(f", {n} {FACTS[k].split(' (')[0]}" for k, n in self.facts.items())
        return (f"{self.modality}/{self.encoder}: {self.total} clips - {self.done} extracted, "
                f"{self.skipped} already stored, {failed} failed{before}, {self.missing} missing"
                f"{empty}{dropped}{facts} - {self.seconds:.1f} s ({rate:.1f} clips/s) -> "
                f"{self.store}")


def extract(manifest: Any, out: Any = None, *, log: Callable[[str], None] | None = None,
            **options: Any) -> ExtractSummary:
    """Extract one modality's features for every clip of a manifest into a store.

    Clips already in the store from the same input are skipped, so a re-run (or a run after a
    crash) only does what is left. Returns an :class:`ExtractSummary`. ``log`` receives the
    run's warnings and notes (default: stderr).

    The options are the fields of :class:`~mer_features.pipeline.options.ExtractOptions`
    (their defaults, bounds and help are there) and those of the modality's own options, by
    keyword: ``modality="text", text_column="english"``, ``modality="video", fps=2`` or
    ``video=VideoOptions(fps=2, max_frames=32)``. Among them:

    modality : "audio" (default), "text" or "video" (:func:`mer_features.modalities.
        known_modalities`).
    encoder, encoder_options : an encoder spec (default: the modality's) and its options.
    dtype : compute dtype of neural encoders: "fp32" (default), "bf16", "fp16" (GPUs) or
        "auto" (bf16 where the device computes it natively: a GPU with bf16, a CPU with
        AMX-BF16 or AVX512-BF16; else fp32; an existing store goes on in its own dtype). bf16 on
        a CPU that emulates it warns. Never chosen by timing
        (:mod:`mer_features.encoders.tuning`).
    compute_path : "auto" (the encoder's first implementation on the device: the CPU fast path
        of hf audio encoders on a CPU, the stock modules elsewhere), or "fast" / "stock" to
        force one. In fp32 they agree as closely as two batch sizes do; a bf16 store records
        the one it was made with.
    batch_size : at most this many clips per encoder call; None: the modality's default for
        the device and dtype.
    batch_seconds : at most this much padded input (clips x longest clip) per encoder call.
    workers : decoding processes (0 decodes in this process); None: the modality's default.
    storage_dtype : "float32", or "float16" to halve the store's size.
    commit_every : finished clips are written to disk (a part file) at least every this many
        clips; a killed run loses at most this many clips' work.
    noise, seed : a noise spec (text or :class:`mer_features.noise.NoiseSpec`) applied to the
        decoded media before the encoder, with per-clip draws fixed by (seed, clip, the spec's
        keys of this modality).
    shard : ``"I/N"`` or a :class:`mer_features.pipeline.distributed.Shard`: only the
        manifest's clips of that shard.
    prune : drop the clips of an existing store that the manifest (or shard) does not list;
        without it such a store is refused before any work, naming them.
    """
    return execute(plan_extraction(extract_options(manifest=manifest, out=out, **options)),
                   log=log)


def label_lines(manifest: Any, classes: tuple[str, ...], *, declared: bool) -> list[str]:
    """What an extraction says about the manifest's labels: the label set with its clips per
    class, and a warning for each class rare enough to be a typo (none when the classes were
    declared: labels outside them were refused). Nothing for an unlabelled manifest."""
    from mer_features import EMOTIONS
    from mer_features.corpora.classes import (class_counts, describe_counts, is_mer,
                                              rare_class_warnings)

    counts = class_counts(manifest.labels)
    if not counts:
        return []
    order = ("as declared (`classes`)" if declared else "MER 2023's six"
             if tuple(classes) == tuple(EMOTIONS) else "sorted by name")
    lines = [f"labels: {len(classes)} classes, {order}: {describe_counts(counts, classes)}"]
    if not declared and not is_mer(classes):  # a typo takes a MER label out of MER's set
        lines += rare_class_warnings(counts, "in the manifest")
    return lines


def execute(plan: ExtractionPlan, *, log: Callable[[str], None] | None = None) -> ExtractSummary:
    """Run an :class:`~mer_features.pipeline.plan.ExtractionPlan`: open its store, record the
    missing and settled clips, extract the others, close the store. Returns the summary."""
    log = log or (lambda message: print(message, file=sys.stderr))
    started = time.perf_counter()
    options, enc, stage, out = plan.options, plan.encoder, plan.stage, plan.store
    manifest, shard = plan.manifest, options.shard
    summary = ExtractSummary(store=Path(out), modality=options.modality, encoder=enc.describe(),
                             total=len(manifest))

    labels = label_lines(manifest, plan.classes, declared=options.classes is not None)
    summary.labels = labels[0] if labels else ""
    if options.noise is not None and stage.noise is None:
        log(f"note: no key of the noise spec '{options.noise.text or options.noise}' acts on "
            f"{options.modality}; its features are extracted clean")
    writer = StoreWriter(out, plan.header, overwrite=options.overwrite,
                         part_clips=options.commit_every)
    try:
        scope = f"manifest '{manifest.path}'" + (f" (shard {shard.index}/{shard.count})"
                                                 if shard is not None else "")
        summary.dropped = writer.restrict_to([c.name for c in manifest], prune=options.prune,
                                             source=scope)
        if writer.damaged:
            log(f"warning: {len(writer.damaged)} clip(s) of '{out}' fail their checksums (the "
                f"file was damaged on disk: {', '.join(writer.damaged[:5])}"
                f"{', ...' if len(writer.damaged) > 5 else ''}); they are extracted again")
        for line in labels[1:]:  # rare classes (a typo?), once the store is open
            log(line)
        writer.set_labels({c.name: (c.discrete or "", math.nan if c.valence is None else c.valence,
                                    c.split or "", c.extra) for c in manifest})
        for clip, reason in plan.missing:
            if not writer.is_done(clip.name, "missing"):
                writer.add(ClipRecord(name=clip.name, status="missing", stage="input",
                                      reason=reason, input_hash="missing"))
            summary.missing += 1
        hashes = stage.input_hashes(plan.usable)
        todo = []
        for clip, input_hash in zip(plan.usable, hashes):
            if writer.is_done(clip.name, input_hash, retry_failed=options.retry_failed):
                summary.skipped += 1
                summary.failed_before += writer.done[clip.name][1] == "failed"
                continue
            settled = stage.precheck(clip)
            if settled is None:
                todo.append(Work(clip, input_hash))
            elif settled.status == "empty":
                writer.add(ClipRecord(name=clip.name, status="empty", stage=settled.stage,
                                      reason=settled.reason, input_hash=input_hash))
                summary.empty += 1
            else:
                record_failure(writer, summary, clip.name, input_hash, settled.stage,
                               settled.reason, fail_fast=options.fail_fast)
        if todo:
            if not enc.runs_in_workers:
                if plan.choice is not None and plan.choice.warning:
                    log(f"warning: {plan.choice.warning}")
                enc.load(plan.device, plan.dtype)  # in the implementation the plan set
            run(todo, enc, stage, writer, summary, batch_size=plan.batch_size,
                batch_seconds=options.batch_seconds,
                workers=plan.workers if stage.uses_workers else 0,
                fail_fast=options.fail_fast, progress=options.progress, log=log)
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
                "file crashes the decoder: set `workers` to 0 to find it."
            ) from e
        raise
    except BaseException:
        writer.abort()
        raise
    writer.close()
    summary.seconds = time.perf_counter() - started
    return summary
