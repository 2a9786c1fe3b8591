"""Cache keys: what makes two feature arrays interchangeable.

A store's fingerprint is a hash of explicit fields (encoder name and version, weights identity,
resolved configuration, preprocessing, noise, dtypes, schema version), never of pickled code.
Each clip additionally records the content hash of its input, so an edited media file or
transcript is re-extracted while untouched clips are reused. Batch size, worker count and
progress flags never enter a fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spacing: equal values give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot put a {type(value).__name__} into a fingerprint: {value!r}")


def fingerprint(fields: Mapping[str, Any]) -> str:
    """A 32-hex-digit hash of ``fields`` (a JSON-able mapping)."""
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()[:32]


def file_hash(path: str | Path) -> str:
    """Content hash of a file (BLAKE2b, 128 bits), independent of its name and times."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def text_hash(text: str) -> str:
    """Content hash of a transcript."""
    return hashlib.blake2b(text.encode("utf-8"), digest_size=16).hexdigest()


def diff_fields(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Human-readable differences between two fingerprint field mappings."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(diff_fields(a, b, f"{prefix}{key}."))
        elif canonical_json(a) != canonical_json(b):
            out.append(f"{prefix}{key}: {canonical_json(a)} -> {canonical_json(b)}")
    return out
