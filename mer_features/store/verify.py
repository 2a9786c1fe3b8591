"""``mer-features verify``: check that a store is whole and its numbers are usable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mer_features.errors import StoreError, first_line
from mer_features.store.checksums import Checker, Damage, decode, read_rows, read_strings
from mer_features.store.reader import FeatureStore, pending_parts
from mer_features.store.schema import STATUSES

_BLOCK = 4096


def verify_store(path: str | Path, *, max_problems: int = 50) -> dict[str, Any]:
    """Read every clip of a store and report what is wrong.

    Checks: the file opens with the expected schema; every clip's cells match their checksums
    (each damaged clip is named, with the datasets it fails in); names are unique and sorted;
    every per-clip column has one row per clip; statuses are known; frame offsets and lengths
    tile the frame table exactly; every utterance vector, frame and frame time is finite; clips
    that are not ``ok`` hold zero vectors and no frames; no unmerged parts are waiting. Returns
    ``{"path", "clips", "frames", "ok": bool, "problems": [...], "damaged": [clip names],
    "checksums": bool, "notes": [...], "advice": what to do about damage ("" when none)}``;
    each entry of ``problems`` is one problem (the advice is not one of them), the first
    ``max_problems`` of ``"problem_count"``.
    """
    problems: list[str] = []
    notes: list[str] = []
    advice = ""

    count = 0

    def problem(text: str) -> None:
        nonlocal count
        count += 1
        if len(problems) < max_problems:
            problems.append(text)

    try:
        store = FeatureStore(path, check=False)
    except StoreError as e:
        return {"path": str(path), "clips": 0, "frames": 0, "ok": False, "problems": [str(e)],
                "damaged": [], "checksums": False, "notes": notes, "advice": "",
                "problem_count": 1}
    damaged: list[str] = []
    total = 0
    with store:
        f = store._file
        names = store.names
        n = len(names)
        damage = Damage()
        if store.checksummed:
            try:
                damage = Checker(f, read_strings(f["clips/name"]), full=True).scan()
            except (OSError, RuntimeError, KeyError, ValueError) as e:
                problem(f"the checksums cannot be checked ({type(e).__name__}: "
                        f"{first_line(e)}); the store is damaged: move it away and extract "
                        "again")
            for i in sorted(damage.rows):
                shown = (f"clip at row {i} (its name is damaged)"
                         if "clips/name" in damage.rows[i] else f"clip '{names[i]}'")
                damaged.append(names[i] if "clips/name" not in damage.rows[i] else f"row {i}")
                problem(f"{shown}: checksum mismatch in /{', /'.join(damage.rows[i])}")
            if damage.rows:
                advice = (f"{len(damage.rows)} damaged clip(s): re-run the same extraction into "
                          "this store to extract them again")
            elif damage.bad_chunks:
                where = ", ".join(f"/{d}" for d in damage.bad_chunks)
                problem(f"{sum(damage.bad_chunks.values())} chunk checksum(s) in {where} are "
                        "damaged although every clip's data matches its CRC")
                advice = "re-run the same extraction into this store to rewrite it"
        else:
            notes.append("no checksums: written before mer_features added them (format 1); the "
                         "next extraction run into this store adds them")
        try:
            total = _check_contents(store, names, set(damage.rows), problem)
        except (OSError, RuntimeError, KeyError) as e:
            problem(f"the store cannot be read ({type(e).__name__}: {first_line(e)}); it is "
                    "damaged: move it away and extract again")
        parts = pending_parts(Path(path))
        if parts:
            problem(f"{len(parts)} unmerged part file(s) of an interrupted run; re-run the "
                    "extraction")
    return {"path": str(path), "clips": n, "frames": int(total), "ok": not problems,
            "problems": problems, "damaged": damaged, "checksums": store.checksummed,
            "notes": notes, "advice": advice, "problem_count": count}


def _check_contents(store: FeatureStore, names: list[str], damaged: set[int], problem: Any) -> int:
    """The structural and numeric checks; rows in ``damaged`` were reported already."""
    f = store._file
    n = len(names)
    if len(set(names)) != n:
        problem("clip names are not unique")
    intact_names = [name for i, name in enumerate(names) if i not in damaged]
    if intact_names != sorted(intact_names):
        problem("clip names are not sorted (the store was not written by mer_features)")
    for column in f["clips"]:
        if f["clips"][column].shape[0] != n:
            problem(f"/clips/{column} has {f['clips'][column].shape[0]} rows for {n} clips")
    if f["utterance"].shape[0] != n or tuple(f["utterance"].shape[1:]) != store.utterance_shape:
        problem(f"/utterance has shape {f['utterance'].shape}, expected ({n}, "
                f"{', '.join(map(str, store.utterance_shape))})")
    status = np.asarray(decode(read_strings(f["clips/status"])), dtype=object)
    known = status[[i for i in range(len(status)) if i not in damaged]]
    unknown = sorted(set(known) - set(STATUSES))
    if unknown:
        problem(f"unknown statuses: {', '.join(unknown)}")
    offset = read_rows(f["frames/offset"], 0, f["frames/offset"].shape[0])[0]
    length = read_rows(f["frames/length"], 0, f["frames/length"].shape[0])[0]
    total = f["frames/data"].shape[0]
    if f["frames/time"].shape[0] != total:
        problem(f"/frames/time has {f['frames/time'].shape[0]} rows, /frames/data {total}")
    for extra in store.frame_extra_names:
        if f["frames"][extra].shape[0] != total:
            problem(f"/frames/{extra} has {f['frames'][extra].shape[0]} rows for {total} frames")
    if len(offset) == n and len(length) == n:
        expected = np.concatenate([[0], np.cumsum(length)[:-1]]) if n else offset
        if (length < 0).any() or not np.array_equal(offset, expected) or length.sum() != total:
            problem("frame offsets and lengths do not tile /frames/data")
    intact = np.ones(n, bool)
    intact[sorted(i for i in damaged if i < n)] = False
    for start in range(0, n, _BLOCK):
        stop = min(n, start + _BLOCK)
        block = read_rows(f["utterance"], start, stop)[0].reshape(stop - start, -1)
        ok_rows = intact[start:stop]
        for i in np.flatnonzero(~np.isfinite(block).all(axis=1)):
            problem(f"clip '{names[start + i]}': non-finite utterance values")
        not_ok = (status[start:stop] != "ok") & ok_rows
        for i in np.flatnonzero(not_ok & (np.abs(block).sum(axis=1) > 0)):
            problem(f"clip '{names[start + i]}' is {status[start + i]} but has a non-zero vector")
        if len(length) == n:
            for i in np.flatnonzero(not_ok & (length[start:stop] > 0)):
                problem(f"clip '{names[start + i]}' is {status[start + i]} but has frames")
    for start in range(0, total, 65536):
        stop = min(total, start + 65536)
        data = read_rows(f["frames/data"], start, stop)[0]
        rows = start + np.flatnonzero(~np.isfinite(data.reshape(stop - start, -1)).all(axis=1))
        owners = sorted({int(np.searchsorted(offset, r, side="right") - 1) for r in rows[:20]})
        owners = [names[i] for i in owners if 0 <= i < n]
        if owners:
            problem(f"non-finite frame values in clip(s) {', '.join(owners)}")
        if not np.isfinite(read_rows(f["frames/time"], start, stop)[0]).all():
            problem(f"non-finite frame times in rows {start}-{stop}")
    return total
