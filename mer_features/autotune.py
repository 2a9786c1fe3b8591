"""Timing compute paths on the machine at hand, for the benchmarks; and the machine's facts.

Much of this toolkit can compute the same numbers in more than one way. A *path* is an
implementation and a compute dtype, named ``<impl>-<dtype>``:

* ``fast``: a CPU fast path (the hf audio encoder's convolutional front end as strided chunk
  products, :mod:`mer_features.encoders.hf_audio`); ``stock``: the modules as ``transformers``
  (or torch) ship them;
* ``fp32``, ``bf16`` (``fp16`` on GPUs).

Which is fastest depends on the processor: the fast path and bf16 were tuned on a Xeon with
AMX (bf16 matrix units), where bf16 is 3x faster than fp32; on a CPU without native bf16
instructions (AVX2-only AMD EPYC, most laptops) bf16 is emulated and 11-34x *slower*.

The library never times anything to decide how to compute: a timing probe picks one path on a
quiet machine and another under load, and paths in different dtypes give different numbers.
:mod:`mer_features.encoders.tuning` decides by fixed rules from the device and the CPU's flags
(:func:`native_bf16_cpu`, :func:`cpu_model_and_flags`, used here and by the benchmarks'
machine line). :func:`measure` is what those rules rest on: ``benchmarks/bench_audio.py`` runs
every candidate on the same short probe and keeps the fastest one whose outputs keep a cosine
similarity of at least :data:`MIN_COSINE` to the reference path's (``stock-fp32``), so a
machine's section of benchmarks/RESULTS.md shows what each path costs there. The times are kept
in a JSON file, ``compute-paths.json`` in the cache folder ($MER_FEATURES_CACHE, else
~/.cache/mer_features), keyed by everything that decides the speed: CPU model and flags (or GPU
name), torch version, thread count, the shape of what is computed and the probe itself. A
damaged or unreadable file is measured again and rewritten; an unwritable folder only costs the
probe on every run.

:func:`measure` knows nothing of encoders: a caller gives the candidates and a ``probe(path)``
that runs one path once and returns ``(seconds, outputs)``, so the choice can be tested with
injected timings.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["DTYPE_MARGIN", "MIN_COSINE", "Measurement", "Trial", "cache_file", "cpu_model_and_flags",
           "machine_fields", "measure", "min_cosine", "native_bf16_cpu", "path_name", "split_path"]

MIN_COSINE = 0.999
"""Least cosine similarity to the reference path's outputs for a path to be chosen."""
DTYPE_MARGIN = 0.9
"""A path in another dtype than the reference's (bf16 against fp32) is chosen only when it takes
at most this fraction of the fastest accurate reference-dtype path's time: fp32 is exact, and a
probe timed on a busy machine can make two equal paths look 5% apart, never 10%."""
GIVE_UP = 3.0
"""A candidate whose first (warm-up) run already takes this many times the best time so far
is not run again: it cannot win, and an emulated bf16 path would cost minutes."""
CACHE_VERSION = 2
CACHE_NAME = "compute-paths.json"
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU flags of native bf16 matrix instructions (Intel AMX, AVX512-BF16 on Xeon and Zen 4)."""
_SHOWN_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", *BF16_FLAGS, "amx_tile",
                "neon", "asimd", "sve")


def path_name(impl: str, dtype: str) -> str:
    """``fast``, ``fp32`` -> ``fast-fp32``."""
    return f"{impl}-{dtype}"


def split_path(name: str) -> tuple[str, str]:
    """``fast-fp32`` -> (``fast``, ``fp32``)."""
    impl, _, dtype = name.rpartition("-")
    return impl, dtype


@dataclass(frozen=True)
class Trial:
    """One path's probe: ``seconds`` (best of its runs; None when it failed), ``cosine`` (least
    cosine similarity of its outputs to the reference path's; None when it failed or there is
    no reference), ``error`` (why it failed)."""

    path: str
    seconds: float | None
    cosine: float | None
    error: str | None = None

    @property
    def accurate(self) -> bool:
        return self.seconds is not None and self.cosine is not None and self.cosine >= MIN_COSINE

    @property
    def dtype(self) -> str:
        return split_path(self.path)[1]

    @property
    def impl(self) -> str:
        return split_path(self.path)[0]

    def to_json(self) -> dict[str, Any]:
        return {"seconds": self.seconds, "cosine": self.cosine, "error": self.error}


@dataclass
class Measurement:
    """What the probe measured: ``trials`` by path name, the reference first, then the
    candidates in the order given; ``machine`` and ``fields`` are what the cache key covers; ``cached`` says the
    trials come from the cache file (measured by an earlier run)."""

    key: str
    machine: dict[str, Any]
    fields: dict[str, Any]
    trials: dict[str, Trial]
    reference: str
    cached: bool = False

    def fastest(self, dtypes: Sequence[str] | None = None, impls: Sequence[str] | None = None,
                *, accurate: bool = True) -> Trial | None:
        """The fastest trial among ``dtypes`` and ``impls`` (None: all) whose outputs keep
        :data:`MIN_COSINE` to the reference (``accurate``), or that merely ran."""
        pool = [t for t in self.trials.values() if t.seconds is not None
                and (dtypes is None or t.dtype in dtypes) and (impls is None or t.impl in impls)
                and (t.accurate or not accurate)]
        return min(pool, key=lambda t: t.seconds) if pool else None

    def choose(self, dtypes: Sequence[str], impls: Sequence[str] | None = None) -> Trial | None:
        """The path to use for a run in one of ``dtypes``: the fastest accurate one, where a
        path in another dtype than the reference's must beat the fastest accurate one in the
        reference's dtype by :data:`DTYPE_MARGIN`; when none is accurate, the fastest that ran
        (the caller warns); None when none ran."""
        best = self.fastest(dtypes, impls)
        ref_dtype = split_path(self.reference)[1]
        if best is not None and best.dtype != ref_dtype and ref_dtype in dtypes:
            same = self.fastest((ref_dtype,), impls)
            if same is not None and best.seconds > DTYPE_MARGIN * same.seconds:
                best = same
        return best or self.fastest(dtypes, impls, accurate=False)

    def table(self) -> str:
        """One line: every trial's time and cosine, e.g. ``fast-fp32 0.21 s (cos 1.0000)``."""
        parts = []
        for t in self.trials.values():
            if t.seconds is None:
                parts.append(f"{t.path} failed ({t.error})")
            else:
                cos = "" if t.cosine is None else f", cos {t.cosine:.4f}"
                parts.append(f"{t.path} {t.seconds:.3g} s{cos}")
        return "; ".join(parts)


def cache_file() -> Path:
    """``compute-paths.json`` in $MER_FEATURES_CACHE, else ~/.cache/mer_features (the folder of
    the file-hash cache)."""
    from mer_features.fingerprint import cache_path

    return cache_path().parent / CACHE_NAME


def cpu_model_and_flags() -> tuple[str, list[str]]:
    """The CPU's model name and its feature flags (from /proc/cpuinfo on Linux; elsewhere the
    platform's processor name and no flags)."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return model, flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key in ("model name", "Model", "cpu model") and model in ("", platform.machine(),
                                                                    platform.processor()):
            model = value.strip() or model
        elif key in ("flags", "Features") and not flags:
            flags = sorted(value.split())
    return model, flags


def machine_fields(device: str = "cpu") -> dict[str, Any]:
    """What decides how fast a path runs, besides what is computed: the processor (CPU model
    and a hash of all its flags, with the flags that matter shown; or the GPU's name and
    compute capability), the torch version and the CPU thread count."""
    import torch

    model, flags = cpu_model_and_flags()
    fields: dict[str, Any] = {
        "cpu": model,
        "cpu_flags": hashlib.blake2b(" ".join(flags).encode(), digest_size=8).hexdigest(),
        "flags_shown": [f for f in _SHOWN_FLAGS if f in flags],
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if str(device).startswith("cuda"):
        index = torch.device(device).index or 0
        fields["gpu"] = torch.cuda.get_device_name(index)
        fields["gpu_capability"] = list(torch.cuda.get_device_capability(index))
    return fields


def native_bf16_cpu(flags: Sequence[str] | None = None) -> bool:
    """Whether this CPU has bf16 matrix instructions (AMX or AVX512-BF16)."""
    if flags is None:
        flags = cpu_model_and_flags()[1]
    return any(f in flags for f in BF16_FLAGS)


def min_cosine(reference: Any, outputs: Any) -> float:
    """Least cosine similarity between matching rows of two arrays of shape (n, dim) (any
    array is read as rows of its last axis); -1.0 when the shapes differ or a row is not
    finite. Two zero rows count as equal."""
    import numpy as np

    a = np.asarray(reference, np.float64)
    b = np.asarray(outputs, np.float64)
    if a.shape != b.shape or a.size == 0:
        return -1.0
    a = a.reshape(-1, a.shape[-1]) if a.ndim else a.reshape(1, 1)
    b = b.reshape(a.shape)
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return -1.0
    dot = (a * b).sum(1)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    zero = norms == 0
    cos = np.where(zero, np.where(np.abs(a - b).max(1) == 0, 1.0, 0.0),
                   dot / np.where(zero, 1.0, norms))
    return float(min(1.0, cos.min()))


Probe = Callable[[str], tuple[float, Any]]


def measure(fields: Mapping[str, Any], candidates: Sequence[str], probe: Probe, *,
            reference: str | None = None, device: str = "cpu",
            machine: Mapping[str, Any] | None = None, cache: Path | None | bool = True,
            refresh: bool = False, max_runs: int = 4, min_seconds: float = 1.0) -> Measurement:
    """Time every candidate path once on the probe (or take the cached times) and compare its
    outputs with the reference path's.

    Parameters
    ----------
    fields : what is computed, for the cache key (e.g. the encoder's name and shape and the
        probe's size); JSON-able.
    candidates : path names (``fast-fp32``, ...); ``reference`` (default: the first) runs
        first and gives the outputs the others are compared with.
    probe : ``probe(path)`` runs ``path`` once on the probe input and returns (seconds,
        outputs), outputs an array of shape (n, dim) (e.g. utterance vectors). The first run
        of a path is a warm-up (first calls pay for allocations and kernel selection); then it
        runs again until ``max_runs`` runs, or two timed runs and ``min_seconds`` of them, and
        its time is the best timed run. A path whose warm-up already takes :data:`GIVE_UP` times the best
        time so far is not run again (its warm-up time stands). An exception marks the path
        as failed (it is never chosen).
    machine : the machine's fields (default :func:`machine_fields` of ``device``); tests
        inject others.
    cache : True: the default cache file; a Path: that file; False or None: no cache.
    refresh : measure again even when the cache holds this key.
    """
    from mer_features.fingerprint import canonical_json

    candidates = list(dict.fromkeys(candidates))
    if not candidates:
        raise ValueError("measure needs at least one candidate path")
    reference = reference or candidates[0]
    if reference not in candidates:
        raise ValueError(f"reference path '{reference}' is not among the candidates")
    machine = dict(machine_fields(device) if machine is None else machine)
    fields = dict(fields)
    # Not keyed by the reference: the paths a reference can be (the fp32 ones) agree to ~1e-6.
    key = hashlib.sha256(canonical_json({"version": CACHE_VERSION, "machine": machine,
                                         "fields": fields}).encode()).hexdigest()[:32]
    path = cache_file() if cache is True else (Path(cache) if cache else None)
    known: dict[str, Trial] = {}
    if path is not None and not refresh:
        known = _read_entry(path, key) or {}
        if all(c in known for c in candidates):
            return Measurement(key, machine, fields, {c: known[c] for c in [reference] + [
                c for c in candidates if c != reference]}, reference, cached=True)

    # Paths the cache does not hold yet are measured, with the reference again (their cosine
    # needs its outputs); the entry keeps every path measured so far, so asking for fp32 and
    # later for bf16 probes fp32 twice but bf16 only once.
    order = [reference] + [c for c in candidates if c != reference and c not in known]
    trials: dict[str, Trial] = {}
    ref_out = None
    best = math.inf
    for name in order:
        timed: list[float] = []
        warmup, outputs, error = math.inf, None, None
        for attempt in range(max(1, max_runs)):
            try:
                took, out = probe(name)
            except Exception as e:  # noqa: BLE001 - a path that cannot run is not chosen
                error = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
                break
            if attempt == 0:
                warmup, outputs = float(took), out
                if warmup > GIVE_UP * best:
                    break
            else:
                timed.append(float(took))
                if len(timed) >= 2 and sum(timed) >= min_seconds:
                    break  # two timed runs at least: one can fall on another job's burst
        seconds = min(timed) if timed else warmup
        if error is not None:
            trials[name] = Trial(name, None, None, error)
            continue
        if name == reference:
            ref_out = outputs
            cosine = 1.0
        else:
            cosine = None if ref_out is None else min_cosine(ref_out, outputs)
        trials[name] = Trial(name, seconds, cosine)
        if cosine is not None and cosine >= MIN_COSINE:
            best = min(best, seconds)
    if path is not None:
        _write_entry(path, Measurement(key, machine, fields, {**known, **trials}, reference))
    ordered = {c: trials.get(c) or known[c] for c in [reference] + [c for c in candidates
                                                                      if c != reference]}
    return Measurement(key, machine, fields, ordered, reference)


def _read_entry(path: Path, key: str) -> dict[str, Trial] | None:
    """The cached trials of ``key``, or None when absent or unreadable in any way."""
    entries = _read_cache(path)
    entry = entries.get(key)
    try:
        trials = {name: Trial(name, _number(entry["trials"][name]["seconds"]),
                              _number(entry["trials"][name]["cosine"]),
                              entry["trials"][name].get("error"))
                  for name in entry["order"]}
        if not all(isinstance(t.error, (str, type(None))) for t in trials.values()):
            return None
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return trials


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(value)
    return float(value)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    entries = data.get("entries")
    return entries if isinstance(entries, dict) else {}


def _write_entry(path: Path, result: Measurement) -> None:
    """Add ``result`` to the cache file (atomically; a damaged file is replaced); a folder that
    cannot be written only means measuring again next time."""
    import datetime

    from mer_features.files import write_text

    entries = _read_cache(path)
    entries[result.key] = {
        "machine": result.machine, "fields": result.fields, "reference": result.reference,
        "order": list(result.trials), "trials": {n: t.to_json() for n, t in result.trials.items()},
        "measured": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps({"version": CACHE_VERSION, "entries": entries}, indent=1,
                                    sort_keys=True) + "\n")
    except OSError:
        pass

