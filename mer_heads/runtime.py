"""Where and how the neural heads compute: device, precision, CPU threads, torch's global state.

None of this changes what a head learns on a given device; it only picks the device and the
arithmetic (bfloat16 where the hardware does it natively) and keeps torch's process-wide
settings (threads, deterministic kernels) inside the call that needs them. torch is imported
inside the functions, so importing this module is free.
"""

from __future__ import annotations

import os
import re
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
    """Whether ``device`` computes bfloat16 matrix products natively (fast, not emulated)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device) -> str:
    """``fp32`` or ``bf16``: ``auto`` is bf16 where ``device`` computes it natively."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision


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


__all__ = ["DEVICE_PATTERN", "PRECISIONS", "PREDICT_CHUNK", "compute_dtype", "native_bf16",
           "resolve_device", "resolve_precision", "set_threads", "threads_for", "torch_session"]
