"""Which compute path a neural encoder runs: a fixed rule of the device and the encoder, never a
timing probe, so the same command on the same machine always computes the same way.

A path is an implementation and a compute dtype (``fast-fp32``; :mod:`mer_features.autotune`
names them):

* implementation (``compute_path``): ``auto`` (the default) is the first of the encoder's
  :meth:`~mer_features.encoders.base.Encoder.impls` on the device, which lists them in the order
  the benchmarks measured best: the hf audio encoder's CPU fast path on a CPU (never slower
  than the stock convolutions on a CPU measured: 1.09x in fp32 and 2.5x in bf16 on a Xeon with
  AMX; 1.0-1.03x in fp32 in the pipeline and 1.7x on the short probe on an AVX2 EPYC;
  benchmarks/RESULTS.md), the stock modules on a GPU and for
  every other encoder. ``fast`` or ``stock`` forces one.
* dtype (``dtype``): ``fp32`` by default; ``auto`` resolves from the device alone
  (:func:`resolve_dtype`): bf16 on a GPU that computes it and on a CPU with AMX-BF16 or
  AVX512-BF16 instructions, fp32 elsewhere (where bf16 is emulated: 11-34x slower than fp32 on
  an AVX2 EPYC, benchmarks/RESULTS.md). The pipeline continues an existing store in its own
  compute dtype, so a resumed run never mixes two. bf16 asked for on a CPU without those
  instructions warns (from the CPU's flags, not a timing) and runs in bf16, as asked.

What the store's fingerprint records (:func:`identity_path`): the compute dtype always (bf16
changes the numbers). The implementation only where it changes numbers beyond what the store
already tolerates from batching and thread counts, which no fingerprint records: in fp32 the
fast path and the stock modules agree as closely as two batch sizes or two thread counts do
(a HuBERT-base-sized model on RAVDESS clips: utterance vectors 1.1e-6 apart, against 6e-7 for
batched vs one by one and 1.3e-6 for 1 vs 2 threads), so an fp32 store is the same whichever
ran; in bf16 and fp16 they round at different places (utterance vectors 2e-2 apart on a tiny
HuBERT), so such a store of an encoder with several implementations records ``compute_path``
and a run with the other one is refused, naming it. A store written in bf16 before the field
existed (when a timing probe chose the implementation) is continued only where its features
are what the path of this run gives (:func:`stored_path_matches`).

The timing machinery of :mod:`mer_features.autotune` stays for the benchmarks
(benchmarks/bench_audio.py shows what each path costs on the machine at hand).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mer_features import autotune
from mer_features.errors import ParameterError

IMPLS = ("auto", "fast", "stock")
EXACT_DTYPES = ("fp32",)
"""Compute dtypes in which an encoder's implementations agree within batching's effect."""
EMULATED_BF16_SLOWDOWN = "11-34x"
"""bf16 against fp32 on a CPU that emulates bf16 (AVX2 EPYC, HuBERT-base-sized model, every path;
benchmarks/RESULTS.md: 11x in its probe, 34x for the fast path and 17x for the stock modules in
the pipeline)."""
STORED_TOLERANCE = 2e-3
"""A stored utterance vector is the features of a path when they differ by at most this fraction
of the vector's largest magnitude: above float16 storage's rounding (2.4e-4) and bf16 batching
(1e-5), below the gap between bf16 implementations (2e-2)."""


@dataclass(frozen=True)
class PathChoice:
    """The implementation and compute dtype to load an encoder with, and a warning to show
    (bf16 on a CPU that emulates it), or None."""

    impl: str
    dtype: str
    warning: str | None = None

    @property
    def name(self) -> str:
        return autotune.path_name(self.impl, self.dtype)


def native_bf16(device: str) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA GPU that supports it, or a CPU with
    AMX-BF16 or AVX512-BF16 (its flags in /proc/cpuinfo, not a measurement)."""
    if str(device).startswith("cuda"):
        import torch

        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    return autotune.native_bf16_cpu()


def resolve_dtype(enc: Any, device: str, dtype: str) -> str:
    """The compute dtype of a run of ``enc`` in ``dtype`` on ``device``: ``auto`` -> bf16 where
    the device computes it natively (:func:`native_bf16`) and ``enc``'s numbers depend on it,
    else fp32; any other as given (an encoder whose numbers do not depend on it records fp32,
    or refuses it: :meth:`~mer_features.encoders.base.Encoder.compute_dtype`)."""
    if dtype != "auto":
        return dtype
    return "bf16" if enc.uses_dtype and native_bf16(device) else "fp32"


def resolve_impl(enc: Any, device: str, impl: str = "auto") -> str:
    """The implementation ``enc`` computes with on ``device``: ``auto`` -> the first of
    ``enc.impls(device)``; a forced one must be among them (ParameterError otherwise)."""
    impls = enc.impls(device)
    if impl == "auto":
        return impls[0]
    if impl not in IMPLS:
        raise ParameterError(f"`compute_path` must be one of {', '.join(IMPLS)}; got '{impl}'.",
                             "compute_path")
    if impl not in impls:
        raise ParameterError(f"Encoder '{enc.describe()}' has no '{impl}' compute path on "
                             f"{device}; it has {', '.join(impls)} (or set `compute_path` to "
                             "auto).", "compute_path")
    return impl


def choose_path(enc: Any, device: str, dtype: str, *, impl: str = "auto") -> PathChoice:
    """The path ``enc`` loads with for a run in ``dtype`` (``fp32``, ``bf16``, ``fp16`` or
    ``auto``) on ``device`` with implementation ``impl`` (``auto``, ``fast``, ``stock``); see
    the module docstring. Decided from the device and the encoder alone."""
    # An encoder whose dtype changes nothing has one implementation: a forced one is ignored,
    # as options of another modality are (one command line serves every encoder).
    chosen = PathChoice(resolve_impl(enc, device, impl) if enc.uses_dtype else enc.impls(device)[0],
                        resolve_dtype(enc, device, dtype))
    if chosen.dtype == "bf16" and enc.uses_dtype and str(device) == "cpu" and not native_bf16(device):
        model = autotune.cpu_model_and_flags()[0]
        return PathChoice(chosen.impl, chosen.dtype, (
            f"bf16 on this CPU ({model}) is emulated: it has no AMX or AVX512-BF16 "
            f"instructions, and bf16 ran {EMULATED_BF16_SLOWDOWN} slower than fp32 on such a CPU "
            "(benchmarks/RESULTS.md). Set `dtype` to fp32 (or auto: bf16 only where the device "
            "computes it); this run goes on in bf16, as asked."))
    return chosen


def identity_path(enc: Any, device: str, impl: str, dtype: str) -> str | None:
    """The ``compute_path`` a store's fingerprint records for a run of ``enc`` with ``impl``
    in ``dtype`` (resolved) on ``device``: the implementation, where ``enc`` has several on
    ``device`` and ``dtype`` is not one they agree in (:data:`EXACT_DTYPES`); None elsewhere
    (the fingerprint then has no such field)."""
    if dtype in EXACT_DTYPES or len(enc.impls(device)) < 2:
        return None
    return impl


def stored_path_matches(enc: Any, stage: Any, store: Path, clips: Sequence[Any], *,
                        device: str, dtype: str) -> tuple[bool, str]:
    """Whether the features of the store at ``store`` are those ``enc`` (its ``impl`` set,
    not yet loaded) computes in ``dtype`` on ``device``: the first of ``clips`` (the run's
    usable clips) that the store holds ``ok`` from the same input is decoded by ``stage`` and
    encoded again, and its utterance vector compared with the stored one (within
    :data:`STORED_TOLERANCE`). Returns (matches, what was compared); True when no stored clip
    can be compared (nothing in the store can then be mixed). Leaves ``enc`` loaded."""
    from mer_features.store import FeatureStore

    with FeatureStore(store) as stored:
        held = {name: (status, input_hash) for name, status, input_hash in zip(
            stored.names, stored.column("status"), stored.column("input_hash"))}
        candidates = [c for c in clips if held.get(c.name, ("",))[0] == "ok"]
        hashes = stage.input_hashes(candidates[:8])
        clip = next((c for c, h in zip(candidates, hashes) if held[c.name][1] == h), None)
        if clip is None:
            return True, "no stored clip to compare"
        kept = np.asarray(stored.utterances([clip.name])[0], np.float64)
    item = stage.prepare([clip.name], [stage.decode(clip, enc)])[0]
    enc.load(device, dtype)
    (result,) = enc.encode_batch([item])
    if isinstance(result, Exception):
        return False, f"clip '{clip.name}' fails to encode again ({result})"
    again = np.asarray(result.utterance, np.float64)
    scale = max(float(np.abs(kept).max(initial=0.0)), 1e-12)
    gap = float(np.abs(again - kept).max(initial=0.0)) / scale if again.shape == kept.shape else np.inf
    return gap <= STORED_TOLERANCE, (f"clip '{clip.name}': {gap:.2g} of its largest value apart, "
                                     f"tolerance {STORED_TOLERANCE:g}")


__all__ = ["EMULATED_BF16_SLOWDOWN", "EXACT_DTYPES", "IMPLS", "PathChoice", "STORED_TOLERANCE",
           "choose_path", "identity_path", "native_bf16", "resolve_dtype", "resolve_impl",
           "stored_path_matches"]
