"""``mer-features verify``: check that a store is whole and its numbers are usable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from mer_features.errors import StoreError
from mer_features.store import STATUSES, FeatureStore, pending_parts

_BLOCK = 4096


def verify_store(path: str | Path, *, max_problems: int = 50) -> dict[str, Any]:
    """Read every clip of a store and report what is wrong.

    Checks: the file opens with the expected schema; names are unique and sorted; every per-clip
    column has one row per clip; statuses are known; frame offsets and lengths tile the frame
    table exactly; every utterance vector, frame and frame time is finite; clips that are not
    ``ok`` hold zero vectors and no frames; no unmerged parts are waiting. Returns
    ``{"path", "clips", "frames", "ok": bool, "problems": [...]}``.
    """
    problems: list[str] = []

    def problem(text: str) -> None:
        if len(problems) < max_problems:
            problems.append(text)
        elif len(problems) == max_problems:
            problems.append("... more problems not listed")

    try:
        store = FeatureStore(path)
    except StoreError as e:
        return {"path": str(path), "clips": 0, "frames": 0, "ok": False, "problems": [str(e)]}
    with store:
        f = store._file
        names = store.names
        n = len(names)
        if len(set(names)) != n:
            problem("clip names are not unique")
        if names != sorted(names):
            problem("clip names are not sorted (the store was not written by mer_features)")
        for column in f["clips"]:
            if f["clips"][column].shape[0] != n:
                problem(f"/clips/{column} has {f['clips'][column].shape[0]} rows for {n} clips")
        if f["utterance"].shape[0] != n or tuple(f["utterance"].shape[1:]) != store.utterance_shape:
            problem(f"/utterance has shape {f['utterance'].shape}, expected ({n}, "
                    f"{', '.join(map(str, store.utterance_shape))})")
        status = store.status
        unknown = sorted(set(status) - set(STATUSES))
        if unknown:
            problem(f"unknown statuses: {', '.join(unknown)}")
        offset, length = f["frames/offset"][()], f["frames/length"][()]
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
        for start in range(0, n, _BLOCK):
            stop = min(n, start + _BLOCK)
            block = f["utterance"][start:stop]
            for i in np.flatnonzero(~np.isfinite(block.reshape(stop - start, -1)).all(axis=1)):
                problem(f"clip '{names[start + i]}': non-finite utterance values")
            not_ok = status[start:stop] != "ok"
            for i in np.flatnonzero(not_ok & (np.abs(block.reshape(stop - start, -1)).sum(axis=1) > 0)):
                problem(f"clip '{names[start + i]}' is {status[start + i]} but has a non-zero vector")
            for i in np.flatnonzero(not_ok & (length[start:stop] > 0)):
                problem(f"clip '{names[start + i]}' is {status[start + i]} but has frames")
        for start in range(0, total, 65536):
            stop = min(total, start + 65536)
            if not np.isfinite(f["frames/data"][start:stop]).all():
                rows = start + np.flatnonzero(~np.isfinite(f["frames/data"][start:stop]).all(axis=1))
                owners = sorted({names[int(np.searchsorted(offset, r, side="right") - 1)] for r in rows[:20]})
                problem(f"non-finite frame values in clip(s) {', '.join(owners)}")
            if not np.isfinite(f["frames/time"][start:stop]).all():
                problem(f"non-finite frame times in rows {start}-{stop}")
        parts = pending_parts(Path(path))
        if parts:
            problem(f"{len(parts)} unmerged part file(s) of an interrupted run; re-run the extraction")
    return {"path": str(path), "clips": n, "frames": int(total), "ok": not problems,
            "problems": problems}
