"""Where and how the heads compute: device, precision, CPU threads, torch's global state.

Everything here that can change a number is explicit and recorded (:func:`record`, written into
``metrics.json`` and ``report.md``), and nothing is chosen by timing or by the machine's load:

* precision: ``fp32`` by default on every device; ``bf16`` only when asked for; ``auto``
  resolves from the device alone (:func:`resolve_precision`: bf16 where the device computes it
  natively, never timed). A timing probe would pick bf16 on a quiet machine and fp32 on a busy
  one, and the two train different models.
* threads: a fixed number (:data:`DEFAULT_THREADS` unless ``threads=``/``--threads``), never the
  machine's core count. torch's intra-op threads and the BLAS/OpenMP pools that numpy, scipy
  and scikit-learn use are set to it inside every fit and prediction (:func:`threads_session`).
  On an AMD EPYC (AVX2, 2 cores) the heads' matrix products gave the same bits at 1 and 2
  threads, but a torch sum of more than 32,768 numbers and OpenBLAS inside ``logreg`` did not
  (docs/heads.md, "Precision and threads").

torch and threadpoolctl are imported inside the functions, so importing this module is free.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mer_heads.errors import ParameterError

PRECISIONS = ("fp32", "bf16", "auto")
DEFAULT_PRECISION = "fp32"
DEFAULT_THREADS = 1
"""CPU threads of a fit when none is given: one, whatever the machine. On the shared 2-core EPYC
a fit at 2 threads ran 4-9x slower than at 1 under load (docs/heads.md), and a number that
followed the core count would make the same command differ between machines."""
DEVICE_PATTERN = re.compile(r"cpu|auto|cuda(:\d+)?")
PREDICT_CHUNK = 4096
"""Clips predicted at a time: memory grows with the chunk, not with the number of clips."""


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
    """Whether ``device`` has bfloat16 matrix instructions: a CUDA GPU that supports bf16, or a
    CPU with AMX-BF16 or AVX512-BF16 (read from /proc/cpuinfo's flags, not measured)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    try:
        flags = Path("/proc/cpuinfo").read_text().split("flags", 2)[1].split("\n", 1)[0].split()
    except (OSError, IndexError):
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_precision(precision: str, device) -> str:
    """``fp32`` or ``bf16``: an explicit precision as it is; ``auto`` is bf16 where ``device``
    computes bf16 natively (:func:`native_bf16`) and fp32 elsewhere. Decided from the device's
    type and flags only, never by timing, so the same command on the same machine always
    resolves the same way."""
    if precision not in PRECISIONS:
        raise ParameterError(f"precision must be one of {', '.join(PRECISIONS)}; got "
                             f"{precision!r} (--precision).")
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def compute_dtype(precision: str):
    """The torch dtype of the matrix products for a resolved precision (``fp32``/``bf16``)."""
    import torch

    return torch.bfloat16 if precision == "bf16" else torch.float32


def check_threads(threads: Any) -> int:
    """``threads`` as an int >= 1 (:class:`ParameterError` otherwise)."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ParameterError(f"threads must be an integer >= 1; got {threads!r} (--threads).")
    return threads


@contextmanager
def threads_session(threads: int) -> Iterator[int]:
    """Inside the block, torch's intra-op threads (once torch is imported: the neural heads'
    :class:`torch_session` sets them again) and every BLAS/OpenMP pool loaded in the process
    (OpenBLAS, MKL, OpenMP: numpy, scipy, scikit-learn) use exactly ``threads``; the previous
    settings are restored after. Yields ``threads``."""
    from threadpoolctl import threadpool_limits

    threads = check_threads(threads)
    torch = sys.modules.get("torch")  # importing torch for a scikit-learn head costs seconds
    before = torch.get_num_threads() if torch is not None else None
    try:
        with threadpool_limits(limits=threads):
            if torch is not None:
                torch.set_num_threads(threads)
                if torch.get_num_threads() != threads:  # what record() writes must be true
                    raise RuntimeError(f"torch runs {torch.get_num_threads()} threads after "
                                       f"set_num_threads({threads})")
            yield threads
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


class torch_session:
    """Deterministic kernels on a GPU, and fp32 matrix products in full fp32 (no TF32), inside
    the block; the global settings are restored after, so a library call leaves torch as it
    found it. Threads: :func:`threads_session`.

    On a CPU every kernel the heads use is deterministic already; asking torch to enforce it
    costs a 2-second import of its compiler stack, so that is only done for GPUs, where
    cuBLAS also needs a fixed workspace.
    """

    def __init__(self, device, threads: int | None = None):
        self.cuda = device.type == "cuda"
        self.threads = threads

    def __enter__(self) -> None:
        import torch

        self._session = None
        if self.threads is not None:
            self._session = threads_session(self.threads)
            self._session.__enter__()
        self._matmul = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        if self.cuda:
            self._deterministic = torch.are_deterministic_algorithms_enabled()
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)

    def __exit__(self, *exc: object) -> None:
        import torch

        if self.cuda:
            torch.use_deterministic_algorithms(self._deterministic)
        torch.set_float32_matmul_precision(self._matmul)
        if self._session is not None:
            self._session.__exit__(*exc)


def record(device: str, precision: str, threads: int) -> dict[str, Any]:
    """What a fit computed with, for ``metrics.json`` (``runtime``) and ``report.md``: the device,
    the resolved precision, the CPU threads (torch and BLAS) and the torch version. With the
    run's params these make a result repeatable; none of them is a time."""
    import torch

    return {"device": str(device), "precision": precision, "threads": int(threads),
            "torch": torch.__version__}


__all__ = ["DEFAULT_PRECISION", "DEFAULT_THREADS", "DEVICE_PATTERN", "PRECISIONS",
           "PREDICT_CHUNK", "check_threads", "compute_dtype", "native_bf16", "record",
           "resolve_device", "resolve_precision", "threads_session", "torch_session"]
