"""Where and how the neural heads compute: device, precision, CPU threads, torch's global state.

Apart from the precision, none of this changes what a head learns on a given device; it picks
the device and keeps torch's process-wide settings (threads, deterministic kernels) inside the
call that needs them. ``--precision auto`` is measured, not assumed (:func:`resolve_precision`):
a few training steps of the run's own stack are timed in fp32 and in bf16 on this machine
(once; cached with the extractor's compute paths, :mod:`mer_features.autotune`), and bf16 is
used only where it is faster and its outputs keep cosine 0.999 to fp32's. A CPU without AMX or
AVX512-BF16 emulates bf16 (its probe steps took 5-48x fp32's on an AVX2-only AMD EPYC), so
there auto is fp32.
torch is imported inside the functions, so importing this module is free.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from mer_heads.errors import ParameterError

PRECISIONS = ("auto", "fp32", "bf16")
DEVICE_PATTERN = re.compile(r"cpu|auto|cuda(:\d+)?")
PREDICT_CHUNK = 4096
"""Clips predicted at a time: memory grows with the chunk, not with the number of clips."""
SMALL_STEP_MACS = 1 << 24
"""Below this many multiply-adds per training step, torch runs on one thread: tiny products
gain nothing from a second thread, and on a busy machine its barrier waits cost more than the
product itself (measured 6x slower on 2 shared cores)."""


def resolve_device(device: str):
    """The torch device of ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; a GPU that torch does not
    see is refused with :class:`ParameterError`."""
    import torch

    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise ParameterError(f"device must be cpu, cuda, cuda:N or auto; got {device!r} "
                             "(--device).")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ParameterError(f"device '{device}' was asked for but torch sees no GPU "
                                 "(--device); use --device cpu (or auto).")
        count = torch.cuda.device_count()
        if resolved.index is not None and resolved.index >= count:
            raise ParameterError(f"device '{device}' does not exist: torch sees {count} GPU(s), "
                                 f"cuda:0 to cuda:{count - 1} (--device).")
    return resolved


def native_bf16(device) -> bool:
    """Whether ``device`` has bfloat16 matrix instructions (a CUDA GPU that supports bf16; a CPU
    with AMX or AVX512-BF16). Only a hint: ``--precision auto`` measures instead."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


@dataclass(frozen=True)
class StackShape:
    """What a precision probe builds: the run's stack of ``n_models`` heads of kind ``model``
    over modalities of widths ``dims`` (per frame, with ``frames`` frames per clip for frame
    input; 0 for utterances), ``hidden`` wide, trained on ``batch`` clips per step."""

    n_models: int
    dims: tuple[int, ...]
    model: str = "attention"
    hidden: int = 128
    batch: int = 512
    frames: tuple[int, ...] = ()

    def probe(self) -> StackShape:
        """The probe's (smaller) shape: at most 5 models and 256 clips per step, 64 frames;
        time grows linearly in each, so the faster precision stays the faster one."""
        return StackShape(min(self.n_models, PROBE_MODELS), self.dims, self.model, self.hidden,
                          min(self.batch, PROBE_BATCH), tuple(min(t, 64) for t in self.frames))


PROBE_MODELS, PROBE_BATCH, PROBE_STEPS = 5, 256, 2


def resolve_precision(precision: str, device, shape: StackShape | None = None, *,
                      cache=True, probe=None) -> str:
    """``fp32`` or ``bf16``. ``auto`` times a short probe of the stack ``shape`` in both
    (:func:`precision_probe`; cached per machine, torch version and shape) and takes the
    faster one whose outputs keep cosine :data:`mer_features.autotune.MIN_COSINE` to fp32's
    (bf16 only when at least 10% faster, :data:`mer_features.autotune.DTYPE_MARGIN`).
    Without a shape, ``auto`` is bf16 where the device has bf16 instructions. ``cache`` and
    ``probe`` go to :func:`mer_features.autotune.measure` (tests inject them)."""
    if precision != "auto":
        return precision
    if shape is None:
        return "bf16" if native_bf16(device) else "fp32"
    best = measure_precision(device, shape, cache=cache, probe=probe).choose(("fp32", "bf16"))
    return "fp32" if best is None else best.dtype  # neither ran: fp32, and the fit reports why


def measure_precision(device, shape: StackShape, *, cache=True, probe=None, machine=None):
    """The :class:`mer_features.autotune.Measurement` of ``stack-fp32`` and ``stack-bf16``."""
    import dataclasses

    from mer_features import autotune

    small = shape.probe()
    fields = {"what": "mer_heads stack training step", **dataclasses.asdict(small),
              "steps": PROBE_STEPS}
    return autotune.measure(fields, ["stack-fp32", "stack-bf16"],
                            probe or precision_probe(small, device), device=str(device),
                            machine=machine, cache=cache)


def precision_probe(shape: StackShape, device):
    """``probe(path)`` for :func:`mer_features.autotune.measure`: PROBE_STEPS training steps
    (forward, loss, backward, fused Adam) of a freshly initialised stack of ``shape`` on random
    standardised inputs, in that path's precision; returns (seconds, outputs) where outputs
    are each model's logits and valence on the probe clips before training, one row per
    model (the same weights in both precisions)."""
    import torch

    from mer_heads.heads.stack import StackedHead

    gen = torch.Generator().manual_seed(0)
    f, b = shape.n_models, shape.batch
    frame_input = bool(shape.frames)
    if frame_input:
        inputs = [torch.randn(f, b, t, d, generator=gen) for d, t in zip(shape.dims, shape.frames)]
        masks = [torch.ones(f, b, t, dtype=torch.bool) for t in shape.frames]
    else:
        inputs = [torch.randn(f, b, d, generator=gen) for d in shape.dims]
        masks = None
    present = torch.ones(f, b, len(shape.dims), dtype=torch.bool)
    labels = torch.randint(0, 6, (f * b,), generator=gen)
    target = torch.randn(f, b, generator=gen)

    def probe(path: str):
        dtype = torch.bfloat16 if path.endswith("bf16") else torch.float32
        torch.manual_seed(0)
        module = StackedHead(f, list(shape.dims), model=shape.model,
                             input="frames" if frame_input else "utterance", hidden=shape.hidden)
        module.reset_parameters(torch.Generator().manual_seed(0))
        module.set_compute_dtype(dtype)
        module.to(device)
        xs = [x.to(device, dtype) for x in inputs]
        ms = None if masks is None else [m.to(device) for m in masks]
        pres, lab, tgt = present.to(device), labels.to(device), target.to(device)
        with torch.no_grad():
            module.eval()
            logits, valence = module(xs, pres, ms)
            outputs = torch.cat([logits.float().reshape(f, -1), valence.float().reshape(f, -1)], 1)
        module.train()
        adam = torch.optim.Adam(module.parameters(), lr=1e-3, fused=device.type in ("cpu", "cuda"))
        _sync(device)
        start = time.perf_counter()
        for _ in range(PROBE_STEPS):
            logits, valence = module(xs, pres, ms)
            loss = (torch.nn.functional.cross_entropy(logits.float().reshape(f * b, -1), lab)
                    + (valence.float() - tgt).square().mean())
            adam.zero_grad(set_to_none=True)
            loss.backward()
            adam.step()
        _sync(device)
        return time.perf_counter() - start, outputs.cpu().numpy()

    return probe


def _sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


def compute_dtype(precision: str):
    """The torch dtype of the matrix products for a resolved precision (``fp32``/``bf16``)."""
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32


def threads_for(n_models: int, batch_size: int, dims: list[int], hidden: int) -> int | None:
    """1 for small stacks, else None (torch's default)."""
    macs = n_models * batch_size * sum(dims) * 2 * hidden
    return 1 if macs < SMALL_STEP_MACS else None


def set_threads(threads: int | None) -> None:
    """Set torch's CPU thread count for the process (``--threads``); None leaves torch's."""
    if threads:
        import torch

        torch.set_num_threads(threads)


class torch_session:
    """Deterministic kernels and a thread count inside the block; the global settings are
    restored after, so a library call leaves torch as it found it.

    On a CPU every kernel the heads use is deterministic already; asking torch to enforce it
    costs a 2-second import of its compiler stack, so that is only done for GPUs, where
    cuBLAS also needs a fixed workspace.
    """

    def __init__(self, device, threads: int | None = None):
        self.cuda = device.type == "cuda"
        self.threads = None if self.cuda else threads

    def __enter__(self) -> None:
        import torch

        self._threads = torch.get_num_threads()
        if self.cuda:
            self._deterministic = torch.are_deterministic_algorithms_enabled()
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
        if self.threads:
            torch.set_num_threads(self.threads)

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.cuda:
            torch.use_deterministic_algorithms(self._deterministic)
        torch.set_num_threads(self._threads)


__all__ = ["DEVICE_PATTERN", "PRECISIONS", "PREDICT_CHUNK", "StackShape", "compute_dtype",
           "measure_precision", "native_bf16", "precision_probe", "resolve_device",
           "resolve_precision", "set_threads", "threads_for", "torch_session"]
