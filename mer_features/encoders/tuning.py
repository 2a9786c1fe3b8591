"""Which compute path a neural encoder runs, measured on this machine (:mod:`mer_features.autotune`).

Before an extraction loads its encoder, :func:`choose_path` times the encoder's candidate paths
on a short probe (two 1.5 s synthetic clips, a few sentences, or a short face track), once per
machine, encoder shape and torch version (cached), and returns the one to use:

* ``--dtype fp32`` (the default): the fastest fp32 implementation (the hf audio encoder's CPU
  fast path or the stock modules); they agree to ~1e-6, so the store is the same either way.
* ``--dtype bf16``: the fastest bf16 implementation; when bf16 is slower than fp32 on this
  machine (a CPU without AMX or AVX512-BF16 emulates it), a warning gives the measured cost
  and says to use fp32 or auto. The run stays in bf16, as asked: its store then matches bf16
  stores made elsewhere, and resuming one keeps working.
* ``--dtype auto``: the fastest path, fp32 or bf16, whose outputs keep a cosine similarity of
  at least 0.999 to fp32's; the dtype it resolves to is the store's compute dtype (in its
  fingerprint, shown by ``mer-features info``). An existing store is continued in the dtype it
  was made with, so a resumed run never mixes two.

``impl`` forces an implementation (``fast`` or ``stock``; the benchmarks use it to show what
each path costs). With a single candidate nothing is measured.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from mer_features import autotune
from mer_features.errors import EncoderError

IMPLS = ("auto", "fast", "stock")
SLOWER = 1.1
"""bf16 more than this many times fp32's time gets a warning (``--dtype bf16``)."""


@dataclass
class PathChoice:
    """The implementation and dtype to load the encoder with; ``measurement`` is None when
    nothing had to be measured."""

    impl: str
    dtype: str
    measurement: autotune.Measurement | None = None
    warning: str | None = None


def candidates(enc: Any, device: str, dtypes: tuple[str, ...], impl: str = "auto") -> list[str]:
    """Path names of ``enc`` on ``device`` in ``dtypes``; ``stock-fp32`` (the reference) first
    when it is a candidate."""
    impls = enc.impls(device)
    if impl != "auto":
        if impl not in IMPLS:
            raise EncoderError(f"compute path must be one of {', '.join(IMPLS)}; got '{impl}'.")
        if impl not in impls:
            raise EncoderError(f"Encoder '{enc.describe()}' has no '{impl}' compute path on "
                               f"{device}; it has {', '.join(impls)} (or use auto).")
        impls = (impl,)
    names = [autotune.path_name(i, d) for d in dtypes for i in impls]
    names.sort(key=lambda n: n != autotune.path_name("stock", "fp32"))
    return names


def choose_path(enc: Any, device: str, dtype: str, *, impl: str = "auto",
                probe: Callable[[str], tuple[float, Any]] | None = None,
                cache: Any = True, machine: dict[str, Any] | None = None) -> PathChoice:
    """The implementation and compute dtype ``enc`` should load with for a run in ``dtype``
    (``fp32``, ``bf16``, ``fp16`` or ``auto``) on ``device``; see the module docstring.

    ``probe`` (default: :func:`encoder_probe`), ``cache`` and ``machine`` go to
    :func:`mer_features.autotune.measure` (tests inject them).
    """
    if not enc.uses_dtype:
        return PathChoice(impl if impl != "auto" else enc.impls(device)[0], "fp32")
    gpu = str(device).startswith("cuda")
    if dtype == "auto":
        wanted = ("fp32", "bf16", "fp16") if gpu else ("fp32", "bf16")
    elif dtype == "fp32" or gpu:
        wanted = (dtype,)  # on a GPU bf16/fp16 pay; nothing to warn about
    else:
        wanted = ("fp32", dtype)  # fp32 too, to tell what bf16 costs
    names = candidates(enc, device, wanted, impl)
    if len(names) == 1:
        chosen_impl, chosen_dtype = autotune.split_path(names[0])
        return PathChoice(chosen_impl, chosen_dtype)
    fields = {"encoder": enc.shape_fields(), "probe": probe_size(enc)}
    run = probe or encoder_probe(enc, device)
    measured = autotune.measure(fields, names, run, device=device, machine=machine, cache=cache)
    del run  # the last probed copy of the model goes with it
    if not measured.cached:
        gc.collect()  # a full collection costs seconds with transformers loaded: only after a probe
    if dtype == "auto":
        best = measured.choose(wanted)
    else:
        best = measured.choose((dtype,))
    if best is None:  # nothing ran: load the reference and let the run report its error
        chosen_impl, chosen_dtype = autotune.split_path(names[0])
        return PathChoice(chosen_impl, chosen_dtype if dtype == "auto" else dtype, measured)
    choice = PathChoice(best.impl, best.dtype, measured)
    fp32 = measured.fastest(("fp32",))
    if dtype == "bf16" and not gpu and fp32 is not None and best.seconds > SLOWER * fp32.seconds:
        model, flags = autotune.cpu_model_and_flags()
        native = ("it has " + "/".join(f for f in autotune.BF16_FLAGS if f in flags)
                  if autotune.native_bf16_cpu(flags) else
                  "it has no AMX or AVX512-BF16 instructions, so bf16 is emulated")
        choice.warning = (
            f"bf16 runs {best.seconds / fp32.seconds:.1f}x slower than fp32 for "
            f"'{enc.describe()}' on this CPU ({model}; {native}), measured on a short probe "
            f"({measured.table()}). Use --dtype fp32, or --dtype auto (the fastest path within "
            f"cosine {autotune.MIN_COSINE} of fp32); this run goes on in bf16, as asked.")
    elif dtype != "auto" and not best.accurate and best.cosine is not None:
        choice.warning = (f"{best.path} keeps only cosine {best.cosine:.4f} to fp32 for "
                          f"'{enc.describe()}' on the probe (wanted >= {autotune.MIN_COSINE}).")
    return choice


def probe_size(enc: Any) -> dict[str, Any]:
    """The probe's size, part of the cache key (its modality's :meth:`~mer_features.
    modalities.Stage.probe_size`)."""
    from mer_features.modalities import get_stage

    return get_stage(enc.modality).probe_size()


def probe_inputs(enc: Any) -> list[Any]:
    """Short synthetic inputs of ``enc``'s modality (two 1.5 s clips, a few sentences, a short
    face track): the same on every run, so that timings compare across runs."""
    from mer_features.modalities import get_stage

    return get_stage(enc.modality).probe_inputs(enc)


def encoder_probe(enc: Any, device: str) -> Callable[[str], tuple[float, np.ndarray]]:
    """``probe(path)``: a fresh copy of ``enc`` loaded on that path encodes the probe inputs;
    returns (seconds of encode_batch, utterance vectors as rows). One copy is loaded at a
    time and kept while the same path is probed again."""
    items = probe_inputs(enc)
    current: dict[str, Any] = {}

    def probe(name: str) -> tuple[float, np.ndarray]:
        if name not in current:
            current.clear()
            gc.collect()
            impl, dtype = autotune.split_path(name)
            fresh = type(enc)(enc.config)
            fresh.impl = impl
            fresh.load(device, dtype)
            current[name] = fresh
        start = time.perf_counter()
        results = current[name].encode_batch(items)
        seconds = time.perf_counter() - start
        rows = []
        for r in results:
            if isinstance(r, Exception):
                raise r
            rows.append(np.asarray(r.utterance, np.float32).reshape(-1, r.utterance.shape[-1]))
        return seconds, np.concatenate(rows)

    return probe


__all__ = ["IMPLS", "PathChoice", "candidates", "choose_path", "encoder_probe", "probe_inputs"]
