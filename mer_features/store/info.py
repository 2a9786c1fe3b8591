"""What ``mer-features info`` reports: a store's summary, the data-quality facts its clips
record, and whether any clip is damaged.

A fact is something a clip's ``clips/info`` says was done to its input, which a user should
know before trusting the numbers: the level rule scaled or saturated it, a DC offset was
removed, the file was cut short, a transcript was truncated or encoded in windows
(:data:`FACTS`). The extraction summary and ``info`` count them with the same words
(:func:`clip_facts`, :func:`describe_facts`).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FACTS: dict[str, str] = {
    "scaled": "rescaled by the level rule (clips/info 'level')",
    "saturated": "saturated by the level rule (clips/info 'level')",
    "dc_offset": "with a DC offset removed (clips/info 'dc_offset')",
    "cut_short": "cut short (the file declares more than it holds; clips/info 'truncation')",
    "truncated": "truncated to the encoder's input limit (clips/info 'truncated')",
    "windowed": "encoded whole in windows (clips/info 'windowed')",
}
"""Fact name -> how the summary and ``info`` describe the clips it applies to."""

FULL_SCAN_BYTES = 2 << 30
"""``info`` checks every cell of a store up to this size (frames included); a larger store has
its per-clip cells checked and its frames left to ``mer-features verify``."""


def clip_facts(info: Mapping[str, Any]) -> list[str]:
    """The :data:`FACTS` that a clip's ``clips/info`` records."""
    found = []
    action = (info.get("level") or {}).get("action")
    if action in ("scaled", "saturated"):
        found.append(action)
    if info.get("dc_offset"):
        found.append("dc_offset")
    if info.get("truncation"):
        found.append("cut_short")
    if info.get("truncated"):
        found.append("truncated")
    if info.get("windowed"):
        found.append("windowed")
    return found


def count_facts(cells: Iterable[str]) -> dict[str, int]:
    """Facts counted over ``clips/info`` cells (JSON text, "" for none)."""
    counts: Counter[str] = Counter()
    for cell in cells:
        if cell:
            try:
                counts.update(clip_facts(json.loads(cell)))
            except (ValueError, AttributeError):
                continue
    return {name: counts[name] for name in FACTS if counts[name]}


def describe_facts(counts: Mapping[str, int]) -> list[str]:
    """``["5 clip(s) saturated by the level rule (clips/info 'level')", ...]``."""
    return [f"{counts[name]} clip(s) {FACTS[name]}" for name in FACTS if counts.get(name)]


def store_report(path: str | Path, *, full_scan_bytes: int = FULL_SCAN_BYTES) -> dict[str, Any]:
    """:meth:`FeatureStore.summary` plus ``facts`` (fact -> clips), ``damaged`` (clips whose
    cells fail their checksums), ``checked`` ("all cells", "per-clip cells" or "no checksums")
    and ``advice`` (what to do about damage, "" when there is none).

    Raises StoreError (one line) when the store cannot be opened or its summary read.
    """
    from mer_features.store.checksums import Checker, damaged_names
    from mer_features.store.reader import FeatureStore

    with FeatureStore(path) as store:
        info = store.summary()
        info["facts"] = count_facts(store.column("info"))
        info["damaged"] = []
        info["checked"] = "no checksums"
        if store.checksummed:
            f = store._file
            checker = Checker(f, [n.encode("utf-8") for n in store.names], full=True)
            frames_bytes = sum(f[d].id.get_storage_size() for d in checker.frame_datasets())
            if frames_bytes <= full_scan_bytes:
                damage = checker.scan()
                info["checked"] = "all cells"
            else:
                checker.check_strings(("status", "stage", "reason", "input_hash", "info",
                                       "discrete", "split", "extra"))
                for name in ("clips/duration", "clips/valence", "utterance"):
                    checker.check_rows(name, 0, checker.n)
                checker.frame_index()
                damage = checker.damage
                info["checked"] = (f"per-clip cells (frames, {frames_bytes / 2**30:.1f} GiB, "
                                   "are checked by 'mer-features verify')")
            info["damaged"] = damaged_names(damage, store.names)
            info["damaged_chunks"] = sum(damage.bad_chunks.values())
    info["advice"] = ""
    if info["damaged"] or info.get("damaged_chunks"):
        info["advice"] = (f"re-run the same extraction into '{path}' to extract the damaged "
                          f"clips again ('mer-features verify {path}' lists what is damaged)")
    return info
