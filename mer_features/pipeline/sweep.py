"""The robustness sweep (MER-NOISE): one store per noise level, and a sweep file naming them.

Levels follow the noise registry's grammar (:func:`mer_features.noise.parse_level`): ``clean``,
an SNR in dB (``20``: ``source`` noise), ``SNR:SOURCE`` (``10:pink``), ``blurF`` (``blur4``),
or a raw spec (``jpeg=30``). Level L is extracted into ``PREFIX-<tag>.h5`` (``PREFIX.h5`` for
clean): ``PREFIX-snr20.h5``, ``PREFIX-snr05.h5``, ``PREFIX-snr10-pink.h5``, ``PREFIX-blur4.h5``,
``PREFIX-jpeg_30.h5``. A store already complete is reused (extraction skips its clips); a level
whose store ends with failed or missing clips does not stop the sweep.

The sweep file, ``PREFIX.sweep.json``, is what ``mer-heads robustness --sweep`` reads::

    {"format": 1, "modality": "audio", "manifest": "...", "encoder": "egemaps", "seed": 0,
     "clean": "corpus-audio-egemaps.h5",
     "conditions": [{"level": "20", "spec": "snr=20,source=white", "label": "20 dB",
                     "store": "corpus-audio-egemaps-snr20.h5"}, ...]}

Every path in it is relative to the sweep file's folder; ``spec`` is the canonical spec the
store records and ``label`` its description (:func:`mer_features.noise.describe_noise`).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mer_features.errors import ParameterError
from mer_features.files import write_text
from mer_features.modalities import get_stage
from mer_features.noise.spec import (Level, NoiseSpecError, canonical, describe_noise,
                                     noise_keys, parse_level)
from mer_features.pipeline.extraction import ExtractSummary, execute
from mer_features.pipeline.options import ExtractOptions, SweepOptions, extract_options
from mer_features.pipeline.plan import default_store_path, plan_extraction

SWEEP_FORMAT = 1


@dataclass
class SweepResult:
    """What a sweep did: the sweep file, the clean store, each level's extraction summary, and
    the levels whose store holds failed or missing clips."""

    path: Path
    clean: Path
    summaries: dict[str, ExtractSummary] = field(default_factory=dict)
    incomplete: list[str] = field(default_factory=list)


def parse_levels(levels: str | Sequence[str], modality: str = "audio",
                 source: str = "white") -> list[Level]:
    """The levels of a sweep (a space-separated string or a list), checked before any work:
    each parses and corrupts ``modality``, ``clean`` is among them, and no two write the same
    store. Errors are NoiseSpecErrors of the parameter ``levels``."""
    try:
        return _parse_levels(levels, modality, source)
    except NoiseSpecError as e:
        raise NoiseSpecError(str(e), "levels") from None


def _parse_levels(levels: str | Sequence[str], modality: str, source: str) -> list[Level]:
    texts = levels.split() if isinstance(levels, str) else [str(v) for v in levels]
    if not texts:
        raise NoiseSpecError("No levels given; give e.g. `levels` 'clean 20 10 5 0'.")
    side = get_stage(modality).noise_side
    parsed = [parse_level(text, {"source": source}) for text in texts]
    for level in parsed:
        if level.spec is not None and (side is None or not level.spec.acts_on(side)):
            sides = sorted({k.side for k in noise_keys() if k.name in level.spec.values})
            raise NoiseSpecError(
                f"Level '{level.level}' ({canonical(level.spec)}) does not corrupt {modality}: "
                f"its keys act on {' and '.join(sides)}; its store would equal the clean one. "
                f"Give levels with {modality} keys "
                f"({', '.join(k.name for k in noise_keys(side)) if side else 'none exist'}).")
    if not any(level.is_clean for level in parsed):
        raise NoiseSpecError(f"The levels ({' '.join(texts)}) must include 'clean': the heads "
                             "are trained on the clean store.")
    seen: dict[str, str] = {}
    for level in parsed:
        if level.tag in seen:
            raise NoiseSpecError(f"Levels '{seen[level.tag]}' and '{level.level}' write the same "
                                 f"store (tag '{level.tag or 'clean'}'); give each level once.")
        seen[level.tag] = level.level
    return parsed


def sweep(manifest: str | Path, levels: str | Sequence[str], *, prefix: str | Path | None = None,
          source: str = "white", log: Callable[[str], None] | None = None,
          **options: Any) -> SweepResult:
    """Extract a modality at every level into its store and write ``PREFIX.sweep.json``.

    Parameters
    ----------
    levels : e.g. ``"clean 20 10 5 0 10:pink blur4 jpeg=30"`` (see :func:`parse_levels`).
    prefix : store path without ``.h5``; default: :func:`default_store_path`'s without it.
    source : the noise of bare SNR levels (``20``): white, pink, babble or a folder.
    options : the extraction's options, as :func:`~mer_features.pipeline.extract` takes them
        (``modality``, ``seed``, ``encoder``, ``workers``, ``fps``, ...), for every level.

    Returns a :class:`SweepResult`; raises what :func:`extract` raises for a level that
    cannot be extracted at all (the stores done so far are kept).
    """
    for reserved in ("noise", "out", "shard"):
        if reserved in options:
            raise ParameterError(f"sweep() sets `{reserved}` itself for every level; leave it "
                                 "out of the extraction options.", reserved)
    return run_sweep(extract_options(manifest=manifest, **options),
                     SweepOptions(levels=levels, prefix=prefix, source=source), log=log)


def run_sweep(options: ExtractOptions, sweep_options: SweepOptions, *,
              log: Callable[[str], None] | None = None) -> SweepResult:
    """:func:`sweep` with its options made: ``options`` for every level (their ``out``,
    ``noise`` and ``shard`` are the sweep's), ``sweep_options`` for the levels."""
    log = log or (lambda message: print(message, file=sys.stderr))
    modality, manifest, seed = options.modality, options.manifest, options.seed
    parsed = parse_levels(sweep_options.levels, modality, sweep_options.source)
    prefix = sweep_options.prefix
    if prefix is None:
        prefix = str(default_store_path(manifest, modality, options.encoder))[:-len(".h5")]
    prefix = str(prefix)
    result = SweepResult(path=Path(f"{prefix}.sweep.json"), clean=Path(f"{prefix}.h5"))
    conditions = []
    for level in parsed:
        store = level.store(prefix)
        log(f"== {level.level} -> {store}")
        plan = plan_extraction(replace(options, out=store, noise=level.spec, shard=None))
        summary = execute(plan, log=log)
        log(summary.line())
        result.summaries[level.level] = summary
        if summary.incomplete:
            result.incomplete.append(level.level)
        if level.spec is not None:
            spec = plan.header.fields["noise"]["spec"]  # what the store records
            conditions.append({"level": level.level, "spec": spec,
                               "label": describe_noise(spec)["label"], "store": store})
    clean = result.summaries[next(v.level for v in parsed if v.is_clean)]
    folder = result.path.parent
    path = manifest.path if hasattr(manifest, "path") else manifest
    document = {"format": SWEEP_FORMAT, "modality": modality,
                "manifest": _relative(Path(path), folder), "encoder": clean.encoder,
                "seed": int(seed), "clean": _relative(result.clean, folder),
                "conditions": [{**c, "store": _relative(c["store"], folder)} for c in conditions]}
    folder.mkdir(parents=True, exist_ok=True)
    write_text(result.path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    return result


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` (both as seen from the working directory)."""
    return os.path.relpath(os.path.abspath(path), os.path.abspath(folder))
